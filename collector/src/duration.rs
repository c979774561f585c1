//! Lengths of time typed by staff on the command line and in the console:
//! `90s`, `45m`, `8h`, `7d`, `2w`, or combinations such as `1h 30m` and
//! `2 days` (jiff's friendly format, and ISO 8601 `PT8H`). Days are 24 hours
//! and weeks 7 days; months and years vary in length and are refused.

use jiff::{Span, SpanRelativeTo};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("`{0}` is not a duration; use e.g. 90s, 30m, 24h, 7d or 2w")]
    Unreadable(String),
    #[error("unknown unit in `{0}`: months and years vary in length; use s, m, h, d or w")]
    CalendarUnit(String),
    #[error("`{0}` is no time at all; use e.g. 30m, 24h or 7d")]
    NotPositive(String),
    #[error("`{0}` is too long")]
    TooLong(String),
}

/// Milliseconds in `text`, which must be a positive length of time.
pub fn parse_ms(text: &str) -> Result<i64, DurationError> {
    let text = text.trim();
    let span: Span = match text.parse() {
        Ok(span) => span,
        Err(_) if is_huge(text) => return Err(DurationError::TooLong(text.to_owned())),
        Err(_) => return Err(DurationError::Unreadable(text.to_owned())),
    };
    if span.get_years() != 0 || span.get_months() != 0 {
        return Err(DurationError::CalendarUnit(text.to_owned()));
    }
    let duration = span
        .to_duration(SpanRelativeTo::days_are_24_hours())
        .map_err(|_| DurationError::TooLong(text.to_owned()))?;
    let ms =
        i64::try_from(duration.as_millis()).map_err(|_| DurationError::TooLong(text.to_owned()))?;
    if ms <= 0 {
        return Err(DurationError::NotPositive(text.to_owned()));
    }
    Ok(ms)
}

/// A plain count of a known unit that jiff refused: beyond its range.
fn is_huge(text: &str) -> bool {
    let unit = text.trim_start_matches(|c: char| c.is_ascii_digit());
    unit.len() < text.len() && ["s", "m", "h", "d", "w"].contains(&unit.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_combinations() {
        assert_eq!(parse_ms("90s"), Ok(90_000));
        assert_eq!(parse_ms(" 45m "), Ok(45 * 60_000));
        assert_eq!(parse_ms("8h"), Ok(8 * 3_600_000));
        assert_eq!(parse_ms("7d"), Ok(7 * 86_400_000));
        assert_eq!(parse_ms("2w"), Ok(14 * 86_400_000));
        assert_eq!(parse_ms("1h 30m"), Ok(90 * 60_000));
        assert_eq!(parse_ms("2 days"), Ok(2 * 86_400_000));
        assert_eq!(parse_ms("PT8H"), Ok(8 * 3_600_000));
    }

    #[test]
    fn nonsense_calendar_units_zero_and_overflow_are_refused() {
        for (text, want) in [
            ("soon", DurationError::Unreadable("soon".into())),
            ("", DurationError::Unreadable("".into())),
            ("24", DurationError::Unreadable("24".into())),
            ("3y", DurationError::CalendarUnit("3y".into())),
            ("1 month", DurationError::CalendarUnit("1 month".into())),
            ("0h", DurationError::NotPositive("0h".into())),
            ("-5m", DurationError::NotPositive("-5m".into())),
            (
                "9223372036854775807d",
                DurationError::TooLong("9223372036854775807d".into()),
            ),
        ] {
            assert_eq!(parse_ms(text), Err(want), "{text}");
        }
        assert!(parse_ms("99999999999999999999d").is_err());
    }
}
