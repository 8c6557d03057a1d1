use super::*;
use crate::pgarray::ElementKind;
use crate::types::map_column;
use proptest::prelude::*;
use Dialect::*;

fn raw(json: &str) -> Box<RawValue> {
    RawValue::from_string(json.to_owned()).unwrap()
}

fn conv(d: Dialect, source_type: &str, json: &str) -> Result<Bind, ValueError> {
    convert(d, &map_column(d, source_type, None, false), &raw(json))
}

fn text(s: &str) -> Bind {
    Bind::Text(s.to_owned())
}

#[test]
fn null_is_null_for_every_kind() {
    for d in [MySql, Sqlite, Postgres] {
        for t in [
            "integer",
            "numeric",
            "boolean",
            "bytea",
            "date",
            "json",
            "text[]",
            "public.mood",
        ] {
            assert_eq!(conv(d, t, "null").unwrap(), Bind::Null);
        }
    }
}

#[test]
fn numerics_keep_every_digit() {
    let n = "12345678901234567890.0123456789";
    for d in [MySql, Sqlite, Postgres] {
        assert_eq!(conv(d, "numeric(30,10)", n).unwrap(), text(n));
        assert_eq!(
            conv(d, "numeric", &format!("\"{n}\"")).unwrap(),
            text(n),
            "string form"
        );
    }
    let wide = format!("-{}.{}", "9".repeat(35), "1".repeat(30));
    assert_eq!(conv(MySql, "numeric", &wide).unwrap(), text(&wide));
    let trailing = format!("1.{}000", "1".repeat(30));
    assert_eq!(
        conv(MySql, "numeric", &trailing).unwrap(),
        text(&trailing),
        "trailing zeros lose nothing"
    );
    let beyond = format!("{}.5", "9".repeat(100));
    assert_eq!(
        conv(MySql, "numeric(200,1)", &beyond).unwrap(),
        text(&beyond),
        "LONGTEXT keeps it"
    );
    assert_eq!(conv(Postgres, "numeric", "\"NaN\"").unwrap(), text("NaN"));
    assert_eq!(
        conv(Sqlite, "numeric", "\"-Infinity\"").unwrap(),
        text("-Infinity")
    );
    assert_eq!(
        conv(MySql, "numeric(200,1)", "\"NaN\"").unwrap(),
        text("NaN")
    );
}

#[test]
fn mysql_refuses_numerics_it_would_round() {
    let e = conv(MySql, "numeric", &format!("{}.5", "1".repeat(36))).unwrap_err();
    assert_eq!(
        e.to_string(),
        "numeric with 36 integer digits does not fit DECIMAL(65,30)"
    );
    let e = conv(MySql, "numeric", &format!("0.{}", "1".repeat(40))).unwrap_err();
    assert_eq!(
        e.to_string(),
        "numeric with 40 fractional digits does not fit DECIMAL(65,30)"
    );
    let e = conv(MySql, "numeric(5,2)", "1234.5").unwrap_err();
    assert_eq!(
        e.to_string(),
        "numeric with 4 integer digits does not fit DECIMAL(5,2)"
    );
    assert_eq!(conv(MySql, "numeric(5,2)", "-0.25").unwrap(), text("-0.25"));
    let e = conv(MySql, "numeric(5,2)", "\"Infinity\"").unwrap_err();
    assert_eq!(
        e.to_string(),
        "numeric Infinity cannot be stored in a MySQL DECIMAL"
    );
    for bad in ["1e5", "\"1.\"", "\".5\"", "\"abc\"", "\"\""] {
        assert!(
            matches!(
                conv(MySql, "numeric", bad),
                Err(ValueError::Malformed { .. })
            ),
            "{bad}"
        );
    }
    assert!(matches!(
        conv(Postgres, "numeric", "true"),
        Err(ValueError::UnexpectedJson { .. })
    ));
}

#[test]
fn floats_per_dialect() {
    assert_eq!(
        conv(Sqlite, "double precision", "0.1").unwrap(),
        Bind::Float(0.1)
    );
    assert_eq!(
        conv(Sqlite, "real", "3.4028235e+38").unwrap(),
        Bind::Float(3.4028235e38)
    );
    assert_eq!(
        conv(Sqlite, "real", "\"Infinity\"").unwrap(),
        Bind::Float(f64::INFINITY)
    );
    assert_eq!(
        conv(Sqlite, "real", "\"-Infinity\"").unwrap(),
        Bind::Float(f64::NEG_INFINITY)
    );
    let e = conv(Sqlite, "real", "\"NaN\"").unwrap_err();
    assert_eq!(
        e.to_string(),
        "float NaN cannot be stored in SQLite (it stores NaN as NULL)"
    );
    assert_eq!(
        conv(MySql, "double precision", "1e+100").unwrap(),
        text("1e+100")
    );
    assert!(matches!(
        conv(MySql, "real", "\"NaN\""),
        Err(ValueError::NotFinite { .. })
    ));
    assert_eq!(conv(Postgres, "real", "\"NaN\"").unwrap(), text("NaN"));
    assert!(matches!(
        conv(Sqlite, "real", "\"inf\""),
        Err(ValueError::Malformed { .. })
    ));
    assert!(matches!(
        conv(Postgres, "real", "\"nan\""),
        Err(ValueError::Malformed { .. })
    ));
}

#[test]
fn integers_per_dialect() {
    assert_eq!(
        conv(MySql, "bigint", "-9223372036854775808").unwrap(),
        Bind::Int(i64::MIN)
    );
    assert_eq!(
        conv(Sqlite, "oid", "4294967295").unwrap(),
        Bind::Int(4_294_967_295)
    );
    assert_eq!(conv(Sqlite, "integer", "\"42\"").unwrap(), Bind::Int(42));
    assert_eq!(conv(Postgres, "smallint", "7").unwrap(), text("7"));
    assert_eq!(
        conv(Sqlite, "bigint", "9223372036854775808").unwrap_err(),
        ValueError::IntegerOutOfRange
    );
    for bad in ["1.5", "1e3", "\"+1\"", "\" 1\"", "\"x\""] {
        assert!(
            matches!(
                conv(MySql, "integer", bad),
                Err(ValueError::Malformed { .. })
            ),
            "{bad}"
        );
    }
    assert!(matches!(
        conv(MySql, "integer", "{\"a\":1}"),
        Err(ValueError::UnexpectedJson { .. })
    ));
}

#[test]
fn booleans_bytes_and_text() {
    assert_eq!(conv(Postgres, "boolean", "true").unwrap(), text("true"));
    assert_eq!(conv(Postgres, "boolean", "false").unwrap(), text("false"));
    assert_eq!(conv(MySql, "boolean", "true").unwrap(), Bind::Int(1));
    assert_eq!(conv(Sqlite, "boolean", "\"f\"").unwrap(), Bind::Int(0));
    assert!(conv(Sqlite, "boolean", "1").is_err());
    for d in [MySql, Sqlite, Postgres] {
        assert_eq!(
            conv(d, "bytea", "\"00ff10DEadbeef\"").unwrap(),
            Bind::Bytes(vec![0, 255, 16, 222, 173, 190, 239])
        );
        assert_eq!(
            conv(d, "bytea", "\"\\\\x01\"").unwrap(),
            Bind::Bytes(vec![1])
        );
        assert_eq!(conv(d, "bytea", "\"\"").unwrap(), Bind::Bytes(vec![]));
        assert!(conv(d, "bytea", "\"abc\"").is_err());
        assert!(conv(d, "bytea", "\"zz\"").is_err());
        assert_eq!(
            conv(d, "text", "\"h\\u00e9llo \\\"世界\"").unwrap(),
            text("héllo \"世界")
        );
        assert_eq!(conv(d, "public.mood", "\"happy\"").unwrap(), text("happy"));
        assert_eq!(conv(d, "money", "12.5").unwrap(), text("12.5"));
        assert_eq!(
            conv(d, "jsonb", "\"{\\\"k\\\": 1}\"").unwrap(),
            text("{\"k\": 1}")
        );
        assert_eq!(
            conv(d, "time without time zone", "\"04:05:06.789\"").unwrap(),
            text("04:05:06.789")
        );
        assert_eq!(
            conv(d, "interval", "\"1 year 2 mons\"").unwrap(),
            text("1 year 2 mons")
        );
    }
    assert!(matches!(
        conv(MySql, "date", "20240101"),
        Err(ValueError::UnexpectedJson { .. })
    ));
}

#[test]
fn arrays_become_json_on_mysql_and_sqlite() {
    for d in [MySql, Sqlite] {
        assert_eq!(
            conv(d, "integer[]", "\"{1,2,NULL}\"").unwrap(),
            text("[1,2,null]")
        );
        assert_eq!(
            conv(d, "numeric[]", "\"{{1.50,2},{3,4}}\"").unwrap(),
            text("[[1.50,2],[3,4]]")
        );
        assert_eq!(
            conv(d, "text[]", "\"{\\\"a b\\\",\\\"c\\\\\\\"d\\\",NULL}\"").unwrap(),
            text(r#"["a b","c\"d",null]"#)
        );
        assert_eq!(
            conv(d, "boolean[]", "\"{t,f}\"").unwrap(),
            text("[true,false]")
        );
        assert!(matches!(
            conv(d, "integer[]", "\"{1,\""),
            Err(ValueError::Array(_))
        ));
    }
    assert_eq!(
        conv(Postgres, "integer[]", "\"{1,2}\"").unwrap(),
        text("{1,2}")
    );
    let mut ty = map_column(MySql, "x[]", None, false);
    ty.kind = ValueKind::Array(ElementKind::Bool);
    assert!(convert(MySql, &ty, &raw("\"{x}\"")).is_err());
}

#[test]
fn timestamps_on_mysql() {
    let tz = "timestamp with time zone";
    assert_eq!(
        conv(MySql, tz, "\"2024-03-10 10:30:00.123456+00\"").unwrap(),
        text("2024-03-10 10:30:00.123456")
    );
    assert_eq!(
        conv(MySql, tz, "\"2024-03-10 10:30:00+00\"").unwrap(),
        text("2024-03-10 10:30:00")
    );
    assert_eq!(
        conv(MySql, tz, "\"2024-03-10 01:30:00+05:30\"").unwrap(),
        text("2024-03-09 20:00:00")
    );
    let e = conv(MySql, tz, "\"12000-01-01 00:00:00+00\"").unwrap_err();
    assert_eq!(
        e.to_string(),
        "timestamptz year 12000 is outside MySQL DATETIME's range"
    );
    let e = conv(MySql, tz, "\"0044-03-15 10:00:00+00 BC\"").unwrap_err();
    assert_eq!(
        e.to_string(),
        "timestamptz BC is outside MySQL DATETIME's range"
    );
    let e = conv(MySql, tz, "\"infinity\"").unwrap_err();
    assert_eq!(
        e.to_string(),
        "timestamptz infinity is outside MySQL DATETIME's range"
    );
    let ts = "timestamp without time zone";
    assert_eq!(
        conv(MySql, ts, "\"2024-03-10 02:30:00.5\"").unwrap(),
        text("2024-03-10 02:30:00.5")
    );
    let e = conv(MySql, ts, "\"0999-12-31 23:59:59\"").unwrap_err();
    assert_eq!(
        e.to_string(),
        "timestamp year 999 is outside MySQL DATETIME's range"
    );
    assert!(matches!(
        conv(MySql, ts, "\"2024-03-10 02:30:00+00\""),
        Err(ValueError::Malformed { .. })
    ));
    assert_eq!(
        conv(MySql, "date", "\"2024-02-29\"").unwrap(),
        text("2024-02-29")
    );
    assert_eq!(
        conv(MySql, "date", "\"9999-12-31\"").unwrap(),
        text("9999-12-31")
    );
    let e = conv(MySql, "date", "\"-infinity\"").unwrap_err();
    assert_eq!(
        e.to_string(),
        "date -infinity is outside MySQL DATE's range"
    );
    assert!(matches!(
        conv(MySql, "date", "\"2023-02-29\""),
        Err(ValueError::Malformed { .. })
    ));
}

#[test]
fn timestamps_on_sqlite_and_postgres() {
    let tz = "timestamp with time zone";
    assert_eq!(
        conv(Sqlite, tz, "\"2024-03-10 10:30:00.123456+00\"").unwrap(),
        text("2024-03-10 10:30:00.123456Z")
    );
    assert_eq!(
        conv(Sqlite, tz, "\"2024-03-10 10:30:00-01\"").unwrap(),
        text("2024-03-10 11:30:00Z")
    );
    assert_eq!(
        conv(Sqlite, tz, "\"12000-01-01 00:00:00+00\"").unwrap(),
        text("12000-01-01 00:00:00Z")
    );
    for verbatim in ["0044-03-15 10:00:00+00 BC", "infinity", "-infinity"] {
        assert_eq!(
            conv(Sqlite, tz, &format!("\"{verbatim}\"")).unwrap(),
            text(verbatim)
        );
        assert_eq!(
            conv(Postgres, tz, &format!("\"{verbatim}\"")).unwrap(),
            text(verbatim)
        );
    }
    assert!(matches!(
        conv(Sqlite, tz, "\"yesterday\""),
        Err(ValueError::Malformed { .. })
    ));
    for (t, v) in [
        ("date", "0044-03-15 BC"),
        ("timestamp without time zone", "anything"),
        ("time without time zone", "24:00:00"),
    ] {
        assert_eq!(conv(Sqlite, t, &format!("\"{v}\"")).unwrap(), text(v));
    }
    assert_eq!(
        conv(Postgres, tz, "\"2024-03-10 10:30:00+00\"").unwrap(),
        text("2024-03-10 10:30:00+00")
    );
}

fn any_json() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("null".to_owned()),
        Just("true".to_owned()),
        "-?[0-9]{1,25}(\\.[0-9]{0,40})?(e[+-]?[0-9]{1,3})?",
        any::<String>().prop_map(|s| serde_json::to_string(&s).unwrap()),
        "[0-9a-fA-FxNaInfiyt{},\" :.+-]{0,30}".prop_map(|s| serde_json::to_string(&s).unwrap()),
        Just("{\"a\":[1]}".to_owned()),
    ]
}

proptest! {
    #[test]
    fn never_panics_and_never_leaks_the_value(json in any_json(), ty in prop::sample::select(vec![
        "smallint", "bigint", "real", "numeric", "numeric(5,2)", "numeric(100,2)", "boolean", "text", "bytea",
        "date", "timestamp without time zone", "timestamp with time zone", "time without time zone", "jsonb",
        "integer[]", "boolean[]", "text[]", "uuid",
    ])) {
        for d in [MySql, Sqlite, Postgres] {
            let secret = format!("\"{}Zq9secret\"", json.trim_matches('"'));
            for input in [json.as_str(), secret.as_str()] {
                let Ok(r) = RawValue::from_string(input.to_owned()) else { continue };
                if let Err(e) = convert(d, &map_column(d, ty, None, false), &r) {
                    prop_assert!(!e.to_string().contains("Zq9secret"));
                }
            }
        }
    }

    #[test]
    fn decimals_round_trip_exactly(int in "-?[1-9][0-9]{0,34}", frac in "[0-9]{0,30}") {
        let n = if frac.is_empty() { int } else { format!("{int}.{frac}") };
        for d in [MySql, Sqlite, Postgres] {
            prop_assert_eq!(conv(d, "numeric", &n).unwrap(), text(&n));
        }
    }
}
