//! One organization of bulk data with everything that belongs to it: users, its subscription
//! history, monthly invoices and recent activity. A pure function of the seed and the ids it
//! starts from, placed in time before [`ANCHOR`](crate::clock::ANCHOR).

use std::collections::BTreeMap;

use crate::activity;
use crate::catalog::{self, Country, Plan};
use crate::clock::{Timestamp, ANCHOR, DAY, MINUTE, SECOND};
use crate::fake::{self, Company, Person};
use crate::money::{self, Money};
use crate::rng::Rng;
use crate::rows::{
    take, Event, Ids, Invoice, InvoiceStatus, Organization, Subscription, SubscriptionStatus, User,
};

/// The stream id of bulk organizations (see [`Rng::stream`]).
const STREAM_TENANT: u64 = 1;

/// Invoices of one subscription in bulk data: its most recent months, at most this many.
const MAX_INVOICES: i64 = 12;
/// Bulk activity covers this many days before the anchor.
const ACTIVITY_DAYS: i64 = 90;

/// An organization and its rows, in insertion order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tenant {
    pub organization: Organization,
    pub users: Vec<User>,
    pub subscriptions: Vec<Subscription>,
    pub invoices: Vec<Invoice>,
    pub events: Vec<Event>,
}

impl Tenant {
    pub fn rows(&self) -> usize {
        1 + self.users.len() + self.subscriptions.len() + self.invoices.len() + self.events.len()
    }

    /// The next organization of the data set of `seed`, with ids taken from `ids`. What organization
    /// N holds is decided by the seed and N alone (its rows' ids continue from `ids`), so it comes
    /// out the same in any run, whatever was generated before it.
    pub fn generate(seed: u64, ids: &mut Ids) -> Tenant {
        let org_id = take(&mut ids.organization);
        let mut rng = Rng::stream(seed, STREAM_TENANT, org_id as u64);
        let country = catalog::pick_country(&mut rng);
        let plan = catalog::pick_plan(&mut rng);
        let company = Company::pick(&mut rng, country);
        let created_at = random_time(&mut rng, ANCHOR.plus(-730 * DAY), ANCHOR.plus(-DAY));
        let organization = Organization {
            id: org_id,
            name: company.name.clone(),
            slug: fake::slug(&company.base, org_id),
            plan_id: plan.id,
            country_code: country.code,
            created_at,
        };
        let domain = fake::domain(&company.base, country, org_id);
        let users = users(&mut rng, ids, &organization, country, plan, &domain);
        let subscriptions = subscriptions(&mut rng, ids, &organization, plan, users.len());
        let invoices = subscriptions
            .iter()
            .flat_map(|s| invoices(&mut rng, ids, s, country))
            .collect();
        let events = events(&mut rng, ids, &organization, &users, country, &domain);
        Tenant {
            organization,
            users,
            subscriptions,
            invoices,
            events,
        }
    }
}

/// A moment in `[from, to)`, to the millisecond.
fn random_time(rng: &mut Rng, from: Timestamp, to: Timestamp) -> Timestamp {
    let millis = (to.0 - from.0) / 1000;
    from.plus(rng.range(0, millis - 1) * 1000)
}

fn users(
    rng: &mut Rng,
    ids: &mut Ids,
    org: &Organization,
    country: &Country,
    plan: &Plan,
    domain: &str,
) -> Vec<User> {
    let count = rng.range(plan.users.0, plan.users.1);
    // The founder signs up a few minutes after the organization; the others join over its life.
    let mut joined: Vec<Timestamp> = (1..count)
        .map(|_| random_time(rng, org.created_at.plus(MINUTE), ANCHOR))
        .collect();
    joined.sort_unstable();
    joined.insert(0, org.created_at.plus(rng.range(5, 300) * SECOND));
    let mut same_name: BTreeMap<String, u32> = BTreeMap::new();
    joined
        .into_iter()
        .map(|created_at| {
            let person = Person::pick(rng);
            let local = person.email_local(1);
            let n = same_name.entry(local).or_insert(0);
            *n += 1;
            let email = format!("{}@{domain}", person.email_local(*n));
            let address = rng.chance(90).then(|| fake::home_address(rng, country));
            User {
                id: take(&mut ids.user),
                org_id: org.id,
                email,
                full_name: person.full_name(),
                address,
                created_at,
            }
        })
        .collect()
}

/// The current subscription, after a canceled one on the plan below it for some older paying
/// organizations (an upgrade).
fn subscriptions(
    rng: &mut Rng,
    ids: &mut Ids,
    org: &Organization,
    plan: &Plan,
    users: usize,
) -> Vec<Subscription> {
    let seats_for = |plan: &Plan, rng: &mut Rng| {
        let wanted = i32::try_from(users)
            .unwrap_or(i32::MAX)
            .saturating_add(rng.range(0, 3) as i32);
        wanted.clamp(1, plan.max_seats.unwrap_or(i32::MAX))
    };
    let age = ANCHOR.0 - org.created_at.0;
    let mut out = Vec::new();
    let mut started_at = org.created_at;
    if plan.id > 1 && age > 120 * DAY && rng.chance(25) {
        if let Some(before) = catalog::plan(plan.id - 1) {
            let switched = random_time(rng, org.created_at.plus(30 * DAY), ANCHOR.plus(-30 * DAY));
            let seats = seats_for(before, rng).min(seats_for(plan, rng));
            out.push(Subscription {
                id: take(&mut ids.subscription),
                org_id: org.id,
                plan_id: before.id,
                status: SubscriptionStatus::Canceled,
                seats,
                mrr: Money(0),
                started_at,
                canceled_at: Some(switched),
            });
            started_at = switched;
        }
    }
    let seats = seats_for(plan, rng);
    let live = ANCHOR.0 - started_at.0;
    let (status, canceled_at) = if plan.seat_price_cents > 0 && age < 14 * DAY {
        (SubscriptionStatus::Trialing, None)
    } else if live > 45 * DAY && rng.chance(5) {
        let at = random_time(rng, started_at.plus(31 * DAY), ANCHOR);
        (SubscriptionStatus::Canceled, Some(at))
    } else if plan.seat_price_cents > 0 && live > 31 * DAY && rng.chance(5) {
        (SubscriptionStatus::PastDue, None)
    } else {
        (SubscriptionStatus::Active, None)
    };
    let mrr = match status {
        SubscriptionStatus::Active | SubscriptionStatus::PastDue => money::mrr(plan, seats),
        SubscriptionStatus::Trialing | SubscriptionStatus::Canceled => Money(0),
    };
    out.push(Subscription {
        id: take(&mut ids.subscription),
        org_id: org.id,
        plan_id: plan.id,
        status,
        seats,
        mrr,
        started_at,
        canceled_at,
    });
    out
}

/// One invoice per 30 days of a paid subscription's life (its last [`MAX_INVOICES`]), paid within
/// ten days; the latest stays open when the subscription is past due, and a few are voided.
fn invoices(rng: &mut Rng, ids: &mut Ids, sub: &Subscription, country: &Country) -> Vec<Invoice> {
    let Some(plan) = catalog::plan(sub.plan_id) else {
        return Vec::new();
    };
    if plan.seat_price_cents == 0 || sub.status == SubscriptionStatus::Trialing {
        return Vec::new();
    }
    let end = sub.canceled_at.unwrap_or(ANCHOR);
    let periods = (end.0 - sub.started_at.0 + 30 * DAY - 1) / (30 * DAY);
    let first = (periods - MAX_INVOICES).max(0);
    (first..periods)
        .map(|k| {
            let issued = sub.started_at.plus(k * 30 * DAY);
            let (line_items, amount) = money::line_items(rng, plan, sub.seats, country);
            let last = k == periods - 1;
            let paid_at = issued.plus(rng.range(10 * MINUTE, 10 * DAY));
            let (status, paid_at) = if last && sub.status == SubscriptionStatus::PastDue {
                (InvoiceStatus::Open, None)
            } else if rng.chance(2) {
                (InvoiceStatus::Void, None)
            } else if paid_at >= ANCHOR {
                (InvoiceStatus::Open, None)
            } else {
                (InvoiceStatus::Paid, Some(paid_at))
            };
            Invoice {
                id: take(&mut ids.invoice),
                org_id: sub.org_id,
                subscription_id: sub.id,
                amount,
                currency: country.currency,
                status,
                issued_on: issued.date(),
                paid_at,
                line_items,
            }
        })
        .collect()
}

/// Each user's activity over the last [`ACTIVITY_DAYS`] days, numbered in time order.
fn events(
    rng: &mut Rng,
    ids: &mut Ids,
    org: &Organization,
    users: &[User],
    country: &Country,
    domain: &str,
) -> Vec<Event> {
    let since = ANCHOR.plus(-ACTIVITY_DAYS * DAY);
    let mut drafts: Vec<(Timestamp, Option<i64>, &'static str, String)> = Vec::new();
    for user in users {
        for _ in 0..rng.range(2, 20) {
            let at = random_time(rng, user.created_at.max(since), ANCHOR);
            let kind = rng
                .weighted(&activity::ACTIVITY)
                .copied()
                .unwrap_or("page.viewed");
            let properties = activity::event_properties(rng, kind, country, domain);
            drafts.push((at, Some(user.id), kind, properties));
        }
    }
    for _ in 0..rng.range(0, 5) {
        // Calls made with an API key rather than by a user.
        let at = random_time(rng, org.created_at.max(since), ANCHOR);
        drafts.push((
            at,
            None,
            "api.called",
            activity::event_properties(rng, "api.called", country, domain),
        ));
    }
    drafts.sort_by_key(|d| (d.0, d.1));
    drafts
        .into_iter()
        .map(|(occurred_at, user_id, kind, properties)| Event {
            id: take(&mut ids.event),
            org_id: org.id,
            user_id,
            kind,
            properties,
            occurred_at,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data_set(seed: u64, organizations: usize) -> Vec<Tenant> {
        let mut ids = Ids::default();
        (0..organizations)
            .map(|_| Tenant::generate(seed, &mut ids))
            .collect()
    }

    #[test]
    fn same_seed_same_rows_different_seed_different_rows() {
        let a = data_set(42, 20);
        assert_eq!(a, data_set(42, 20));
        let b = data_set(43, 20);
        assert_ne!(a[0].organization, b[0].organization);
        assert!(a
            .iter()
            .zip(&b)
            .all(|(x, y)| x.organization.name != y.organization.name
                || x.organization.country_code != y.organization.country_code
                || x.users.len() != y.users.len()));
        // Organization N does not depend on what was generated before it.
        let mut ids = Ids {
            organization: 7,
            ..Ids::default()
        };
        assert_eq!(
            Tenant::generate(42, &mut ids).organization,
            a[6].organization
        );
    }

    #[test]
    fn rows_hang_together() {
        let mut ids = Ids::default();
        for tenant in (0..200).map(|_| Tenant::generate(7, &mut ids)) {
            let org = &tenant.organization;
            assert!(org.created_at < ANCHOR && org.slug.ends_with(&format!("-{}", org.id)));
            let current = tenant.subscriptions.last().unwrap();
            assert_eq!(current.plan_id, org.plan_id);
            let plan = catalog::plan(current.plan_id).unwrap();
            for s in &tenant.subscriptions {
                assert!(s.seats >= 1 && s.seats <= plan.max_seats.unwrap_or(i32::MAX));
                assert!(s
                    .canceled_at
                    .is_none_or(|c| c > s.started_at && c <= ANCHOR));
                assert_eq!(
                    s.canceled_at.is_some(),
                    s.status == SubscriptionStatus::Canceled
                );
            }
            for u in &tenant.users {
                assert!(u.created_at > org.created_at && u.created_at < ANCHOR);
                assert!(fake::tests::is_valid_email(&u.email), "{}", u.email);
            }
            let emails: std::collections::BTreeSet<_> =
                tenant.users.iter().map(|u| &u.email).collect();
            assert_eq!(
                emails.len(),
                tenant.users.len(),
                "e-mails repeat within an organization"
            );
            for i in &tenant.invoices {
                assert!(i.amount.0 > 0 && i.issued_on.start() < ANCHOR);
                assert_eq!(i.paid_at.is_some(), i.status == InvoiceStatus::Paid);
                assert!(i
                    .paid_at
                    .is_none_or(|p| p > i.issued_on.start() && p < ANCHOR));
                let items: serde_json::Value = serde_json::from_str(&i.line_items).unwrap();
                assert!(items.as_array().is_some_and(|a| !a.is_empty()));
            }
            let mut last = i64::MIN;
            for e in &tenant.events {
                assert!(e.id > last, "events are numbered in time order");
                last = e.id;
                assert!(e.occurred_at < ANCHOR);
                let props: serde_json::Value = serde_json::from_str(&e.properties).unwrap();
                assert!(props.is_object());
            }
            assert_eq!(
                tenant.rows(),
                1 + tenant.users.len()
                    + tenant.subscriptions.len()
                    + tenant.invoices.len()
                    + tenant.events.len()
            );
        }
        assert_eq!(ids.organization, 201);
    }
}
