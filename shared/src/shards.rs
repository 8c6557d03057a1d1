//! The routing file (`--config`/`CASCADE_CONFIG`): which shards exist, which column of each table is
//! its shard key (or that it is broadcast to every shard), and the rule from a shard-key value to a
//! shard. Read by `cdc` (to route) and by every router (to check its `--shard`). Documented, with a
//! complete example, in `docs/configuration.md`.
//!
//! The shard of a value is decided from its **canonical text**: the text of a JSON string (without
//! quotes or escapes), or the text of a JSON number (`42`), `true`/`false` for booleans; a plain
//! decimal (a number, or a string of the form `-?digits[.digits]`) is taken without trailing
//! fractional zeros and without a minus on zero (`1.50` → `1.5`, `1.000` → `1`), so values equal as
//! numerics always land on one shard.
//! - `hash`: shard number `(murmur2(canonical text as UTF-8) & 0x7fffffff) % number of shards`, shards
//!   numbered in file order; murmur2 is Kafka's (seed `0x9747b28c`), so any Kafka client library
//!   computes the same shard.
//! - `list`: the shard whose list contains the value (TOML integers and strings, compared by canonical
//!   text); a value listed nowhere goes to `default`.
//! - `range`: the shard whose `[from, to)` integer range contains the value; others go to `default`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::config::ConfigError;
use crate::routing::{canonical_decimal, murmur2};

/// The shard used when there is no routing file.
pub const DEFAULT_SHARD: &str = "main";

/// How a table is routed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Each row goes to the shard of its value in this column.
    ShardKey(String),
    /// Every row goes to every shard.
    Broadcast,
    /// A table not in the file: every row goes to this shard.
    Default(usize),
}

/// Why a row cannot be placed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error("table {0} is not in the routing file and `routing.unlisted_tables = \"refuse\"`")]
    UnlistedTable(String),
    #[error("the shard key {column:?} of {table} is NULL and `routing.null_key = \"refuse\"`")]
    NullKey { table: String, column: String },
    #[error("the shard key {column:?} of {table} holds a value that is neither a number, a string nor a boolean")]
    UnusableKey { table: String, column: String },
}

/// A parsed, validated routing file (or the single-shard default).
#[derive(Clone, Debug)]
pub struct ShardMap {
    shards: Vec<String>,
    tables: HashMap<String, Placement>,
    rule: Rule,
    default: usize,
    refuse_unlisted: bool,
    refuse_null: bool,
}

#[derive(Clone, Debug)]
enum Rule {
    Hash,
    List(HashMap<String, usize>),
    Range(Vec<(i128, i128, usize)>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    /// Without `[[shards]]` there is one shard, `main` (a file holding only transforms).
    #[serde(default)]
    shards: Vec<ShardEntry>,
    #[serde(default)]
    tables: BTreeMap<String, TableEntry>,
    #[serde(default)]
    routing: Option<RoutingEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShardEntry {
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TableEntry {
    shard_key: Option<String>,
    #[serde(default)]
    broadcast: bool,
    /// Column transforms, read and checked by cdc (`cdc::transform`); routing ignores them.
    #[serde(default)]
    transform: Option<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoutingEntry {
    #[serde(default = "hash")]
    rule: String,
    /// The shard for unlisted tables and for values no rule places (list/range).
    default: Option<String>,
    list: Option<BTreeMap<String, toml::Value>>,
    #[serde(default)]
    ranges: Vec<RangeEntry>,
    /// `default` (the default shard) or `refuse`.
    unlisted_tables: Option<String>,
    /// `default` (the default shard) or `refuse`.
    null_key: Option<String>,
}

fn hash() -> String {
    "hash".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RangeEntry {
    shard: String,
    from: i64,
    to: i64,
}

fn err(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::new(field.into(), reason)
}

impl ShardMap {
    /// One shard, `main`, holding every table: the behaviour without a routing file.
    pub fn single() -> Self {
        ShardMap {
            shards: vec![DEFAULT_SHARD.to_owned()],
            tables: HashMap::new(),
            rule: Rule::Hash,
            default: 0,
            refuse_unlisted: false,
            refuse_null: false,
        }
    }

    /// Reads and validates a routing file; errors name the file, table and field.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            err(
                "--config/CASCADE_CONFIG",
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        Self::parse(&text).map_err(|e| err(format!("{} in {}", e.field, path.display()), e.reason))
    }

    /// Parses and validates the text of a routing file.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let file: File = toml::from_str(text).map_err(|e| {
            let reason = e.message().to_owned();
            let at = e
                .span()
                .map(|s| {
                    let line = text[..s.start.min(text.len())].lines().count().max(1);
                    format!("line {line}")
                })
                .unwrap_or_else(|| "the file".into());
            err(at, reason)
        })?;
        let mut file = file;
        if file.shards.is_empty() {
            if file
                .tables
                .values()
                .any(|t| t.shard_key.is_some() || t.broadcast)
            {
                return Err(err(
                    "shards",
                    "tables have shard keys or are broadcast, but no [[shards]] entry names the shards",
                ));
            }
            file.shards.push(ShardEntry {
                name: DEFAULT_SHARD.to_owned(),
            });
        }
        let mut shards: Vec<String> = Vec::new();
        for (i, s) in file.shards.iter().enumerate() {
            if !crate::config::is_kafka_name(&s.name) {
                return Err(err(
                    format!("shards[{i}].name"),
                    format!(
                        "{:?} is not a valid shard name (a-z, A-Z, 0-9, '.', '_', '-')",
                        s.name
                    ),
                ));
            }
            if shards.contains(&s.name) {
                return Err(err(
                    format!("shards[{i}].name"),
                    format!("shard {:?} is defined twice", s.name),
                ));
            }
            shards.push(s.name.clone());
        }
        let index = |field: &str, name: &str| {
            shards.iter().position(|s| s == name).ok_or_else(|| {
                err(
                    field,
                    format!("{name:?} is not one of the shards {shards:?}"),
                )
            })
        };
        let routing = file.routing.unwrap_or(RoutingEntry {
            rule: hash(),
            default: None,
            list: None,
            ranges: Vec::new(),
            unlisted_tables: None,
            null_key: None,
        });
        let mut list = routing.list.unwrap_or_default();
        // `[routing.list] default = "a"` is the shape the brief shows; `routing.default` also works.
        let list_default = match list.remove("default") {
            Some(toml::Value::String(s)) => Some(s),
            Some(_) => return Err(err("routing.list.default", "must be a shard name")),
            None => None,
        };
        let default = match routing.default.as_deref().or(list_default.as_deref()) {
            Some(name) => index("routing.default", name)?,
            None => 0,
        };
        let rule = match routing.rule.as_str() {
            "hash" => Rule::Hash,
            "list" => {
                let mut values = HashMap::new();
                for (shard, entries) in &list {
                    let field = format!("routing.list.{shard}");
                    let s = index(&field, shard)?;
                    let toml::Value::Array(entries) = entries else {
                        return Err(err(field, "must be an array of values"));
                    };
                    for v in entries {
                        let text = match v {
                            toml::Value::Integer(i) => i.to_string(),
                            toml::Value::String(t) => t.clone(),
                            toml::Value::Boolean(b) => b.to_string(),
                            other => {
                                return Err(err(
                                    &field,
                                    format!(
                                        "{} is not an integer, string or boolean",
                                        other.type_str()
                                    ),
                                ))
                            }
                        };
                        if let Some(prev) = values.insert(text.clone(), s) {
                            if prev != s {
                                return Err(err(
                                    &field,
                                    format!(
                                        "value {text} is also listed for shard {:?}",
                                        shards[prev]
                                    ),
                                ));
                            }
                        }
                    }
                }
                Rule::List(values)
            }
            "range" => {
                let mut ranges = Vec::new();
                for (i, r) in routing.ranges.iter().enumerate() {
                    let s = index(&format!("routing.ranges[{i}].shard"), &r.shard)?;
                    if r.from >= r.to {
                        return Err(err(
                            format!("routing.ranges[{i}]"),
                            "from must be below to (ranges are [from, to))",
                        ));
                    }
                    for &(f, t, _) in &ranges {
                        if i128::from(r.from) < t && f < i128::from(r.to) {
                            return Err(err(
                                format!("routing.ranges[{i}]"),
                                "overlaps an earlier range",
                            ));
                        }
                    }
                    ranges.push((i128::from(r.from), i128::from(r.to), s));
                }
                Rule::Range(ranges)
            }
            other => {
                return Err(err(
                    "routing.rule",
                    format!("{other:?} is not a rule: use \"hash\", \"list\" or \"range\""),
                ))
            }
        };
        if !list.is_empty() && !matches!(rule, Rule::List(_)) {
            return Err(err(
                "routing.list",
                "given, but routing.rule is not \"list\"",
            ));
        }
        let policy = |field: &str, v: Option<&str>| match v {
            None | Some("default") => Ok(false),
            Some("refuse") => Ok(true),
            Some(other) => Err(err(
                field,
                format!("{other:?}: use \"default\" or \"refuse\""),
            )),
        };
        let refuse_unlisted = policy(
            "routing.unlisted_tables",
            routing.unlisted_tables.as_deref(),
        )?;
        let refuse_null = policy("routing.null_key", routing.null_key.as_deref())?;
        let mut tables = HashMap::new();
        for (name, t) in file.tables {
            let field = |f: &str| format!("tables.\"{name}\".{f}");
            if name.split('.').count() != 2 || name.starts_with('.') || name.ends_with('.') {
                return Err(err(
                    format!("tables.\"{name}\""),
                    "table names are schema-qualified: \"public.users\"",
                ));
            }
            let placement = match (t.shard_key, t.broadcast) {
                (Some(_), true) => {
                    return Err(err(
                        field("broadcast"),
                        "a table has either a shard_key or broadcast = true, not both",
                    ))
                }
                (Some(k), false) if k.is_empty() => {
                    return Err(err(field("shard_key"), "is empty"))
                }
                (Some(k), false) => Placement::ShardKey(k),
                (None, true) => Placement::Broadcast,
                // Only transforms: the table is routed like an unlisted one.
                (None, false) if t.transform.is_some() => continue,
                (None, false) => {
                    return Err(err(
                        field("shard_key"),
                        "missing: give the shard-key column, broadcast = true, or a [tables.\"…\".transform] section",
                    ))
                }
            };
            tables.insert(name, placement);
        }
        Ok(ShardMap {
            shards,
            tables,
            rule,
            default,
            refuse_unlisted,
            refuse_null,
        })
    }

    /// The shard names, in file order (shard numbers are indices into this).
    pub fn shards(&self) -> &[String] {
        &self.shards
    }

    pub fn shard_index(&self, name: &str) -> Option<usize> {
        self.shards.iter().position(|s| s == name)
    }

    /// Tables named in the file with a shard key: (`schema.table`, column).
    pub fn sharded_tables(&self) -> impl Iterator<Item = (&str, &str)> {
        self.tables.iter().filter_map(|(t, p)| match p {
            Placement::ShardKey(k) => Some((t.as_str(), k.as_str())),
            _ => None,
        })
    }

    /// How the table `schema.table` is routed; the name is only built when the file lists tables
    /// (this runs for every row change).
    pub fn placement_of(&self, schema: &str, table: &str) -> Result<Placement, PlacementError> {
        if self.tables.is_empty() && !self.refuse_unlisted {
            return Ok(Placement::Default(self.default));
        }
        self.placement(&format!("{schema}.{table}"))
    }

    /// How the table `schema.table` is routed.
    pub fn placement(&self, table: &str) -> Result<Placement, PlacementError> {
        match self.tables.get(table) {
            Some(p) => Ok(p.clone()),
            None if self.refuse_unlisted => Err(PlacementError::UnlistedTable(table.to_owned())),
            None => Ok(Placement::Default(self.default)),
        }
    }

    /// The shard of a shard-key value (raw JSON as wal2json printed it).
    pub fn shard_of(
        &self,
        table: &str,
        column: &str,
        value: &RawValue,
    ) -> Result<usize, PlacementError> {
        let raw = value.get();
        let text: String = match raw.as_bytes().first() {
            Some(b'n') => {
                return if self.refuse_null {
                    Err(PlacementError::NullKey {
                        table: table.to_owned(),
                        column: column.to_owned(),
                    })
                } else {
                    Ok(self.default)
                }
            }
            Some(b'"') => {
                let text = serde_json::from_str::<String>(raw).map_err(|_| {
                    PlacementError::UnusableKey {
                        table: table.to_owned(),
                        column: column.to_owned(),
                    }
                })?;
                match canonical_decimal(&text) {
                    same if same.len() == text.len() => text,
                    shorter => shorter.to_owned(),
                }
            }
            Some(b'-' | b'0'..=b'9') => canonical_decimal(raw).to_owned(),
            Some(b't' | b'f') => raw.to_owned(),
            _ => {
                return Err(PlacementError::UnusableKey {
                    table: table.to_owned(),
                    column: column.to_owned(),
                })
            }
        };
        Ok(match &self.rule {
            Rule::Hash => ((murmur2(text.as_bytes()) & 0x7fff_ffff) as usize) % self.shards.len(),
            Rule::List(values) => values.get(&text).copied().unwrap_or(self.default),
            Rule::Range(ranges) => text
                .parse::<i128>()
                .ok()
                .and_then(|v| {
                    ranges
                        .iter()
                        .find(|(f, t, _)| *f <= v && v < *t)
                        .map(|r| r.2)
                })
                .unwrap_or(self.default),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BRIEF: &str = r#"
[[shards]]
name = "a"
[[shards]]
name = "b"

[tables."public.organizations"]
shard_key = "id"
[tables."public.users"]
shard_key = "org_id"
[tables."public.plans"]
broadcast = true            # every shard gets every row

[routing]
rule = "list"
[routing.list]
a = [1, 2, 3]
b = [4, 5, 6]
default = "a"
"#;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap()
    }

    #[test]
    fn the_briefs_example_works_as_written() {
        let m = ShardMap::parse(BRIEF).unwrap();
        assert_eq!(m.shards(), ["a", "b"]);
        assert_eq!(
            m.placement("public.users").unwrap(),
            Placement::ShardKey("org_id".into())
        );
        assert_eq!(m.placement("public.plans").unwrap(), Placement::Broadcast);
        assert_eq!(m.placement("public.other").unwrap(), Placement::Default(0));
        let shard = |v: &str| m.shard_of("public.users", "org_id", &raw(v)).unwrap();
        assert_eq!(shard("1"), 0);
        assert_eq!(shard("5"), 1);
        assert_eq!(shard("99"), 0, "unlisted values go to the default");
        assert_eq!(shard("null"), 0);
    }

    #[test]
    fn hash_rule_uses_kafkas_murmur2_over_the_canonical_text() {
        let m = ShardMap::parse(
            "[[shards]]\nname = \"a\"\n[[shards]]\nname = \"b\"\n[[shards]]\nname = \"c\"\n",
        )
        .unwrap();
        for v in ["1", "42", "\"acme\"", "\"ü\""] {
            let text = serde_json::from_str::<String>(v).unwrap_or_else(|_| v.to_owned());
            let want = ((murmur2(text.as_bytes()) & 0x7fff_ffff) as usize) % 3;
            assert_eq!(m.shard_of("t", "k", &raw(v)).unwrap(), want);
        }
        // A number and the string of its digits land on the same shard.
        assert_eq!(
            m.shard_of("t", "k", &raw("7")).unwrap(),
            m.shard_of("t", "k", &raw("\"7\"")).unwrap()
        );
    }

    #[test]
    fn ranges_and_policies() {
        let text = r#"
[[shards]]
name = "low"
[[shards]]
name = "high"
[routing]
rule = "range"
default = "low"
unlisted_tables = "refuse"
null_key = "refuse"
[[routing.ranges]]
shard = "low"
from = 0
to = 1000
[[routing.ranges]]
shard = "high"
from = 1000
to = 9223372036854775807
[tables."public.t"]
shard_key = "k"
"#;
        let m = ShardMap::parse(text).unwrap();
        assert_eq!(m.shard_of("public.t", "k", &raw("999")).unwrap(), 0);
        assert_eq!(m.shard_of("public.t", "k", &raw("1000")).unwrap(), 1);
        assert!(matches!(
            m.shard_of("public.t", "k", &raw("null")),
            Err(PlacementError::NullKey { .. })
        ));
        assert!(matches!(
            m.placement("public.x"),
            Err(PlacementError::UnlistedTable(_))
        ));
    }

    #[test]
    fn a_file_with_only_transforms_has_one_shard_main() {
        let m =
            ShardMap::parse("[tables.\"public.customers\".transform]\nemail = \"hash\"\n").unwrap();
        assert_eq!(m.shards(), ["main"]);
        assert_eq!(
            m.placement_of("public", "customers").unwrap(),
            Placement::Default(0)
        );
    }

    #[test]
    fn errors_name_the_table_and_field() {
        let cases = [
            ("[[shards]]\nname = \"a\"\n[tables.\"public.t\"]\n", "tables.\"public.t\".shard_key"),
            ("[[shards]]\nname = \"a\"\n[tables.\"public.t\"]\nshard_key = \"k\"\nbroadcast = true\n", "tables.\"public.t\".broadcast"),
            ("[[shards]]\nname = \"a\"\n[routing]\nrule = \"list\"\n[routing.list]\nb = [1]\n", "routing.list.b"),
            ("[[shards]]\nname = \"a\"\n[routing]\nrule = \"modulo\"\n", "routing.rule"),
            ("[[shards]]\nname = \"a b\"\n", "shards[0].name"),
            ("shards = []\n[tables.\"public.t\"]\nshard_key = \"k\"\n", "shards"),
            ("[[shards]]\nname = \"a\"\n[tables.users]\nshard_key = \"k\"\n", "tables.\"users\""),
            ("[[shards]]\nname = \"a\"\nextra = 1\n", "line"),
        ];
        for (text, field) in cases {
            let e = ShardMap::parse(text).unwrap_err();
            assert!(
                e.field.starts_with(field),
                "{text:?}: {} (expected field {field})",
                e
            );
        }
    }
}
