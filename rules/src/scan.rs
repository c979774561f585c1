//! One pass of a compiled pack over normalised text: the phrases found from word starts
//! (literal terms, pattern anchors, exceptions, cues), the regex terms, the word patterns
//! whose required words are present, then exceptions, context words and weighing. Every
//! way of matching (`find`, `explain`, typed text) goes through [`Matcher::scan`].

use crate::disguised::{glued_after, typed_as_words};
use crate::matcher::Matcher;
use crate::normalise::{boundary_after, boundary_before, Normalised};
use crate::pack::TermKind;
use crate::pattern_run::{push_matches, required_present, search_whole, Present};
use crate::phrases::{anchor, rule_of, Found, Occurrence};
use crate::run_together::TYPED_LOOK_BACK;
use crate::typed_walk::KeptWalk;
use crate::window::{self, Anchored};
use crate::word_keys::WordKeys;
use crate::Scope;
use smallvec::SmallVec;
use std::ops::Range;

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

fn overlaps(a: &Range<usize>, b: &Range<usize>) -> bool {
    a.start < b.end && b.start < a.end
}

impl Matcher {
    /// Hits for `scope` in normalised text, after exceptions and context words.
    /// `original` is the text `n` was normalised from (cues read clauses from it).
    pub(crate) fn scan(&self, scope: Scope, n: &Normalised, original: &str, explain: bool) -> Scan {
        let mut scan = self.scan_in(scope, n, original, explain, None);
        self.hear_disguised(scope, n, original, explain, 0, &mut scan);
        scan
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
        let mut scan = self.scan_in(scope, n, original, false, Some(kept));
        let from = n.as_str().len().saturating_sub(TYPED_LOOK_BACK);
        self.hear_disguised(scope, n, original, false, from, &mut scan);
        scan
    }

    pub(crate) fn scan_in(
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
        let mut own = Found::new();
        // The word keys of an ASCII text are taken during the walk, for the patterns' required
        // words (a pack without patterns does not need them).
        let mut keys = None;
        let found: &[Occurrence] = if let Some((walk, place)) = kept {
            let with_keys = ascii && !self.patterns.is_empty();
            let keys = with_keys.then(|| keys.insert(WordKeys::default()));
            walk.find(&self.phrases, bytes, place, keys);
            walk.found()
        } else {
            if ascii && !self.patterns.is_empty() {
                self.phrases
                    .find_with_keys(bytes, &mut own, keys.insert(WordKeys::default()));
            } else {
                self.phrases.find(bytes, &mut own);
            }
            &own
        };
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
            // Whether a pack word is glued after this phrase: looked at once, for its first
            // whole-word rule that needs it.
            let mut glued_here: Option<bool> = None;
            for (r, disguised) in roles.rules.iter().map(|&r| rule_of(r)) {
                let rule = &self.rules[r as usize];
                let whole = rule.kind != TermKind::Prefix;
                let glued = whole
                    && !ends_word
                    && *glued_here.get_or_insert_with(|| glued_after(bytes, &m.span, &self.glue));
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
        let mut present = Present::new(found, keys);
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
                    found,
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
        let occurrences = self.exceptions_near(text, &candidates, found, &exception_at);
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
