//! The compiled matcher: one trie over every normalised phrase (literal
//! terms, pattern anchors, exceptions, cues; see `phrases`), one `RegexSet` for the few
//! regex terms, and the word patterns' regexes, run where their anchor occurs.

use crate::compile::LazyPattern;
use crate::cue::CueSet;
use crate::disguised::{glued_after, typed_as_words};
use crate::normalise::{boundary_after, boundary_before, Normalised, Normaliser};
use crate::pack::TermKind;
use crate::pattern_run::{push_matches, required_present, search_whole, Present};
use crate::phrases::{anchor, rule_of, Found, Occurrence, Phrases};
use crate::shared::SharedStr;
pub(crate) use crate::snippet::{snippet, Contexts};
use crate::typed_walk::KeptWalk;
use crate::weighing::{CategoryScore, Weighed};
use crate::window::{self, Anchored};
use crate::word_keys::WordKeys;
use crate::{AgeBand, CaptureMode, Scope, CATEGORIES};
use regex::{Regex, RegexSet};
use smallvec::SmallVec;
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

/// A raw hit on the normalised text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Hit {
    pub(crate) rule: u32,
    pub(crate) norm: Range<usize>,
}

#[derive(Debug, Default)]
pub(crate) struct Scan {
    pub(crate) hits: Vec<Hit>,
    pub(crate) cancelled: Vec<(Hit, usize, Range<usize>)>,
    pub(crate) missing_context: Vec<Hit>,
    pub(crate) weighing: crate::weighing::Weighing,
}

/// Words either side of a match in which a context word must appear.
const CONTEXT_WORDS: usize = 8;

thread_local! {
    static SCRATCH: RefCell<(Normaliser, Normalised)> = RefCell::new(Default::default());
}

fn overlaps(a: &Range<usize>, b: &Range<usize>) -> bool {
    a.start < b.end && b.start < a.end
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

    /// Hits for `scope` in normalised text, after exceptions and context words.
    /// `original` is the text `n` was normalised from (cues read clauses from it).
    pub(crate) fn scan(&self, scope: Scope, n: &Normalised, original: &str, explain: bool) -> Scan {
        self.scan_in(scope, n, original, explain, None)
    }

    /// [`Matcher::scan`] of a typed tail, taking over the phrases found in the previous
    /// tail where they are the same (see `typed_walk`).
    pub(crate) fn scan_kept(
        &self,
        scope: Scope,
        n: &Normalised,
        original: &str,
        kept: (&mut KeptWalk, Option<(u64, i64)>),
    ) -> Scan {
        self.scan_in(scope, n, original, false, Some(kept))
    }

    fn scan_in(
        &self,
        scope: Scope,
        n: &Normalised,
        original: &str,
        explain: bool,
        kept: Option<(&mut KeptWalk, Option<(u64, i64)>)>,
    ) -> Scan {
        let mut scan = Scan::default();
        let text = n.as_str();
        let bytes = text.as_bytes();
        let bit = scope.bit();
        // On the stack for a title or a typed tail (they move to the heap beyond).
        let mut candidates: SmallVec<[Hit; 8]> = SmallVec::new();
        // In ASCII text, a long text's pattern regexes run only near their anchor
        // occurrences (see `window`).
        let ascii = text.is_ascii();
        let mut anchored = Anchored::new(
            self.patterns.len(),
            ascii && text.len() >= window::WINDOWED_FROM,
        );
        let mut found = Found::new();
        // The word keys of an ASCII text are taken during the walk, for the patterns' required
        // words (a pack without patterns does not need them).
        let mut keys = None;
        if let Some((walk, place)) = kept {
            let with_keys = ascii && !self.patterns.is_empty();
            let keys = with_keys.then(|| keys.insert(WordKeys::default()));
            walk.find(&self.phrases, bytes, place, &mut found, keys);
        } else if ascii && !self.patterns.is_empty() {
            self.phrases
                .find_with_keys(bytes, &mut found, keys.insert(WordKeys::default()));
        } else {
            self.phrases.find(bytes, &mut found);
        }
        // The cue phrases on word boundaries (cue index, span), by end, for weighing, and
        // the places in `found` of exception phrases: one pass over the phrases found.
        let mut cues: SmallVec<[(u32, Range<usize>); 8]> = SmallVec::new();
        let mut exception_at: SmallVec<[u32; 8]> = SmallVec::new();
        for (at, m) in found.iter().enumerate() {
            let roles = self.phrases.roles(m.phrase);
            let ends_word = boundary_after(bytes, m.span.end);
            if !roles.exceptions.is_empty() && ends_word {
                exception_at.push(at as u32);
            }
            if self.weighing && ends_word {
                for &c in roles.cues {
                    cues.push((c, m.span.clone()));
                }
            }
            if roles.rules.is_empty() && roles.anchors.is_empty() {
                continue;
            }
            for (p, prefix) in roles.anchors.iter().map(|&a| anchor(a)) {
                if prefix || ends_word {
                    anchored.add(p, &m.span);
                }
            }
            for (r, disguised) in roles.rules.iter().map(|&r| rule_of(r)) {
                let rule = &self.rules[r as usize];
                let whole = rule.kind != TermKind::Prefix;
                let glued = whole && !ends_word && glued_after(bytes, &m.span, &self.glue);
                if rule.scopes & bit == 0 || (whole && !ends_word && !glued) {
                    continue;
                }
                let hidden = disguised || glued;
                if hidden && !typed_as_words(original, n.original_span(m.span.clone())) {
                    continue;
                }
                candidates.push(Hit {
                    rule: r,
                    norm: m.span.clone(),
                });
            }
        }
        if let Some(set) = &self.regexes {
            for i in set.matches(text).iter() {
                let (r, re) = &self.regex_rules[i];
                if self.rules[*r as usize].scopes & bit == 0 {
                    continue;
                }
                for m in re.find_iter(text) {
                    if !m.is_empty() {
                        candidates.push(Hit {
                            rule: *r,
                            norm: m.range(),
                        });
                    }
                }
            }
        }
        let mut present = Present::new(&found, keys);
        let mut windows: SmallVec<[Range<usize>; 4]> = SmallVec::new();
        // A pattern's windows cover the text when it reaches as many words as it has.
        let words = if anchored.windowed() {
            memchr::memchr_iter(b' ', bytes).count() + 1
        } else {
            0
        };
        for (i, &p) in anchored.order.iter().enumerate() {
            let (r, lazy) = &self.patterns[p as usize];
            if lazy.scopes & bit == 0
                || !required_present(lazy, &self.finders, &self.phrases, bytes, &mut present)
            {
                continue;
            }
            let [before, after] = lazy.reach.map(usize::from);
            if !anchored.windowed() || before + after >= words {
                if ascii {
                    let end = anchored.search_end(bytes, after);
                    search_whole(&mut candidates, *r, text, lazy.get(), end, &anchored);
                } else {
                    let input = regex_automata::Input::new(bytes);
                    push_matches(&mut candidates, *r, text, lazy.get().find_iter(input));
                }
                continue;
            }
            anchored.windows(i, bytes, before, after, &mut windows);
            for w in &windows {
                if window::required_within(
                    lazy,
                    &found,
                    w,
                    bytes,
                    &self.finders,
                    &self.phrases,
                    present.keys.as_ref(),
                ) {
                    let input = regex_automata::Input::new(bytes).range(w.clone());
                    push_matches(&mut candidates, *r, text, lazy.get().find_iter(input));
                }
            }
        }
        if candidates.is_empty() {
            return scan;
        }
        let occurrences = self.exceptions_near(text, &candidates, &found, &exception_at);
        for hit in candidates {
            let rule = &self.rules[hit.rule as usize];
            let cancel = occurrences.iter().find(|(e, range)| {
                let exc = &self.exceptions[*e];
                exc.category.as_ref().is_none_or(|c| *c == rule.category)
                    && overlaps(range, &hit.norm)
            });
            if let Some((e, range)) = cancel {
                if explain {
                    scan.cancelled.push((hit, *e, range.clone()));
                }
                continue;
            }
            // A pattern written without gaps reads words of one sentence: 'bully. my son'
            // is not 'bully my'.
            if rule.kind == TermKind::Pattern
                && n.sentence_of(hit.norm.start) != n.sentence_of(hit.norm.end.saturating_sub(1))
                && !rule.term.contains('~')
            {
                continue;
            }
            if !rule.context.is_empty() && !context_near(text, &hit.norm, &rule.context) {
                if explain {
                    scan.missing_context.push(hit);
                }
                continue;
            }
            scan.hits.push(hit);
        }
        scan.hits.sort_by(|a, b| {
            (a.norm.start, a.norm.end, a.rule).cmp(&(b.norm.start, b.norm.end, b.rule))
        });
        if self.weighing && !scan.hits.is_empty() {
            let hits = std::mem::take(&mut scan.hits);
            let (kept, weighing) = self.weigh(n, original, hits, explain, &cues);
            scan.hits = kept;
            scan.weighing = weighing;
        }
        scan
    }

    /// Occurrences of exception phrases (on word boundaries) in normalised text that could
    /// overlap one of `hits`: those in windows around the hits, taken from the phrases
    /// `found` in the text (`exception_at`: the places in `found` of the exception phrases
    /// that end on a word boundary, in order).
    fn exceptions_near(
        &self,
        text: &str,
        hits: &[Hit],
        found: &[Occurrence],
        exception_at: &[u32],
    ) -> Vec<(usize, Range<usize>)> {
        let mut out = Vec::new();
        if exception_at.is_empty() {
            return out;
        }
        let reach = self.longest_exception;
        let mut windows: SmallVec<[Range<usize>; 8]> = hits
            .iter()
            .map(|h| h.norm.start.saturating_sub(reach)..(h.norm.end + reach).min(text.len()))
            .collect();
        windows.sort_by_key(|w| w.start);
        let mut merged: SmallVec<[Range<usize>; 8]> = SmallVec::new();
        for w in windows {
            match merged.last_mut() {
                Some(last) if w.start <= last.end => last.end = last.end.max(w.end),
                _ => merged.push(w),
            }
        }
        for &at in exception_at {
            let m = &found[at as usize];
            if !merged
                .iter()
                .any(|w| w.start <= m.span.start && m.span.end <= w.end)
            {
                continue;
            }
            let exceptions = self.phrases.roles(m.phrase).exceptions;
            out.extend(exceptions.iter().map(|&e| (e as usize, m.span.clone())));
        }
        out
    }

    /// Whether the given category index list has this domain.
    pub(crate) fn domain_categories(&self, domain: &str) -> Option<&[usize]> {
        self.domains.get(domain).map(|v| v.as_slice())
    }
}

/// Whether one of `words` (normalised) appears as whole words within 8 words of `hit`.
fn context_near(text: &str, hit: &Range<usize>, words: &[String]) -> bool {
    let bytes = text.as_bytes();
    let mut start = hit.start;
    let mut seen = 0;
    while start > 0 {
        if bytes[start - 1] == b' ' {
            seen += 1;
            if seen > CONTEXT_WORDS {
                break;
            }
        }
        start -= 1;
    }
    let mut end = hit.end;
    let mut seen = 0;
    while end < bytes.len() {
        if bytes[end] == b' ' {
            seen += 1;
            if seen > CONTEXT_WORDS {
                break;
            }
        }
        end += 1;
    }
    let window = &text[start..end];
    let wb = window.as_bytes();
    words.iter().any(|w| {
        window
            .match_indices(w.as_str())
            .any(|(i, _)| boundary_before(wb, i) && boundary_after(wb, i + w.len()))
    })
}
