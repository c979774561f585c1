//! School time for display and for the school calendar: any IANA time zone
//! from the system's time-zone database (the `tzdata` package), `UTC`, or a
//! fixed offset such as `+05:30`. The rules and the calendar arithmetic are
//! jiff's; this module only fixes how the console names and prints them.

use jiff::civil::{Date, Time};
use jiff::tz::{Offset, TimeZone};
use jiff::{Timestamp, ToSpan};

/// A configured time zone that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error(
    "{name:?} is not a time zone ({reason}); use an IANA name such as \"Europe/London\" or \
     \"America/New_York\", \"UTC\", or a fixed offset such as \"+05:30\" (IANA names come from \
     the system's time-zone database: on Debian, install the tzdata package)"
)]
pub struct ZoneError {
    pub name: String,
    reason: String,
}

/// A configured time zone.
#[derive(Debug, Clone)]
pub struct Zone {
    /// As configured (trimmed), or `UTC`.
    name: String,
    tz: TimeZone,
}

impl PartialEq for Zone {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for Zone {}

impl Zone {
    /// Coordinated Universal Time.
    pub fn utc() -> Self {
        Self {
            name: "UTC".to_owned(),
            tz: TimeZone::UTC,
        }
    }

    /// Parses an IANA name (`Europe/London`, `America/New_York`), `UTC`, or
    /// a fixed offset `+HH:MM` / `-HH:MM`.
    pub fn parse(name: &str) -> Result<Self, ZoneError> {
        let name = name.trim();
        let fail = |reason: &str| ZoneError {
            name: name.to_owned(),
            reason: reason.to_owned(),
        };
        match name {
            "UTC" | "Etc/UTC" | "GMT" | "Z" => return Ok(Self::utc()),
            "" => return Err(fail("it is empty")),
            _ => {}
        }
        let tz = if let Some(rest) = name.strip_prefix(['+', '-']) {
            let sign = if name.starts_with('-') { -1 } else { 1 };
            let (h, m) = rest.split_once(':').unwrap_or((rest, "0"));
            let (h, m): (i32, i32) = match (h.parse(), m.parse()) {
                (Ok(h), Ok(m)) if (0..=14).contains(&h) && (0..60).contains(&m) => (h, m),
                _ => return Err(fail("an offset is +HH:MM or -HH:MM, at most 14 hours")),
            };
            let offset = Offset::from_seconds(sign * (h * 3600 + m * 60))
                .map_err(|e| fail(&e.to_string()))?;
            TimeZone::fixed(offset)
        } else {
            // Names are looked up as files under the database's directory.
            if name.starts_with('/') || name.split('/').any(|part| part == "..") {
                return Err(fail("not a zone name"));
            }
            TimeZone::get(name).map_err(|e| fail(&e.to_string()))?
        };
        Ok(Self {
            name: name.to_owned(),
            tz,
        })
    }

    /// The name as configured.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How a summary names the zone: `UK time`, `UTC`, or the configured name.
    pub fn describe(&self) -> String {
        match self.name.as_str() {
            "Europe/London" => "UK time".to_owned(),
            "UTC" => "UTC".to_owned(),
            n if n.starts_with(['+', '-']) => format!("UTC{n}"),
            n => n.to_owned(),
        }
    }

    /// Offset from UTC in minutes at the instant `ms`.
    pub fn offset_minutes(&self, ms: i64) -> i32 {
        self.tz.to_offset(timestamp(ms)).seconds() / 60
    }

    /// `2025-03-14 09:05:02 GMT` style text in this zone. Numeric zone
    /// abbreviations (and fixed offsets) print as `UTC+05:30`.
    pub fn format(&self, ms: i64) -> String {
        let ts = timestamp(ms);
        let info = self.tz.to_offset_info(ts);
        let abbreviation = info.abbreviation();
        let off = info.offset().seconds() / 60;
        let label = if abbreviation.starts_with(|c: char| c.is_ascii_alphabetic()) {
            abbreviation.to_owned()
        } else if off == 0 {
            "UTC".to_owned()
        } else {
            format!(
                "UTC{}{:02}:{:02}",
                if off < 0 { '-' } else { '+' },
                off.abs() / 60,
                off.abs() % 60
            )
        };
        let local = ts.to_zoned_datetime(self.tz.clone());
        format!("{} {label}", local.strftime("%Y-%m-%d %H:%M:%S"))
    }

    /// The local date at the instant `ms`.
    pub fn date_at(&self, ms: i64) -> Date {
        timestamp(ms).to_zoned_datetime(self.tz.clone()).date()
    }

    /// UTC milliseconds of local `minute` (after midnight) on `date`. A time
    /// skipped by a clock change counts from after the change; a repeated
    /// one is its first occurrence.
    pub fn local_ms(&self, date: Date, minute: i64) -> i64 {
        const DAY_MINUTES: i64 = 24 * 60;
        if !(0..DAY_MINUTES).contains(&minute) {
            // `24:00` is the next day's midnight, and so on.
            let days = minute.div_euclid(DAY_MINUTES);
            return self.local_ms(add_days(date, days), minute.rem_euclid(DAY_MINUTES));
        }
        let time = Time::constant((minute / 60) as i8, (minute % 60) as i8, 0, 0);
        date.to_datetime(time)
            .to_zoned_datetime(self.tz.clone())
            .map(|z| z.timestamp().as_millisecond())
            .unwrap_or_else(|_| out_of_range(date))
    }

    /// UTC milliseconds of the first instant of local `date` (midnight, or
    /// the end of a clock change that skips it).
    pub fn day_start_ms(&self, date: Date) -> i64 {
        date.to_zoned_datetime(self.tz.clone())
            .and_then(|z| z.start_of_day())
            .map(|z| z.timestamp().as_millisecond())
            .unwrap_or_else(|_| out_of_range(date))
    }

    /// UTC milliseconds of a local `YYYY-MM-DDTHH:MM[:SS]` (as a browser's
    /// datetime-local field sends it), resolved like [`Zone::local_ms`].
    pub fn wall_clock_ms(&self, text: &str) -> Option<i64> {
        let text = text.trim();
        if text.len() < 16 || !text.as_bytes()[10].eq_ignore_ascii_case(&b'T') {
            return None;
        }
        let local: jiff::civil::DateTime = text.parse().ok()?;
        let zoned = local.to_zoned_datetime(self.tz.clone()).ok()?;
        Some(zoned.timestamp().as_millisecond())
    }

    /// UTC milliseconds of local midnight starting `date` (`YYYY-MM-DD`).
    pub fn midnight_ms(&self, date: &str) -> Option<i64> {
        parse_date(date).map(|d| self.day_start_ms(d))
    }

    /// UTC milliseconds where local `date` (`YYYY-MM-DD`) ends: the next
    /// day's first instant (after 23 or 25 hours on the days the clocks change).
    pub fn day_end_ms(&self, date: &str) -> Option<i64> {
        parse_date(date).map(|d| self.day_start_ms(add_days(d, 1)))
    }
}

/// A `YYYY-MM-DD` date that exists in the calendar.
pub fn parse_date(text: &str) -> Option<Date> {
    let text = text.trim();
    // jiff also reads other ISO 8601 forms; the console asks for this one.
    let b = text.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    text.parse().ok()
}

/// Beyond what jiff represents: far in the past or future.
fn out_of_range(date: Date) -> i64 {
    if date < Date::constant(1970, 1, 1) {
        i64::MIN / 2
    } else {
        i64::MAX / 2
    }
}

/// A weekday from its name or its three-letter abbreviation, in any case
/// (`Monday`, `mon`): 0 = Sunday.
pub fn parse_weekday(name: &str) -> Option<i64> {
    let name = name.trim();
    let parsed = jiff::fmt::strtime::parse("%A", name)
        .or_else(|_| jiff::fmt::strtime::parse("%a", name))
        .ok()?;
    parsed
        .weekday()
        .map(|day| i64::from(day.to_sunday_zero_offset()))
}

/// Minutes after midnight of a wall-clock `HH:MM` (`8:05` too); `24:00` is
/// the end of the day.
pub fn parse_clock(text: &str) -> Option<i64> {
    let text = text.trim();
    if text == "24:00" {
        return Some(24 * 60);
    }
    let time = Time::strptime("%H:%M", text).ok()?;
    Some(i64::from(time.hour()) * 60 + i64::from(time.minute()))
}

/// `date` moved by `days` (clamped to jiff's supported range).
pub fn add_days(date: Date, days: i64) -> Date {
    date.saturating_add(days.days())
}

/// The instant `ms`, clamped to jiff's supported range.
pub fn timestamp(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(if ms < 0 {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

/// UTC milliseconds of a UTC wall time, for tests.
#[cfg(test)]
pub(crate) fn utc_ms(y: i16, m: i8, d: i8, h: i8, min: i8) -> i64 {
    jiff::civil::date(y, m, d)
        .at(h, min, 0, 0)
        .to_zoned_datetime(TimeZone::UTC)
        .unwrap()
        .timestamp()
        .as_millisecond()
}

/// A zone by name, for tests.
#[cfg(test)]
pub(crate) fn zone(name: &str) -> Zone {
    Zone::parse(name).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    #[test]
    fn london_switches_on_the_last_sundays_at_one_utc() {
        let z = Zone::parse("Europe/London").unwrap();
        // 2025: BST from 30 March 01:00 UTC to 26 October 01:00 UTC.
        let start = utc_ms(2025, 3, 30, 1, 0);
        assert_eq!(z.offset_minutes(start - 1), 0);
        assert_eq!(z.offset_minutes(start), 60);
        let end = utc_ms(2025, 10, 26, 1, 0);
        assert_eq!(z.offset_minutes(end - 1), 60);
        assert_eq!(z.offset_minutes(end), 0);
        assert_eq!(z.format(start), "2025-03-30 02:00:00 BST");
        assert_eq!(z.format(end), "2025-10-26 01:00:00 GMT");
        assert_eq!(
            Zone::parse("+05:30").unwrap().format(0),
            "1970-01-01 05:30:00 UTC+05:30"
        );
        assert_eq!(Zone::utc().format(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(z.describe(), "UK time");
    }

    #[test]
    fn unknown_and_hostile_names_are_refused_with_what_to_do() {
        for bad in [
            "Mars/Olympus",
            "",
            "../../etc/passwd",
            "/etc/localtime",
            "+15:00",
            "+05:61",
        ] {
            let err = Zone::parse(bad).unwrap_err().to_string();
            assert!(err.contains("America/New_York"), "{bad}: {err}");
            assert!(err.contains("tzdata"), "{bad}: {err}");
        }
    }

    #[test]
    fn new_york_changes_on_its_own_sundays() {
        let z = Zone::parse("America/New_York").unwrap();
        // 2025: EDT from 9 March 02:00 EST (07:00 UTC) to 2 November 02:00 EDT (06:00 UTC).
        let spring = utc_ms(2025, 3, 9, 7, 0);
        assert_eq!(z.format(spring - 1000), "2025-03-09 01:59:59 EST");
        assert_eq!(z.format(spring), "2025-03-09 03:00:00 EDT");
        let autumn = utc_ms(2025, 11, 2, 6, 0);
        assert_eq!(z.format(autumn - 1000), "2025-11-02 01:59:59 EDT");
        assert_eq!(z.format(autumn), "2025-11-02 01:00:00 EST");
        // Midnight is local on either side, and the spring day has 23 hours.
        let d = |day| date(2025, 3, day);
        assert_eq!(z.format(z.day_start_ms(d(9))), "2025-03-09 00:00:00 EST");
        assert_eq!(z.day_start_ms(d(10)) - z.day_start_ms(d(9)), 23 * 3_600_000);
        let day = z.day_end_ms("2025-03-09").unwrap() - z.midnight_ms("2025-03-09").unwrap();
        assert_eq!(day, 23 * 3_600_000);
        // 02:30 on 9 March does not exist: it counts from after the change.
        assert_eq!(
            z.format(z.local_ms(d(9), 2 * 60 + 30)),
            "2025-03-09 03:30:00 EDT"
        );
        // 01:30 on 2 November happens twice: the first one (EDT).
        assert_eq!(
            z.format(z.local_ms(date(2025, 11, 2), 90)),
            "2025-11-02 01:30:00 EDT"
        );
        assert_eq!(z.date_at(utc_ms(2025, 7, 1, 3, 0)), date(2025, 6, 30));
        assert_eq!(z.describe(), "America/New_York");
        // A datetime-local field's value on the day of a change.
        assert_eq!(
            z.wall_clock_ms("2025-03-09T15:30").map(|ms| z.format(ms)),
            Some("2025-03-09 15:30:00 EDT".to_owned())
        );
        assert_eq!(z.wall_clock_ms("2025-03-09"), None);
        assert_eq!(z.wall_clock_ms("2025-03-09T25:00"), None);
    }

    #[test]
    fn sydney_summer_is_the_southern_one() {
        let z = Zone::parse("Australia/Sydney").unwrap();
        // AEDT ends 6 April 2025 03:00 AEDT (16:00 UTC the day before) and
        // starts 5 October 2025 02:00 AEST (16:00 UTC the day before).
        let end = utc_ms(2025, 4, 5, 16, 0);
        assert_eq!(z.format(end - 1000), "2025-04-06 02:59:59 AEDT");
        assert_eq!(z.format(end), "2025-04-06 02:00:00 AEST");
        let start = utc_ms(2025, 10, 4, 16, 0);
        assert_eq!(z.format(start), "2025-10-05 03:00:00 AEDT");
        assert_eq!(z.offset_minutes(utc_ms(2025, 1, 15, 0, 0)), 11 * 60);
        assert_eq!(z.offset_minutes(utc_ms(2025, 7, 15, 0, 0)), 10 * 60);
        // The local date runs ahead of UTC's.
        assert_eq!(z.date_at(utc_ms(2025, 7, 1, 14, 0)), date(2025, 7, 2));
        assert_eq!(
            z.day_start_ms(date(2025, 4, 7)) - z.day_start_ms(date(2025, 4, 6)),
            25 * 3_600_000
        );
    }

    #[test]
    fn midnight_is_local_and_dates_must_exist() {
        let z = Zone::parse("Europe/London").unwrap();
        let ms = z.midnight_ms("2025-07-01").unwrap();
        assert_eq!(z.format(ms), "2025-07-01 00:00:00 BST");
        assert_eq!(parse_date("2024-02-29"), Some(date(2024, 2, 29)));
        assert_eq!(parse_date("2025-02-30"), None);
        assert_eq!(parse_date("20250701"), None);
        assert_eq!(add_days(date(2024, 2, 28), 2), date(2024, 3, 1));
        for (name, day) in [("Monday", 1), ("mon", 1), (" SUNDAY ", 0), ("Sat", 6)] {
            assert_eq!(parse_weekday(name), Some(day), "{name}");
        }
        for bad in ["", "x", "Mond", "Thurs", "monday!"] {
            assert_eq!(parse_weekday(bad), None, "{bad}");
        }
        assert_eq!(parse_clock(" 08:30 "), Some(510));
        assert_eq!(parse_clock("8:05"), Some(485));
        assert_eq!(parse_clock("24:00"), Some(1440));
        for bad in ["25:00", "12:60", "8am", "08", "08:00:00", "-1:00", ""] {
            assert_eq!(parse_clock(bad), None, "{bad}");
        }
        // Far-out instants and dates clamp rather than panic.
        let _ = z.format(i64::MAX);
        let _ = z.midnight_ms("9999-12-31");
        assert_eq!(add_days(Date::MAX, 7), Date::MAX);
    }
}
