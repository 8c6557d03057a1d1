//! The wire codec: [`Change`] ⇄ the JSON of one wal2json `format-version 2` line, which is also the
//! value of each Kafka message (documented in `docs/event-format.md`), plus the `cascade-format` header
//! that names the format's version. cdc decodes wal2json's output and encodes Kafka messages with it; the
//! router checks the header and decodes with it, so both binaries read and write exactly one format.
//!
//! Decoding is where a change's shape is checked, once: a `B` without its LSNs, a delete without its old
//! key or an insert without columns is an error here and cannot reach a later stage. Errors never quote
//! the payload (it holds row values); they say what is wrong.

use serde::{Deserialize, Serialize};

use crate::change::{
    Action, Change, Column, Ddl, LogicalMessage, Origin, PkColumn, RowChange, RowOp, SchemaChange,
    TableName, Truncate, TxnBoundary,
};
use crate::Lsn;

/// Kafka header that names the version of this format; present on every message cdc publishes.
pub const FORMAT_HEADER: &str = "cascade-format";
/// The current version of the format, the value of [`FORMAT_HEADER`].
pub const FORMAT_VERSION: &str = "1";

/// Why a payload or its header could not be read as a change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("not a wal2json v2 object ({category} error at line {line} column {column})")]
    NotAnObject {
        category: &'static str,
        line: usize,
        column: usize,
    },
    #[error("{action} message without {what}")]
    Missing {
        action: &'static str,
        what: &'static str,
    },
    #[error("message without the {FORMAT_HEADER} header; it was not published by cdc")]
    NoFormatHeader,
    #[error("unknown {FORMAT_HEADER} version {0:?}: this build reads version {FORMAT_VERSION}; upgrade the router")]
    UnknownFormat(String),
}

/// Checks the `cascade-format` header of a Kafka message: it must name the version this build reads.
pub fn check_format(header: Option<&[u8]>) -> Result<(), DecodeError> {
    match header {
        None => Err(DecodeError::NoFormatHeader),
        Some(v) if v == FORMAT_VERSION.as_bytes() => Ok(()),
        Some(v) => Err(DecodeError::UnknownFormat(
            String::from_utf8_lossy(v).into_owned(),
        )),
    }
}

/// The JSON object as it is on the wire; field order is the order of the output.
#[derive(Serialize, Deserialize)]
struct Wire<C, P, S, D> {
    action: Action,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    xid: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    timestamp: Option<S>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lsn: Option<Lsn>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nextlsn: Option<Lsn>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    messages: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    partitions: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    snapshot: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    schema: Option<S>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    table: Option<S>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    columns: Option<C>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    identity: Option<C>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pk: Option<P>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    transactional: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prefix: Option<S>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    content: Option<S>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ddl: Option<D>,
}

type OwnedWire = Wire<Vec<Column>, Vec<PkColumn>, String, Ddl>;
type BorrowedWire<'a> = Wire<&'a [Column], &'a [PkColumn], &'a str, &'a Ddl>;

impl<'a> BorrowedWire<'a> {
    fn bare(action: Action, origin: &'a Origin) -> Self {
        Wire {
            action,
            xid: origin.xid,
            timestamp: origin.timestamp.as_deref(),
            lsn: origin.lsn,
            nextlsn: None,
            messages: None,
            partitions: None,
            snapshot: None,
            schema: None,
            table: None,
            columns: None,
            identity: None,
            pk: None,
            transactional: None,
            prefix: None,
            content: None,
            ddl: None,
        }
    }
}

/// Encodes a change as the JSON value of a Kafka message.
pub fn encode(change: &Change) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    encode_into(change, &mut out);
    out
}

/// Encodes a change, appending to `out`.
pub fn encode_into(change: &Change, out: &mut Vec<u8>) {
    let no_origin = Origin::default();
    let wire = match change {
        Change::Begin(t) | Change::Commit(t) => Wire {
            nextlsn: Some(t.nextlsn),
            messages: t.messages,
            snapshot: t.snapshot,
            xid: Some(t.xid),
            timestamp: t.timestamp.as_deref(),
            lsn: Some(t.lsn),
            ..BorrowedWire::bare(change.action(), &no_origin)
        },
        Change::Row(row) => {
            let (columns, identity) = match &row.op {
                RowOp::Insert { new } => (Some(new.as_slice()), None),
                RowOp::Update { new, old } => (Some(new.as_slice()), old.as_deref()),
                RowOp::Delete { old } => (None, Some(old.as_slice())),
            };
            Wire {
                schema: Some(row.table.schema.as_str()),
                table: Some(row.table.name.as_str()),
                columns,
                identity,
                pk: (!row.pk.is_empty()).then_some(row.pk.as_slice()),
                ..BorrowedWire::bare(row.action(), &row.origin)
            }
        }
        Change::Truncate(t) => Wire {
            schema: Some(t.table.schema.as_str()),
            table: Some(t.table.name.as_str()),
            partitions: t.partitions,
            ..BorrowedWire::bare(Action::Truncate, &t.origin)
        },
        Change::Schema(c) => Wire {
            schema: Some(c.table.schema.as_str()),
            table: Some(c.table.name.as_str()),
            partitions: c.partitions,
            ddl: Some(&*c.ddl),
            ..BorrowedWire::bare(Action::Schema, &c.origin)
        },
        Change::Message(m) => Wire {
            transactional: Some(m.transactional),
            prefix: Some(m.prefix.as_str()),
            content: Some(m.content.as_str()),
            ..BorrowedWire::bare(Action::Message, &m.origin)
        },
    };
    // Serializing strings, integers and raw JSON into a Vec cannot fail.
    let _ = serde_json::to_writer(out, &wire);
}

/// Decodes one wal2json `format-version 2` line or Kafka message value, checking that it carries what
/// its action needs.
pub fn decode(payload: &[u8]) -> Result<Change, DecodeError> {
    let wire: OwnedWire =
        serde_json::from_slice(payload).map_err(|e| DecodeError::NotAnObject {
            category: match e.classify() {
                serde_json::error::Category::Io => "io",
                serde_json::error::Category::Syntax => "syntax",
                serde_json::error::Category::Data => "data",
                serde_json::error::Category::Eof => "eof",
            },
            line: e.line(),
            column: e.column(),
        })?;
    let action = wire.action;
    let missing = |what| DecodeError::Missing {
        action: action.as_str(),
        what,
    };
    let origin = Origin {
        xid: wire.xid,
        lsn: wire.lsn,
        timestamp: wire.timestamp,
    };
    let table = |schema: Option<String>, table: Option<String>| match (schema, table) {
        (Some(schema), Some(name)) => Ok(TableName { schema, name }),
        _ => Err(missing("schema and table")),
    };
    Ok(match action {
        Action::Begin | Action::Commit => {
            let boundary = TxnBoundary {
                xid: origin
                    .xid
                    .ok_or_else(|| missing("xid (is include-xids on?)"))?,
                lsn: origin
                    .lsn
                    .ok_or_else(|| missing("lsn (is include-lsn on?)"))?,
                nextlsn: wire
                    .nextlsn
                    .ok_or_else(|| missing("nextlsn (is include-lsn on?)"))?,
                timestamp: origin.timestamp,
                messages: wire.messages,
                snapshot: wire.snapshot,
            };
            if action == Action::Begin {
                Change::Begin(boundary)
            } else {
                Change::Commit(boundary)
            }
        }
        Action::Insert | Action::Update | Action::Delete => {
            let op = match action {
                Action::Insert => RowOp::Insert {
                    new: wire.columns.ok_or_else(|| missing("columns"))?,
                },
                Action::Update => RowOp::Update {
                    new: wire.columns.ok_or_else(|| missing("columns"))?,
                    old: wire.identity,
                },
                _ => RowOp::Delete {
                    old: wire.identity.ok_or_else(|| missing("identity"))?,
                },
            };
            Change::Row(RowChange {
                table: table(wire.schema, wire.table)?,
                origin,
                op,
                pk: wire.pk.unwrap_or_default(),
            })
        }
        Action::Truncate => Change::Truncate(Truncate {
            table: table(wire.schema, wire.table)?,
            partitions: wire.partitions,
            origin,
        }),
        Action::Schema => Change::Schema(SchemaChange {
            table: table(wire.schema, wire.table)?,
            partitions: wire.partitions,
            ddl: Box::new(wire.ddl.ok_or_else(|| missing("ddl"))?),
            origin,
        }),
        Action::Message => Change::Message(LogicalMessage {
            transactional: wire.transactional.unwrap_or(false),
            prefix: wire.prefix.ok_or_else(|| missing("prefix"))?,
            content: wire.content.ok_or_else(|| missing("content"))?,
            origin,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LINES: [&str; 11] = [
        r#"{"action":"B","xid":726,"timestamp":"2026-11-21 20:03:00.767411+00","lsn":"0/1947E28","nextlsn":"0/1948458"}"#,
        r#"{"action":"I","xid":727,"timestamp":"2026-11-21 20:03:00.783386+00","lsn":"0/1948458","schema":"public","table":"t","columns":[{"name":"n","type":"numeric(30,10)","typeoid":1700,"value":12345678901234567890.0123456789},{"name":"s","type":"text","typeoid":25,"value":"q\"uo'te\\ ü"},{"name":"x","type":"text","typeoid":25,"value":null}],"pk":[{"name":"id","type":"integer","typeoid":23}]}"#,
        r#"{"action":"U","xid":732,"lsn":"0/194D8F0","schema":"public","table":"t2","columns":[{"name":"id","type":"integer","typeoid":23,"value":3}],"identity":[{"name":"id","type":"integer","typeoid":23,"value":1}],"pk":[{"name":"id","type":"integer","typeoid":23}]}"#,
        r#"{"action":"U","xid":732,"lsn":"0/194D8F0","schema":"public","table":"nopk","columns":[{"name":"a","type":"text","value":"x"}]}"#,
        r#"{"action":"D","xid":732,"lsn":"0/194D988","schema":"public","table":"t2","identity":[{"name":"id","type":"integer","typeoid":23,"value":3}],"pk":[{"name":"id","type":"integer","typeoid":23}]}"#,
        r#"{"action":"T","xid":731,"lsn":"0/1949550","schema":"public","table":"t"}"#,
        r#"{"action":"C","xid":726,"timestamp":"2026-11-21 20:03:00.767411+00","lsn":"0/1947E28","nextlsn":"0/1948458"}"#,
        r#"{"action":"M","transactional":false,"prefix":"p","content":"hello"}"#,
        r#"{"action":"C","xid":0,"timestamp":"2026-12-02 03:35:05.408841+00","lsn":"0/1942BC0","nextlsn":"0/1942BC1","messages":2,"snapshot":7}"#,
        r#"{"action":"S","xid":740,"timestamp":"2026-12-08 01:00:00.5+00","lsn":"0/1950000","partitions":3,"schema":"public","table":"t","ddl":{"command":"ALTER TABLE","recopy":false,"before":{"schema":"public","table":"t","columns":[{"attnum":1,"name":"id","type":"integer","typeoid":23,"not_null":true}],"pk":["id"],"indexes":[]},"after":{"schema":"public","table":"t","columns":[{"attnum":1,"name":"id","type":"integer","typeoid":23,"not_null":true},{"attnum":2,"name":"tier","type":"text","typeoid":25,"not_null":true,"fill":"basic"}],"pk":["id"],"indexes":[{"name":"t_tier","columns":["tier"],"unique":false}]}}}"#,
        r#"{"action":"S","xid":741,"lsn":"0/1950100","schema":"public","table":"t","ddl":{"command":"DROP TABLE","recopy":false,"before":{"schema":"public","table":"t","columns":[],"pk":[],"indexes":[]}}}"#,
    ];

    #[test]
    fn every_action_round_trips_byte_for_byte() {
        use Action::*;
        let actions: Vec<Action> = LINES
            .iter()
            .map(|line| {
                let change = decode(line.as_bytes()).unwrap();
                assert_eq!(String::from_utf8(encode(&change)).unwrap(), *line);
                change.action()
            })
            .collect();
        assert_eq!(
            actions,
            vec![
                Begin, Insert, Update, Update, Delete, Truncate, Commit, Message, Commit, Schema,
                Schema
            ]
        );
    }

    #[test]
    fn keeps_numeric_digits() {
        let Change::Row(row) = decode(LINES[1].as_bytes()).unwrap() else {
            panic!("not a row")
        };
        let new = row.new_values().unwrap();
        assert_eq!(new[0].value.get(), "12345678901234567890.0123456789");
        assert_eq!(new[2].value.get(), "null");
        assert_eq!(row.table.to_string(), "public.t");
    }

    #[test]
    fn shapes_are_checked_and_errors_never_quote_values() {
        let bad = br#"{"action":"I","schema":"public","table":"t","columns":[{"name":"secret","type":"text","value":"hunter2"}"#;
        let msg = decode(bad).unwrap_err().to_string();
        assert!(!msg.contains("hunter2"), "{msg}");
        assert!(msg.contains("not a wal2json v2 object"), "{msg}");
        let cases: [(&[u8], &str); 7] = [
            (
                br#"{"action":"S","schema":"public","table":"t"}"#,
                "S message without ddl",
            ),
            (
                br#"{"action":"I","schema":"public","table":"t"}"#,
                "I message without columns",
            ),
            (
                br#"{"action":"D","schema":"public","table":"t"}"#,
                "D message without identity",
            ),
            (
                br#"{"action":"U","table":"t","columns":[]}"#,
                "U message without schema and table",
            ),
            (
                br#"{"action":"B","lsn":"0/1","nextlsn":"0/2"}"#,
                "B message without xid",
            ),
            (
                br#"{"action":"C","xid":1,"lsn":"0/1"}"#,
                "C message without nextlsn",
            ),
            (br#"{"action":"X"}"#, "not a wal2json v2 object"),
        ];
        for (payload, expected) in cases {
            let msg = decode(payload).unwrap_err().to_string();
            assert!(msg.contains(expected), "{msg} should say {expected}");
        }
    }

    #[test]
    fn the_format_header_is_checked() {
        assert_eq!(check_format(Some(b"1")), Ok(()));
        assert_eq!(check_format(None), Err(DecodeError::NoFormatHeader));
        let err = check_format(Some(b"2")).unwrap_err();
        assert_eq!(err, DecodeError::UnknownFormat("2".into()));
        assert!(err
            .to_string()
            .contains("unknown cascade-format version \"2\""));
    }

    fn arb_column() -> impl Strategy<Value = Column> {
        let value = prop_oneof![
            Just("null".to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            "-?[1-9][0-9]{0,29}\\.[0-9]{1,30}",
            any::<String>().prop_map(|s| serde_json::to_string(&s).unwrap()),
        ];
        (
            "[a-z_\"é ]{1,12}",
            "[a-z ()0-9,]{1,20}",
            any::<Option<u32>>(),
            value,
        )
            .prop_map(|(name, type_name, typeoid, value)| Column {
                name,
                type_name,
                typeoid,
                value: serde_json::value::RawValue::from_string(value).unwrap(),
            })
    }

    proptest! {
        #[test]
        fn rows_round_trip(
            cols in proptest::collection::vec(arb_column(), 1..5),
            old in proptest::option::of(proptest::collection::vec(arb_column(), 1..3)),
            kind in 0..3u8,
            xid in any::<Option<u64>>(),
            lsn in any::<Option<u64>>(),
            schema in "[a-zA-Z_ \"]{1,10}",
        ) {
            let op = match (kind, old) {
                (0, _) => RowOp::Insert { new: cols },
                (1, old) => RowOp::Update { new: cols, old },
                (_, _) => RowOp::Delete { old: cols },
            };
            let change = Change::Row(RowChange {
                origin: Origin { xid, lsn: lsn.map(Lsn), timestamp: Some("2026-01-01 00:00:00+00".into()) },
                table: TableName::new(schema, "t"),
                op,
                pk: vec![PkColumn { name: "id".into(), type_name: "integer".into(), typeoid: Some(23) }],
            });
            let bytes = encode(&change);
            prop_assert_eq!(decode(&bytes).unwrap(), change);
        }
    }
}
