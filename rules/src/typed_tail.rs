//! The typed matcher's normalised tail, kept from one scan to the next.
//!
//! At every word end the typed matcher scans a tail of its buffer, which the normaliser must
//! turn into normal form with a map back to the buffer. Normalising the whole tail again
//! redoes the text the previous scan covered, so the normaliser's output and pending state
//! are kept (the *stream*, with offsets in the buffer) and only the text typed since is fed.
//!
//! The stream stays exactly what normalising the tail from scratch would give:
//! - a backspace into the streamed text rolls it back to the last *clean* place before the
//!   cut (a finished word of ASCII letters with nothing pending: what follows it is
//!   normalised the same whatever came before);
//! - when the tail begins later than the stream (older text falls out of the tail), the
//!   new beginning is normalised afresh up to the first clean place both have in common,
//!   and the stream's output from there on is kept;
//! - dropping the front of the buffer moves every offset back, or drops the stream when it
//!   began in the text dropped;
//! - `reset` (another window, a cursor jump) drops it.

use crate::normalise::{Clean, Normalised, Normaliser};

#[derive(Debug, Default)]
pub(crate) struct TailStream {
    valid: bool,
    /// Buffer offset where the streamed text begins, and where what was fed ends.
    origin: usize,
    end: usize,
    /// `end` is a clean place a backspace rolled back to: the word before it was taken as
    /// finished, which holds only while the character after it is there.
    word_at_end: bool,
    normaliser: Normaliser,
    /// Normalised so far, not finished, with offsets in the buffer.
    out: Normalised,
    /// Clean places after `origin`, in order.
    clean: Vec<Clean>,
    /// Where the normalised stream is, for phrases kept between scans (see `typed_walk`):
    /// bumped whenever it is normalised anew, and the offset of its first byte, which
    /// moves when a fresh front replaces the old one.
    generation: u64,
    base: i64,
    // Scratch: a fresh beginning, and the copy that finishes a scan's tail.
    fresh: Normaliser,
    fresh_out: Normalised,
    fresh_clean: Vec<Clean>,
    finisher: Normaliser,
}

impl TailStream {
    /// Forget the stream: the next tail is normalised from its beginning.
    pub(crate) fn invalidate(&mut self) {
        self.valid = false;
    }

    /// The buffer was cut to `len` bytes (a backspace): roll back to the last clean place
    /// whose following character is still there.
    pub(crate) fn truncate(&mut self, len: usize) {
        if !self.valid || len > self.end || (len == self.end && !self.word_at_end) {
            return;
        }
        let keep = self.clean.partition_point(|c| (c.at as usize) < len);
        let Some(last) = keep.checked_sub(1).map(|k| self.clean[k]) else {
            self.valid = false;
            return;
        };
        self.clean.truncate(keep);
        self.out.truncate_pending(last.len as usize);
        self.normaliser.restore_clean();
        self.end = last.at as usize;
        self.word_at_end = true;
    }

    /// The buffer lost its first `cut` bytes.
    pub(crate) fn drop_front(&mut self, cut: usize) {
        if !self.valid || self.origin < cut {
            self.valid = false;
            return;
        }
        let delta = cut as u32;
        self.origin -= cut;
        self.end -= cut;
        self.out.shift_pending(delta);
        self.normaliser.shift(delta);
        for c in &mut self.clean {
            c.at -= delta;
        }
    }

    /// Normalise `buffer[start..]` into `into` (offsets in the tail), exactly as
    /// [`Normaliser::normalise_into`] would. `settled`: the buffer ends where a word ends,
    /// so the stream may take in all of it; otherwise (a flush) what follows the stream is
    /// normalised for this tail only. Returns the place of `into` in the stream (its
    /// generation and the offset of its first byte), or `None` when it is not the stream's.
    pub(crate) fn normalise(
        &mut self,
        buffer: &str,
        start: usize,
        settled: bool,
        into: &mut Normalised,
    ) -> Option<(u64, i64)> {
        let usable = self.valid && start >= self.origin && start <= self.end;
        if !settled {
            if usable && start == self.origin {
                self.finish_into(buffer, start, into);
                return Some((self.generation, self.base));
            }
            self.finisher.normalise_into(&buffer[start..], into);
            return None;
        }
        if !usable {
            self.restart(start);
        } else if start > self.origin {
            self.advance(buffer, start);
        }
        let end = self.end;
        self.normaliser.feed(
            &buffer[end..],
            end as u32,
            &mut self.out,
            Some(&mut self.clean),
        );
        self.end = buffer.len();
        self.word_at_end = false;
        self.finish_into(buffer, start, into);
        #[cfg(debug_assertions)]
        {
            let scratch = crate::normalise::normalise(&buffer[start..]);
            debug_assert!(
                scratch.same_as(into),
                "the kept tail differs from a fresh one"
            );
        }
        Some((self.generation, self.base))
    }

    fn restart(&mut self, start: usize) {
        self.normaliser.begin(&mut self.out);
        self.clean.clear();
        self.origin = start;
        self.end = start;
        self.word_at_end = false;
        self.valid = true;
        self.generation += 1;
        self.base = 0;
    }

    /// Begin the stream at `start`, later than its origin: normalise afresh from `start`
    /// to the first clean place of the stream that is clean afresh too, and keep the
    /// stream from there.
    fn advance(&mut self, buffer: &str, start: usize) {
        self.fresh.begin(&mut self.fresh_out);
        self.fresh_clean.clear();
        let mut fed = start;
        let first = self.clean.partition_point(|c| (c.at as usize) <= start);
        for k in first..self.clean.len() {
            let at = self.clean[k].at as usize;
            self.fresh.feed(
                &buffer[fed..at],
                fed as u32,
                &mut self.fresh_out,
                Some(&mut self.fresh_clean),
            );
            fed = at;
            if !self.fresh.is_clean(&self.fresh_out) {
                continue;
            }
            let old = self.clean[k].len as usize;
            let new = self.fresh_out.pending_len();
            self.out.replace_front(old, &self.fresh_out);
            let later = self.clean[k + 1..].iter().map(|c| Clean {
                at: c.at,
                len: (c.len as usize + new - old) as u32,
            });
            self.fresh_clean.extend(later);
            std::mem::swap(&mut self.clean, &mut self.fresh_clean);
            self.origin = start;
            self.base += old as i64 - new as i64;
            return;
        }
        // Nothing in common: the fresh beginning becomes the stream.
        self.fresh.feed(
            &buffer[fed..self.end],
            fed as u32,
            &mut self.fresh_out,
            Some(&mut self.fresh_clean),
        );
        std::mem::swap(&mut self.normaliser, &mut self.fresh);
        std::mem::swap(&mut self.out, &mut self.fresh_out);
        std::mem::swap(&mut self.clean, &mut self.fresh_clean);
        self.origin = start;
        self.generation += 1;
        self.base = 0;
    }

    /// The stream, finished as the tail `buffer[start..]` (`start` is its origin): a copy
    /// with offsets in the tail, fed what follows the stream, then ended.
    fn finish_into(&mut self, buffer: &str, start: usize, into: &mut Normalised) {
        let delta = start as u32;
        into.copy_shifted(&self.out, delta);
        self.finisher.clone_from(&self.normaliser);
        self.finisher.shift(delta);
        let end = self.end;
        self.finisher
            .feed(&buffer[end..], (end - start) as u32, into, None);
        self.finisher.end(&buffer[start..], into);
    }
}

#[cfg(test)]
mod tests {
    //! Typed text fed through the kept tail reports exactly what a tail normalised afresh at
    //! every scan reports (and, in debug builds, every kept tail is checked against a fresh
    //! normalisation of the same text).

    use crate::{CompileOptions, Match, Matcher, Pack, TypedMatcher};
    use std::path::Path;
    use std::sync::Arc;

    enum Key {
        Char(char),
        Backspace,
        Flush,
        Reset,
    }

    fn matcher() -> Arc<Matcher> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("packs/en-GB.toml");
        let pack = Pack::load(&path).unwrap();
        Arc::new(Matcher::compile(&pack, &CompileOptions::default()).unwrap())
    }

    fn spans(found: Vec<Match>) -> Vec<(String, std::ops::Range<usize>)> {
        found
            .into_iter()
            .map(|m| (m.rule_id.to_string(), m.span))
            .collect()
    }

    /// Feed `keys` to a typed matcher that keeps its tail and to one that forgets it before
    /// every key; both must report the same at every key. Returns what was reported.
    fn same_as_fresh(m: &Arc<Matcher>, keys: impl IntoIterator<Item = Key>) -> usize {
        let mut kept = m.typed();
        let mut fresh = m.typed();
        let mut reported = 0;
        for key in keys {
            fresh.stream.invalidate();
            let step = |t: &mut TypedMatcher| match key {
                Key::Char(c) => spans(t.push(c)),
                Key::Backspace => {
                    t.backspace();
                    Vec::new()
                }
                Key::Flush => spans(t.flush()),
                Key::Reset => {
                    t.reset();
                    Vec::new()
                }
            };
            let (a, b) = (step(&mut kept), step(&mut fresh));
            assert_eq!(a, b, "after {:?}", kept.text().len());
            assert_eq!(kept.text(), fresh.text());
            reported += a.len();
        }
        reported
    }

    fn typed(text: &str) -> Vec<Key> {
        text.chars().map(Key::Char).collect()
    }

    #[test]
    fn backspace_across_a_word_end() {
        let m = matcher();
        let mut keys = typed("honestly i want to sleep ");
        keys.extend((0..6).map(|_| Key::Backspace));
        keys.extend(typed("die tonight. k.i.l.l "));
        keys.extend((0..3).map(|_| Key::Backspace));
        keys.extend(typed("l myself x "));
        keys.push(Key::Flush);
        assert!(same_as_fresh(&m, keys) > 0);
    }

    #[test]
    fn a_paste_and_a_cursor_jump() {
        let m = matcher();
        let mut keys = typed("ok so the homework is due ");
        // A paste arrives as one burst of characters, lines and all.
        keys.extend(typed(
            "Dear diary,\nI just wanna d1e. Everyone h8s me!!! s u i c i d e \u{2121} caf\u{e9} ",
        ));
        // The cursor moved: the agent starts again.
        keys.push(Key::Reset);
        keys.extend(typed("i want to end my life "));
        keys.push(Key::Flush);
        assert!(same_as_fresh(&m, keys) > 0);
    }

    #[test]
    fn a_long_run_without_spaces_then_words() {
        let m = matcher();
        let mut keys = typed(&"a".repeat(1500));
        keys.extend(typed(" and then i want to die. "));
        keys.push(Key::Flush);
        keys.extend(typed(&"xyz".repeat(300)));
        keys.extend(typed(" i want to kill myself "));
        keys.push(Key::Flush);
        assert!(same_as_fresh(&m, keys) > 0);
    }

    #[test]
    fn a_window_change_and_a_buffer_that_drops_its_front() {
        let m = matcher();
        let mut keys = Vec::new();
        // Enough text that the tail moves on and the buffer drops its front many times.
        for i in 0..120 {
            keys.extend(typed(&format!("we played the year {i} team and lost, ")));
            if i % 17 == 0 {
                keys.extend(typed("i want to die lol "));
            }
            if i % 29 == 0 {
                keys.push(Key::Backspace);
                keys.push(Key::Backspace);
            }
            if i % 41 == 0 {
                keys.push(Key::Flush);
                keys.push(Key::Reset);
            }
        }
        assert!(same_as_fresh(&m, keys) > 0);
    }

    #[test]
    fn random_typing_with_edits() {
        let m = matcher();
        let words = [
            "i",
            "want",
            "to",
            "die",
            "kill",
            "myself",
            "k.i.l.l",
            "the",
            "homework",
            "h4te",
            "everyone",
            "s u i c i d e",
            "end",
            "my",
            "life",
            "assassin's",
            "creed",
            "!!!",
            "Mr.",
            "e.g.",
            "caf\u{e9}",
            "\u{200B}",
            "\n",
            "sooo",
            "suiiicide",
            "x",
            "a",
            "b",
            "c d",
        ];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let mut keys = Vec::new();
        for _ in 0..6000 {
            match next(40) {
                0..=2 => keys.extend((0..next(12)).map(|_| Key::Backspace)),
                3 => keys.push(Key::Flush),
                4 if next(4) == 0 => keys.push(Key::Reset),
                _ => {
                    keys.extend(typed(words[next(words.len())]));
                    keys.extend(typed([" ", ", ", ". ", "? ", " "][next(5)]));
                }
            }
        }
        assert!(same_as_fresh(&m, keys) > 0);
    }
}
