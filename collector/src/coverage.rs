//! Fleet coverage: which stations have gone silent during school hours.
//!
//! A station is silent when the time since its last heartbeat or event (or
//! since enrolment, if it was never seen), counted only within school hours
//! on school days in the school's time zone, exceeds `silent_after_mins`.
//! Evenings, weekends and other non-school time never make a station silent.

use rusqlite::Connection;

use crate::store::coverage::Sighting;

use crate::config::Fleet;
use crate::console::tz::{add_days, parse_clock, parse_weekday, Zone};

const DAY_MS: i64 = 86_400_000;
/// Looking back further than this is pointless: any longer silence has
/// already crossed every sensible threshold.
const LOOKBACK_DAYS: i64 = 62;

/// A station that has been silent for too long within school hours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SilentStation {
    pub agent_id: String,
    pub station: String,
    pub grp: String,
    pub last_seen_ms: Option<i64>,
}

/// The school calendar parsed from `[fleet]`.
#[derive(Debug, Clone)]
pub struct SchoolTime {
    /// Bit `d` set: weekday `d` (0 = Sunday) is a school day.
    days: u8,
    start_min: i64,
    end_min: i64,
    zone: Zone,
}

impl SchoolTime {
    /// Parses the `[fleet]` calendar. Unknown day names are ignored and an
    /// unreadable `school_hours` falls back to 08:30-15:30 (logged).
    pub fn new(fleet: &Fleet, zone: Zone) -> Self {
        let mut days = 0u8;
        for d in &fleet.school_days {
            match parse_weekday(d) {
                Some(i) => days |= 1 << i,
                None => {
                    tracing::warn!(day = %d, "unknown day in [fleet] school_days; use Mon..Sun or Monday..Sunday")
                }
            }
        }
        let (start_min, end_min) = parse_hours(&fleet.school_hours).unwrap_or_else(|| {
            tracing::warn!(hours = %fleet.school_hours, "unreadable [fleet] school_hours; use HH:MM-HH:MM; using 08:30-15:30");
            (8 * 60 + 30, 15 * 60 + 30)
        });
        Self {
            days,
            start_min,
            end_min,
            zone,
        }
    }

    /// Milliseconds of school time in `[from, to)`.
    pub fn school_ms_between(&self, from: i64, to: i64) -> i64 {
        if to <= from {
            return 0;
        }
        let from = from.max(to - LOOKBACK_DAYS * DAY_MS);
        let mut total = 0;
        let last = self.zone.date_at(to);
        let mut day = self.zone.date_at(from);
        while day <= last {
            let weekday = day.weekday().to_sunday_zero_offset();
            if self.days & (1 << weekday) != 0 {
                // Local wall times: on a day the clocks change, the school
                // day still starts and ends by the clock on the wall.
                let start = self.zone.local_ms(day, self.start_min);
                let end = self.zone.local_ms(day, self.end_min);
                let lo = start.max(from);
                let hi = end.min(to);
                if hi > lo {
                    total += hi - lo;
                }
            }
            let next = add_days(day, 1);
            if next == day {
                break;
            }
            day = next;
        }
        total
    }

    /// True if `ms` falls within school hours on a school day.
    pub fn is_school_time(&self, ms: i64) -> bool {
        self.school_ms_between(ms, ms + 1) == 1
    }
}

/// `HH:MM-HH:MM` to minutes after local midnight; `24:00` allowed as an end.
fn parse_hours(text: &str) -> Option<(i64, i64)> {
    let (a, b) = text.trim().split_once(['-', '–'])?;
    let (s, e) = (parse_clock(a)?, parse_clock(b)?);
    (s < e).then_some((s, e))
}

/// Enrolled, unrevoked stations silent for longer than `fleet.silent_after_mins`
/// of school time at `now_ms`, longest silent first.
pub fn silent_stations(
    conn: &Connection,
    now_ms: i64,
    fleet: &Fleet,
    zone: &Zone,
) -> rusqlite::Result<Vec<SilentStation>> {
    Ok(silent_among(
        crate::store::sqlite::fleet::sightings(conn)?,
        now_ms,
        fleet,
        zone,
    ))
}

/// Of `sightings` (least recently heard from first), those silent for
/// longer than `fleet.silent_after_mins` of school time at `now_ms`.
pub fn silent_among(
    sightings: Vec<Sighting>,
    now_ms: i64,
    fleet: &Fleet,
    zone: &Zone,
) -> Vec<SilentStation> {
    let school = SchoolTime::new(fleet, zone.clone());
    let limit_ms = i64::try_from(fleet.silent_after_mins)
        .unwrap_or(i64::MAX / 60_000)
        .saturating_mul(60_000);
    sightings
        .into_iter()
        .filter(|s| {
            school.school_ms_between(s.last_seen_ms.unwrap_or(s.enrolled_ms), now_ms) > limit_ms
        })
        .map(|s| SilentStation {
            agent_id: s.agent_id,
            station: s.station,
            grp: s.grp,
            last_seen_ms: s.last_seen_ms,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::tz::{utc_ms as at, zone};

    fn conn_with(rows: &[(&str, Option<i64>, i64)]) -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE agents (agent_id TEXT, station TEXT, grp TEXT, last_seen_ms INTEGER,
             enrolled_ms INTEGER, revoked INTEGER NOT NULL DEFAULT 0)",
        )
        .unwrap();
        for (id, seen, enrolled) in rows {
            conn.execute(
                "INSERT INTO agents (agent_id, station, grp, last_seen_ms, enrolled_ms)
                 VALUES (?1, ?1, 'y10', ?2, ?3)",
                rusqlite::params![id, seen, enrolled],
            )
            .unwrap();
        }
        conn
    }

    #[test]
    fn only_school_hours_count() {
        let school = SchoolTime::new(&Fleet::default(), zone("UTC"));
        // Friday 2025-03-14 15:00 UTC to Monday 09:00: 30 min Friday + 30 min Monday.
        let fri = at(2025, 3, 14, 15, 0);
        let mon = at(2025, 3, 17, 9, 0);
        assert_eq!(school.school_ms_between(fri, mon), 60 * 60_000);
        assert!(school.is_school_time(at(2025, 3, 17, 8, 30)));
        assert!(!school.is_school_time(at(2025, 3, 17, 15, 30)));
        assert!(!school.is_school_time(at(2025, 3, 15, 10, 0)));
    }

    #[test]
    fn london_summer_time_shifts_the_day() {
        let school = SchoolTime::new(&Fleet::default(), zone("Europe/London"));
        // 2025-07-01 08:30 BST is 07:30 UTC.
        assert!(school.is_school_time(at(2025, 7, 1, 7, 30)));
        assert!(!school.is_school_time(at(2025, 7, 1, 7, 29)));
        assert!(!school.is_school_time(at(2025, 7, 1, 14, 30)));
    }

    #[test]
    fn new_york_and_sydney_school_days_keep_their_wall_clock_across_changes() {
        let ny = SchoolTime::new(&Fleet::default(), zone("America/New_York"));
        // Friday 7 March 2025 15:00 EST (20:00 UTC) to Monday 10 March 09:00
        // EDT (13:00 UTC): the weekend is an hour short, the school time is
        // still 30 min Friday + 30 min Monday.
        assert_eq!(
            ny.school_ms_between(at(2025, 3, 7, 20, 0), at(2025, 3, 10, 13, 0)),
            60 * 60_000
        );
        assert!(ny.is_school_time(at(2025, 3, 7, 13, 30))); // 08:30 EST
        assert!(!ny.is_school_time(at(2025, 3, 10, 12, 29))); // 08:29 EDT
        assert!(ny.is_school_time(at(2025, 3, 10, 12, 30))); // 08:30 EDT
        assert!(!ny.is_school_time(at(2025, 11, 3, 12, 30))); // 07:30 EST
        assert!(ny.is_school_time(at(2025, 11, 3, 13, 30))); // 08:30 EST

        let syd = SchoolTime::new(&Fleet::default(), zone("Australia/Sydney"));
        // Monday 7 April 2025 08:30 AEST is Sunday 22:30 UTC; a week
        // earlier, 08:30 AEDT was 21:30 UTC.
        assert!(syd.is_school_time(at(2025, 4, 6, 22, 30)));
        assert!(!syd.is_school_time(at(2025, 4, 6, 22, 29)));
        assert!(syd.is_school_time(at(2025, 3, 30, 21, 30)));
        // Friday 15:00 AEDT to Monday 09:00 AEST across the April change.
        assert_eq!(
            syd.school_ms_between(at(2025, 4, 4, 4, 0), at(2025, 4, 6, 23, 0)),
            60 * 60_000
        );
        // Saturday in Sydney is still Friday in UTC: not school time.
        assert!(!syd.is_school_time(at(2025, 4, 4, 23, 0)));
    }

    #[test]
    fn silent_after_an_hour_of_school_time_not_overnight() {
        let fleet = Fleet::default();
        let now = at(2025, 3, 17, 9, 0); // Monday 09:00 UTC
        let conn = conn_with(&[
            ("overnight", Some(at(2025, 3, 14, 15, 20)), 0), // 10 + 30 min
            ("silent", Some(at(2025, 3, 14, 14, 0)), 0),     // 90 + 30 min
            ("never", None, at(2025, 3, 10, 9, 0)),
        ]);
        let silent = silent_stations(&conn, now, &fleet, &zone("UTC")).unwrap();
        let ids: Vec<_> = silent.iter().map(|s| s.agent_id.as_str()).collect();
        assert_eq!(ids, ["never", "silent"]);
        assert_eq!(silent[0].last_seen_ms, None);
    }

    #[test]
    fn hours_and_days_parse() {
        assert_eq!(parse_hours("08:30-15:30"), Some((510, 930)));
        assert_eq!(parse_hours("00:00-24:00"), Some((0, 1440)));
        assert_eq!(parse_hours("15:00-08:00"), None);
        assert_eq!(parse_weekday("Saturday"), Some(6));
        assert_eq!(parse_weekday("x"), None);
    }
}
