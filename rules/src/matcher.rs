//! The compiled matcher: one trie over every normalised phrase (literal
//! terms, pattern anchors, exceptions, cues; see `phrases`), one `RegexSet` for the few
//! regex terms, and the word patterns' regexes, run where their anchor occurs (the
//! scan itself is in `scan`); the matches it reports and how they are explained.

use crate::compile::LazyPattern;
use crate::cue::CueSet;
use crate::normalise::{Normalised, Normaliser};
use crate::pack::TermKind;
use crate::phrases::Phrases;
pub(crate) use crate::scan::Hit;
use crate::shared::SharedStr;
pub(crate) use crate::snippet::{snippet, Contexts};
use crate::weighing::{CategoryScore, Weighed};
use crate::{AgeBand, CaptureMode, Scope, CATEGORIES};
use regex::{Regex, RegexSet};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::ops::Range;

/// How to compile a pack.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompileOptions {
    /// The pupils this matcher watches; terms for other age bands are left out.
    pub age: AgeBand,
}

/// Why a pack could not be compiled.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("cannot build the keyword automaton for pack {pack}: {message}; reduce the number or length of terms")]
    Automaton { pack: String, message: String },
    #[error("cannot compile the regex terms of pack {pack}: {message}; simplify or remove regex terms (run `tutela-rules check`)")]
    Regex { pack: String, message: String },
    #[error("cannot compile the patterns or cues of pack {pack}: {message}; run `tutela-rules check` on the pack")]
    Pattern { pack: String, message: String },
}

/// One match of a rule in observed text. Its strings are shared: a match's rule id,
/// category and term with its rule in the compiled pack, its context with the other
/// matches of the same text, so matching allocates once per text, not per string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Match {
    /// `<category>/<term as written>` or `<category>/domain:<domain>`.
    pub rule_id: SharedStr,
    pub category: SharedStr,
    pub severity: u8,
    /// The term as written in the pack (or the domain).
    pub term: SharedStr,
    pub scope: Scope,
    /// Byte span in the original text (on char boundaries, inside the text).
    pub span: Range<usize>,
    /// The original text around the match, at most 120 characters.
    pub context: SharedStr,
    /// Byte span of the match inside `context`.
    pub context_span: Range<usize>,
    pub capture: CaptureMode,
}

/// A match that an exception cancelled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cancelled {
    pub matched: Match,
    /// The exception phrase as written in the pack.
    pub exception: String,
    /// Byte span of the exception occurrence in the original text.
    pub exception_span: Range<usize>,
    pub exception_line: usize,
}

/// Everything that happened when matching a text: for `tutela-rules test`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Explanation {
    /// The normalised text the automaton saw.
    pub normalised: String,
    pub matches: Vec<Match>,
    /// Matches cancelled by an exception.
    pub cancelled: Vec<Cancelled>,
    /// Matches dropped because none of their context words was near.
    pub missing_context: Vec<Match>,
    /// How each match that survived exceptions and context words was weighed (empty when
    /// the pack has no cues and every term alerts on its own).
    pub weighed: Vec<Weighed>,
    /// Each category's score against its threshold.
    pub categories: Vec<CategoryScore>,
}

#[derive(Debug)]
pub(crate) struct Rule {
    pub(crate) rule_id: SharedStr,
    pub(crate) category: SharedStr,
    pub(crate) term: SharedStr,
    pub(crate) kind: TermKind,
    pub(crate) severity: u8,
    pub(crate) scopes: u8,
    pub(crate) capture: CaptureMode,
    /// Normalised context words.
    pub(crate) context: Vec<String>,
    pub(crate) weight: f32,
    /// Bit of the category in a category mask.
    pub(crate) category_bit: u16,
    /// Bit of its term's role (0: none), for cues that lower only some roles.
    pub(crate) role_bit: u16,
}

#[derive(Debug)]
pub(crate) struct Exception {
    pub(crate) phrase: String,
    pub(crate) normalised: String,
    pub(crate) category: Option<String>,
    pub(crate) line: usize,
}

#[derive(Debug)]
pub(crate) struct CategoryInfo {
    pub(crate) id: String,
    pub(crate) severity: u8,
    pub(crate) capture: CaptureMode,
}

/// A pack compiled for matching. Immutable; share it behind an `Arc`.
#[derive(Debug)]
pub struct Matcher {
    pub(crate) pack_id: String,
    pub(crate) version: u32,
    pub(crate) rules: Vec<Rule>,
    /// Every normalised phrase (terms, anchors, exceptions, cues, required lists' entries)
    /// in one automaton walked from word starts, with what each stands for.
    pub(crate) phrases: Phrases,
    pub(crate) regexes: Option<RegexSet>,
    pub(crate) regex_rules: Vec<(u32, Regex)>,
    /// Word patterns: (rule, compiled regex), run only where their anchor occurs.
    pub(crate) patterns: Vec<(u32, LazyPattern)>,
    /// Substring searchers of the patterns' required words (see `RequiredWord`).
    pub(crate) finders: Box<[memchr::memmem::Finder<'static>]>,
    pub(crate) cues: CueSet,
    /// Threshold per index in [`CATEGORIES`].
    pub(crate) thresholds: [f32; 12],
    pub(crate) weighing: bool,
    pub(crate) exceptions: Vec<Exception>,
    /// Normalised exception phrases, sorted, for the typed matcher's look-ahead.
    pub(crate) exception_prefixes: Vec<String>,
    pub(crate) longest_exception: usize,
    pub(crate) longest_term: usize,
    /// Longest text a word pattern can match, roughly (see `pattern::CompiledPattern`).
    pub(crate) longest_pattern: usize,
    /// Normalised words a match can end with (terms, patterns, context words, cues that
    /// raise a score), and those that end one as a prefix: typed text is scanned only when
    /// the word just finished is one of them.
    pub(crate) last_words: HashSet<String>,
    pub(crate) last_prefixes: Vec<String>,
    /// Words that may be glued after a one-word term (see `disguised::glued_after`).
    pub(crate) glue: crate::disguised::Glue,
    /// Regex terms have no known last word: then every finished word is scanned.
    pub(crate) scan_every_word: bool,
    pub(crate) scopes_present: u8,
    pub(crate) categories: Vec<CategoryInfo>,
    /// Domain -> category indices.
    pub(crate) domains: HashMap<String, Vec<usize>>,
}

thread_local! {
    static SCRATCH: RefCell<(Normaliser, Normalised)> = RefCell::new(Default::default());
}

impl Matcher {
    /// The id of the compiled pack.
    pub fn pack_id(&self) -> &str {
        &self.pack_id
    }

    /// The version of the compiled pack.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Whether a match can end with this normalised word (always, for packs with regex
    /// terms): when it cannot, typing it cannot complete a match.
    pub(crate) fn may_end_match(&self, word: &str) -> bool {
        self.scan_every_word
            || self.last_words.contains(word)
            || self.glue.splitter().splits(word)
            || self
                .last_prefixes
                .iter()
                .any(|p| word.starts_with(p.as_str()))
    }

    /// Whether matches need weighing (cues, or terms lighter than their threshold).
    pub(crate) fn needs_weighing(&self) -> bool {
        self.weighing
    }

    /// Number of terms compiled (after the age filter).
    pub fn term_count(&self) -> usize {
        self.rules.len()
    }

    /// Matches of terms for `scope` in `text`, with exceptions and context words applied,
    /// ordered by position.
    pub fn find(&self, scope: Scope, text: &str) -> Vec<Match> {
        if self.scopes_present & scope.bit() == 0 {
            return Vec::new();
        }
        SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut guard) => {
                let (normaliser, normalised) = &mut *guard;
                normaliser.normalise_into(text, normalised);
                self.matches_in(scope, text, normalised)
            }
            Err(_) => {
                let normalised = crate::normalise::normalise(text);
                self.matches_in(scope, text, &normalised)
            }
        })
    }

    fn matches_in(&self, scope: Scope, text: &str, normalised: &Normalised) -> Vec<Match> {
        let scan = self.scan(scope, normalised, text, false);
        let mut contexts = Contexts::default();
        scan.hits
            .iter()
            .map(|h| self.to_match_in(h, scope, text, normalised, &mut contexts))
            .collect()
    }

    /// Every match and every exception or missing context word that stopped one.
    pub fn explain(&self, scope: Scope, text: &str) -> Explanation {
        let normalised = crate::normalise::normalise(text);
        let scan = self.scan(scope, &normalised, text, true);
        let weighed = scan
            .weighing
            .hits
            .iter()
            .map(|(h, weight, cues, score)| Weighed {
                matched: self.to_match(h, scope, text, &normalised),
                weight: *weight,
                cues: cues.clone(),
                score: *score,
            })
            .collect();
        let categories = scan
            .weighing
            .categories
            .iter()
            .map(|(i, score, threshold, anywhere, alerted)| CategoryScore {
                category: CATEGORIES[*i].to_string(),
                score: *score,
                threshold: *threshold,
                anywhere: anywhere.clone(),
                alerted: *alerted,
            })
            .collect();
        Explanation {
            weighed,
            categories,
            normalised: normalised.as_str().to_string(),
            matches: scan
                .hits
                .iter()
                .map(|h| self.to_match(h, scope, text, &normalised))
                .collect(),
            cancelled: scan
                .cancelled
                .iter()
                .map(|(h, e, range)| Cancelled {
                    matched: self.to_match(h, scope, text, &normalised),
                    exception: self.exceptions[*e].phrase.clone(),
                    exception_span: normalised.original_span(range.clone()),
                    exception_line: self.exceptions[*e].line,
                })
                .collect(),
            missing_context: scan
                .missing_context
                .iter()
                .map(|h| self.to_match(h, scope, text, &normalised))
                .collect(),
        }
    }

    pub(crate) fn to_match(&self, hit: &Hit, scope: Scope, text: &str, n: &Normalised) -> Match {
        self.to_match_in(hit, scope, text, n, &mut Contexts::default())
    }

    /// [`Matcher::to_match`], sharing a context with earlier matches of the same text.
    pub(crate) fn to_match_in(
        &self,
        hit: &Hit,
        scope: Scope,
        text: &str,
        n: &Normalised,
        contexts: &mut Contexts,
    ) -> Match {
        let rule = &self.rules[hit.rule as usize];
        let span = n.original_span(hit.norm.clone());
        let (context, context_span) = contexts.snippet(text, span.clone());
        Match {
            rule_id: rule.rule_id.clone(),
            category: rule.category.clone(),
            severity: rule.severity,
            term: rule.term.clone(),
            scope,
            span,
            context,
            context_span,
            capture: rule.capture,
        }
    }

    /// Whether the given category index list has this domain.
    pub(crate) fn domain_categories(&self, domain: &str) -> Option<&[usize]> {
        self.domains.get(domain).map(|v| v.as_slice())
    }
}
