//! Tutela rule engine: the rule pack language, the text normaliser, the keyword matcher
//! (batch and incremental), URL and search-query matching, corpus evaluation and signed
//! rule bundles.
//!
//! A [`Pack`] is parsed from TOML, compiled into an immutable [`Matcher`] and shared between
//! sensors behind an `Arc`. Every match carries its span in the original text so a reviewer
//! sees exactly what was typed or shown.

pub mod bundle;
mod camel_case;
mod clause;
mod compile;
mod cue;
mod cue_cancel;
mod cue_roles;
mod disguised;
pub mod eval;
pub mod floors;
mod fold;
#[doc(hidden)]
pub mod fuzz_checks;
mod hold;
mod initials;
mod letter_run;
pub mod lint;
mod matcher;
mod misspelt;
pub mod normalise;
mod normalised;
mod pack;
mod pack_problems;
mod pack_toml;
pub mod pattern;
mod pattern_regex;
mod pattern_run;
mod phrases;
mod run_together;
mod scan;
mod sentence;
mod shared;
mod snippet;
mod split_memory;
mod trie;
mod typed;
mod typed_tail;
mod typed_walk;
mod url;
mod weighing;
mod window;
mod word_block;
mod word_edges;
mod word_keys;
mod wordlist;

use std::fmt;
use std::str::FromStr;

pub use cue::{Cue, CueHit, Within};
pub use matcher::{Cancelled, CompileError, CompileOptions, Explanation, Match, Matcher};
pub use pack::{Category, ChangelogEntry, ExceptionRule, Pack, PackError, Problem, Term, TermKind};
pub use shared::SharedStr;
pub use typed::TypedMatcher;
pub use url::{host_of, search_query};
pub use weighing::{CategoryScore, Weighed};
pub use wordlist::WordList;

/// The twelve safeguarding categories every pack draws from.
pub const CATEGORIES: [&str; 12] = [
    "suicide",
    "self-harm",
    "bullying",
    "child-exploitation",
    "discrimination",
    "drugs",
    "extremism",
    "gambling",
    "pornography",
    "violence",
    "weapons",
    "illegal",
];

/// Where a piece of text was observed; terms apply only to the scopes they name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Text the pupil typed.
    Typed,
    /// A window title.
    Title,
    /// A URL visited.
    Url,
    /// A search query, pulled out of a search engine URL.
    Search,
    /// A running process name.
    Process,
}

impl Scope {
    /// Every scope, in a fixed order.
    pub const ALL: [Scope; 5] = [
        Scope::Typed,
        Scope::Title,
        Scope::Url,
        Scope::Search,
        Scope::Process,
    ];

    /// The name used in packs and corpora.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Typed => "typed",
            Scope::Title => "title",
            Scope::Url => "url",
            Scope::Search => "search",
            Scope::Process => "process",
        }
    }

    pub(crate) fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A scope name that is not one of typed, title, url, search, process.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scope `{0}`: use one of typed, title, url, search, process")]
pub struct UnknownScope(pub String);

impl FromStr for Scope {
    type Err = UnknownScope;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "typed" => Ok(Scope::Typed),
            "title" => Ok(Scope::Title),
            "url" => Ok(Scope::Url),
            "search" => Ok(Scope::Search),
            "process" => Ok(Scope::Process),
            other => Err(UnknownScope(other.to_string())),
        }
    }
}

/// How much screen evidence a match asks the agent to capture, ordered from least to
/// most (the strongest of several matches is their `max`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum CaptureMode {
    /// No screenshot (the matched text is the evidence).
    None,
    /// One screenshot.
    #[default]
    One,
    /// A short burst of screenshots.
    Burst,
}

impl CaptureMode {
    /// The name used in packs.
    pub fn as_str(self) -> &'static str {
        match self {
            CaptureMode::None => "none",
            CaptureMode::One => "one",
            CaptureMode::Burst => "burst",
        }
    }
}

impl FromStr for CaptureMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(CaptureMode::None),
            "one" => Ok(CaptureMode::One),
            "burst" => Ok(CaptureMode::Burst),
            other => Err(format!(
                "unknown capture mode `{other}`: use one of none, one, burst"
            )),
        }
    }
}

/// The pupils a term is meant for. A matcher compiled for `Primary` keeps terms marked
/// `all` or `primary`; one compiled for `All` keeps every term.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum AgeBand {
    /// Every pupil.
    #[default]
    All,
    /// Primary school (key stages 1-2).
    Primary,
    /// Secondary school (key stages 3-5).
    Secondary,
}

impl AgeBand {
    /// The name used in packs.
    pub fn as_str(self) -> &'static str {
        match self {
            AgeBand::All => "all",
            AgeBand::Primary => "primary",
            AgeBand::Secondary => "secondary",
        }
    }

    /// Whether a term marked `term_band` applies to pupils in `self`.
    pub fn includes(self, term_band: AgeBand) -> bool {
        self == AgeBand::All || term_band == AgeBand::All || term_band == self
    }
}

impl FromStr for AgeBand {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "all" => Ok(AgeBand::All),
            "primary" => Ok(AgeBand::Primary),
            "secondary" => Ok(AgeBand::Secondary),
            other => Err(format!(
                "unknown age band `{other}`: use one of all, primary, secondary"
            )),
        }
    }
}

/// Whether `id` is one of the twelve category ids.
pub fn is_category(id: &str) -> bool {
    CATEGORIES.contains(&id)
}
