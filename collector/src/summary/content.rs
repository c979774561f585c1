//! The weekly summary's figures (read by the store: `store/sqlite/summary.rs`,
//! `store/postgres/summary.rs`).
//!
//! Alerts are counted by the agent's time of the event (as the console shows
//! them), without folded repeats. The DSL's summary covers pupils' alerts;
//! alerts about staff appear there only as one count ("see the head
//! teacher"), and the head teacher's summary covers staff alerts only.

use super::schedule::Week;
use crate::console::tz::Zone;

/// Who a summary is for: which alerts it may describe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// DSL and deputies (and any other role): pupils' alerts.
    Pupils,
    /// The head teacher: alerts about staff.
    Staff,
}

/// Alerts of one category in the week.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CategoryRow {
    pub category: String,
    /// Alerts of severity 1 to 5.
    pub by_severity: [i64; 5],
    pub total: i64,
    /// The week before.
    pub previous: i64,
}

/// An alert listed by link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopAlert {
    pub id: i64,
    pub time_ms: i64,
    pub severity: i64,
    pub category: String,
    pub state: String,
}

/// A rule's false positives among the week's alerts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FpRule {
    pub rule_id: String,
    pub false_positives: i64,
    pub total: i64,
}

/// A published rule bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleChange {
    pub pack_id: String,
    pub version: i64,
    pub shadow: bool,
    pub published_ms: i64,
}

/// A station that has gone quiet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Silent {
    pub station: String,
    pub grp: String,
    pub last_seen_ms: Option<i64>,
}

/// Everything one summary shows.
#[derive(Debug, Clone)]
pub struct Figures {
    pub audience: Audience,
    pub week: Week,
    pub zone: Zone,
    pub generated_ms: i64,
    pub console_url: String,
    pub categories: Vec<CategoryRow>,
    pub total: i64,
    pub previous_total: i64,
    /// Per day: date and counts in the order of `categories`.
    pub days: Vec<(String, Vec<i64>)>,
    /// Unreviewed (state `new`) alerts now, of any week, and the oldest one's time.
    pub unreviewed: i64,
    pub oldest_unreviewed_ms: Option<i64>,
    pub top: Vec<TopAlert>,
    /// Median from receipt to the first state change, over the week's
    /// reviewed alerts, and how many those were.
    pub median_first_review_ms: Option<i64>,
    pub reviewed: i64,
    pub fp_rules: Vec<FpRule>,
    /// Staff alerts in the week, shown to the DSL as a count only.
    pub staff_alerts: i64,
    pub silent: Vec<Silent>,
    pub rule_changes: Vec<RuleChange>,
    pub exemptions: Vec<crate::exemption::Exemption>,
    /// Monitoring notice acknowledgements received in the week, and pupils
    /// who have and have not accepted their group's current version.
    pub notice: crate::notice::WeekCounts,
    /// The school's name in a school's summary (its alerts, stations and
    /// notice acknowledgements only; rule publications and exemptions hold
    /// for every school and are marked so); `None` in the trust's.
    pub school_name: Option<String>,
}

/// How many of the most severe alerts are listed.
pub const TOP: usize = 10;
/// How many rules with false positives are listed.
pub const FP_RULES: usize = 5;

/// The median of sorted values (the mean of the middle two for an even count).
pub fn median(sorted: &[i64]) -> Option<i64> {
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2),
    }
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[5]), Some(5));
        assert_eq!(median(&[1, 3, 10]), Some(3));
        assert_eq!(median(&[1, 3, 10, 20]), Some(6));
    }
}
