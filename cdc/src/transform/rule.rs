//! One column rule and what it does to one value. Pure.
//!
//! A rule sees a value's **text**: the text of a JSON string (unescaped), or the exact text wal2json
//! printed for a number or boolean. NULL stays NULL under every rule (`drop` removes the column).

use hmac::{Hmac, Mac};
use sha2::Sha256;

use shared::names::{fold, FIRST_NAMES, LAST_NAMES};

/// The secret of the keyed rules (`CASCADE_TRANSFORM_KEY`); never printed.
#[derive(Clone)]
pub struct TransformKey(Vec<u8>);

impl TransformKey {
    pub fn new(key: impl Into<Vec<u8>>) -> Self {
        TransformKey(key.into())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// HMAC-SHA256 of `text` under this key.
    pub fn hmac(&self, text: &str) -> [u8; 32] {
        // HMAC takes keys of any length: `new_from_slice` cannot fail for it.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(text.as_bytes());
        mac.finalize().into_bytes().into()
    }
}

impl std::str::FromStr for TransformKey {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(TransformKey::new(s))
    }
}

impl std::fmt::Debug for TransformKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TransformKey(****)")
    }
}

/// What a rule does to a column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// Lowercase hex HMAC-SHA256 of the value's text.
    Hash,
    /// A realistic full name derived from the HMAC: the same input gives the same name.
    FakeName,
    /// A valid address at `example.com` derived from the HMAC, unique per input.
    FakeEmail,
    /// Every character but the last 4 replaced by `*` (values of 4 characters or fewer entirely).
    Mask,
    /// NULL.
    Null,
    /// The constant `REDACTED`.
    Redact,
    /// A date or timestamp moved to the first day of its month, midnight.
    TruncateDate,
    /// The column never leaves the primary.
    Drop,
}

/// The text of the redact rule.
pub const REDACTED: &str = "REDACTED";

impl Rule {
    /// Every rule name, as written in the routing file.
    pub const NAMES: &'static [&'static str] = &[
        "hash",
        "fake-name",
        "fake-email",
        "mask",
        "null",
        "redact",
        "truncate-date",
        "drop",
    ];

    pub fn parse(name: &str) -> Option<Rule> {
        Some(match name {
            "hash" => Rule::Hash,
            "fake-name" => Rule::FakeName,
            "fake-email" => Rule::FakeEmail,
            "mask" => Rule::Mask,
            "null" => Rule::Null,
            "redact" => Rule::Redact,
            "truncate-date" => Rule::TruncateDate,
            "drop" => Rule::Drop,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Rule::Hash => "hash",
            Rule::FakeName => "fake-name",
            Rule::FakeEmail => "fake-email",
            Rule::Mask => "mask",
            Rule::Null => "null",
            Rule::Redact => "redact",
            Rule::TruncateDate => "truncate-date",
            Rule::Drop => "drop",
        }
    }

    /// Whether the rule needs `CASCADE_TRANSFORM_KEY`.
    pub fn is_keyed(self) -> bool {
        matches!(self, Rule::Hash | Rule::FakeName | Rule::FakeEmail)
    }

    /// Whether distinct inputs stay distinct, so the rule may apply to a primary-key column without
    /// merging rows on the replica: the hash, and the fake e-mail (it carries 64 bits of the HMAC). A
    /// fake name repeats, and so do a mask, a constant or a month.
    pub fn keeps_keys_distinct(self) -> bool {
        matches!(self, Rule::Hash | Rule::FakeEmail)
    }

    /// The replica type of a transformed column: what the source column's type becomes so the new
    /// value fits (a 64-character hash in a `varchar(20)` column does not), with its type OID.
    pub fn column_type(self, source: &str, source_oid: Option<u32>) -> (String, Option<u32>) {
        let text = ("text".to_owned(), Some(25));
        match self {
            Rule::Hash => ("character varying(64)".to_owned(), Some(1043)),
            Rule::FakeName | Rule::FakeEmail | Rule::Redact => text,
            // The same number of characters: a text type of any length still fits.
            Rule::Mask if is_text_type(source) => (source.to_owned(), source_oid),
            Rule::Mask => text,
            Rule::Null | Rule::TruncateDate | Rule::Drop => (source.to_owned(), source_oid),
        }
    }

    /// Whether the rule can apply to a column of this source type; `None` when it can, else why not.
    pub fn refuses_type(self, source: &str) -> Option<&'static str> {
        match self {
            Rule::TruncateDate if !is_date_type(source) => {
                Some("truncate-date applies to date and timestamp columns only")
            }
            _ => None,
        }
    }

    /// The new text of a non-NULL value: `Ok(None)` for NULL (the `null` rule), `Err` with a reason
    /// that never quotes the value when the value cannot take the rule.
    pub fn apply(
        self,
        text: &str,
        key: Option<&TransformKey>,
    ) -> Result<Option<String>, &'static str> {
        let keyed = || key.ok_or("the rule needs CASCADE_TRANSFORM_KEY");
        Ok(Some(match self {
            Rule::Hash => hex(&keyed()?.hmac(text)),
            Rule::FakeName => fake_name(&keyed()?.hmac(text), text),
            Rule::FakeEmail => fake_email(&keyed()?.hmac(text)),
            Rule::Mask => mask(text),
            Rule::Null | Rule::Drop => return Ok(None),
            Rule::Redact => REDACTED.to_owned(),
            Rule::TruncateDate => truncate_date(text)
                .ok_or("the value is not a date or timestamp that truncate-date can read")?,
        }))
    }
}

fn is_text_type(t: &str) -> bool {
    t == "text"
        || t.starts_with("character varying")
        || t.starts_with("character(")
        || t == "character"
        || t == "bpchar"
}

fn is_date_type(t: &str) -> bool {
    t == "date" || t.starts_with("timestamp")
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}

fn pick<'a>(list: &[&'a str], bytes: [u8; 2]) -> &'a str {
    list[usize::from(u16::from_be_bytes(bytes)) % list.len()]
}

/// A first and last name chosen by the HMAC; never the input itself.
fn fake_name(mac: &[u8; 32], original: &str) -> String {
    for i in (0..28).step_by(4) {
        let name = format!(
            "{} {}",
            pick(FIRST_NAMES, [mac[i], mac[i + 1]]),
            pick(LAST_NAMES, [mac[i + 2], mac[i + 3]])
        );
        if name != original {
            return name;
        }
    }
    // Seven draws all equal to the input cannot happen with two lists of over fifty names; a name
    // that is certainly different keeps the promise anyway.
    format!("{} {}", FIRST_NAMES[0], LAST_NAMES[1])
}

/// `first.last.<16 hex digits>@example.com`: reads like an address, and the 64 bits of the HMAC keep
/// distinct inputs distinct (so joins on e-mail still work).
fn fake_email(mac: &[u8; 32]) -> String {
    let first = fold(pick(FIRST_NAMES, [mac[0], mac[1]]), "");
    let last = fold(pick(LAST_NAMES, [mac[2], mac[3]]), "");
    format!("{first}.{last}.{}@example.com", hex(&mac[4..12]))
}

fn mask(text: &str) -> String {
    let n = text.chars().count();
    let keep = if n > 4 { 4 } else { 0 };
    text.chars()
        .enumerate()
        .map(|(i, c)| if i + keep < n { '*' } else { c })
        .collect()
}

/// `2024-03-10` → `2024-03-01`; `2024-03-10 10:30:00.5+00` → `2024-03-01 00:00:00+00`; a `BC` suffix
/// is kept; `infinity` and `-infinity` stay as they are.
fn truncate_date(text: &str) -> Option<String> {
    if text == "infinity" || text == "-infinity" {
        return Some(text.to_owned());
    }
    let (body, bc) = match text.strip_suffix(" BC") {
        Some(b) => (b, " BC"),
        None => (text, ""),
    };
    let (date, time) = match body.split_once(' ') {
        Some((d, t)) => (d, Some(t)),
        None => (body, None),
    };
    let mut parts = date.splitn(3, '-');
    let (year, month, day) = (parts.next()?, parts.next()?, parts.next()?);
    let digits = |s: &str, n: std::ops::RangeInclusive<usize>| {
        n.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
    };
    if !digits(year, 4..=7) || !digits(month, 2..=2) || !digits(day, 2..=2) {
        return None;
    }
    Some(match time {
        None => format!("{year}-{month}-01{bc}"),
        Some(time) => {
            // The zone offset, as PostgreSQL prints it after the time (`+00`, `-05:30`).
            let offset = time.find(['+', '-']).map_or("", |at| &time[at..]);
            format!("{year}-{month}-01 00:00:00{offset}{bc}")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> TransformKey {
        TransformKey::new("k3y")
    }

    #[test]
    fn hash_is_the_lowercase_hex_hmac_sha256() {
        // RFC 4231 test case 2: HMAC-SHA256("Jefe", "what do ya want for nothing?").
        let got = Rule::Hash
            .apply(
                "what do ya want for nothing?",
                Some(&TransformKey::new("Jefe")),
            )
            .unwrap()
            .unwrap();
        assert_eq!(
            got,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn fakes_are_deterministic_realistic_and_never_the_original() {
        let a = Rule::FakeName.apply("Ada Lovelace", Some(&key())).unwrap();
        assert_eq!(
            a,
            Rule::FakeName.apply("Ada Lovelace", Some(&key())).unwrap()
        );
        let a = a.unwrap();
        assert_ne!(a, "Ada Lovelace");
        assert_eq!(a.split(' ').count(), 2, "{a}");
        let e = Rule::FakeEmail
            .apply("ada@example.org", Some(&key()))
            .unwrap()
            .unwrap();
        assert!(e.ends_with("@example.com") && e.is_ascii(), "{e}");
        let other = Rule::FakeEmail
            .apply("bob@example.org", Some(&key()))
            .unwrap()
            .unwrap();
        assert_ne!(e, other);
        // Another key, another mapping.
        let b = Rule::FakeEmail
            .apply("ada@example.org", Some(&TransformKey::new("other")))
            .unwrap()
            .unwrap();
        assert_ne!(e, b);
        assert!(Rule::Hash.apply("x", None).is_err());
    }

    #[test]
    fn mask_keeps_the_last_four_characters() {
        assert_eq!(mask("+44 20 7946 0958"), "************0958");
        assert_eq!(mask("ünïcödé"), "***cödé");
        assert_eq!(mask("1234"), "****");
    }

    #[test]
    fn truncate_date_goes_to_the_first_of_the_month() {
        assert_eq!(truncate_date("2024-03-10").unwrap(), "2024-03-01");
        assert_eq!(
            truncate_date("2024-03-10 10:30:00.123456+00").unwrap(),
            "2024-03-01 00:00:00+00"
        );
        assert_eq!(
            truncate_date("2024-03-10 10:30:00").unwrap(),
            "2024-03-01 00:00:00"
        );
        assert_eq!(truncate_date("0044-03-15 BC").unwrap(), "0044-03-01 BC");
        assert_eq!(truncate_date("infinity").unwrap(), "infinity");
        assert!(truncate_date("not a date").is_none());
    }

    #[test]
    fn column_types_fit_the_new_values() {
        assert_eq!(
            Rule::Hash
                .column_type("character varying(20)", Some(1043))
                .0,
            "character varying(64)"
        );
        assert_eq!(
            Rule::Mask
                .column_type("character varying(20)", Some(1043))
                .0,
            "character varying(20)"
        );
        assert_eq!(Rule::Mask.column_type("bigint", Some(20)).0, "text");
        assert_eq!(Rule::Null.column_type("bigint", Some(20)).0, "bigint");
        assert!(Rule::TruncateDate.refuses_type("text").is_some());
        assert!(Rule::TruncateDate
            .refuses_type("timestamp with time zone")
            .is_none());
    }

    #[test]
    fn the_key_never_prints() {
        assert_eq!(format!("{:?}", key()), "TransformKey(****)");
    }
}
