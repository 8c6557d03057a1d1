//! MySQL and MariaDB specifics. One dialect serves both: the SQL here runs on MySQL 8 and on MariaDB
//! 10.5+ (no `CAST(… AS JSON)`, which MariaDB lacks; `VALUES(col)` in `ON DUPLICATE KEY UPDATE`,
//! which MySQL 8 deprecates but keeps and MariaDB requires).

use super::{quote_ident, TableDef};
use crate::dialect::Dialect;
use crate::types::ColumnType;

/// The default collation for MariaDB replicas: binary and NO PAD, so `'a'`/`'A'` and `'a'`/`'a '` stay
/// distinct keys, as they are in PostgreSQL.
pub const MARIADB_COLLATION: &str = "utf8mb4_nopad_bin";
/// The same for MySQL 8 (all `_0900_` collations are NO PAD).
pub const MYSQL8_COLLATION: &str = "utf8mb4_0900_bin";

/// True for a plausible collation name (`[A-Za-z0-9_]`, at most 64 characters): it is written into
/// `CREATE TABLE` as is.
pub fn is_valid_collation(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The table options after `CREATE TABLE (...)`.
pub(super) fn table_options(collation: &str) -> String {
    format!(" ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={collation}")
}

/// `ON DUPLICATE KEY UPDATE c = VALUES(c), …`; with nothing to update, a no-op assignment of the first
/// key column (MySQL has no `DO NOTHING`; `INSERT IGNORE` would also hide other errors).
pub(super) fn push_on_duplicate_key(sql: &mut String, def: &TableDef, update: &[usize]) {
    let mysql = Dialect::MySql;
    let set: Vec<String> = update
        .iter()
        .filter_map(|&i| def.columns.get(i))
        .map(|c| {
            let c = quote_ident(mysql, &c.name);
            format!("{c} = VALUES({c})")
        })
        .collect();
    sql.push_str(" ON DUPLICATE KEY UPDATE ");
    if set.is_empty() {
        if let Some(key) = def.pk.first().and_then(|&i| def.columns.get(i)) {
            let k = quote_ident(mysql, &key.name);
            sql.push_str(&format!("{k} = {k}"));
        }
    } else {
        sql.push_str(&set.join(", "));
    }
}

/// `name = placeholder`, except for JSON columns: MySQL compares a JSON column with a string as a
/// JSON string scalar, and MariaDB's JSON is text; both sides go through `JSON_EXTRACT(…, '$')`
/// (parsed and re-printed the same way on either server) and are compared as binary text.
pub(super) fn equals(name: &str, ty: &ColumnType, placeholder: &str) -> String {
    if ty.ddl == "JSON" {
        format!(
            "CAST(JSON_EXTRACT({name}, '$') AS CHAR CHARACTER SET utf8mb4) COLLATE utf8mb4_bin = \
             CAST(JSON_EXTRACT({placeholder}, '$') AS CHAR CHARACTER SET utf8mb4)"
        )
    } else {
        format!("{name} = {placeholder}")
    }
}

/// Deletes the first row matching `condition`.
pub(super) fn delete_one(table: &str, condition: &str) -> String {
    format!("DELETE FROM {table} WHERE {condition} LIMIT 1")
}

#[cfg(test)]
mod tests {
    use super::super::fixture::{def, weird};
    use super::super::*;
    use super::*;

    const M: Dialect = Dialect::MySql;

    #[test]
    fn create_table_snapshot() {
        assert_eq!(
            create_table(M, &weird(M, "public", "select"), MARIADB_COLLATION),
            "CREATE TABLE IF NOT EXISTS `select` (`Ordér` INT NOT NULL, `we\"ird` VARCHAR(255) NOT NULL, \
             `we``ird` DECIMAL(30,10), `\"Order\"` JSON, `select` DATETIME(6), PRIMARY KEY (`Ordér`, `we\"ird`)) \
             ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin"
        );
        let no_pk = def(M, "Sales", "we`ird", &[("a", "bytea", 17)], &[]);
        assert_eq!(
            create_table(M, &no_pk, MYSQL8_COLLATION),
            "CREATE TABLE IF NOT EXISTS `Sales__we``ird` (`a` LONGBLOB) \
             ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_0900_bin"
        );
    }

    #[test]
    fn upsert_insert_and_delete_snapshots() {
        let t = weird(M, "public", "select");
        assert_eq!(
            upsert(M, &t, &[0, 1, 2, 3], 2),
            "INSERT INTO `select` (`Ordér`, `we\"ird`, `we``ird`, `\"Order\"`) VALUES \
             (?, ?, CAST(? AS DECIMAL(30,10)), ?), (?, ?, CAST(? AS DECIMAL(30,10)), ?) \
             ON DUPLICATE KEY UPDATE `we``ird` = VALUES(`we``ird`), `\"Order\"` = VALUES(`\"Order\"`)"
        );
        assert_eq!(
            upsert(M, &t, &[0, 1], 1),
            "INSERT INTO `select` (`Ordér`, `we\"ird`) VALUES (?, ?) ON DUPLICATE KEY UPDATE `Ordér` = `Ordér`"
        );
        assert_eq!(
            insert(M, &t, &[4, 0], 2),
            "INSERT INTO `select` (`select`, `Ordér`) VALUES (?, ?), (?, ?)"
        );
        assert_eq!(
            delete_by_key(M, &t, 2),
            "DELETE FROM `select` WHERE (`Ordér`, `we\"ird`) IN ((?, ?), (?, ?))"
        );
        let dec_key = def(M, "public", "d", &[("k", "numeric(10,2)", 1700)], &[0]);
        assert_eq!(
            delete_by_key(M, &dec_key, 3),
            "DELETE FROM `d` WHERE `k` IN (CAST(? AS DECIMAL(10,2)), CAST(? AS DECIMAL(10,2)), CAST(? AS DECIMAL(10,2)))"
        );
        assert_eq!(delete_all(M, &t.name), "DELETE FROM `select`");
    }

    #[test]
    fn delete_one_snapshot() {
        let t = weird(M, "public", "select");
        assert_eq!(
            delete_one_by_identity(M, &t, &[(0, false), (1, true), (2, false), (3, false)]),
            "DELETE FROM `select` WHERE `Ordér` = ? AND `we\"ird` IS NULL AND `we``ird` = CAST(? AS DECIMAL(30,10)) \
             AND CAST(JSON_EXTRACT(`\"Order\"`, '$') AS CHAR CHARACTER SET utf8mb4) COLLATE utf8mb4_bin = \
             CAST(JSON_EXTRACT(?, '$') AS CHAR CHARACTER SET utf8mb4) LIMIT 1"
        );
        assert_eq!(
            delete_one_by_identity(M, &t, &[]),
            "DELETE FROM `select` WHERE 1 = 1 LIMIT 1"
        );
    }

    #[test]
    fn add_column_and_collations() {
        let t = weird(M, "s", "t");
        assert_eq!(
            add_column(M, &t.name, &t.columns[2]),
            "ALTER TABLE `s__t` ADD COLUMN `we``ird` DECIMAL(30,10)"
        );
        assert!(is_valid_collation(MARIADB_COLLATION) && is_valid_collation(MYSQL8_COLLATION));
        for bad in [
            "",
            "utf8mb4_bin; DROP TABLE x",
            "a b",
            "x'y",
            &"a".repeat(65),
        ] {
            assert!(!is_valid_collation(bad), "{bad}");
        }
    }
}
