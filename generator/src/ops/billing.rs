//! Operations on an organization's money: plan and seat changes, invoices issued, paid and failed,
//! cancellations.

use serde_json::json;
use tokio_postgres::Transaction;

use super::{event, exec, get, live_subscription, one, user_ids, write, Live, Op, Org};
use crate::catalog::{self, PLANS};
use crate::clock::Timestamp;
use crate::error::Error;
use crate::money::{self, Money};
use crate::rng::Rng;
use crate::rows::{take, Ids, Invoice, InvoiceStatus, Subscription, SubscriptionStatus};

pub(super) async fn plan_change(
    tx: &Transaction<'_>,
    rng: &mut Rng,
    ids: &mut Ids,
    org: &Org,
    now: Timestamp,
) -> Result<u64, Error> {
    let Some(sub) = live_subscription(tx, org.id).await? else {
        // Every subscription was canceled: the organization subscribes again.
        let plan = catalog::plan(org.plan_id).unwrap_or(&PLANS[1]);
        let users = i32::try_from(user_ids(tx, org.id).await?.len()).unwrap_or(i32::MAX);
        let seats = users.clamp(1, plan.max_seats.unwrap_or(i32::MAX));
        let sub = Subscription {
            id: take(&mut ids.subscription),
            org_id: org.id,
            plan_id: plan.id,
            status: SubscriptionStatus::Active,
            seats,
            mrr: money::mrr(plan, seats),
            started_at: now,
            canceled_at: None,
        };
        let back = event(
            ids,
            org.id,
            None,
            "subscription.reactivated",
            json!({"plan": plan.code, "seats": seats}),
            now,
        );
        return Ok(write(tx, &[sub]).await? + write(tx, &[back]).await?);
    };
    let up = sub.plan.id == 1 || (sub.plan.id < 5 && rng.chance(65));
    let target =
        catalog::plan(if up { sub.plan.id + 1 } else { sub.plan.id - 1 }).unwrap_or(sub.plan);
    let seats = sub.seats.clamp(1, target.max_seats.unwrap_or(i32::MAX));
    let status = match sub.status {
        SubscriptionStatus::Trialing => SubscriptionStatus::Active,
        other => other,
    };
    let update = "UPDATE public.subscriptions SET plan_id = $2, seats = $3, status = $4, mrr = $5::text::numeric WHERE id = $1";
    let mrr = money::mrr(target, seats).to_string();
    let mut written = exec(
        tx,
        update,
        &[&sub.id, &target.id, &seats, &status.as_str(), &mrr],
        "change plan",
    )
    .await?;
    let org_update = "UPDATE public.organizations SET plan_id = $2 WHERE id = $1";
    written += exec(tx, org_update, &[&org.id, &target.id], "change plan").await?;
    let kind = if up {
        "subscription.upgraded"
    } else {
        "subscription.downgraded"
    };
    let changed = event(
        ids,
        org.id,
        None,
        kind,
        json!({"from": sub.plan.code, "to": target.code, "seats": seats}),
        now,
    );
    Ok(written + write(tx, &[changed]).await?)
}

pub(super) async fn seats_change(
    tx: &Transaction<'_>,
    rng: &mut Rng,
    ids: &mut Ids,
    org: &Org,
    sub: &Live,
    now: Timestamp,
) -> Result<Option<u64>, Error> {
    let delta = rng.range(1, 3) as i32 * if rng.chance(60) { 1 } else { -1 };
    let seats = sub
        .seats
        .saturating_add(delta)
        .clamp(1, sub.plan.max_seats.unwrap_or(i32::MAX));
    if seats == sub.seats {
        return Ok(None);
    }
    let mrr = match sub.status {
        SubscriptionStatus::Trialing => Money(0),
        _ => money::mrr(sub.plan, seats),
    };
    let update =
        "UPDATE public.subscriptions SET seats = $2, mrr = $3::text::numeric WHERE id = $1";
    let written = exec(
        tx,
        update,
        &[&sub.id, &seats, &mrr.to_string()],
        "change seats",
    )
    .await?;
    let changed = event(
        ids,
        org.id,
        None,
        "subscription.seats_changed",
        json!({"from": sub.seats, "to": seats}),
        now,
    );
    Ok(Some(written + write(tx, &[changed]).await?))
}

pub(super) async fn invoice_issued(
    tx: &Transaction<'_>,
    rng: &mut Rng,
    ids: &mut Ids,
    org: &Org,
    sub: &Live,
    now: Timestamp,
) -> Result<Option<u64>, Error> {
    if sub.plan.seat_price_cents == 0 {
        return Ok(None);
    }
    let mut written = 0;
    if sub.status == SubscriptionStatus::Trialing {
        // The trial ends with the first invoice.
        let update = "UPDATE public.subscriptions SET status = 'active', mrr = $2::text::numeric \
                      WHERE id = $1";
        let mrr = money::mrr(sub.plan, sub.seats).to_string();
        written += exec(tx, update, &[&sub.id, &mrr], "end a trial").await?;
        let converted = json!({"plan": sub.plan.code, "seats": sub.seats});
        let event = event(ids, org.id, None, "subscription.activated", converted, now);
        written += write(tx, &[event]).await?;
    }
    let (line_items, amount) = money::line_items(rng, sub.plan, sub.seats, org.country);
    let invoice = Invoice {
        id: take(&mut ids.invoice),
        org_id: org.id,
        subscription_id: sub.id,
        amount,
        currency: org.country.currency,
        status: InvoiceStatus::Open,
        issued_on: now.date(),
        paid_at: None,
        line_items,
    };
    Ok(Some(written + write(tx, &[invoice]).await?))
}

pub(super) async fn cancellation(
    tx: &Transaction<'_>,
    rng: &mut Rng,
    ids: &mut Ids,
    org: &Org,
    sub: &Live,
    now: Timestamp,
) -> Result<u64, Error> {
    let update = "UPDATE public.subscriptions SET status = 'canceled', canceled_at = $2, mrr = 0 WHERE id = $1";
    let mut written = exec(
        tx,
        update,
        &[&sub.id, &now.to_system_time()],
        "cancel a subscription",
    )
    .await?;
    let void =
        "UPDATE public.invoices SET status = 'void' WHERE subscription_id = $1 AND status = 'open'";
    written += exec(tx, void, &[&sub.id], "void open invoices").await?;
    let reason = one(
        rng,
        &[
            "too_expensive",
            "missing_features",
            "switched_service",
            "unused",
            "company_closed",
        ],
    );
    let canceled = event(
        ids,
        org.id,
        None,
        "subscription.canceled",
        json!({"plan": sub.plan.code, "reason": reason}),
        now,
    );
    Ok(written + write(tx, &[canceled]).await?)
}

/// Pays an open invoice, or records its failed payment (the subscription becomes past due).
pub(super) async fn invoice_outcome(
    tx: &Transaction<'_>,
    rng: &mut Rng,
    ids: &mut Ids,
    op: Op,
    now: Timestamp,
) -> Result<Option<u64>, Error> {
    const SQL: &str =
        "SELECT id, org_id, subscription_id FROM public.invoices WHERE status = 'open'";
    let from = rng.range(1, ids.invoice - 1);
    let mut row = tx
        .query_opt(&format!("{SQL} AND id >= $1 ORDER BY id LIMIT 1"), &[&from])
        .await
        .map_err(Error::sql("pick an open invoice"))?;
    if row.is_none() {
        row = tx
            .query_opt(&format!("{SQL} ORDER BY id LIMIT 1"), &[])
            .await
            .map_err(Error::sql("pick an open invoice"))?;
    }
    let Some(row) = row else { return Ok(None) };
    let (invoice, org_id, sub_id): (i64, i64, i64) = (get(&row, 0)?, get(&row, 1)?, get(&row, 2)?);
    if op == Op::PaymentFailed {
        let update = "UPDATE public.subscriptions SET status = 'past_due' WHERE id = $1 AND status = 'active'";
        let written = exec(tx, update, &[&sub_id], "mark a subscription past due").await?;
        let reason = one(
            rng,
            &["card_declined", "insufficient_funds", "expired_card"],
        );
        let failed = event(
            ids,
            org_id,
            None,
            "payment.failed",
            json!({"invoice_id": invoice, "reason": reason}),
            now,
        );
        return Ok(Some(written + write(tx, &[failed]).await?));
    }
    let paid = "UPDATE public.invoices SET status = 'paid', paid_at = $2 WHERE id = $1";
    let mut written = exec(
        tx,
        paid,
        &[&invoice, &now.to_system_time()],
        "pay an invoice",
    )
    .await?;
    let active = "UPDATE public.subscriptions SET status = 'active' WHERE id = $1 AND status = 'past_due' \
                  AND NOT EXISTS (SELECT 1 FROM public.invoices WHERE subscription_id = $1 AND status = 'open')";
    written += exec(tx, active, &[&sub_id], "reactivate a subscription").await?;
    Ok(Some(written))
}
