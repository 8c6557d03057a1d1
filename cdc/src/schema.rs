//! Schema changes: event triggers on the source put each DDL command that changes a captured table
//! into the WAL, as a transactional logical message (prefix [`MESSAGE_PREFIX`]) carrying the table's
//! definition before and after the command, at the command's exact position in its transaction. The
//! pump turns each into an `S` event ([`shared::SchemaChange`]) routed like a truncate: to every
//! partition that can hold the table. Routers apply it at a barrier (see the router's `schema`).
//!
//! What runs on the source ([`INSTALL`], idempotent, by cdc at start when its user is a superuser, or by
//! `cdc setup --apply`):
//! - `cascade.table_defs`: the last definition of every captured table (its "before"), kept by the
//!   triggers; cdc publishes none of its changes.
//! - `ddl_command_end` → for each ordinary, permanent table the command created or altered (an index's
//!   table for index commands) whose definition changed: the message, then the new definition stored.
//!   For a column the command added, the value existing rows now hold (its default, evaluated by the
//!   source with cdc's pinned settings, so it prints as wal2json prints values).
//! - `sql_drop` → a dropped table (its last definition), and the table of a dropped index or column.
//! - `table_rewrite` → the source rewrote a table's rows (a volatile default, `ALTER … TYPE … USING`):
//!   existing rows changed without row events, so the message says `recopy` and the trigger queues a
//!   snapshot request of the table for every wal2json slot of the database (`kind` `schema-change`),
//!   which cdc copies after the change like any other request.
//! - Commands that change what replicas hold in ways Cascade does not translate (`ALTER TYPE` — enum
//!   values —, `ALTER DOMAIN`, policies, rules, anything on a partitioned table) are written as a
//!   message with `unsupported`, which cdc logs and counts; they never reach Kafka.
//!
//! The trigger functions run as their owner (`SECURITY DEFINER`): the users running migrations need no
//! rights on cascade's tables.

use serde::Deserialize;
use serde_json::value::RawValue;
use shared::{Ddl, TableName};
use tokio_postgres::Client;

use crate::error::CdcError;

/// The prefix of the logical messages the event triggers write.
pub const MESSAGE_PREFIX: &str = "cascade.ddl";

/// The table of last definitions.
pub const DEFS_TABLE: &str = "table_defs";

/// Installs (or upgrades) the event triggers, their functions and `cascade.table_defs`, and records
/// the current definition of every captured table. Idempotent; needs a superuser (event triggers).
pub const INSTALL: &str = r#"
CREATE SCHEMA IF NOT EXISTS cascade;
CREATE TABLE IF NOT EXISTS cascade.table_defs (
    relid       oid PRIMARY KEY,
    definition  jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE cascade.table_defs IS
    'Cascade: the last definition of every captured table, kept by the cascade_* event triggers';

CREATE OR REPLACE FUNCTION cascade.table_definition(rel oid) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = '' AS $fn$
SELECT pg_catalog.jsonb_build_object(
    'schema', n.nspname::text,
    'table', c.relname::text,
    'columns', coalesce((
        SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                   'attnum', a.attnum, 'name', a.attname::text,
                   'type', pg_catalog.format_type(a.atttypid, a.atttypmod),
                   'typeoid', a.atttypid::int8, 'not_null', a.attnotnull) ORDER BY a.attnum)
        FROM pg_catalog.pg_attribute a
        WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '[]'::jsonb),
    'pk', coalesce((
        SELECT pg_catalog.jsonb_agg(a.attname::text ORDER BY a.attnum)
        FROM pg_catalog.pg_index i
        JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
        WHERE i.indrelid = c.oid AND i.indisprimary), '[]'::jsonb),
    'indexes', coalesce((
        SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                   'name', ic.relname::text,
                   'columns', (SELECT pg_catalog.jsonb_agg(a.attname::text ORDER BY k.ord)
                               FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
                               JOIN pg_catalog.pg_attribute a
                                 ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                               WHERE k.ord <= i.indnkeyatts),
                   'unique', i.indisunique) ORDER BY ic.relname)
        FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
        WHERE i.indrelid = c.oid AND NOT i.indisprimary AND i.indisvalid
          AND i.indexprs IS NULL AND i.indpred IS NULL
          AND NOT (0 = ANY (i.indkey::int2[]))), '[]'::jsonb))
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = rel
$fn$;

-- Whether cdc captures the table: ordinary, permanent, outside the system schemas and cascade's own.
CREATE OR REPLACE FUNCTION cascade.is_captured(rel oid) RETURNS boolean
LANGUAGE sql STABLE SET search_path = '' AS $fn$
SELECT EXISTS (
    SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE c.oid = rel AND c.relkind = 'r' AND c.relpersistence = 'p'
      AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'cascade')
      AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp%')
$fn$;

-- The value existing rows hold in a column just added: its default evaluated once (a constant, or a
-- stable expression such as now(), which the source also evaluated once), printed by the type's
-- output function. NULL when the column has no default.
CREATE OR REPLACE FUNCTION cascade.column_fill(rel oid, col int2) RETURNS text
LANGUAGE plpgsql SET search_path = '' AS $fn$
DECLARE
    expr text;
    v text;
BEGIN
    SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid) INTO expr
    FROM pg_catalog.pg_attribute a
    JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE a.attrelid = rel AND a.attnum = col AND a.attgenerated = '';
    IF expr IS NULL THEN
        RETURN NULL;
    END IF;
    EXECUTE pg_catalog.format('SELECT pg_catalog.format(%L, (%s))', '%s', expr) INTO v;
    RETURN v;
END
$fn$;

-- Publishes the change of one table's definition (if any) and stores the new one.
CREATE OR REPLACE FUNCTION cascade.publish_table_change(rel oid, tag text) RETURNS void
LANGUAGE plpgsql SET search_path = '' AS $fn$
DECLARE
    before jsonb;
    after jsonb;
    rewritten text;
    recopy boolean;
    col jsonb;
    cols jsonb := '[]'::jsonb;
    fill text;
BEGIN
    IF NOT cascade.is_captured(rel) THEN
        RETURN;
    END IF;
    SELECT d.definition INTO before FROM cascade.table_defs d WHERE d.relid = rel;
    after := cascade.table_definition(rel);
    IF before IS NOT DISTINCT FROM after THEN
        RETURN;
    END IF;
    rewritten := coalesce(pg_catalog.current_setting('cascade.rewritten', true), '');
    recopy := pg_catalog.strpos(rewritten, ',' || rel::text || ',') > 0;
    IF recopy THEN
        PERFORM pg_catalog.set_config('cascade.rewritten',
            pg_catalog.replace(rewritten, ',' || rel::text || ',', ','), true);
    ELSIF before IS NOT NULL THEN
        FOR col IN SELECT value FROM pg_catalog.jsonb_array_elements(after->'columns') LOOP
            IF NOT EXISTS (SELECT 1 FROM pg_catalog.jsonb_array_elements(before->'columns') b
                           WHERE b.value->'attnum' = col->'attnum') THEN
                BEGIN
                    fill := cascade.column_fill(rel, (col->>'attnum')::int2);
                EXCEPTION WHEN OTHERS THEN
                    -- A default the trigger cannot evaluate again: copy the table instead.
                    fill := NULL;
                    recopy := true;
                END;
                IF fill IS NOT NULL THEN
                    col := col || pg_catalog.jsonb_build_object('fill', fill);
                END IF;
            END IF;
            cols := cols || pg_catalog.jsonb_build_array(col);
        END LOOP;
        IF recopy THEN
            after := cascade.table_definition(rel);
        ELSE
            after := pg_catalog.jsonb_set(after, '{columns}', cols);
        END IF;
    END IF;
    IF recopy AND pg_catalog.to_regclass('cascade.snapshot_requests') IS NOT NULL THEN
        INSERT INTO cascade.snapshot_requests (slot, table_schema, table_name, kind)
        SELECT s.slot_name, after->>'schema', after->>'table', 'schema-change'
        FROM pg_catalog.pg_replication_slots s
        WHERE s.plugin = 'wal2json' AND s.slot_type = 'logical'
          AND s.database = pg_catalog.current_database();
    END IF;
    PERFORM pg_catalog.pg_logical_emit_message(true, 'cascade.ddl',
        pg_catalog.jsonb_build_object('command', tag, 'recopy', recopy,
                                      'before', before, 'after', after)::text);
    INSERT INTO cascade.table_defs (relid, definition) VALUES (rel, cascade.table_definition(rel))
    ON CONFLICT (relid) DO UPDATE SET definition = EXCLUDED.definition, updated_at = now();
END
$fn$;

CREATE OR REPLACE FUNCTION cascade.on_ddl_command_end() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = '' SET "DateStyle" = 'ISO, YMD' SET "TimeZone" = 'UTC'
SET "IntervalStyle" = 'postgres' SET extra_float_digits = 1
AS $fn$
DECLARE
    rel oid;
    partitioned text;
BEGIN
    FOR rel IN
        SELECT DISTINCT CASE WHEN e.object_type IN ('index', 'index column')
                             THEN (SELECT i.indrelid FROM pg_catalog.pg_index i WHERE i.indexrelid = e.objid)
                             ELSE e.objid END
        FROM pg_catalog.pg_event_trigger_ddl_commands() e
        WHERE e.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND NOT e.in_extension
    LOOP
        CONTINUE WHEN rel IS NULL;
        PERFORM cascade.publish_table_change(rel, tg_tag);
    END LOOP;
    SELECT pg_catalog.string_agg(DISTINCT e.object_identity, ', ') INTO partitioned
    FROM pg_catalog.pg_event_trigger_ddl_commands() e
    JOIN pg_catalog.pg_class c ON c.oid = e.objid
    WHERE e.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND c.relkind = 'p';
    IF tg_tag IN ('ALTER TYPE', 'ALTER DOMAIN', 'CREATE POLICY', 'ALTER POLICY', 'DROP POLICY',
                  'CREATE RULE', 'DROP RULE') OR partitioned IS NOT NULL THEN
        PERFORM pg_catalog.pg_logical_emit_message(true, 'cascade.ddl',
            pg_catalog.jsonb_build_object('command', tg_tag, 'unsupported',
                coalesce(partitioned, (SELECT pg_catalog.string_agg(DISTINCT e.object_identity, ', ')
                                       FROM pg_catalog.pg_event_trigger_ddl_commands() e), ''))::text);
    END IF;
END
$fn$;

CREATE OR REPLACE FUNCTION cascade.on_sql_drop() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = '' SET "DateStyle" = 'ISO, YMD' SET "TimeZone" = 'UTC'
SET "IntervalStyle" = 'postgres' SET extra_float_digits = 1
AS $fn$
DECLARE
    r record;
    before jsonb;
    rel oid;
BEGIN
    FOR r IN SELECT * FROM pg_catalog.pg_event_trigger_dropped_objects() o
             WHERE o.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND NOT o.is_temporary
    LOOP
        IF r.object_type = 'table' AND r.objsubid = 0 THEN
            DELETE FROM cascade.table_defs d WHERE d.relid = r.objid RETURNING d.definition INTO before;
            CONTINUE WHEN before IS NULL;
            PERFORM pg_catalog.pg_logical_emit_message(true, 'cascade.ddl',
                pg_catalog.jsonb_build_object('command', tg_tag, 'recopy', false,
                                              'before', before)::text);
        ELSIF r.object_type = 'table column' THEN
            PERFORM cascade.publish_table_change(r.objid, tg_tag);
        ELSIF r.object_type = 'index' THEN
            FOR rel IN SELECT d.relid FROM cascade.table_defs d
                       WHERE d.definition->>'schema' = r.schema_name
                         AND d.definition->'indexes' @> pg_catalog.jsonb_build_array(
                                 pg_catalog.jsonb_build_object('name', r.object_name))
            LOOP
                PERFORM cascade.publish_table_change(rel, tg_tag);
            END LOOP;
        END IF;
    END LOOP;
END
$fn$;

CREATE OR REPLACE FUNCTION cascade.on_table_rewrite() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $fn$
BEGIN
    PERFORM pg_catalog.set_config('cascade.rewritten',
        coalesce(nullif(pg_catalog.current_setting('cascade.rewritten', true), ''), ',')
            || pg_catalog.pg_event_trigger_table_rewrite_oid()::text || ',', true);
END
$fn$;

DO $do$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_event_trigger WHERE evtname = 'cascade_ddl_command_end') THEN
        CREATE EVENT TRIGGER cascade_ddl_command_end ON ddl_command_end
            EXECUTE FUNCTION cascade.on_ddl_command_end();
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_event_trigger WHERE evtname = 'cascade_sql_drop') THEN
        CREATE EVENT TRIGGER cascade_sql_drop ON sql_drop EXECUTE FUNCTION cascade.on_sql_drop();
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_event_trigger WHERE evtname = 'cascade_table_rewrite') THEN
        CREATE EVENT TRIGGER cascade_table_rewrite ON table_rewrite
            EXECUTE FUNCTION cascade.on_table_rewrite();
    END IF;
END
$do$;

REVOKE ALL ON FUNCTION cascade.table_definition(oid), cascade.is_captured(oid),
    cascade.column_fill(oid, int2), cascade.publish_table_change(oid, text) FROM PUBLIC;

DELETE FROM cascade.table_defs d WHERE NOT cascade.is_captured(d.relid);
INSERT INTO cascade.table_defs (relid, definition)
SELECT c.oid, cascade.table_definition(c.oid) FROM pg_catalog.pg_class c WHERE cascade.is_captured(c.oid)
ON CONFLICT (relid) DO UPDATE SET definition = EXCLUDED.definition, updated_at = now();
"#;

/// Whether the three event triggers are installed and enabled.
pub async fn installed(sql: &Client) -> Result<bool, CdcError> {
    let row = sql
        .query_one(
            "SELECT count(*) = 3 FROM pg_catalog.pg_event_trigger \
             WHERE evtname IN ('cascade_ddl_command_end', 'cascade_sql_drop', 'cascade_table_rewrite') \
               AND evtenabled <> 'D'",
            &[],
        )
        .await
        .map_err(|source| CdcError::SourceQuery {
            context: "looking for cascade's event triggers",
            source,
        })?;
    Ok(row.get(0))
}

/// Installs or upgrades the capture of schema changes. `Err` when the user may not (event triggers
/// need a superuser).
pub async fn install(sql: &Client) -> Result<(), CdcError> {
    crate::snapshot::signal::ensure(sql).await?;
    sql.batch_execute(INSTALL)
        .await
        .map_err(|source| CdcError::SourceQuery {
            context: "installing the schema-change event triggers",
            source,
        })
}

/// At start: installs (upgrades) the triggers when the user is a superuser; otherwise checks they are
/// there. Returns whether schema changes are captured; says why not in a warning.
pub async fn ensure(sql: &Client) -> bool {
    let superuser = match sql
        .query_one(
            "SELECT rolsuper FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
    {
        Ok(row) => row.get::<_, bool>(0),
        Err(_) => false,
    };
    let outcome = if superuser {
        install(sql).await.map(|()| true)
    } else {
        installed(sql).await
    };
    match outcome {
        Ok(true) => true,
        Ok(false) => {
            tracing::warn!(
                "schema changes will NOT be replicated: cascade's event triggers are not installed on the \
                 source and this user is not a superuser; run `cdc setup --apply` with a superuser \
                 (DDL then reaches every replica in order)"
            );
            false
        }
        Err(error) => {
            tracing::warn!(
                error = %shared::service::error_chain(&error),
                "schema changes will NOT be replicated: cannot install cascade's event triggers"
            );
            false
        }
    }
}

/// What one trigger message says.
#[derive(Debug)]
pub enum Captured {
    /// A table's definition changed.
    Table(Box<Ddl>),
    /// A command Cascade does not translate: its tag and the objects it touched.
    Unsupported { command: String, objects: String },
}

#[derive(Deserialize)]
struct Message {
    command: String,
    #[serde(default)]
    unsupported: Option<String>,
    #[serde(default)]
    recopy: bool,
    #[serde(default)]
    before: Option<shared::TableDefinition>,
    #[serde(default)]
    after: Option<shared::TableDefinition>,
}

/// Reads a trigger message. Fill values arrive as the text of the type's output function and leave
/// printed as wal2json prints a value of the column's type (`numeric_as_string`: as cdc's stream
/// does).
pub fn parse(content: &str, numeric_as_string: bool) -> Result<Captured, String> {
    let m: Message = serde_json::from_str(content)
        .map_err(|e| format!("malformed schema-change message: {e}"))?;
    if let Some(objects) = m.unsupported {
        return Ok(Captured::Unsupported {
            command: m.command,
            objects,
        });
    }
    if m.before.is_none() && m.after.is_none() {
        return Err(format!(
            "schema-change message for {} names no table",
            m.command
        ));
    }
    let mut after = m.after;
    if let Some(def) = after.as_mut() {
        for c in &mut def.columns {
            if let Some(fill) = c.fill.take() {
                let text: Option<String> = serde_json::from_str(fill.get())
                    .map_err(|_| format!("the fill of column {:?} is not a string", c.name))?;
                c.fill = Some(render(c.typeoid, text.as_deref(), numeric_as_string));
            }
        }
    }
    Ok(Captured::Table(Box::new(Ddl {
        command: m.command,
        recopy: m.recopy,
        before: m.before,
        after,
    })))
}

fn render(typeoid: u32, text: Option<&str>, numeric_as_string: bool) -> Box<RawValue> {
    crate::snapshot::reader::render(typeoid, text, numeric_as_string)
}

/// The table an `S` event is about: its name after the change (before it, for a drop).
pub fn table_of(ddl: &Ddl) -> Option<TableName> {
    ddl.after.as_ref().or(ddl.before.as_ref()).map(|d| d.name())
}

/// Whether a change of this table is cascade's own bookkeeping (never published).
pub fn is_own(table: &TableName) -> bool {
    table.schema == "cascade" && table.name == DEFS_TABLE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_print_like_wal2json_and_unsupported_commands_are_told_apart() {
        let content = r#"{"command":"ALTER TABLE","recopy":false,
            "before":{"schema":"public","table":"t","columns":[{"attnum":1,"name":"id","type":"integer","typeoid":23,"not_null":true}],"pk":["id"],"indexes":[]},
            "after":{"schema":"public","table":"t","columns":[{"attnum":1,"name":"id","type":"integer","typeoid":23,"not_null":true},
                {"attnum":2,"name":"n","type":"numeric(10,2)","typeoid":1700,"not_null":false,"fill":"1.50"},
                {"attnum":3,"name":"b","type":"boolean","typeoid":16,"not_null":false,"fill":"t"},
                {"attnum":4,"name":"s","type":"text","typeoid":25,"not_null":true,"fill":"basic \"x\""}],"pk":["id"],"indexes":[]}}"#;
        let Captured::Table(ddl) = parse(content, false).unwrap() else {
            panic!("not a table change")
        };
        let after = ddl.after.as_ref().unwrap();
        let fills: Vec<&str> = after
            .columns
            .iter()
            .filter_map(|c| c.fill.as_ref().map(|f| f.get()))
            .collect();
        assert_eq!(fills, ["1.50", "true", r#""basic \"x\"""#]);
        assert_eq!(table_of(&ddl), Some(TableName::new("public", "t")));
        let Captured::Table(quoted) = parse(content, true).unwrap() else {
            panic!("not a table change")
        };
        assert_eq!(
            quoted.after.unwrap().columns[1]
                .fill
                .as_ref()
                .unwrap()
                .get(),
            "\"1.50\""
        );

        let unsupported = r#"{"command":"ALTER TYPE","unsupported":"public.mood"}"#;
        assert!(matches!(
            parse(unsupported, false).unwrap(),
            Captured::Unsupported { command, objects } if command == "ALTER TYPE" && objects == "public.mood"
        ));
        assert!(parse(r#"{"command":"ALTER TABLE"}"#, false)
            .unwrap_err()
            .contains("names no table"));
        assert!(parse("nope", false).unwrap_err().contains("malformed"));
    }
}
