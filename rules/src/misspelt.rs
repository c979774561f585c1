//! Misspelt forms of a term, made when a pack is compiled: a vowel dropped ('sucide'),
//! two neighbouring letters swapped ('siucidal', 'slef harm', 'cut mysefl') or a letter
//! written as another that sounds the same ('suiside'). A letter typed twice needs no form
//! of its own: the normaliser folds repeated letters ('selfharmm' is `selfharm`).
//!
//! Like the run-together forms of `disguised`, each is one more phrase in the trie standing
//! for the rule it was made from, so the alert names the term as written. The first letter
//! of a word is never changed (people misspell the middle of a word, and a first letter
//! dropped makes other words: 'slaughter', 'laughter'); a form that the normaliser would
//! shorten (a swap that makes a double letter) is left out, and so is one that is a word
//! the pack knows elsewhere (see `disguised::Vocabulary`).

/// Fewest letters of a single-word term heard misspelt: shorter words are a letter away
/// from too many ordinary ones ('heroin', 'heron').
pub(crate) const WORD_MIN: usize = 7;

/// Fewest letters of a word of a phrase heard with two letters swapped ('slef harm'); the
/// rest of the phrase keeps an ordinary word from passing for it.
pub(crate) const SWAP_MIN: usize = 4;

/// Letters written for others that sound the same, inside a word: `from` at a place
/// becomes `to`.
const SOUNDS: [(&str, &str); 6] = [
    ("c", "s"),
    ("s", "c"),
    ("c", "k"),
    ("k", "c"),
    ("ph", "f"),
    ("z", "s"),
];

/// The misspelt forms of a normalised term, each with the misspelt word in it: for a
/// single word of at least [`WORD_MIN`] letters, its letters dropped, swapped and sounded;
/// for a phrase of at most three words, one word at a time, swapped (from [`SWAP_MIN`]
/// letters; a vowel dropped in a phrase made spellings of other countries, 'blood and
/// honor'). Nothing for text holding anything but ASCII letters and spaces.
pub(crate) fn misspelt(normalised: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if normalised.is_empty()
        || !normalised
            .bytes()
            .all(|b| b == b' ' || b.is_ascii_lowercase())
    {
        return out;
    }
    let words: Vec<&str> = normalised.split(' ').collect();
    if words.len() == 1 {
        if normalised.len() >= WORD_MIN {
            for v in variants(normalised, true, true) {
                out.push((v.clone(), v));
            }
        }
        return out;
    }
    if words.len() > 3 {
        return out;
    }
    for (i, w) in words.iter().enumerate() {
        if w.len() < SWAP_MIN {
            continue;
        }
        for v in variants(w, false, false) {
            let mut phrase = words.clone();
            phrase[i] = &v;
            out.push((phrase.join(" "), v.clone()));
        }
    }
    out
}

/// One word's misspellings (see [`misspelt`]), each as the normaliser would write it, its
/// first letter kept (and, when one is dropped, its second), none shortened by normalising, none the word itself.
fn variants(word: &str, drops: bool, sounds: bool) -> Vec<String> {
    let b = word.as_bytes();
    let n = b.len();
    let mut out: Vec<String> = Vec::new();
    let mut keep = |v: Vec<u8>, len: usize| {
        // ASCII letters in, ASCII letters out.
        let v = String::from_utf8(v).unwrap_or_default();
        if v.len() == len && v != word && !folds(&v) && !out.contains(&v) {
            out.push(v);
        }
    };
    if drops {
        for i in 2..n {
            // A vowel beside another ('sucide', 'cocane') or a last `e` ('ketamin'):
            // dropping a consonant or a lone vowel makes other words ('batman' of
            // 'battyman', 'waking' of 'wanking', 'stones' of 'stoners').
            let vowel = |i: usize| b.get(i).is_some_and(|c| b"aeiouy".contains(c));
            let paired = vowel(i) && (vowel(i - 1) || vowel(i + 1));
            if !(paired || (i == n - 1 && b[i] == b'e')) {
                continue;
            }
            let mut v = b.to_vec();
            v.remove(i);
            keep(v, n - 1);
        }
    }
    for i in 1..n.saturating_sub(1) {
        if b[i] != b[i + 1] {
            let mut v = b.to_vec();
            v.swap(i, i + 1);
            keep(v, n);
        }
    }
    if sounds {
        for (from, to) in SOUNDS {
            for (i, _) in word.match_indices(from).filter(|(i, _)| *i > 0) {
                // `c` sounds as `s` only before e, i or y, and as `k` elsewhere.
                let soft = matches!(b.get(i + 1), Some(b'e' | b'i' | b'y'));
                let fits = match (from, to) {
                    ("c", "s") | ("s", "c") => soft,
                    ("c", "k") => !soft,
                    _ => true,
                };
                if !fits {
                    continue;
                }
                let v = format!("{}{to}{}", &word[..i], &word[i + from.len()..]);
                let len = v.len();
                keep(v.into_bytes(), len);
            }
        }
    }
    out
}

/// Whether the normaliser would fold `word` (a letter next to the same letter).
fn folds(word: &str) -> bool {
    word.as_bytes().windows(2).any(|w| w[0] == w[1])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forms(t: &str) -> Vec<String> {
        misspelt(t).into_iter().map(|(f, _)| f).collect()
    }

    #[test]
    fn a_long_word_dropped_swapped_and_sounded() {
        let f = forms("suicide");
        for want in ["sucide", "siucide", "suiside"] {
            assert!(f.contains(&want.to_string()), "{want} in {f:?}");
        }
        // The first letter stays; nothing the normaliser would fold.
        assert!(!f.contains(&"uicide".to_string()));
        assert!(f.iter().all(|v| !folds(v) && v.starts_with('s')));
        assert!(forms("machete").contains(&"machet".to_string()));
        // Consonants and lone vowels are not dropped: they make other words.
        assert!(!forms("batyman").contains(&"batman".to_string()));
        assert!(!forms("wanking").contains(&"waking".to_string()));
        assert!(!forms("beaners").contains(&"baners".to_string()));
        assert!(forms("cocaine").contains(&"cocaien".to_string()));
    }

    #[test]
    fn short_words_and_foreign_text_have_none() {
        assert!(forms("heroin").is_empty());
        assert!(forms("kys").is_empty());
        assert!(forms("h4te").is_empty());
        assert!(forms("caf\u{e9} au lait").is_empty());
        assert!(forms("i want to kil myself now").is_empty());
    }

    #[test]
    fn a_phrase_one_word_at_a_time() {
        let f = forms("self harm");
        assert!(f.contains(&"slef harm".to_string()));
        assert!(f.contains(&"sefl harm".to_string()));
        assert!(f.contains(&"self hamr".to_string()));
        // Four-letter words are swapped, not dropped.
        assert!(!f.contains(&"sef harm".to_string()));
        let f = forms("kil myself");
        assert!(f.contains(&"kil myslef".to_string()));
        assert!(!forms("kil yourself").contains(&"kil yorself".to_string()));
        assert!(!f.iter().any(|v| v.starts_with("kl ")));
        let with_word = misspelt("cut myself");
        assert!(with_word.contains(&("cut mysefl".to_string(), "mysefl".to_string())));
    }
}
