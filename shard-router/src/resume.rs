//! Where a partition task starts reading, and when it must not start at all. Pure.
//!
//! The replica's own position decides, not the consumer group's committed offset: a replica restored
//! from an older backup, or one that lost its last commits (PostgreSQL with `synchronous_commit=off`,
//! MariaDB with relaxed flushing, a failover to a lagging standby), is behind the group's offset, and
//! starting there would skip for good what the replica no longer holds. So a task seeks to the
//! message after the position's `kafka_offset` (see [`crate::batch`]), and the frames it reads again
//! are skipped by their commit LSN as usual.
//!
//! The router starts only where it can prove it continues: when that next offset is no longer in
//! the partition (deleted by retention while the router was down, or by `DeleteRecords`), or lies
//! beyond its end (the topic was deleted and recreated, the position comes from another topic or
//! cluster), the partition stops with a [`Gap`] instead of reading on from somewhere else.

use std::fmt;

use crate::batch::AppliedPosition;

/// The partition's log as the broker holds it now: the first available offset (low watermark) and
/// the offset the next message will get (high watermark).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    pub low: i64,
    pub high: i64,
}

/// What the start offset comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Basis {
    /// The message after the replica's `_cascade_position.kafka_offset`.
    Replica,
    /// The consumer group's committed offset: the replica has a position but recorded no Kafka offset
    /// (written by a router from before `kafka_offset`), until its next transaction records one.
    Group,
    /// The start of the partition: a replica that holds nothing of it yet.
    Beginning,
    /// The offset after the last message this router read (a consume error found it gone).
    Reading,
}

impl fmt::Display for Basis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Basis::Replica => "the replica's position (_cascade_position.kafka_offset + 1)",
            Basis::Group => "the consumer group's committed offset (the replica's position records no Kafka offset)",
            Basis::Beginning => "the beginning of the partition (nothing recorded)",
            Basis::Reading => "the offset after the last message this router read",
        })
    }
}

/// Where to read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Start {
    pub offset: i64,
    pub basis: Basis,
}

/// The partition cannot continue from where the replica left off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gap {
    /// The offset the replica needs next.
    pub next: i64,
    pub basis: Basis,
    pub bounds: Bounds,
}

impl Gap {
    /// Messages the replica needs were deleted before it applied them (rather than: its position is
    /// beyond the partition's end).
    pub fn deleted(&self) -> bool {
        self.next < self.bounds.low
    }
}

impl fmt::Display for Gap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Bounds { low, high } = self.bounds;
        let held = if high > low {
            format!("offsets {low} to {} are available", high - 1)
        } else {
            format!("it holds no messages (next offset {high})")
        };
        if self.deleted() {
            write!(
                f,
                "the replica needs offset {} next (from {}), but the partition's first available \
                 offset is {low} ({held}): messages {} to {} were deleted (retention, or deleted \
                 records) before this replica applied them. Re-create the replica: load it from a \
                 fresh copy of the source (or a snapshot), then start the router",
                self.next,
                self.basis,
                self.next,
                low - 1
            )
        } else {
            write!(
                f,
                "the replica needs offset {} next (from {}), but the partition ends before it ({held}): \
                 the topic was deleted and recreated, or the replica's position comes from another \
                 topic or cluster. Re-create the replica: load it from a fresh copy of the source (or \
                 a snapshot), then start the router",
                self.next, self.basis
            )
        }
    }
}

/// Decides where a partition task starts: after the replica's recorded offset when there is one; at
/// the group's committed offset for a position from before offsets were recorded (at the beginning if
/// the group has none, provided nothing was deleted); at the beginning for a replica that holds
/// nothing of the partition (a new replica receives everything Kafka still has: if retention already
/// removed the start, [`Start::offset`] is above 0 and the caller warns).
pub fn start(
    applied: &AppliedPosition,
    committed: Option<i64>,
    bounds: Bounds,
) -> Result<Start, Gap> {
    let (next, basis) = match applied.kafka_offset {
        Some(k) => (k.saturating_add(1), Basis::Replica),
        None if applied.is_empty() => {
            return Ok(Start {
                offset: bounds.low.max(0),
                basis: Basis::Beginning,
            })
        }
        None => match committed {
            Some(c) => (c, Basis::Group),
            None => (0, Basis::Beginning),
        },
    };
    // Beyond the end: only an empty partition proves it here. A broker's high watermark is exact on
    // Kafka but not on every Kafka-protocol broker (tansu 0.1 reports one past the first offset of
    // the last batch, below the true end), so a position past it is left to the fetch, which fails
    // with OFFSET_OUT_OF_RANGE when the offset is truly beyond the end (a consume error that stops
    // the partition with the same gap).
    if next < bounds.low || (bounds.high <= bounds.low && next > bounds.high) {
        return Err(Gap {
            next,
            basis,
            bounds,
        });
    }
    Ok(Start {
        offset: next,
        basis,
    })
}

#[cfg(test)]
mod tests {
    use shared::Lsn;

    use super::*;

    fn at(kafka_offset: Option<i64>) -> AppliedPosition {
        AppliedPosition {
            commit_lsn: Lsn(100),
            kafka_offset,
            ..Default::default()
        }
    }

    const LOG: Bounds = Bounds { low: 0, high: 50 };

    #[test]
    fn the_replica_position_wins_over_the_group_offset() {
        // A replica restored from a backup is behind the group's committed offset.
        let s = start(&at(Some(9)), Some(40), LOG).unwrap();
        assert_eq!(
            s,
            Start {
                offset: 10,
                basis: Basis::Replica
            }
        );
        // Caught up: the next message is the one not written yet.
        assert_eq!(start(&at(Some(49)), Some(50), LOG).unwrap().offset, 50);
    }

    #[test]
    fn a_new_replica_starts_at_the_beginning_whatever_the_group_committed() {
        let s = start(&AppliedPosition::default(), Some(40), LOG).unwrap();
        assert_eq!(
            s,
            Start {
                offset: 0,
                basis: Basis::Beginning
            }
        );
        let trimmed = Bounds { low: 20, high: 50 };
        assert_eq!(
            start(&AppliedPosition::default(), None, trimmed)
                .unwrap()
                .offset,
            20
        );
    }

    #[test]
    fn a_position_without_an_offset_falls_back_to_the_group_offset() {
        let s = start(&at(None), Some(30), LOG).unwrap();
        assert_eq!(
            s,
            Start {
                offset: 30,
                basis: Basis::Group
            }
        );
        assert_eq!(start(&at(None), None, LOG).unwrap().offset, 0);
        // Without a group offset and with the start deleted, nothing proves the replica continues.
        let gap = start(&at(None), None, Bounds { low: 5, high: 50 }).unwrap_err();
        assert!(gap.deleted());
    }

    #[test]
    fn messages_deleted_before_the_replica_applied_them_are_a_gap() {
        let bounds = Bounds { low: 30, high: 50 };
        let gap = start(&at(Some(9)), Some(50), bounds).unwrap_err();
        assert_eq!(
            gap,
            Gap {
                next: 10,
                basis: Basis::Replica,
                bounds
            }
        );
        assert!(gap.deleted());
        let text = gap.to_string();
        assert!(text.contains("needs offset 10 next"), "{text}");
        assert!(text.contains("first available offset is 30"), "{text}");
        assert!(text.contains("messages 10 to 29 were deleted"), "{text}");
        assert!(text.contains("Re-create the replica"), "{text}");
        // The group's offset is checked the same way.
        assert!(start(&at(None), Some(10), bounds).is_err());
    }

    #[test]
    fn a_position_beyond_the_end_of_the_partition_is_a_gap() {
        // The topic was recreated (it starts again at 0), or the position is another topic's.
        // An empty partition: the start proves it. A non-empty one: the fetch does (a high
        // watermark below the true end, as some brokers report, must not stop a partition).
        let empty = start(&at(Some(3)), None, Bounds { low: 0, high: 0 }).unwrap_err();
        assert!(!empty.deleted());
        let text = empty.to_string();
        assert!(text.contains("needs offset 4 next"), "{text}");
        assert!(text.contains("holds no messages"), "{text}");
        assert!(text.contains("deleted and recreated"), "{text}");
        let bounds = Bounds { low: 0, high: 7 };
        assert_eq!(start(&at(Some(999)), None, bounds).unwrap().offset, 1000);
    }
}
