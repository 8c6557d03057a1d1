//! What users do: event kinds and their properties, as JSON text.

use serde_json::json;

use crate::catalog::Country;
use crate::rng::Rng;

/// What users do in bulk data and in steady mode's activity, with how often.
pub const ACTIVITY: [(&str, u64); 6] = [
    ("page.viewed", 40),
    ("feature.used", 20),
    ("session.started", 15),
    ("api.called", 15),
    ("report.exported", 5),
    ("invite.sent", 5),
];

/// The properties of an event of `kind`, as JSON text. Addresses are from the documentation ranges
/// (RFC 5737), never real hosts.
pub fn event_properties(rng: &mut Rng, kind: &str, country: &Country, domain: &str) -> String {
    let value = match kind {
        "page.viewed" => {
            let path = one(
                rng,
                &[
                    "/dashboard",
                    "/reports",
                    "/settings/billing",
                    "/inbox",
                    "/integrations",
                    "/projects",
                ],
            );
            let referrer = one(
                rng,
                &[
                    "",
                    "https://www.google.com/",
                    "https://news.ycombinator.com/",
                    "https://www.linkedin.com/",
                ],
            );
            json!({"path": path, "referrer": (!referrer.is_empty()).then_some(referrer), "duration_ms": rng.range(150, 90_000)})
        }
        "feature.used" => {
            let feature = one(
                rng,
                &[
                    "dashboards",
                    "exports",
                    "api_keys",
                    "webhooks",
                    "sso",
                    "audit_log",
                    "automations",
                ],
            );
            json!({"feature": feature, "count": rng.range(1, 25)})
        }
        "session.started" => {
            let net = one(rng, &["192.0.2", "198.51.100", "203.0.113"]);
            let agent = one(rng, &[
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 Safari/605.1.15",
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/124.0 Safari/537.36",
                "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) Mobile/15E148",
            ]);
            json!({"ip": format!("{net}.{}", rng.range(1, 254)), "user_agent": agent, "country": country.code})
        }
        "api.called" => {
            let endpoint = one(
                rng,
                &[
                    "/v1/projects",
                    "/v1/users",
                    "/v1/invoices",
                    "/v1/events",
                    "/v1/reports",
                ],
            );
            let method = one(rng, &["GET", "GET", "GET", "POST", "PATCH", "DELETE"]);
            let status = rng
                .pick(&[200, 200, 200, 201, 204, 400, 404, 429])
                .copied()
                .unwrap_or(200);
            json!({"endpoint": endpoint, "method": method, "status": status,
                   "latency_ms": rng.range(4, 900)})
        }
        "report.exported" => {
            let format = one(rng, &["csv", "pdf", "xlsx"]);
            json!({"format": format, "rows": rng.range(10, 50_000)})
        }
        "invite.sent" => {
            let role = one(rng, &["member", "member", "admin", "viewer"]);
            json!({"invitee_domain": domain, "role": role})
        }
        _ => json!({}),
    };
    value.to_string()
}

fn one(rng: &mut Rng, items: &[&'static str]) -> &'static str {
    rng.pick(items).copied().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::country;
    use serde_json::Value;

    #[test]
    fn event_properties_are_json_objects() {
        let mut rng = Rng::new(2);
        let us = country("US").unwrap();
        for (kind, _) in ACTIVITY {
            let v: Value =
                serde_json::from_str(&event_properties(&mut rng, kind, us, "x.com")).unwrap();
            assert!(v.as_object().is_some_and(|o| !o.is_empty()), "{kind}: {v}");
        }
    }
}
