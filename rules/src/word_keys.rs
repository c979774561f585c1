//! A first, cheap check of a word pattern's required words in ASCII normalised text: a
//! 512-bit set of the text's word keys (each word's first four bytes), so that most
//! required words that are not in the text are ruled out by one bit test instead of a
//! look-up among the phrases found or a substring search.
//!
//! In ASCII normalised text every required word of a pattern starts at a word start (see
//! `window`): a whole word ends at a space or the text's end, a prefix's stem may go on.
//! So a text holding the word holds a word whose first four bytes are the required
//! word's (its first word, zero-padded when shorter, unless that is a prefix shorter than
//! four bytes: such a word has no key and is always looked up). The set says only "maybe":
//! the exact look-up, then the regex, decide.

/// The key bit of a word that is always looked up.
pub(crate) const NO_KEY: u16 = u16::MAX;

const BITS: u32 = 512;

/// The key of a word that starts at `bytes[0]` and ends at the first space or the end.
fn key(bytes: &[u8]) -> u32 {
    let mut k = [0u8; 4];
    for (slot, &b) in k.iter_mut().zip(bytes.iter().take_while(|&&b| b != b' ')) {
        *slot = b;
    }
    u32::from_le_bytes(k)
}

fn bit_of(key: u32) -> u16 {
    (key.wrapping_mul(0x9E37_79B1) >> (32 - BITS.trailing_zeros())) as u16
}

/// The key bit of a pattern's required word (normalised; `prefix` when the pattern lets
/// its last word go on), or [`NO_KEY`].
pub(crate) fn required_bit(word: &str, prefix: bool) -> u16 {
    let bytes = word.as_bytes();
    let first = bytes.iter().position(|&b| b == b' ').unwrap_or(bytes.len());
    let whole_first_word = first < bytes.len() || !prefix;
    if first == 0
        || !bytes[0].is_ascii_alphanumeric()
        || !word.is_ascii()
        || (first < 4 && !whole_first_word)
    {
        return NO_KEY;
    }
    bit_of(key(bytes))
}

/// The keys of every word of an ASCII normalised text.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct WordKeys([u64; (BITS / 64) as usize]);

impl WordKeys {
    pub(crate) fn of(text: &[u8]) -> WordKeys {
        let mut set = WordKeys::default();
        let mut start = 0;
        while start < text.len() {
            set.add_word(text, start);
            start = match memchr::memchr(b' ', &text[start..]) {
                Some(i) => start + i + 1,
                None => break,
            };
        }
        set
    }

    /// Add the key of the word starting at `text[start]` (a word start, inside the text):
    /// the phrase walk calls this at each word start it visits, so that a text's keys cost
    /// no pass of their own.
    #[inline]
    pub(crate) fn add_word(&mut self, text: &[u8], start: usize) {
        const SPACES: u32 = u32::from_le_bytes([b' '; 4]);
        // The first four bytes at once; the key ends at the first space among them.
        let key = match text.get(start..start + 4) {
            Some(four) => {
                let x = u32::from_le_bytes([four[0], four[1], four[2], four[3]]);
                let y = x ^ SPACES;
                // The lowest zero byte of `y` is the first space (higher flags may be
                // false, and are not read).
                let zero = y.wrapping_sub(0x0101_0101) & !y & 0x8080_8080;
                if zero == 0 {
                    x
                } else {
                    let n = zero.trailing_zeros() / 8;
                    x & ((1u32 << (8 * n)) - 1)
                }
            }
            None => key(&text[start..]),
        };
        let b = usize::from(bit_of(key));
        self.0[b / 64] |= 1 << (b % 64);
    }

    /// The union of the key bits `bits` when there are at least `fewest` of them and none
    /// is [`NO_KEY`] (else `None`: such a word is always looked up).
    pub(crate) fn union(bits: impl Iterator<Item = u16>, fewest: usize) -> Option<WordKeys> {
        let mut set = WordKeys::default();
        let mut count = 0;
        for b in bits {
            if b == NO_KEY {
                return None;
            }
            set.0[usize::from(b) / 64] |= 1 << (b % 64);
            count += 1;
        }
        (count >= fewest).then_some(set)
    }

    /// Whether this text's keys and `other` share a bit: when they do not, no word of
    /// `other`'s union is in the text.
    #[inline]
    pub(crate) fn meets(&self, other: &WordKeys) -> bool {
        self.0
            .iter()
            .zip(other.0.iter())
            .fold(0, |m, (a, b)| m | (a & b))
            != 0
    }

    /// Whether a word with key bit `bit` may be in the text.
    #[inline]
    pub(crate) fn may_hold(&self, bit: u16) -> bool {
        bit == NO_KEY || self.0[usize::from(bit) / 64] & (1 << (bit % 64)) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn words_in_the_text_are_always_held() {
        let keys = WordKeys::of(b"i just want to die gogle search");
        for (w, prefix) in [
            ("die", false),
            ("i", false),
            ("want to", false),
            ("just want", true),
            ("sear", true),
            ("gogle", false),
            ("wa", true),
        ] {
            assert!(keys.may_hold(required_bit(w, prefix)), "{w}");
        }
        assert_eq!(required_bit("wa", true), NO_KEY);
        assert_ne!(required_bit("wa", false), NO_KEY);
        assert_ne!(required_bit("to die", true), NO_KEY);
    }

    /// The set as its definition says: each word's key, word by word.
    fn by_words(text: &str) -> WordKeys {
        let mut set = WordKeys::default();
        if text.is_empty() {
            return set;
        }
        let mut start = 0;
        for w in text.split(' ') {
            let b = usize::from(bit_of(key(&text.as_bytes()[start..])));
            set.0[b / 64] |= 1 << (b % 64);
            start += w.len() + 1;
        }
        set
    }

    proptest! {
        /// The four-bytes-at-once set is the word-by-word one.
        #[test]
        fn set_is_each_words_key(words in proptest::collection::vec("[a-z0-9]{1,7}", 0..20)) {
            let text = words.join(" ");
            prop_assert_eq!(WordKeys::of(text.as_bytes()).0, by_words(&text).0);
        }


        /// A required word at any word start of a text (whole, or as a prefix's stem) is
        /// never ruled out; words are from a small alphabet so that keys collide often.
        #[test]
        fn a_word_at_a_word_start_is_never_ruled_out(
            words in proptest::collection::vec("[abc]{1,6}", 1..12),
            pick in 0usize..12,
            take in 1usize..4,
            cut in 0usize..6,
        ) {
            let text = words.join(" ");
            let keys = WordKeys::of(text.as_bytes());
            let at = pick % words.len();
            let end = (at + take).min(words.len());
            let whole = words[at..end].join(" ");
            prop_assert!(keys.may_hold(required_bit(&whole, false)));
            prop_assert!(keys.may_hold(required_bit(&whole, true)));
            // A prefix's stem: the phrase cut short inside its last word.
            let last = words[end - 1].len();
            let stem_len = whole.len() - cut.min(last - 1);
            prop_assert!(keys.may_hold(required_bit(&whole[..stem_len], true)));
        }
    }
}
