//! Weekly summaries' records: each week's run is written in the same
//! transaction as its emails, under a key unique per (school, week), so a
//! week is queued once by the schedule whichever collector runs it: the
//! trust's summary under school `''`, each school's under its id.

use super::jobs::jobs;
use super::mail::NewEmail;
use super::{Jobs, StoreError};
use crate::config::CollectorConfig;
use crate::summary::content::{Audience, Figures};
use crate::summary::schedule::Week;

/// The key of the trust's summary, across every school.
pub const TRUST: &str = "";

/// A week queued: (week start, when, why, how many emails).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SummaryRun {
    pub week_start: String,
    pub queued_ms: i64,
    pub trigger: String,
    pub emails: i64,
}

/// A week's emails and why they are queued.
#[derive(Debug, Clone)]
pub struct SummaryQueue {
    pub school: String,
    pub week_start: String,
    pub queued_ms: i64,
    /// By the schedule (`schedule`: at most once a week) or by hand
    /// (`manual`: always, and the week then counts as sent).
    pub scheduled: bool,
    pub emails: Vec<NewEmail>,
}

impl Jobs {
    /// Whether the week has been queued for the school.
    pub async fn summary_done(&self, school: &str, week_start: &str) -> Result<bool, StoreError> {
        let (school, week_start) = (school.to_owned(), week_start.to_owned());
        jobs!(self, c => super::sqlite::summary::done(c, &school, &week_start),
              p => p.summary_done(&school, &week_start).await)
    }

    /// The week's figures as `audience` sees them, of `school`'s alerts and
    /// stations (every school's for [`TRUST`]), from one consistent read.
    pub async fn summary_figures(
        &self,
        config: &CollectorConfig,
        week: &Week,
        audience: Audience,
        school: &str,
        now_ms: i64,
    ) -> Result<Figures, StoreError> {
        if !school.is_empty() && !super::schools::valid_id(school) {
            return Err(StoreError::NotASchool(school.to_owned()));
        }
        let (config, week, school) = (config.clone(), week.clone(), school.to_owned());
        jobs!(self, c => super::sqlite::summary::figures(c, &config, &week, audience, &school, now_ms),
              p => p.summary_figures(&config, &week, audience, &school, now_ms).await)
    }

    /// Writes the week's emails and records the week; by the schedule, a
    /// week already recorded (by this or another collector) is left alone
    /// (`None`). Returns how many emails were queued.
    pub async fn queue_summary(&self, queue: SummaryQueue) -> Result<Option<usize>, StoreError> {
        jobs!(self, c => super::sqlite::summary::queue(c, &queue),
              p => p.queue_summary(&queue).await)
    }

    /// Weeks queued so far, newest first.
    pub async fn summary_runs(&self, limit: i64) -> Result<Vec<SummaryRun>, StoreError> {
        jobs!(self, c => super::sqlite::summary::runs(c, limit),
              p => p.summary_runs(limit).await)
    }
}
