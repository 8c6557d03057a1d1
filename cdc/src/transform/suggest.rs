//! `cdc suggest-transforms`: scans the source's column names and a sample of their values for likely
//! personal data (e-mails, names, phones, national ids, addresses, IP addresses, card numbers, birth
//! dates, secrets) and prints a routing-file section to review. It never prints a sampled value.
//!
//! The guesses are [`by_name`] and [`by_values`], pure and unit-tested; this module's SQL only lists
//! columns and reads samples.

use std::fmt::Write as _;
use std::time::Duration;

use clap::Parser;

use super::Rule;
use crate::capture::slot::connect_sql;
use crate::config::SourceUrl;
use crate::error::CdcError;

/// Scans the source database for columns that likely hold personal data and prints a
/// `[tables."schema.table".transform]` section for each table, to review and add to the routing
/// file (--config/CASCADE_CONFIG). Sampled values are read to decide, never printed.
#[derive(Debug, Clone, Parser)]
#[command(name = "cdc suggest-transforms", version)]
pub struct SuggestArgs {
    /// PostgreSQL source, as a URL: postgres://user:password@host:port/database. The password is
    /// never printed.
    #[arg(long, env = "CDC_SOURCE_URL", hide_env_values = true)]
    pub source_url: SourceUrl,

    /// Non-NULL values read per text column to recognise its content.
    #[arg(long, default_value_t = 200)]
    pub sample_rows: u32,
}

/// One suggestion: the rule and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suggestion {
    pub rule: Rule,
    pub reason: &'static str,
}

/// A guess from the column's name and type alone.
pub fn by_name(table: &str, column: &str, type_name: &str) -> Option<Suggestion> {
    let c = column.to_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| c.contains(w));
    let is = |words: &[&str]| words.iter().any(|w| c == *w);
    let s = |rule, reason| Some(Suggestion { rule, reason });
    if has(&["email", "e_mail"]) || is(&["mail"]) {
        return s(Rule::FakeEmail, "the name says e-mail address");
    }
    if has(&["password", "passwd", "secret", "api_key", "apikey", "token"]) {
        return s(Rule::Drop, "the name says credential");
    }
    if has(&[
        "ssn",
        "social_security",
        "national_id",
        "passport",
        "tax_id",
        "driver_licen",
    ]) || is(&["nin", "tin", "sin"])
    {
        return s(Rule::Null, "the name says national identifier");
    }
    if has(&[
        "card_number",
        "cc_number",
        "credit_card",
        "iban",
        "account_number",
    ]) || is(&["pan"])
    {
        return s(Rule::Mask, "the name says card or account number");
    }
    if has(&["phone", "mobile", "msisdn", "fax"]) || is(&["tel", "telephone"]) {
        return s(Rule::Mask, "the name says phone number");
    }
    if (has(&["birth", "dob"]) || is(&["born", "born_on"]))
        && (type_name == "date" || type_name.starts_with("timestamp"))
    {
        return s(Rule::TruncateDate, "the name says birth date");
    }
    if has(&[
        "first_name",
        "last_name",
        "full_name",
        "surname",
        "given_name",
        "family_name",
        "display_name",
        "contact_name",
    ]) || (c == "name" && is_people_table(table))
    {
        return s(Rule::FakeName, "the name says person's name");
    }
    if has(&["address", "street", "postcode", "postal_code", "zip_code"]) || is(&["zip"]) {
        return s(Rule::Redact, "the name says postal address");
    }
    if has(&["ip_addr", "ipaddr", "remote_addr", "client_ip", "last_ip"])
        || is(&["ip"])
        || type_name == "inet"
    {
        return s(Rule::Hash, "the name or type says IP address");
    }
    None
}

fn is_people_table(table: &str) -> bool {
    let t = table.to_lowercase();
    [
        "user", "customer", "person", "people", "contact", "employee", "member", "patient",
        "client", "student", "account", "profile",
    ]
    .iter()
    .any(|w| t.contains(w))
}

/// A guess from sampled values: most of them look like one kind of personal data.
pub fn by_values<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<Suggestion> {
    let mut counts = [0usize; 5];
    let mut n = 0usize;
    for v in values {
        n += 1;
        let v = v.trim();
        let kinds = [
            looks_like_email(v),
            looks_like_card(v),
            looks_like_ssn(v),
            looks_like_ip(v),
            looks_like_phone(v),
        ];
        for (count, hit) in counts.iter_mut().zip(kinds) {
            *count += usize::from(hit);
        }
    }
    // Most of the sample, and enough of it to mean something.
    let most = |count: usize| n >= 3 && count * 10 >= n * 8;
    let s = |rule, reason| Some(Suggestion { rule, reason });
    if most(counts[0]) {
        return s(Rule::FakeEmail, "the values look like e-mail addresses");
    }
    if most(counts[1]) {
        return s(Rule::Mask, "the values look like card numbers (Luhn check)");
    }
    if most(counts[2]) {
        return s(
            Rule::Null,
            "the values look like US social security numbers",
        );
    }
    if most(counts[3]) {
        return s(Rule::Hash, "the values look like IP addresses");
    }
    if most(counts[4]) {
        return s(Rule::Mask, "the values look like phone numbers");
    }
    None
}

fn looks_like_email(v: &str) -> bool {
    let Some((local, domain)) = v.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !v.contains(char::is_whitespace)
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
}

fn digits_of(v: &str, separators: &[char]) -> Option<Vec<u32>> {
    let mut out = Vec::with_capacity(v.len());
    for c in v.chars() {
        match c.to_digit(10) {
            Some(d) => out.push(d),
            None if separators.contains(&c) => {}
            None => return None,
        }
    }
    Some(out)
}

fn looks_like_card(v: &str) -> bool {
    let Some(digits) = digits_of(v, &[' ', '-']) else {
        return false;
    };
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    // Luhn: double every second digit from the right.
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let d2 = d * 2;
                if d2 > 9 {
                    d2 - 9
                } else {
                    d2
                }
            } else {
                d
            }
        })
        .sum();
    sum % 10 == 0
}

fn looks_like_ssn(v: &str) -> bool {
    let b = v.as_bytes();
    b.len() == 11
        && b[3] == b'-'
        && b[6] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 3 || i == 6 || c.is_ascii_digit())
}

fn looks_like_ip(v: &str) -> bool {
    let v = v.split('/').next().unwrap_or(v);
    v.parse::<std::net::IpAddr>().is_ok()
}

fn looks_like_phone(v: &str) -> bool {
    let rest = v.strip_prefix('+').unwrap_or(v);
    match digits_of(rest, &[' ', '-', '(', ')', '.']) {
        Some(d) => {
            (7..=15).contains(&d.len()) && (v.starts_with('+') || v.contains([' ', '-', '(']))
        }
        None => false,
    }
}

/// A column of the source.
#[derive(Debug, Clone)]
struct SourceColumn {
    schema: String,
    table: String,
    column: String,
    type_name: String,
    in_pk: bool,
}

/// The suggestion for a column, adjusted for primary-key columns (only rules that keep keys
/// distinct may apply there).
fn for_column(col: &SourceColumn, sample: &[String]) -> Option<Suggestion> {
    let found = by_name(&col.table, &col.column, &col.type_name)
        .or_else(|| by_values(sample.iter().map(String::as_str)))?;
    if col.in_pk && !found.rule.keeps_keys_distinct() {
        return Some(Suggestion {
            rule: Rule::Hash,
            reason: "part of the primary key, where only hash or fake-email keep rows apart",
        });
    }
    Some(found)
}

/// Runs the scan and prints the suggested section on standard output.
pub async fn run(args: SuggestArgs) -> Result<(), CdcError> {
    let target = args.source_url.target();
    let client = connect_sql(&args.source_url, &target, Duration::from_secs(10)).await?;
    let query = |context| move |source| CdcError::SourceQuery { context, source };
    let rows = client
        .query(
            "SELECT n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod),
                    EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary
                                                      AND a.attnum = ANY(i.indkey))
               FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace
               JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
              WHERE c.relkind IN ('r', 'p')
                AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'cascade')
                AND n.nspname NOT LIKE 'pg\\_%'
              ORDER BY n.nspname, c.relname, a.attnum",
            &[],
        )
        .await
        .map_err(query("listing the source's columns"))?;
    let columns: Vec<SourceColumn> = rows
        .iter()
        .map(|r| SourceColumn {
            schema: r.get(0),
            table: r.get(1),
            column: r.get(2),
            type_name: r.get(3),
            in_pk: r.get(4),
        })
        .collect();
    let mut out = format!(
        "# Suggested by `cdc suggest-transforms` for {target}: review every line before use.\n\
         # hash, fake-name and fake-email need CASCADE_TRANSFORM_KEY (see docs/configuration.md).\n"
    );
    let mut current = None;
    let mut found = 0usize;
    for col in &columns {
        let sample = if is_textual(&col.type_name) {
            let sql = format!(
                "SELECT {c}::text FROM {s}.{t} WHERE {c} IS NOT NULL LIMIT {n}",
                c = quote(&col.column),
                s = quote(&col.schema),
                t = quote(&col.table),
                n = args.sample_rows
            );
            client
                .query(sql.as_str(), &[])
                .await
                .map_err(query("sampling a column"))?
                .iter()
                .map(|r| r.get::<_, String>(0))
                .collect()
        } else {
            Vec::new()
        };
        let Some(suggestion) = for_column(col, &sample) else {
            continue;
        };
        let table = format!("{}.{}", col.schema, col.table);
        if current.as_ref() != Some(&table) {
            let _ = write!(out, "\n[tables.{}.transform]\n", toml_key(&table));
            current = Some(table);
        }
        let _ = writeln!(
            out,
            "{} = \"{}\"  # {}",
            toml_key(&col.column),
            suggestion.rule.name(),
            suggestion.reason
        );
        found += 1;
    }
    if found == 0 {
        out.push_str("\n# No column looks like personal data.\n");
    }
    print!("{out}");
    Ok(())
}

fn is_textual(type_name: &str) -> bool {
    type_name == "text"
        || type_name.starts_with("character")
        || type_name == "inet"
        || type_name == "cidr"
        || type_name == "jsonb"
        || type_name == "json"
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// A TOML key: bare when it can be, else a basic string.
fn toml_key(key: &str) -> String {
    if !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        key.to_owned()
    } else {
        let escaped: String = key
            .chars()
            .flat_map(|c| match c {
                '"' => "\\\"".chars().collect::<Vec<_>>(),
                '\\' => "\\\\".chars().collect(),
                c => vec![c],
            })
            .collect();
        format!("\"{escaped}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_suggest_rules() {
        let rule = |t, c, ty| by_name(t, c, ty).map(|s| s.rule);
        assert_eq!(rule("users", "email", "text"), Some(Rule::FakeEmail));
        assert_eq!(rule("users", "Work_Email", "text"), Some(Rule::FakeEmail));
        assert_eq!(rule("users", "phone_number", "text"), Some(Rule::Mask));
        assert_eq!(rule("users", "ssn", "text"), Some(Rule::Null));
        assert_eq!(rule("users", "password_hash", "text"), Some(Rule::Drop));
        assert_eq!(
            rule("users", "date_of_birth", "date"),
            Some(Rule::TruncateDate)
        );
        assert_eq!(rule("customers", "name", "text"), Some(Rule::FakeName));
        assert_eq!(rule("plans", "name", "text"), None);
        assert_eq!(rule("users", "street_address", "text"), Some(Rule::Redact));
        assert_eq!(rule("sessions", "ip", "inet"), Some(Rule::Hash));
        assert_eq!(rule("orders", "amount", "numeric"), None);
    }

    #[test]
    fn values_suggest_rules() {
        let rule = |v: &[&str]| by_values(v.iter().copied()).map(|s| s.rule);
        assert_eq!(
            rule(&["a@b.io", "c.d@e.example", "x@y.org"]),
            Some(Rule::FakeEmail)
        );
        assert_eq!(
            rule(&[
                "4111 1111 1111 1111",
                "5500-0000-0000-0004",
                "340000000000009"
            ]),
            Some(Rule::Mask)
        );
        assert_eq!(
            rule(&["078-05-1120", "219-09-9999", "123-45-6789"]),
            Some(Rule::Null)
        );
        assert_eq!(rule(&["10.0.0.1", "::1", "192.168.1.20"]), Some(Rule::Hash));
        assert_eq!(
            rule(&["+44 20 7946 0958", "+1 (555) 010-2030", "+33 1 23 45 67 89"]),
            Some(Rule::Mask)
        );
        assert_eq!(rule(&["hello", "world", "again"]), None);
        // Too few values to say.
        assert_eq!(rule(&["a@b.io"]), None);
        // Sixteen digits failing the Luhn check are not a card.
        assert_eq!(
            rule(&["1234567812345678", "1234567812345670", "1111111111111112"]),
            None
        );
    }

    #[test]
    fn primary_key_columns_get_a_rule_that_keeps_them_apart() {
        let col = SourceColumn {
            schema: "public".into(),
            table: "users".into(),
            column: "phone".into(),
            type_name: "text".into(),
            in_pk: true,
        };
        assert_eq!(for_column(&col, &[]).unwrap().rule, Rule::Hash);
    }

    #[test]
    fn keys_are_toml_safe() {
        assert_eq!(toml_key("email"), "email");
        assert_eq!(toml_key("public.users"), "\"public.users\"");
        assert_eq!(toml_key("we\"ird"), "\"we\\\"ird\"");
    }
}
