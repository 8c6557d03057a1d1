//! Instants and calendar dates as plain integers, so generated data never depends on the local time
//! zone or on a date library: a [`Timestamp`] is microseconds since the Unix epoch (UTC), a [`Date`]
//! days since 1970-01-01. Bulk data is placed before a fixed [`ANCHOR`], not before "now", so a seed
//! produces the same timestamps whenever it runs.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const SECOND: i64 = 1_000_000;
pub const MINUTE: i64 = 60 * SECOND;
pub const HOUR: i64 = 60 * MINUTE;
pub const DAY: i64 = 24 * HOUR;

/// The "present" of bulk data: 2025-01-01T00:00:00Z. Bulk organizations are up to two years old.
pub const ANCHOR: Timestamp = Timestamp(1_735_689_600 * SECOND);

/// An instant, in microseconds since 1970-01-01T00:00:00Z (PostgreSQL's `timestamptz` resolution).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

/// A calendar date, in days since 1970-01-01.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date(pub i64);

impl Timestamp {
    /// The current instant (steady mode), truncated to microseconds.
    pub fn now() -> Self {
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros())
            .unwrap_or(0);
        Timestamp(i64::try_from(micros).unwrap_or(i64::MAX))
    }

    pub fn plus(self, micros: i64) -> Self {
        Timestamp(self.0.saturating_add(micros))
    }

    pub fn date(self) -> Date {
        Date(self.0.div_euclid(DAY))
    }

    /// The instant for binding to a `timestamptz` parameter.
    pub fn to_system_time(self) -> SystemTime {
        let magnitude = Duration::from_micros(self.0.unsigned_abs());
        if self.0 >= 0 {
            UNIX_EPOCH + magnitude
        } else {
            UNIX_EPOCH - magnitude
        }
    }
}

impl Date {
    /// Midnight UTC at the start of the date.
    pub fn start(self) -> Timestamp {
        Timestamp(self.0.saturating_mul(DAY))
    }

    /// (year, month 1-12, day 1-31) in the proleptic Gregorian calendar (Howard Hinnant's
    /// `civil_from_days`).
    pub fn civil(self) -> (i64, u32, u32) {
        let z = self.0 + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        (year, month, day)
    }
}

/// `YYYY-MM-DD`, the text PostgreSQL reads as a `date`.
impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = self.civil();
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

/// RFC 3339 in UTC with microseconds: `2024-03-01T12:34:56.000789Z`.
impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let in_day = self.0.rem_euclid(DAY);
        let (h, m) = (in_day / HOUR, in_day % HOUR / MINUTE);
        let (s, us) = (in_day % MINUTE / SECOND, in_day % SECOND);
        write!(f, "{}T{h:02}:{m:02}:{s:02}.{us:06}Z", self.date())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_are_right() {
        assert_eq!(Date(0).to_string(), "1970-01-01");
        assert_eq!(ANCHOR.date().to_string(), "2025-01-01");
        assert_eq!(Date(19_782).to_string(), "2024-02-29");
        assert_eq!(Date(-1).to_string(), "1969-12-31");
        assert_eq!(Date(11_016).to_string(), "2000-02-29");
        assert_eq!(ANCHOR.plus(-DAY).date().to_string(), "2024-12-31");
    }

    #[test]
    fn timestamps_print_and_convert() {
        let t = ANCHOR.plus(12 * HOUR + 34 * MINUTE + 56 * SECOND + 789);
        assert_eq!(t.to_string(), "2025-01-01T12:34:56.000789Z");
        assert_eq!(
            t.to_system_time().duration_since(UNIX_EPOCH).unwrap(),
            Duration::from_micros(t.0 as u64)
        );
        assert_eq!(t.date().start(), ANCHOR);
        assert!(Timestamp::now() > ANCHOR);
    }
}
