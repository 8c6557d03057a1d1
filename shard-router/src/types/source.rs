//! Source type names as wal2json prints them (`format_type` output: `numeric(30,10)`,
//! `timestamp(3) with time zone`, `integer[]`, `public.mood`), reduced to what the mapping needs.

use super::{ValueKind, FIRST_USER_OID};
use crate::pgarray::ElementKind;

/// True for PostgreSQL's own types: OID below [`FIRST_USER_OID`], or, without an OID, a name that is
/// not schema-qualified.
pub(super) fn is_builtin(source_type: &str, typeoid: Option<u32>) -> bool {
    match typeoid {
        Some(oid) => oid < FIRST_USER_OID,
        None => !source_type.contains('.'),
    }
}

/// A source type reduced to what the mapping needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Class {
    SmallInt,
    Integer,
    BigInt,
    Float,
    Numeric {
        precision: Option<i64>,
        scale: Option<i64>,
    },
    Bool,
    /// `character varying(n)`, `character(n)`; None = unbounded.
    Chars {
        len: Option<i64>,
    },
    Text,
    Uuid,
    Bytes,
    Json,
    Array(ElementKind),
    Date,
    Timestamp,
    TimestampTz,
    Time,
    Interval,
}

impl Class {
    pub(super) fn kind(self) -> ValueKind {
        match self {
            Class::SmallInt | Class::Integer | Class::BigInt => ValueKind::Int,
            Class::Float => ValueKind::Float,
            Class::Numeric { .. } => ValueKind::Numeric { limit: None },
            Class::Bool => ValueKind::Bool,
            Class::Chars { .. } | Class::Text | Class::Uuid | Class::Interval => ValueKind::Text,
            Class::Bytes => ValueKind::Bytes,
            Class::Json => ValueKind::Json,
            Class::Array(e) => ValueKind::Array(e),
            Class::Date => ValueKind::Date,
            Class::Timestamp => ValueKind::Timestamp,
            Class::TimestampTz => ValueKind::TimestampTz,
            Class::Time => ValueKind::Time,
        }
    }
}

pub(super) fn classify(source_type: &str, typeoid: Option<u32>) -> Class {
    if let Some(element) = source_type.strip_suffix("[]") {
        // `box[]` prints with `;` between elements: kept as text (see pgarray).
        if element.trim_end_matches("[]") == "box" {
            return Class::Text;
        }
        // Only built-in element types are typed; elements of user-defined types are strings.
        let builtin = is_builtin(source_type, typeoid) && parse_type_name(element).is_some();
        let kind = match builtin.then(|| classify_scalar(element)) {
            Some(
                Class::SmallInt
                | Class::Integer
                | Class::BigInt
                | Class::Float
                | Class::Numeric { .. },
            ) => ElementKind::Number,
            Some(Class::Bool) => ElementKind::Bool,
            _ => ElementKind::String,
        };
        return Class::Array(kind);
    }
    if is_builtin(source_type, typeoid) {
        classify_scalar(source_type)
    } else {
        Class::Text
    }
}

fn classify_scalar(source_type: &str) -> Class {
    let Some(name) = parse_type_name(source_type) else {
        return Class::Text;
    };
    let first = name.mods.first().copied();
    match name.base.as_str() {
        "smallint" | "int2" => Class::SmallInt,
        "integer" | "int" | "int4" => Class::Integer,
        "bigint" | "int8" | "oid" => Class::BigInt,
        "real" | "float4" | "double precision" | "float8" => Class::Float,
        "numeric" | "decimal" => Class::Numeric {
            precision: first,
            scale: name.mods.get(1).copied(),
        },
        "boolean" | "bool" => Class::Bool,
        "character varying" | "varchar" | "bpchar" => Class::Chars { len: first },
        // `character` without a length is `character(1)`.
        "character" | "char" => Class::Chars {
            len: Some(first.unwrap_or(1)),
        },
        "uuid" => Class::Uuid,
        "bytea" => Class::Bytes,
        "json" | "jsonb" => Class::Json,
        "date" => Class::Date,
        "timestamp" | "timestamp without time zone" => Class::Timestamp,
        "timestamptz" | "timestamp with time zone" => Class::TimestampTz,
        "time" | "time without time zone" => Class::Time,
        b if b == "interval" || b.starts_with("interval ") => Class::Interval,
        _ => Class::Text,
    }
}

/// A type name split into its base (modifier removed) and its modifier numbers:
/// `timestamp(3) with time zone` → `timestamp with time zone`, `[3]`.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct TypeName {
    pub(super) base: String,
    pub(super) mods: Vec<i64>,
}

/// Parses a type name in PostgreSQL's `format_type` syntax: lowercase words separated by single
/// spaces, at most one `(n[,m])` modifier, optional `[]` suffixes, or `"char"`. None for anything else;
/// such names are never interpolated into SQL.
pub(super) fn parse_type_name(s: &str) -> Option<TypeName> {
    let mut s = s;
    while let Some(rest) = s.strip_suffix("[]") {
        s = rest;
    }
    if s == "\"char\"" {
        return Some(TypeName {
            base: s.to_owned(),
            mods: Vec::new(),
        });
    }
    let (before, mods, after) = match s.split_once('(') {
        None => (s, Vec::new(), ""),
        Some((before, rest)) => {
            let (inner, after) = rest.split_once(')')?;
            let mods = inner
                .split(',')
                .map(|m| m.trim().parse::<i64>().ok())
                .collect::<Option<Vec<_>>>()?;
            if mods.len() > 2 {
                return None;
            }
            (before, mods, after)
        }
    };
    let words_ok = |w: &str| {
        w.split(' ').all(|word| {
            word.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
                && word
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.')
        })
    };
    let after = match after {
        "" => None,
        a => Some(a.strip_prefix(' ')?),
    };
    if !words_ok(before) || after.is_some_and(|a| !words_ok(a)) {
        return None;
    }
    let base = match after {
        None => before.to_owned(),
        Some(a) => format!("{before} {a}"),
    };
    Some(TypeName { base, mods })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_parse_like_format_type() {
        let p = parse_type_name("timestamp(3) with time zone").unwrap();
        assert_eq!(
            (p.base.as_str(), p.mods),
            ("timestamp with time zone", vec![3])
        );
        assert_eq!(
            parse_type_name("numeric(30,10)[]").unwrap().mods,
            vec![30, 10]
        );
        for bad in [
            "", "(3)", "a(3", "a(x)", "a)(", "a (3)", "a(3)b", "a(3) ", " a", "a;b", "a--", "a'b",
        ] {
            assert_eq!(parse_type_name(bad), None, "{bad:?}");
        }
    }
}
