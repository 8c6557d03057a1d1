//! Turns one partition's message stream into replica transactions: frames source transactions by their
//! `B`/`C`, drops cut frames, skips what the replica already holds, and decides what each replica
//! transaction contains and which position it records. Pure: the partition task feeds it messages and
//! carries out the [`Flush`]es it hands back.
//!
//! The position kept in the replica (in the same transaction as the rows) is
//! - `commit_lsn`: the commit LSN of the last source transaction whose rows of this partition are all
//!   applied. A frame with a commit LSN at or below it is a re-sent copy and is skipped whole.
//! - `partial_lsn`/`partial_rows`: when a source transaction is larger than one replica transaction, or
//!   contains a truncate, its rows are applied in several replica transactions; these say how many of
//!   its rows (in this partition's order) are applied, so a replay skips exactly those. cdc re-sends a
//!   transaction with the same rows in the same order, which is what makes the count meaningful.
//! - `kafka_offset`: the offset of the `C` of the last complete frame the position covers (applied or
//!   skipped). A partition task starts reading right after it ([`crate::resume`]), whatever the
//!   consumer group's committed offset says; an open frame partly applied starts after it, so its `B`
//!   is read again.

use std::time::{Duration, Instant};

use shared::{Change, Ddl, Lsn, RowChange, TableName};

use crate::dead_letter::Recorded;

/// What the replica holds for one partition, recorded with every replica transaction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AppliedPosition {
    pub commit_lsn: Lsn,
    pub partial_lsn: Lsn,
    pub partial_rows: u64,
    /// The offset of the last message the position covers (the `C` of the last complete frame);
    /// `None` when unknown (nothing applied yet, or a position written before offsets were kept).
    pub kafka_offset: Option<i64>,
}

impl AppliedPosition {
    /// Nothing recorded: a replica that never applied anything of this partition.
    pub fn is_empty(&self) -> bool {
        *self == AppliedPosition::default()
    }
}

/// A row change with its Kafka offset.
#[derive(Debug)]
pub struct Row {
    pub offset: i64,
    pub change: RowChange,
}

/// About how many bytes a decoded row change holds in memory, for the batch's byte bound: the text
/// of its names, types and values plus what each column and row costs as allocations (measured with
/// heaptrack: a three-column row of short values holds about 900 bytes).
fn change_bytes(change: &RowChange) -> usize {
    const PER_ROW: usize = 320;
    const PER_COLUMN: usize = 160;
    let columns = |c: Option<&[shared::Column]>| -> usize {
        c.unwrap_or_default()
            .iter()
            .map(|c| PER_COLUMN + c.value.get().len() + c.name.len() + c.type_name.len())
            .sum()
    };
    PER_ROW + columns(change.new_values()) + columns(change.old_values())
}

/// One replica transaction to run: the rows in order, the position to record with them, and the Kafka
/// offset that may be stored once it committed.
#[derive(Debug)]
pub struct Flush {
    pub rows: Vec<Row>,
    pub position: AppliedPosition,
    /// The offset to store (the one after the last complete frame's `C`), if this flush completes one.
    pub store_offset: Option<i64>,
    /// Source transactions this flush completes.
    pub frames: usize,
    /// Where each complete frame ends in `rows`, in order.
    pub frame_ends: Vec<FrameEnd>,
    /// Events set aside in the dead-letter topic, recorded with this flush's position.
    pub dead_letters: Vec<Recorded>,
}

/// The end of a complete frame within a flush.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameEnd {
    /// `rows.len()` at the frame's `C`.
    pub rows: usize,
    pub commit_lsn: Lsn,
    /// The offset after the frame's `C`.
    pub next_offset: i64,
}

impl Flush {
    /// Splits off the complete frames that end at or before row `row` (the rows before a failing
    /// one), so they can be applied on their own. `None` if no frame ends there.
    pub fn split_before(&mut self, row: usize, applied: AppliedPosition) -> Option<Flush> {
        let cut = self.frame_ends.iter().rposition(|e| e.rows <= row)?;
        let end = self.frame_ends[cut];
        let rest_rows = self.rows.split_off(end.rows);
        let rows = std::mem::replace(&mut self.rows, rest_rows);
        let mut ends: Vec<FrameEnd> = self.frame_ends.drain(..=cut).collect();
        for e in &mut self.frame_ends {
            e.rows -= end.rows;
        }
        ends.shrink_to_fit();
        Some(Flush {
            rows,
            position: AppliedPosition {
                kafka_offset: Some(end.next_offset - 1),
                ..after_commit(end.commit_lsn, applied)
            },
            store_offset: Some(end.next_offset),
            frames: ends.len(),
            frame_ends: ends,
            dead_letters: std::mem::take(&mut self.dead_letters),
        })
    }

    /// Takes row `index` out (a row the replica refused, set aside): the rest of its source
    /// transaction is applied without it. Its place in the transaction's count of rows stays, so a
    /// partial position still counts it as done.
    pub fn remove_row(&mut self, index: usize) -> Option<Row> {
        if index >= self.rows.len() {
            return None;
        }
        let row = self.rows.remove(index);
        for end in &mut self.frame_ends {
            if end.rows > index {
                end.rows -= 1;
            }
        }
        Some(row)
    }
}

/// The position once every frame up to `commit_lsn` is applied: a partly applied transaction after
/// it keeps its count of applied rows. The Kafka offset stays the caller's to set.
fn after_commit(commit_lsn: Lsn, applied: AppliedPosition) -> AppliedPosition {
    if applied.partial_lsn > commit_lsn {
        AppliedPosition {
            commit_lsn,
            ..applied
        }
    } else {
        AppliedPosition {
            commit_lsn,
            kafka_offset: applied.kafka_offset,
            ..Default::default()
        }
    }
}

/// What the task should do after handing over a message.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Keep reading.
    Read,
    /// The buffer is full: flush now.
    Flush,
    /// A truncate or schema change to apply: flush everything before it (with
    /// [`Batch::take_flush`] `partial = true`), then run its barrier, then [`Batch::barrier_done`].
    Barrier(Box<BarrierAt>),
}

/// A truncate or schema change met in the stream.
#[derive(Debug, PartialEq, Eq)]
pub struct BarrierAt {
    pub offset: i64,
    pub table: TableName,
    pub lsn: Lsn,
    /// How many partitions of the topic got the event, when it says.
    pub partitions: Option<u32>,
    /// For a schema change, what changed; None for a truncate.
    pub schema: Option<Box<Ddl>>,
}

/// The message broke the framing rules.
#[derive(Debug, PartialEq, Eq)]
pub struct FramingError(pub String);

#[derive(Debug)]
struct Frame {
    lsn: Lsn,
    /// The offset of its `B`.
    begin_offset: i64,
    /// Rows of this frame seen so far, applied or skipped.
    seen: u64,
    /// Rows at the start of the frame that the replica already holds.
    skip: u64,
    /// The replica already holds the whole frame.
    skip_all: bool,
    /// `rows.len()` when this frame started.
    start: usize,
    /// Some of this frame's rows or truncates are in the replica already (a partial flush, a truncate,
    /// or an earlier run's partial position).
    partly_applied: bool,
}

/// The state of one partition between flushes.
#[derive(Debug)]
pub struct Batch {
    applied: AppliedPosition,
    max_rows: usize,
    max_bytes: usize,
    max_wait: Duration,
    rows: Vec<Row>,
    /// About how many bytes of values `rows` hold, and those of the rows before `complete_rows`.
    bytes: usize,
    complete_bytes: usize,
    /// `rows.len()` at the end of the last complete frame.
    complete_rows: usize,
    /// The last complete frame buffered: its commit LSN and the offset after its `C`.
    last_complete: Option<(Lsn, i64)>,
    complete_frames: usize,
    frame_ends: Vec<FrameEnd>,
    first_complete_at: Option<Instant>,
    current: Option<Frame>,
    /// Events set aside since the last flush.
    dead_letters: Vec<Recorded>,
}

impl Batch {
    /// A batch flushed at `max_rows` rows or `max_bytes` bytes of values, whichever comes first.
    pub fn new(
        applied: AppliedPosition,
        max_rows: usize,
        max_bytes: usize,
        max_wait: Duration,
    ) -> Self {
        Batch {
            applied,
            max_rows: max_rows.max(1),
            max_bytes: max_bytes.max(1),
            max_wait,
            rows: Vec::new(),
            bytes: 0,
            complete_bytes: 0,
            complete_rows: 0,
            last_complete: None,
            complete_frames: 0,
            frame_ends: Vec::new(),
            first_complete_at: None,
            current: None,
            dead_letters: Vec::new(),
        }
    }

    /// Whether handing `change` over would break the framing rules, and why. [`Batch::push`] refuses
    /// the same changes, but after looking at them; this leaves the batch as it is, so the change
    /// can be set aside and the partition go on.
    pub fn framing_error(&self, change: &Change) -> Option<FramingError> {
        match (change, self.current.as_ref()) {
            (Change::Commit(_), None) => Some(FramingError(
                "a commit without a begin before it in this partition".into(),
            )),
            (Change::Commit(commit), Some(frame)) if commit.lsn != frame.lsn => {
                Some(FramingError(format!(
                    "commit lsn {} does not match its begin {}",
                    commit.lsn, frame.lsn
                )))
            }
            (Change::Commit(commit), Some(frame)) => match commit.messages {
                Some(want) if !frame.skip_all && frame.seen != want && frame.partly_applied => {
                    Some(FramingError(format!(
                        "the frame of the source transaction at {} holds {} of the {want} messages its C counts, \
                         and part of it is already applied: a message was lost between cdc and Kafka",
                        frame.lsn, frame.seen
                    )))
                }
                _ => None,
            },
            (Change::Row(_) | Change::Truncate(_), None) => Some(FramingError(
                "a row change outside a begin/commit frame".into(),
            )),
            _ => None,
        }
    }

    /// Records that the message at `offset` was set aside (`recorded`) instead of handed over. Between
    /// frames the position moves past it like past a complete frame without rows; inside a frame it
    /// is not one of the frame's messages (the frame must match its commit's count without it). The
    /// dead letter is recorded with the next flush.
    pub fn set_aside(&mut self, offset: i64, recorded: Recorded) -> Next {
        self.dead_letters.push(recorded);
        if self.current.is_none() {
            let lsn = self.last_lsn();
            self.complete_rows = self.rows.len();
            self.complete_bytes = self.bytes;
            self.last_complete = Some((lsn, offset + 1));
            self.frame_ends.push(FrameEnd {
                rows: self.rows.len(),
                commit_lsn: lsn,
                next_offset: offset + 1,
            });
        }
        self.first_complete_at.get_or_insert_with(Instant::now);
        Next::Read
    }

    pub fn applied(&self) -> AppliedPosition {
        self.applied
    }

    /// When the buffered complete frames must be flushed, if there are any.
    pub fn deadline(&self) -> Option<Instant> {
        self.first_complete_at.map(|t| t + self.max_wait)
    }

    /// Hands over the next message of the partition.
    pub fn push(&mut self, offset: i64, change: Change) -> Result<Next, FramingError> {
        match change {
            Change::Begin(begin) => {
                let lsn = begin.lsn;
                if let Some(cut) = self.current.take() {
                    // A frame interrupted by a new begin is re-sent whole later: drop what is buffered.
                    self.truncate_rows(cut.start.max(self.complete_rows));
                    metrics::counter!(crate::metrics::FRAMES_SKIPPED, "reason" => "cut")
                        .increment(1);
                }
                let a = self.applied;
                // Against the buffered frames too: a copy cdc re-sent can follow its original within
                // one batch.
                let skip_all = lsn <= self.last_lsn();
                let skip = if a.partial_lsn == lsn && a.partial_lsn > a.commit_lsn {
                    a.partial_rows
                } else {
                    0
                };
                self.current = Some(Frame {
                    lsn,
                    begin_offset: offset,
                    seen: 0,
                    skip,
                    skip_all,
                    start: self.rows.len(),
                    partly_applied: skip > 0,
                });
                Ok(Next::Read)
            }
            Change::Commit(commit) => {
                let frame = self.current.take().ok_or_else(|| {
                    FramingError("a commit without a begin before it in this partition".into())
                })?;
                if commit.lsn != frame.lsn {
                    return Err(FramingError(format!(
                        "commit lsn {} does not match its begin {}",
                        commit.lsn, frame.lsn
                    )));
                }
                if let Some(want) = commit.messages.filter(|_| !frame.skip_all) {
                    if frame.seen != want {
                        return self.short_frame(frame, want);
                    }
                }
                if frame.skip_all {
                    metrics::counter!(crate::metrics::FRAMES_SKIPPED, "reason" => "already_applied")
                        .increment(1);
                } else {
                    self.complete_frames += 1;
                }
                self.complete_rows = self.rows.len();
                self.complete_bytes = self.bytes;
                let commit_lsn = frame.lsn.max(self.last_lsn());
                self.last_complete = Some((commit_lsn, offset + 1));
                self.frame_ends.push(FrameEnd {
                    rows: self.rows.len(),
                    commit_lsn,
                    next_offset: offset + 1,
                });
                self.first_complete_at.get_or_insert_with(Instant::now);
                Ok(self.full())
            }
            Change::Row(_) | Change::Truncate(_) | Change::Schema(_) => {
                let frame = self.current.as_mut().ok_or_else(|| {
                    FramingError("a row change outside a begin/commit frame".into())
                })?;
                if frame.skip_all || frame.seen < frame.skip {
                    frame.seen += 1;
                    return Ok(Next::Read);
                }
                match change {
                    Change::Row(change) => {
                        frame.seen += 1;
                        self.bytes += change_bytes(&change);
                        self.rows.push(Row { offset, change });
                        Ok(self.full())
                    }
                    // Counted as seen only once applied: see `barrier_done`.
                    Change::Truncate(t) => Ok(Next::Barrier(Box::new(BarrierAt {
                        offset,
                        table: t.table,
                        lsn: t.origin.lsn.unwrap_or(frame.lsn),
                        partitions: t.partitions,
                        schema: None,
                    }))),
                    Change::Schema(s) => Ok(Next::Barrier(Box::new(BarrierAt {
                        offset,
                        table: s.table,
                        lsn: s.origin.lsn.unwrap_or(frame.lsn),
                        partitions: s.partitions,
                        schema: Some(s.ddl),
                    }))),
                    _ => Ok(Next::Read),
                }
            }
            Change::Message(_) => Ok(Next::Read),
        }
    }

    /// A frame whose `C` counts more messages than arrived: one was lost between cdc and Kafka (a
    /// delivery that timed out while later ones got through). cdc re-sends the whole transaction
    /// after such a failure, so a frame none of which is applied is dropped like a cut one and the
    /// copy applied instead; a frame partly applied cannot be completed, and stops the partition.
    fn short_frame(&mut self, frame: Frame, want: u64) -> Result<Next, FramingError> {
        if frame.partly_applied {
            return Err(FramingError(format!(
                "the frame of the source transaction at {} holds {} of the {want} messages its C counts, \
                 and part of it is already applied: a message was lost between cdc and Kafka; \
                 re-copy the affected tables to this replica",
                frame.lsn, frame.seen
            )));
        }
        self.truncate_rows(frame.start.max(self.complete_rows));
        metrics::counter!(crate::metrics::FRAMES_SKIPPED, "reason" => "short").increment(1);
        tracing::warn!(
            lsn = %frame.lsn,
            got = frame.seen,
            want,
            "dropped a frame that lost a message on the way; its re-sent copy follows"
        );
        Ok(Next::Read)
    }

    /// Drops the buffered rows from `len` on.
    fn truncate_rows(&mut self, len: usize) {
        self.rows.truncate(len);
        self.bytes = self.rows.iter().map(|r| change_bytes(&r.change)).sum();
    }

    fn full(&self) -> Next {
        if self.rows.len() >= self.max_rows || self.bytes >= self.max_bytes {
            Next::Flush
        } else {
            Next::Read
        }
    }

    fn last_lsn(&self) -> Lsn {
        self.last_complete
            .map(|(l, _)| l)
            .unwrap_or(self.applied.commit_lsn)
    }

    /// Rows of the open frame buffered (not part of a complete frame).
    pub fn open_rows(&self) -> usize {
        self.rows.len() - self.complete_rows
    }

    /// Whether the open frame's rows alone fill a batch (rows or bytes): they are applied without
    /// waiting for its end.
    pub fn open_frame_fills(&self) -> bool {
        self.open_rows() >= self.max_rows || self.bytes - self.complete_bytes >= self.max_bytes
    }

    /// Whether a flush has anything to do (rows to write or an offset to store).
    pub fn has_work(&self, partial: bool) -> bool {
        self.last_complete.is_some()
            || !self.dead_letters.is_empty()
            || (partial && self.rows.len() > self.complete_rows)
    }

    /// Takes what is ready: the complete frames, and with `partial` (the buffer is full, or a truncate
    /// needs everything before it applied) also the rows of the open frame so far.
    pub fn take_flush(&mut self, partial: bool) -> Flush {
        let take = if partial {
            self.rows.len()
        } else {
            self.complete_rows
        };
        let rows: Vec<Row> = self.rows.drain(..take).collect();
        self.bytes = self.rows.iter().map(|r| change_bytes(&r.change)).sum();
        let mut position = after_commit(self.last_lsn(), self.applied);
        if let Some((_, next)) = self.last_complete {
            position.kafka_offset = Some(next - 1);
        }
        if let Some(frame) = self.current.as_mut() {
            frame.partly_applied |= take > frame.start;
            frame.start = frame.start.saturating_sub(take);
            if partial {
                position.partial_lsn = frame.lsn;
                position.partial_rows = frame.seen;
                // A restart reads the frame again from its `B`.
                position.kafka_offset = Some(frame.begin_offset - 1);
            }
        }
        let flush = Flush {
            rows,
            position,
            store_offset: self.last_complete.map(|(_, o)| o),
            frames: self.complete_frames,
            frame_ends: std::mem::take(&mut self.frame_ends),
            dead_letters: std::mem::take(&mut self.dead_letters),
        };
        self.complete_rows = 0;
        self.complete_bytes = 0;
        self.last_complete = None;
        self.complete_frames = 0;
        self.first_complete_at = None;
        flush
    }

    /// Records that a flush committed.
    pub fn flushed(&mut self, position: AppliedPosition) {
        self.applied = position;
    }

    /// Records that the truncate the open frame stopped at is applied (by this partition or another).
    pub fn barrier_done(&mut self) {
        self.applied = self.position_after_barrier();
        if let Some(frame) = self.current.as_mut() {
            frame.seen += 1;
            frame.partly_applied = true;
        }
    }

    /// The position to record once the truncate the open frame stopped at is applied.
    pub fn position_after_barrier(&self) -> AppliedPosition {
        let mut p = self.applied;
        if let Some(frame) = self.current.as_ref() {
            p.partial_lsn = frame.lsn;
            p.partial_rows = frame.seen + 1;
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::{Action, Origin, RowOp, Truncate, TxnBoundary};

    fn ev(action: Action, lsn: u64) -> Change {
        let boundary = TxnBoundary {
            xid: 1,
            lsn: Lsn(lsn),
            nextlsn: Lsn(lsn + 1),
            timestamp: None,
            messages: None,
            snapshot: None,
        };
        let origin = Origin {
            lsn: Some(Lsn(lsn)),
            ..Origin::default()
        };
        let table = TableName::new("public", "t");
        match action {
            Action::Begin => Change::Begin(boundary),
            Action::Commit => Change::Commit(boundary),
            Action::Truncate => Change::Truncate(Truncate {
                origin,
                table,
                partitions: None,
            }),
            Action::Insert => Change::Row(RowChange {
                origin,
                table,
                op: RowOp::Insert { new: Vec::new() },
                pk: Vec::new(),
            }),
            other => panic!("no test change for {other:?}"),
        }
    }

    struct Feed {
        batch: Batch,
        offset: i64,
    }

    impl Feed {
        fn new(applied: AppliedPosition, max_rows: usize) -> Self {
            Feed {
                batch: Batch::new(applied, max_rows, usize::MAX, Duration::from_millis(5)),
                offset: 0,
            }
        }
        fn push(&mut self, action: Action, lsn: u64) -> Next {
            let next = self.batch.push(self.offset, ev(action, lsn)).unwrap();
            self.offset += 1;
            next
        }
        fn frame(&mut self, lsn: u64, rows: usize) {
            self.push(Action::Begin, lsn);
            for _ in 0..rows {
                self.push(Action::Insert, lsn);
            }
            self.push(Action::Commit, lsn);
        }
    }

    #[test]
    fn complete_frames_share_one_flush_and_store_the_offset_after_the_last_commit() {
        let mut f = Feed::new(AppliedPosition::default(), 100);
        f.frame(10, 2);
        f.frame(20, 3);
        assert!(f.batch.deadline().is_some());
        let flush = f.batch.take_flush(false);
        assert_eq!(flush.rows.len(), 5);
        assert_eq!(flush.frames, 2);
        assert_eq!(flush.store_offset, Some(9));
        assert_eq!(flush.position.commit_lsn, Lsn(20));
        assert_eq!(flush.position.partial_rows, 0);
        assert!(f.batch.deadline().is_none());
    }

    #[test]
    fn a_batch_fills_by_bytes_as_well_as_rows() {
        let one_row = {
            let mut f = Feed::new(AppliedPosition::default(), 100);
            f.push(Action::Begin, 10);
            f.push(Action::Insert, 10);
            f.batch.bytes
        };
        assert!(one_row > 0);
        let mut f = Feed {
            batch: Batch::new(
                AppliedPosition::default(),
                100,
                3 * one_row,
                Duration::from_millis(5),
            ),
            offset: 0,
        };
        f.push(Action::Begin, 10);
        assert!(matches!(f.push(Action::Insert, 10), Next::Read));
        assert!(matches!(f.push(Action::Insert, 10), Next::Read));
        assert!(!f.batch.open_frame_fills());
        assert!(matches!(f.push(Action::Insert, 10), Next::Flush));
        assert!(f.batch.open_frame_fills());
        let flush = f.batch.take_flush(true);
        assert_eq!(flush.rows.len(), 3);
        assert_eq!(f.batch.bytes, 0);
        assert!(!f.batch.open_frame_fills());
        assert!(matches!(f.push(Action::Insert, 10), Next::Read));
        assert!(matches!(f.push(Action::Commit, 10), Next::Read));
    }

    #[test]
    fn open_frame_rows_wait_for_their_commit() {
        let mut f = Feed::new(AppliedPosition::default(), 100);
        f.frame(10, 1);
        f.push(Action::Begin, 20);
        f.push(Action::Insert, 20);
        let flush = f.batch.take_flush(false);
        assert_eq!(flush.rows.len(), 1);
        assert_eq!(flush.position.commit_lsn, Lsn(10));
        f.push(Action::Commit, 20);
        let flush = f.batch.take_flush(false);
        assert_eq!(flush.rows.len(), 1);
        assert_eq!(flush.rows[0].offset, 4);
    }

    fn counted_commit(lsn: u64, messages: u64) -> Change {
        match ev(Action::Commit, lsn) {
            Change::Commit(mut t) => {
                t.messages = Some(messages);
                Change::Commit(t)
            }
            _ => unreachable!(),
        }
    }

    #[test]
    fn a_frame_short_of_its_count_is_dropped_and_its_resent_copy_applied() {
        let mut f = Feed::new(AppliedPosition::default(), 100);
        f.frame(10, 1);
        // The frame of 20 lost its second of three rows on the way.
        f.push(Action::Begin, 20);
        f.push(Action::Insert, 20);
        f.push(Action::Insert, 20);
        f.batch.push(f.offset, counted_commit(20, 3)).unwrap();
        f.offset += 1;
        // cdc re-sends the transaction whole.
        f.push(Action::Begin, 20);
        for _ in 0..3 {
            f.push(Action::Insert, 20);
        }
        f.batch.push(f.offset, counted_commit(20, 3)).unwrap();
        f.offset += 1;
        let flush = f.batch.take_flush(false);
        let offsets: Vec<i64> = flush.rows.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, vec![1, 8, 9, 10]);
        assert_eq!(flush.frames, 2);
        assert_eq!(flush.store_offset, Some(12));
    }

    #[test]
    fn a_short_frame_partly_applied_stops_the_partition() {
        let mut f = Feed::new(AppliedPosition::default(), 2);
        f.push(Action::Begin, 20);
        f.push(Action::Insert, 20);
        f.push(Action::Insert, 20);
        let flush = f.batch.take_flush(true);
        assert_eq!(flush.rows.len(), 2);
        f.batch.flushed(flush.position);
        f.push(Action::Insert, 20);
        let error = f.batch.push(f.offset, counted_commit(20, 4)).unwrap_err();
        assert!(error.0.contains("3 of the 4 messages"), "{}", error.0);
        // Whole frames pass, and a C without a count (older cdc) is trusted.
        let mut f = Feed::new(AppliedPosition::default(), 100);
        f.push(Action::Begin, 30);
        f.push(Action::Insert, 30);
        f.batch.push(f.offset, counted_commit(30, 1)).unwrap();
        f.offset += 1;
        f.frame(40, 2);
        assert_eq!(f.batch.take_flush(false).frames, 2);
    }

    #[test]
    fn a_cut_frame_is_dropped_and_its_resent_copy_applied() {
        let mut f = Feed::new(AppliedPosition::default(), 100);
        f.frame(10, 1);
        f.push(Action::Begin, 20);
        f.push(Action::Insert, 20);
        f.frame(20, 2); // cdc restarted: the whole transaction again
        let flush = f.batch.take_flush(false);
        let offsets: Vec<i64> = flush.rows.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, vec![1, 6, 7]);
        assert_eq!(flush.position.commit_lsn, Lsn(20));
    }

    #[test]
    fn frames_the_replica_holds_are_skipped_but_their_offset_is_stored() {
        let applied = AppliedPosition {
            commit_lsn: Lsn(20),
            ..Default::default()
        };
        let mut f = Feed::new(applied, 100);
        f.frame(10, 2);
        f.frame(20, 2);
        assert!(f.batch.has_work(false));
        let flush = f.batch.take_flush(false);
        assert!(flush.rows.is_empty());
        assert_eq!(flush.frames, 0);
        assert_eq!(flush.store_offset, Some(8));
        assert_eq!(flush.position.commit_lsn, Lsn(20));
    }

    #[test]
    fn a_large_frame_is_applied_in_chunks_and_a_replay_skips_the_applied_rows() {
        let mut f = Feed::new(AppliedPosition::default(), 3);
        f.push(Action::Begin, 50);
        assert_eq!(f.push(Action::Insert, 50), Next::Read);
        assert_eq!(f.push(Action::Insert, 50), Next::Read);
        assert_eq!(f.push(Action::Insert, 50), Next::Flush);
        let flush = f.batch.take_flush(true);
        assert_eq!(flush.rows.len(), 3);
        assert_eq!(flush.store_offset, None);
        assert_eq!(
            flush.position,
            AppliedPosition {
                commit_lsn: Lsn(0),
                partial_lsn: Lsn(50),
                partial_rows: 3,
                kafka_offset: Some(-1), // its `B` is the partition's first message
            }
        );
        // Crash here; the router restarts from the replica's position and reads the frame again.
        let mut g = Feed::new(flush.position, 3);
        g.frame(50, 5);
        let flush = g.batch.take_flush(false);
        let offsets: Vec<i64> = flush.rows.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, vec![4, 5]);
        assert_eq!(flush.position.commit_lsn, Lsn(50));
        assert_eq!(flush.position.partial_rows, 0);
    }

    #[test]
    fn a_truncate_stops_the_frame_and_counts_as_applied_after_the_barrier() {
        let mut f = Feed::new(AppliedPosition::default(), 100);
        f.push(Action::Begin, 70);
        f.push(Action::Insert, 70);
        let next = f.push(Action::Truncate, 70);
        assert!(matches!(next, Next::Barrier(t) if t.table.name == "t" && t.offset == 2));
        let flush = f.batch.take_flush(true);
        assert_eq!(flush.rows.len(), 1);
        assert_eq!(flush.position.partial_rows, 1);
        f.batch.flushed(flush.position);
        assert_eq!(f.batch.position_after_barrier().partial_rows, 2);
        f.batch.barrier_done();
        f.push(Action::Insert, 70);
        f.push(Action::Commit, 70);
        let flush = f.batch.take_flush(false);
        assert_eq!(flush.rows.len(), 1);
        assert_eq!(flush.position.commit_lsn, Lsn(70));
        // A replay after the truncate skips the row and the truncate.
        let mut g = Feed::new(
            AppliedPosition {
                commit_lsn: Lsn(0),
                partial_lsn: Lsn(70),
                partial_rows: 2,
                kafka_offset: None,
            },
            100,
        );
        g.push(Action::Begin, 70);
        assert_eq!(g.push(Action::Insert, 70), Next::Read);
        assert_eq!(g.push(Action::Truncate, 70), Next::Read);
        g.push(Action::Insert, 70);
        g.push(Action::Commit, 70);
        assert_eq!(g.batch.take_flush(false).rows.len(), 1);
    }

    #[test]
    fn a_flush_splits_before_the_frame_of_a_failing_row() {
        let mut f = Feed::new(AppliedPosition::default(), 100);
        f.frame(10, 2); // offsets 0..=3, rows 0 and 1
        f.frame(20, 2); // offsets 4..=7, rows 2 and 3
        f.frame(30, 1); // offsets 8..=10, row 4
        let mut flush = f.batch.take_flush(false);
        let applied = AppliedPosition::default();
        assert!(
            flush.clone_ends().split_before(1, applied).is_none(),
            "row 1 is in the first frame"
        );
        let prefix = flush.split_before(3, applied).unwrap();
        assert_eq!(prefix.rows.len(), 2);
        assert_eq!(prefix.position.commit_lsn, Lsn(10));
        assert_eq!(prefix.store_offset, Some(4));
        assert_eq!(flush.rows.len(), 3);
        assert_eq!(flush.frame_ends[0].rows, 2);
        let prefix = flush.split_before(2, applied).unwrap();
        assert_eq!(prefix.position.commit_lsn, Lsn(20));
        assert_eq!(prefix.store_offset, Some(8));
        assert_eq!(flush.rows.len(), 1);
    }

    impl Flush {
        fn clone_ends(&self) -> Flush {
            Flush {
                rows: Vec::new(),
                position: self.position,
                store_offset: self.store_offset,
                frames: self.frames,
                frame_ends: self.frame_ends.clone(),
                dead_letters: Vec::new(),
            }
        }
    }

    fn letter(offset: i64) -> Recorded {
        use crate::dead_letter::{DlqPosition, Reason};
        Recorded {
            offset,
            reason: Reason::Decode,
            error: "not json".into(),
            dlq: DlqPosition {
                partition: 0,
                offset,
            },
        }
    }

    #[test]
    fn a_message_set_aside_between_frames_moves_the_position_past_it() {
        let mut f = Feed::new(AppliedPosition::default(), 100);
        f.frame(10, 2); // offsets 0..=3
        assert_eq!(f.batch.set_aside(4, letter(4)), Next::Read);
        f.offset = 5;
        let flush = f.batch.take_flush(false);
        assert_eq!(flush.rows.len(), 2);
        assert_eq!(flush.frames, 1);
        assert_eq!(flush.position.commit_lsn, Lsn(10));
        assert_eq!(flush.position.kafka_offset, Some(4));
        assert_eq!(flush.store_offset, Some(5));
        assert_eq!(flush.dead_letters, vec![letter(4)]);
        f.batch.flushed(flush.position);
        // Alone, it still makes a flush (the dead letter must be recorded).
        f.batch.set_aside(5, letter(5));
        assert!(f.batch.has_work(false) && f.batch.deadline().is_some());
        let flush = f.batch.take_flush(false);
        assert_eq!(flush.position.kafka_offset, Some(5));
        assert_eq!(flush.position.commit_lsn, Lsn(10));
        assert!(flush.rows.is_empty());
    }

    #[test]
    fn a_message_set_aside_inside_a_frame_is_not_one_of_its_messages() {
        let mut f = Feed::new(AppliedPosition::default(), 100);
        f.push(Action::Begin, 10);
        f.push(Action::Insert, 10);
        f.batch.set_aside(2, letter(2));
        f.offset = 3;
        f.push(Action::Insert, 10);
        let commit = Change::Commit(TxnBoundary {
            xid: 1,
            lsn: Lsn(10),
            nextlsn: Lsn(11),
            timestamp: None,
            messages: Some(2),
            snapshot: None,
        });
        assert!(f.batch.framing_error(&commit).is_none());
        f.batch.push(4, commit).unwrap();
        let flush = f.batch.take_flush(false);
        assert_eq!(flush.rows.len(), 2);
        assert_eq!(flush.frames, 1);
        assert_eq!(flush.position.kafka_offset, Some(4));
        assert_eq!(flush.dead_letters.len(), 1);
    }

    #[test]
    fn framing_errors_are_found_without_changing_the_batch() {
        let mut f = Feed::new(AppliedPosition::default(), 100);
        assert!(f.batch.framing_error(&ev(Action::Commit, 5)).is_some());
        assert!(f.batch.framing_error(&ev(Action::Insert, 5)).is_some());
        f.push(Action::Begin, 10);
        f.push(Action::Insert, 10);
        assert!(f.batch.framing_error(&ev(Action::Commit, 11)).is_some());
        assert!(f.batch.framing_error(&ev(Action::Commit, 10)).is_none());
        f.push(Action::Commit, 10);
        assert_eq!(f.batch.take_flush(false).rows.len(), 1);
    }

    #[test]
    fn a_removed_row_keeps_the_frame_ends_in_step() {
        let mut f = Feed::new(AppliedPosition::default(), 100);
        f.frame(10, 2);
        f.frame(20, 2);
        let mut flush = f.batch.take_flush(false);
        let row = flush.remove_row(1).unwrap();
        assert_eq!(row.offset, 2);
        assert_eq!(flush.rows.len(), 3);
        assert_eq!(flush.frame_ends[0].rows, 1);
        assert_eq!(flush.frame_ends[1].rows, 3);
        assert!(flush.remove_row(3).is_none());
    }

    #[test]
    fn the_position_covers_the_offset_of_the_last_complete_frames_commit() {
        let mut f = Feed::new(AppliedPosition::default(), 3);
        f.frame(10, 1); // offsets 0..=2
        let flush = f.batch.take_flush(false);
        assert_eq!(flush.position.kafka_offset, Some(2));
        f.batch.flushed(flush.position);
        // A transaction larger than a batch: its chunks record the offset before its `B`, so a
        // restart reads the frame from its start and skips the rows the count says are applied.
        f.push(Action::Begin, 15); // 3: cut by a new begin
        f.push(Action::Begin, 20); // 4
        f.push(Action::Insert, 20);
        f.push(Action::Insert, 20);
        assert_eq!(f.push(Action::Insert, 20), Next::Flush);
        let chunk = f.batch.take_flush(true);
        assert_eq!(chunk.position.partial_rows, 3);
        assert_eq!(chunk.position.kafka_offset, Some(3));
        f.batch.flushed(chunk.position);
        f.push(Action::Commit, 20); // 8
        assert_eq!(f.batch.take_flush(false).position.kafka_offset, Some(8));
        // Skipped copies move it too.
        let mut g = Feed::new(
            AppliedPosition {
                commit_lsn: Lsn(20),
                ..Default::default()
            },
            100,
        );
        g.frame(20, 1);
        assert_eq!(g.batch.take_flush(false).position.kafka_offset, Some(2));
    }

    #[test]
    fn a_copy_resent_within_the_same_batch_is_skipped() {
        let mut f = Feed::new(AppliedPosition::default(), 100);
        f.frame(10, 2);
        f.push(Action::Begin, 20);
        f.push(Action::Insert, 20); // cut by cdc's restart
        f.frame(10, 2); // cdc re-sends from before 10
        f.frame(20, 1);
        let flush = f.batch.take_flush(false);
        let offsets: Vec<i64> = flush.rows.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, vec![1, 2, 11]);
        assert_eq!(flush.frames, 2);
    }

    #[test]
    fn the_count_of_a_partly_applied_transaction_survives_flushes_of_earlier_copies() {
        let applied = AppliedPosition {
            commit_lsn: Lsn(10),
            partial_lsn: Lsn(50),
            partial_rows: 3,
            kafka_offset: None,
        };
        let mut f = Feed::new(applied, 100);
        f.frame(10, 2); // a re-sent copy, skipped; its commit arms the deadline
        let flush = f.batch.take_flush(false);
        assert_eq!(
            flush.position,
            AppliedPosition {
                kafka_offset: Some(3),
                ..applied
            },
            "the partial count must be kept"
        );
        f.batch.flushed(flush.position);
        f.frame(50, 5);
        let flush = f.batch.take_flush(false);
        assert_eq!(flush.rows.len(), 2, "only the rows not applied before");
    }

    #[test]
    fn rows_outside_a_frame_and_mismatched_commits_are_framing_errors() {
        let mut b = Batch::new(AppliedPosition::default(), 10, usize::MAX, Duration::ZERO);
        assert!(b.push(0, ev(Action::Insert, 1)).is_err());
        assert!(b.push(1, ev(Action::Commit, 1)).is_err());
        b.push(2, ev(Action::Begin, 5)).unwrap();
        assert!(b.push(3, ev(Action::Commit, 6)).is_err());
    }
}
