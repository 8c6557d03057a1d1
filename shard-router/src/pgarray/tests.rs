use super::*;
use proptest::prelude::*;
use serde_json::{json, Value};

fn conv(s: &str, k: ElementKind) -> Result<String, ArrayError> {
    array_to_json(s, k)
}

#[test]
fn converts_the_renderings_postgres_prints() {
    use ElementKind::*;
    assert_eq!(conv("{}", Number).unwrap(), "[]");
    assert_eq!(conv("{1,2,NULL}", Number).unwrap(), "[1,2,null]");
    assert_eq!(
        conv("{12345678901234567890.0123456789,-0.5,1e+100}", Number).unwrap(),
        "[12345678901234567890.0123456789,-0.5,1e+100]"
    );
    assert_eq!(
        conv("{NaN,Infinity,-Infinity}", Number).unwrap(),
        r#"["NaN","Infinity","-Infinity"]"#
    );
    assert_eq!(conv("{t,f,NULL}", Bool).unwrap(), "[true,false,null]");
    assert_eq!(
        conv(r#"{"a b","c\"d",NULL,"NULL",null,"",e\\f}"#, String).unwrap(),
        r#"["a b","c\"d",null,"NULL",null,"","e\\f"]"#
    );
    assert_eq!(conv("{{1,2},{3,4}}", Number).unwrap(), "[[1,2],[3,4]]");
    assert_eq!(conv("[1:2]={1,2}", Number).unwrap(), "[1,2]");
    assert_eq!(
        conv("[0:1][-2:-1]={{a,b},{c,d}}", String).unwrap(),
        r#"[["a","b"],["c","d"]]"#
    );
    assert_eq!(conv("{héllo,世界}", String).unwrap(), r#"["héllo","世界"]"#);
}

#[test]
fn trims_unquoted_whitespace_but_keeps_escaped_and_quoted() {
    let got = conv(" { a b , \\ x\\ ,\" q \"} ", ElementKind::String).unwrap();
    assert_eq!(got, r#"["a b"," x "," q "]"#);
    // Non-ASCII whitespace is data, not padding.
    assert_eq!(
        conv("{\u{3000}a}", ElementKind::String).unwrap(),
        "[\"\u{3000}a\"]"
    );
    // A backslash escapes in unquoted elements too; an escaped NULL is a string.
    assert_eq!(
        conv(r"{\NULL,a\,b}", ElementKind::String).unwrap(),
        r#"["NULL","a,b"]"#
    );
}

#[test]
fn escapes_control_characters_like_serde_json() {
    let got = conv("{\"a\nb\u{1}\u{7f}\"}", ElementKind::String).unwrap();
    assert_eq!(
        got,
        serde_json::to_string(&json!(["a\nb\u{1}\u{7f}"])).unwrap()
    );
}

#[test]
fn rejects_malformed_literals_with_positions_only() {
    use ElementKind::*;
    let bad = [
        "",
        "1,2",
        "{",
        "{1,2",
        "{1,}",
        "{,1}",
        "{1 2}x",
        "{1}}",
        "{\"a}",
        "{a\"b\"}",
        "{{1},2}",
        "{1,{2}}",
        "[1:2]{1}",
        "[x]={1}",
        "{a\\",
        "{{{{{{{1}}}}}}}",
    ];
    for s in bad {
        let e = conv(s, String).unwrap_err();
        assert!(!e.to_string().is_empty(), "{s:?}");
    }
    assert_eq!(
        conv("{{{{{{{1}}}}}}}", String).unwrap_err(),
        ArrayError::TooDeep
    );
    assert!(conv("{{{{{{1}}}}}}", Number).is_ok());
    assert_eq!(
        conv("{1,x}", Number).unwrap_err(),
        ArrayError::NotANumber { at: 3 }
    );
    assert_eq!(
        conv("{01}", Number).unwrap_err(),
        ArrayError::NotANumber { at: 1 }
    );
    assert_eq!(
        conv("{yes}", Bool).unwrap_err(),
        ArrayError::NotABoolean { at: 1 }
    );
    let e = conv("{\"secret value}", String).unwrap_err().to_string();
    assert!(!e.contains("secret"), "{e}");
}

#[test]
fn deep_nesting_does_not_overflow() {
    let s = "{".repeat(100_000);
    assert_eq!(
        conv(&s, ElementKind::Number).unwrap_err(),
        ArrayError::TooDeep
    );
}

#[test]
fn json_number_grammar() {
    for ok in [
        "0",
        "-0",
        "1.5",
        "-12.340",
        "1e5",
        "1E+5",
        "2.5e-07",
        "123456789012345678901234567890",
    ] {
        assert!(is_json_number(ok), "{ok}");
    }
    for bad in [
        "", "-", "01", "1.", ".5", "+1", "1e", "1e+", "NaN", "Infinity", "0x1", "1 ", "1_0",
    ] {
        assert!(!is_json_number(bad), "{bad}");
    }
}

/// A nested array as PostgreSQL holds it: each level holds elements or sub-arrays.
#[derive(Clone, Debug)]
enum Tree {
    Leaves(Vec<Option<std::string::String>>),
    Nested(Vec<Tree>),
}

/// Renders like PostgreSQL's `array_out`.
fn render(t: &Tree, out: &mut std::string::String) {
    out.push('{');
    match t {
        Tree::Leaves(v) => {
            for (i, e) in v.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                match e {
                    None => out.push_str("NULL"),
                    Some(s) => {
                        let quote = s.is_empty()
                            || s.eq_ignore_ascii_case("NULL")
                            || s.chars().any(|c| {
                                matches!(c, '{' | '}' | ',' | '"' | '\\') || is_pg_space(c)
                            });
                        if quote {
                            out.push('"');
                            for c in s.chars() {
                                if c == '"' || c == '\\' {
                                    out.push('\\');
                                }
                                out.push(c);
                            }
                            out.push('"');
                        } else {
                            out.push_str(s);
                        }
                    }
                }
            }
        }
        Tree::Nested(v) => {
            for (i, t) in v.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                render(t, out);
            }
        }
    }
    out.push('}');
}

fn expected(t: &Tree) -> Value {
    match t {
        Tree::Leaves(v) => Value::Array(
            v.iter()
                .map(|e| e.clone().map_or(Value::Null, Value::String))
                .collect(),
        ),
        Tree::Nested(v) => Value::Array(v.iter().map(expected).collect()),
    }
}

fn tree() -> impl Strategy<Value = Tree> {
    let element = prop_oneof![
        Just(None),
        Just(Some("NULL".to_owned())),
        Just(Some("null".to_owned())),
        Just(Some(std::string::String::new())),
        any::<std::string::String>().prop_map(Some),
        "[a-z{}\",\\ \t]{0,6}".prop_map(Some),
    ];
    let leaves = proptest::collection::vec(element, 0..6).prop_map(Tree::Leaves);
    leaves.prop_recursive(4, 64, 5, |inner| {
        proptest::collection::vec(inner, 1..4).prop_map(Tree::Nested)
    })
}

proptest! {
    #[test]
    fn round_trips_what_postgres_renders(t in tree(), decorate in any::<bool>()) {
        let mut literal = std::string::String::new();
        if decorate {
            literal.push_str("[1:2]=");
        }
        render(&t, &mut literal);
        let json = array_to_json(&literal, ElementKind::String).unwrap();
        let parsed: Value = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(&parsed, &expected(&t));
        prop_assert_eq!(json, serde_json::to_string(&expected(&t)).unwrap());
    }

    #[test]
    fn never_panics(s in "[{}\\[\\]\",\\\\ =:aNULnul1tf.é-]{0,40}", k in prop_oneof![Just(ElementKind::Number), Just(ElementKind::Bool), Just(ElementKind::String)]) {
        if let Ok(json) = array_to_json(&s, k) {
            prop_assert!(serde_json::from_str::<Value>(&json).is_ok(), "invalid JSON from {:?}", s);
        }
    }

    #[test]
    fn numbers_survive_digit_for_digit(v in proptest::collection::vec(proptest::option::of("-?(0|[1-9][0-9]{0,40})(\\.[0-9]{1,30})?"), 0..8)) {
        let literal = format!("{{{}}}", v.iter().map(|e| e.as_deref().unwrap_or("NULL")).collect::<Vec<_>>().join(","));
        let want = format!("[{}]", v.iter().map(|e| e.as_deref().unwrap_or("null")).collect::<Vec<_>>().join(","));
        prop_assert_eq!(array_to_json(&literal, ElementKind::Number).unwrap(), want);
    }
}
