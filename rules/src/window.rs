//! Where a word pattern's regex needs to run in ASCII normalised text: near its anchor.
//!
//! Normalised ASCII text holds only lower-case letters, digits and spaces, so the regex's
//! word boundaries are the spaces and the text's ends, and a match is whole words joined
//! by single spaces. Every match holds an occurrence of its anchor starting on a word
//! start, which the phrase walk finds, with at most `words_before` words before it and
//! `words_after` after it (`pattern::CompiledPattern`). So every match lies inside the
//! window of those words either side of one of those occurrences, and inside the merged
//! windows a search finds exactly what a search of the whole text finds (windows are cut
//! at spaces, where a word boundary looks the same with or without the text outside). A
//! match also holds one of each required token's words: a window without them is not
//! searched.

use crate::compile::{LazyPattern, Required, NO_PHRASE};
use crate::phrases::{Occurrence, Phrases};
use crate::word_keys::WordKeys;
use smallvec::SmallVec;
use std::ops::Range;

/// Texts at least this long (normalised bytes) are searched in windows: a title is
/// searched whole (the windows' bookkeeping costs more than the bytes it skips), a typed
/// tail in windows.
pub(crate) const WINDOWED_FROM: usize = 128;

/// The heap parts of a windowed text's [`Anchored`]: its slots, chains and spans.
type Kept = (Vec<u16>, Vec<(u32, u32)>, Vec<(u32, u32, u32)>);

thread_local! {
    /// The last windowed text's heap parts of `Anchored`, kept so that the next need not
    /// allocate, grow and zero them again (a typed tail is scanned at most word ends, and
    /// holds a few dozen anchor occurrences).
    static KEPT: std::cell::Cell<Kept> = const {
        std::cell::Cell::new((Vec::new(), Vec::new(), Vec::new()))
    };
}

/// The most anchor occurrences (and chains) whose lists are kept for the next text: a typed
/// tail holds a few dozen; a long document's lists are freed rather than held by the thread.
const KEPT_MAX: usize = 1024;

impl Drop for Anchored {
    fn drop(&mut self) {
        if self.windowed && self.spans.capacity() <= KEPT_MAX && self.chains.capacity() <= KEPT_MAX
        {
            let kept = (
                std::mem::take(&mut self.slot),
                std::mem::take(&mut self.chains),
                std::mem::take(&mut self.spans),
            );
            // During thread teardown they are simply freed.
            let _ = KEPT.try_with(|k| k.set(kept));
        }
    }
}

/// The patterns anchored in a text, in the order their anchor was first found, and (when
/// windowed) where each anchor occurrence is.
#[derive(Default)]
pub(crate) struct Anchored {
    /// Pattern indices, each once (a title's two or three risk words anchor 20-30).
    pub(crate) order: SmallVec<[u32; 32]>,
    /// One bit per pattern: in `order` already.
    seen: SmallVec<[u64; 32]>,
    /// A pattern's place in `order`, valid where `seen` is set (when windowed; on the
    /// heap, so that a title's bookkeeping stays small).
    slot: Vec<u16>,
    /// Per place in `order`: its first and last occurrence in `spans` (when windowed).
    chains: Vec<(u32, u32)>,
    /// Anchor occurrences: (start, end, next occurrence of the same pattern or `u32::MAX`)
    /// (when windowed).
    spans: Vec<(u32, u32, u32)>,
    windowed: bool,
    /// The end of the last anchor occurrence of any pattern (see [`Anchored::search_end`]).
    last_end: usize,
    /// The start of the last anchor occurrence of any pattern (see [`Anchored::more_after`]).
    last_start: usize,
}

impl Anchored {
    /// Inlined, so that it is built in its caller's frame rather than copied there.
    #[inline]
    pub(crate) fn new(patterns: usize, windowed: bool) -> Anchored {
        let mut a = Anchored::default();
        a.windowed = windowed && patterns <= usize::from(u16::MAX);
        a.seen.resize(patterns.div_ceil(64), 0);
        if a.windowed {
            // Reused from the last windowed text on this thread: an entry of `slot` is
            // read only where `seen` says this text wrote it, so it needs no clearing.
            (a.slot, a.chains, a.spans) = KEPT.with(|k| k.take());
            a.chains.clear();
            a.spans.clear();
            if a.slot.len() < patterns {
                a.slot.resize(patterns, 0);
            }
        }
        a
    }

    /// Whether anchor occurrences are kept, so that patterns are searched in windows.
    pub(crate) fn windowed(&self) -> bool {
        self.windowed
    }

    /// Pattern `p`'s anchor occurs at `span`. Inlined: a title's patterns are anchored
    /// a dozen times or more, and most of those only test a bit.
    #[inline]
    pub(crate) fn add(&mut self, p: u32, span: &Range<usize>) {
        let (word, bit) = (p as usize / 64, 1u64 << (p % 64));
        let new = self.seen[word] & bit == 0;
        if new {
            self.seen[word] |= bit;
            self.order.push(p);
        }
        self.last_end = self.last_end.max(span.end);
        self.last_start = self.last_start.max(span.start);
        if self.windowed {
            self.add_span(p, span, new);
        }
    }

    /// Keep an anchor occurrence for the windows (`new`: the pattern's first).
    fn add_span(&mut self, p: u32, span: &Range<usize>, new: bool) {
        let at = self.spans.len() as u32;
        self.spans
            .push((span.start as u32, span.end as u32, u32::MAX));
        if new {
            self.slot[p as usize] = self.chains.len() as u16;
            self.chains.push((at, at));
        } else {
            let chain = &mut self.chains[usize::from(self.slot[p as usize])];
            self.spans[chain.1 as usize].2 = at;
            chain.1 = at;
        }
    }

    /// Where a search of the whole of ASCII normalised `text` for a pattern with at most
    /// `after` words after its anchor can stop: a match ends within `after` words of one of
    /// its anchor's occurrences, all of which end by the last anchor occurrence found (of
    /// any pattern). The end is at a space or the text's end, where a word boundary looks
    /// the same with or without the text after it, so a search stopping there finds what a
    /// search of the whole text finds, and does not read the rest of a title.
    pub(crate) fn search_end(&self, text: &[u8], after: usize) -> usize {
        forward(text, self.last_end, after)
    }

    /// Whether a pattern can match again in ASCII normalised text after a match that ends
    /// at `end`: the next match starts at or after `end` and holds an anchor occurrence
    /// that starts inside it, so none is left when every anchor occurrence found (of any
    /// pattern) starts before `end`. Then the search that would only confirm there is no
    /// other match is not run (on a title, a third pass of the lazy DFAs per pattern).
    pub(crate) fn more_after(&self, end: usize) -> bool {
        self.last_start >= end
    }

    /// The merged windows of the pattern at place `i` of `order` in which a match with at
    /// most `before` words before its anchor and `after` after it can lie.
    pub(crate) fn windows(
        &self,
        i: usize,
        text: &[u8],
        before: usize,
        after: usize,
        out: &mut SmallVec<[Range<usize>; 4]>,
    ) {
        out.clear();
        let mut at = self.chains[i].0;
        while at != u32::MAX {
            let (start, end, next) = self.spans[at as usize];
            let w = back(text, start as usize, before)..forward(text, end as usize, after);
            let place = out.partition_point(|o| o.start <= w.start);
            out.insert(place, w);
            at = next;
        }
        let mut merged = 0;
        for k in 1..out.len() {
            if out[k].start <= out[merged].end {
                out[merged].end = out[merged].end.max(out[k].end);
            } else {
                merged += 1;
                out[merged] = out[k].clone();
            }
        }
        out.truncate(merged + 1);
    }
}

/// The position just after the `words`+1-th space before `at` (or 0): a match holding a
/// word that starts at `at` cannot start earlier.
fn back(text: &[u8], mut at: usize, words: usize) -> usize {
    let mut seen = 0;
    while at > 0 {
        if text[at - 1] == b' ' {
            seen += 1;
            if seen > words {
                break;
            }
        }
        at -= 1;
    }
    at
}

/// The position of the `words`+1-th space from `at` (or the text's end): a match holding
/// the text up to `at` cannot end later.
fn forward(text: &[u8], mut at: usize, words: usize) -> usize {
    let mut seen = 0;
    while at < text.len() {
        if text[at] == b' ' {
            seen += 1;
            if seen > words {
                break;
            }
        }
        at += 1;
    }
    at
}

/// Whether every required token of `lazy` can be inside `window`: a phrase among those
/// `found` (ordered by end) inside it, a word that is not a phrase as a substring of it, a
/// list with an entry found inside it (in ASCII text every place a token starts is a word
/// start, where the walk finds every phrase).
pub(crate) fn required_within(
    lazy: &LazyPattern,
    found: &[Occurrence],
    window: &Range<usize>,
    text: &[u8],
    finders: &[memchr::memmem::Finder<'static>],
    phrases: &Phrases,
    keys: Option<&WordKeys>,
) -> bool {
    let from = found.partition_point(|o| o.span.end <= window.start);
    let to = found.partition_point(|o| o.span.end <= window.end);
    let inside = found[from..to.max(from)]
        .iter()
        .filter(|o| o.span.start >= window.start);
    lazy.required.iter().all(|r| match r {
        Required::Words(words, _) => words.iter().any(|w| {
            if keys.is_some_and(|k| !k.may_hold(w.key)) {
                false
            } else if w.phrase == NO_PHRASE {
                finders[w.finder as usize]
                    .find(&text[window.clone()])
                    .is_some()
            } else {
                inside.clone().any(|o| o.phrase == w.phrase)
            }
        }),
        Required::List(bit) => inside
            .clone()
            .any(|o| phrases.lists_of(o.phrase) & bit != 0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CompileOptions, Matcher, Pack, Scope};
    use proptest::prelude::*;

    const PATTERNS: [&str; 6] = [
        "tired ~2 so? very much",
        "want ~1 to? die",
        "we ~~3 die",
        "so? tired ~1 now",
        "gone ~4 much",
        "(not now|never) ~2 want* to",
    ];

    /// A pack with every pattern of [`PATTERNS`], each alerting alone.
    fn matcher() -> Matcher {
        let terms: Vec<String> = PATTERNS.iter().map(|p| format!("{p:?}")).collect();
        let pack = format!(
            "[pack]\nid = \"w\"\nname = \"W\"\nversion = 1\nlanguage = \"en-GB\"\n\n\
             [categories.suicide]\nseverity = 5\n\n\
             [[terms]]\ncategory = \"suicide\"\nkind = \"pattern\"\nterms = [{}]\n",
            terms.join(", ")
        );
        let pack = Pack::parse(&pack, "w.toml").unwrap();
        Matcher::compile(&pack, &CompileOptions::default()).unwrap()
    }

    proptest! {
        /// On long texts (searched in windows) every pattern matches exactly where its
        /// regex does over the whole text. The words have no repeated letters or single
        /// letters, so the normalised text is the text itself.
        #[test]
        fn windows_find_what_the_whole_text_search_finds(
            words in proptest::collection::vec(
                proptest::sample::select(&["tired", "so", "very", "much", "we", "gone", "to",
                    "die", "want", "wanted", "not", "now", "never", "yes"][..]),
                30..90,
            ),
        ) {
            let text = words.join(" ");
            prop_assume!(text.len() >= WINDOWED_FROM);
            let m = matcher();
            let got: Vec<(String, Range<usize>)> = m
                .find(Scope::Typed, &text)
                .into_iter()
                .map(|f| (f.term.to_string(), f.span))
                .collect();
            let mut want = Vec::new();
            for p in PATTERNS {
                let compiled = crate::pattern::compile(p, &Default::default()).unwrap();
                let re = regex::Regex::new(&compiled.regex).unwrap();
                want.extend(re.find_iter(&text).map(|f| (p.to_string(), f.range())));
            }
            let mut got_sorted = got.clone();
            got_sorted.sort_by(|a, b| (a.1.start, a.1.end, &a.0).cmp(&(b.1.start, b.1.end, &b.0)));
            want.sort_by(|a, b| (a.1.start, a.1.end, &a.0).cmp(&(b.1.start, b.1.end, &b.0)));
            prop_assert_eq!(got_sorted, want);
        }
    }

    /// The windows around one pattern's anchor occurrences, as (start, end) pairs.
    fn windows(text: &[u8], spans: &[(usize, usize)], max_words: usize) -> Vec<(usize, usize)> {
        let mut a = Anchored::new(3, true);
        for &(start, end) in spans {
            a.add(1, &(start..end));
        }
        let mut out = SmallVec::new();
        a.windows(0, text, max_words, max_words, &mut out);
        out.iter().map(|w| (w.start, w.end)).collect()
    }

    #[test]
    fn windows_reach_the_pattern_length_either_side_and_merge() {
        let text = b"a b c d e f g h i j";
        // A match of two words holding 'e' (8..9) lies in 'd e f'; a window keeps one
        // word more either side.
        assert_eq!(windows(text, &[(8, 9)], 2), [(4, 13)]);
        assert_eq!(&text[4..13], b"c d e f g");
        assert_eq!(
            windows(text, &[(8, 9), (0, 1), (18, 19)], 1),
            [(0, 3), (6, 11), (16, 19)]
        );
        assert_eq!(windows(text, &[(4, 5), (0, 1)], 1), [(0, 7)]);
    }
}
