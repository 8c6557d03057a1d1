//! Realistic names and places, each a pure function of a [`Rng`] and its context: company and
//! person names, e-mail addresses derived from them, and postal addresses in each country's format.
//! Money is in [`money`](crate::money), event properties in [`activity`](crate::activity).

use crate::catalog::{Country, COUNTRIES};
use crate::rng::{mix64, Rng};
use crate::words;

/// A person's name, as picked from the word lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Person {
    pub first: &'static str,
    pub last: &'static str,
}

impl Person {
    pub fn pick(rng: &mut Rng) -> Person {
        Person {
            first: rng.pick(words::FIRST_NAMES).copied().unwrap_or("Alex"),
            last: rng.pick(words::LAST_NAMES).copied().unwrap_or("Doe"),
        }
    }

    pub fn full_name(&self) -> String {
        format!("{} {}", self.first, self.last)
    }

    /// The local part of their e-mail address: `zoe.obrien`, then `zoe.obrien2`, … for the `n`th
    /// person of the same name in one organization.
    pub fn email_local(&self, n: u32) -> String {
        let base = format!("{}.{}", fold(self.first, ""), fold(self.last, ""));
        if n <= 1 {
            base
        } else {
            format!("{base}{n}")
        }
    }
}

pub use shared::names::fold;

/// A company: its display name (with a legal suffix) and the name part its slug and domain use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Company {
    pub name: String,
    pub base: String,
}

impl Company {
    pub fn pick(rng: &mut Rng, country: &Country) -> Company {
        let adjective = rng
            .pick(words::COMPANY_ADJECTIVES)
            .copied()
            .unwrap_or("Blue");
        let noun = rng.pick(words::COMPANY_NOUNS).copied().unwrap_or("Harbor");
        let core = match rng.below(3) {
            0 => format!("{adjective}{noun}"),
            1 => format!("{adjective} {noun}"),
            _ => {
                let last = rng.pick(words::LAST_NAMES).copied().unwrap_or("Smith");
                let industry = rng.pick(words::INDUSTRIES).copied().unwrap_or("Labs");
                format!("{last} {industry}")
            }
        };
        let base = fold(&core, "-");
        let name = match rng.pick(country.company_suffixes) {
            Some(suffix) if rng.chance(60) => format!("{core} {suffix}"),
            _ => core,
        };
        Company { name, base }
    }
}

/// `bright-ledger-17`: unique because it ends with the organization's id.
pub fn slug(base: &str, org_id: i64) -> String {
    format!("{base}-{org_id}")
}

/// The name part of a slug made by [`slug`].
pub fn slug_base(slug: &str) -> &str {
    slug.rsplit_once('-').map_or(slug, |(base, _)| base)
}

/// The organization's e-mail domain: its name under its country's or a generic top-level domain,
/// fixed by the organization id so that users added later share it.
pub fn domain(base: &str, country: &Country, org_id: i64) -> String {
    let h = mix64(org_id as u64);
    let tld = if h % 3 == 0 {
        country.tld
    } else {
        let generic = words::GENERIC_TLDS;
        generic[((h >> 8) % generic.len() as u64) as usize]
    };
    format!("{base}.{tld}")
}

/// A postal address in the country's own format, ending with the country's name.
pub fn address(rng: &mut Rng, country: &Country) -> String {
    let street = rng.pick(country.streets).copied().unwrap_or("Main Street");
    let Some(city) = rng.pick(country.cities) else {
        return format!("{} {street}, {}", rng.range(1, 200), country.name);
    };
    let mut out = String::new();
    let mut rest = country.address_format;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        match &rest[open + 1..open + close] {
            "num" => out.push_str(&rng.range(1, 240).to_string()),
            "street" => out.push_str(street),
            "city" => out.push_str(city.name),
            "region" => out.push_str(city.region),
            "postal" => out.push_str(&fill_pattern(rng, city.postal)),
            other => out.push_str(other),
        }
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    format!("{}, {}", out.replace(" ,", ","), country.name)
}

/// Fills a postal-code pattern: `#` a digit, `@` a capital letter, anything else as is.
pub fn fill_pattern(rng: &mut Rng, pattern: &str) -> String {
    pattern
        .chars()
        .map(|c| match c {
            '#' => char::from(b'0' + rng.below(10) as u8),
            '@' => char::from(b'A' + rng.below(26) as u8),
            other => other,
        })
        .collect()
}

/// Someone's home address: mostly in the organization's country, sometimes anywhere (remote work).
pub fn home_address(rng: &mut Rng, org_country: &Country) -> String {
    let country = if rng.chance(85) {
        org_country
    } else {
        rng.pick(&COUNTRIES).unwrap_or(org_country)
    };
    address(rng, country)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::catalog::country;

    /// What `cascade-gen` promises of an e-mail address: an ASCII local part and a domain of
    /// lowercase labels with a top-level domain of letters.
    pub(crate) fn is_valid_email(email: &str) -> bool {
        let Some((local, domain)) = email.split_once('@') else {
            return false;
        };
        let label_ok = |l: &str| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        };
        let labels: Vec<&str> = domain.split('.').collect();
        !local.is_empty()
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && local
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.')
            && labels.len() >= 2
            && labels.iter().all(|l| label_ok(l))
            && labels
                .last()
                .is_some_and(|t| t.len() >= 2 && t.bytes().all(|b| b.is_ascii_lowercase()))
    }

    #[test]
    fn names_fold_to_ascii() {
        assert_eq!(fold("Müller & Søn", "-"), "mueller-soen");
        assert_eq!(fold("O'Brien", ""), "obrien");
        assert_eq!(fold("de Vries", ""), "devries");
        assert_eq!(fold("BrightLedger B.V.", "-"), "brightledger-bv");
        let p = Person {
            first: "Zoë",
            last: "Lefèvre",
        };
        assert_eq!(p.email_local(1), "zoe.lefevre");
        assert_eq!(p.email_local(3), "zoe.lefevre3");
        assert_eq!(slug_base(&slug("bright-ledger", 17)), "bright-ledger");
    }

    #[test]
    fn every_listed_name_makes_a_valid_email() {
        let de = country("DE").unwrap();
        for (i, first) in words::FIRST_NAMES.iter().enumerate() {
            for last in words::LAST_NAMES {
                let p = Person { first, last };
                let email = format!(
                    "{}@{}",
                    p.email_local(2),
                    domain("bright-ledger", de, i as i64)
                );
                assert!(is_valid_email(&email), "{email}");
            }
        }
        let mut rng = Rng::new(5);
        for c in &COUNTRIES {
            for id in 0..50 {
                let company = Company::pick(&mut rng, c);
                let email = format!("a.b@{}", domain(&company.base, c, id));
                assert!(is_valid_email(&email), "{email} from {company:?}");
            }
        }
        assert!(
            !is_valid_email("zoë@x.com") && !is_valid_email("a@b") && !is_valid_email("a@-b.com")
        );
    }

    #[test]
    fn addresses_follow_their_country() {
        let mut rng = Rng::new(3);
        for c in &COUNTRIES {
            let a = address(&mut rng, c);
            assert!(a.ends_with(c.name), "{a}");
            assert!(
                !a.contains('{') && !a.contains('#') && !a.contains(" ,"),
                "{a}"
            );
        }
        let us = address(&mut Rng::new(1), country("US").unwrap());
        let re_zip = us.rsplit(", ").nth(1).unwrap().rsplit(' ').next().unwrap();
        assert!(
            re_zip.len() == 5 && re_zip.bytes().all(|b| b.is_ascii_digit()),
            "{us}"
        );
    }
}
