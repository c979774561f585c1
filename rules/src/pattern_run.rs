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
    /// The distinct phrases found, sorted.
    sorted: Option<SmallVec<[u32; 32]>>,
    /// The mask of required lists with an entry in the text.
    lists: Option<u64>,
    lookups: u32,
}

impl<'a> Present<'a> {
    #[inline]
    pub(crate) fn new(found: &'a [Occurrence], keys: Option<WordKeys>) -> Present<'a> {
        Present {
            found,
            keys,
            sorted: None,
            lists: None,
            lookups: 0,
        }
    }

    /// Whether `phrase` was found: a look-up in the phrases found, sorted once a text
    /// needs more than a few (most texts' required words are ruled out by their keys).
    #[inline]
    fn has_phrase(&mut self, phrase: u32) -> bool {
        // A short list (a title, a typed tail) is searched for longer before sorting pays.
        let linear = if self.found.len() <= SHORT_FOUND {
            LINEAR_LOOKUPS_SHORT
        } else {
            LINEAR_LOOKUPS
        };
        if self.sorted.is_none() && self.lookups < linear {
            self.lookups += 1;
            return self.found.iter().any(|o| o.phrase == phrase);
        }
        let found = self.found;
        self.sorted
            .get_or_insert_with(|| {
                let mut ids: SmallVec<[u32; 32]> = found.iter().map(|o| o.phrase).collect();
                ids.sort_unstable();
                ids.dedup();
                ids
            })
            .binary_search(&phrase)
            .is_ok()
    }
}

/// Look-ups among the phrases found before they are sorted for binary search.
const LINEAR_LOOKUPS: u32 = 8;
/// The same for at most `SHORT_FOUND` phrases found: sorting a typed tail's hundred
/// costs about 3,000 instructions, more than its usual dozen or two look-ups.
const LINEAR_LOOKUPS_SHORT: u32 = 24;
const SHORT_FOUND: usize = 128;

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
