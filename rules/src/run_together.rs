//! Words run together, split at run time into the words a pack knows.
//!
//! A run-together form made when the pack is compiled (see `disguised`) costs one phrase in
//! the trie, so only terms and small word patterns have them. A word pattern with many
//! readings ('iwanttoendmylife' through `{i} {want} to {die}`), a word glued before a term
//! ('pleasekys', 'imgonnakillmyself') and a short term with a word glued on ('kysloser') are
//! heard here instead: a long word that is not itself a word of the pack is split into the
//! fewest words of the pack, and when it splits, the text is scanned once more with that word
//! written out. No form is stored; the alert names the rule as written and its context shows
//! the word as typed.

use crate::camel_case::humps;
use crate::disguised::typed_as_words;
use crate::initials::spelt_as_initials;
use crate::matcher::Matcher;
use crate::normalise::{normalise, normalise_term, Normalised};
use crate::scan::Scan;
use crate::split_memory::{look_back, remember_split};
use crate::word_block::Words;
use crate::Scope;
use std::ops::Range;

/// Fewest letters of a word split here: shorter ones are ordinary words or a term with one
/// letter beside it.
pub(crate) const SPLIT_FROM: usize = 5;

/// Most letters of a word split here (a longer run of letters is not a few words).
pub(crate) const SPLIT_UP_TO: usize = 48;

/// How far back from its end a typed tail's words are split at each scan: a word that
/// splits makes the tail be scanned when it is finished (see `Matcher::may_end_match`), so
/// it is heard then, with the words before it; looking again at every earlier word at every
/// scan cost a fifth of a typed window's time.
pub(crate) const TYPED_LOOK_BACK: usize = SPLIT_UP_TO + 1;

/// Most letters of the short term that a word split in only two must hold ('pleasekys',
/// 'kysloser'): a longer one is the end or start of an ordinary word as often ('therapist'
/// is not 'the rapist').
const SHORT_TERM_MAX: usize = 4;

/// The words that a short term is heard glued to ('pleasekys', 'kysloser'): words of chat
/// that go with an order or an insult. A pack's own words are too many for this: a short
/// term with any of them glued on is too often a name ('Blunkett') or an ordinary word.
const GLUED_WORDS: &[&str] = &[
    "please",
    "pls",
    "plz",
    "just",
    "go",
    "do",
    "now",
    "already",
    "again",
    "today",
    "tonight",
    "asap",
    "rn",
    "fr",
    "lol",
    "omg",
    "stfu",
    "and",
    "u",
    "you",
    "ur",
    "yourself",
    "urself",
    "loser",
    "idiot",
    "freak",
    "bitch",
    "fatty",
    "ugly",
    "weirdo",
    "retard",
    "nobody",
    "bro",
    "bye",
    "honestly",
    "literally",
    "seriously",
    "bruh",
    "tbh",
    "ngl",
    "lowkey",
    "lmao",
    "lmfao",
    "srsly",
    "deadass",
];

/// The words of two letters a long word may be split into: a pack's words of two letters
/// include abbreviations and pieces ('st', 'um') that make any long word split.
const SHORT_WORDS: &[&str] = &[
    "im", "me", "my", "to", "be", "so", "no", "go", "do", "of", "on", "in", "it", "is", "up", "at",
    "an", "as", "or", "we", "he", "us", "ur", "ya", "ok", "rn", "fr", "ye", "if", "by",
];

/// Fewest words of a split that a match must cover when the split is not a short term
/// glued to a word: one word of the pack inside a long word ('bled' in 'wimbledon') is not
/// words run together.
const COVERED_MIN: usize = 3;

/// The words a long word may be split into: every word the pack knows (see
/// `disguised::Vocabulary`) and its one-word terms, sorted; one-letter words only where they
/// are words ('i', 'a', 'u').
#[derive(Debug, Default)]
pub(crate) struct Splitter {
    words: Words,
    /// One-word terms of at most [`SHORT_TERM_MAX`] letters, sorted.
    short_terms: Vec<Box<str>>,
    /// [`GLUED_WORDS`] normalised, sorted.
    glued: Vec<String>,
    /// This splitter among those made in the process (the words a thread remembers are
    /// remembered per splitter).
    pub(crate) id: u64,
}

static SPLITTERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl Splitter {
    pub(crate) fn new<'a>(
        words: impl Iterator<Item = &'a str>,
        terms: impl Iterator<Item = &'a str>,
    ) -> Splitter {
        let usable = |w: &&str| {
            w.bytes().all(|b| b.is_ascii_lowercase())
                && match w.len() {
                    1 => matches!(*w, "i" | "a" | "u"),
                    2 => SHORT_WORDS.contains(w),
                    _ => true,
                }
        };
        let terms: Vec<&str> = terms.filter(usable).collect();
        let mut glued: Vec<String> = GLUED_WORDS.iter().map(|w| normalise_term(w)).collect();
        glued.sort();
        // Words of chat are split off too: 'honestlykillyourself' opens with one.
        let mut all: Vec<&str> = glued.iter().map(String::as_str).collect();
        for w in words.filter(usable).chain(terms.iter().copied()) {
            all.push(w);
        }
        all.sort_unstable();
        all.dedup();
        let mut short_terms: Vec<Box<str>> = terms
            .into_iter()
            .filter(|t| t.len() <= SHORT_TERM_MAX)
            .map(Box::from)
            .collect();
        short_terms.sort();
        short_terms.dedup();
        Splitter {
            words: Words::of(&all),
            short_terms,
            glued,
            id: SPLITTERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }

    fn knows(&self, word: &[u8]) -> bool {
        self.words.find(word).is_ok()
    }

    /// The words of the pack that `text` starts with, shortest first.
    fn starts(&self, text: &[u8], mut found: impl FnMut(usize)) {
        for len in 1..=text.len() {
            let prefix = &text[..len];
            let at = match self.words.find(prefix) {
                Ok(_) => {
                    found(len);
                    continue;
                }
                Err(at) => at,
            };
            // No word has this start: none has a longer one.
            if !self.words.get(at).is_some_and(|w| w.starts_with(prefix)) {
                return;
            }
        }
    }

    /// `word` (normalised, lower-case letters) split into the fewest words of the pack, as
    /// ranges of `word`; two neighbours may share a letter, which the normaliser folded
    /// ('iwantoendmylife': `want` and `to` share the `t`). `None` when the word is short, is
    /// a word of the pack, does not split, or splits in two without a short term.
    pub(crate) fn split(&self, word: &[u8]) -> Option<Vec<Range<usize>>> {
        let n = word.len();
        if !(SPLIT_FROM..=SPLIT_UP_TO).contains(&n)
            || !word.iter().all(u8::is_ascii_lowercase)
            || self.knows(word)
        {
            return None;
        }
        let pieces = self.fewest(word)?;
        if pieces.len() < 2 {
            return None;
        }
        if pieces.len() == 2
            && !self.glued_to_short_term(word, &pieces)
            && !self.chat_before_long_word(word, &pieces)
        {
            return None;
        }
        // Three words or more only in a word as long as a run-together form made when the
        // pack is compiled: a shorter one is most often an ordinary word ('tumbled').
        if pieces.len() > 2 && n < crate::disguised::FUSED_MIN {
            return None;
        }
        // In three words or more, a short term comes last ('goaheadandkys'): first, it is
        // more often a name's start ('kysonbeats').
        let (_, before_last) = pieces.split_last()?;
        if pieces.len() > 2
            && before_last
                .iter()
                .any(|p| self.is_short_term(&word[p.clone()]))
        {
            return None;
        }
        Some(pieces)
    }

    /// `word` (lower-case letters) as the fewest words of the pack, as ranges of `word`
    /// (neighbours may share a folded letter); `None` when it does not split.
    fn fewest(&self, word: &[u8]) -> Option<Vec<Range<usize>>> {
        let n = word.len();
        // best[i]: the fewest words covering word[..i], the start of the last of them and
        // where the words before it end (the same place, or one letter on where they share).
        let mut best: Vec<Option<(u8, usize, usize)>> = vec![None; n + 1];
        best[0] = Some((0, 0, 0));
        for i in 0..n {
            let Some((count, _, _)) = best[i] else {
                continue;
            };
            // The next word starts here, or one letter back where two words share it.
            for start in [Some(i), i.checked_sub(1)].into_iter().flatten() {
                self.starts(&word[start..], |len| {
                    let end = start + len;
                    if end <= i {
                        return;
                    }
                    let better = best[end].is_none_or(|(c, s, from)| {
                        count + 1 < c || (count + 1 == c && start == i && s != from)
                    });
                    if better {
                        best[end] = Some((count + 1, start, i));
                    }
                });
            }
        }
        let (count, _, _) = best[n]?;
        let mut pieces = Vec::with_capacity(count as usize);
        let mut end = n;
        while end > 0 {
            let (_, start, from) = best[end]?;
            pieces.push(start..end);
            end = from;
        }
        pieces.reverse();
        Some(pieces)
    }

    /// A camel-cased `word` (lower-case letters) split at its capitals into `humps` (see
    /// `camel_case`): each hump a word of the pack, or split into the fewest of them; `None`
    /// when one is not. Its capitals say where the words break, so two words are enough.
    pub(crate) fn split_humps(
        &self,
        word: &[u8],
        humps: &[Range<usize>],
    ) -> Option<Vec<Range<usize>>> {
        if word.len() > SPLIT_UP_TO || !word.iter().all(u8::is_ascii_lowercase) {
            return None;
        }
        let mut pieces = Vec::with_capacity(humps.len() + 2);
        for hump in humps {
            let letters = &word[hump.clone()];
            if self.knows(letters) {
                pieces.push(hump.clone());
            } else {
                let within = self.fewest(letters)?;
                pieces.extend(
                    within
                        .into_iter()
                        .map(|p| p.start + hump.start..p.end + hump.start),
                );
            }
        }
        (pieces.len() >= 2).then_some(pieces)
    }

    /// Which of `pieces` of `word` are words of chat ('honestly', 'just', 'already'), a bit
    /// each from the first: a match may leave them out and still cover the word.
    fn chat_words(&self, word: &[u8], pieces: &[Range<usize>]) -> u64 {
        let glued = |w: &[u8]| self.glued.binary_search_by(|g| g.as_bytes().cmp(w)).is_ok();
        let chat = pieces
            .iter()
            .enumerate()
            .filter(|(_, p)| glued(&word[(*p).clone()]));
        chat.fold(0, |bits, (i, _)| if i < 64 { bits | 1 << i } else { bits })
    }

    /// Whether a word split in two is a short term with one of [`GLUED_WORDS`] before or
    /// after it ('gokys', 'kysloser'; not 'kyste').
    fn glued_to_short_term(&self, word: &[u8], pieces: &[Range<usize>]) -> bool {
        let [first, second] = pieces else {
            return false;
        };
        let (first, second) = (&word[first.clone()], &word[second.clone()]);
        let glued = |w: &[u8]| self.glued.binary_search_by(|g| g.as_bytes().cmp(w)).is_ok();
        (self.is_short_term(second) && glued(first)) || (self.is_short_term(first) && glued(second))
    }

    /// Whether a word split in two is a word of chat before a long word of the pack
    /// ('tbhiwanttodie': `tbh` and the run-together form `iwantodie`).
    fn chat_before_long_word(&self, word: &[u8], pieces: &[Range<usize>]) -> bool {
        let [first, second] = pieces else {
            return false;
        };
        second.len() >= crate::disguised::FUSED_MIN
            && self.chat_words(word, std::slice::from_ref(first)) == 1
    }

    fn is_short_term(&self, piece: &[u8]) -> bool {
        self.short_terms
            .binary_search_by(|w| w.as_bytes().cmp(piece))
            .is_ok()
    }

    /// Whether the typed word `word` (normalised) splits: a typed text is scanned when such
    /// a word is finished.
    pub(crate) fn splits(&self, word: &str) -> bool {
        self.split_recent(word.as_bytes()).is_some()
    }
}

/// A text with its run-together words written out, and where each of them was.
struct WrittenOut {
    /// The normalised text with the words written out.
    text: String,
    /// The original text with the same words written out (punctuation, sentences and
    /// clauses as typed, for cues and weighing).
    original: String,
    /// (the word's range in the normalised text, its range in `text`), in order.
    words: Vec<(Range<usize>, Range<usize>)>,
    /// The words each was split into, as ranges of `text`, in order.
    pieces: Vec<Vec<Range<usize>>>,
    /// For each: which of its words are words of chat (a bit each, from the first), and
    /// whether its capitals split it (see `camel_case`).
    kinds: Vec<(u64, bool)>,
}

impl WrittenOut {
    /// Whether a match at `hit` of `text` covers enough of every split word it touches: a
    /// short term glued to a word, [`COVERED_MIN`] of its words, or all of them but words of
    /// chat ('honestlykillyourself', 'justdiealready', 'JustKys'); and it touches one.
    fn covers(&self, hit: &Range<usize>) -> bool {
        let mut touched = false;
        let enough = self.words.iter().zip(&self.pieces).zip(&self.kinds).all(
            |(((_, now), pieces), &(chat, camel))| {
                let touches = hit.start < now.end && now.start < hit.end;
                touched |= touches;
                let inside = |p: &Range<usize>| hit.start <= p.start && p.end <= hit.end;
                let covered = pieces.iter().filter(|p| inside(p)).count();
                let rest_is_chat = pieces
                    .iter()
                    .enumerate()
                    .all(|(i, p)| inside(p) || (i < 64 && chat & (1 << i) != 0));
                if camel {
                    // A product or a name in capitals ('YouTube', 'JustWank') is read as
                    // words only where the match is all of it, or two words or more of it
                    // and words of chat, and nothing outside it.
                    let within = now.start <= hit.start && hit.end <= now.end;
                    let all = covered == pieces.len() || (covered >= 2 && rest_is_chat);
                    return !touches || (within && all);
                }
                let all_but_chat = rest_is_chat && covered >= 2;
                !touches || pieces.len() == 2 || covered >= COVERED_MIN || all_but_chat
            },
        );
        // A match that touches no split word is the first scan's to find or not.
        touched && enough
    }
}

impl WrittenOut {
    /// The place in the normalised text of place `at` of the written-out text: inside a
    /// written-out word, that word's start (or end, for the end of a span).
    fn back(&self, at: usize, end: bool) -> usize {
        let mut delta: isize = 0;
        for (was, now) in &self.words {
            if at < now.start || (end && at == now.start) {
                break;
            }
            if at < now.end || (end && at == now.end) {
                return if end { was.end } else { was.start };
            }
            delta = now.end as isize - was.end as isize;
        }
        (at as isize - delta) as usize
    }
}

impl Matcher {
    /// After a scan of `n`: drop the matches read through initials (see `initials`), then
    /// add those heard with run-together words written out, looking only at words after
    /// byte `from` (a typed tail: see [`TYPED_LOOK_BACK`]).
    pub(crate) fn hear_disguised(
        &self,
        scope: Scope,
        n: &Normalised,
        original: &str,
        explain: bool,
        from: usize,
        scan: &mut Scan,
    ) {
        let from = look_back(self.glue.splitter().id, n.as_str(), from);
        self.hear_run_together(scope, n, original, explain, from, scan);
        // Letters spelt with marks have a mark inside the match: look only there (the
        // whole of a typed tail, at every scan, cost more than the rest of this).
        scan.hits.retain(|h| {
            let span = n.original_span(h.norm.clone());
            let marked = original.as_bytes()[span.clone()]
                .iter()
                .any(|&b| b == b'.' || b == b'-');
            !(marked && spelt_as_initials(original, span))
        });
    }

    /// Add to `scan` the matches heard in `n` with its run-together words written out (see
    /// [`Splitter`]), each mapped back to the words as typed. Nothing is done (no copy, no
    /// second scan) unless a word splits.
    fn hear_run_together(
        &self,
        scope: Scope,
        n: &Normalised,
        original: &str,
        explain: bool,
        from: usize,
        scan: &mut Scan,
    ) {
        let Some(written) = self.write_out(n, original, from) else {
            return;
        };
        let again = normalise(&written.original);
        if again.as_str() != written.text {
            return;
        }
        let heard = self.scan_in(scope, &again, &written.original, explain, None);
        let before = scan.hits.len();
        for mut hit in heard.hits {
            if !written.covers(&hit.norm) {
                continue;
            }
            hit.norm = written.back(hit.norm.start, false)..written.back(hit.norm.end, true);
            let known = scan.hits[..before].iter().any(|h| {
                h.rule == hit.rule && h.norm.start < hit.norm.end && hit.norm.start < h.norm.end
            });
            if !known {
                scan.hits.push(hit);
            }
        }
        if scan.hits.len() > before {
            scan.hits.sort_by(|a, b| {
                (a.norm.start, a.norm.end, a.rule).cmp(&(b.norm.start, b.norm.end, b.rule))
            });
        }
    }

    /// `n`'s text with every word that splits written out as its words, or `None` when no
    /// word does; only words that start after byte `from` are looked at. A word in a
    /// hashtag, a mention, a file name or an address is left as it is.
    fn write_out(&self, n: &Normalised, original: &str, from: usize) -> Option<WrittenOut> {
        let text = n.as_str();
        let splitter = self.glue.splitter();
        let mut out: Option<WrittenOut> = None;
        let (mut copied, mut copied_original) = (0, 0);
        // The first word after `from` (a space is one byte: no char is cut).
        let mut at = match from.checked_sub(1) {
            Some(before) if before < text.len() => text.as_bytes()[before..]
                .iter()
                .position(|&b| b == b' ')
                .map_or(text.len(), |p| before + p + 1),
            Some(_) => text.len(),
            None => 0,
        };
        // Word by word, by bytes (a `str::split` cost more than the rest of a title's look).
        let bytes = text.as_bytes();
        while at <= text.len() {
            let end = bytes[at..]
                .iter()
                .position(|&b| b == b' ')
                .map_or(text.len(), |p| at + p);
            let range = at..end;
            at = end + 1;
            if range.len() < SPLIT_FROM {
                continue;
            }
            let word = &text[range.clone()];
            let typed = n.original_span(range.clone());
            // Capitals inside a run break it into words ('ImGonnaKillMyself'); one capital
            // at its start makes it a name or a heading ('Wimbledon', 'Blunkett', 'Émile').
            let (pieces, camel) = match humps(n, range.clone(), original) {
                Some(humps) => match splitter.split_humps(word.as_bytes(), &humps) {
                    Some(pieces) => (pieces, true),
                    None => continue,
                },
                None => match splitter.split_recent(word.as_bytes()) {
                    Some(p) if !original[typed.clone()].chars().any(char::is_uppercase) => {
                        (p, false)
                    }
                    _ => continue,
                },
            };
            if !typed_as_words(original, typed.clone()) {
                continue;
            }
            let chat = splitter.chat_words(word.as_bytes(), &pieces);
            remember_split(splitter.id, word.as_bytes());
            let w = out.get_or_insert_with(|| WrittenOut {
                text: String::with_capacity(text.len() + 16),
                original: String::with_capacity(original.len() + 16),
                words: Vec::new(),
                pieces: Vec::new(),
                kinds: Vec::new(),
            });
            w.text.push_str(&text[copied..range.start]);
            w.original.push_str(&original[copied_original..typed.start]);
            copied_original = typed.end;
            let start = w.text.len();
            let mut written = Vec::with_capacity(pieces.len());
            for (i, p) in pieces.iter().enumerate() {
                if i > 0 {
                    w.text.push(' ');
                }
                let at = w.text.len();
                w.text.push_str(&word[p.clone()]);
                written.push(at..w.text.len());
            }
            w.original.push_str(&w.text[start..]);
            w.words.push((range.clone(), start..w.text.len()));
            w.pieces.push(written);
            w.kinds.push((chat, camel));
            copied = range.end;
        }
        let mut w = out?;
        w.text.push_str(&text[copied..]);
        w.original.push_str(&original[copied_original..]);
        Some(w)
    }
}

#[cfg(test)]
mod tests;
