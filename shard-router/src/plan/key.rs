//! Key values as the replica compares them, for replacing rows within an upsert run.

use crate::types::{Bind, ColumnType, ValueKind};

/// A key value compared as the replica compares it, for replacing rows within an upsert run.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum KeyPart {
    Null,
    Int(i64),
    Float(u64),
    Text(String),
    Bytes(Vec<u8>),
}

impl KeyPart {
    pub(super) fn new(ty: &ColumnType, bind: &Bind) -> KeyPart {
        match (ty.kind, bind) {
            (_, Bind::Null) => KeyPart::Null,
            (_, Bind::Int(i)) => KeyPart::Int(*i),
            (_, Bind::Float(f)) => KeyPart::Float(float_bits(*f)),
            (ValueKind::Float, Bind::Text(t)) => t.parse::<f64>().map_or_else(
                |_| KeyPart::Text(t.clone()),
                |f| KeyPart::Float(float_bits(f)),
            ),
            (ValueKind::Numeric { .. }, Bind::Text(t)) if !ty.stored_as_text() => {
                KeyPart::Text(canonical_decimal(t))
            }
            (_, Bind::Text(t)) => KeyPart::Text(t.clone()),
            (_, Bind::Bytes(b)) => KeyPart::Bytes(b.clone()),
        }
    }
}

/// `-0` and `0` are one key, and so are all NaNs (PostgreSQL sorts NaN as one value).
fn float_bits(f: f64) -> u64 {
    if f == 0.0 {
        0
    } else if f.is_nan() {
        f64::NAN.to_bits()
    } else {
        f.to_bits()
    }
}

/// A decimal without leading or trailing zeros: `-001.500` → `-1.5`, `-0.0` → `0`. Anything else
/// (`NaN`, `Infinity`) is returned as is.
pub(super) fn canonical_decimal(t: &str) -> String {
    let (negative, unsigned) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t),
    };
    let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    if int.is_empty() || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return t.to_owned();
    }
    let int = int.trim_start_matches('0');
    let frac = frac.trim_end_matches('0');
    let mut out = String::new();
    if negative && !(int.is_empty() && frac.is_empty()) {
        out.push('-');
    }
    out.push_str(if int.is_empty() { "0" } else { int });
    if !frac.is_empty() {
        out.push('.');
        out.push_str(frac);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Bind {
        Bind::Text(s.to_owned())
    }

    fn ty(ddl: &str, kind: ValueKind) -> ColumnType {
        ColumnType {
            ddl: ddl.to_owned(),
            cast: None,
            kind,
        }
    }

    #[test]
    fn numeric_keys_compare_as_the_replica_stores_them() {
        let numeric = ValueKind::Numeric { limit: None };
        // PostgreSQL numeric, MySQL DECIMAL: by value.
        assert_eq!(
            KeyPart::new(&ty("numeric", numeric), &text("1.000")),
            KeyPart::new(&ty("numeric", numeric), &text("1"))
        );
        // SQLite TEXT, MySQL LONGTEXT/VARCHAR: as text.
        for ddl in ["TEXT", "LONGTEXT", "VARCHAR(255)"] {
            assert_ne!(
                KeyPart::new(&ty(ddl, numeric), &text("1.000")),
                KeyPart::new(&ty(ddl, numeric), &text("1")),
                "{ddl}"
            );
        }
    }

    #[test]
    fn normalises_numeric_and_float_keys_only() {
        assert_eq!(canonical_decimal("-001.500"), "-1.5");
        assert_eq!(canonical_decimal("-0.000"), "0");
        assert_eq!(canonical_decimal("NaN"), "NaN");
        assert_eq!(
            KeyPart::new(&ty("x", ValueKind::Float), &text("-0")),
            KeyPart::new(&ty("x", ValueKind::Float), &Bind::Float(0.0))
        );
        assert_eq!(
            KeyPart::new(&ty("x", ValueKind::Float), &text("NaN")),
            KeyPart::new(&ty("x", ValueKind::Float), &Bind::Float(-f64::NAN))
        );
        assert_ne!(
            KeyPart::new(&ty("x", ValueKind::Text), &text("a")),
            KeyPart::new(&ty("x", ValueKind::Text), &text("a "))
        );
        assert_eq!(canonical_decimal("12"), "12");
        assert_eq!(canonical_decimal("1."), "1");
        assert_eq!(
            KeyPart::new(&ty("x", ValueKind::Text), &text("1.0")),
            KeyPart::Text("1.0".to_owned())
        );
        assert_eq!(
            KeyPart::new(&ty("x", ValueKind::Float), &text("x")),
            KeyPart::Text("x".to_owned())
        );
        assert_eq!(
            KeyPart::new(&ty("x", ValueKind::Bytes), &Bind::Bytes(vec![1])),
            KeyPart::Bytes(vec![1])
        );
        assert_eq!(
            KeyPart::new(&ty("x", ValueKind::Int), &Bind::Null),
            KeyPart::Null
        );
    }
}
