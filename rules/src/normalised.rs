//! Normalised text and its map back to the original: every normalised byte knows the
//! original bytes it came from, and where the original's lines and sentences begin.

use std::ops::Range;

/// Normalised text with the map back to the original.
#[derive(Debug, Clone, Default)]
pub struct Normalised {
    pub(crate) text: String,
    /// Working buffer while normalising (bytes are pushed faster than chars).
    pub(crate) buf: Vec<u8>,
    pub(crate) starts: Vec<u32>,
    pub(crate) ends: Vec<u32>,
    pub(crate) original_len: usize,
    /// Normalised offsets where a new line of the original begins (after each line break).
    breaks: Vec<usize>,
    /// Normalised offsets where a new sentence of the original begins (after a sentence
    /// end within a line; see `sentence`).
    sentence_starts: Vec<usize>,
}

impl Normalised {
    /// The normalised text: lower-case letters and digits, words separated by one space.
    #[inline]
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Length of the original text this was made from.
    pub fn original_len(&self) -> usize {
        self.original_len
    }

    /// Byte span in the original text covered by a byte range of the normalised text.
    /// Always on char boundaries of the original and inside it.
    #[inline]
    pub fn original_span(&self, range: Range<usize>) -> Range<usize> {
        let len = self.text.len();
        let start = range.start.min(len);
        let end = range.end.clamp(start, len);
        if start == end {
            let at = if start < len {
                self.starts[start] as usize
            } else {
                self.original_len
            };
            return at..at;
        }
        self.starts[start] as usize..self.ends[end - 1] as usize
    }

    /// Which line of the original (0 for the first) holds normalised offset `at`: text on
    /// different lines is read as different messages (a chat line, a paragraph).
    #[inline]
    pub fn line_of(&self, at: usize) -> usize {
        self.breaks.partition_point(|&b| b <= at)
    }

    /// Which sentence (0 for the first) holds normalised offset `at`: a line break or a
    /// sentence end (`.`, `!`, `?` before a space, not in `3.5`, `e.g.` or `Mr.`) starts
    /// a new one. Only compared: two offsets are in the same sentence when equal.
    #[inline]
    pub fn sentence_of(&self, at: usize) -> usize {
        if self.sentence_starts.is_empty() && self.breaks.is_empty() {
            return 0;
        }
        self.line_of(at) + self.sentence_starts.partition_point(|&b| b <= at)
    }

    /// Record where sentences end: the offset of the first normalised byte after each
    /// sentence-ending mark of the original.
    pub(crate) fn note_sentence_ends(&mut self, original: &str) {
        let (starts, sentences) = (&self.starts, &mut self.sentence_starts);
        crate::sentence::for_each_end(original, |o| {
            let k = starts.partition_point(|&s| (s as usize) <= o);
            if sentences.last() != Some(&k) {
                sentences.push(k);
            }
        });
    }

    pub(crate) fn note_line_breaks(&mut self, original: &str) {
        self.breaks.clear();
        for (o, _) in original.match_indices('\n') {
            let k = self.starts.partition_point(|&s| (s as usize) <= o);
            if self.breaks.last() != Some(&k) {
                self.breaks.push(k);
            }
        }
    }

    pub(crate) fn clear(&mut self) {
        self.buf = std::mem::take(&mut self.text).into_bytes();
        self.buf.clear();
        self.breaks.clear();
        self.sentence_starts.clear();
        self.starts.clear();
        self.ends.clear();
        self.original_len = 0;
    }

    pub(crate) fn finish(&mut self) {
        match String::from_utf8(std::mem::take(&mut self.buf)) {
            Ok(text) => self.text = text,
            // Only whole chars are ever pushed, so this cannot happen; stay consistent anyway.
            Err(_) => {
                self.starts.clear();
                self.ends.clear();
            }
        }
    }

    #[inline]
    pub(crate) fn push(&mut self, ch: char, start: u32, end: u32) {
        if ch.is_ascii() {
            self.buf.push(ch as u8);
            self.starts.push(start);
            self.ends.push(end);
            return;
        }
        let mut utf8 = [0u8; 4];
        self.buf
            .extend_from_slice(ch.encode_utf8(&mut utf8).as_bytes());
        for _ in 0..ch.len_utf8() {
            self.starts.push(start);
            self.ends.push(end);
        }
    }

    #[inline]
    pub(crate) fn ends_with_space_or_empty(&self) -> bool {
        matches!(self.buf.last(), None | Some(b' '))
    }
    /// Bytes normalised so far (while normalising, before `finish`).
    #[inline]
    pub(crate) fn pending_len(&self) -> usize {
        self.buf.len()
    }

    /// Start again from the normalised bytes of `from` (not finished), their offsets in the
    /// original less `delta`: the text `from` was normalised from, less its first `delta`
    /// bytes, is the original of this one.
    pub(crate) fn copy_shifted(&mut self, from: &Normalised, delta: u32) {
        self.clear();
        self.buf.extend_from_slice(&from.buf);
        self.starts
            .extend(from.starts.iter().map(|s| s.wrapping_sub(delta)));
        self.ends
            .extend(from.ends.iter().map(|e| e.wrapping_sub(delta)));
    }

    /// Keep only the first `len` normalised bytes (not finished).
    pub(crate) fn truncate_pending(&mut self, len: usize) {
        self.buf.truncate(len);
        self.starts.truncate(len);
        self.ends.truncate(len);
    }

    /// Replace the first `len` normalised bytes (not finished) by those of `front`.
    pub(crate) fn replace_front(&mut self, len: usize, front: &Normalised) {
        self.buf.splice(..len, front.buf.iter().copied());
        self.starts.splice(..len, front.starts.iter().copied());
        self.ends.splice(..len, front.ends.iter().copied());
    }

    /// The original lost its first `delta` bytes: move every offset back (not finished).
    pub(crate) fn shift_pending(&mut self, delta: u32) {
        for s in self.starts.iter_mut().chain(self.ends.iter_mut()) {
            *s = s.wrapping_sub(delta);
        }
    }

    /// Whether two finished texts are the same, with the same map back to their original.
    #[cfg(debug_assertions)]
    pub(crate) fn same_as(&self, other: &Normalised) -> bool {
        self.text == other.text
            && self.starts == other.starts
            && self.ends == other.ends
            && self.original_len == other.original_len
            && self.breaks == other.breaks
            && self.sentence_starts == other.sentence_starts
    }
}
