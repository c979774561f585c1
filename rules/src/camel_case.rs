//! Camel-cased runs of words ('ImGonnaKillMyself', 'JustDieAlready', 'iWantToDie'): a
//! capital letter after a small one inside a run of letters is where a word breaks, as a
//! space would be. The splitter of words run together (see `run_together`) reads such a run
//! as the words its capitals mark; a run with one capital at its start is a name or a heading
//! and is not split ('Wimbledon', 'Émile').

use crate::normalise::Normalised;
use std::ops::Range;

/// Where the word at `range` of `n` (normalised from `original`) breaks at its capitals, as
/// ranges of the normalised word; two neighbours share a letter the normaliser folded into
/// one ('WantTo' is `wanto`: `want` and `to`). `None` unless a capital follows a small letter
/// inside the word as typed.
pub(crate) fn humps(
    n: &Normalised,
    range: Range<usize>,
    original: &str,
) -> Option<Vec<Range<usize>>> {
    let typed = &original[n.original_span(range.clone())];
    if !has_inner_capital(typed) {
        return None;
    }
    let base = range.start;
    let mut humps = Vec::new();
    let mut start = 0;
    for i in range.clone() {
        let (from, to) = (n.starts[i] as usize, n.ends[i] as usize);
        let letters = &original[from..to];
        let mut chars = letters.chars();
        let opens = chars.next().is_some_and(char::is_uppercase);
        if opens && i > base && i - base > start {
            humps.push(start..i - base);
            start = i - base;
        } else if chars.any(char::is_uppercase) && i > base {
            // A capital folded into the letter before it ('tT' in 'WantTo'): both words
            // hold that letter.
            humps.push(start..i - base + 1);
            start = i - base;
        }
    }
    humps.push(start..range.len());
    (humps.len() >= 2).then_some(humps)
}

/// Whether `typed` has a capital letter right after a letter that is not one (`Kill` in
/// 'imKill', not 'NASA' or 'Émile').
fn has_inner_capital(typed: &str) -> bool {
    if typed.is_ascii() {
        // Most words have no capital after their first letter: one cheap pass says so.
        if !typed.as_bytes().iter().skip(1).any(u8::is_ascii_uppercase) {
            return false;
        }
        return typed
            .as_bytes()
            .windows(2)
            .any(|w| w[0].is_ascii_lowercase() && w[1].is_ascii_uppercase());
    }
    let mut before_small = false;
    typed.chars().any(|c| {
        let inner = before_small && c.is_uppercase();
        before_small = c.is_lowercase();
        inner
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalise::normalise;

    fn words(text: &str) -> Option<Vec<String>> {
        let n = normalise(text);
        let word = n.as_str().to_string();
        let humps = humps(&n, 0..word.len(), text)?;
        Some(humps.into_iter().map(|h| word[h].to_string()).collect())
    }

    #[test]
    fn capitals_inside_a_run_break_it() {
        assert_eq!(
            words("ImGonnaKillMyself").unwrap(),
            ["im", "gona", "kil", "myself"]
        );
        assert_eq!(words("JustDieAlready").unwrap(), ["just", "die", "already"]);
        // 'tT' folds into one letter: both words hold it.
        assert_eq!(words("IWantToDie").unwrap(), ["i", "want", "to", "die"]);
        assert_eq!(words("iWantToDie").unwrap(), ["i", "want", "to", "die"]);
    }

    #[test]
    fn a_name_a_heading_or_capitals_alone_do_not_break() {
        assert_eq!(words("Wimbledon"), None);
        assert_eq!(words("Émile"), None);
        assert_eq!(words("Łukasz"), None);
        assert_eq!(words("NASA"), None);
        assert_eq!(words("killmyself"), None);
        assert_eq!(words("ÉmileKysonova").unwrap(), ["emile", "kysonova"]);
    }
}
