//! Context snippets: the original text around a match, at most [`CONTEXT_CHARS`]
//! characters, cut by bytes for ASCII text and by characters otherwise.

use std::ops::Range;

/// Longest context snippet, in characters.
pub const CONTEXT_CHARS: usize = 120;

/// At most 120 characters of `text` around `span`, and the span inside the snippet.
pub(crate) fn snippet(text: &str, span: Range<usize>) -> (String, Range<usize>) {
    let span = span.start.min(text.len())..span.end.min(text.len());
    if text.is_ascii() {
        ascii_snippet(text, span)
    } else {
        char_snippet(text, span)
    }
}

/// [`snippet`] counted in characters, for any text.
fn char_snippet(text: &str, span: Range<usize>) -> (String, Range<usize>) {
    let matched = &text[span.clone()];
    let matched_chars = matched.chars().count();
    if matched_chars >= CONTEXT_CHARS {
        let cut = matched
            .char_indices()
            .nth(CONTEXT_CHARS)
            .map(|(i, _)| i)
            .unwrap_or(matched.len());
        return (matched[..cut].to_string(), 0..cut);
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
    (
        text[start..end].to_string(),
        span.start - start..span.end - start,
    )
}

/// [`snippet`] for ASCII text, where characters are bytes: the same cut without walking
/// the text character by character (most titles and typed windows are ASCII).
fn ascii_snippet(text: &str, span: Range<usize>) -> (String, Range<usize>) {
    let matched = span.end - span.start;
    if matched >= CONTEXT_CHARS {
        let end = span.start + CONTEXT_CHARS;
        return (text[span.start..end].to_string(), 0..CONTEXT_CHARS);
    }
    let spare = CONTEXT_CHARS - matched;
    let before_avail = span.start.min(spare);
    let after_avail = (text.len() - span.end).min(spare);
    let mut before = before_avail.min(spare / 2);
    let after = after_avail.min(spare - before);
    before = before_avail.min(spare - after);
    let start = span.start - before;
    (
        text[start..span.end + after].to_string(),
        span.start - start..span.end - start,
    )
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
        assert_eq!((ctx.as_str(), span), ("kill", 0..4));
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
        let long = "é".repeat(200);
        let (ctx, span) = snippet(&long, 0..long.len());
        assert_eq!(ctx.chars().count(), 120);
        assert_eq!(span, 0..ctx.len());
    }
}
