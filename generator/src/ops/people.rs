//! Operations on an organization's people: sign-ups, new and removed users, their activity and
//! profiles.

use serde_json::json;
use tokio_postgres::Transaction;

use super::{event, exec, get, one, write, Org};
use crate::activity;
use crate::catalog::{self, PLANS};
use crate::clock::Timestamp;
use crate::error::Error;
use crate::fake::{self, Company, Person};
use crate::money::Money;
use crate::rng::Rng;
use crate::rows::{take, Event, Ids, Organization, Subscription, SubscriptionStatus, User};

pub(super) async fn signup(
    tx: &Transaction<'_>,
    rng: &mut Rng,
    ids: &mut Ids,
    now: Timestamp,
) -> Result<u64, Error> {
    let org_id = take(&mut ids.organization);
    let country = catalog::pick_country(rng);
    // Enterprise deals go through sales, not the sign-up form.
    let plan = Some(catalog::pick_plan(rng))
        .filter(|p| p.max_seats.is_some())
        .unwrap_or(&PLANS[3]);
    let company = Company::pick(rng, country);
    let domain = fake::domain(&company.base, country, org_id);
    let org = Organization {
        id: org_id,
        name: company.name,
        slug: fake::slug(&company.base, org_id),
        plan_id: plan.id,
        country_code: country.code,
        created_at: now,
    };
    let person = Person::pick(rng);
    let user = User {
        id: take(&mut ids.user),
        org_id,
        email: format!("{}@{domain}", person.email_local(1)),
        full_name: person.full_name(),
        address: Some(fake::address(rng, country)),
        created_at: now,
    };
    let seats = (rng.range(1, 5) as i32).min(plan.max_seats.unwrap_or(i32::MAX));
    let status = if plan.seat_price_cents == 0 {
        SubscriptionStatus::Active
    } else {
        SubscriptionStatus::Trialing
    };
    let sub = Subscription {
        id: take(&mut ids.subscription),
        org_id,
        plan_id: plan.id,
        status,
        seats,
        mrr: Money(0),
        started_at: now,
        canceled_at: None,
    };
    let source = one(rng, &["organic", "ads", "referral", "partner"]);
    let signed_up = event(
        ids,
        org_id,
        Some(user.id),
        "user.signed_up",
        json!({"plan": plan.code, "source": source}),
        now,
    );
    Ok(write(tx, &[org]).await?
        + write(tx, &[user]).await?
        + write(tx, &[sub]).await?
        + write(tx, &[signed_up]).await?)
}

pub(super) async fn new_user(
    tx: &Transaction<'_>,
    rng: &mut Rng,
    ids: &mut Ids,
    org: &Org,
    now: Timestamp,
) -> Result<u64, Error> {
    let person = Person::pick(rng);
    // zoe.lefevre, zoe.lefevre2, …: the next free address of that name in the organization.
    let pattern = format!("^{}[0-9]*@", person.email_local(1).replace('.', "\\."));
    let same = tx
        .query_one(
            "SELECT count(*) FROM public.users WHERE org_id = $1 AND email ~ $2",
            &[&org.id, &pattern],
        )
        .await
        .map_err(Error::sql("count users of the same name"))?;
    let n = u32::try_from(get::<i64>(&same, 0)? + 1).unwrap_or(u32::MAX);
    let user = User {
        id: take(&mut ids.user),
        org_id: org.id,
        email: format!("{}@{}", person.email_local(n), org.domain()),
        full_name: person.full_name(),
        address: Some(fake::home_address(rng, org.country)),
        created_at: now,
    };
    let role = one(rng, &["member", "member", "admin", "viewer"]);
    let joined = event(
        ids,
        org.id,
        Some(user.id),
        "user.joined",
        json!({"role": role}),
        now,
    );
    let seats = "UPDATE public.subscriptions s \
                 SET seats = s.seats + 1, mrr = CASE WHEN s.status = 'trialing' THEN 0 ELSE (s.seats + 1) * p.seat_price END \
                 FROM public.plans p \
                 WHERE p.id = s.plan_id AND s.org_id = $1 AND s.status <> 'canceled' \
                   AND (p.max_seats IS NULL OR s.seats < p.max_seats) \
                   AND s.seats < (SELECT count(*) FROM public.users u WHERE u.org_id = $1)";
    let written = write(tx, &[user]).await? + write(tx, &[joined]).await?;
    Ok(written + exec(tx, seats, &[&org.id], "grow seats").await?)
}

pub(super) async fn record_activity(
    tx: &Transaction<'_>,
    rng: &mut Rng,
    ids: &mut Ids,
    org: &Org,
    users: &[i64],
    now: Timestamp,
) -> Result<u64, Error> {
    let domain = org.domain();
    let events: Vec<Event> = (0..rng.range(1, 8))
        .map(|i| {
            let user = rng.pick(users).copied();
            let kind = match user {
                Some(_) => rng
                    .weighted(&activity::ACTIVITY)
                    .copied()
                    .unwrap_or("page.viewed"),
                None => "api.called",
            };
            let properties = activity::event_properties(rng, kind, org.country, &domain);
            Event {
                id: take(&mut ids.event),
                org_id: org.id,
                user_id: user,
                kind,
                properties,
                occurred_at: now.plus(i),
            }
        })
        .collect();
    write(tx, &events).await
}

pub(super) async fn user_deleted(
    tx: &Transaction<'_>,
    rng: &mut Rng,
    ids: &mut Ids,
    org: &Org,
    users: &[i64],
    now: Timestamp,
) -> Result<Option<u64>, Error> {
    // The founder (the first user) stays.
    let Some(&victim) = users.get(1..).and_then(|rest| rng.pick(rest)) else {
        return Ok(None);
    };
    let mut written = exec(
        tx,
        "DELETE FROM public.events WHERE user_id = $1",
        &[&victim],
        "delete a user's events",
    )
    .await?;
    written += exec(
        tx,
        "DELETE FROM public.users WHERE id = $1",
        &[&victim],
        "delete a user",
    )
    .await?;
    let reason = one(rng, &["offboarded", "erasure_request"]);
    let removed = event(
        ids,
        org.id,
        None,
        "user.removed",
        json!({"reason": reason}),
        now,
    );
    Ok(Some(written + write(tx, &[removed]).await?))
}

pub(super) async fn profile_updated(
    tx: &Transaction<'_>,
    rng: &mut Rng,
    org: &Org,
    users: &[i64],
) -> Result<Option<u64>, Error> {
    let Some(&user) = rng.pick(users) else {
        return Ok(None);
    };
    let address = fake::home_address(rng, org.country);
    let update = "UPDATE public.users SET address = $2 WHERE id = $1";
    exec(tx, update, &[&user, &address], "update an address")
        .await
        .map(Some)
}
