//! An in-memory replication slot: a script of committed transactions as wal2json `format-version 2`
//! lines, replayed like PostgreSQL replays a slot — a session starts after the confirmed position, so a
//! transaction not confirmed is sent again, identical. For unit tests of cdc's pump, which adapts
//! [`SlotSession`] to its `ChangeSource` trait.

use std::sync::{Arc, Mutex};

use shared::Lsn;

/// One line of the stream at its WAL position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalLine {
    pub at: Lsn,
    pub json: String,
}

#[derive(Debug)]
struct Txn {
    /// The LSN just past the commit record (what the slot confirms).
    end: Lsn,
    lines: Vec<WalLine>,
}

#[derive(Debug, Default)]
struct State {
    txns: Vec<Txn>,
    confirmed: Lsn,
    next_lsn: u64,
    /// Every position a session confirmed, in order.
    confirms: Vec<Lsn>,
}

/// The slot: transactions in commit order and the confirmed position.
#[derive(Debug, Clone, Default)]
pub struct ScriptedSlot {
    state: Arc<Mutex<State>>,
}

impl ScriptedSlot {
    pub fn new() -> Self {
        let slot = ScriptedSlot::default();
        slot.state.lock().unwrap().next_lsn = 0x1000;
        slot
    }

    /// Appends a committed transaction `xid` whose row changes are `rows` (wal2json lines without
    /// `xid`, `lsn` and `timestamp`, which are filled in). Returns its end LSN.
    pub fn commit(&self, xid: u64, rows: &[&str]) -> Lsn {
        let mut s = self.state.lock().unwrap();
        let timestamp = "2026-12-01 10:00:00+00";
        let mut lines = Vec::with_capacity(rows.len() + 2);
        let begin_at = Lsn(s.next_lsn);
        let mut at = s.next_lsn;
        let mut row_lines = Vec::with_capacity(rows.len());
        for row in rows {
            at += 0x10;
            let body = row.trim().trim_start_matches('{');
            row_lines.push(WalLine {
                at: Lsn(at),
                json: format!(
                    r#"{{"xid":{xid},"timestamp":"{timestamp}","lsn":"{}",{body}"#,
                    Lsn(at)
                ),
            });
        }
        let commit = Lsn(at + 0x10);
        let end = Lsn(at + 0x18);
        let boundary = |action: &str| {
            format!(
                r#"{{"action":"{action}","xid":{xid},"timestamp":"{timestamp}","lsn":"{commit}","nextlsn":"{end}"}}"#
            )
        };
        lines.push(WalLine {
            at: begin_at,
            json: boundary("B"),
        });
        lines.extend(row_lines);
        lines.push(WalLine {
            at: end,
            json: boundary("C"),
        });
        s.next_lsn = end.0 + 0x100;
        s.txns.push(Txn { end, lines });
        end
    }

    /// The position confirmed so far.
    pub fn confirmed(&self) -> Lsn {
        self.state.lock().unwrap().confirmed
    }

    /// Every position confirmed, in order.
    pub fn confirms(&self) -> Vec<Lsn> {
        self.state.lock().unwrap().confirms.clone()
    }

    /// A new session: the lines of every transaction after the confirmed position. With `cut_after`,
    /// the session breaks (the connection is lost) after that many lines.
    pub fn session(&self, cut_after: Option<usize>) -> SlotSession {
        let s = self.state.lock().unwrap();
        let mut lines: Vec<WalLine> = s
            .txns
            .iter()
            .filter(|t| t.end > s.confirmed)
            .flat_map(|t| t.lines.iter().cloned())
            .collect();
        let broken = cut_after.is_some_and(|n| n < lines.len());
        if let Some(n) = cut_after {
            lines.truncate(n);
        }
        lines.reverse();
        SlotSession {
            slot: self.clone(),
            lines,
            broken,
        }
    }
}

/// One streaming session of a [`ScriptedSlot`].
#[derive(Debug)]
pub struct SlotSession {
    slot: ScriptedSlot,
    /// Remaining lines, last first.
    lines: Vec<WalLine>,
    broken: bool,
}

/// What a session yields next.
#[derive(Debug, PartialEq, Eq)]
pub enum SessionItem {
    Line(WalLine),
    /// The script is exhausted: nothing more until new transactions are committed.
    Idle,
    /// The connection broke.
    Broken,
}

impl SlotSession {
    pub fn next_item(&mut self) -> SessionItem {
        match self.lines.pop() {
            Some(line) => SessionItem::Line(line),
            None if self.broken => SessionItem::Broken,
            None => SessionItem::Idle,
        }
    }

    /// Confirms a position, as a standby status update does; the slot never moves back.
    pub fn confirm(&mut self, lsn: Lsn) {
        let mut s = self.slot.state.lock().unwrap();
        s.confirmed = s.confirmed.max(lsn);
        s.confirms.push(lsn);
    }
}
