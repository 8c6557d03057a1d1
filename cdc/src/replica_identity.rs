//! Checks of the source tables' replica identity against the routing file: a sharded table's updates
//! and deletes must carry its shard key, or cdc cannot tell which shard they belong to.

use tokio_postgres::Client;

/// Warns about sharded tables whose deletes will not carry their shard key: the key is not part of
/// the primary key and the table is not `REPLICA IDENTITY FULL`. cdc would stop at the first such
/// delete (it cannot tell the shard); better to say so at start, with the fix.
pub async fn check_shard_keys(client: &Client, shards: &shared::shards::ShardMap) {
    for (table, column) in shards.sharded_tables() {
        let Some((schema, name)) = table.split_once('.') else {
            continue;
        };
        let row = client
            .query_opt(
                "SELECT c.relreplident::text, EXISTS (SELECT 1 FROM pg_index i \
                   JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
                   WHERE i.indrelid = c.oid AND i.indisprimary AND a.attname = $3) \
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relname = $2",
                &[&schema, &name, &column],
            )
            .await;
        match row {
            Ok(Some(row)) => {
                let identity: String = row.get(0);
                let key_in_pk: bool = row.get(1);
                if identity != "f" && !key_in_pk {
                    tracing::warn!(
                        table,
                        shard_key = column,
                        "deletes of this table will not carry its shard key, and cdc will stop at the first one: run ALTER TABLE {table} REPLICA IDENTITY FULL (or make the shard key part of the primary key)"
                    );
                }
            }
            Ok(None) => tracing::info!(table, "sharded table not found on the source (yet)"),
            Err(error) => {
                tracing::debug!(table, error = %error, "cannot check the shard key's replica identity")
            }
        }
    }
}
