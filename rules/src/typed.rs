//! Incremental matching of typed text, fed one character at a time.
//!
//! Keystrokes inside a word cost nothing. When a character ends a word (a space or
//! punctuation), the matcher normalises and scans only a bounded tail of the buffer (long
//! enough for the longest term, exception and context window), never the whole buffer, and
//! reports matches it has not reported before. A match that an exception phrase still being
//! typed could cancel (`assassin` before `'s creed`) is held until the phrase is ruled out.

use crate::matcher::{snippet, Hit, Match, Matcher};
use crate::normalise::{boundary_before, ends_word, last_ascii_word, Normalised};
use crate::typed_tail::TailStream;
use crate::typed_walk::KeptWalk;
use crate::Scope;
use std::sync::Arc;

/// Characters kept in the typed buffer; older text is dropped in chunks.
pub const BUFFER_CHARS: usize = 512;
const DROP_CHARS: usize = 64;

#[derive(Debug, Clone, Copy)]
struct Reported {
    rule: u32,
    /// Byte offset of the match start counted from the first character ever typed.
    absolute_start: usize,
    /// Characters typed (net of backspaces) when it was reported.
    at_char: usize,
}

/// The incremental matcher for typed text. See the module documentation.
/// Its `Debug` shows counts only: typed text never reaches a log.
pub struct TypedMatcher {
    matcher: Arc<Matcher>,
    buffer: String,
    buffer_chars: usize,
    /// Bytes dropped from the front of the buffer so far.
    dropped: usize,
    typed_chars: usize,
    reported: Vec<Reported>,
    /// The normalised tail kept between scans (see `typed_tail`).
    pub(crate) stream: TailStream,
    /// The phrases found in the previous tail (see `typed_walk`).
    walk: KeptWalk,
    normalised: Normalised,
    tail_bytes: usize,
    /// The normal form of the word just finished (a scratch buffer).
    last_word: String,
    /// A match is held back because an exception may still be typed: scan every word.
    holding: bool,
}

impl std::fmt::Debug for TypedMatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypedMatcher")
            .field("buffer_chars", &self.buffer_chars)
            .field("typed_chars", &self.typed_chars)
            .field("reported", &self.reported.len())
            .finish_non_exhaustive()
    }
}

impl Matcher {
    /// An incremental matcher for typed text sharing this compiled pack.
    pub fn typed(self: &Arc<Self>) -> TypedMatcher {
        // Long enough for the longest term or exception (twice, for obfuscation such as
        // `k.i.l.l`), the longest word pattern, and the context-word window.
        let tail_bytes =
            ((2 * self.longest_term.max(self.longest_exception)).max(self.longest_pattern) + 128)
                .min(BUFFER_CHARS * 4);
        TypedMatcher {
            matcher: Arc::clone(self),
            buffer: String::new(),
            buffer_chars: 0,
            dropped: 0,
            typed_chars: 0,
            reported: Vec::new(),
            stream: TailStream::default(),
            walk: KeptWalk::default(),
            normalised: Normalised::default(),
            tail_bytes,
            last_word: String::new(),
            holding: false,
        }
    }
}

impl TypedMatcher {
    /// Feed one typed character; returns the matches it completed (each reported once).
    /// Spans are byte spans in [`TypedMatcher::text`] as it is after this call.
    pub fn push(&mut self, c: char) -> Vec<Match> {
        if self.buffer_chars >= BUFFER_CHARS {
            self.drop_front();
        }
        self.buffer.push(c);
        self.buffer_chars += 1;
        self.typed_chars += 1;
        if !ends_word(c) {
            return Vec::new();
        }
        self.scan_tail(true)
    }

    /// Report matches pending at the end of the buffer now, as if the pupil had finished
    /// the word (for example when focus moves to another window).
    pub fn flush(&mut self) -> Vec<Match> {
        self.scan_tail(false)
    }

    /// Remove the last character, as if it had never been typed.
    pub fn backspace(&mut self) {
        if self.buffer.pop().is_some() {
            self.buffer_chars -= 1;
            self.typed_chars -= 1;
            let typed = self.typed_chars;
            self.reported.retain(|r| r.at_char <= typed);
            self.stream.truncate(self.buffer.len());
        }
    }

    /// Forget everything typed.
    pub fn reset(&mut self) {
        self.buffer.clear();
        self.buffer_chars = 0;
        self.dropped = 0;
        self.typed_chars = 0;
        self.reported.clear();
        self.holding = false;
        self.stream.invalidate();
        self.walk.invalidate();
    }

    /// The bounded buffer of recent typed text.
    pub fn text(&self) -> &str {
        &self.buffer
    }

    /// The compiled pack behind this matcher.
    pub fn matcher(&self) -> &Arc<Matcher> {
        &self.matcher
    }

    fn drop_front(&mut self) {
        // Drop at a word boundary where possible so no half word is left at the front.
        let mut cut = self
            .buffer
            .char_indices()
            .nth(DROP_CHARS)
            .map(|(i, _)| i)
            .unwrap_or(self.buffer.len());
        if let Some((i, c)) = self.buffer[cut..]
            .char_indices()
            .find(|(_, c)| ends_word(*c))
        {
            if i < 4 * DROP_CHARS {
                cut += i + c.len_utf8();
            }
        }
        let dropped_chars = self.buffer[..cut].chars().count();
        self.buffer.drain(..cut);
        self.buffer_chars -= dropped_chars;
        self.dropped += cut;
        self.stream.drop_front(cut);
        let dropped = self.dropped;
        self.reported.retain(|r| r.absolute_start >= dropped);
    }

    fn scan_tail(&mut self, hold: bool) -> Vec<Match> {
        let mut start = self.buffer.len().saturating_sub(self.tail_bytes);
        while !self.buffer.is_char_boundary(start) {
            start += 1;
        }
        if start > 0 {
            // Begin just after a word end, so the tail does not start inside a word.
            if let Some((i, c)) = self.buffer[start..]
                .char_indices()
                .find(|(_, c)| ends_word(*c))
            {
                start += i + c.len_utf8();
            }
        }
        let tail = &self.buffer[start..];
        // A new match ends with the word just finished; most words end none. A plain word's
        // normal form is known without normalising the tail (most words typed are plain).
        let gate = hold && !self.holding;
        let plain = gate && last_ascii_word(tail, &mut self.last_word).is_some();
        if plain && !self.matcher.may_end_match(&self.last_word) {
            return Vec::new();
        }
        let place = self
            .stream
            .normalise(&self.buffer, start, hold, &mut self.normalised);
        if gate && !plain {
            let last = self.normalised.as_str().trim_end().rsplit(' ').next();
            if !self.matcher.may_end_match(last.unwrap_or("")) {
                return Vec::new();
            }
        }
        let scan = self.matcher.scan_kept(
            Scope::Typed,
            &self.normalised,
            tail,
            (&mut self.walk, place),
        );
        self.holding = false;
        let mut out = Vec::new();
        for hit in &scan.hits {
            let span = self.normalised.original_span(hit.norm.clone());
            let absolute_start = self.dropped + start + span.start;
            if self
                .reported
                .iter()
                .any(|r| r.rule == hit.rule && r.absolute_start == absolute_start)
            {
                continue;
            }
            if hold && self.exception_may_follow(hit) {
                self.holding = true;
                continue;
            }
            self.reported.push(Reported {
                rule: hit.rule,
                absolute_start,
                at_char: self.typed_chars,
            });
            let mut m = self
                .matcher
                .to_match(hit, Scope::Typed, tail, &self.normalised);
            m.span = start + span.start..start + span.end;
            let (context, context_span) = snippet(&self.buffer, m.span.clone());
            m.context = context;
            m.context_span = context_span;
            out.push(m);
        }
        out
    }

    /// Whether an exception phrase that overlaps `hit` could still be completed by what
    /// is typed next. The last typed character ended a word, so the phrase must go on
    /// with a space after the text typed so far.
    fn exception_may_follow(&self, hit: &Hit) -> bool {
        let m = &self.matcher;
        if m.longest_exception == 0 {
            return false;
        }
        let text = self.normalised.as_str();
        let bytes = text.as_bytes();
        let lowest = hit.norm.start.saturating_sub(m.longest_exception);
        let mut candidate = String::new();
        for s in lowest..hit.norm.end.min(text.len()) {
            if !text.is_char_boundary(s)
                || !boundary_before(bytes, s)
                || text.len() - s >= m.longest_exception
            {
                continue;
            }
            candidate.clear();
            candidate.push_str(&text[s..]);
            candidate.push(' ');
            let prefixes = &m.exception_prefixes;
            let i = prefixes.partition_point(|e| e.as_str() < candidate.as_str());
            if prefixes
                .get(i)
                .is_some_and(|e| e.starts_with(candidate.as_str()))
            {
                return true;
            }
        }
        false
    }
}
