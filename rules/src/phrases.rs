//! Phrases found from word starts: one trie holds every normalised phrase a text is
//! searched for (literal terms, word patterns' anchors, exceptions, cues and the entries
//! of word lists that patterns require), each with what it stands for, and is walked from
//! the start of each word of the normalised text (an anchored walk), not searched through
//! it.
//!
//! Every term, anchor, exception and cue must start on a word boundary, so a search that
//! reports occurrences starting anywhere (an Aho-Corasick automaton with failure
//! transitions) does work that is thrown away. The walk from each word start stops as soon
//! as no phrase continues (usually within the word) and reports the same occurrences in the
//! same order as such a search would. One trie for all phrases walks each word once,
//! however many kinds of phrase start with it; it is compact (see `trie`), so the walk
//! stays in cache and compiling a pack costs little memory.

use crate::trie::PhraseTrie;
use crate::word_keys::WordKeys;
use std::collections::HashMap;
use std::ops::Range;

/// What a phrase stands for; most phrases have one role.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Roles<'a> {
    /// Literal terms (rule indices) whose normalised text it is.
    pub(crate) rules: &'a [u32],
    /// Word patterns anchored on it (see [`anchor`]).
    pub(crate) anchors: &'a [u32],
    /// Exceptions (indices) whose normalised phrase it is.
    pub(crate) exceptions: &'a [u32],
    /// Cue groups (indices) with this phrase.
    pub(crate) cues: &'a [u32],
}

/// An anchor of [`Roles::anchors`]: (pattern index, the anchor is a prefix).
pub(crate) fn anchor(a: u32) -> (u32, bool) {
    (a & !PREFIX, a & PREFIX != 0)
}

const PREFIX: u32 = 1 << 31;

/// A rule of [`Roles::rules`]: (rule index, the phrase is a disguised form of its term, see
/// `disguised`).
pub(crate) fn rule_of(r: u32) -> (u32, bool) {
    (r & !DISGUISED, r & DISGUISED != 0)
}

const DISGUISED: u32 = 1 << 31;

/// Where a phrase's roles are in [`Phrases::arena`]: rules, anchors, exceptions and cues
/// one after another from `start`. 24 bytes a phrase, so a phrase found costs one or two
/// cache lines however many roles it has.
#[derive(Clone, Copy, Debug, Default)]
struct RoleIndex {
    lists: u64,
    start: u32,
    counts: [u16; 4],
}

#[derive(Debug, Default)]
struct RolesBuilder {
    rules: Vec<u32>,
    anchors: Vec<(u32, bool)>,
    exceptions: Vec<u32>,
    cues: Vec<u32>,
    lists: u64,
}

/// Collects the phrases and their roles while a pack is compiled.
#[derive(Debug, Default)]
pub(crate) struct PhrasesBuilder {
    phrases: Vec<String>,
    index: HashMap<String, usize>,
    roles: Vec<RolesBuilder>,
}

impl PhrasesBuilder {
    fn entry(&mut self, phrase: &str) -> &mut RolesBuilder {
        let i = match self.index.get(phrase) {
            Some(&i) => i,
            None => {
                self.phrases.push(phrase.to_string());
                self.roles.push(RolesBuilder::default());
                self.index
                    .insert(phrase.to_string(), self.phrases.len() - 1);
                self.phrases.len() - 1
            }
        };
        &mut self.roles[i]
    }

    pub(crate) fn rule(&mut self, phrase: &str, rule: u32) {
        // A pack has far fewer than 2^31 terms: the top bit is the disguised flag.
        debug_assert_eq!(rule & DISGUISED, 0);
        self.entry(phrase).rules.push(rule);
    }

    /// A disguised form of a literal term (see `disguised`).
    pub(crate) fn disguised_rule(&mut self, phrase: &str, rule: u32) {
        debug_assert_eq!(rule & DISGUISED, 0);
        self.entry(phrase).rules.push(rule | DISGUISED);
    }

    pub(crate) fn anchor(&mut self, phrase: &str, pattern: u32, prefix: bool) {
        self.entry(phrase).anchors.push((pattern, prefix));
    }

    pub(crate) fn exception(&mut self, phrase: &str, exception: u32) {
        self.entry(phrase).exceptions.push(exception);
    }

    pub(crate) fn cue(&mut self, phrase: &str, cue: u32) {
        let cues = &mut self.entry(phrase).cues;
        if !cues.contains(&cue) {
            cues.push(cue);
        }
    }

    pub(crate) fn list_entry(&mut self, phrase: &str, bit: u64) {
        self.entry(phrase).lists |= bit;
    }

    /// Whether a phrase already collected stands for a literal term (its text, or a
    /// disguised form of it).
    pub(crate) fn has_rules(&self, phrase: &str) -> bool {
        self.index
            .get(phrase)
            .is_some_and(|&i| !self.roles[i].rules.is_empty())
    }

    /// Whether a phrase already collected is some literal term's own text (not only a
    /// disguised form of one).
    pub(crate) fn has_plain_rules(&self, phrase: &str) -> bool {
        self.index
            .get(phrase)
            .is_some_and(|&i| self.roles[i].rules.iter().any(|&r| r & DISGUISED == 0))
    }

    /// Every phrase collected so far but those of one word that are only literal terms or
    /// prefixes of a word pattern.
    pub(crate) fn phrases_besides_single_terms(&self) -> impl Iterator<Item = &str> {
        self.phrases.iter().zip(&self.roles).filter_map(|(p, r)| {
            // A prefix anchor (`sui*`) is not a word either.
            let only_term = r.anchors.iter().all(|&(_, prefix)| prefix)
                && r.exceptions.is_empty()
                && r.cues.is_empty()
                && r.lists == 0;
            (p.contains(' ') || !only_term).then_some(p.as_str())
        })
    }

    /// The id of a phrase already collected.
    pub(crate) fn id(&self, phrase: &str) -> Option<u32> {
        self.index.get(phrase).map(|&i| i as u32)
    }

    /// The automaton.
    pub(crate) fn build(self) -> Result<Phrases, String> {
        let automaton = if self.phrases.is_empty() {
            None
        } else {
            Some(PhraseAutomaton::new(&self.phrases)?)
        };
        let mut arena = Vec::new();
        let mut roles = Vec::with_capacity(self.roles.len());
        for r in self.roles {
            let start = u32::try_from(arena.len()).map_err(|_| "too many roles".to_string())?;
            let mut counts = [0u16; 4];
            let anchors: Vec<u32> = r
                .anchors
                .iter()
                .map(|&(p, prefix)| {
                    if p & PREFIX != 0 {
                        return Err("too many word patterns".to_string());
                    }
                    Ok(if prefix { p | PREFIX } else { p })
                })
                .collect::<Result<_, _>>()?;
            for (i, part) in [&r.rules, &anchors, &r.exceptions, &r.cues]
                .into_iter()
                .enumerate()
            {
                counts[i] = u16::try_from(part.len())
                    .map_err(|_| "a phrase has more than 65,535 roles of one kind".to_string())?;
                arena.extend_from_slice(part);
            }
            roles.push(RoleIndex {
                lists: r.lists,
                start,
                counts,
            });
        }
        Ok(Phrases {
            automaton,
            roles: roles.into_boxed_slice(),
            arena: arena.into_boxed_slice(),
        })
    }
}

/// Bytes after which no pattern token starts unless they are spaces: ASCII word
/// characters for `(?-u:\b)` (letters, digits, `_`), and the space.
static WORD_OR_SPACE: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c == b' ' || c == b'_' || c.is_ascii_alphanumeric();
        b += 1;
    }
    t
};

/// Every phrase of a compiled pack in one automaton, with its roles.
#[derive(Debug, Default)]
pub(crate) struct Phrases {
    automaton: Option<PhraseAutomaton>,
    roles: Box<[RoleIndex]>,
    /// Every phrase's roles, one after another.
    arena: Box<[u32]>,
}

impl Phrases {
    /// Occurrences of phrases starting on a word start of `text` (see
    /// [`PhraseAutomaton::find_in`]).
    pub(crate) fn find(&self, text: &[u8], out: &mut Found) {
        if let Some(a) = &self.automaton {
            a.find_in(text, 0..text.len(), out, |_| {});
        }
    }

    /// [`Phrases::find`], adding the key of every word of `text` to `keys` on the way (see
    /// `word_keys`; for ASCII text).
    pub(crate) fn find_with_keys(&self, text: &[u8], out: &mut Found, keys: &mut WordKeys) {
        match &self.automaton {
            Some(a) => a.find_in(text, 0..text.len(), out, |start| keys.add_word(text, start)),
            None => *keys = WordKeys::of(text),
        }
    }

    /// Append the occurrences starting at `start` (a word start) of `text`, by end, and
    /// return the end of the bytes the walk read, or `trie::RAN_OUT` when it reached the
    /// end of `text`.
    pub(crate) fn walk_from(&self, text: &[u8], start: usize, out: &mut Found) -> usize {
        match &self.automaton {
            Some(a) => a.trie.walk(text, start, text.len(), |phrase, at| {
                out.push(Occurrence {
                    phrase,
                    span: start..at,
                })
            }),
            None => start + 1,
        }
    }

    pub(crate) fn roles(&self, phrase: u32) -> Roles<'_> {
        let r = &self.roles[phrase as usize];
        let [a, b, c, d] = r.counts.map(usize::from);
        let start = r.start as usize;
        let all = &self.arena[start..start + a + b + c + d];
        let (rules, rest) = all.split_at(a);
        let (anchors, rest) = rest.split_at(b);
        let (exceptions, cues) = rest.split_at(c);
        Roles {
            rules,
            anchors,
            exceptions,
            cues,
        }
    }

    /// The bits of the required word lists that `phrase` is an entry of.
    pub(crate) fn lists_of(&self, phrase: u32) -> u64 {
        self.roles[phrase as usize].lists
    }

    /// The bits of the required word lists with an entry in `text` that starts where a
    /// pattern's list token can start: at a word start (`found`, from [`Phrases::find`]),
    /// or after any other byte that is not an ASCII word character (a non-ASCII letter),
    /// where a regex word boundary `(?-u:\b)` also is.
    pub(crate) fn lists_present(&self, text: &[u8], found: &[Occurrence]) -> u64 {
        let mut mask = found
            .iter()
            .fold(0, |m, o| m | self.roles[o.phrase as usize].lists);
        // The normaliser writes ASCII only as lower-case letters, digits and spaces: in an
        // ASCII text every place a token can start is a word start.
        debug_assert!(!text.is_ascii() || text.iter().all(|&b| WORD_OR_SPACE[usize::from(b)]));
        if let Some(a) = self.automaton.as_ref().filter(|_| !text.is_ascii()) {
            let mut out = Found::new();
            for (i, &b) in text.iter().enumerate() {
                if !WORD_OR_SPACE[usize::from(b)] && i + 1 < text.len() {
                    a.walk(text, i + 1, text.len(), &mut out);
                }
            }
            mask = out
                .iter()
                .fold(mask, |m, o| m | self.roles[o.phrase as usize].lists);
        }
        mask
    }
}

/// An occurrence of a phrase starting on a word boundary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Occurrence {
    /// Index of the phrase in the list the automaton was built from.
    pub(crate) phrase: u32,
    pub(crate) span: Range<usize>,
}

/// The occurrences found in one text: on the stack for a title or a typed tail.
pub(crate) type Found = smallvec::SmallVec<[Occurrence; 32]>;

/// An automaton over normalised phrases, walked from word starts.
#[derive(Debug)]
pub(crate) struct PhraseAutomaton {
    trie: PhraseTrie,
}

impl PhraseAutomaton {
    /// Build over `phrases` (distinct).
    pub(crate) fn new<P: AsRef<[u8]>>(phrases: &[P]) -> Result<PhraseAutomaton, String> {
        Ok(PhraseAutomaton {
            trie: PhraseTrie::new(phrases)?,
        })
    }

    /// Append to `out` every occurrence that starts on a word start of `text` (offset 0 or
    /// after a space) and lies inside `range`, ordered as an overlapping search reports
    /// them: by end, then by start. Whether it ends on a word boundary is the caller's.
    /// `at_word` is called with each word start walked from.
    pub(crate) fn find_in(
        &self,
        text: &[u8],
        range: Range<usize>,
        out: &mut Found,
        mut at_word: impl FnMut(usize),
    ) {
        let first = out.len();
        let end = range.end.min(text.len());
        let mut start = range.start;
        while start < end {
            if start == 0 || text[start - 1] == b' ' {
                at_word(start);
                self.walk(text, start, end, out);
            }
            // Words are short: a plain loop beats a vectorised search here.
            start = match text[start..end].iter().position(|&b| b == b' ') {
                Some(i) => start + i + 1,
                None => break,
            };
        }
        // Collected by start, then by end; a stable sort by end keeps starts in order. Only
        // phrases of more than one word end after a later word's start, so an insertion
        // sort moves few.
        let found = &mut out[first..];
        for i in 1..found.len() {
            let mut j = i;
            while j > 0 && found[j - 1].span.end > found[j].span.end {
                found.swap(j - 1, j);
                j -= 1;
            }
        }
    }

    /// The occurrences starting at `start` and ending by `end`, by end.
    fn walk(&self, text: &[u8], start: usize, end: usize, out: &mut Found) {
        self.trie.walk(text, start, end, |phrase, at| {
            out.push(Occurrence {
                phrase,
                span: start..at,
            })
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aho_corasick::{AhoCorasick, MatchKind};

    /// What an overlapping Aho-Corasick search reports that starts on a word start.
    fn overlapping(phrases: &[&str], text: &str, range: Range<usize>) -> Vec<Occurrence> {
        let ac = AhoCorasick::builder()
            .match_kind(MatchKind::Standard)
            .build(phrases)
            .unwrap();
        let bytes = text.as_bytes();
        ac.find_overlapping_iter(aho_corasick::Input::new(text).range(range))
            .filter(|m| m.start() == 0 || bytes[m.start() - 1] == b' ')
            .map(|m| Occurrence {
                phrase: m.pattern().as_u32(),
                span: m.range(),
            })
            .collect()
    }

    proptest::proptest! {
        /// On random phrases and texts over a small alphabet (so phrases share prefixes,
        /// end inside one another and cross word boundaries), the trie's walk from word
        /// starts reports what the overlapping search does, in the same order.
        #[test]
        fn walk_is_an_overlapping_search_from_word_starts(
            phrases in proptest::collection::btree_set("[ab é]{1,6}", 1..40),
            text in "[ab é]{0,40}",
            cut in 0usize..8,
        ) {
            let phrases: Vec<&str> = phrases.iter().map(String::as_str).collect();
            let aut = PhraseAutomaton::new(&phrases).unwrap();
            let mut end = text.len().saturating_sub(cut);
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            for range in [0..text.len(), 0..end] {
                let mut got = Found::new();
                aut.find_in(text.as_bytes(), range.clone(), &mut got, |_| {});
                let want = overlapping(&phrases, &text, range);
                proptest::prop_assert_eq!(got.as_slice(), want.as_slice());
            }
        }
    }

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
        let aut = PhraseAutomaton::new(&phrases).unwrap();
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
                let mut got = Found::new();
                aut.find_in(bytes, range.clone(), &mut got, |_| {});
                let want: Vec<Occurrence> = ac
                    .find_overlapping_iter(aho_corasick::Input::new(text).range(range.clone()))
                    .filter(|m| m.start() == 0 || bytes[m.start() - 1] == b' ')
                    .map(|m| Occurrence {
                        phrase: m.pattern().as_u32(),
                        span: m.range(),
                    })
                    .collect();
                assert_eq!(got.as_slice(), want.as_slice(), "{text:?} {range:?}");
            }
        }
    }
}
