//! Phrases found from word starts: the terms', exceptions' and cues' Aho-Corasick automata
//! are walked from the start of each word of the normalised text (an anchored walk), not
//! searched through it.
//!
//! Every term, anchor, exception and cue must start on a word boundary, so an unanchored
//! search, which follows failure transitions at every byte to report occurrences starting
//! anywhere, does work that is thrown away. The anchored walk from each word start stops
//! as soon as no phrase continues (usually within the word), never follows a failure
//! transition, and reports the same occurrences in the same order.

use aho_corasick::automaton::Automaton;
use aho_corasick::nfa::{contiguous, noncontiguous};
use aho_corasick::{Anchored, MatchKind};
use std::ops::Range;

/// An occurrence of a phrase starting on a word boundary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Occurrence {
    /// Index of the phrase in the list the automaton was built from.
    pub(crate) phrase: u32,
    pub(crate) span: Range<usize>,
}

/// An automaton over normalised phrases, walked from word starts.
#[derive(Debug)]
pub(crate) struct PhraseAutomaton {
    nfa: Nfa,
}

#[derive(Debug)]
enum Nfa {
    /// The usual form: one block of memory, dense transitions near the root.
    Contiguous(contiguous::NFA),
    /// When the phrases are too many for a contiguous NFA.
    Noncontiguous(noncontiguous::NFA),
}

impl PhraseAutomaton {
    /// Build over `phrases`; states down to `dense_depth` keep dense transitions (faster,
    /// more memory).
    pub(crate) fn new<P: AsRef<[u8]>>(
        phrases: &[P],
        dense_depth: usize,
    ) -> Result<PhraseAutomaton, aho_corasick::BuildError> {
        let nnfa = noncontiguous::Builder::new()
            .match_kind(MatchKind::Standard)
            .dense_depth(dense_depth)
            .prefilter(false)
            .build(phrases)?;
        let nfa = match contiguous::Builder::new()
            .match_kind(MatchKind::Standard)
            .dense_depth(dense_depth)
            .prefilter(false)
            .build_from_noncontiguous(&nnfa)
        {
            Ok(cnfa) => Nfa::Contiguous(cnfa),
            Err(_) => Nfa::Noncontiguous(nnfa),
        };
        Ok(PhraseAutomaton { nfa })
    }

    /// Append to `out` every occurrence that starts on a word start of `text` (offset 0 or
    /// after a space) and lies inside `range`, ordered as an overlapping search reports
    /// them: by end, then by start. Whether it ends on a word boundary is the caller's.
    pub(crate) fn find_in(&self, text: &[u8], range: Range<usize>, out: &mut Vec<Occurrence>) {
        let first = out.len();
        let end = range.end.min(text.len());
        let mut start = range.start;
        while start < end {
            if start == 0 || text[start - 1] == b' ' {
                self.walk(text, start, end, out);
            }
            // Words are short: a plain loop beats a vectorised search here.
            start = match text[start..end].iter().position(|&b| b == b' ') {
                Some(i) => start + i + 1,
                None => break,
            };
        }
        if out.len() - first > 1 {
            // Collected by start, then by end; a stable sort by end keeps starts in order.
            out[first..].sort_by_key(|o| o.span.end);
        }
    }

    /// Call `found` with the index of every phrase that starts where an ASCII word
    /// boundary (`(?-u:\b)`) or a space may be: at offset 0 or after a byte that is not
    /// an ASCII letter, digit or `_`. Where it ends is not checked.
    pub(crate) fn each_after_non_word(&self, text: &[u8], mut found: impl FnMut(u32)) {
        let mut out = Vec::new();
        for start in 0..text.len() {
            if start == 0 || !is_ascii_word(text[start - 1]) {
                self.walk(text, start, text.len(), &mut out);
                for o in out.drain(..) {
                    found(o.phrase);
                }
            }
        }
    }

    /// The occurrences starting at `start` and ending by `end`, by end.
    fn walk(&self, text: &[u8], start: usize, end: usize, out: &mut Vec<Occurrence>) {
        match &self.nfa {
            Nfa::Contiguous(a) => walk(a, text, start, end, out),
            Nfa::Noncontiguous(a) => walk(a, text, start, end, out),
        }
    }
}

/// Whether a byte is a word character for `(?-u:\b)`.
fn is_ascii_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn walk<A: Automaton>(aut: &A, text: &[u8], start: usize, end: usize, out: &mut Vec<Occurrence>) {
    let Ok(mut sid) = aut.start_state(Anchored::Yes) else {
        return;
    };
    for (at, &byte) in text[start..end].iter().enumerate() {
        sid = aut.next_state(Anchored::Yes, sid, byte);
        if aut.is_dead(sid) {
            return;
        }
        if aut.is_match(sid) {
            let len = at + 1;
            for i in 0..aut.match_len(sid) {
                let pid = aut.match_pattern(sid, i);
                // A match state also lists the shorter phrases that end here but start
                // later (from its failure chain): those are found from their own start.
                if aut.pattern_len(pid) == len {
                    out.push(Occurrence {
                        phrase: pid.as_u32(),
                        span: start..start + len,
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aho_corasick::AhoCorasick;

    /// The anchored walk finds exactly what an overlapping search finds that starts on a
    /// word start, in the same order.
    #[test]
    fn same_as_overlapping_search_from_word_starts() {
        let phrases = [
            "kil",
            "kil me",
            "i",
            "i want",
            "want to die",
            "to die",
            "die",
            "me",
            "a",
            "an",
            "want",
            "e",
            "kil me now",
            "now",
            "ow",
        ];
        let aut = PhraseAutomaton::new(&phrases, 2).unwrap();
        let ac = AhoCorasick::builder()
            .match_kind(MatchKind::Standard)
            .build(phrases)
            .unwrap();
        for text in [
            "i want to die",
            "kil me now and i want to die now",
            "a an ant want wants to die kil kilme me",
            "",
            " i  want ",
            "ow now",
        ] {
            let bytes = text.as_bytes();
            for range in [
                0..text.len(),
                2.min(text.len())..text.len().saturating_sub(3),
            ] {
                let mut got = Vec::new();
                aut.find_in(bytes, range.clone(), &mut got);
                let want: Vec<Occurrence> = ac
                    .find_overlapping_iter(aho_corasick::Input::new(text).range(range.clone()))
                    .filter(|m| m.start() == 0 || bytes[m.start() - 1] == b' ')
                    .map(|m| Occurrence {
                        phrase: m.pattern().as_u32(),
                        span: m.range(),
                    })
                    .collect();
                assert_eq!(got, want, "{text:?} {range:?}");
            }
        }
    }
}
