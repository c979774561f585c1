//! Letters spelt with dots or dashes that are a person's initials or a puzzle, not a word
//! hidden. The normaliser joins 'k. y. s.' and 'k-y-s' into `kys` wherever it sees them (it
//! knows no terms); a match read through such letters is dropped when its line reads as a
//! signature, a list of names or a register, a name with a surname after it, or a spelling
//! game: 'Best wishes, K.Y.S.', 'Present: A.B., K.Y.S.', 'D. I. E. Smith', 'A-N-D spells and'.
//! Letters spaced by spaces alone ('k y s') are never initials.

use std::ops::Range;

/// Fewest single letters that the normaliser joins (see `letter_run`).
const LETTERS_MIN: usize = 3;

/// Words after which letters are a name signing off or listed: a sign-off, a list's heading.
const NAMING: &[&str] = &[
    "thanks",
    "thank",
    "regards",
    "wishes",
    "cheers",
    "sincerely",
    "faithfully",
    "signed",
    "love",
    "from",
    "by",
    "authors",
    "author",
    "present",
    "absent",
    "register",
    "names",
    "members",
    "attendees",
    "cc",
    "mr",
    "mrs",
    "ms",
    "miss",
    "dr",
    "prof",
    "sir",
];

/// Words of a line that is about letters and words themselves.
const SPELLING: &[&str] = &[
    "spell",
    "spells",
    "spelt",
    "spelled",
    "spelling",
    "puzzle",
    "letters",
    "unscramble",
    "anagram",
    "hangman",
    "crossword",
    "initials",
    "monogram",
    "acronym",
    "abbreviation",
    "wordle",
    "stands",
];

/// Words before the letters in which a naming word counts.
const NAMING_REACH: usize = 6;

/// Whether the match at `span` of `original` was read through single letters spelt with
/// dots or dashes whose line reads as initials or a spelling game (see the module).
pub(crate) fn spelt_as_initials(original: &str, span: Range<usize>) -> bool {
    let Some(letters) = spelt_letters(original, span.clone()) else {
        return false;
    };
    let line_start = original[..letters.start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = original[letters.end..]
        .find('\n')
        .map_or(original.len(), |i| letters.end + i);
    // The words around the match, not the rest of what it spelt ('k.i.l.l m.y.s.e.l.f').
    let before = &original[line_start..span.start.clamp(line_start, letters.start)];
    let after = &original[span.end.clamp(letters.end, line_end)..line_end];
    let words = |s: &str| {
        s.split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect::<Vec<_>>()
    };
    let (words_before, words_after) = (words(before), words(after));
    let spelling = words_before
        .iter()
        .chain(&words_after)
        .any(|w| SPELLING.contains(&w.as_str()));
    let naming = words_before
        .iter()
        .rev()
        .take(NAMING_REACH)
        .any(|w| NAMING.contains(&w.as_str()));
    // A surname or a name's next word after capital initials: 'D. I. E. Smith', 'K.Y.S. Cup'.
    let spelt = &original[letters.clone()];
    let capitals = spelt
        .chars()
        .filter(|c| c.is_alphabetic())
        .all(char::is_uppercase);
    // Any script's capital starts a surname ('K. Y. S. Łukasiewicz').
    let named = capitals
        && after
            .trim_start_matches(['.', ' '])
            .starts_with(char::is_uppercase);
    // Other initials on the line: a list of names or a register.
    let listed = has_initials(before) || has_initials(after);
    spelling || naming || named || listed
}

/// The original range of the first run of at least [`LETTERS_MIN`] single letters inside
/// `span` with a dot or a dash between each two, with its spaces ('K. Y. S', 'a-n-d').
fn spelt_letters(original: &str, span: Range<usize>) -> Option<Range<usize>> {
    let bytes = original.as_bytes();
    let single = |i: usize| {
        bytes[i].is_ascii_alphabetic()
            && (i == 0 || !bytes[i - 1].is_ascii_alphanumeric())
            && bytes.get(i + 1).is_none_or(|b| !b.is_ascii_alphanumeric())
    };
    let mut i = span.start;
    while i < span.end {
        if !single(i) {
            i += 1;
            continue;
        }
        let start = i;
        let mut count = 1;
        let mut last = i;
        loop {
            // One mark with spaces beside it, then the next single letter.
            let mut j = last + 1;
            let mut marks = 0;
            while j < span.end && matches!(bytes[j], b' ' | b'.' | b'-') {
                marks += usize::from(bytes[j] != b' ');
                j += 1;
            }
            if marks == 1 && j < span.end && single(j) {
                count += 1;
                last = j;
            } else {
                break;
            }
        }
        if count >= LETTERS_MIN {
            return Some(start..last + 1);
        }
        i = last + 1;
    }
    None
}

/// Whether `text` holds initials: two single letters or more, each with a dot after it
/// ('A.B.', 'J. M. T.').
fn has_initials(text: &str) -> bool {
    let bytes = text.as_bytes();
    (0..bytes.len()).any(|i| {
        let letter = |k: usize| {
            bytes.get(k).is_some_and(u8::is_ascii_alphabetic)
                && (k == 0 || !bytes[k - 1].is_ascii_alphanumeric())
                && bytes.get(k + 1) == Some(&b'.')
        };
        letter(i) && (letter(i + 2) || (bytes.get(i + 2) == Some(&b' ') && letter(i + 3)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn initials(text: &str, spelt: &str) -> bool {
        let at = text.find(spelt).unwrap();
        spelt_as_initials(text, at..at + spelt.len())
    }

    #[test]
    fn initials_of_a_name() {
        assert!(initials("Thanks for your help, K. Y. S.", "K. Y. S"));
        assert!(initials("Best wishes, K.Y.S.", "K.Y.S"));
        assert!(initials("Present: A.B., K.Y.S., J.D. and M.R.", "K.Y.S"));
        assert!(initials("Register: K. Y. S., J. M. T.", "K. Y. S"));
        assert!(initials("D. I. E. Smith has joined", "D. I. E"));
        assert!(initials("signed off by K - Y - S on the rota", "K - Y - S"));
        assert!(initials("our initials are k.y.s", "k.y.s"));
        assert!(!initials(
            "i will k.i.l.l m.y.s.e.l.f",
            "k.i.l.l m.y.s.e.l.f"
        ));
    }

    #[test]
    fn a_spelling_game() {
        assert!(initials("word puzzle: A-N-D spells and", "A-N-D"));
        assert!(initials("hangman so far: k-i-l", "k-i-l"));
    }

    #[test]
    fn an_attack_spelt_out_is_not_initials() {
        assert!(!initials("k. y. s. loser", "k. y. s"));
        assert!(!initials("just k.y.s already", "k.y.s"));
        assert!(!initials("go k-y-s nobody cares", "k-y-s"));
        assert!(!initials("seriously K - Y - S", "K - Y - S"));
        assert!(!initials("i will K.I.L.L you", "K.I.L.L"));
        // Letters spaced by spaces alone are not initials, whatever the line says.
        assert!(!initials("thanks, k y s", "k y s"));
        // A word as typed is not spelt out.
        assert!(!initials("Thanks, kys", "kys"));
    }

    #[test]
    fn a_column_and_a_surname() {
        assert!(!initials("Regards\n\nk.y.s loser", "k.y.s"));
        assert!(!initials("k.y.s Loser", "k.y.s"));
        assert!(initials("K.Y.S. Cup final", "K.Y.S"));
    }
}
