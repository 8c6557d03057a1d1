//! The rows of the tenant tables, as the generator builds them, and the ids they get.

use crate::clock::{Date, Timestamp};
use crate::money::Money;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Organization {
    pub id: i64,
    pub name: String,
    pub slug: String,
    pub plan_id: i64,
    pub country_code: &'static str,
    pub created_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub org_id: i64,
    pub email: String,
    pub full_name: String,
    pub address: Option<String>,
    pub created_at: Timestamp,
}

/// `subscriptions.status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubscriptionStatus {
    Trialing,
    Active,
    PastDue,
    Canceled,
}

impl SubscriptionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionStatus::Trialing => "trialing",
            SubscriptionStatus::Active => "active",
            SubscriptionStatus::PastDue => "past_due",
            SubscriptionStatus::Canceled => "canceled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Trialing, Self::Active, Self::PastDue, Self::Canceled]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    pub id: i64,
    pub org_id: i64,
    pub plan_id: i64,
    pub status: SubscriptionStatus,
    pub seats: i32,
    /// US dollars; zero while trialing and once canceled.
    pub mrr: Money,
    pub started_at: Timestamp,
    pub canceled_at: Option<Timestamp>,
}

/// `invoices.status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvoiceStatus {
    Open,
    Paid,
    Void,
}

impl InvoiceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            InvoiceStatus::Open => "open",
            InvoiceStatus::Paid => "paid",
            InvoiceStatus::Void => "void",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invoice {
    pub id: i64,
    pub org_id: i64,
    pub subscription_id: i64,
    /// In `currency`: the sum of the line items.
    pub amount: Money,
    pub currency: &'static str,
    pub status: InvoiceStatus,
    pub issued_on: Date,
    pub paid_at: Option<Timestamp>,
    /// A JSON array.
    pub line_items: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub id: i64,
    pub org_id: i64,
    pub user_id: Option<i64>,
    pub kind: &'static str,
    /// A JSON object.
    pub properties: String,
    pub occurred_at: Timestamp,
}

/// The next free id of each tenant table. Loaded from the database (`max(id) + 1`) when a session
/// starts or reconnects and advanced in memory as rows are generated: one generator at a time
/// writes a database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ids {
    pub organization: i64,
    pub user: i64,
    pub subscription: i64,
    pub invoice: i64,
    pub event: i64,
}

impl Default for Ids {
    /// The ids of an empty database.
    fn default() -> Self {
        Ids {
            organization: 1,
            user: 1,
            subscription: 1,
            invoice: 1,
            event: 1,
        }
    }
}

/// Takes the next id of a counter.
pub fn take(counter: &mut i64) -> i64 {
    let id = *counter;
    *counter += 1;
    id
}
