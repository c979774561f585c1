//! Disguised spellings a term is also heard in, made when a pack is compiled.
//!
//! Pupils run a phrase's words together ('killmyself', 'iwanttodie') or type its letters
//! one at a time, which the normaliser joins into one word ('k i l l m y s e l f' becomes
//! `kilmyself`). Rather than guess at run time where a long word could be split, every
//! multi-word literal term (and exception) is also entered in the phrase trie with its
//! spaces removed, as the same rule: the alert names the term as written and its context
//! shows what was typed. Only run-together forms long enough not to be an ordinary word
//! are made, and only of letters (digits beside letters would be read as leetspeak).
//! A long single word is also heard cut in two (`split`), and a short word of the pack glued
//! after a term is checked at run time (`glued_after`); misspelt forms are made in
//! `misspelt`. Word patterns run together are split at run time (`run_together`): their
//! readings are too many to store.

use crate::normalise::normalise_term;
use crate::pack::{Pack, TermKind};
use crate::phrases::PhrasesBuilder;
use crate::run_together::Splitter;
use std::collections::HashSet;

/// Fewest bytes of a run-together form: shorter ones ('nohomo', 'frebet') are too near
/// ordinary words and names.
pub(crate) const FUSED_MIN: usize = 8;

/// The run-together form of a normalised phrase of two or more words, normalised again
/// (a letter doubled across the join folds: `want to` becomes `wantodie`'s `wanto`), or
/// `None` for a single word, a phrase holding anything but ASCII letters, or a form
/// shorter than [`FUSED_MIN`].
pub(crate) fn fused(normalised: &str) -> Option<String> {
    if !normalised.contains(' ')
        || !normalised
            .bytes()
            .all(|b| b == b' ' || b.is_ascii_lowercase())
    {
        return None;
    }
    let joined: String = normalised.chars().filter(|&c| c != ' ').collect();
    let fused = normalise_term(&joined);
    (fused.len() >= FUSED_MIN).then_some(fused)
}

/// Fewest letters of a word typed with a space inside it, on either side of the space.
pub(crate) const SPLIT_PART_MIN: usize = 3;

/// Fewest letters of a word heard with a space inside it: shorter words cut in two make
/// ordinary pairs of short words.
pub(crate) const SPLIT_WORD_MIN: usize = 7;

/// A single-word term typed with a space inside it ('sui cide', 'over dose'): every way of
/// cutting the normalised word in two with at least [`SPLIT_PART_MIN`] letters on each
/// side. `None` for a phrase, or a word holding anything but ASCII letters or too short to
/// cut ([`SPLIT_WORD_MIN`]).
pub(crate) fn split(normalised: &str) -> Option<impl Iterator<Item = String> + '_> {
    let n = normalised.len();
    if n < SPLIT_WORD_MIN || !normalised.bytes().all(|b| b.is_ascii_lowercase()) {
        return None;
    }
    Some(
        (SPLIT_PART_MIN..=n - SPLIT_PART_MIN)
            .map(move |k| format!("{} {}", &normalised[..k], &normalised[k..])),
    )
}

/// The words a pack knows: every word of its phrases of more than one word, of its
/// exceptions, cues and list entries, and the whole words of its word patterns. A word cut
/// in two is heard only where neither half is one of them: 'bar code' and 'race war' are
/// ordinary words side by side, 'sui cide' is not. A single-word term is not counted: a
/// risk word of its own ('sui') does not make a cut benign.
pub(crate) struct Vocabulary(HashSet<String>, Vec<String>);

impl Vocabulary {
    pub(crate) fn of(pack: &Pack, phrases: &PhrasesBuilder) -> Vocabulary {
        let mut words: HashSet<String> = phrases
            .phrases_besides_single_terms()
            .flat_map(|p| p.split(' '))
            .map(str::to_string)
            .collect();
        let entries = pack.lists.iter().flat_map(|l| l.words.iter());
        for entry in entries {
            words.extend(normalise_term(entry).split(' ').map(str::to_string));
        }
        // A pattern's whole words: not its prefixes (`sui*`), lists or gaps.
        let patterns = pack.terms.iter().filter(|t| t.kind == TermKind::Pattern);
        for text in patterns.map(|t| t.text.as_str()) {
            words.extend(crate::pattern::whole_words(text));
        }
        // One-word terms, which a long word may be split into (see `run_together`).
        let single = pack.terms.iter().filter(|t| t.kind == TermKind::Word);
        let terms = single.map(|t| normalise_term(&t.text));
        let terms = terms.filter(|t| !t.contains(' ')).collect();
        Vocabulary(words, terms)
    }

    /// The words that may be glued after a one-word term (see [`glued_after`]).
    pub(crate) fn glue(&self) -> Glue {
        let words = self
            .0
            .iter()
            .filter(|w| (GLUED_MIN..=GLUED_MAX).contains(&w.len()));
        let words = words.filter(|w| w.bytes().all(|b| b.is_ascii_lowercase()));
        let splitter = Splitter::new(
            self.0.iter().map(String::as_str),
            self.1.iter().map(String::as_str),
        );
        Glue(words.map(|w| w.as_bytes().into()).collect(), splitter)
    }

    /// Whether `word` is a word of the pack.
    pub(crate) fn knows(&self, word: &str) -> bool {
        self.0.contains(word)
    }

    /// Whether `form`, a word cut in two by [`split`], may be heard: neither half is a word
    /// of the pack.
    pub(crate) fn may_cut(&self, form: &str) -> bool {
        form.split(' ').all(|half| !self.0.contains(half))
    }
}

/// Fewest letters of a word glued after a run-together form ('killyourselfnow').
pub(crate) const GLUED_MIN: usize = 3;

/// Most letters of a word glued after a run-together form: longer words of the pack make
/// compounds with a form's last word ('endmylifestyle').
pub(crate) const GLUED_MAX: usize = 4;

/// The words that may be glued after a one-word term: the pack's words (see
/// [`Vocabulary`]) of [`GLUED_MIN`] to [`GLUED_MAX`] letters; and the words a long word may
/// be split into at run time (see `run_together`).
#[derive(Debug, Default)]
pub(crate) struct Glue(HashSet<Box<[u8]>>, Splitter);

impl Glue {
    /// What splits a long word into the pack's words (see `run_together`).
    pub(crate) fn splitter(&self) -> &Splitter {
        &self.1
    }
}

/// Whether the one-word term or run-together form found at `span` of normalised `text`
/// goes on into a word glued after it ('killyourself' in 'killyourselfnow', 'sendnudes' in
/// 'sendnudespls'): the form is at least [`FUSED_MIN`] letters long and the rest of the
/// word is one of the pack's words of [`GLUED_MIN`] to [`GLUED_MAX`] letters. An ending
/// ('killmyselfs') or the rest of a compound ('endmylifestyle') is not a word glued on; a
/// hashtag or an address is skipped as for any disguised form.
pub(crate) fn glued_after(text: &[u8], span: &std::ops::Range<usize>, glue: &Glue) -> bool {
    let form = &text[span.clone()];
    if form.len() < FUSED_MIN || form.contains(&b' ') {
        return false;
    }
    let rest = text[span.end..]
        .iter()
        .take_while(|b| b.is_ascii_lowercase())
        .count();
    (GLUED_MIN..=GLUED_MAX).contains(&rest)
        && text.get(span.end + rest).is_none_or(|&b| b == b' ')
        && glue.0.contains(&text[span.end..span.end + rest])
}

/// Whether the original text `span` of a disguised form was typed as words: not a hashtag,
/// a mention, a file name or a web address ('#WhiteGenocide', '@anjemchoudary',
/// 'www.muslimsout.com'), where words run together name something rather than hide it.
pub(crate) fn typed_as_words(original: &str, span: std::ops::Range<usize>) -> bool {
    let bytes = original.as_bytes();
    let before = span.start.checked_sub(1).map(|i| bytes[i]);
    let after = bytes.get(span.end).copied();
    let name_before = matches!(before, Some(b'#' | b'@' | b'.' | b'/' | b'_' | b'\\'));
    let name_after = match after {
        Some(b'.') => bytes
            .get(span.end + 1)
            .is_some_and(|b| b.is_ascii_alphanumeric()),
        Some(b'/' | b'_' | b'@' | b'\\') => true,
        _ => false,
    };
    !name_before && !name_after
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_words_together_and_folds_the_join() {
        assert_eq!(fused("kil myself").as_deref(), Some("kilmyself"));
        assert_eq!(fused("i want to die").as_deref(), Some("iwantodie"));
        assert_eq!(fused("end my life").as_deref(), Some("endmylife"));
    }

    #[test]
    fn leaves_short_forms_single_words_and_digits() {
        assert_eq!(fused("no homo"), None);
        assert_eq!(fused("suicide"), None);
        assert_eq!(fused("bet 10 get 30"), None);
        assert_eq!(fused("caf\u{e9} au lait"), None);
    }

    #[test]
    fn names_are_not_words_typed() {
        let at = |t: &str, w: &str| {
            let s = t.find(w).unwrap();
            typed_as_words(t, s..s + w.len())
        };
        assert!(at("i want to killmyself now", "killmyself"));
        assert!(at("killmyself", "killmyself"));
        assert!(at("killmyself. bye", "killmyself"));
        assert!(!at("#WhiteGenocide march", "WhiteGenocide"));
        assert!(!at("@anjemchoudary said", "anjemchoudary"));
        assert!(!at("www.muslimsout.com", "muslimsout"));
        assert!(!at("see /home/killmyself/notes", "killmyself"));
    }

    #[test]
    fn cuts_a_word_in_two() {
        let cuts: Vec<String> = split("suicide").unwrap().collect();
        assert_eq!(cuts, ["sui cide", "suic ide"]);
        let cuts: Vec<String> = split("suicidal").unwrap().collect();
        assert_eq!(cuts, ["sui cidal", "suic idal", "suici dal"]);
        assert!(split("suicid").is_none());
        assert!(split("kys").is_none());
        assert!(split("kil myself").is_none());
        assert!(split("h4te").is_none());
    }

    #[test]
    fn a_word_glued_after_a_form() {
        let words = ["now", "babe", "style", "already"];
        let glue = Glue(
            words.iter().map(|w| w.as_bytes().into()).collect(),
            Splitter::default(),
        );
        let glued = |t: &str, form: &str| {
            let s = t.find(form).unwrap();
            glued_after(t.as_bytes(), &(s..s + form.len()), &glue)
        };
        assert!(glued("kilyourselfnow", "kilyourself"));
        assert!(glued("just kilyourselfbabe ok", "kilyourself"));
        assert!(!glued("kilyourselfalready", "kilyourself"));
        assert!(!glued("kilyourselfs", "kilyourself"));
        assert!(!glued("endmylifestyle", "endmylife"));
        assert!(!glued("kilyourself now", "kilyourself"));
        assert!(!glued("kysnow", "kys"));
        assert!(!glued("kilyourselfnow2", "kilyourself"));
    }
}
