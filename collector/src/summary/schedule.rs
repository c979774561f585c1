//! When the weekly summary is due, in the school's time zone, and which
//! week it covers: the seven local days before the day it is sent.

use crate::console::tz::{civil_from_days, days_from_civil, Zone};

const DAY_MS: i64 = 86_400_000;

/// A local date as days since 1970-01-01.
pub fn date_string(day: i64) -> String {
    let (y, m, d) = civil_from_days(day);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Parses `YYYY-MM-DD` into days since 1970-01-01.
pub fn parse_date(text: &str) -> Option<i64> {
    let mut parts = text.trim().splitn(3, '-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: u32 = parts.next()?.parse().ok()?;
    let d: u32 = parts.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let day = days_from_civil(y, m, d);
    (civil_from_days(day) == (y, m, d)).then_some(day)
}

/// UTC milliseconds of local `minute` (after midnight) on local `day`.
pub fn local_ms(zone: Zone, day: i64, minute: i64) -> i64 {
    let local = day * DAY_MS + minute * 60_000;
    let guess = local - i64::from(zone.offset_minutes(local)) * 60_000;
    local - i64::from(zone.offset_minutes(guess)) * 60_000
}

/// The local date (days since 1970-01-01) at the instant `ms`.
pub fn local_day(zone: Zone, ms: i64) -> i64 {
    (ms + i64::from(zone.offset_minutes(ms)) * 60_000).div_euclid(DAY_MS)
}

/// Weekday of a day number: 0 = Sunday.
pub fn weekday(day: i64) -> i64 {
    (day + 4).rem_euclid(7)
}

/// Seven local days from `start_day`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Week {
    pub start_day: i64,
    pub zone: Zone,
}

impl Week {
    pub fn start_ms(&self) -> i64 {
        local_ms(self.zone, self.start_day, 0)
    }

    pub fn end_ms(&self) -> i64 {
        local_ms(self.zone, self.start_day + 7, 0)
    }

    /// `YYYY-MM-DD` of the first day.
    pub fn label(&self) -> String {
        date_string(self.start_day)
    }

    pub fn previous(&self) -> Self {
        Self {
            start_day: self.start_day - 7,
            zone: self.zone,
        }
    }

    /// Each day: (date, start ms, end ms).
    pub fn days(&self) -> Vec<(String, i64, i64)> {
        (0..7)
            .map(|i| {
                let day = self.start_day + i;
                (
                    date_string(day),
                    local_ms(self.zone, day, 0),
                    local_ms(self.zone, day + 1, 0),
                )
            })
            .collect()
    }
}

/// The configured weekly slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// 0 = Sunday.
    pub weekday: i64,
    /// Minutes after local midnight.
    pub minute: i64,
    pub zone: Zone,
}

const DAYS: [&str; 7] = [
    "sunday",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
];

impl Schedule {
    /// Parses `[summary] day` (a weekday name, or its first three letters)
    /// and `time` (`HH:MM`).
    pub fn parse(day: &str, time: &str, zone: Zone) -> Result<Self, String> {
        let d = day.trim().to_lowercase();
        let weekday = DAYS
            .iter()
            .position(|name| *name == d || (d.len() == 3 && name.starts_with(&d)))
            .ok_or_else(|| {
                format!("[summary] day {day:?} is not a weekday; use e.g. \"monday\"")
            })?;
        let bad = || format!("[summary] time {time:?} is not HH:MM; use e.g. \"08:00\"");
        let (h, m) = time.trim().split_once(':').ok_or_else(bad)?;
        let (h, m): (i64, i64) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        if !(0..24).contains(&h) || !(0..60).contains(&m) {
            return Err(bad());
        }
        Ok(Self {
            weekday: weekday as i64,
            minute: h * 60 + m,
            zone,
        })
    }

    /// The latest slot at or before `now_ms`: its time and the week it covers
    /// (the seven days before the slot's day).
    pub fn latest(&self, now_ms: i64) -> (i64, Week) {
        let today = local_day(self.zone, now_ms);
        let mut day = today - (weekday(today) - self.weekday).rem_euclid(7);
        let mut at = local_ms(self.zone, day, self.minute);
        if at > now_ms {
            day -= 7;
            at = local_ms(self.zone, day, self.minute);
        }
        (
            at,
            Week {
                start_day: day - 7,
                zone: self.zone,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_slot_is_monday_morning_in_london_time() {
        let s = Schedule::parse("monday", "08:00", Zone::London).unwrap();
        // Wednesday 2025-07-02 12:00 UTC: the last slot was Monday 30 June 08:00 BST.
        let now = days_from_civil(2025, 7, 2) * DAY_MS + 12 * 3_600_000;
        let (at, week) = s.latest(now);
        assert_eq!(Zone::London.format(at), "2025-06-30 08:00:00 BST");
        assert_eq!(week.label(), "2025-06-23");
        assert_eq!(
            Zone::London.format(week.start_ms()),
            "2025-06-23 00:00:00 BST"
        );
        // Monday 07:59 BST is before the slot: the one a week earlier.
        let early = local_ms(Zone::London, days_from_civil(2025, 6, 30), 7 * 60 + 59);
        assert_eq!(s.latest(early).1.label(), "2025-06-16");
        assert_eq!(s.latest(at).0, at);
        // In winter the slot is 08:00 GMT.
        let winter = days_from_civil(2025, 12, 1) * DAY_MS + 9 * 3_600_000;
        assert_eq!(
            Zone::London.format(s.latest(winter).0),
            "2025-12-01 08:00:00 GMT"
        );
        // The week holding the October change has 7 days and 169 hours.
        let w = Week {
            start_day: days_from_civil(2025, 10, 20),
            zone: Zone::London,
        };
        assert_eq!(w.end_ms() - w.start_ms(), 169 * 3_600_000);
        assert!(Schedule::parse("funday", "08:00", Zone::London).is_err());
        assert!(Schedule::parse("Tue", "25:00", Zone::London).is_err());
        assert_eq!(parse_date("2025-02-30"), None);
    }
}
