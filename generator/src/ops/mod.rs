//! The operations of steady mode, each a few statements inside the caller's transaction, on rows
//! picked at random (by the seeded [`Rng`]) among those the database holds.

mod billing;
mod people;

use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, Transaction};

use crate::catalog::{self, Country, Plan, COUNTRIES};
use crate::clock::Timestamp;
use crate::error::Error;
use crate::fake;
use crate::rng::Rng;
use crate::rows::{take, Event, Ids, SubscriptionStatus};
use crate::sql::{insert, Insertable};
use billing::{cancellation, invoice_issued, invoice_outcome, plan_change, seats_change};
use people::{new_user, profile_updated, record_activity, signup, user_deleted};

/// A kind of steady-mode transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    /// A new organization with its founder and a trial (or free) subscription.
    Signup,
    /// A user joins an organization; its seats grow to fit.
    NewUser,
    /// A few events of an organization's users.
    Activity,
    /// An upgrade or downgrade by one plan (or a canceled organization subscribing again).
    PlanChange,
    SeatsChange,
    /// An open invoice for a paying subscription (the first one ends a trial).
    InvoiceIssued,
    /// An open invoice is paid; a past-due subscription with nothing left open is active again.
    InvoicePaid,
    /// A payment fails: the subscription becomes past due.
    PaymentFailed,
    /// A subscription is canceled and its open invoices voided.
    Cancellation,
    /// A user is removed with all their events (an erasure request, an offboarding).
    UserDeleted,
    /// An organization's oldest events are deleted (retention).
    EventsPruned,
    /// A user's address changes.
    ProfileUpdated,
}

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::Signup => "signup",
            Op::NewUser => "new_user",
            Op::Activity => "activity",
            Op::PlanChange => "plan_change",
            Op::SeatsChange => "seats_change",
            Op::InvoiceIssued => "invoice_issued",
            Op::InvoicePaid => "invoice_paid",
            Op::PaymentFailed => "payment_failed",
            Op::Cancellation => "cancellation",
            Op::UserDeleted => "user_deleted",
            Op::EventsPruned => "events_pruned",
            Op::ProfileUpdated => "profile_updated",
        }
    }
}

/// An organization as steady mode needs it.
struct Org {
    id: i64,
    slug: String,
    country: &'static Country,
    plan_id: i64,
}

impl Org {
    fn domain(&self) -> String {
        fake::domain(fake::slug_base(&self.slug), self.country, self.id)
    }
}

/// An organization's subscription that is not canceled.
struct Live {
    id: i64,
    plan: &'static Plan,
    status: SubscriptionStatus,
    seats: i32,
}

/// Runs `op` in `tx`; returns the rows written, or `None` when it found nothing to work on (no
/// organization, no open invoice, a subscription already at its limit).
pub async fn apply(
    tx: &Transaction<'_>,
    rng: &mut Rng,
    ids: &mut Ids,
    op: Op,
) -> Result<Option<u64>, Error> {
    let now = Timestamp::now();
    match op {
        Op::Signup => return signup(tx, rng, ids, now).await.map(Some),
        Op::InvoicePaid | Op::PaymentFailed => return invoice_outcome(tx, rng, ids, op, now).await,
        _ => {}
    }
    let Some(org) = pick_org(tx, rng, ids).await? else {
        return Ok(None);
    };
    match op {
        Op::NewUser => new_user(tx, rng, ids, &org, now).await.map(Some),
        Op::PlanChange => plan_change(tx, rng, ids, &org, now).await.map(Some),
        Op::SeatsChange | Op::InvoiceIssued | Op::Cancellation => {
            let Some(sub) = live_subscription(tx, org.id).await? else {
                return Ok(None);
            };
            match op {
                Op::SeatsChange => seats_change(tx, rng, ids, &org, &sub, now).await,
                Op::InvoiceIssued => invoice_issued(tx, rng, ids, &org, &sub, now).await,
                _ => cancellation(tx, rng, ids, &org, &sub, now).await.map(Some),
            }
        }
        Op::UserDeleted | Op::ProfileUpdated | Op::Activity => {
            let users = user_ids(tx, org.id).await?;
            match op {
                Op::UserDeleted => user_deleted(tx, rng, ids, &org, &users, now).await,
                Op::ProfileUpdated => profile_updated(tx, rng, &org, &users).await,
                _ => record_activity(tx, rng, ids, &org, &users, now)
                    .await
                    .map(Some),
            }
        }
        Op::EventsPruned => {
            let limit = rng.range(5, 50);
            let sql = "DELETE FROM public.events WHERE id IN \
                       (SELECT id FROM public.events WHERE org_id = $1 ORDER BY occurred_at, id LIMIT $2)";
            let deleted = exec(tx, sql, &[&org.id, &limit], "prune events").await?;
            Ok((deleted > 0).then_some(deleted))
        }
        Op::Signup | Op::InvoicePaid | Op::PaymentFailed => Ok(None),
    }
}

async fn exec(
    tx: &Transaction<'_>,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    what: &str,
) -> Result<u64, Error> {
    tx.execute(sql, params).await.map_err(Error::sql(what))
}

async fn write<R: Insertable>(tx: &Transaction<'_>, rows: &[R]) -> Result<u64, Error> {
    let mut written = 0;
    for statement in insert(rows) {
        let what = format!("insert into {}", R::TABLE);
        written += exec(tx, &statement.sql, &statement.refs(), &what).await?;
    }
    Ok(written)
}

fn event(
    ids: &mut Ids,
    org_id: i64,
    user_id: Option<i64>,
    kind: &'static str,
    properties: serde_json::Value,
    at: Timestamp,
) -> Event {
    Event {
        id: take(&mut ids.event),
        org_id,
        user_id,
        kind,
        properties: properties.to_string(),
        occurred_at: at,
    }
}

fn one(rng: &mut Rng, items: &[&'static str]) -> &'static str {
    rng.pick(items).copied().unwrap_or_default()
}

fn get<'a, T: tokio_postgres::types::FromSql<'a>>(row: &'a Row, i: usize) -> Result<T, Error> {
    row.try_get(i).map_err(Error::sql("read a row"))
}

/// A random organization: the first at or after a random id.
async fn pick_org(tx: &Transaction<'_>, rng: &mut Rng, ids: &Ids) -> Result<Option<Org>, Error> {
    const SQL: &str = "SELECT id, slug, country_code, plan_id FROM public.organizations";
    let from = rng.range(1, ids.organization - 1);
    let mut row = tx
        .query_opt(
            &format!("{SQL} WHERE id >= $1 ORDER BY id LIMIT 1"),
            &[&from],
        )
        .await
        .map_err(Error::sql("pick an organization"))?;
    if row.is_none() {
        row = tx
            .query_opt(&format!("{SQL} ORDER BY id LIMIT 1"), &[])
            .await
            .map_err(Error::sql("pick an organization"))?;
    }
    let Some(row) = row else { return Ok(None) };
    let code: String = get(&row, 2)?;
    Ok(Some(Org {
        id: get(&row, 0)?,
        slug: get(&row, 1)?,
        country: catalog::country(code.trim()).unwrap_or(&COUNTRIES[0]),
        plan_id: get(&row, 3)?,
    }))
}

async fn live_subscription(tx: &Transaction<'_>, org_id: i64) -> Result<Option<Live>, Error> {
    let sql = "SELECT id, plan_id, status, seats FROM public.subscriptions \
               WHERE org_id = $1 AND status <> 'canceled' ORDER BY id DESC LIMIT 1";
    let Some(row) = tx
        .query_opt(sql, &[&org_id])
        .await
        .map_err(Error::sql("read a subscription"))?
    else {
        return Ok(None);
    };
    let Some(plan) = catalog::plan(get(&row, 1)?) else {
        return Ok(None);
    };
    let Some(status) = SubscriptionStatus::parse(&get::<String>(&row, 2)?) else {
        return Ok(None);
    };
    Ok(Some(Live {
        id: get(&row, 0)?,
        plan,
        status,
        seats: get(&row, 3)?,
    }))
}

async fn user_ids(tx: &Transaction<'_>, org_id: i64) -> Result<Vec<i64>, Error> {
    let rows = tx
        .query(
            "SELECT id FROM public.users WHERE org_id = $1 ORDER BY id",
            &[&org_id],
        )
        .await
        .map_err(Error::sql("read users"))?;
    rows.iter().map(|r| get(r, 0)).collect()
}
