//! The transform stage, between routing and framing: per-table, per-column rules from the routing file
//! (`[tables."schema.table".transform]`, docs/configuration.md) rewrite row values before anything
//! leaves the primary, so neither Kafka nor any replica ever holds the raw values.
//!
//! Order matters: the router picks each row's **shard** from the original values (a tenant stays on
//! its shard whatever its key's transform), then this stage rewrites the values and re-derives the
//! Kafka **key** from the rewritten ones, so the key carries no raw value either. Deterministic rules
//! map one input to one output, so all changes of a key still share a partition and stay in order.
//!
//! A rule on a primary-key column must keep distinct keys distinct (`hash`, `fake-email`); the others
//! would merge rows on the replica and are refused. A value a rule cannot take (a `truncate-date` on
//! text that is no date) stops cdc naming table, column and LSN: it is never published in the clear.

pub mod rule;
pub mod suggest;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde_json::value::RawValue;
use shared::config::ConfigError;
use shared::{Column, Lsn, PkColumn, RowChange, RowOp, SchemaChange, TableName};

use crate::error::CdcError;
use crate::route::{RoutedRow, Router};
pub use rule::{Rule, TransformKey};

/// The environment variable holding the key of the keyed rules.
pub const KEY_VARIABLE: &str = "CASCADE_TRANSFORM_KEY";

/// The rules of every table, and the key of the keyed ones.
#[derive(Debug, Default, Clone)]
pub struct Transforms {
    tables: HashMap<TableName, HashMap<String, Rule>>,
    key: Option<TransformKey>,
}

impl Transforms {
    /// No rules: every value passes unchanged.
    pub fn none() -> Self {
        Transforms::default()
    }

    /// The rules of the routing file at `path`.
    pub fn load(path: &Path, key: Option<TransformKey>) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(
                "--config/CASCADE_CONFIG",
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        Self::parse(&text, key).map_err(|e| {
            if e.field == KEY_VARIABLE {
                e
            } else {
                ConfigError::new(format!("{} in {}", e.field, path.display()), e.reason)
            }
        })
    }

    /// The rules of a routing file's text (its other sections are the router's business). A keyed
    /// rule without a key is refused, naming the variable.
    pub fn parse(text: &str, key: Option<TransformKey>) -> Result<Self, ConfigError> {
        #[derive(serde::Deserialize)]
        struct File {
            #[serde(default)]
            tables: BTreeMap<String, Table>,
        }
        #[derive(serde::Deserialize)]
        struct Table {
            #[serde(default)]
            transform: BTreeMap<String, toml::Value>,
        }
        let file: File = toml::from_str(text)
            .map_err(|e| ConfigError::new("the routing file", e.message().to_owned()))?;
        let mut tables = HashMap::new();
        let mut keyed = None;
        for (name, table) in file.tables {
            if table.transform.is_empty() {
                continue;
            }
            let Some((schema, table_name)) = name.split_once('.') else {
                return Err(ConfigError::new(
                    format!("tables.\"{name}\""),
                    "table names are schema-qualified: \"public.users\"",
                ));
            };
            let mut rules = HashMap::new();
            for (column, value) in table.transform {
                let field = format!("tables.\"{name}\".transform.{column}");
                let rule = value.as_str().and_then(Rule::parse).ok_or_else(|| {
                    ConfigError::new(
                        field.clone(),
                        format!(
                            "{} is not a rule: use one of {}",
                            value
                                .as_str()
                                .map_or_else(|| value.type_str().to_owned(), |s| format!("{s:?}")),
                            Rule::NAMES.join(", ")
                        ),
                    )
                })?;
                if rule.is_keyed() {
                    keyed.get_or_insert(field);
                }
                rules.insert(column, rule);
            }
            tables.insert(TableName::new(schema, table_name), rules);
        }
        if let (Some(field), None) = (&keyed, &key) {
            return Err(ConfigError::new(
                KEY_VARIABLE,
                format!("{field} is a keyed rule: set {KEY_VARIABLE} to a secret key (it is never logged)"),
            ));
        }
        Ok(Transforms { tables, key })
    }

    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }

    /// The tables with rules, and each column's rule, for the start-up checks and logs.
    pub fn tables(&self) -> impl Iterator<Item = (&TableName, &HashMap<String, Rule>)> {
        self.tables.iter()
    }

    /// Rewrites one routed row change and, if its table has rules, re-derives its key and partitions
    /// from the rewritten values.
    pub fn apply(&self, routed: &mut RoutedRow, router: &Router) -> Result<(), CdcError> {
        let Some(rules) = self.tables.get(&routed.row.table) else {
            return Ok(());
        };
        self.rewrite(&mut routed.row, rules)?;
        router.rekey(routed)
    }

    /// Applies the rules to a schema change's definitions, so replicas see the shape they get rows
    /// in: dropped columns (and indexes on them) left out, rewritten columns with their new type, the
    /// fill of an added column rewritten like a value. A renamed table or column that had rules and
    /// has none under its new name stops cdc: its values would otherwise leave in the clear.
    pub fn apply_schema(&self, change: &mut SchemaChange) -> Result<(), CdcError> {
        let lsn = change.origin.lsn.unwrap_or(Lsn::ZERO);
        if let (Some(before), Some(after)) = (&change.ddl.before, &change.ddl.after) {
            if let Some(rules) = self.tables.get(&before.name()) {
                let after_rules = self.tables.get(&after.name());
                for column in rules.keys() {
                    let Some(old) = before.columns.iter().find(|c| &c.name == column) else {
                        continue;
                    };
                    let new = after.column(old.attnum).map(|c| c.name.as_str());
                    let covered = match (new, after_rules) {
                        (None, _) => true,
                        (Some(name), Some(r)) => r.contains_key(name),
                        (Some(_), None) => false,
                    };
                    if !covered {
                        return Err(CdcError::Transform {
                            table: after.name().to_string(),
                            column: new.unwrap_or(column).to_owned(),
                            lsn,
                            reason: format!(
                                "it was {}.{column}, which has a transform rule, and was renamed: add the rule \
                                 under its new name in the routing file, then restart cdc",
                                before.name()
                            ),
                        });
                    }
                }
            }
        }
        for def in [change.ddl.before.as_mut(), change.ddl.after.as_mut()]
            .into_iter()
            .flatten()
        {
            let name = def.name();
            let Some(rules) = self.tables.get(&name) else {
                continue;
            };
            def.columns
                .retain(|c| rules.get(&c.name) != Some(&Rule::Drop));
            def.indexes
                .retain(|i| i.columns.iter().all(|c| rules.get(c) != Some(&Rule::Drop)));
            for c in &mut def.columns {
                if !rules.contains_key(&c.name) {
                    continue;
                }
                let had_fill = c.fill.is_some();
                let mut one = vec![Column {
                    name: c.name.clone(),
                    type_name: c.type_name.clone(),
                    typeoid: Some(c.typeoid),
                    value: c.fill.take().unwrap_or_else(null),
                }];
                self.rewrite_columns(&mut one, rules)
                    .map_err(|(column, reason)| CdcError::Transform {
                        table: name.to_string(),
                        column,
                        lsn,
                        reason,
                    })?;
                if let Some(done) = one.pop() {
                    c.type_name = done.type_name;
                    c.typeoid = done.typeoid.unwrap_or(c.typeoid);
                    if had_fill {
                        c.fill = Some(done.value);
                    }
                }
            }
        }
        Ok(())
    }

    fn rewrite(&self, row: &mut RowChange, rules: &HashMap<String, Rule>) -> Result<(), CdcError> {
        let lsn = row.origin.lsn.unwrap_or(Lsn::ZERO);
        let fail = |column: &str, reason: String| CdcError::Transform {
            table: row.table.to_string(),
            column: column.to_owned(),
            lsn,
            reason,
        };
        for pk in &row.pk {
            if let Some(rule) = rules.get(&pk.name) {
                if !rule.keeps_keys_distinct() {
                    return Err(fail(
                        &pk.name,
                        format!(
                            "it is part of the primary key, and {} would merge distinct rows on the replica; use hash or fake-email",
                            rule.name()
                        ),
                    ));
                }
            }
        }
        let (new, old) = match &mut row.op {
            RowOp::Insert { new } => (Some(new), None),
            RowOp::Update { new, old } => (Some(new), old.as_mut()),
            RowOp::Delete { old } => (None, Some(old)),
        };
        for columns in new.into_iter().chain(old) {
            self.rewrite_columns(columns, rules)
                .map_err(|(column, reason)| fail(&column, reason))?;
        }
        rewrite_pk(&mut row.pk, rules);
        Ok(())
    }

    fn rewrite_columns(
        &self,
        columns: &mut Vec<Column>,
        rules: &HashMap<String, Rule>,
    ) -> Result<(), (String, String)> {
        columns.retain(|c| rules.get(&c.name) != Some(&Rule::Drop));
        for column in columns.iter_mut() {
            let Some(&rule) = rules.get(&column.name) else {
                continue;
            };
            let fail = |reason: &str| (column.name.clone(), reason.to_owned());
            if let Some(reason) = rule.refuses_type(&column.type_name) {
                return Err(fail(reason));
            }
            let value = match value_text(&column.value).map_err(fail)? {
                None => None,
                Some(text) => rule.apply(&text, self.key.as_ref()).map_err(fail)?,
            };
            column.value = match value {
                // A JSON string of any text is valid JSON.
                Some(text) => RawValue::from_string(serde_json::Value::String(text).to_string())
                    .map_err(|_| fail("the transformed value is not valid JSON"))?,
                None => null(),
            };
            let (type_name, typeoid) = rule.column_type(&column.type_name, column.typeoid);
            column.type_name = type_name;
            column.typeoid = typeoid;
        }
        Ok(())
    }
}

/// The primary key's column types follow their columns' new types.
fn rewrite_pk(pk: &mut [PkColumn], rules: &HashMap<String, Rule>) {
    for column in pk {
        if let Some(rule) = rules.get(&column.name) {
            let (type_name, typeoid) = rule.column_type(&column.type_name, column.typeoid);
            column.type_name = type_name;
            column.typeoid = typeoid;
        }
    }
}

fn null() -> Box<RawValue> {
    RawValue::from_string("null".to_owned()).unwrap_or_else(|_| unreachable!("null is JSON"))
}

/// The text a rule sees: a JSON string's content, a number's or boolean's exact text; `None` for NULL.
fn value_text(value: &RawValue) -> Result<Option<String>, &'static str> {
    let raw = value.get();
    match raw.as_bytes().first() {
        Some(b'"') => serde_json::from_str::<String>(raw)
            .map(Some)
            .map_err(|_| "the value is not a valid JSON string"),
        _ if raw == "null" => Ok(None),
        _ => Ok(Some(raw.to_owned())),
    }
}

#[cfg(test)]
mod tests;
