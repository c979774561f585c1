//! The words a pack knows, sorted and kept in one block of letters, for the splitter of words
//! run together (see `run_together`).

/// Sorted words kept in one block of letters (a pack knows thousands: one allocation each
/// would cost the agent's memory more than the letters do).
#[derive(Debug, Default)]
pub(crate) struct Words {
    letters: Box<[u8]>,
    /// Where each word starts in `letters`, and the end of the last.
    starts: Box<[u32]>,
}

impl Words {
    /// `sorted`: distinct words in order.
    pub(crate) fn of(sorted: &[&str]) -> Words {
        let mut letters = Vec::with_capacity(sorted.iter().map(|w| w.len()).sum());
        let mut starts = Vec::with_capacity(sorted.len() + 1);
        for w in sorted {
            starts.push(letters.len() as u32);
            letters.extend_from_slice(w.as_bytes());
        }
        starts.push(letters.len() as u32);
        Words {
            letters: letters.into(),
            starts: starts.into(),
        }
    }

    fn len(&self) -> usize {
        self.starts.len().saturating_sub(1)
    }

    pub(crate) fn get(&self, i: usize) -> Option<&[u8]> {
        (i < self.len())
            .then(|| &self.letters[self.starts[i] as usize..self.starts[i + 1] as usize])
    }

    /// The place of `word`, or where it would go (as `binary_search`).
    pub(crate) fn find(&self, word: &[u8]) -> Result<usize, usize> {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.get(mid).unwrap_or_default().cmp(word) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Ok(mid),
            }
        }
        Err(lo)
    }
}
