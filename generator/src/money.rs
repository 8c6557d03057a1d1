//! Money as exact hundredths of a currency unit, subscription revenue, and invoice line items.

use std::fmt;

use serde_json::{json, Value};

use crate::catalog::{Country, Plan};
use crate::rng::Rng;

/// An exact amount of money in hundredths of a currency unit; prints as `1234.50`, the text a
/// `numeric(12,2)` column reads without rounding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Money(pub i64);

impl Money {
    /// US cents converted to `country`'s currency at its fixed rate, rounded half up.
    pub fn from_usd(usd_cents: i64, country: &Country) -> Money {
        Money((usd_cents * country.usd_rate_e4 + 5_000) / 10_000)
    }

    /// The share `bp` basis points of this amount, rounded half up.
    pub fn share(self, bp: i64) -> Money {
        Money((self.0 * bp + 5_000) / 10_000)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

/// Monthly recurring revenue of `seats` seats on `plan`, in US dollars.
pub fn mrr(plan: &Plan, seats: i32) -> Money {
    Money(plan.seat_price_cents * i64::from(seats))
}

const ADD_ONS: [(&str, &str, i64); 4] = [
    ("Extra storage (100 GB)", "storage-100gb", 500),
    ("Priority support", "support-priority", 4_900),
    ("Additional workspace", "workspace", 1_500),
    ("SSO add-on", "sso", 2_500),
];

/// An invoice's line items (seats, sometimes add-ons, then the country's sales tax) as JSON text,
/// and their total, in the country's currency. Amounts are JSON strings with two decimals, so no
/// reader rounds them through a float.
pub fn line_items(rng: &mut Rng, plan: &Plan, seats: i32, country: &Country) -> (String, Money) {
    let mut items = Vec::new();
    let mut total = Money(0);
    let unit = Money::from_usd(plan.seat_price_cents, country);
    let description = format!("{} plan, {seats} seats", plan.name);
    let sku = format!("{}-seat", plan.code);
    push_item(
        &mut items,
        &mut total,
        &description,
        &sku,
        i64::from(seats),
        unit,
    );
    if rng.chance(30) {
        if let Some((name, sku, usd)) = rng.pick(&ADD_ONS) {
            let quantity = rng.range(1, 3);
            push_item(
                &mut items,
                &mut total,
                name,
                sku,
                quantity,
                Money::from_usd(*usd, country),
            );
        }
    }
    if country.tax_bp > 0 {
        let tax = total.share(country.tax_bp);
        let percent = Money(country.tax_bp).to_string();
        let percent = percent.trim_end_matches('0').trim_end_matches('.');
        let description = format!("{} {percent}%", country.tax_label);
        push_item(&mut items, &mut total, &description, "tax", 1, tax);
    }
    (Value::Array(items).to_string(), total)
}

fn push_item(
    items: &mut Vec<Value>,
    total: &mut Money,
    description: &str,
    sku: &str,
    quantity: i64,
    unit: Money,
) {
    let amount = Money(unit.0 * quantity);
    total.0 += amount.0;
    items.push(json!({
        "description": description,
        "sku": sku,
        "quantity": quantity,
        "unit_amount": unit.to_string(),
        "amount": amount.to_string(),
    }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{country, plan, COUNTRIES};

    #[test]
    fn money_is_exact_with_two_decimals() {
        assert_eq!(Money(123_456).to_string(), "1234.56");
        assert_eq!(Money(5).to_string(), "0.05");
        assert_eq!(Money(-250).to_string(), "-2.50");
        assert_eq!(
            Money::from_usd(1900, country("JP").unwrap()),
            Money(285_000)
        );
        assert_eq!(Money::from_usd(1900, country("DE").unwrap()), Money(1748));
        assert_eq!(Money(1001).share(1900), Money(190));
        assert_eq!(mrr(plan(3).unwrap(), 12), Money(22_800));
    }

    #[test]
    fn line_items_add_up_to_the_amount() {
        let mut rng = Rng::new(11);
        for c in &COUNTRIES {
            for p in &crate::catalog::PLANS {
                let (text, total) = line_items(&mut rng, p, 7, c);
                let items: Value = serde_json::from_str(&text).unwrap();
                let items = items.as_array().unwrap();
                let mut sum = 0i64;
                for item in items {
                    let amount = item["amount"].as_str().unwrap();
                    let (units, cents) = amount.split_once('.').unwrap();
                    assert_eq!(cents.len(), 2, "{amount}");
                    sum += units.parse::<i64>().unwrap() * 100 + cents.parse::<i64>().unwrap();
                }
                assert_eq!(Money(sum), total, "{text}");
                assert_eq!(items[0]["sku"], format!("{}-seat", p.code));
                assert_eq!(items[0]["quantity"], 7);
                assert_eq!(
                    items.last().unwrap()["sku"] == "tax",
                    c.tax_bp > 0,
                    "{text}"
                );
            }
        }
    }
}
