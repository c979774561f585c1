//! School time for display. Europe/London (GMT, BST from 01:00 UTC on the
//! last Sunday of March to 01:00 UTC on the last Sunday of October) and fixed
//! offsets are computed here, which spares the console a time-zone database.

/// A configured time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    /// UK civil time (also right for Europe/Dublin, Europe/Lisbon and the islands).
    London,
    /// A fixed offset from UTC, in minutes.
    Fixed(i32),
}

impl Zone {
    /// Parses `Europe/London`, `UTC` or `+HH:MM` / `-HH:MM`; `None` if unknown.
    pub fn parse(name: &str) -> Option<Self> {
        let name = name.trim();
        match name {
            "Europe/London" | "Europe/Dublin" | "Europe/Lisbon" | "Europe/Guernsey"
            | "Europe/Jersey" | "Europe/Isle_of_Man" => Some(Self::London),
            "UTC" | "Etc/UTC" | "GMT" | "Z" => Some(Self::Fixed(0)),
            _ => {
                let (sign, rest) = match name.as_bytes().first()? {
                    b'+' => (1, &name[1..]),
                    b'-' => (-1, &name[1..]),
                    _ => return None,
                };
                let (h, m) = rest.split_once(':').unwrap_or((rest, "0"));
                let h: i32 = h.parse().ok()?;
                let m: i32 = m.parse().ok()?;
                (h <= 14 && m < 60).then_some(Self::Fixed(sign * (h * 60 + m)))
            }
        }
    }

    /// Offset from UTC in minutes at the instant `ms`.
    pub fn offset_minutes(self, ms: i64) -> i32 {
        match self {
            Self::Fixed(m) => m,
            Self::London => {
                let (y, _, _) = civil_from_days(ms.div_euclid(86_400_000));
                let start = last_sunday_ms(y, 3) + 3_600_000;
                let end = last_sunday_ms(y, 10) + 3_600_000;
                if (start..end).contains(&ms) {
                    60
                } else {
                    0
                }
            }
        }
    }

    /// `2025-03-14 09:05:02 GMT` style text in this zone.
    pub fn format(self, ms: i64) -> String {
        let off = self.offset_minutes(ms);
        let local = ms + i64::from(off) * 60_000;
        let days = local.div_euclid(86_400_000);
        let secs = local.rem_euclid(86_400_000) / 1000;
        let (y, m, d) = civil_from_days(days);
        let label = match (self, off) {
            (Self::London, 0) => "GMT".to_owned(),
            (Self::London, _) => "BST".to_owned(),
            (_, 0) => "UTC".to_owned(),
            (_, o) => format!(
                "UTC{}{:02}:{:02}",
                if o < 0 { '-' } else { '+' },
                o.abs() / 60,
                o.abs() % 60
            ),
        };
        format!(
            "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} {label}",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        )
    }

    /// UTC milliseconds of local midnight starting `date` (`YYYY-MM-DD`).
    pub fn midnight_ms(self, date: &str) -> Option<i64> {
        let mut parts = date.trim().splitn(3, '-');
        let y: i64 = parts.next()?.parse().ok()?;
        let m: u32 = parts.next()?.parse().ok()?;
        let d: u32 = parts.next()?.parse().ok()?;
        if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
            return None;
        }
        let utc = days_from_civil(y, m, d) * 86_400_000;
        Some(utc - i64::from(self.offset_minutes(utc)) * 60_000)
    }
}

fn last_sunday_ms(year: i64, month: u32) -> i64 {
    let next = if month == 12 {
        days_from_civil(year + 1, 1, 1)
    } else {
        days_from_civil(year, month + 1, 1)
    };
    let last = next - 1;
    // 1970-01-01 was a Thursday: weekday 0 = Sunday.
    let weekday = (last + 4).rem_euclid(7);
    (last - weekday) * 86_400_000
}

/// Days since 1970-01-01 to (year, month, day); Howard Hinnant's algorithm.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn london_switches_on_the_last_sundays_at_one_utc() {
        let z = Zone::London;
        // 2025: BST from 30 March 01:00 UTC to 26 October 01:00 UTC.
        let start = days_from_civil(2025, 3, 30) * 86_400_000 + 3_600_000;
        assert_eq!(z.offset_minutes(start - 1), 0);
        assert_eq!(z.offset_minutes(start), 60);
        let end = days_from_civil(2025, 10, 26) * 86_400_000 + 3_600_000;
        assert_eq!(z.offset_minutes(end - 1), 60);
        assert_eq!(z.offset_minutes(end), 0);
        assert_eq!(z.format(start), "2025-03-30 02:00:00 BST");
        assert_eq!(z.format(end), "2025-10-26 01:00:00 GMT");
        assert_eq!(
            Zone::parse("+05:30").unwrap().format(0),
            "1970-01-01 05:30:00 UTC+05:30"
        );
        assert_eq!(Zone::parse("Mars/Olympus"), None);
    }

    #[test]
    fn midnight_is_local() {
        let z = Zone::London;
        let ms = z.midnight_ms("2025-07-01").unwrap();
        assert_eq!(z.format(ms), "2025-07-01 00:00:00 BST");
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
    }
}
