//! Which SQL engine a replica is: chosen by the replica URL's scheme, it selects the statement text
//! ([`crate::sql`]), the type mapping ([`crate::types`]) and the replica implementation
//! ([`crate::replica`]).

/// A replica's SQL engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// MySQL and MariaDB.
    MySql,
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The engine a URL scheme names: `mysql`/`mariadb`, `sqlite`, `postgres`/`postgresql`.
    pub fn from_scheme(scheme: &str) -> Option<Dialect> {
        match scheme {
            "mysql" | "mariadb" => Some(Dialect::MySql),
            "sqlite" => Some(Dialect::Sqlite),
            "postgres" | "postgresql" => Some(Dialect::Postgres),
            _ => None,
        }
    }

    /// `mysql`, `sqlite` or `postgres`: the `dialect` label of metrics and the default replica name.
    pub fn label(self) -> &'static str {
        match self {
            Dialect::MySql => "mysql",
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgres",
        }
    }

    /// The OpenTelemetry `db.system.name` of the engine.
    pub fn db_system(self) -> &'static str {
        match self {
            Dialect::MySql => "mysql",
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgresql",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_and_labels() {
        assert_eq!(Dialect::from_scheme("mariadb"), Some(Dialect::MySql));
        assert_eq!(Dialect::from_scheme("postgresql"), Some(Dialect::Postgres));
        assert_eq!(Dialect::from_scheme("oracle"), None);
        assert_eq!(Dialect::Postgres.label(), "postgres");
        assert_eq!(Dialect::Postgres.db_system(), "postgresql");
    }
}
