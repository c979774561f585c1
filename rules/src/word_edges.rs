//! Where words begin and end, in typed text and in normalised text: which characters end
//! a word as it is typed, the normal form of a plain last word without normalising the
//! rest, and word boundaries in normalised text.

use crate::fold::{is_invisible, ASCII_CLASS};
use crate::normalise::Class;
use unicode_normalization::char::is_combining_mark;

/// Byte offsets of every `byte` in `text`, in order (for line and word numbers by search).
pub(crate) fn offsets_of(text: &str, byte: u8) -> Vec<usize> {
    text.bytes()
        .enumerate()
        .filter(|(_, b)| *b == byte)
        .map(|(i, _)| i)
        .collect()
}

/// The normal form of the last word of `text` without normalising the rest, when it does not
/// depend on its neighbours: `text` ends with ASCII separators after a word of two or more
/// ASCII letters that begins `text` or follows an ASCII separator. Such a word is never
/// joined to single letters, holds no leetspeak and no invisible or non-ASCII character, so
/// the normaliser emits it alone as its letters in lower case with repeats folded, as this
/// does into `word`. Returns the word's byte offset in `text`, or `None` (`word` then
/// unspecified) when the whole text must be normalised to know its last word.
pub(crate) fn last_ascii_word(text: &str, word: &mut String) -> Option<usize> {
    let bytes = text.as_bytes();
    let is_sep = |b: u8| b < 0x80 && ASCII_CLASS[b as usize] == Class::Separator;
    let mut end = bytes.len();
    while end > 0 && is_sep(bytes[end - 1]) {
        end -= 1;
    }
    if end == bytes.len() {
        return None;
    }
    let mut start = end;
    while start > 0 && bytes[start - 1].is_ascii_alphabetic() {
        start -= 1;
    }
    if end - start < 2 || (start > 0 && !is_sep(bytes[start - 1])) {
        return None;
    }
    word.clear();
    let mut last = 0u8;
    for &b in &bytes[start..end] {
        let lower = b | 0x20;
        if lower != last {
            word.push(lower as char);
            last = lower;
        }
    }
    Some(start)
}

/// Whether typing `c` ends a word (the normaliser treats it as a separator).
#[inline]
pub(crate) fn ends_word(c: char) -> bool {
    if c.is_ascii() {
        return ASCII_CLASS[c as usize] == Class::Separator;
    }
    !(c.is_alphanumeric() || is_invisible(c) || is_combining_mark(c))
}

/// Whether a normalised byte offset is on a word boundary (start, end, or next to a space).
#[inline]
pub(crate) fn boundary_before(text: &[u8], at: usize) -> bool {
    at == 0 || text.get(at - 1) == Some(&b' ')
}

#[inline]
pub(crate) fn boundary_after(text: &[u8], at: usize) -> bool {
    at >= text.len() || text[at] == b' '
}
