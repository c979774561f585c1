//! Clauses and questions, for cues: the stretch of text a cue group reaches (`within =
//! "clause"`, "sentence" or "line") and whether a cue stands in a question (`question =
//! true`).
//!
//! A clause ends where a sentence ends, and also at a comma (not one between two digits:
//! `1,000`), a semicolon, a dash with white space beside it (`isis - the caliphate`, not
//! `well-known`), and before the word 'but'. So 'i want to join isis, they are cowards': the
//! condemnation is about the second clause; 'i don't care, jews are vermin': the negation
//! is about the first.
//!
//! A sentence is a question when it holds a `?` that ends a word or the text (`why?`, not
//! `watch?v=`), or when a question word begins it ('why do people join isis', 'who are boko
//! haram and why did they ...'): 'the kuffar deserve what happened in london' is a
//! statement.
//!
//! The normaliser keeps no punctuation; clause ends are read from the original text, and
//! only when a cue group that needs them has a phrase in the text, so text without such a
//! cue costs nothing more.

use crate::cue::Within;
use crate::normalise::Normalised;
use smallvec::SmallVec;
use std::cell::OnceCell;
use std::ops::Range;

/// Words that begin a question (normalised: repeated letters folded).
const QUESTION_WORDS: [&str; 12] = [
    "what", "whats", "why", "how", "hows", "when", "where", "who", "whos", "whom", "whose", "which",
];

/// The stretches of one text that cues reach: its lines, sentences and clauses.
pub(crate) struct Stretches<'a> {
    n: &'a Normalised,
    original: &'a str,
    /// Normalised offsets where a clause begins after a clause mark within a sentence,
    /// found the first time a cue asks.
    clause_starts: OnceCell<SmallVec<[usize; 8]>>,
}

impl<'a> Stretches<'a> {
    /// `original` is the text `n` was normalised from.
    pub(crate) fn new(n: &'a Normalised, original: &'a str) -> Stretches<'a> {
        Stretches {
            n,
            original,
            clause_starts: OnceCell::new(),
        }
    }

    /// The normalised text.
    pub(crate) fn text(&self) -> &'a str {
        self.n.as_str()
    }

    /// Which stretch (compared only) holds normalised offset `at`.
    fn of(&self, within: Within, at: usize) -> (usize, usize) {
        match within {
            Within::Line => (self.n.line_of(at), 0),
            Within::Sentence => (self.n.sentence_of(at), 0),
            Within::Clause => (
                self.n.sentence_of(at),
                self.clause_starts().partition_point(|&b| b <= at),
            ),
        }
    }

    /// Whether normalised offsets `a` and `b` are in the same stretch.
    pub(crate) fn same(&self, within: Within, a: usize, b: usize) -> bool {
        self.of(within, a) == self.of(within, b)
    }

    /// The normalised bytes of the stretch that holds offset `at`.
    pub(crate) fn around(&self, within: Within, at: usize) -> Range<usize> {
        let len = self.n.as_str().len();
        let here = self.of(within, at);
        if len == 0 || (self.of(within, 0) == here && self.of(within, len - 1) == here) {
            // One stretch holds the whole text (most texts are one line, one sentence).
            return 0..len;
        }
        // Stretches are numbered in order, so each is one run of offsets.
        let first = partition(0, at, |p| self.of(within, p) < here);
        let end = partition(at, len, |p| self.of(within, p) <= here);
        first..end
    }

    /// Whether the cue at `span` stands in a question: a sentence with a `?` that ends a
    /// word, or one that a question word begins.
    pub(crate) fn in_question(&self, span: &Range<usize>) -> bool {
        let sentence = self.around(Within::Sentence, span.start);
        let first = self.n.as_str()[sentence.clone()]
            .split(' ')
            .next()
            .unwrap_or("");
        if QUESTION_WORDS.contains(&first) {
            return true;
        }
        let from = self.original_at(sentence.start);
        let to = self.original_at(sentence.end);
        let text = self.original.as_bytes();
        (from..to.min(text.len())).any(|i| {
            text[i] == b'?'
                && text
                    .get(i + 1)
                    .is_none_or(|c| !c.is_ascii_alphanumeric() && *c != b'=')
        })
    }

    /// The original offset of normalised offset `at` (the original's end past the last).
    fn original_at(&self, at: usize) -> usize {
        if at >= self.n.as_str().len() {
            self.original.len()
        } else {
            self.n.original_span(at..at).start
        }
    }

    fn clause_starts(&self) -> &[usize] {
        self.clause_starts.get_or_init(|| {
            let text = self.n.as_str();
            let mut starts = SmallVec::new();
            for (k, _) in text.match_indices(' ') {
                // A normalised space stands for the whole run of separators between two
                // words of the original.
                let run = self.n.original_span(k..k + 1);
                if clause_mark(self.original, run) || self.but_at(k + 1) {
                    starts.push(k + 1);
                }
            }
            starts
        })
    }
}

impl Stretches<'_> {
    /// Whether the word 'but' (as written, not 'butt') begins at normalised offset `at`.
    fn but_at(&self, at: usize) -> bool {
        let text = self.n.as_str();
        text[at..].starts_with("but")
            && text.as_bytes().get(at + 3).is_none_or(|&c| c == b' ')
            && self
                .original
                .get(self.n.original_span(at..at + 3))
                .is_some_and(|w| w.eq_ignore_ascii_case("but"))
    }
}

/// The first offset in `lo..hi` where `before` stops holding (it holds for a prefix).
fn partition(mut lo: usize, mut hi: usize, before: impl Fn(usize) -> bool) -> usize {
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if before(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// Whether the separators at `run` of `original` end a clause: a semicolon, a comma not
/// between two digits, or a dash (`-`, `–`, `—`) with white space in the run.
pub(crate) fn clause_mark(original: &str, run: Range<usize>) -> bool {
    let Some(seps) = original.get(run.clone()) else {
        return false;
    };
    let digit_at = |i: Option<usize>| {
        i.and_then(|i| original.as_bytes().get(i))
            .is_some_and(u8::is_ascii_digit)
    };
    let spaced = seps.contains(char::is_whitespace);
    seps.char_indices().any(|(i, c)| match c {
        ';' => true,
        ',' => {
            let at = run.start + i;
            !(digit_at(at.checked_sub(1)) && digit_at(Some(at + 1)))
        }
        '-' | '\u{2013}' | '\u{2014}' => spaced,
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalise::normalise;

    fn clauses(text: &str) -> Vec<String> {
        let n = normalise(text);
        let s = Stretches::new(&n, text);
        let norm = n.as_str();
        let mut out: Vec<String> = Vec::new();
        let mut at = 0;
        while at < norm.len() {
            let r = s.around(Within::Clause, at);
            out.push(norm[r.clone()].trim().to_string());
            at = r.end;
        }
        out
    }

    #[test]
    fn commas_semicolons_dashes_and_but_end_clauses() {
        assert_eq!(
            clauses("i want to join isis, they are cowards"),
            ["i want to join isis", "they are cowards"]
        );
        assert_eq!(
            clauses("no; never - ok but why"),
            ["no", "never", "ok", "but why"]
        );
        assert_eq!(clauses("stop. it, now"), ["stop", "it", "now"]);
        assert_eq!(
            clauses("a well-known 1,000 people"),
            ["a wel known 1 000 people"]
        );
        assert_eq!(clauses("jews,muslims"), ["jews", "muslims"]);
    }

    #[test]
    fn a_question_has_a_question_mark_or_begins_with_the_cue() {
        let q = |text: &str, cue: &str| {
            let n = normalise(text);
            let at = n.as_str().find(cue).unwrap();
            Stretches::new(&n, text).in_question(&(at..at + cue.len()))
        };
        assert!(q("what happened in london?", "what hapened"));
        assert!(q("so what happened in london ?", "what hapened"));
        assert!(q("what happened in london", "what hapened"));
        assert!(q("ok. what happened in london", "what hapened"));
        assert!(q("who are they and why did they do it", "why did"));
        assert!(!q(
            "the kuffar deserve what happened in london",
            "what hapened"
        ));
        assert!(!q("why? they deserve what happened", "what hapened"));
        assert!(!q(
            "see youtube.com/watch?v=x they deserve what happened",
            "what hapened"
        ));
    }
}
