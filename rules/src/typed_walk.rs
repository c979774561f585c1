//! The phrases found in the typed matcher's previous tail, kept for the next scan.
//!
//! A walk of the phrase trie from a word start reads a few bytes (usually to the end of its
//! word) and its outcome depends on those alone; the walk says how far it read. When the
//! kept tail (see `typed_tail`) grows by a word, most word starts see the same bytes as at
//! the previous scan, so their occurrences are taken over (moved by however much the tail's
//! front changed) and only the other word starts are walked: the last few, those whose walk
//! ran into the end of the previous tail, and those in a front normalised afresh. Whether a
//! start may be taken over is decided by comparing the bytes its walk read, so the phrases
//! found are exactly those a walk of the whole tail finds.

use crate::phrases::{Found, Occurrence, Phrases};
use crate::trie::RAN_OUT;
use crate::word_keys::WordKeys;

#[derive(Debug, Default)]
pub(crate) struct KeptWalk {
    /// The kept tail that `found` was found in, its place (see `TailStream::normalise`).
    place: Option<(u64, i64)>,
    text: Vec<u8>,
    /// The phrases found in `text`, which the scan reads in place (see [`KeptWalk::found`]).
    found: Vec<Occurrence>,
    /// Each word start walked or taken over in `text`, with the end of the bytes its walk
    /// read (`u32::MAX`: it ran into the end of `text`).
    reach: Vec<(u32, u32)>,
    // Scratch.
    next_reach: Vec<(u32, u32)>,
    reuse: Vec<bool>,
    walked: Found,
    /// The phrases found in the text being walked, swapped with `found` when done.
    next: Vec<Occurrence>,
}

impl KeptWalk {
    /// Forget the phrases found.
    pub(crate) fn invalidate(&mut self) {
        self.place = None;
    }

    /// The phrases found by the last [`KeptWalk::find`].
    pub(crate) fn found(&self) -> &[Occurrence] {
        &self.found
    }

    /// Every occurrence of `phrases` from a word start of `text` into [`KeptWalk::found`],
    /// in the order of [`Phrases::find`], and the key of each word into `keys` when given.
    /// `place` says where `text` is in the kept tail (its generation and the offset of its
    /// first byte), or `None` when it was normalised on its own.
    pub(crate) fn find(
        &mut self,
        phrases: &Phrases,
        text: &[u8],
        place: Option<(u64, i64)>,
        mut keys: Option<&mut WordKeys>,
    ) {
        // Built in `next`, then swapped in: the scan reads the phrases where they are, and
        // neither list is copied or grown again once it has a tail's room.
        let mut out = std::mem::take(&mut self.next);
        out.clear();
        // Where the previous text's byte for each of this text's is: `i + shift`.
        let shift = match (self.place, place) {
            (Some((was, old_base)), Some((now, base))) if was == now => Some(base - old_base),
            _ => None,
        };
        // Whether every byte this text shares with the previous one is the same (the usual
        // case: a word typed on the end, the front moved by whole words): then one
        // comparison stands for each kept start's.
        let same = shift.is_some_and(|shift| {
            let lo = (-shift).max(0);
            let hi = (text.len() as i64).min(self.text.len() as i64 - shift);
            lo >= hi || {
                let (lo, hi) = (lo as usize, hi as usize);
                let (old_lo, old_hi) = ((lo as i64 + shift) as usize, (hi as i64 + shift) as usize);
                text[lo..hi] == self.text[old_lo..old_hi]
            }
        });
        self.walked.clear();
        self.next_reach.clear();
        self.reuse.clear();
        self.reuse.resize(text.len(), false);
        let mut k = 0;
        let mut start = 0;
        while start < text.len() {
            if let Some(k2) = keys.as_deref_mut() {
                k2.add_word(text, start);
            }
            let kept = shift.and_then(|shift| {
                let j = start as i64 + shift;
                while self.reach.get(k).is_some_and(|&(s, _)| i64::from(s) < j) {
                    k += 1;
                }
                let &(s, reach) = self.reach.get(k)?;
                if start == 0 || j <= 0 || i64::from(s) != j || reach == u32::MAX {
                    return None;
                }
                let (j, reach) = (j as usize, reach as usize);
                let end = start + (reach - j);
                // The space before it and every byte the walk read are the same.
                (end <= text.len() && (same || text[start - 1..end] == self.text[j - 1..reach]))
                    .then_some(end)
            });
            let reach = match kept {
                Some(end) => {
                    self.reuse[start] = true;
                    end
                }
                None => match phrases.walk_from(text, start, &mut self.walked) {
                    RAN_OUT => u32::MAX as usize,
                    end => end,
                },
            };
            self.next_reach.push((start as u32, reach as u32));
            start = match text[start..].iter().position(|&b| b == b' ') {
                Some(i) => start + i + 1,
                None => break,
            };
        }
        // Walked by start, each start's by end: a stable sort by end orders them as
        // `Phrases::find` does (by end, then start).
        let walked = &mut self.walked[..];
        for i in 1..walked.len() {
            let mut k = i;
            while k > 0 && walked[k - 1].span.end > walked[k].span.end {
                walked.swap(k - 1, k);
                k -= 1;
            }
        }
        let shift = shift.unwrap_or(0);
        let reuse = &self.reuse;
        let moved = self.found.iter().filter_map(|o| {
            let start = o.span.start as i64 - shift;
            let taken = start >= 0 && (start as usize) < text.len() && reuse[start as usize];
            taken.then(|| Occurrence {
                phrase: o.phrase,
                span: start as usize..(o.span.end as i64 - shift) as usize,
            })
        });
        // Merge the two, both by (end, start).
        let mut walked = self.walked.iter().peekable();
        for m in moved {
            let before = |w: &&Occurrence| (w.span.end, w.span.start) < (m.span.end, m.span.start);
            while let Some(w) = walked.next_if(before) {
                out.push(w.clone());
            }
            out.push(m);
        }
        out.extend(walked.cloned());
        #[cfg(debug_assertions)]
        {
            let mut whole = Found::new();
            phrases.find(text, &mut whole);
            debug_assert_eq!(&whole[..], &out[..], "phrases taken over differ");
        }
        self.place = place;
        self.text.clear();
        self.text.extend_from_slice(text);
        self.next = std::mem::replace(&mut self.found, out);
        std::mem::swap(&mut self.reach, &mut self.next_reach);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phrases::PhrasesBuilder;

    fn phrases() -> Phrases {
        let mut b = PhrasesBuilder::default();
        for (i, p) in ["ab", "ab cd", "cd", "cd ef gh", "zz", "ef"]
            .iter()
            .enumerate()
        {
            b.rule(p, i as u32);
        }
        b.build().unwrap()
    }

    /// Each text's phrases, found through the kept walk at the given place, are those a
    /// walk of the whole text finds.
    fn same_as_whole(steps: &[(&str, Option<(u64, i64)>)]) {
        let p = phrases();
        let mut kept = KeptWalk::default();
        for (text, place) in steps {
            kept.find(&p, text.as_bytes(), *place, None);
            let mut whole = Found::new();
            p.find(text.as_bytes(), &mut whole);
            assert_eq!(&whole[..], kept.found(), "{text:?}");
        }
    }

    #[test]
    fn words_typed_on_the_end_are_walked() {
        same_as_whole(&[
            ("ab", Some((1, 0))),
            ("ab cd", Some((1, 0))),
            ("ab cd ef", Some((1, 0))),
            ("ab cd ef gh", Some((1, 0))),
            ("ab cd ef gh zz", Some((1, 0))),
        ]);
    }

    #[test]
    fn a_front_that_grew_or_shrank_or_changed() {
        same_as_whole(&[
            ("ab cd ef", Some((1, 0))),
            // A longer front: the old first byte is now the fourth.
            ("zz ab cd ef", Some((1, -3))),
            // A shorter one: the old fourth byte is now the first.
            ("ab cd ef gh", Some((1, 3))),
            // The front normalised afresh differs; the rest is the same.
            ("cd cd ef gh", Some((1, 3))),
            // Another generation: nothing is taken over.
            ("ab cd ef gh", Some((2, 0))),
            ("ab cd ef gh", None),
            ("ab cd", Some((2, 0))),
        ]);
    }
}
