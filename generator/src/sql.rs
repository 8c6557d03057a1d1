//! Multi-row `INSERT` statements for the generated rows: pure text and bound parameters, never a
//! value in the SQL. Money, dates and JSON are bound as text and cast by the server
//! (`$3::text::numeric`), so they arrive exactly as generated, without a client-side decimal or JSON
//! type.

use std::error::Error as StdError;
use std::fmt::Write as _;
use std::time::SystemTime;

use bytes::BytesMut;
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};

use crate::rows::{Event, Invoice, Organization, Subscription, User};

/// Rows per statement at most (PostgreSQL allows 65,535 parameters; this stays far below and keeps
/// each statement's text small).
pub const MAX_ROWS: usize = 500;

/// A bound value.
#[derive(Clone, Debug, PartialEq)]
pub enum Param {
    Int8(i64),
    OptInt8(Option<i64>),
    Int4(i32),
    Text(String),
    OptText(Option<String>),
    Time(SystemTime),
    OptTime(Option<SystemTime>),
}

impl ToSql for Param {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        // Each variant checks the column type itself: an i64 is never written into an int4.
        match self {
            Param::Int8(v) => v.to_sql_checked(ty, out),
            Param::OptInt8(v) => v.to_sql_checked(ty, out),
            Param::Int4(v) => v.to_sql_checked(ty, out),
            Param::Text(v) => v.to_sql_checked(ty, out),
            Param::OptText(v) => v.to_sql_checked(ty, out),
            Param::Time(v) => v.to_sql_checked(ty, out),
            Param::OptTime(v) => v.to_sql_checked(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// A statement and its parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct Statement {
    pub sql: String,
    pub params: Vec<Param>,
}

impl Statement {
    /// The parameters as tokio-postgres takes them.
    pub fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params
            .iter()
            .map(|p| p as &(dyn ToSql + Sync))
            .collect()
    }
}

/// A table the generator inserts into.
pub trait Insertable {
    const TABLE: &'static str;
    /// Columns and the cast each parameter gets (`""` for none).
    const COLUMNS: &'static [(&'static str, &'static str)];
    fn params(&self, out: &mut Vec<Param>);
}

/// `INSERT INTO public.<table> (…) VALUES (…), (…)` for `rows`, in statements of at most
/// [`MAX_ROWS`] rows; nothing for no rows.
pub fn insert<R: Insertable>(rows: &[R]) -> Vec<Statement> {
    rows.chunks(MAX_ROWS)
        .map(|chunk| {
            let names: Vec<&str> = R::COLUMNS.iter().map(|(name, _)| *name).collect();
            let mut sql = format!(
                "INSERT INTO public.{} ({}) VALUES ",
                R::TABLE,
                names.join(", ")
            );
            let mut params = Vec::with_capacity(chunk.len() * R::COLUMNS.len());
            for (i, row) in chunk.iter().enumerate() {
                sql.push_str(if i == 0 { "(" } else { ", (" });
                for (j, (_, cast)) in R::COLUMNS.iter().enumerate() {
                    let sep = if j == 0 { "" } else { ", " };
                    let _ = write!(sql, "{sep}${}{cast}", i * R::COLUMNS.len() + j + 1);
                }
                sql.push(')');
                row.params(&mut params);
            }
            Statement { sql, params }
        })
        .collect()
}

const NUMERIC: &str = "::text::numeric";
const DATE: &str = "::text::date";
const JSONB: &str = "::text::jsonb";

impl Insertable for Organization {
    const TABLE: &'static str = "organizations";
    const COLUMNS: &'static [(&'static str, &'static str)] = &[
        ("id", ""),
        ("name", ""),
        ("slug", ""),
        ("plan_id", ""),
        ("country_code", ""),
        ("created_at", ""),
    ];
    fn params(&self, out: &mut Vec<Param>) {
        out.extend([
            Param::Int8(self.id),
            Param::Text(self.name.clone()),
            Param::Text(self.slug.clone()),
            Param::Int8(self.plan_id),
            Param::Text(self.country_code.to_owned()),
            Param::Time(self.created_at.to_system_time()),
        ]);
    }
}

impl Insertable for User {
    const TABLE: &'static str = "users";
    const COLUMNS: &'static [(&'static str, &'static str)] = &[
        ("id", ""),
        ("org_id", ""),
        ("email", ""),
        ("full_name", ""),
        ("address", ""),
        ("created_at", ""),
    ];
    fn params(&self, out: &mut Vec<Param>) {
        out.extend([
            Param::Int8(self.id),
            Param::Int8(self.org_id),
            Param::Text(self.email.clone()),
            Param::Text(self.full_name.clone()),
            Param::OptText(self.address.clone()),
            Param::Time(self.created_at.to_system_time()),
        ]);
    }
}

impl Insertable for Subscription {
    const TABLE: &'static str = "subscriptions";
    const COLUMNS: &'static [(&'static str, &'static str)] = &[
        ("id", ""),
        ("org_id", ""),
        ("plan_id", ""),
        ("status", ""),
        ("seats", ""),
        ("mrr", NUMERIC),
        ("started_at", ""),
        ("canceled_at", ""),
    ];
    fn params(&self, out: &mut Vec<Param>) {
        out.extend([
            Param::Int8(self.id),
            Param::Int8(self.org_id),
            Param::Int8(self.plan_id),
            Param::Text(self.status.as_str().to_owned()),
            Param::Int4(self.seats),
            Param::Text(self.mrr.to_string()),
            Param::Time(self.started_at.to_system_time()),
            Param::OptTime(self.canceled_at.map(|t| t.to_system_time())),
        ]);
    }
}

impl Insertable for Invoice {
    const TABLE: &'static str = "invoices";
    const COLUMNS: &'static [(&'static str, &'static str)] = &[
        ("id", ""),
        ("org_id", ""),
        ("subscription_id", ""),
        ("amount", NUMERIC),
        ("currency", ""),
        ("status", ""),
        ("issued_on", DATE),
        ("paid_at", ""),
        ("line_items", JSONB),
    ];
    fn params(&self, out: &mut Vec<Param>) {
        out.extend([
            Param::Int8(self.id),
            Param::Int8(self.org_id),
            Param::Int8(self.subscription_id),
            Param::Text(self.amount.to_string()),
            Param::Text(self.currency.to_owned()),
            Param::Text(self.status.as_str().to_owned()),
            Param::Text(self.issued_on.to_string()),
            Param::OptTime(self.paid_at.map(|t| t.to_system_time())),
            Param::Text(self.line_items.clone()),
        ]);
    }
}

impl Insertable for Event {
    const TABLE: &'static str = "events";
    const COLUMNS: &'static [(&'static str, &'static str)] = &[
        ("id", ""),
        ("org_id", ""),
        ("user_id", ""),
        ("kind", ""),
        ("properties", JSONB),
        ("occurred_at", ""),
    ];
    fn params(&self, out: &mut Vec<Param>) {
        out.extend([
            Param::Int8(self.id),
            Param::Int8(self.org_id),
            Param::OptInt8(self.user_id),
            Param::Text(self.kind.to_owned()),
            Param::Text(self.properties.clone()),
            Param::Time(self.occurred_at.to_system_time()),
        ]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ANCHOR;
    use crate::money::Money;
    use crate::rows::SubscriptionStatus;

    fn sub(id: i64) -> Subscription {
        Subscription {
            id,
            org_id: 3,
            plan_id: 2,
            status: SubscriptionStatus::Active,
            seats: 4,
            mrr: Money(3600),
            started_at: ANCHOR,
            canceled_at: None,
        }
    }

    #[test]
    fn statements_number_and_cast_every_parameter() {
        let stmts = insert(&[sub(1), sub(2)]);
        assert_eq!(stmts.len(), 1);
        assert_eq!(
            stmts[0].sql,
            "INSERT INTO public.subscriptions (id, org_id, plan_id, status, seats, mrr, started_at, canceled_at) \
             VALUES ($1, $2, $3, $4, $5, $6::text::numeric, $7, $8), ($9, $10, $11, $12, $13, $14::text::numeric, $15, $16)"
        );
        assert_eq!(stmts[0].params.len(), 16);
        assert_eq!(stmts[0].params[5], Param::Text("36.00".into()));
        assert_eq!(stmts[0].params[15], Param::OptTime(None));
        assert_eq!(stmts[0].refs().len(), 16);
    }

    #[test]
    fn large_batches_are_split() {
        let rows: Vec<Subscription> = (0..1201).map(sub).collect();
        let stmts = insert(&rows);
        assert_eq!(
            stmts.iter().map(|s| s.params.len() / 8).collect::<Vec<_>>(),
            [500, 500, 201]
        );
        assert!(stmts[2]
            .sql
            .ends_with("$1601, $1602, $1603, $1604, $1605, $1606::text::numeric, $1607, $1608)"));
        assert!(insert::<Subscription>(&[]).is_empty());
    }

    #[test]
    fn params_refuse_the_wrong_column_type() {
        let mut buf = BytesMut::new();
        assert!(Param::Int8(1)
            .to_sql_checked(&Type::INT4, &mut buf)
            .is_err());
        assert!(Param::Int4(1).to_sql_checked(&Type::INT4, &mut buf).is_ok());
        assert!(Param::Text("x".into())
            .to_sql_checked(&Type::JSONB, &mut buf)
            .is_err());
        assert!(Param::OptText(None)
            .to_sql_checked(&Type::TEXT, &mut buf)
            .is_ok());
    }
}
