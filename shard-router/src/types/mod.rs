//! What a source column becomes on a replica ([`map_column`]) and how its wal2json values are bound
//! ([`convert`]), per dialect. `docs/type-mapping.md` is the user-facing description of these rules;
//! keep the two in step.

mod convert;
mod datetime;
mod source;

pub use convert::{convert, Bind, ValueError};

use crate::dialect::Dialect;
use crate::pgarray::ElementKind;
use source::{classify, is_builtin, parse_type_name, Class};

/// OIDs below this are PostgreSQL's own (`FirstNormalObjectId`); user-defined types start here.
pub const FIRST_USER_OID: u32 = 16384;

/// What a source column becomes on a replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnType {
    /// The column type in the replica's `CREATE TABLE`, e.g. `DECIMAL(30,10)`, `TEXT`, `jsonb`.
    pub ddl: String,
    /// The cast applied to the bound parameter, None = bind as is. PostgreSQL: `$3::numeric(30,10)`
    /// (every type but `text` and `bytea`). MySQL: `CAST(? AS DECIMAL(30,10))` for DECIMAL columns only,
    /// because MySQL compares a DECIMAL column with a string as two doubles, which could match the
    /// wrong row in a key lookup.
    pub cast: Option<String>,
    /// How a wal2json value is turned into a bound value.
    pub kind: ValueKind,
}

impl ColumnType {
    /// Whether the replica column holds the source's text rather than a value of its type (a
    /// `numeric` in SQLite `TEXT` or MySQL `LONGTEXT`/`VARCHAR`): the replica then compares its keys as
    /// text, so `1` and `1.000` are two keys there.
    pub fn stored_as_text(&self) -> bool {
        matches!(self.ddl.as_str(), "TEXT" | "LONGTEXT") || self.ddl.starts_with("VARCHAR")
    }
}

/// How a wal2json value is turned into a [`Bind`]; see [`convert`] for each dialect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueKind {
    /// `smallint`, `integer`, `bigint`, `oid`: a signed 64-bit integer.
    Int,
    /// `real`, `double precision`.
    Float,
    /// `numeric`: exact decimal text. `limit` is what the replica column holds (MySQL `DECIMAL`);
    /// None = no limit (PostgreSQL `numeric`, text columns).
    Numeric { limit: Option<DecimalLimit> },
    /// `boolean`.
    Bool,
    /// Anything stored as the text PostgreSQL printed.
    Text,
    /// `bytea`: hex text decoded to bytes.
    Bytes,
    /// `timestamp with time zone`.
    TimestampTz,
    /// `timestamp without time zone`.
    Timestamp,
    /// `date`.
    Date,
    /// `time without time zone`.
    Time,
    /// `json`, `jsonb`: the JSON text.
    Json,
    /// A PostgreSQL array; MySQL and SQLite store it as a JSON array of these elements.
    Array(ElementKind),
}

impl ValueKind {
    /// The kind's name in error messages.
    pub fn name(self) -> &'static str {
        match self {
            ValueKind::Int => "integer",
            ValueKind::Float => "float",
            ValueKind::Numeric { .. } => "numeric",
            ValueKind::Bool => "boolean",
            ValueKind::Text => "text",
            ValueKind::Bytes => "bytea",
            ValueKind::TimestampTz => "timestamptz",
            ValueKind::Timestamp => "timestamp",
            ValueKind::Date => "date",
            ValueKind::Time => "time",
            ValueKind::Json => "json",
            ValueKind::Array(_) => "array",
        }
    }
}

/// The digits a MySQL `DECIMAL(m,d)` column holds: `m - d` before the point, `d` after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecimalLimit {
    pub integer_digits: u32,
    pub fraction_digits: u32,
}

impl DecimalLimit {
    /// The MySQL type holding exactly these digits.
    pub fn mysql_type(self) -> String {
        format!(
            "DECIMAL({},{})",
            self.integer_digits + self.fraction_digits,
            self.fraction_digits
        )
    }
}

/// MySQL's `DECIMAL` limits: 65 digits, 30 of them after the point.
pub const MYSQL_MAX_DECIMAL_DIGITS: u32 = 65;
pub const MYSQL_MAX_DECIMAL_SCALE: u32 = 30;

/// MySQL needs an index-able type for key columns: `LONGTEXT`/`LONGBLOB`/`JSON` become these.
const MYSQL_KEY_TEXT: &str = "VARCHAR(255)";
const MYSQL_KEY_BYTES: &str = "VARBINARY(255)";

/// Maps a source column (its wal2json `type` and `typeoid`) to the replica column of `dialect`.
/// `in_pk`: the column is part of the primary key (MySQL picks indexable types then).
pub fn map_column(
    dialect: Dialect,
    source_type: &str,
    typeoid: Option<u32>,
    in_pk: bool,
) -> ColumnType {
    let class = classify(source_type, typeoid);
    match dialect {
        Dialect::Postgres => map_postgres(source_type, typeoid, class),
        Dialect::MySql => map_mysql(class, in_pk),
        Dialect::Sqlite => map_sqlite(class),
    }
}

/// Whether a replica column of type `have` would silently change values of a column typed `want`
/// (both in a replica's spelling, e.g. `numeric(10,2)` or `DECIMAL(12,4)`): the same base type with
/// another length, precision or scale, which the database meets by truncating or rounding (`numeric`
/// scale, fractional seconds) or refusing. Other differences (`int(11)` against `INT`, a hand-made
/// `bigint` for an `integer`) are left to the replica's own assignment rules.
pub fn modifier_conflict(have: &str, want: &str) -> bool {
    const SIZED: [&str; 13] = [
        "numeric",
        "decimal",
        "character varying",
        "varchar",
        "character",
        "char",
        "bpchar",
        "bit",
        "bit varying",
        "timestamp with time zone",
        "timestamp without time zone",
        "time without time zone",
        "datetime",
    ];
    // `timestamp(3) with time zone` → (`timestamp with time zone`, `3`); arrays keep their `[]`.
    fn split(t: &str) -> (String, String) {
        let t = t.trim().to_ascii_lowercase();
        match t.split_once('(') {
            Some((before, rest)) => match rest.split_once(')') {
                Some((mods, after)) => (
                    format!("{}{after}", before.trim_end()),
                    mods.replace(' ', ""),
                ),
                None => (t.clone(), String::new()),
            },
            None => (t, String::new()),
        }
    }
    let (have_base, have_mods) = split(have);
    let (want_base, want_mods) = split(want);
    let base = have_base.trim_end_matches("[]");
    have_base == want_base && SIZED.contains(&base) && have_mods != want_mods
}

fn column(ddl: impl Into<String>, cast: Option<String>, kind: ValueKind) -> ColumnType {
    ColumnType {
        ddl: ddl.into(),
        cast,
        kind,
    }
}

/// Built-in types whose values are names of source catalog objects (`regclass`: `public.orders`):
/// PostgreSQL replicas store them as text, since casting would look the object up on the replica.
const OBJECT_REFERENCE_TYPES: [&str; 11] = [
    "regclass",
    "regcollation",
    "regconfig",
    "regdictionary",
    "regnamespace",
    "regoper",
    "regoperator",
    "regproc",
    "regprocedure",
    "regrole",
    "regtype",
];

fn map_postgres(source_type: &str, typeoid: Option<u32>, class: Class) -> ColumnType {
    // Built-in types keep their name; user-defined ones (and names that are not plain type syntax,
    // which are never interpolated into SQL) become text.
    let parsed = parse_type_name(source_type).filter(|_| is_builtin(source_type, typeoid));
    // `reg*` values name objects of the source's catalog, which the replica may not have.
    let names_source_object = |base: &str| OBJECT_REFERENCE_TYPES.contains(&base);
    if parsed.as_ref().is_none_or(|p| names_source_object(&p.base)) {
        return column("text", None, ValueKind::Text);
    }
    let kind = match class {
        // A PostgreSQL replica holds every value natively: no DECIMAL limit to check.
        Class::Numeric { .. } => ValueKind::Numeric { limit: None },
        other => other.kind(),
    };
    // Text needs no cast. Everything else is cast from the bound parameter, bytea too: its values are
    // bound as bytes (a no-op cast) but a NULL is bound as text and needs the cast to fit the column.
    let cast = match (source_type, parsed) {
        ("text", _) => None,
        (_, Some(p)) => Some(unbounded_cast(source_type, &p.base)),
        (other, None) => Some(other.to_owned()),
    };
    column(source_type, cast, kind)
}

/// The cast of a bound parameter: the type without its modifier. An explicit cast to `varchar(5)`,
/// `numeric(10,2)` or `bit(3)` truncates or rounds without a word, where storing into a column of
/// that type refuses a value that does not fit (or that a later source type no longer fits): the
/// column's own modifier is left to check. `character` and `bit` without a modifier mean one
/// character or bit, so their unbounded forms stand in.
fn unbounded_cast(source_type: &str, base: &str) -> String {
    let dims = source_type.len() - source_type.trim_end_matches("[]").len();
    let base = match base {
        "character" | "char" => "bpchar",
        "bit" => "bit varying",
        other => other,
    };
    format!("{base}{}", &source_type[source_type.len() - dims..])
}

fn map_mysql(class: Class, in_pk: bool) -> ColumnType {
    let text = |unbounded: &str| if in_pk { MYSQL_KEY_TEXT } else { unbounded }.to_owned();
    match class {
        Class::SmallInt => column("SMALLINT", None, ValueKind::Int),
        Class::Integer => column("INT", None, ValueKind::Int),
        Class::BigInt => column("BIGINT", None, ValueKind::Int),
        Class::Float => column("DOUBLE", None, ValueKind::Float),
        Class::Numeric { precision, scale } => match mysql_decimal(precision, scale) {
            Some(limit) => column(
                limit.mysql_type(),
                Some(limit.mysql_type()),
                ValueKind::Numeric { limit: Some(limit) },
            ),
            None => column(text("LONGTEXT"), None, ValueKind::Numeric { limit: None }),
        },
        Class::Bool => column("BOOLEAN", None, ValueKind::Bool),
        Class::Chars { len: Some(n) } if n <= 255 => {
            column(format!("VARCHAR({n})"), None, ValueKind::Text)
        }
        Class::Chars { .. } | Class::Text => column(text("LONGTEXT"), None, ValueKind::Text),
        Class::Uuid => column("CHAR(36)", None, ValueKind::Text),
        Class::Bytes => column(
            if in_pk { MYSQL_KEY_BYTES } else { "LONGBLOB" },
            None,
            ValueKind::Bytes,
        ),
        Class::Json => column(text("JSON"), None, ValueKind::Json),
        Class::Array(e) => column(text("JSON"), None, ValueKind::Array(e)),
        Class::Date => column("DATE", None, ValueKind::Date),
        Class::Timestamp => column("DATETIME(6)", None, ValueKind::Timestamp),
        Class::TimestampTz => column("DATETIME(6)", None, ValueKind::TimestampTz),
        Class::Time => column("TIME(6)", None, ValueKind::Time),
        Class::Interval => column("VARCHAR(64)", None, ValueKind::Text),
    }
}

fn map_sqlite(class: Class) -> ColumnType {
    match class {
        Class::SmallInt | Class::Integer | Class::BigInt => column("INTEGER", None, ValueKind::Int),
        Class::Bool => column("INTEGER", None, ValueKind::Bool),
        Class::Float => column("REAL", None, ValueKind::Float),
        Class::Bytes => column("BLOB", None, ValueKind::Bytes),
        other => column("TEXT", None, other.kind()),
    }
}

/// The MySQL `DECIMAL` holding every value of `numeric(precision, scale)`, if there is one.
/// Unconstrained `numeric` gets the widest, `DECIMAL(65,30)`, and values are checked against it.
fn mysql_decimal(precision: Option<i64>, scale: Option<i64>) -> Option<DecimalLimit> {
    let Some(p) = precision else {
        return Some(DecimalLimit {
            integer_digits: MYSQL_MAX_DECIMAL_DIGITS - MYSQL_MAX_DECIMAL_SCALE,
            fraction_digits: MYSQL_MAX_DECIMAL_SCALE,
        });
    };
    let s = scale.unwrap_or(0);
    // PostgreSQL 15 allows a negative scale (rounds to tens, hundreds...) and a scale above the
    // precision (only fractional digits): count the digits on each side of the point.
    let integer_digits = u32::try_from((p - s).max(0)).ok()?;
    let fraction_digits = u32::try_from(s.max(0)).ok()?;
    let total = integer_digits.checked_add(fraction_digits)?;
    ((1..=MYSQL_MAX_DECIMAL_DIGITS).contains(&total) && fraction_digits <= MYSQL_MAX_DECIMAL_SCALE)
        .then_some(DecimalLimit {
            integer_digits,
            fraction_digits,
        })
}

#[cfg(test)]
mod tests;
