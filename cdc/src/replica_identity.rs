//! The source tables' replica identity against the routing file: a sharded table's updates and
//! deletes must carry its shard key (in the old row's identity), or cdc cannot tell which shard they
//! belong to. cdc refuses to start while any sharded table lacks it ([`check_shard_keys`]), and
//! `cdc setup` lists and fixes the same tables ([`inspect`]).

use shared::service::Invalid;
use shared::shards::ShardMap;
use tokio_postgres::Client;

use crate::error::CdcError;

/// What the catalog says about one sharded table's replica identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `pg_class.relreplident`: `d` default (the primary key), `f` full, `i` an index, `n` nothing.
    pub kind: char,
    pub has_primary_key: bool,
    /// The shard key is a column of the primary key.
    pub key_in_primary_key: bool,
    /// The shard key is a column of the index chosen with `REPLICA IDENTITY USING INDEX`.
    pub key_in_identity_index: bool,
}

/// A sharded table whose updates and deletes would not carry its shard key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    /// `schema.table`, as in the routing file.
    pub table: String,
    pub shard_key: String,
    /// Why, in a few words.
    pub reason: String,
}

impl Gap {
    /// The statement that fixes it.
    pub fn fix(&self) -> String {
        format!(
            "ALTER TABLE {} REPLICA IDENTITY FULL;",
            qualified_name(&self.table)
        )
    }
}

/// The sharded tables of the routing file, judged.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// (table, shard key, how the key is carried).
    pub ok: Vec<(String, String, &'static str)>,
    pub gaps: Vec<Gap>,
    /// Sharded tables the source does not have (yet): nothing to check.
    pub missing: Vec<String>,
}

/// Whether changes of a table with `identity` carry `shard_key` in their old row: `Ok(how)` or
/// `Err(why not)`. Pure.
pub fn judge(identity: &Identity, shard_key: &str) -> Result<&'static str, String> {
    match identity.kind {
        'f' => Ok("REPLICA IDENTITY FULL"),
        'd' if identity.key_in_primary_key => Ok("the shard key is part of the primary key"),
        'd' if identity.has_primary_key => Err(format!(
            "its replica identity is the primary key, which does not include the shard key {shard_key}"
        )),
        'd' => Err("it has no primary key, so its updates and deletes carry no old row".to_owned()),
        'i' if identity.key_in_identity_index => {
            Ok("the shard key is part of the replica identity index")
        }
        'i' => Err(format!(
            "its replica identity index does not include the shard key {shard_key}"
        )),
        'n' => Err("it is REPLICA IDENTITY NOTHING, so its updates and deletes carry no old row".to_owned()),
        other => Err(format!("unknown replica identity {other:?}")),
    }
}

/// Reads the replica identity of every sharded table of `shards` on the source.
pub async fn inspect(client: &Client, shards: &ShardMap) -> Result<Report, CdcError> {
    let mut report = Report::default();
    for (table, column) in shards.sharded_tables() {
        let (schema, name) = table.split_once('.').unwrap_or(("public", table));
        let row = client
            .query_opt(
                "SELECT c.relreplident::text, \
                   EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary), \
                   EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a \
                             ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
                           WHERE i.indrelid = c.oid AND i.indisprimary AND a.attname = $3), \
                   EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a \
                             ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
                           WHERE i.indrelid = c.oid AND i.indisreplident AND a.attname = $3) \
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')",
                &[&schema, &name, &column],
            )
            .await
            .map_err(|source| CdcError::SourceQuery {
                context: "reading the replica identity of sharded tables",
                source,
            })?;
        let Some(row) = row else {
            report.missing.push(table.to_owned());
            continue;
        };
        let kind: String = row.get(0);
        let identity = Identity {
            kind: kind.chars().next().unwrap_or('?'),
            has_primary_key: row.get(1),
            key_in_primary_key: row.get(2),
            key_in_identity_index: row.get(3),
        };
        match judge(&identity, column) {
            Ok(how) => report.ok.push((table.to_owned(), column.to_owned(), how)),
            Err(reason) => report.gaps.push(Gap {
                table: table.to_owned(),
                shard_key: column.to_owned(),
                reason,
            }),
        }
    }
    Ok(report)
}

/// Refuses to stream while a sharded table's updates or deletes would lack its shard key: cdc would
/// otherwise stop at the first such change, possibly hours later.
pub async fn check_shard_keys(client: &Client, shards: &ShardMap) -> Result<(), CdcError> {
    let report = inspect(client, shards).await?;
    for table in &report.missing {
        tracing::info!(
            table,
            "sharded table not found on the source (yet); its replica identity is not checked"
        );
    }
    if report.gaps.is_empty() {
        return Ok(());
    }
    Err(CdcError::ShardKeyNotInIdentity(refusal(&report.gaps)))
}

/// The refusal, naming each table and its fix.
pub fn refusal(gaps: &[Gap]) -> Invalid {
    let mut message = format!(
        "{} sharded table(s) would send updates and deletes without their shard key, and cdc cannot \
         tell their shard; fix each on the source, then start cdc again:",
        gaps.len()
    );
    for gap in gaps {
        message.push_str(&format!(
            "\n  {} (shard key {}): {}; run: {}",
            gap.table,
            gap.shard_key,
            gap.reason,
            gap.fix()
        ));
    }
    message.push_str(
        "\n(or give the table a unique index that includes the shard key and select it with \
         ALTER TABLE … REPLICA IDENTITY USING INDEX …; `cdc setup --source-url … --config … --apply` \
         runs the statements above)",
    );
    Invalid::source(message)
}

/// `schema.table` with each part double-quoted where PostgreSQL needs it.
pub fn qualified_name(table: &str) -> String {
    let (schema, name) = table.split_once('.').unwrap_or(("public", table));
    format!("{}.{}", ident(schema), ident(name))
}

fn ident(s: &str) -> String {
    let plain = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        s.to_owned()
    } else {
        crate::capture::client::quote_ident(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(kind: char, pk: bool, in_pk: bool, in_index: bool) -> Identity {
        Identity {
            kind,
            has_primary_key: pk,
            key_in_primary_key: in_pk,
            key_in_identity_index: in_index,
        }
    }

    #[test]
    fn identities_that_carry_the_shard_key() {
        assert!(judge(&id('f', false, false, false), "org_id").is_ok());
        assert!(judge(&id('d', true, true, false), "org_id").is_ok());
        assert!(judge(&id('i', true, false, true), "org_id").is_ok());
    }

    #[test]
    fn identities_that_lose_the_shard_key() {
        let why = judge(&id('d', true, false, false), "org_id").unwrap_err();
        assert!(
            why.contains("primary key") && why.contains("org_id"),
            "{why}"
        );
        assert!(judge(&id('d', false, false, false), "org_id")
            .unwrap_err()
            .contains("no primary key"));
        assert!(judge(&id('i', true, true, false), "org_id").is_err());
        assert!(judge(&id('n', true, true, true), "org_id")
            .unwrap_err()
            .contains("NOTHING"));
    }

    #[test]
    fn the_fix_quotes_names_that_need_it() {
        let gap = |table: &str| Gap {
            table: table.to_owned(),
            shard_key: "org_id".to_owned(),
            reason: String::new(),
        };
        assert_eq!(
            gap("public.events").fix(),
            "ALTER TABLE public.events REPLICA IDENTITY FULL;"
        );
        assert_eq!(
            gap("Sales.line items").fix(),
            "ALTER TABLE \"Sales\".\"line items\" REPLICA IDENTITY FULL;"
        );
        let text = refusal(&[gap("public.events")]).to_string();
        assert!(
            text.contains("public.events (shard key org_id)")
                && text.contains("ALTER TABLE public.events REPLICA IDENTITY FULL;"),
            "{text}"
        );
    }
}
