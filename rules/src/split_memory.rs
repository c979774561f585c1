//! What a thread remembers of the words it split (see `run_together`): a typed tail is
//! scanned at every word end and holds the same words each time, and a title is matched again
//! at every change of window, so a word's split is looked up rather than made again; and the
//! words that split lately, which a typed tail looks back to.

use crate::run_together::{Splitter, SPLIT_FROM, SPLIT_UP_TO};
use std::ops::Range;

impl Splitter {
    /// [`Splitter::split`], remembered on this thread in [`RECENT`] slots picked by a hash
    /// of the word: a typed tail is scanned at every word end and holds the same words each
    /// time, and a title is matched again at every change of window.
    pub(crate) fn split_recent(&self, word: &[u8]) -> Option<Vec<Range<usize>>> {
        // The same test `split` starts with, before any look-up: many words fail it.
        if !(SPLIT_FROM..=SPLIT_UP_TO).contains(&word.len())
            || !word.iter().all(u8::is_ascii_lowercase)
        {
            return None;
        }
        let owner = self.id;
        let slot = slot_of(word);
        RECENT_SPLITS.with(|cell| {
            let mut recent = cell.borrow_mut();
            if recent.is_empty() {
                recent.resize_with(RECENT, || None);
            }
            if let Some((o, w, pieces)) = &recent[slot] {
                if *o == owner && w.as_slice() == word {
                    return pieces.clone();
                }
            }
            let pieces = self.split(word);
            recent[slot] = Some((owner, word.to_vec(), pieces.clone()));
            pieces
        })
    }
}

/// How many words split (or not) a thread remembers (see [`Splitter::split_recent`]).
const RECENT: usize = 256;

/// The slot of [`RECENT`] a word is remembered in (a multiplicative hash of its letters).
fn slot_of(word: &[u8]) -> usize {
    let h = word.iter().fold(word.len() as u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (h.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as usize % RECENT
}

type Recent = Vec<Option<(u64, Vec<u8>, Option<Vec<Range<usize>>>)>>;

thread_local! {
    static RECENT_SPLITS: std::cell::RefCell<Recent> = const { std::cell::RefCell::new(Vec::new()) };
}

/// How many words that split a thread remembers, so that a typed tail looks back to them
/// (see [`look_back`]).
const SPLIT_LATELY: usize = 4;

thread_local! {
    static LATELY: std::cell::RefCell<Vec<(u64, Box<[u8]>)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Remember that `word` split (for the splitter `owner`).
pub(crate) fn remember_split(owner: u64, word: &[u8]) {
    LATELY.with(|cell| {
        let mut lately = cell.borrow_mut();
        if lately.iter().any(|(o, w)| *o == owner && **w == *word) {
            return;
        }
        if lately.len() == SPLIT_LATELY {
            lately.remove(0);
        }
        lately.push((owner, word.into()));
    });
}

/// Where a typed tail's words are looked at from: `from`, or the start of an earlier word
/// that split lately. A pattern with a gap ('~12') may end far after a split word, and the
/// whole text, matched in one go, hears it; so must the tail typed key by key. Costs nothing
/// while no word has split.
pub(crate) fn look_back(owner: u64, text: &str, from: usize) -> usize {
    if from == 0 {
        return 0;
    }
    LATELY.with(|cell| {
        let lately = cell.borrow();
        let mut from = from;
        for (_, word) in lately.iter().filter(|(o, _)| *o == owner) {
            let Ok(word) = std::str::from_utf8(word) else {
                continue;
            };
            let found = text.match_indices(word).map(|(at, _)| at).find(|&at| {
                at < from
                    && (at == 0 || text.as_bytes()[at - 1] == b' ')
                    && text
                        .as_bytes()
                        .get(at + word.len())
                        .is_none_or(|&b| b == b' ')
            });
            if let Some(at) = found {
                from = from.min(at);
            }
        }
        from
    })
}
