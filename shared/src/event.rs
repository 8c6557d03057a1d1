//! The change event: Cascade's wire format on Kafka (documented in `docs/event-format.md`).
//!
//! Each Kafka message value is one JSON object shaped like a wal2json `format-version 2` line. Column values
//! are kept as the raw JSON text wal2json printed ([`RawValue`]), so a numeric such as
//! `12345678901234567890.0123456789` travels digit for digit and nothing is ever parsed through `f64`.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::Lsn;

/// Kafka header that names the version of this format; present on every message cdc publishes.
pub const FORMAT_HEADER: &str = "cascade-format";
/// The current version of the format, the value of [`FORMAT_HEADER`].
pub const FORMAT_VERSION: &str = "1";

/// What happened: wal2json's one-letter `action`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Action {
    /// Begin of a source transaction (within one partition).
    #[serde(rename = "B")]
    Begin,
    /// A row was inserted.
    #[serde(rename = "I")]
    Insert,
    /// A row was updated.
    #[serde(rename = "U")]
    Update,
    /// A row was deleted.
    #[serde(rename = "D")]
    Delete,
    /// A table was truncated.
    #[serde(rename = "T")]
    Truncate,
    /// Commit of a source transaction (within one partition).
    #[serde(rename = "C")]
    Commit,
    /// A logical decoding message (`pg_logical_emit_message`).
    #[serde(rename = "M")]
    Message,
}

impl Action {
    /// The wal2json letter.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Begin => "B",
            Action::Insert => "I",
            Action::Update => "U",
            Action::Delete => "D",
            Action::Truncate => "T",
            Action::Commit => "C",
            Action::Message => "M",
        }
    }

    /// True for the actions that change rows of a table (`I`, `U`, `D`, `T`).
    pub fn is_row_change(self) -> bool {
        matches!(
            self,
            Action::Insert | Action::Update | Action::Delete | Action::Truncate
        )
    }
}

/// A column with its value, as in wal2json's `columns` and `identity` arrays.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    /// The type as PostgreSQL names it, with its modifier: `numeric(30,10)`, `character varying(20)`.
    #[serde(rename = "type")]
    pub type_name: String,
    /// The type's OID in the source catalog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub typeoid: Option<u32>,
    /// The value exactly as wal2json printed it: a JSON number with every digit for numeric types, a
    /// string for everything else, `true`/`false` for booleans, `null` for NULL.
    pub value: Box<RawValue>,
}

impl PartialEq for Column {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.type_name == other.type_name
            && self.typeoid == other.typeoid
            && self.value.get() == other.value.get()
    }
}

/// A primary-key column, as in wal2json's `pk` array.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PkColumn {
    pub name: String,
    #[serde(rename = "type")]
    pub type_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub typeoid: Option<u32>,
}

/// One change event. Which fields are present depends on `action`; see `docs/event-format.md`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChangeEvent {
    pub action: Action,
    /// The source transaction id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xid: Option<u64>,
    /// Commit time of the source transaction, in the source's `TimeZone` (cdc pins UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    /// For `B`/`C`: the LSN of the commit record. For row changes: the LSN of the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lsn: Option<Lsn>,
    /// For `B`/`C`: the LSN just past the commit record; the position confirmed to PostgreSQL once the
    /// transaction is safely in Kafka.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nextlsn: Option<Lsn>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// New row values (`I`, `U`). An update leaves out unchanged TOASTed columns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<Column>>,
    /// Old key values (`D`, and `U` when the key changed or the table has `REPLICA IDENTITY FULL`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<Vec<Column>>,
    /// The table's primary-key columns (row changes of tables that have one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pk: Option<Vec<PkColumn>>,
    /// `M` only: whether the message was transactional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transactional: Option<bool>,
    /// `M` only: the message prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// `M` only: the message content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// Seconds since the Unix epoch of a PostgreSQL ISO timestamp with a numeric offset, as wal2json
/// prints commit times (`2026-11-21 20:03:00.783386+00`; cdc pins `TimeZone=UTC`). `None` for anything
/// else (BC dates, `infinity`). Hand-written: the two formats we read do not justify a date-time crate.
pub fn parse_pg_timestamp(s: &str) -> Option<f64> {
    let (date, rest) = s.split_once(' ')?;
    let mut parts = date.splitn(3, '-');
    let year: i64 = parts.next()?.parse().ok()?;
    let month: i64 = parts.next()?.parse().ok()?;
    let day: i64 = parts.next()?.parse().ok()?;
    let sign_at = rest.rfind(['+', '-'])?;
    let (time, offset) = rest.split_at(sign_at);
    let mut t = time.splitn(3, ':');
    let hour: i64 = t.next()?.parse().ok()?;
    let minute: i64 = t.next()?.parse().ok()?;
    let second: f64 = t.next()?.parse().ok()?;
    let sign = if offset.starts_with('-') { -1 } else { 1 };
    let mut o = offset[1..].splitn(3, ':');
    let off_h: i64 = o.next()?.parse().ok()?;
    let off_m: i64 = o.next().map_or(Some(0), |m| m.parse().ok())?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    // Days from 1970-01-01 to the date (Howard Hinnant's days_from_civil).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let local = days * 86_400 + hour * 3_600 + minute * 60;
    Some((local - sign * (off_h * 3_600 + off_m * 60)) as f64 + second)
}

impl ChangeEvent {
    /// The commit time of the event's transaction as Unix seconds (see [`parse_pg_timestamp`]).
    pub fn commit_time_unix(&self) -> Option<f64> {
        self.timestamp.as_deref().and_then(parse_pg_timestamp)
    }

    /// An event with only `action` set; the building block for tests and framing messages.
    pub fn bare(action: Action) -> Self {
        ChangeEvent {
            action,
            xid: None,
            timestamp: None,
            lsn: None,
            nextlsn: None,
            schema: None,
            table: None,
            columns: None,
            identity: None,
            pk: None,
            transactional: None,
            prefix: None,
            content: None,
        }
    }

    /// `schema.table`, unquoted, for logs and metric labels.
    pub fn qualified_table(&self) -> Option<String> {
        match (&self.schema, &self.table) {
            (Some(s), Some(t)) => Some(format!("{s}.{t}")),
            _ => None,
        }
    }

    /// Encodes the event as the JSON value of a Kafka message.
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing plain structs of strings, integers and raw JSON cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decodes a Kafka message value.
    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_times_parse_to_unix_seconds() {
        assert_eq!(parse_pg_timestamp("1970-01-01 00:00:00+00"), Some(0.0));
        assert_eq!(
            parse_pg_timestamp("2000-03-01 00:00:00+00"),
            Some(951_868_800.0)
        );
        let t = parse_pg_timestamp("2026-11-21 20:03:00.5+00").unwrap();
        assert_eq!(t, 1_795_291_380.5);
        assert_eq!(parse_pg_timestamp("2026-11-21 22:03:00.5+02"), Some(t));
        assert_eq!(parse_pg_timestamp("2026-11-21 14:33:00.5-05:30"), Some(t));
        assert_eq!(parse_pg_timestamp("infinity"), None);
        assert_eq!(parse_pg_timestamp("2026-13-01 00:00:00+00"), None);
    }

    #[test]
    fn keeps_numeric_digits_and_round_trips() {
        let line = r#"{"action":"I","xid":727,"timestamp":"2026-11-21 20:03:00.783386+00","lsn":"0/1948458","schema":"public","table":"t","columns":[{"name":"n","type":"numeric(30,10)","typeoid":1700,"value":12345678901234567890.0123456789},{"name":"s","type":"text","typeoid":25,"value":"q\"uo'te\\ ü"},{"name":"x","type":"text","typeoid":25,"value":null}],"pk":[{"name":"id","type":"integer","typeoid":23}]}"#;
        let ev = ChangeEvent::from_json(line.as_bytes()).unwrap();
        assert_eq!(ev.action, Action::Insert);
        let cols = ev.columns.as_ref().unwrap();
        assert_eq!(cols[0].value.get(), "12345678901234567890.0123456789");
        assert_eq!(cols[2].value.get(), "null");
        let again = ChangeEvent::from_json(&ev.to_json()).unwrap();
        assert_eq!(again, ev);
        assert!(String::from_utf8(ev.to_json())
            .unwrap()
            .contains("12345678901234567890.0123456789"));
    }

    #[test]
    fn unknown_action_is_an_error() {
        assert!(ChangeEvent::from_json(br#"{"action":"X"}"#).is_err());
    }
}
