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
    normaliser: Normaliser,
    /// Normalised so far, not finished, with offsets in the buffer.
    out: Normalised,
    /// Clean places after `origin`, in order.
    clean: Vec<Clean>,
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
        if !self.valid || len >= self.end {
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
    /// normalised for this tail only.
    pub(crate) fn normalise(
        &mut self,
        buffer: &str,
        start: usize,
        settled: bool,
        into: &mut Normalised,
    ) {
        let usable = self.valid && start >= self.origin && start <= self.end;
        if !settled {
            if usable && start == self.origin {
                self.finish_into(buffer, start, into);
            } else {
                self.finisher.normalise_into(&buffer[start..], into);
            }
            return;
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
        self.finish_into(buffer, start, into);
        #[cfg(debug_assertions)]
        {
            let scratch = crate::normalise::normalise(&buffer[start..]);
            debug_assert!(
                scratch.same_as(into),
                "the kept tail differs from a fresh one"
            );
        }
    }

    fn restart(&mut self, start: usize) {
        self.normaliser.begin(&mut self.out);
        self.clean.clear();
        self.origin = start;
        self.end = start;
        self.valid = true;
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
