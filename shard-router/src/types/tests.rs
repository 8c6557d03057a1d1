use super::*;
use Dialect::*;

fn ddl(d: Dialect, t: &str, oid: Option<u32>, pk: bool) -> String {
    map_column(d, t, oid, pk).ddl
}

#[test]
fn postgres_keeps_builtin_types_and_casts_them() {
    // The column keeps the type; the parameter's cast drops the modifier, so that storing a value the
    // column cannot hold fails instead of the cast truncating or rounding it.
    for (t, cast) in [
        ("numeric(30,10)", "numeric"),
        ("timestamp(3) with time zone", "timestamp with time zone"),
        ("integer[]", "integer[]"),
        ("jsonb", "jsonb"),
        ("character varying(20)", "character varying"),
        ("character varying(20)[][]", "character varying[][]"),
        ("character(3)", "bpchar"),
        ("character", "bpchar"),
        ("\"char\"", "\"char\""),
        ("bit(3)", "bit varying"),
        ("interval", "interval"),
        ("numeric(5,-2)", "numeric"),
        ("box[]", "box[]"),
        (
            "information_schema.sql_identifier",
            "information_schema.sql_identifier",
        ),
    ] {
        let c = map_column(Postgres, t, Some(1700), false);
        assert_eq!((c.ddl.as_str(), c.cast.as_deref()), (t, Some(cast)), "{t}");
    }
    let text = map_column(Postgres, "text", Some(25), true);
    assert_eq!(
        (text.ddl.as_str(), text.cast, text.kind),
        ("text", None, ValueKind::Text)
    );
    let bytea = map_column(Postgres, "bytea", Some(17), false);
    assert_eq!(
        (bytea.cast, bytea.kind),
        (Some("bytea".to_owned()), ValueKind::Bytes)
    );
    assert_eq!(
        map_column(Postgres, "boolean", Some(16), false).kind,
        ValueKind::Bool
    );
    assert_eq!(
        map_column(Postgres, "numeric(10,2)", Some(1700), false).kind,
        ValueKind::Numeric { limit: None }
    );
    assert_eq!(
        map_column(Postgres, "integer", None, false).cast.as_deref(),
        Some("integer")
    );
}

#[test]
fn postgres_turns_user_types_and_odd_names_into_text() {
    for (t, oid) in [
        ("public.mood", Some(16390)),
        ("public.mood[]", Some(16389)),
        ("public.mood", None),
        ("integer", Some(70000)),
        ("integer); drop table x; --", Some(23)),
        ("integer, evil text", Some(23)),
        ("numeric(1,2,3)", Some(1700)),
        ("Integer", None),
        ("integer  x", None),
        ("public.\"My Type\"", None),
        ("regclass", Some(2205)),
        ("regtype[]", Some(2211)),
    ] {
        let c = map_column(Postgres, t, oid, false);
        assert_eq!(
            (c.ddl.as_str(), c.cast, c.kind),
            ("text", None, ValueKind::Text),
            "{t}"
        );
    }
}

#[test]
fn mysql_mapping() {
    let cases = [
        ("smallint", false, "SMALLINT", ValueKind::Int),
        ("integer", false, "INT", ValueKind::Int),
        ("bigint", false, "BIGINT", ValueKind::Int),
        ("oid", false, "BIGINT", ValueKind::Int),
        ("real", false, "DOUBLE", ValueKind::Float),
        ("double precision", true, "DOUBLE", ValueKind::Float),
        ("boolean", false, "BOOLEAN", ValueKind::Bool),
        ("text", false, "LONGTEXT", ValueKind::Text),
        ("text", true, "VARCHAR(255)", ValueKind::Text),
        (
            "character varying(20)",
            false,
            "VARCHAR(20)",
            ValueKind::Text,
        ),
        (
            "character varying(255)",
            true,
            "VARCHAR(255)",
            ValueKind::Text,
        ),
        ("character varying(256)", false, "LONGTEXT", ValueKind::Text),
        (
            "character varying(1000)",
            true,
            "VARCHAR(255)",
            ValueKind::Text,
        ),
        ("character varying", false, "LONGTEXT", ValueKind::Text),
        ("character(5)", false, "VARCHAR(5)", ValueKind::Text),
        ("character", false, "VARCHAR(1)", ValueKind::Text),
        ("uuid", true, "CHAR(36)", ValueKind::Text),
        ("bytea", false, "LONGBLOB", ValueKind::Bytes),
        ("bytea", true, "VARBINARY(255)", ValueKind::Bytes),
        ("json", false, "JSON", ValueKind::Json),
        ("jsonb", true, "VARCHAR(255)", ValueKind::Json),
        (
            "integer[]",
            false,
            "JSON",
            ValueKind::Array(ElementKind::Number),
        ),
        (
            "numeric(10,2)[]",
            false,
            "JSON",
            ValueKind::Array(ElementKind::Number),
        ),
        (
            "boolean[]",
            false,
            "JSON",
            ValueKind::Array(ElementKind::Bool),
        ),
        (
            "text[]",
            false,
            "JSON",
            ValueKind::Array(ElementKind::String),
        ),
        ("box[]", false, "LONGTEXT", ValueKind::Text),
        ("date", false, "DATE", ValueKind::Date),
        (
            "timestamp without time zone",
            false,
            "DATETIME(6)",
            ValueKind::Timestamp,
        ),
        (
            "timestamp(3) without time zone",
            false,
            "DATETIME(6)",
            ValueKind::Timestamp,
        ),
        (
            "timestamp with time zone",
            true,
            "DATETIME(6)",
            ValueKind::TimestampTz,
        ),
        ("time without time zone", false, "TIME(6)", ValueKind::Time),
        (
            "time(3) without time zone",
            false,
            "TIME(6)",
            ValueKind::Time,
        ),
        ("time with time zone", false, "LONGTEXT", ValueKind::Text),
        ("interval", false, "VARCHAR(64)", ValueKind::Text),
        (
            "interval year to month",
            false,
            "VARCHAR(64)",
            ValueKind::Text,
        ),
        ("money", false, "LONGTEXT", ValueKind::Text),
        ("inet", true, "VARCHAR(255)", ValueKind::Text),
        ("bit(3)", false, "LONGTEXT", ValueKind::Text),
        ("\"char\"", false, "LONGTEXT", ValueKind::Text),
    ];
    for (t, pk, want, kind) in cases {
        let c = map_column(MySql, t, Some(1), pk);
        assert_eq!(
            (c.ddl.as_str(), c.kind, c.cast),
            (want, kind, None),
            "{t} pk={pk}"
        );
    }
    // User-defined types: text, arrays of them JSON arrays of strings.
    assert_eq!(ddl(MySql, "public.mood", Some(16390), false), "LONGTEXT");
    assert_eq!(ddl(MySql, "public.mood", Some(16390), true), "VARCHAR(255)");
    assert_eq!(ddl(MySql, "integer", Some(16390), false), "LONGTEXT");
    assert_eq!(
        map_column(MySql, "public.mood[]", Some(16389), false).kind,
        ValueKind::Array(ElementKind::String)
    );
    assert_eq!(
        map_column(MySql, "public.int_domain[]", Some(16389), false).kind,
        ValueKind::Array(ElementKind::String),
        "elements of user-defined types are strings even if the name looks numeric"
    );
}

#[test]
fn mysql_numeric_becomes_decimal_when_it_fits() {
    let num = |t: &str, pk: bool| map_column(MySql, t, Some(1700), pk);
    let limit = |i, f| ValueKind::Numeric {
        limit: Some(DecimalLimit {
            integer_digits: i,
            fraction_digits: f,
        }),
    };
    let c = num("numeric(30,10)", false);
    assert_eq!(
        (c.ddl.as_str(), c.cast.as_deref(), c.kind),
        ("DECIMAL(30,10)", Some("DECIMAL(30,10)"), limit(20, 10))
    );
    assert_eq!(num("numeric(12)", false).ddl, "DECIMAL(12,0)");
    assert_eq!(num("numeric", false).kind, limit(35, 30));
    assert_eq!(num("numeric", false).ddl, "DECIMAL(65,30)");
    assert_eq!(num("numeric(65,30)", false).ddl, "DECIMAL(65,30)");
    assert_eq!(num("numeric(5,-2)", false).ddl, "DECIMAL(7,0)");
    assert_eq!(num("numeric(3,5)", false).ddl, "DECIMAL(5,5)");
    for beyond in [
        "numeric(66,0)",
        "numeric(40,31)",
        "numeric(1000,500)",
        "numeric(65,-1)",
    ] {
        let c = num(beyond, false);
        assert_eq!(
            (c.ddl.as_str(), c.cast, c.kind),
            ("LONGTEXT", None, ValueKind::Numeric { limit: None }),
            "{beyond}"
        );
        assert_eq!(num(beyond, true).ddl, "VARCHAR(255)");
    }
}

#[test]
fn sqlite_mapping_uses_the_four_affinities() {
    let cases = [
        ("integer", "INTEGER", ValueKind::Int),
        ("bigint", "INTEGER", ValueKind::Int),
        ("boolean", "INTEGER", ValueKind::Bool),
        ("real", "REAL", ValueKind::Float),
        ("double precision", "REAL", ValueKind::Float),
        ("numeric(30,10)", "TEXT", ValueKind::Numeric { limit: None }),
        ("numeric", "TEXT", ValueKind::Numeric { limit: None }),
        ("timestamp with time zone", "TEXT", ValueKind::TimestampTz),
        ("timestamp without time zone", "TEXT", ValueKind::Timestamp),
        ("date", "TEXT", ValueKind::Date),
        ("interval", "TEXT", ValueKind::Text),
        ("uuid", "TEXT", ValueKind::Text),
        ("jsonb", "TEXT", ValueKind::Json),
        ("text[]", "TEXT", ValueKind::Array(ElementKind::String)),
        ("bytea", "BLOB", ValueKind::Bytes),
        ("public.mood", "TEXT", ValueKind::Text),
    ];
    for (t, want, kind) in cases {
        for pk in [false, true] {
            let c = map_column(Sqlite, t, None, pk);
            assert_eq!((c.ddl.as_str(), c.kind, c.cast), (want, kind, None), "{t}");
        }
    }
}

#[test]
fn a_modifier_conflict_is_the_same_sized_type_with_other_modifiers() {
    for (have, want) in [
        ("numeric(10,2)", "numeric(12,4)"),
        ("numeric(10,2)", "numeric"),
        ("character varying(5)", "character varying(10)"),
        ("character varying(5)[]", "character varying(10)[]"),
        ("timestamp(0) with time zone", "timestamp with time zone"),
        ("decimal(10,2)", "DECIMAL(12,4)"),
        ("varchar(5)", "VARCHAR(10)"),
        ("bit(3)", "bit(4)"),
    ] {
        assert!(modifier_conflict(have, want), "{have} / {want}");
    }
    for (have, want) in [
        ("numeric(10,2)", "numeric(10, 2)"),
        ("decimal(30,10)", "DECIMAL(30,10)"),
        ("int(11)", "INT"),
        ("integer", "bigint"),
        ("text", "character varying(5)"),
        ("longtext", "LONGTEXT"),
        ("numeric(10,2)[]", "numeric(10,2)"),
    ] {
        assert!(!modifier_conflict(have, want), "{have} / {want}");
    }
}
