//! Context snippets: the original text around a match, at most [`CONTEXT_CHARS`]
//! characters, cut by bytes for ASCII text and by characters otherwise.

use crate::shared::SharedStr;
use std::ops::Range;

/// Longest context snippet, in characters.
pub const CONTEXT_CHARS: usize = 120;

/// At most 120 characters of `text` around `span`, and the span inside the snippet.
pub(crate) fn snippet(text: &str, span: Range<usize>) -> (SharedStr, Range<usize>) {
    Contexts::default().snippet(text, span)
}

/// The snippets cut from one text so far: matches of the same text whose snippets are
/// the same bytes (in a title, usually the whole title) share one.
#[derive(Default)]
pub(crate) struct Contexts {
    last: Option<(Range<usize>, SharedStr)>,
    /// Whether the text is ASCII, found with its first snippet (a title's matches are
    /// cut from the same text: one pass over it, not one per match).
    ascii: Option<bool>,
}

impl Contexts {
    /// [`snippet`], shared with the previous snippet of the same text when it is the same.
    pub(crate) fn snippet(&mut self, text: &str, span: Range<usize>) -> (SharedStr, Range<usize>) {
        let span = span.start.min(text.len())..span.end.min(text.len());
        // A text of at most 120 bytes has at most 120 characters: its snippet is the whole
        // text (a title's), whatever it holds, so it is neither tested nor counted.
        let cut = if text.len() <= CONTEXT_CHARS {
            0..text.len()
        } else if *self.ascii.get_or_insert_with(|| text.is_ascii()) {
            ascii_snippet(text, span.clone())
        } else {
            char_snippet(text, span.clone())
        };
        // A match longer than a snippet is cut with it.
        let inside = span.start - cut.start..span.end.min(cut.end) - cut.start;
        match &self.last {
            Some((range, shared)) if *range == cut => (shared.clone(), inside),
            _ => {
                let shared = SharedStr::from(&text[cut.clone()]);
                self.last = Some((cut, shared.clone()));
                (shared, inside)
            }
        }
    }
}

/// The bytes of [`snippet`]'s cut, counted in characters, for any text.
fn char_snippet(text: &str, span: Range<usize>) -> Range<usize> {
    let matched = &text[span.clone()];
    let matched_chars = matched.chars().count();
    if matched_chars >= CONTEXT_CHARS {
        let cut = matched
            .char_indices()
            .nth(CONTEXT_CHARS)
            .map(|(i, _)| i)
            .unwrap_or(matched.len());
        return span.start..span.start + cut;
    }
    let spare = CONTEXT_CHARS - matched_chars;
    let before_avail = text[..span.start].chars().rev().take(spare).count();
    let after_avail = text[span.end..].chars().take(spare).count();
    let mut before = before_avail.min(spare / 2);
    let after = after_avail.min(spare - before);
    before = before_avail.min(spare - after);
    // Byte offset `before` characters back from the match start.
    let start = match before {
        0 => span.start,
        n => text[..span.start]
            .char_indices()
            .rev()
            .nth(n - 1)
            .map(|(i, _)| i)
            .unwrap_or(0),
    };
    let end = text[span.end..]
        .char_indices()
        .nth(after)
        .map(|(i, _)| span.end + i)
        .unwrap_or(text.len());
    start..end
}

/// [`char_snippet`] for ASCII text, where characters are bytes: the same cut without
/// walking the text character by character (most titles and typed windows are ASCII).
fn ascii_snippet(text: &str, span: Range<usize>) -> Range<usize> {
    let matched = span.end - span.start;
    if matched >= CONTEXT_CHARS {
        return span.start..span.start + CONTEXT_CHARS;
    }
    let spare = CONTEXT_CHARS - matched;
    let before_avail = span.start.min(spare);
    let after_avail = (text.len() - span.end).min(spare);
    let mut before = before_avail.min(spare / 2);
    let after = after_avail.min(spare - before);
    before = before_avail.min(spare - after);
    span.start - before..span.end + after
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippet_is_bounded_and_points_at_the_match() {
        let text = "a".repeat(300) + "KILL" + &"b".repeat(300);
        let (ctx, span) = snippet(&text, 300..304);
        assert_eq!(ctx.chars().count(), 120);
        assert_eq!(&ctx[span], "KILL");
        let (ctx, span) = snippet("kill", 0..4);
        assert_eq!((&*ctx, span), ("kill", 0..4));
        let text = "xy ".repeat(5) + "ébé";
        let (ctx, span) = snippet(&text, 15..text.len());
        assert_eq!(&ctx[span], "ébé");
        let ascii = "x".repeat(150) + "KILL" + &"y".repeat(150);
        for (start, end) in [(150, 154), (0, 4), (296, 304), (0, 304), (3, 3), (20, 160)] {
            assert_eq!(
                ascii_snippet(&ascii, start..end),
                char_snippet(&ascii, start..end)
            );
        }
        // A short text is its own snippet, ASCII or not, as cutting it by characters says.
        for text in [
            "i want to die now",
            "é".repeat(60).as_str(),
            &"x".repeat(120),
        ] {
            for span in [0..text.len(), 2..4, text.len()..text.len()] {
                let (ctx, inside) = snippet(text, span.clone());
                assert_eq!((&*ctx, inside.clone()), (text, span.clone()));
                assert_eq!(char_snippet(text, span), 0..text.len());
            }
        }
        let long = "é".repeat(200);
        let (ctx, span) = snippet(&long, 0..long.len());
        assert_eq!(ctx.chars().count(), 120);
        assert_eq!(span, 0..ctx.len());
        // Two matches whose snippets are the same bytes share one.
        let mut contexts = Contexts::default();
        let (a, _) = contexts.snippet("i want to die now", 2..6);
        let (b, span) = contexts.snippet("i want to die now", 10..13);
        assert!(std::ptr::eq(a.as_str(), b.as_str()));
        assert_eq!(&b[span], "die");
    }
}
