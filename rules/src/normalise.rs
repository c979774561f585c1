//! The normaliser: folds the many ways a pupil can write a word into one form, and keeps a
//! map from every normalised byte back to the original text so matches can be highlighted.
//!
//! Steps, applied identically to pack terms and to observed text:
//! compatibility decomposition (NFKD, so ligatures, full-width and mathematical letters become
//! plain letters) with accents dropped, lower case, confusable letters from other scripts
//! folded to Latin, zero-width and format characters removed, leetspeak mapped inside tokens
//! that contain letters (`h4te`, `$uicide`, but not `Year 10`), runs of three or more single
//! letters split by one space or punctuation mark joined (`s u i c i d e`, `k.i.l.l`), and
//! repeated letters collapsed to one (`suiiicide` and `suicide` both become `suicide`, `kill`
//! becomes `kil`). Everything else that is not a letter or digit becomes one space.

use crate::fold::{confusable, expansion, is_invisible, leet, ASCII_CLASS};
use crate::letter_run::LetterRun;
pub use crate::normalised::Normalised;
pub(crate) use crate::word_edges::{
    boundary_after, boundary_before, ends_word, last_ascii_word, offsets_of,
};
use unicode_normalization::char::{decompose_compatible, is_combining_mark};

/// Normalise `text` (allocates; use [`Normaliser`] to reuse buffers).
pub fn normalise(text: &str) -> Normalised {
    let mut out = Normalised::default();
    Normaliser::default().normalise_into(text, &mut out);
    out
}

/// Whether the word of `n` that starts at normalised byte `at` was typed as a mention
/// ('@jess is so ugly' aims at a person): the normaliser drops the `@` as punctuation, but
/// its map back to `original` keeps it, so the mark costs no memory. An address
/// ('me@jess.com') is not a mention.
pub fn is_mention(n: &Normalised, original: &str, at: usize) -> bool {
    if at > 0 && n.as_str().as_bytes().get(at - 1) != Some(&b' ') {
        return false;
    }
    let start = n.original_span(at..at + 1).start;
    let bytes = original.as_bytes();
    start > 0
        && bytes[start - 1] == b'@'
        && (start == 1 || !bytes[start - 2].is_ascii_alphanumeric())
}

/// Normalise a term or phrase from a pack: the normalised string only.
pub fn normalise_term(text: &str) -> String {
    normalise(text).text
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Class {
    Letter,
    Digit,
    /// `@ $ !`: leetspeak inside a word, punctuation elsewhere.
    Symbol,
    Separator,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Unit {
    pub(crate) ch: char,
    pub(crate) class: Class,
    pub(crate) start: u32,
    pub(crate) end: u32,
}

/// A run of separator characters between two tokens.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Sep {
    pub(crate) count: u32,
    /// How many of them are not spaces (a dot, a dash): `k. y. s` is spaced by one each.
    pub(crate) marks: u32,
    /// How many of them break a line or jump to a column (a newline, a tab): single letters
    /// one to a line or a cell are a column of a table, not a word spelt out.
    pub(crate) breaks: u32,
    pub(crate) start: u32,
    pub(crate) end: u32,
}

/// A place in a text after which nothing is pending (see [`Normaliser::is_clean`]): its
/// byte offset in the text and the length of the normalised text there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Clean {
    pub(crate) at: u32,
    pub(crate) len: u32,
}

/// Reusable normaliser state (scratch buffers), so normalising allocates nothing per char.
#[derive(Debug, Default, Clone)]
pub struct Normaliser {
    decomposed: Vec<char>,
    token: Vec<Unit>,
    token_sep: Sep,
    sep: Sep,
    /// Pending single-letter tokens that may join (`s u i c i d e`).
    run: LetterRun,
}

impl Normaliser {
    /// Normalise `text` into `out`, reusing this normaliser's buffers.
    pub fn normalise_into(&mut self, text: &str, out: &mut Normalised) {
        // Offsets are u32: anything beyond 4 GiB is not looked at.
        let mut limit = text.len().min(u32::MAX as usize - 8);
        while !text.is_char_boundary(limit) {
            limit -= 1;
        }
        let text = &text[..limit];
        self.begin(out);
        out.buf.reserve(text.len());
        out.starts.reserve(text.len());
        out.ends.reserve(text.len());
        self.feed_inline(text, 0, out, None);
        self.end(text, out);
    }

    /// Start a new text: forget what was pending and empty `out`.
    #[inline]
    pub(crate) fn begin(&mut self, out: &mut Normalised) {
        out.clear();
        self.token.clear();
        self.run.clear();
        self.sep = Sep::default();
        self.token_sep = Sep::default();
    }

    /// Normalise the next piece of a text, `text`, whose first byte is at offset `base` of
    /// the whole. A piece ends where a word ends (after a character for which
    /// [`ends_word`] holds) or where the whole text ends: a word of ASCII letters running to
    /// the end of a piece is taken as finished. When `clean` is given, every place after
    /// which nothing is pending (see [`Normaliser::is_clean`]) is recorded in it as its
    /// offset in the whole text and the length of `out` there.
    pub(crate) fn feed(
        &mut self,
        text: &str,
        base: u32,
        out: &mut Normalised,
        clean: Option<&mut Vec<Clean>>,
    ) {
        self.feed_inline(text, base, out, clean);
    }

    /// [`Normaliser::feed`], inlined where a whole text is normalised at once (a title).
    #[inline(always)]
    fn feed_inline(
        &mut self,
        text: &str,
        base: u32,
        out: &mut Normalised,
        mut clean: Option<&mut Vec<Clean>>,
    ) {
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            let start = base + i as u32;
            if b < 0x80 {
                let class = ASCII_CLASS[b as usize];
                if class == Class::Separator {
                    if self.token.is_empty() && self.sep.count > 0 {
                        // Fast path: the rest of a run of ASCII separators.
                        let mut j = i;
                        let (mut marks, mut breaks) = (0, 0);
                        while j < bytes.len()
                            && bytes[j] < 0x80
                            && ASCII_CLASS[bytes[j] as usize] == Class::Separator
                        {
                            marks += u32::from(bytes[j] != b' ');
                            breaks += u32::from(is_break(bytes[j] as char));
                            j += 1;
                        }
                        self.sep.count += (j - i) as u32;
                        self.sep.marks += marks;
                        self.sep.breaks += breaks;
                        self.sep.end = base + j as u32;
                        i = j;
                        continue;
                    } else {
                        self.separator(start, start + 1, b as char, out);
                    }
                } else {
                    if class == Class::Letter && self.token.is_empty() {
                        // Fast path: a whole word of ASCII letters needs no buffering.
                        let mut j = i + 1;
                        while j < bytes.len() && bytes[j].is_ascii_alphabetic() {
                            j += 1;
                        }
                        let word_ends = j == bytes.len()
                            || (bytes[j] < 0x80
                                && ASCII_CLASS[bytes[j] as usize] == Class::Separator);
                        if word_ends && j - i >= 2 {
                            let before = std::mem::take(&mut self.sep);
                            self.run.flush(out);
                            emit_sep(out, before);
                            emit_ascii_word(out, &bytes[i..j], start);
                            i = j;
                            if let Some(clean) = clean.as_deref_mut() {
                                clean.push(Clean {
                                    at: base + j as u32,
                                    len: out.pending_len() as u32,
                                });
                            }
                            continue;
                        }
                    }
                    let ch = b.to_ascii_lowercase() as char;
                    self.unit(
                        Unit {
                            ch,
                            class,
                            start,
                            end: start + 1,
                        },
                        out,
                    );
                }
                i += 1;
                continue;
            }
            let c = text[i..].chars().next().unwrap_or('\u{FFFD}');
            let len = c.len_utf8();
            if !is_invisible(c) {
                self.non_ascii(c, start, start + len as u32, out);
            }
            i += len;
        }
    }

    /// Finish the text `original` whose pieces were fed: emit what is pending, then note
    /// its lines and sentences.
    #[inline]
    pub(crate) fn end(&mut self, original: &str, out: &mut Normalised) {
        self.end_token(out);
        self.run.flush(out);
        out.finish();
        out.original_len = original.len();
        if original.contains('\n') {
            out.note_line_breaks(original);
        }
        out.note_sentence_ends(original);
    }

    /// Whether nothing is pending (no token, no single letters that may join, no
    /// separator) and `out` ends with a letter or digit: then what follows is normalised
    /// the same whatever came before.
    pub(crate) fn is_clean(&self, out: &Normalised) -> bool {
        self.token.is_empty()
            && self.run.is_empty()
            && self.sep.count == 0
            && out.buf.last().is_some_and(|&b| b != b' ')
    }

    /// Forget what is pending, at a place recorded as clean (see [`Normaliser::feed`]).
    pub(crate) fn restore_clean(&mut self) {
        self.token.clear();
        self.run.clear();
        self.sep = Sep::default();
    }

    /// The text lost its first `delta` bytes: move every pending offset back. (Offsets
    /// left over from earlier words are never read again; they wrap.)
    pub(crate) fn shift(&mut self, delta: u32) {
        let unit = |u: &mut Unit| {
            u.start = u.start.wrapping_sub(delta);
            u.end = u.end.wrapping_sub(delta);
        };
        let sep = |s: &mut Sep| {
            s.start = s.start.wrapping_sub(delta);
            s.end = s.end.wrapping_sub(delta);
        };
        self.token.iter_mut().for_each(unit);
        self.run.shift(delta);
        sep(&mut self.token_sep);
        sep(&mut self.sep);
    }

    fn non_ascii(&mut self, c: char, start: u32, end: u32, out: &mut Normalised) {
        let mut decomposed = std::mem::take(&mut self.decomposed);
        decomposed.clear();
        decompose_compatible(c, |d| decomposed.push(d));
        for &d in &decomposed {
            if is_combining_mark(d) || is_invisible(d) {
                continue;
            }
            if let Some(pair) = expansion(d) {
                for ch in pair.chars() {
                    self.unit(
                        Unit {
                            ch,
                            class: Class::Letter,
                            start,
                            end,
                        },
                        out,
                    );
                }
                continue;
            }
            for lower in d.to_lowercase() {
                let ch = confusable(lower);
                let class = if ch.is_ascii() {
                    ASCII_CLASS[ch as usize]
                } else if ch.is_alphabetic() {
                    Class::Letter
                } else if ch.is_numeric() {
                    Class::Digit
                } else {
                    Class::Separator
                };
                if class == Class::Separator {
                    self.separator(start, end, ch, out);
                } else {
                    self.unit(
                        Unit {
                            ch,
                            class,
                            start,
                            end,
                        },
                        out,
                    );
                }
            }
        }
        self.decomposed = decomposed;
    }

    /// A separator character `ch`: a space, a mark (`.`, `-`) or a break (see [`is_break`]).
    fn separator(&mut self, start: u32, end: u32, ch: char, out: &mut Normalised) {
        if !self.token.is_empty() {
            self.end_token(out);
        }
        if self.sep.count == 0 {
            self.sep.start = start;
        }
        self.sep.count += 1;
        self.sep.marks += u32::from((ch != ' ' && !ch.is_whitespace()) || is_break(ch));
        self.sep.breaks += u32::from(is_break(ch));
        self.sep.end = end;
    }

    #[inline]
    fn unit(&mut self, u: Unit, out: &mut Normalised) {
        if self.token.is_empty() {
            // `!` and `@` opening a word are punctuation and mentions, not letters.
            if u.class == Class::Symbol && (u.ch == '!' || u.ch == '@') {
                self.separator(u.start, u.end, u.ch, out);
                return;
            }
            self.token_sep = std::mem::take(&mut self.sep);
        }
        self.token.push(u);
    }

    fn end_token(&mut self, out: &mut Normalised) {
        // Trailing `!` is punctuation ("kill!!!"), it becomes the next separator.
        let mut trailing = Sep::default();
        while let Some(last) = self.token.last().copied() {
            if last.class == Class::Symbol && last.ch == '!' {
                self.token.pop();
                if trailing.count == 0 {
                    trailing.end = last.end;
                }
                trailing.count += 1;
                trailing.marks += 1;
                trailing.start = last.start;
            } else {
                break;
            }
        }
        self.sep = trailing;
        if self.token.is_empty() {
            return;
        }
        let before = self.token_sep;
        let first = self.token[0];
        let single =
            self.token.len() == 1 && (first.class == Class::Letter || leet(first.ch).is_some());
        if single {
            self.run.push(first, before, out);
        } else {
            self.run.flush(out);
            emit_sep(out, before);
            emit_token(out, &self.token);
        }
        self.token.clear();
    }
}

/// Whether a separator character breaks a line or jumps to a column.
fn is_break(ch: char) -> bool {
    matches!(
        ch,
        '\n' | '\r' | '\t' | '\u{b}' | '\u{c}' | '\u{85}' | '\u{2028}' | '\u{2029}'
    )
}

pub(crate) fn emit_sep(out: &mut Normalised, sep: Sep) {
    if sep.count > 0 && !out.ends_with_space_or_empty() {
        out.push(' ', sep.start, sep.end);
    }
}

/// A word of ASCII letters: lower case, repeated letters folded.
fn emit_ascii_word(out: &mut Normalised, word: &[u8], offset: u32) {
    if !word.windows(2).any(|w| (w[0] | 0x20) == (w[1] | 0x20)) {
        // No repeated letter: one byte out per byte in.
        let n = word.len() as u32;
        out.buf.extend(word.iter().map(|&b| b | 0x20));
        out.starts.extend(offset..offset + n);
        out.ends.extend(offset + 1..=offset + n);
        return;
    }
    let mut last = 0u8;
    for (k, &b) in word.iter().enumerate() {
        let lower = b | 0x20;
        let at = offset + k as u32;
        if lower == last {
            if let Some(end) = out.ends.last_mut() {
                *end = at + 1;
            }
            continue;
        }
        out.buf.push(lower);
        out.starts.push(at);
        out.ends.push(at + 1);
        last = lower;
    }
}

pub(crate) fn emit_token(out: &mut Normalised, units: &[Unit]) {
    let has_letter = units.iter().any(|u| u.class == Class::Letter);
    let mut last_letter: Option<char> = None;
    for u in units {
        let (ch, is_letter) = match u.class {
            Class::Letter => (u.ch, true),
            Class::Digit | Class::Symbol if has_letter => match leet(u.ch) {
                Some(l) => (l, true),
                None => (u.ch, false),
            },
            Class::Digit => (u.ch, false),
            Class::Symbol | Class::Separator => (' ', false),
        };
        if ch == ' ' {
            if !out.ends_with_space_or_empty() {
                out.push(' ', u.start, u.end);
            }
            last_letter = None;
            continue;
        }
        if is_letter && last_letter == Some(ch) {
            // Repeated letter: fold it into the previous one, widening its span.
            let n = out.ends.len();
            for e in &mut out.ends[n - ch.len_utf8()..] {
                *e = u.end;
            }
            continue;
        }
        out.push(ch, u.start, u.end);
        last_letter = if is_letter { Some(ch) } else { None };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> String {
        normalise(s).text
    }

    #[test]
    fn a_mention_is_marked() {
        let text = "@kai is so ugly, mail me@kai.com";
        let m = normalise(text);
        let at = |w: &str| m.as_str().find(w).unwrap();
        assert!(is_mention(&m, text, at("kai")));
        assert!(!is_mention(&m, text, at("ugly")));
        assert!(!is_mention(&m, text, m.as_str().rfind("kai").unwrap()));
        // Inside a word: not a word's start.
        assert!(!is_mention(&m, text, at("kai") + 1));
    }

    #[test]
    fn folds_case_accents_and_repeats() {
        assert_eq!(n("SUIIICIDE"), "suicide");
        assert_eq!(n("Kill"), "kil");
        assert_eq!(n("kiiiilllll"), "kil");
        assert_eq!(n("Café naïve"), "cafe naive");
        assert_eq!(n("Straße"), "strase");
    }

    #[test]
    fn leetspeak_only_inside_words() {
        assert_eq!(n("h4te"), "hate");
        assert_eq!(n("$uicide"), "suicide");
        assert_eq!(n("k!ll"), "kil");
        assert_eq!(n("Year 10"), "year 10");
        assert_eq!(n("1984"), "1984");
        assert_eq!(n("kill!!!"), "kil");
        assert_eq!(n("@user hi"), "user hi");
        assert_eq!(n("$100"), "100");
    }

    #[test]
    fn zero_width_and_confusables() {
        assert_eq!(n("su\u{200B}ic\u{200D}ide"), "suicide");
        assert_eq!(n("ѕuісіdе"), "suicide");
        assert_eq!(n("ｋｉｌｌ"), "kil");
        assert_eq!(n("𝐤𝐢𝐥𝐥"), "kil");
        assert_eq!(n("ŵyr"), "wyr");
    }

    #[test]
    fn separators_collapse() {
        assert_eq!(n("  hello,   world!  "), "helo world");
        assert_eq!(n("assassin's creed"), "asasin s cred");
        assert_eq!(n("self-harm"), "self harm");
    }

    #[test]
    fn last_ascii_word_agrees_with_the_normaliser() {
        let mut word = String::new();
        for text in [
            "I want to KILL ",
            "so  Suiiicide.",
            "kill",
            "go  home ,, ",
            "k.i.l.l ",
            "a b cd ",
            "h4te ",
            "$uicide ",
            "kill!!! ",
            "caf\u{e9} ",
            "su\u{200B}icide ",
            "x ",
            "",
            "   ",
            "assassin's ",
            "one two\nthree ",
            "@user ",
            "a b c dd ",
            "\u{200B}kill ",
        ] {
            let full = n(text);
            let last = full.trim_end().rsplit(' ').next().unwrap_or("");
            if let Some(at) = last_ascii_word(text, &mut word) {
                assert_eq!(word, last, "{text:?}");
                assert!(text[at..].starts_with(|c: char| c.is_ascii_alphabetic()));
            }
        }
        assert_eq!(last_ascii_word("I want to KILL ", &mut word), Some(10));
        assert_eq!(word, "kil");
        for text in [
            "k.i.l.l ",
            "h4te ",
            "$uicide ",
            "kill!!! ",
            "x ",
            "kill",
            "caf\u{e9} ",
        ] {
            assert_eq!(last_ascii_word(text, &mut word), None, "{text:?}");
        }
    }

    #[test]
    fn spans_map_back() {
        let text = "I want to k.i.l.l myself";
        let norm = normalise(text);
        let s = norm.as_str().find("kil").unwrap();
        let span = norm.original_span(s..s + 3);
        assert_eq!(&text[span], "k.i.l.l");
        let text = "suiiiiicide now";
        let norm = normalise(text);
        assert_eq!(&text[norm.original_span(0..7)], "suiiiiicide");
        let text = "ｓｕｉｃｉｄｅ";
        let norm = normalise(text);
        assert_eq!(&text[norm.original_span(0..norm.as_str().len())], text);
    }
}
