//! wal2json values → bound parameters.

use serde_json::value::RawValue;

use super::datetime::{self, Moment};
use super::{ColumnType, DecimalLimit, ValueKind};
use crate::dialect::Dialect;
use crate::pgarray::{self, is_json_number, ArrayError};

/// A value bound to a statement parameter.
#[derive(Clone, Debug, PartialEq)]
pub enum Bind {
    Null,
    Int(i64),
    Float(f64),
    Text(String),
    Bytes(Vec<u8>),
}

impl Bind {
    /// About how many bytes the value takes on the wire.
    pub fn wire_len(&self) -> usize {
        match self {
            Bind::Null => 1,
            Bind::Int(_) | Bind::Float(_) => 8,
            Bind::Text(t) => t.len() + 4,
            Bind::Bytes(b) => b.len() + 4,
        }
    }
}

/// Why a value could not be converted. Messages name the kind of value and the reason, never the value
/// itself (row values may be sensitive).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("the value is not valid JSON")]
    InvalidJson,
    #[error("{kind} column got a JSON {found}")]
    UnexpectedJson {
        kind: &'static str,
        found: &'static str,
    },
    #[error("malformed {kind} value: {reason}")]
    Malformed {
        kind: &'static str,
        reason: &'static str,
    },
    #[error("integer does not fit in 64 bits")]
    IntegerOutOfRange,
    #[error("numeric with {digits} {part} digits does not fit {column}")]
    DecimalOverflow {
        digits: usize,
        part: &'static str,
        column: String,
    },
    #[error("{kind} {special} cannot be stored in {target}")]
    NotFinite {
        kind: &'static str,
        special: &'static str,
        target: &'static str,
    },
    #[error("{kind} {what} is outside MySQL {target}'s range")]
    OutOfRange {
        kind: &'static str,
        what: String,
        target: &'static str,
    },
    #[error("array value cannot be converted to JSON")]
    Array(#[from] ArrayError),
}

/// Converts one wal2json value (raw JSON text) for a column of type `ty` on a `dialect` replica.
///
/// JSON `null` is always [`Bind::Null`]. Numbers keep every digit: only [`ValueKind::Float`] on SQLite
/// goes through `f64`. Numeric kinds also accept the value as a JSON string (wal2json's
/// `numeric-data-types-as-string`), including `NaN`, `Infinity` and `-Infinity`.
pub fn convert(dialect: Dialect, ty: &ColumnType, raw: &RawValue) -> Result<Bind, ValueError> {
    let scalar = Scalar::parse(raw)?;
    if let Scalar::Null = scalar {
        return Ok(Bind::Null);
    }
    let kind = ty.kind;
    match kind {
        ValueKind::Int => {
            let text = scalar.numeric_text(kind)?;
            if !is_json_number(text) || text.contains(['.', 'e', 'E']) {
                return Err(malformed(kind, "not an integer"));
            }
            let n = text
                .parse::<i64>()
                .map_err(|_| ValueError::IntegerOutOfRange)?;
            Ok(match dialect {
                Dialect::Postgres => Bind::Text(text.to_owned()),
                Dialect::MySql | Dialect::Sqlite => Bind::Int(n),
            })
        }
        ValueKind::Float => {
            let text = scalar.numeric_text(kind)?;
            let special = special_number(text);
            if special.is_none() && !is_json_number(text) {
                return Err(malformed(kind, "not a number"));
            }
            match (dialect, special) {
                (Dialect::Postgres, _) => Ok(Bind::Text(text.to_owned())),
                (Dialect::MySql, Some(s)) => Err(not_finite(kind, s, "a MySQL DOUBLE")),
                (Dialect::MySql, None) => Ok(Bind::Text(text.to_owned())),
                (Dialect::Sqlite, Some("NaN")) => {
                    Err(not_finite(kind, "NaN", "SQLite (it stores NaN as NULL)"))
                }
                (Dialect::Sqlite, Some("Infinity")) => Ok(Bind::Float(f64::INFINITY)),
                (Dialect::Sqlite, Some(_)) => Ok(Bind::Float(f64::NEG_INFINITY)),
                (Dialect::Sqlite, None) => text
                    .parse::<f64>()
                    .map(Bind::Float)
                    .map_err(|_| malformed(kind, "not a number")),
            }
        }
        ValueKind::Numeric { limit } => {
            let text = scalar.numeric_text(kind)?;
            let special = special_number(text);
            let digits = match special {
                Some(_) => None,
                None => Some(
                    decimal_digits(text).ok_or_else(|| malformed(kind, "not a plain decimal"))?,
                ),
            };
            if let (Dialect::MySql, Some(limit)) = (dialect, limit) {
                if let Some(s) = special {
                    return Err(not_finite(kind, s, "a MySQL DECIMAL"));
                }
                if let Some((int_digits, frac_digits)) = digits {
                    check_decimal(limit, int_digits, frac_digits)?;
                }
            }
            Ok(Bind::Text(text.to_owned()))
        }
        ValueKind::Bool => {
            let b = match scalar {
                Scalar::Bool(b) => b,
                Scalar::Str(s) => match s.as_str() {
                    "t" | "true" => true,
                    "f" | "false" => false,
                    _ => return Err(malformed(kind, "not true or false")),
                },
                other => return Err(other.unexpected(kind)),
            };
            Ok(match dialect {
                Dialect::Postgres => Bind::Text(if b { "true" } else { "false" }.to_owned()),
                Dialect::MySql | Dialect::Sqlite => Bind::Int(i64::from(b)),
            })
        }
        ValueKind::Text => Ok(Bind::Text(scalar.into_text())),
        ValueKind::Json => Ok(Bind::Text(scalar.into_text())),
        ValueKind::Bytes => {
            let text = scalar.string(kind)?;
            decode_hex(&text).map(Bind::Bytes)
        }
        ValueKind::Array(element) => {
            let text = scalar.string(kind)?;
            match dialect {
                Dialect::Postgres => Ok(Bind::Text(text)),
                Dialect::MySql | Dialect::Sqlite => {
                    Ok(Bind::Text(pgarray::array_to_json(&text, element)?))
                }
            }
        }
        ValueKind::Time => Ok(Bind::Text(scalar.string(kind)?)),
        ValueKind::Date | ValueKind::Timestamp | ValueKind::TimestampTz => {
            let text = scalar.string(kind)?;
            convert_temporal(dialect, kind, text)
        }
    }
}

fn convert_temporal(dialect: Dialect, kind: ValueKind, text: String) -> Result<Bind, ValueError> {
    let target = if kind == ValueKind::Date {
        "DATE"
    } else {
        "DATETIME"
    };
    let parsed = match dialect {
        Dialect::Postgres => return Ok(Bind::Text(text)),
        Dialect::Sqlite if kind != ValueKind::TimestampTz => return Ok(Bind::Text(text)),
        _ => match kind {
            ValueKind::Date => datetime::parse_date(&text),
            ValueKind::Timestamp => datetime::parse_timestamp(&text, false),
            _ => datetime::parse_timestamp(&text, true),
        },
    }
    .ok_or_else(|| malformed(kind, "not in PostgreSQL's ISO format"))?;
    let out_of_range = |what: String| ValueError::OutOfRange {
        kind: kind.name(),
        what,
        target,
    };
    match (dialect, parsed) {
        // SQLite keeps what it cannot express as text: infinities and BC dates.
        (Dialect::Sqlite, Moment::Infinity { .. }) => Ok(Bind::Text(text)),
        (_, Moment::Infinity { negative }) => Err(out_of_range(
            if negative { "-infinity" } else { "infinity" }.to_owned(),
        )),
        (_, Moment::At(t)) => {
            let utc = t.to_utc();
            match dialect {
                Dialect::Sqlite if utc.bc => Ok(Bind::Text(text)),
                Dialect::Sqlite => Ok(Bind::Text(format!("{}Z", utc.format()))),
                _ if utc.bc => Err(out_of_range("BC".to_owned())),
                _ if !(1000..=9999).contains(&utc.year) => {
                    Err(out_of_range(format!("year {}", utc.year)))
                }
                _ => Ok(Bind::Text(utc.format())),
            }
        }
    }
}

/// A wal2json value, decoded as far as the JSON level.
enum Scalar<'a> {
    Null,
    Bool(bool),
    Number(&'a str),
    Str(String),
    /// A JSON object or array (not something wal2json prints for a column, kept for `json` columns).
    Composite(&'a str),
}

impl<'a> Scalar<'a> {
    fn parse(raw: &'a RawValue) -> Result<Self, ValueError> {
        let t = raw.get().trim();
        Ok(match t.as_bytes().first() {
            _ if t == "null" => Scalar::Null,
            _ if t == "true" => Scalar::Bool(true),
            _ if t == "false" => Scalar::Bool(false),
            Some(b'"') => {
                Scalar::Str(serde_json::from_str(t).map_err(|_| ValueError::InvalidJson)?)
            }
            Some(b'{' | b'[') => Scalar::Composite(t),
            _ if is_json_number(t) => Scalar::Number(t),
            _ => return Err(ValueError::InvalidJson),
        })
    }

    fn unexpected(&self, kind: ValueKind) -> ValueError {
        let found = match self {
            Scalar::Null => "null",
            Scalar::Bool(_) => "boolean",
            Scalar::Number(_) => "number",
            Scalar::Str(_) => "string",
            Scalar::Composite(_) => "object or array",
        };
        ValueError::UnexpectedJson {
            kind: kind.name(),
            found,
        }
    }

    /// A number's text, from a JSON number or a JSON string.
    fn numeric_text(&self, kind: ValueKind) -> Result<&str, ValueError> {
        match self {
            Scalar::Number(t) => Ok(t),
            Scalar::Str(s) => Ok(s.as_str()),
            other => Err(other.unexpected(kind)),
        }
    }

    fn string(self, kind: ValueKind) -> Result<String, ValueError> {
        match self {
            Scalar::Str(s) => Ok(s),
            other => Err(other.unexpected(kind)),
        }
    }

    /// Any scalar as text: strings decoded, numbers and JSON kept as printed.
    fn into_text(self) -> String {
        match self {
            Scalar::Null => "null".to_owned(),
            Scalar::Bool(b) => b.to_string(),
            Scalar::Number(t) | Scalar::Composite(t) => t.to_owned(),
            Scalar::Str(s) => s,
        }
    }
}

fn malformed(kind: ValueKind, reason: &'static str) -> ValueError {
    ValueError::Malformed {
        kind: kind.name(),
        reason,
    }
}

fn not_finite(kind: ValueKind, special: &'static str, target: &'static str) -> ValueError {
    ValueError::NotFinite {
        kind: kind.name(),
        special,
        target,
    }
}

/// `NaN`, `Infinity`, `-Infinity` as PostgreSQL prints them.
fn special_number(text: &str) -> Option<&'static str> {
    match text {
        "NaN" => Some("NaN"),
        "Infinity" => Some("Infinity"),
        "-Infinity" => Some("-Infinity"),
        _ => None,
    }
}

/// Significant digits of a plain decimal (`-?\d+(\.\d+)?`): integer digits without leading zeros,
/// fractional digits without trailing zeros. None if `text` is not a plain decimal.
fn decimal_digits(text: &str) -> Option<(usize, usize)> {
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty()
        || !all_digits(int)
        || !all_digits(frac)
        || (unsigned.contains('.') && frac.is_empty())
    {
        return None;
    }
    Some((
        int.trim_start_matches('0').len(),
        frac.trim_end_matches('0').len(),
    ))
}

/// Refuses a value MySQL would round or reject: we never lose precision silently.
fn check_decimal(
    limit: DecimalLimit,
    int_digits: usize,
    frac_digits: usize,
) -> Result<(), ValueError> {
    let fits = |digits: usize, max: u32| u32::try_from(digits).is_ok_and(|d| d <= max);
    if !fits(int_digits, limit.integer_digits) {
        return Err(ValueError::DecimalOverflow {
            digits: int_digits,
            part: "integer",
            column: limit.mysql_type(),
        });
    }
    if !fits(frac_digits, limit.fraction_digits) {
        return Err(ValueError::DecimalOverflow {
            digits: frac_digits,
            part: "fractional",
            column: limit.mysql_type(),
        });
    }
    Ok(())
}

/// Hex digits (wal2json prints `bytea` as hex without `\x`; a leading `\x` is accepted too).
fn decode_hex(text: &str) -> Result<Vec<u8>, ValueError> {
    let hex = text.strip_prefix("\\x").unwrap_or(text).as_bytes();
    if hex.len() % 2 != 0 {
        return Err(malformed(ValueKind::Bytes, "odd number of hex digits"));
    }
    let nibble = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    };
    hex.chunks_exact(2)
        .map(|pair| match (nibble(pair[0]), nibble(pair[1])) {
            (Some(h), Some(l)) => Ok(h << 4 | l),
            _ => Err(malformed(ValueKind::Bytes, "not a hex digit")),
        })
        .collect()
}

#[cfg(test)]
mod tests;
