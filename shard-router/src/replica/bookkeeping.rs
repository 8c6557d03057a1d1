//! The router's own tables in each replica:
//! - `_cascade_position`: per (topic, partition), what the replica holds (see [`AppliedPosition`]),
//!   written in the same transaction as the rows, with `kafka_offset`, the offset of the last message
//!   the position covers (-1: unknown; replicas from before the column get it at start, see
//!   [`migrate`]);
//! - `_cascade_truncate`: the barriers ([`crate::barrier`]), one row per partition that reached a
//!   barrier (with its partition number) and one with partition `-1` once its action ran. The key
//!   column is `table_name`, the name it had when truncates were the only barrier;
//! - `_cascade_dead_letters`: per (topic, partition, offset), an event set aside in `<topic>.dlq`
//!   ([`crate::dead_letter`]): why, the error, where it is in the DLQ, when it was made, and once
//!   `replay-dlq` dealt with it, when and how (`replayed` or `discarded`). Recorded in the same
//!   transaction as the position that moves past the event.
//!
//! LSNs are stored as BIGINT holding the u64's bits (`as i64` and back), so every LSN round-trips
//! exactly; they are only ever compared in Rust.

use shared::Lsn;

use super::exec::Bookkeeping;
use crate::batch::AppliedPosition;
use crate::dead_letter::Recorded;
use crate::dialect::Dialect;
use crate::sql::{quote_ident, Placeholders};
use crate::types::Bind;

const POSITION_TABLE: &str = "_cascade_position";
const TRUNCATE_TABLE: &str = "_cascade_truncate";
pub(crate) const DEAD_LETTER_TABLE: &str = "_cascade_dead_letters";

pub(super) fn create_tables(dialect: Dialect) -> Vec<String> {
    match dialect {
        Dialect::MySql => vec![
            format!(
                "CREATE TABLE IF NOT EXISTS `{POSITION_TABLE}` (\
                 topic VARCHAR(249) CHARACTER SET ascii NOT NULL, kafka_partition INT NOT NULL, \
                 commit_lsn BIGINT NOT NULL, partial_lsn BIGINT NOT NULL, partial_rows BIGINT NOT NULL, \
                 kafka_offset BIGINT NOT NULL DEFAULT -1, \
                 updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6), \
                 PRIMARY KEY (topic, kafka_partition)) ENGINE=InnoDB"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS `{TRUNCATE_TABLE}` (\
                 topic VARCHAR(249) CHARACTER SET ascii NOT NULL, \
                 table_name VARCHAR(300) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL, \
                 truncate_lsn BIGINT NOT NULL, kafka_partition INT NOT NULL, \
                 PRIMARY KEY (topic, table_name, truncate_lsn, kafka_partition)) ENGINE=InnoDB"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS `{DEAD_LETTER_TABLE}` (\
                 topic VARCHAR(249) CHARACTER SET ascii NOT NULL, kafka_partition INT NOT NULL, \
                 kafka_offset BIGINT NOT NULL, reason VARCHAR(16) CHARACTER SET ascii NOT NULL, \
                 error TEXT CHARACTER SET utf8mb4 NOT NULL, dlq_partition INT NOT NULL, dlq_offset BIGINT NOT NULL, \
                 created_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), \
                 resolved_at TIMESTAMP(6) NULL, resolution VARCHAR(16) CHARACTER SET ascii NULL, \
                 PRIMARY KEY (topic, kafka_partition, kafka_offset)) ENGINE=InnoDB"
            ),
        ],
        Dialect::Sqlite | Dialect::Postgres => vec![
            format!(
                "CREATE TABLE IF NOT EXISTS \"{POSITION_TABLE}\" (\
                 topic TEXT NOT NULL, kafka_partition INTEGER NOT NULL, \
                 commit_lsn BIGINT NOT NULL, partial_lsn BIGINT NOT NULL, partial_rows BIGINT NOT NULL, \
                 kafka_offset BIGINT NOT NULL DEFAULT -1, \
                 PRIMARY KEY (topic, kafka_partition))"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS \"{TRUNCATE_TABLE}\" (\
                 topic TEXT NOT NULL, table_name TEXT NOT NULL, truncate_lsn BIGINT NOT NULL, \
                 kafka_partition INTEGER NOT NULL, \
                 PRIMARY KEY (topic, table_name, truncate_lsn, kafka_partition))"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS \"{DEAD_LETTER_TABLE}\" (\
                 topic TEXT NOT NULL, kafka_partition INTEGER NOT NULL, kafka_offset BIGINT NOT NULL, \
                 reason TEXT NOT NULL, error TEXT NOT NULL, dlq_partition INTEGER NOT NULL, dlq_offset BIGINT NOT NULL, \
                 created_at {now_type} NOT NULL DEFAULT {now}, resolved_at {now_type}, resolution TEXT, \
                 PRIMARY KEY (topic, kafka_partition, kafka_offset))",
                now_type = if dialect == Dialect::Postgres { "TIMESTAMPTZ" } else { "TEXT" },
                now = now(dialect),
            ),
        ],
    }
}

/// The current time as the dialect writes it in a default or an update.
fn now(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::MySql => "CURRENT_TIMESTAMP(6)",
        Dialect::Postgres => "now()",
        Dialect::Sqlite => "CURRENT_TIMESTAMP",
    }
}

/// Brings a position table created by an older router up to date: adds `kafka_offset` (-1, unknown,
/// in existing rows). Run after [`create_tables`]; "the column exists" (MySQL 1060, SQLite's
/// duplicate column) counts as done, and PostgreSQL says `IF NOT EXISTS`.
pub(super) fn migrate(dialect: Dialect) -> Vec<String> {
    let t = table(dialect, POSITION_TABLE);
    let column = "kafka_offset BIGINT NOT NULL DEFAULT -1";
    vec![match dialect {
        Dialect::Postgres => format!("ALTER TABLE {t} ADD COLUMN IF NOT EXISTS {column}"),
        Dialect::MySql | Dialect::Sqlite => format!("ALTER TABLE {t} ADD COLUMN {column}"),
    }]
}

/// `n` parameter placeholders (`?` or `$1..$n`), numbered like the data statements'.
fn params(dialect: Dialect, n: usize) -> Vec<String> {
    let mut p = Placeholders::new(dialect);
    (0..n).map(|_| p.next_uncast()).collect()
}

/// A bookkeeping table's name, quoted for the dialect.
fn table(dialect: Dialect, name: &str) -> String {
    quote_ident(dialect, name)
}

fn lsn(l: Lsn) -> Bind {
    Bind::Int(l.0 as i64)
}

/// An insert that does nothing when the row exists.
fn insert_ignoring(dialect: Dialect, name: &str, columns: &str, n: usize) -> String {
    let p = params(dialect, n).join(", ");
    let t = table(dialect, name);
    match dialect {
        Dialect::MySql => format!("INSERT IGNORE INTO {t} ({columns}) VALUES ({p})"),
        _ => format!("INSERT INTO {t} ({columns}) VALUES ({p}) ON CONFLICT DO NOTHING"),
    }
}

/// The statements that record `position` (and a barrier arrival, and dead letters) inside an apply
/// transaction.
pub(super) fn position_statements(
    dialect: Dialect,
    topic: &str,
    partition: i32,
    position: &AppliedPosition,
    arrival: Option<(&str, Lsn)>,
    dead_letters: &[Recorded],
) -> Vec<Bookkeeping> {
    let p = params(dialect, 6).join(", ");
    let columns = "topic, kafka_partition, commit_lsn, partial_lsn, partial_rows, kafka_offset";
    let t = table(dialect, POSITION_TABLE);
    let sql = match dialect {
        Dialect::MySql => format!(
            "INSERT INTO {t} ({columns}) VALUES ({p}) ON DUPLICATE KEY UPDATE \
             commit_lsn = VALUES(commit_lsn), partial_lsn = VALUES(partial_lsn), partial_rows = VALUES(partial_rows), \
             kafka_offset = VALUES(kafka_offset)"
        ),
        _ => format!(
            "INSERT INTO {t} ({columns}) VALUES ({p}) ON CONFLICT (topic, kafka_partition) DO UPDATE SET \
             commit_lsn = excluded.commit_lsn, partial_lsn = excluded.partial_lsn, partial_rows = excluded.partial_rows, \
             kafka_offset = excluded.kafka_offset"
        ),
    };
    let mut out = vec![Bookkeeping {
        sql,
        binds: vec![
            Bind::Text(topic.to_owned()),
            Bind::Int(i64::from(partition)),
            lsn(position.commit_lsn),
            lsn(position.partial_lsn),
            Bind::Int(i64::try_from(position.partial_rows).unwrap_or(i64::MAX)),
            Bind::Int(position.kafka_offset.unwrap_or(-1)),
        ],
    }];
    if let Some((key, at)) = arrival {
        out.push(Bookkeeping {
            sql: insert_ignoring(
                dialect,
                TRUNCATE_TABLE,
                "topic, table_name, truncate_lsn, kafka_partition",
                4,
            ),
            binds: vec![
                Bind::Text(topic.to_owned()),
                Bind::Text(key.to_owned()),
                lsn(at),
                Bind::Int(i64::from(partition)),
            ],
        });
    }
    for letter in dead_letters {
        out.push(Bookkeeping {
            sql: insert_ignoring(
                dialect,
                DEAD_LETTER_TABLE,
                "topic, kafka_partition, kafka_offset, reason, error, dlq_partition, dlq_offset",
                7,
            ),
            binds: vec![
                Bind::Text(topic.to_owned()),
                Bind::Int(i64::from(partition)),
                Bind::Int(letter.offset),
                Bind::Text(letter.reason.as_str().to_owned()),
                Bind::Text(letter.error.clone()),
                Bind::Int(i64::from(letter.dlq.partition)),
                Bind::Int(letter.dlq.offset),
            ],
        });
    }
    out
}

/// The dead letters recorded for a partition: `(kafka_offset, dlq_partition, dlq_offset)` rows.
pub(super) fn select_dead_letters(dialect: Dialect, topic: &str, partition: i32) -> Bookkeeping {
    let p = params(dialect, 2);
    Bookkeeping {
        sql: format!(
            "SELECT kafka_offset, dlq_partition, dlq_offset FROM {} WHERE topic = {} AND kafka_partition = {} ORDER BY kafka_offset",
            table(dialect, DEAD_LETTER_TABLE),
            p[0],
            p[1]
        ),
        binds: vec![
            Bind::Text(topic.to_owned()),
            Bind::Int(i64::from(partition)),
        ],
    }
}

/// Marks a dead letter resolved (`replayed` or `discarded`), affecting no row when it is not
/// recorded or already resolved: the claim of a replay.
pub(super) fn resolve_dead_letter(
    dialect: Dialect,
    topic: &str,
    partition: i32,
    offset: i64,
    resolution: &str,
) -> Bookkeeping {
    let p = params(dialect, 4);
    Bookkeeping {
        sql: format!(
            "UPDATE {} SET resolved_at = {}, resolution = {} WHERE topic = {} AND kafka_partition = {} AND kafka_offset = {} AND resolved_at IS NULL",
            table(dialect, DEAD_LETTER_TABLE),
            now(dialect),
            p[0],
            p[1],
            p[2],
            p[3]
        ),
        binds: vec![
            Bind::Text(resolution.to_owned()),
            Bind::Text(topic.to_owned()),
            Bind::Int(i64::from(partition)),
            Bind::Int(offset),
        ],
    }
}

/// `(commit_lsn, partial_lsn, partial_rows)` as stored: what the fence compares. The Kafka offset is
/// not part of it: it follows the LSNs (a flush that only skips re-sent frames moves it alone).
pub(super) fn stored(position: &AppliedPosition) -> super::exec::StoredPosition {
    (
        position.commit_lsn.0 as i64,
        position.partial_lsn.0 as i64,
        i64::try_from(position.partial_rows).unwrap_or(i64::MAX),
    )
}

/// Reads the partition's position row (`commit_lsn, partial_lsn, partial_rows, kafka_offset`); with
/// `lock`, locks it until the end of the transaction (PostgreSQL and MySQL; SQLite has a single writer
/// anyway).
pub(super) fn select_position(
    dialect: Dialect,
    topic: &str,
    partition: i32,
    lock: bool,
) -> Bookkeeping {
    let p = params(dialect, 2);
    let lock = if lock && dialect != Dialect::Sqlite {
        " FOR UPDATE"
    } else {
        ""
    };
    Bookkeeping {
        sql: format!(
            "SELECT commit_lsn, partial_lsn, partial_rows, kafka_offset FROM {} WHERE topic = {} AND kafka_partition = {}{lock}",
            table(dialect, POSITION_TABLE),
            p[0],
            p[1]
        ),
        binds: vec![
            Bind::Text(topic.to_owned()),
            Bind::Int(i64::from(partition)),
        ],
    }
}

/// The position a [`select_position`] row holds (zero if none).
pub(super) fn position_of(row: Option<&[i64]>) -> AppliedPosition {
    match row {
        Some(&[c, p, r, k]) => AppliedPosition {
            commit_lsn: Lsn(c as u64),
            partial_lsn: Lsn(p as u64),
            partial_rows: u64::try_from(r).unwrap_or(0),
            kafka_offset: Some(k).filter(|k| *k >= 0),
        },
        _ => AppliedPosition::default(),
    }
}

/// Reads how many partitions reached a barrier and whether it is done: `(arrived, done)` counts.
pub(super) fn barrier_state(dialect: Dialect, topic: &str, key: &str, at: Lsn) -> Bookkeeping {
    let p = params(dialect, 3);
    Bookkeeping {
        sql: format!(
            "SELECT COUNT(CASE WHEN kafka_partition >= 0 THEN 1 END), COUNT(CASE WHEN kafka_partition < 0 THEN 1 END) \
             FROM {} WHERE topic = {} AND table_name = {} AND truncate_lsn = {}",
            table(dialect, TRUNCATE_TABLE),
            p[0],
            p[1],
            p[2]
        ),
        binds: vec![
            Bind::Text(topic.to_owned()),
            Bind::Text(key.to_owned()),
            lsn(at),
        ],
    }
}

/// Claims a barrier's action: inserts the "done" row, affecting no row if another partition did.
pub(super) fn barrier_claim(dialect: Dialect, topic: &str, key: &str, at: Lsn) -> Bookkeeping {
    Bookkeeping {
        sql: insert_ignoring(
            dialect,
            TRUNCATE_TABLE,
            "topic, table_name, truncate_lsn, kafka_partition",
            4,
        ),
        binds: vec![
            Bind::Text(topic.to_owned()),
            Bind::Text(key.to_owned()),
            lsn(at),
            Bind::Int(-1),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_upsert_per_dialect() {
        let pos = AppliedPosition {
            commit_lsn: Lsn(u64::MAX),
            partial_lsn: Lsn(5),
            partial_rows: 2,
            kafka_offset: Some(41),
        };
        let s = position_statements(
            Dialect::Postgres,
            "cascade.main",
            3,
            &pos,
            Some(("public.t", Lsn(9))),
            &[],
        );
        assert_eq!(s.len(), 2);
        assert!(s[0]
            .sql
            .contains("VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (topic, kafka_partition)"));
        assert_eq!(s[0].binds[5], Bind::Int(41));
        // The u64's bits survive the trip through BIGINT.
        assert_eq!(s[0].binds[2], Bind::Int(-1));
        assert_eq!(Lsn(-1i64 as u64), Lsn(u64::MAX));
        assert!(s[1].sql.ends_with("ON CONFLICT DO NOTHING"));
        let m = position_statements(Dialect::MySql, "cascade.main", 3, &pos, None, &[]);
        assert_eq!(m.len(), 1);
        assert!(m[0].sql.contains("ON DUPLICATE KEY UPDATE"));
        assert!(m[0].sql.contains("VALUES (?, ?, ?, ?, ?, ?)"));
        assert!(m[0].sql.contains("kafka_offset = VALUES(kafka_offset)"));
    }

    #[test]
    fn a_stored_offset_of_minus_one_is_unknown() {
        let p = position_of(Some(&[7, 0, 0, -1]));
        assert_eq!(p.commit_lsn, Lsn(7));
        assert_eq!(p.kafka_offset, None);
        assert_eq!(position_of(Some(&[7, 0, 0, 12])).kafka_offset, Some(12));
        assert!(position_of(None).is_empty());
        let unknown = position_statements(
            Dialect::Sqlite,
            "t",
            0,
            &AppliedPosition::default(),
            None,
            &[],
        );
        assert_eq!(unknown[0].binds[5], Bind::Int(-1));
    }

    #[test]
    fn the_offset_column_is_added_to_older_tables_idempotently() {
        assert_eq!(
            migrate(Dialect::Postgres),
            ["ALTER TABLE \"_cascade_position\" ADD COLUMN IF NOT EXISTS kafka_offset BIGINT NOT NULL DEFAULT -1"]
        );
        assert_eq!(
            migrate(Dialect::MySql),
            ["ALTER TABLE `_cascade_position` ADD COLUMN kafka_offset BIGINT NOT NULL DEFAULT -1"]
        );
        for d in [Dialect::MySql, Dialect::Sqlite, Dialect::Postgres] {
            assert!(create_tables(d)[0].contains("kafka_offset BIGINT NOT NULL DEFAULT -1"));
        }
    }

    #[test]
    fn dead_letters_are_recorded_with_the_position_and_resolved_once() {
        use crate::dead_letter::{DlqPosition, Reason};
        let letter = Recorded {
            offset: 17,
            reason: Reason::Refused,
            error: "too long".into(),
            dlq: DlqPosition {
                partition: 2,
                offset: 5,
            },
        };
        for d in [Dialect::MySql, Dialect::Sqlite, Dialect::Postgres] {
            assert!(
                create_tables(d)[2].contains("PRIMARY KEY (topic, kafka_partition, kafka_offset)")
            );
            let s = position_statements(
                d,
                "t",
                2,
                &AppliedPosition::default(),
                None,
                std::slice::from_ref(&letter),
            );
            assert_eq!(s.len(), 2);
            assert!(s[1].sql.contains("_cascade_dead_letters"), "{}", s[1].sql);
            assert_eq!(s[1].binds[2], Bind::Int(17));
            assert_eq!(s[1].binds[3], Bind::Text("refused".into()));
            let r = resolve_dead_letter(d, "t", 2, 17, "replayed");
            assert!(r.sql.ends_with("AND resolved_at IS NULL"), "{}", r.sql);
            assert_eq!(r.binds.len(), 4);
        }
        assert!(create_tables(Dialect::Postgres)[2].contains("TIMESTAMPTZ NOT NULL DEFAULT now()"));
    }
}
