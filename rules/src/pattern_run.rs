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
    set: Option<FoundSet>,
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

/// The phrases found in a text as an open-addressed hash set of their indices: built in
/// one pass, with no sort, each look-up a probe or two.
struct FoundSet {
    slots: SmallVec<[u32; 256]>,
    /// 32 less the log2 of the number of slots: a hash's top bits pick the slot.
    shift: u32,
}

/// An empty slot: no phrase has this index (`NO_PHRASE` is never looked up).
const EMPTY: u32 = NO_PHRASE;

impl FoundSet {
    fn of(found: &[Occurrence]) -> FoundSet {
        // At most half full, so that a probe ends soon.
        let len = (2 * found.len()).next_power_of_two().max(16);
        let mut set = FoundSet {
            slots: SmallVec::from_elem(EMPTY, len),
            shift: 32 - len.trailing_zeros(),
        };
        for o in found {
            debug_assert_ne!(o.phrase, EMPTY);
            let mut i = set.slot(o.phrase);
            while set.slots[i] != EMPTY && set.slots[i] != o.phrase {
                i = (i + 1) & (set.slots.len() - 1);
            }
            set.slots[i] = o.phrase;
        }
        set
    }

    #[inline]
    fn slot(&self, phrase: u32) -> usize {
        (phrase.wrapping_mul(0x9E37_79B1) >> self.shift) as usize
    }

    #[inline]
    fn contains(&self, phrase: u32) -> bool {
        let mut i = self.slot(phrase);
        loop {
            match self.slots[i] {
                p if p == phrase => return true,
                EMPTY => return false,
                _ => i = (i + 1) & (self.slots.len() - 1),
            }
        }
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
        /// (read in turn) or many (a set), with repeats and colliding indices.
        #[test]
        fn a_look_up_finds_exactly_the_phrases_found(
            found in proptest::collection::vec(0u32..400, 0..300),
            asked in proptest::collection::vec(0u32..400, 0..60),
        ) {
            let found_at: Vec<Occurrence> =
                found.iter().map(|&phrase| Occurrence { phrase, span: 0..1 }).collect();
            let mut present = Present::new(&found_at, None);
            for phrase in asked {
                prop_assert_eq!(present.has_phrase(phrase), found.contains(&phrase));
            }
        }
    }
}
