//! When the weekly summary is due, in the school's time zone, and which
//! week it covers: the seven local days before the day it is sent.

use jiff::civil::Date;

use crate::console::tz::{add_days, parse_clock, parse_weekday, Zone};

/// Weekday of a date: 0 = Sunday.
pub fn weekday(date: Date) -> i64 {
    i64::from(date.weekday().to_sunday_zero_offset())
}

/// Seven local days from `start`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Week {
    pub start: Date,
    pub zone: Zone,
}

impl Week {
    pub fn start_ms(&self) -> i64 {
        self.zone.day_start_ms(self.start)
    }

    pub fn end_ms(&self) -> i64 {
        self.zone.day_start_ms(add_days(self.start, 7))
    }

    /// `YYYY-MM-DD` of the first day.
    pub fn label(&self) -> String {
        self.start.to_string()
    }

    pub fn previous(&self) -> Self {
        Self {
            start: add_days(self.start, -7),
            zone: self.zone.clone(),
        }
    }

    /// Each day: (date, start ms, end ms).
    pub fn days(&self) -> Vec<(String, i64, i64)> {
        (0..7)
            .map(|i| {
                let day = add_days(self.start, i);
                (
                    day.to_string(),
                    self.zone.day_start_ms(day),
                    self.zone.day_start_ms(add_days(day, 1)),
                )
            })
            .collect()
    }
}

/// The configured weekly slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// 0 = Sunday.
    pub weekday: i64,
    /// Minutes after local midnight.
    pub minute: i64,
    pub zone: Zone,
}

impl Schedule {
    /// Parses `[summary] day` (a weekday name, or its first three letters)
    /// and `time` (`HH:MM`).
    pub fn parse(day: &str, time: &str, zone: Zone) -> Result<Self, String> {
        let weekday = parse_weekday(day).ok_or_else(|| {
            format!("[summary] day {day:?} is not a weekday; use e.g. \"monday\"")
        })?;
        let bad = || format!("[summary] time {time:?} is not HH:MM; use e.g. \"08:00\"");
        let minute = parse_clock(time).filter(|m| *m < 24 * 60).ok_or_else(bad)?;
        Ok(Self {
            weekday,
            minute,
            zone,
        })
    }

    /// The latest slot at or before `now_ms`: its time and the week it covers
    /// (the seven days before the slot's day).
    pub fn latest(&self, now_ms: i64) -> (i64, Week) {
        let today = self.zone.date_at(now_ms);
        let mut day = add_days(today, -(weekday(today) - self.weekday).rem_euclid(7));
        let mut at = self.zone.local_ms(day, self.minute);
        if at > now_ms {
            day = add_days(day, -7);
            at = self.zone.local_ms(day, self.minute);
        }
        (
            at,
            Week {
                start: add_days(day, -7),
                zone: self.zone.clone(),
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::tz::{utc_ms, zone};
    use jiff::civil::date;

    #[test]
    fn latest_slot_is_monday_morning_in_london_time() {
        let london = zone("Europe/London");
        let s = Schedule::parse("monday", "08:00", london.clone()).unwrap();
        // Wednesday 2025-07-02 12:00 UTC: the last slot was Monday 30 June 08:00 BST.
        let now = utc_ms(2025, 7, 2, 12, 0);
        let (at, week) = s.latest(now);
        assert_eq!(london.format(at), "2025-06-30 08:00:00 BST");
        assert_eq!(week.label(), "2025-06-23");
        assert_eq!(london.format(week.start_ms()), "2025-06-23 00:00:00 BST");
        // Monday 07:59 BST is before the slot: the one a week earlier.
        let early = london.local_ms(date(2025, 6, 30), 7 * 60 + 59);
        assert_eq!(s.latest(early).1.label(), "2025-06-16");
        assert_eq!(s.latest(at).0, at);
        // In winter the slot is 08:00 GMT.
        let winter = utc_ms(2025, 12, 1, 9, 0);
        assert_eq!(london.format(s.latest(winter).0), "2025-12-01 08:00:00 GMT");
        // The week holding the October change has 7 days and 169 hours.
        let w = Week {
            start: date(2025, 10, 20),
            zone: london.clone(),
        };
        assert_eq!(w.end_ms() - w.start_ms(), 169 * 3_600_000);
        assert!(Schedule::parse("funday", "08:00", london.clone()).is_err());
        assert!(Schedule::parse("Tue", "25:00", london.clone()).is_err());
        assert!(Schedule::parse("Tue", "24:00", london).is_err());
    }

    #[test]
    fn new_york_slot_follows_its_clock_changes() {
        let ny = zone("America/New_York");
        let s = Schedule::parse("sunday", "02:30", ny.clone()).unwrap();
        // Sunday 9 March 2025 has no 02:30: the slot is 03:30 EDT that day.
        let (at, week) = s.latest(utc_ms(2025, 3, 10, 12, 0));
        assert_eq!(ny.format(at), "2025-03-09 03:30:00 EDT");
        assert_eq!(week.label(), "2025-03-02");
        // On Sunday 2 November 02:30 comes once, after the clocks went back.
        let (at, _) = s.latest(utc_ms(2025, 11, 3, 12, 0));
        assert_eq!(ny.format(at), "2025-11-02 02:30:00 EST");
        // Monday 08:00 stays 08:00 local across both changes.
        let monday = Schedule::parse("mon", "08:00", ny.clone()).unwrap();
        for (now, want) in [
            (utc_ms(2025, 3, 4, 0, 0), "2025-03-03 08:00:00 EST"),
            (utc_ms(2025, 3, 11, 0, 0), "2025-03-10 08:00:00 EDT"),
            (utc_ms(2025, 11, 4, 0, 0), "2025-11-03 08:00:00 EST"),
        ] {
            assert_eq!(ny.format(monday.latest(now).0), want);
        }
        // The spring week is an hour short, the autumn one an hour long.
        let spring = Week {
            start: date(2025, 3, 3),
            zone: ny.clone(),
        };
        assert_eq!(spring.end_ms() - spring.start_ms(), 167 * 3_600_000);
        let days = spring.days();
        assert_eq!(days[6].0, "2025-03-09");
        assert_eq!(days[6].2 - days[6].1, 23 * 3_600_000);
        let autumn = Week {
            start: date(2025, 10, 27),
            zone: ny,
        };
        assert_eq!(autumn.end_ms() - autumn.start_ms(), 169 * 3_600_000);
    }

    #[test]
    fn sydney_slot_is_in_sydney_time_ahead_of_utc() {
        let syd = zone("Australia/Sydney");
        let s = Schedule::parse("monday", "08:00", syd.clone()).unwrap();
        // Sunday 2025-07-06 23:00 UTC is already Monday 09:00 AEST: this week's slot has passed.
        let (at, week) = s.latest(utc_ms(2025, 7, 6, 23, 0));
        assert_eq!(syd.format(at), "2025-07-07 08:00:00 AEST");
        assert_eq!(week.label(), "2025-06-30");
        // Across the April change the slot stays 08:00 local.
        let (at, week) = s.latest(utc_ms(2025, 4, 7, 0, 0));
        assert_eq!(syd.format(at), "2025-04-07 08:00:00 AEST");
        assert_eq!(week.end_ms() - week.start_ms(), 169 * 3_600_000);
        let (at, week) = s.latest(utc_ms(2025, 10, 6, 0, 0));
        assert_eq!(syd.format(at), "2025-10-06 08:00:00 AEDT");
        assert_eq!(week.end_ms() - week.start_ms(), 167 * 3_600_000);
    }
}
