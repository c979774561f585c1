//! Running a text's word patterns: whether a pattern's required words may be in the text
//! (word keys, then the phrases found, then a substring search), and its regex's matches
//! pushed as hits.

use crate::compile::{LazyPattern, Required, NO_PHRASE};
use crate::matcher::Hit;
use crate::phrases::{Occurrence, Phrases};
use crate::window::Anchored;
use crate::word_keys::WordKeys;
use smallvec::SmallVec;

/// Push the matches of a word pattern's regex in ASCII normalised `text[..end]` as hits of
/// rule `rule`: the same matches as `find_iter`, but without the last search when no anchor
/// occurrence is left after a match (see [`Anchored::more_after`]).
#[inline]
pub(crate) fn search_whole(
    candidates: &mut SmallVec<[Hit; 8]>,
    rule: u32,
    text: &str,
    re: &regex_automata::meta::Regex,
    end: usize,
    anchored: &Anchored,
) {
    let mut input = regex_automata::Input::new(text.as_bytes()).range(..end);
    while let Some(m) = re.search(&input) {
        if m.is_empty() {
            // Not written by any pattern (each has a word); `find_iter` from here skips
            // it as it would have.
            let rest = input.clone().range(m.start()..end);
            push_matches(candidates, rule, text, re.find_iter(rest));
            return;
        }
        push_matches(candidates, rule, text, std::iter::once(m));
        if !anchored.more_after(m.end()) {
            return;
        }
        input.set_start(m.end());
    }
}

/// Push a word pattern's non-empty matches (on char boundaries) as hits of rule `rule`.
#[inline]
pub(crate) fn push_matches(
    candidates: &mut SmallVec<[Hit; 8]>,
    rule: u32,
    text: &str,
    matches: impl Iterator<Item = regex_automata::Match>,
) {
    for m in matches {
        let range = m.range();
        if !m.is_empty() && text.is_char_boundary(range.start) && text.is_char_boundary(range.end) {
            candidates.push(Hit { rule, norm: range });
        }
    }
}

/// What the required tokens of the patterns anchored in one text are checked against,
/// each part made when first needed.
pub(crate) struct Present<'a> {
    found: &'a [Occurrence],
    /// The text's word keys, when it is ASCII (see `word_keys`).
    pub(crate) keys: Option<WordKeys>,
    /// The distinct phrases found, as a set (for texts with more than a few).
    set: Option<FoundSet<'a>>,
    /// The mask of required lists with an entry in the text.
    lists: Option<u64>,
}

impl<'a> Present<'a> {
    #[inline]
    pub(crate) fn new(found: &'a [Occurrence], keys: Option<WordKeys>) -> Present<'a> {
        Present {
            found,
            keys,
            set: None,
            lists: None,
        }
    }

    /// Whether `phrase` was found: a look-up among a few phrases found, or in a set of
    /// them made at the first look-up when there are more (a typed tail's hundred: a
    /// linear look-up there cost about 200 instructions, and a tail needs a score of them).
    #[inline]
    fn has_phrase(&mut self, phrase: u32) -> bool {
        if self.found.len() <= LINEAR_FOUND {
            return self.found.iter().any(|o| o.phrase == phrase);
        }
        let found = self.found;
        self.set
            .get_or_insert_with(|| FoundSet::of(found))
            .contains(phrase)
    }
}

/// Up to this many phrases found, a look-up reads them in turn.
const LINEAR_FOUND: usize = 16;

/// The phrases found in a text as a bit per phrase index, in a block of bits kept on the
/// thread between texts: built in one pass (a bit set per occurrence), each look-up a bit
/// test, and cleared on drop by the same pass (only the words it set are written). A hash
/// set built afresh cost about 2,000 instructions a typed scan (a kilobyte of slots filled,
/// a hash and a probe per occurrence).
struct FoundSet<'a> {
    bits: Vec<u64>,
    found: &'a [Occurrence],
}

thread_local! {
    /// The block of bits [`FoundSet`] borrows (empty while one is in use on the thread).
    static FOUND_BITS: std::cell::Cell<Vec<u64>> = const { std::cell::Cell::new(Vec::new()) };
}

impl<'a> FoundSet<'a> {
    fn of(found: &'a [Occurrence]) -> FoundSet<'a> {
        let mut bits = FOUND_BITS.with(std::cell::Cell::take);
        for o in found {
            debug_assert_ne!(o.phrase, NO_PHRASE);
            let word = o.phrase as usize / 64;
            if word >= bits.len() {
                bits.resize(word + 1, 0);
            }
            bits[word] |= 1 << (o.phrase % 64);
        }
        FoundSet { bits, found }
    }

    #[inline]
    fn contains(&self, phrase: u32) -> bool {
        self.bits
            .get(phrase as usize / 64)
            .is_some_and(|w| w & (1 << (phrase % 64)) != 0)
    }
}

impl Drop for FoundSet<'_> {
    fn drop(&mut self) {
        for o in self.found {
            self.bits[o.phrase as usize / 64] = 0;
        }
        debug_assert!(self.bits.iter().all(|&w| w == 0));
        let bits = std::mem::take(&mut self.bits);
        // At a thread's end the block is dropped instead.
        let _ = FOUND_BITS.try_with(|cell| cell.set(bits));
    }
}

/// Whether every required token of a word pattern but its anchor may be in `text`: a
/// word whose key the text's words have (when it is ASCII, see `word_keys`), and then
/// among the phrases found from word starts (when it is a phrase and the text is ASCII)
/// or as a substring; a list with an entry where a token can start (the mask of such
/// lists is found once per text). A necessary condition: the regex decides.
#[inline]
pub(crate) fn required_present(
    lazy: &LazyPattern,
    finders: &[memchr::memmem::Finder<'static>],
    phrases: &Phrases,
    text: &[u8],
    present: &mut Present<'_>,
) -> bool {
    // Every token's keys first: a token none of whose words' keys the text has rules the
    // pattern out before any look-up or search of another token.
    if let Some(keys) = &present.keys {
        let maybe = |r: &Required| match r {
            Required::Words(_, Some(union)) => keys.meets(union),
            Required::Words(words, None) => words.iter().any(|w| keys.may_hold(w.key)),
            Required::List(_) => true,
        };
        if !lazy.required.iter().all(maybe) {
            return false;
        }
    }
    for r in lazy.required.iter() {
        let ok = match r {
            Required::Words(words, _) => words.iter().any(|w| match present.keys {
                Some(keys) if !keys.may_hold(w.key) => false,
                Some(_) if w.phrase != NO_PHRASE => present.has_phrase(w.phrase),
                _ => finders[w.finder as usize].find(text).is_some(),
            }),
            Required::List(bit) => {
                let found = present.found;
                *present
                    .lists
                    .get_or_insert_with(|| phrases.lists_present(text, found))
                    & bit
                    != 0
            }
        };
        if !ok {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// A look-up says whether the phrase was found, whether the phrases found are few
        /// (read in turn) or many (a set), with repeats, and for phrases past the highest
        /// found; each case's set is cleared for the next.
        #[test]
        fn a_look_up_finds_exactly_the_phrases_found(
            found in proptest::collection::vec(0u32..400, 0..300),
            asked in proptest::collection::vec(0u32..600, 0..60),
        ) {
            let found_at: Vec<Occurrence> =
                found.iter().map(|&phrase| Occurrence { phrase, span: 0..1 }).collect();
            let mut present = Present::new(&found_at, None);
            for phrase in asked {
                prop_assert_eq!(present.has_phrase(phrase), found.contains(&phrase));
            }
        }
    }

    /// Two sets in use at once on a thread (a text scanned again inside a scan) each
    /// answer for their own phrases.
    #[test]
    fn two_sets_at_once() {
        let of = |ids: std::ops::Range<u32>| -> Vec<Occurrence> {
            ids.map(|phrase| Occurrence { phrase, span: 0..1 })
                .collect()
        };
        let (a, b) = (of(0..40), of(100..140));
        let mut outer = Present::new(&a, None);
        assert!(outer.has_phrase(39));
        {
            let mut inner = Present::new(&b, None);
            assert!(inner.has_phrase(100) && !inner.has_phrase(39));
        }
        assert!(outer.has_phrase(0) && !outer.has_phrase(100));
    }
}
