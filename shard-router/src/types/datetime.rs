//! PostgreSQL's ISO renderings of `date`, `timestamp` and `timestamptz` (`DateStyle=ISO`), parsed far
//! enough to check MySQL's ranges and to move a timestamp to UTC. No time-zone database is needed:
//! timestamptz values carry their offset.

/// A parsed date or timestamp.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Moment {
    /// `infinity` / `-infinity`.
    Infinity {
        negative: bool,
    },
    At(DateTime),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct DateTime {
    /// The year as printed (`bc` says which era).
    pub(super) year: i64,
    pub(super) bc: bool,
    month: u32,
    day: u32,
    time: Option<Time>,
    /// Seconds east of UTC (timestamptz only).
    offset_secs: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Time {
    hour: u32,
    minute: u32,
    second: u32,
    /// Fractional-second digits as printed (0 to 6 of them).
    frac: String,
}

/// `YYYY-MM-DD[ BC]` or `[-]infinity`.
pub(super) fn parse_date(s: &str) -> Option<Moment> {
    parse(s, false, false)
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff][±HH[:MM[:SS]]][ BC]` or `[-]infinity`; the offset is required when
/// `with_offset` and refused otherwise.
pub(super) fn parse_timestamp(s: &str, with_offset: bool) -> Option<Moment> {
    parse(s, true, with_offset)
}

fn parse(s: &str, with_time: bool, with_offset: bool) -> Option<Moment> {
    match s {
        "infinity" => return Some(Moment::Infinity { negative: false }),
        "-infinity" => return Some(Moment::Infinity { negative: true }),
        _ => {}
    }
    let (s, bc) = match s.strip_suffix(" BC") {
        Some(rest) => (rest, true),
        None => (s, false),
    };
    let mut c = Cursor(s);
    let year = c.number(1, 9)?;
    c.expect('-')?;
    let month = u32::try_from(c.number(2, 2)?).ok()?;
    c.expect('-')?;
    let day = u32::try_from(c.number(2, 2)?).ok()?;
    let astronomical = if bc { 1 - year } else { year };
    if year == 0
        || !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(astronomical, month)
    {
        return None;
    }
    let mut time = None;
    let mut offset_secs = 0;
    if with_time {
        c.expect(' ')?;
        let hour = c.small(2, 0..=23)?;
        c.expect(':')?;
        let minute = c.small(2, 0..=59)?;
        c.expect(':')?;
        let second = c.small(2, 0..=59)?;
        let mut frac = String::new();
        if c.expect('.').is_some() {
            frac = c.digits(1, 6)?.to_owned();
        }
        time = Some(Time {
            hour,
            minute,
            second,
            frac,
        });
        if with_offset {
            offset_secs = c.offset()?;
        }
    }
    if !c.0.is_empty() {
        return None;
    }
    Some(Moment::At(DateTime {
        year,
        bc,
        month,
        day,
        time,
        offset_secs,
    }))
}

impl DateTime {
    /// The same instant at offset zero (dates and offset-free timestamps are returned as they are).
    pub(super) fn to_utc(&self) -> DateTime {
        let Some(time) = self.time.as_ref().filter(|_| self.offset_secs != 0) else {
            return self.clone();
        };
        let astronomical = if self.bc { 1 - self.year } else { self.year };
        let secs =
            i64::from(time.hour) * 3600 + i64::from(time.minute) * 60 + i64::from(time.second)
                - self.offset_secs;
        let days = days_from_civil(astronomical, self.month, self.day) + secs.div_euclid(86_400);
        let secs = secs.rem_euclid(86_400);
        let (y, month, day) = civil_from_days(days);
        // Components of `secs` are below 86400, 60 and 60, so they fit u32.
        let part = |v: i64| u32::try_from(v).unwrap_or_default();
        DateTime {
            year: if y <= 0 { 1 - y } else { y },
            bc: y <= 0,
            month,
            day,
            time: Some(Time {
                hour: part(secs / 3600),
                minute: part(secs / 60 % 60),
                second: part(secs % 60),
                frac: time.frac.clone(),
            }),
            offset_secs: 0,
        }
    }

    /// `YYYY-MM-DD[ HH:MM:SS[.ffffff]]`, without offset or era.
    pub(super) fn format(&self) -> String {
        let mut out = format!("{:04}-{:02}-{:02}", self.year, self.month, self.day);
        if let Some(t) = &self.time {
            out.push_str(&format!(" {:02}:{:02}:{:02}", t.hour, t.minute, t.second));
            if !t.frac.is_empty() {
                out.push('.');
                out.push_str(&t.frac);
            }
        }
        out
    }
}

struct Cursor<'a>(&'a str);

impl<'a> Cursor<'a> {
    fn expect(&mut self, c: char) -> Option<()> {
        self.0 = self.0.strip_prefix(c)?;
        Some(())
    }

    fn digits(&mut self, min: usize, max: usize) -> Option<&'a str> {
        let n = self.0.bytes().take_while(u8::is_ascii_digit).count();
        if n < min || n > max {
            return None;
        }
        let (d, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(d)
    }

    fn number(&mut self, min: usize, max: usize) -> Option<i64> {
        self.digits(min, max)?.parse().ok()
    }

    fn small(&mut self, len: usize, range: std::ops::RangeInclusive<u32>) -> Option<u32> {
        let n = u32::try_from(self.number(len, len)?).ok()?;
        range.contains(&n).then_some(n)
    }

    /// `±HH[:MM[:SS]]` in seconds east of UTC.
    fn offset(&mut self) -> Option<i64> {
        let sign = if self.expect('+').is_some() {
            1
        } else {
            self.expect('-')?;
            -1
        };
        let mut secs = i64::from(self.small(2, 0..=15)?) * 3600;
        if self.expect(':').is_some() {
            secs += i64::from(self.small(2, 0..=59)?) * 60;
            if self.expect(':').is_some() {
                secs += i64::from(self.small(2, 0..=59)?);
            }
        }
        Some(sign * secs)
    }
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

/// Days of `month` in the proleptic Gregorian year `y` (astronomical numbering: 1 BC is year 0).
fn days_in_month(y: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let (m, d) = (i64::from(m), i64::from(d));
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    // d is in 1..=31 and m in 1..=12 by construction.
    (
        y,
        u32::try_from(m).unwrap_or(1),
        u32::try_from(d).unwrap_or(1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(s: &str, tz: bool) -> DateTime {
        match parse_timestamp(s, tz) {
            Some(Moment::At(t)) => t,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn parses_iso_renderings() {
        let t = at("2024-03-10 10:30:00.123456+00", true);
        assert_eq!(t.format(), "2024-03-10 10:30:00.123456");
        assert_eq!(
            at("2024-03-10 02:30:00.5", false).format(),
            "2024-03-10 02:30:00.5"
        );
        assert_eq!(at("12000-01-01 00:00:00+00", true).year, 12000);
        let bc = at("0044-03-15 10:00:00+00 BC", true);
        assert!(bc.bc && bc.year == 44);
        assert_eq!(
            parse_date("-infinity"),
            Some(Moment::Infinity { negative: true })
        );
        assert_eq!(
            parse_timestamp("infinity", true),
            Some(Moment::Infinity { negative: false })
        );
        assert!(matches!(parse_date("2024-02-29"), Some(Moment::At(_))));
        assert!(
            matches!(parse_date("0001-02-29 BC"), Some(Moment::At(_))),
            "1 BC is a leap year"
        );
    }

    #[test]
    fn rejects_what_postgres_never_prints() {
        for (s, tz) in [
            ("2023-02-29 00:00:00+00", true),
            ("2024-13-01 00:00:00+00", true),
            ("2024-01-01 24:00:00+00", true),
            ("2024-01-01 00:00:00", true),
            ("2024-01-01 00:00:00+00", false),
            ("2024-01-01 00:00:00.1234567+00", true),
            ("2024-01-01 00:00:00.+00", true),
            ("2024-01-01T00:00:00+00", true),
            ("0000-01-01 00:00:00+00", true),
            ("2024-01-01 00:00:00+00 AD", true),
            ("2024-1-01 00:00:00+00", true),
            ("", true),
        ] {
            assert_eq!(parse_timestamp(s, tz), None, "{s}");
        }
        assert_eq!(parse_date("2024-01-01 00:00:00"), None);
    }

    #[test]
    fn converts_offsets_to_utc() {
        assert_eq!(
            at("2024-03-10 01:30:00+05:30", true).to_utc().format(),
            "2024-03-09 20:00:00"
        );
        assert_eq!(
            at("2024-12-31 23:59:59.5-01", true).to_utc().format(),
            "2025-01-01 00:59:59.5"
        );
        assert_eq!(
            at("2024-02-28 23:00:00-02:00:30", true).to_utc().format(),
            "2024-02-29 01:00:30"
        );
        let t = at("0001-01-01 00:30:00+01", true).to_utc();
        assert!(t.bc && t.year == 1, "{t:?}");
        assert_eq!(t.format(), "0001-12-31 23:30:00");
    }

    proptest! {
        #[test]
        fn civil_days_round_trip(days in -200_000_000i64..200_000_000) {
            let (y, m, d) = civil_from_days(days);
            prop_assert!((1..=12).contains(&m) && d >= 1 && d <= days_in_month(y, m));
            prop_assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
