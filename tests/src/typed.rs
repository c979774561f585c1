//! The event an agent drafts for typed text that matched one rule, as the
//! tests send it: typed in Chromium on a homework search page.

use tutela_agent::event::{EventDraft, Evidence};
use tutela_proto::v1::{Observation, RuleMatch, Source};

/// Typed text that matched one rule (`<category>/seed`) on `word`.
#[derive(Debug, Clone, Copy)]
pub struct TypedMatch<'a> {
    pub time_ms: i64,
    pub user: &'a str,
    pub station: &'a str,
    /// The text typed; it holds `word`.
    pub context: &'a str,
    pub word: &'a str,
    pub category: &'a str,
    pub severity: u32,
}

impl TypedMatch<'_> {
    /// The draft the agent seals, with `evidence` (a screenshot) if any.
    pub fn draft(&self, evidence: Option<Evidence>) -> EventDraft {
        let start = self
            .context
            .find(self.word)
            .expect("the context holds the matched word") as u32;
        EventDraft {
            time_ms: self.time_ms,
            user: self.user.into(),
            station: self.station.into(),
            observation: Observation {
                source: Source::Typed as i32,
                context: self.context.into(),
                app: "chromium".into(),
                window_title: "Homework help - Chromium".into(),
                url: "https://search.example/".into(),
                ..Default::default()
            },
            matches: vec![RuleMatch {
                rule_id: format!("{}/seed", self.category),
                category: self.category.into(),
                severity: self.severity,
                term: self.word.into(),
                start,
                end: start + self.word.len() as u32,
            }],
            evidence,
            rules_version: 3,
            count: 1,
            event_id: None,
            repeat_of: String::new(),
        }
    }
}
