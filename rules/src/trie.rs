//! A compact trie over normalised phrases, walked from a word start (an anchored walk).
//!
//! Chains of single bytes are stored as one edge label (a radix tree), so a walk compares
//! contiguous bytes instead of following a pointer per byte, and the whole trie of a pack
//! takes well under a megabyte: nodes are 16 bytes with `u32` indices, the children of a
//! node are contiguous, and their first bytes sit in one array searched without touching
//! the nodes. Every phrase ends on a node, so a walk reports a phrase when it reaches the
//! phrase's node and stops at the first byte no phrase continues with.

use std::ops::Range;

const NONE: u32 = u32::MAX;
/// Edge labels up to this long are kept in the node.
const INLINE: usize = 4;

/// One node: the edge label leading into it, its children and the phrase ending on it.
#[derive(Clone, Copy, Debug)]
struct Node {
    /// The edge label after its first byte: up to four bytes in place (most labels, so a
    /// walk reads no other memory for them), else its offset in [`PhraseTrie::labels`].
    label: [u8; 4],
    /// Index of the first child in [`PhraseTrie::nodes`] (children are contiguous).
    children: u32,
    /// The phrase ending on this node, or `NONE`.
    phrase: u32,
    /// Length of the edge label after its first byte.
    label_len: u16,
    child_count: u16,
}

/// The trie. Build it with [`PhraseTrie::new`], walk it with [`PhraseTrie::walk`].
#[derive(Debug)]
pub(crate) struct PhraseTrie {
    /// Node of the phrases starting with each byte, or `NONE`.
    root: Box<[u32; 256]>,
    nodes: Box<[Node]>,
    /// First byte of each node's edge label, by node: a node's children's first bytes are
    /// one sorted run of it.
    first: Box<[u8]>,
    labels: Box<[u8]>,
}

impl PhraseTrie {
    /// A trie over `phrases` (distinct; phrase `i` is reported as `i`). Empty phrases
    /// are never reported. Fails only when a pack is far beyond any real size.
    pub(crate) fn new<P: AsRef<[u8]>>(phrases: &[P]) -> Result<PhraseTrie, String> {
        if phrases.len() >= NONE as usize {
            return Err(format!(
                "{} phrases: at most {} fit",
                phrases.len(),
                NONE - 1
            ));
        }
        let mut sorted: Vec<(&[u8], u32)> = phrases
            .iter()
            .enumerate()
            .map(|(i, p)| (p.as_ref(), i as u32))
            .filter(|(p, _)| !p.is_empty())
            .collect();
        sorted.sort_unstable();
        sorted.dedup_by(|a, b| a.0 == b.0);
        let mut trie = Builder::default();
        let mut root = Box::new([NONE; 256]);
        // Nodes wait here until their children are laid out: (node, phrases below it, depth).
        let mut queue: std::collections::VecDeque<(u32, Range<usize>, usize)> = Default::default();
        for (node, range) in trie.children(&sorted, 0..sorted.len(), 0)? {
            root[usize::from(sorted[range.start].0[0])] = node;
            queue.push_back((node, range, 0));
        }
        while let Some((node, range, depth)) = queue.pop_front() {
            // The edge label runs while every phrase below shares the next byte and none
            // ends; the shortest phrase sorts first, so it is the one that can end.
            let first = sorted[range.start].0;
            let last = sorted[range.end - 1].0;
            let mut end = depth + 1;
            while first.len() > end && last.len() > end && first[end] == last[end] {
                end += 1;
            }
            let mut below = range.clone();
            if first.len() == end {
                trie.nodes[node as usize].phrase = sorted[range.start].1;
                below.start += 1;
            }
            let label_len = u16::try_from(end - depth - 1)
                .map_err(|_| "a phrase is longer than 65,535 bytes".to_string())?;
            let bytes = &first[depth + 1..end];
            let label = if bytes.len() <= INLINE {
                let mut inline = [0u8; INLINE];
                inline[..bytes.len()].copy_from_slice(bytes);
                inline
            } else {
                let at = u32::try_from(trie.labels.len())
                    .map_err(|_| "the phrases are longer than 4 GiB in all".to_string())?;
                trie.labels.extend_from_slice(bytes);
                at.to_ne_bytes()
            };
            let kids = trie.children(&sorted, below, end)?;
            let n = &mut trie.nodes[node as usize];
            n.label = label;
            n.label_len = label_len;
            n.child_count = kids.len() as u16;
            if let Some((child, _)) = kids.first() {
                n.children = *child;
            }
            for (child, range) in kids {
                queue.push_back((child, range, end));
            }
        }
        Ok(PhraseTrie {
            root,
            first: trie.nodes_first.into_boxed_slice(),
            nodes: trie.nodes.into_boxed_slice(),
            labels: trie.labels.into_boxed_slice(),
        })
    }

    /// Bytes of memory the trie holds.
    #[cfg(test)]
    pub(crate) fn heap_bytes(&self) -> usize {
        std::mem::size_of::<[u32; 256]>()
            + self.nodes.len() * std::mem::size_of::<Node>()
            + self.first.len()
            + self.labels.len()
    }

    /// Call `found(phrase, end)` for every phrase that `text[start..end]` starts with,
    /// shortest first. Returns the end of the bytes it read (the walk's outcome depends on
    /// `text[start..that]` only), or [`RAN_OUT`] when it would have read on past `end`.
    #[inline]
    pub(crate) fn walk(
        &self,
        text: &[u8],
        start: usize,
        end: usize,
        mut found: impl FnMut(u32, usize),
    ) -> usize {
        let text = &text[..end];
        let Some(&b) = text.get(start) else {
            return RAN_OUT;
        };
        let mut node = self.root[usize::from(b)];
        let mut at = start + 1;
        while node != NONE {
            let n = self.nodes[node as usize];
            let len = usize::from(n.label_len);
            if len > 0 {
                let label = if len <= INLINE {
                    &n.label[..len]
                } else {
                    let offset = u32::from_ne_bytes(n.label) as usize;
                    &self.labels[offset..offset + len]
                };
                // Labels are short: a loop, not a call to `memcmp`.
                match text.get(at..at + len) {
                    Some(t) if t.iter().zip(label).all(|(a, b)| a == b) => at += len,
                    Some(_) => return at + len,
                    None => return RAN_OUT,
                }
            }
            if n.phrase != NONE {
                found(n.phrase, at);
            }
            let Some(&b) = text.get(at) else {
                return RAN_OUT;
            };
            let kids = n.children as usize..n.children as usize + usize::from(n.child_count);
            let firsts = &self.first[kids.clone()];
            // Most nodes have a child or two; near the root, many, sorted by first byte.
            let child = if firsts.len() <= 8 {
                firsts.iter().position(|&k| k == b)
            } else {
                firsts.binary_search(&b).ok()
            };
            node = match child {
                Some(i) => (kids.start + i) as u32,
                None => NONE,
            };
            at += 1;
        }
        at
    }
}

/// What [`PhraseTrie::walk`] returns when the text ended before the walk did.
pub(crate) const RAN_OUT: usize = usize::MAX;

#[derive(Default)]
struct Builder {
    nodes: Vec<Node>,
    nodes_first: Vec<u8>,
    labels: Vec<u8>,
}

impl Builder {
    /// New contiguous nodes for the groups of `sorted[range]` by their byte at `depth`
    /// (every phrase in the range is longer than `depth`), with each group's range.
    fn children(
        &mut self,
        sorted: &[(&[u8], u32)],
        range: Range<usize>,
        depth: usize,
    ) -> Result<Vec<(u32, Range<usize>)>, String> {
        let mut out: Vec<(u32, Range<usize>)> = Vec::new();
        for i in range {
            let b = sorted[i].0[depth];
            match out.last_mut() {
                Some((node, r)) if self.nodes_first[*node as usize] == b => r.end = i + 1,
                _ => {
                    let node = u32::try_from(self.nodes.len())
                        .ok()
                        .filter(|&n| n < NONE)
                        .ok_or_else(|| "too many phrases for one trie".to_string())?;
                    self.nodes.push(Node {
                        label: [0; INLINE],
                        children: 0,
                        phrase: NONE,
                        label_len: 0,
                        child_count: 0,
                    });
                    self.nodes_first.push(b);
                    out.push((node, i..i + 1));
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk_all(trie: &PhraseTrie, text: &str, start: usize) -> Vec<(u32, usize)> {
        let mut out = Vec::new();
        trie.walk(text.as_bytes(), start, text.len(), |p, e| out.push((p, e)));
        out
    }

    #[test]
    fn reports_every_phrase_the_text_starts_with() {
        let phrases = [
            "kil",
            "kil me",
            "kilo",
            "k",
            "want to die",
            "want",
            "wa",
            "é",
            "wantonly",
        ];
        let trie = PhraseTrie::new(&phrases).unwrap();
        assert_eq!(walk_all(&trie, "kil me now", 0), [(3, 1), (0, 3), (1, 6)]);
        assert_eq!(walk_all(&trie, "kilo", 0), [(3, 1), (0, 3), (2, 4)]);
        assert_eq!(walk_all(&trie, "want to do", 0), [(6, 2), (5, 4)]);
        assert_eq!(walk_all(&trie, "wantonly", 0), [(6, 2), (5, 4), (8, 8)]);
        assert_eq!(walk_all(&trie, "wantonl", 0), [(6, 2), (5, 4)]);
        assert_eq!(
            walk_all(&trie, "i want to die", 2),
            [(6, 4), (5, 6), (4, 13)]
        );
        assert_eq!(walk_all(&trie, "want to di", 0), [(6, 2), (5, 4)]);
        assert_eq!(walk_all(&trie, "éa", 0), [(7, 2)]);
        assert_eq!(walk_all(&trie, "x", 0), []);
        assert_eq!(walk_all(&trie, "", 0), []);
        let mut out = Vec::new();
        trie.walk(b"kil me", 0, 5, |p, e| out.push((p, e)));
        assert_eq!(out, [(3, 1), (0, 3)]);
        assert!(trie.heap_bytes() < 2048);
    }

    #[test]
    fn empty_and_duplicate_phrases() {
        let trie = PhraseTrie::new(&["", "a", "ab"]).unwrap();
        assert_eq!(walk_all(&trie, "abc", 0), [(1, 1), (2, 2)]);
        let trie = PhraseTrie::new::<&str>(&[]).unwrap();
        assert_eq!(walk_all(&trie, "abc", 0), []);
    }
}
