//! The regexes a word pattern compiles to: each token's alternatives, the gaps between
//! tokens (capture groups, so the words a gap skipped can be read for cues), and the
//! sequence of tokens.

use crate::pattern::{ListEntries, Piece, Token};
use std::collections::BTreeMap;

pub(crate) fn alternatives(
    piece: &Piece,
    lists: &BTreeMap<String, ListEntries>,
) -> Vec<(String, bool)> {
    match piece {
        Piece::Words(alts) => alts.clone(),
        Piece::List(name) => lists
            .get(name)
            .map(|l| l.entries.iter().map(|e| (e.clone(), false)).collect())
            .unwrap_or_default(),
    }
}

pub(crate) fn piece_regex(piece: &Piece, lists: &BTreeMap<String, ListEntries>) -> String {
    let mut alts = alternatives(piece, lists);
    // Longest first so `end my life` is preferred over `end`.
    alts.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
    alts.dedup();
    let parts: Vec<String> = alts
        .iter()
        .map(|(w, prefix)| {
            let escaped = regex::escape(w);
            if *prefix {
                format!("{escaped}[^ ]*")
            } else {
                escaped
            }
        })
        .collect();
    format!("(?:{})", parts.join("|"))
}

/// A gap's regex: a capture group, so that the words it skipped can be read for cues (see
/// [`gap_spans`]); the matcher's own regexes leave capture groups out.
pub(crate) fn gap_regex(n: usize) -> String {
    format!("((?:[^ ]+ ){{0,{n}}})")
}

/// A pattern's regex (its `CompiledPattern::regex`) built to report its gaps: each gap
/// takes as few words as it can (so a word the pattern can match is the pattern's, not
/// the gap's: in 'islam is not compatible' `{group} ~~8 (is not|not) ...` matches 'is
/// not' with its own words), and a match ends where the haystack ends.
pub(crate) fn gapped_regex(source: &str) -> regex::bytes::Regex {
    let gap = regex::Regex::new(r"\(\(\?:\[\^ \]\+ \)\{0,(\d+)\}\)").expect("a valid regex");
    let lazy = gap.replace_all(source, "((?:[^ ]+ ){0,$1}?)");
    regex::bytes::RegexBuilder::new(&format!("(?:{lazy})$"))
        .unicode(false)
        .build()
        .expect("checked when the pack was compiled")
}

/// The spans of `text` that the gaps (`~N`, `~~N`) of the pattern matching exactly `span`
/// skipped, each gap as short as the match allows; empty when it cannot match `span`.
pub(crate) fn gap_spans(
    gapped: &regex::bytes::Regex,
    text: &str,
    span: &std::ops::Range<usize>,
) -> Vec<std::ops::Range<usize>> {
    let Some(bytes) = text.as_bytes().get(..span.end) else {
        return Vec::new();
    };
    match gapped.captures_at(bytes, span.start) {
        Some(c) if c.get(0).is_some_and(|m| m.range() == *span) => c
            .iter()
            .skip(1)
            .flatten()
            .map(|m| m.range())
            .filter(|r| !r.is_empty())
            .collect(),
        _ => Vec::new(),
    }
}

/// The regex for a run of tokens without `~~`.
pub(crate) fn sequence(tokens: &[Token], lists: &BTreeMap<String, ListEntries>) -> String {
    let mut out = String::new();
    let mut emitted_required = false;
    let mut leading_optional = String::new();
    let mut gap = String::new();
    for t in tokens {
        match t {
            Token::Gap(n) => gap = gap_regex(*n),
            Token::Either(_) => {}
            Token::Piece { piece, optional } => {
                let p = piece_regex(piece, lists);
                if !emitted_required {
                    if *optional {
                        leading_optional.push_str(&format!("(?:{p} {gap})?"));
                        gap.clear();
                        continue;
                    }
                    out.push_str(&leading_optional);
                    out.push_str(&gap);
                    out.push_str(&p);
                    emitted_required = true;
                } else if *optional {
                    // The gap stays pending: it may also come before the next token when
                    // this one is absent (`no reason ~2 to? living`).
                    out.push_str(&format!("(?: {gap}{p})?"));
                    continue;
                } else {
                    out.push_str(&format!(" {gap}{p}"));
                }
                gap.clear();
            }
        }
    }
    out
}
