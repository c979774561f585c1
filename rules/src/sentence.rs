//! Sentence ends in the original text, so that a cue stops at the end of its sentence
//! ('you aren't wanted here. deport them all': the negation is not about the second
//! sentence). The normaliser turns punctuation into spaces; these are recorded beside it.
//!
//! A sentence ends at `.`, `!` or `?` (a run of them, then any closing quotes or brackets)
//! followed by white space. Not a sentence end: a decimal or a URL or file name (`3.5`,
//! `bbc.co.uk`: no space follows), an abbreviation written with dots (`e.g.`, `U.S.`,
//! `a.m.`: every part one or two letters), a title or a common short form (`Mr.`, `Dr.`,
//! `St.`, `vs.`) and an initial (`J. K. Rowling`; not `I`). Line breaks are recorded by the
//! normaliser as lines, and a line is also a sentence.

/// Short forms that a full stop follows without ending the sentence (lower case).
const ABBREVIATIONS: [&str; 13] = [
    "mr", "mrs", "ms", "dr", "prof", "st", "vs", "jr", "sr", "mt", "approx", "dept", "fig",
];

/// Call `f` with the byte offset of each sentence-ending mark (the first of a run) in
/// `text`, in order. Text without `.`, `!` or `?` costs one `memchr3` pass.
pub(crate) fn for_each_end(text: &str, mut f: impl FnMut(usize)) {
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(k) = memchr::memchr3(b'.', b'!', b'?', &bytes[i..]) {
        let at = i + k;
        // The whole run of marks and closers after it.
        let mut j = at;
        while j < bytes.len() && matches!(bytes[j], b'.' | b'!' | b'?') {
            j += 1;
        }
        let mut end = j;
        while end < bytes.len() && matches!(bytes[end], b'"' | b'\'' | b')' | b']') {
            end += 1;
        }
        let mut rest = text[end..].chars();
        // Closing curly quotes, too.
        let next = match rest.next() {
            Some('\u{2019}' | '\u{201D}') => rest.next(),
            c => c,
        };
        let spaced = next.is_some_and(char::is_whitespace);
        if spaced && (bytes[at] != b'.' || j - at > 1 || !abbreviation(&text[..at])) {
            f(at);
        }
        i = j;
    }
}

/// Whether the word just before a full stop is an abbreviation (`e.g`, `Mr`, `J`).
fn abbreviation(before: &str) -> bool {
    let word = before
        .rsplit(|c: char| c.is_whitespace() || matches!(c, '(' | '"' | '\''))
        .next()
        .unwrap_or("");
    if word.is_empty() {
        return false;
    }
    if word.contains('.') {
        // `e.g`, `U.S`, `a.m`, `Ph.D`: every part one or two letters.
        return word
            .split('.')
            .all(|p| (1..=2).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphabetic()));
    }
    let mut chars = word.chars();
    if let (Some(c), None) = (chars.next(), chars.next()) {
        // An initial, but not the pronoun.
        return c.is_alphabetic() && c.is_uppercase() && c != 'I';
    }
    let lower = word.to_ascii_lowercase();
    ABBREVIATIONS.contains(&lower.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ends(text: &str) -> Vec<usize> {
        let mut v = Vec::new();
        for_each_end(text, |at| v.push(at));
        v
    }

    #[test]
    fn full_stops_and_marks_end_sentences() {
        assert_eq!(ends("you aren't wanted here. deport them"), vec![22]);
        assert_eq!(ends("really?! no way"), vec![6]);
        assert_eq!(ends("stop it!!! now"), vec![7]);
        assert_eq!(ends("he said \"go away.\" then left"), vec![16]);
        assert_eq!(ends("so am I. then"), vec![7]);
        assert_eq!(ends("i dunno... maybe"), vec![7]);
    }

    #[test]
    fn decimals_urls_and_abbreviations_do_not() {
        assert!(ends("it costs 3.5 pounds").is_empty());
        assert!(ends("see bbc.co.uk/news for it").is_empty());
        assert!(ends("open notes.txt now").is_empty());
        assert!(ends("animals e.g. dogs").is_empty());
        assert!(ends("the U.S. army").is_empty());
        assert!(ends("ask Mr. Smith").is_empty());
        assert!(ends("by J. K. Rowling").is_empty());
        assert!(ends("at 9 a.m. today").is_empty());
        assert!(ends("the end.").is_empty());
        assert!(ends("k.i.l.l. them").is_empty());
    }

    #[test]
    fn non_ascii_text_is_fine() {
        assert_eq!(ends("café. ça va"), vec![5]);
        assert_eq!(ends("done.\u{201D} next"), vec![4]);
        assert!(ends("𝐤𝐢𝐥𝐥.𝐤").is_empty());
    }
}
