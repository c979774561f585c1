//! Word patterns: `{want} to {die}`, `kill all {group}`, `hate|despise ~3 {group}`.
//!
//! A pattern is a sequence of tokens separated by spaces, matched word by word against the
//! normalised text:
//!
//! | token | matches |
//! |---|---|
//! | `word` | that word (normalised like any term) |
//! | `word*` | a word starting with `word` |
//! | `a\|b\|c` | one of these words (each may end in `*`) |
//! | `(a b\|c d)` | one of these phrases |
//! | `{list}` | any entry of the pack's word list `list` (entries may be several words) |
//! | `tok?` | the token, or nothing |
//! | `~N` | up to N other words (N from 1 to 12), in order |
//! | `~~N` | the parts before and after it, in either order, up to N words apart |
//!
//! A pattern compiles to one regex over normalised text, and names one *anchor* token
//! whose alternatives go into the keyword automaton: the regex runs only on text where
//! its anchor occurs, so a pack of many patterns costs little on text that has none.

use crate::normalise::normalise_term;
use crate::pattern_regex::{alternatives, gap_regex, sequence};
pub(crate) use crate::pattern_regex::{gap_spans, gapped_regex};
use std::collections::BTreeMap;

/// Longest gap `~N` allowed.
pub const MAX_GAP: usize = 12;

/// A shared word list as the pattern compiler sees it: normalised entries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListEntries {
    pub entries: Vec<String>,
    pub identity: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Piece {
    /// Alternatives: (normalised words, prefix?).
    Words(Vec<(String, bool)>),
    List(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Token {
    Piece { piece: Piece, optional: bool },
    Gap(usize),
    Either(usize),
}

/// A compiled pattern: its regex source over normalised text and its anchor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompiledPattern {
    pub regex: String,
    /// Normalised alternatives of the anchor token, and whether each is a prefix.
    pub anchors: Vec<(String, bool)>,
    /// Longest normalised text it can match, roughly (a gap's words count 8 bytes each).
    pub max_len: usize,
    /// Most words a match can span (a gap's words counted in full).
    pub max_words: usize,
    /// Most words a match can have before the anchor token, and after it: in ASCII
    /// normalised text a match lies within them of the anchor occurrence it holds.
    pub words_before: usize,
    pub words_after: usize,
    /// The words a match can end with (and whether each is a prefix): typed text is only
    /// scanned when the word just finished is one of a pack's possible last words.
    pub last_words: Vec<(String, bool)>,
    /// Every required token but the anchor: a match needs one alternative of each in the
    /// text, so the regex runs only when all are there (a cheap check before the regex).
    pub required: Vec<Required>,
}

/// A required token of a pattern, as the pre-check before its regex sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Required {
    /// One of these normalised words or phrases occurs in the text (each with whether it
    /// is a prefix's stem, which the text's word may go on from).
    Words(Vec<(String, bool)>),
    /// An entry of this word list occurs in the text.
    List(String),
}

/// Parse and compile `pattern` against the pack's word lists. The error says what is
/// wrong in words a pack author can act on.
pub fn compile(
    pattern: &str,
    lists: &BTreeMap<String, ListEntries>,
) -> Result<CompiledPattern, String> {
    let tokens = parse(pattern)?;
    let pieces: Vec<(&Piece, bool)> = tokens
        .iter()
        .filter_map(|t| match t {
            Token::Piece { piece, optional } => Some((piece, *optional)),
            _ => None,
        })
        .collect();
    for (piece, _) in &pieces {
        if let Piece::List(name) = piece {
            match lists.get(name) {
                None => {
                    let known: Vec<&str> = lists.keys().map(|k| k.as_str()).collect();
                    return Err(format!(
                        "unknown word list `{{{name}}}`: define it under [lists.{name}] (defined: {})",
                        if known.is_empty() { "none".to_string() } else { known.join(", ") }
                    ));
                }
                Some(l) if l.entries.is_empty() => {
                    return Err(format!("word list `{{{name}}}` is empty: add words to it"))
                }
                Some(_) => {}
            }
        }
    }
    let mandatory: Vec<&Piece> = pieces.iter().filter(|(_, o)| !o).map(|(p, _)| *p).collect();
    if mandatory.is_empty() {
        return Err("every token is optional: make at least one token required".into());
    }
    if mandatory.iter().all(|p| is_identity(p, lists)) {
        return Err("the pattern would alert on identity words alone (an alert must never out a pupil): add a hostile or risk word".into());
    }
    let anchor = mandatory
        .iter()
        .min_by_key(|p| anchor_cost(p, lists))
        .expect("at least one mandatory piece");
    let anchors = alternatives(anchor, lists);
    let required = mandatory
        .iter()
        .filter(|p| !std::ptr::eq(**p, *anchor))
        .map(|p| match p {
            Piece::Words(alts) => Required::Words(alts.clone()),
            Piece::List(name) => Required::List(name.clone()),
        })
        .collect();

    let split = tokens.iter().position(|t| matches!(t, Token::Either(_)));
    let body = match split {
        None => sequence(&tokens, lists),
        Some(i) => {
            let Token::Either(n) = tokens[i] else {
                unreachable!()
            };
            let (left, right) = (&tokens[..i], &tokens[i + 1..]);
            let (l, r) = (sequence(left, lists), sequence(right, lists));
            let gap = gap_regex(n);
            format!("(?:{l} {gap}{r}|{r} {gap}{l})")
        }
    };
    let max_len = tokens
        .iter()
        .map(|t| match t {
            Token::Piece { piece, .. } => {
                alternatives(piece, lists)
                    .iter()
                    .map(|(w, p)| w.len() + if *p { 16 } else { 0 })
                    .max()
                    .unwrap_or(0)
                    + 1
            }
            Token::Gap(n) | Token::Either(n) => 8 * n,
        })
        .sum();
    // Most words the regex of `ts` can match: a gap before optional tokens is written
    // before each of them and before the next required one (see `sequence`), so it counts
    // once for each.
    let words = |ts: &[Token]| -> usize {
        let (mut total, mut gap) = (0, 0);
        for t in ts {
            match t {
                Token::Piece { piece, optional } => {
                    total += gap
                        + alternatives(piece, lists)
                            .iter()
                            .map(|(w, _)| w.split(' ').count())
                            .max()
                            .unwrap_or(0);
                    if !optional {
                        gap = 0;
                    }
                }
                Token::Gap(n) => gap = *n,
                Token::Either(n) => {
                    total += gap + n;
                    gap = 0;
                }
            }
        }
        total + gap
    };
    let max_words = words(&tokens);
    // Words a match can have before and after the anchor's own words (either side of a
    // `~~N` can come first: then the whole pattern's words).
    let at = tokens
        .iter()
        .position(|t| matches!(t, Token::Piece { piece, .. } if std::ptr::eq(piece, *anchor)))
        .expect("the anchor is one of the tokens");
    let (words_before, words_after) = match split {
        None => (words(&tokens[..at]), words(&tokens[at + 1..])),
        Some(_) => (max_words, max_words),
    };
    let mut last_words = Vec::new();
    let parts: Vec<&[Token]> = match split {
        None => vec![&tokens[..]],
        Some(i) => vec![&tokens[..i], &tokens[i + 1..]],
    };
    for part in parts {
        // The last required token, and every optional one after it, can end a match.
        for t in part.iter().rev() {
            if let Token::Piece { piece, optional } = t {
                for (w, prefix) in alternatives(piece, lists) {
                    let last = w.rsplit(' ').next().unwrap_or(&w).to_string();
                    last_words.push((last, prefix));
                }
                if !optional {
                    break;
                }
            }
        }
    }
    last_words.sort();
    last_words.dedup();
    Ok(CompiledPattern {
        regex: format!("(?-u:\\b){body}(?-u:\\b)"),
        anchors,
        max_len,
        max_words,
        words_before,
        words_after,
        last_words,
        required,
    })
}

/// The whole words a pattern names (not its prefixes `word*`, list slots or gaps),
/// normalised; nothing for a pattern that does not parse.
pub(crate) fn whole_words(pattern: &str) -> Vec<String> {
    let tokens = parse(pattern).unwrap_or_default();
    let alternatives = tokens.into_iter().flat_map(|t| match t {
        Token::Piece {
            piece: Piece::Words(alts),
            ..
        } => alts,
        _ => Vec::new(),
    });
    alternatives
        .filter(|(_, prefix)| !prefix)
        .flat_map(|(words, _)| words.split(' ').map(str::to_string).collect::<Vec<_>>())
        .collect()
}

/// Split a pattern into raw tokens: runs of non-space characters, except that a
/// parenthesised group `(a b|c)` (with an optional `?` after it) is one token.
fn split(pattern: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let mut rest = pattern.trim_start();
    while !rest.is_empty() {
        let end = if rest.starts_with('(') {
            let close = rest
                .find(')')
                .ok_or_else(|| format!("`{rest}`: a group opened with `(` needs a `)`"))?;
            let mut end = close + 1;
            if rest[end..].starts_with('?') {
                end += 1;
            }
            if !rest[end..].is_empty() && !rest[end..].starts_with(char::is_whitespace) {
                return Err(format!(
                    "`{}`: put a space after a `(...)` group",
                    &rest[..end + 1]
                ));
            }
            end
        } else {
            rest.find(char::is_whitespace).unwrap_or(rest.len())
        };
        out.push(&rest[..end]);
        rest = rest[end..].trim_start();
    }
    Ok(out)
}

pub(crate) fn parse(pattern: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    for raw in split(pattern)? {
        if let Some(n) = raw.strip_prefix("~~") {
            tokens.push(Token::Either(gap_len(raw, n)?));
            continue;
        }
        if let Some(n) = raw.strip_prefix('~') {
            tokens.push(Token::Gap(gap_len(raw, n)?));
            continue;
        }
        let (body, optional) = match raw.strip_suffix('?') {
            Some(b) => (b, true),
            None => (raw, false),
        };
        let piece = if let Some(inner) = body.strip_prefix('{') {
            let name = inner
                .strip_suffix('}')
                .ok_or_else(|| format!("`{raw}`: a word list slot is written `{{name}}`"))?;
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(format!(
                    "`{raw}`: a list name uses letters, digits, `-` and `_` only"
                ));
            }
            Piece::List(name.to_string())
        } else {
            if body.contains(['{', '}']) {
                return Err(format!(
                    "`{raw}`: a word list slot is written `{{name}}`, on its own"
                ));
            }
            let mut alts = Vec::new();
            for alt in body.split('|') {
                let (word, prefix) = match alt.strip_suffix('*') {
                    Some(w) => (w, true),
                    None => (alt, false),
                };
                let n = normalise_term(word);
                if n.is_empty() {
                    return Err(format!("`{raw}`: `{alt}` has no letters or digits"));
                }
                if prefix && n.contains(' ') {
                    return Err(format!("`{raw}`: `*` ends a single word"));
                }
                alts.push((n, prefix));
            }
            Piece::Words(alts)
        };
        tokens.push(Token::Piece { piece, optional });
    }
    if tokens.is_empty() {
        return Err("empty pattern: write words, `{list}` slots and `~N` gaps".into());
    }
    let is_gap = |t: &Token| matches!(t, Token::Gap(_) | Token::Either(_));
    if is_gap(&tokens[0]) || is_gap(&tokens[tokens.len() - 1]) {
        return Err("a pattern cannot start or end with a gap (`~N` or `~~N`)".into());
    }
    if tokens.windows(2).any(|w| is_gap(&w[0]) && is_gap(&w[1])) {
        return Err("two gaps in a row: write one `~N` with the total".into());
    }
    if tokens
        .iter()
        .filter(|t| matches!(t, Token::Either(_)))
        .count()
        > 1
    {
        return Err("at most one `~~N` (either order) per pattern".into());
    }
    if let Some(i) = tokens.iter().position(|t| matches!(t, Token::Either(_))) {
        let required = |ts: &[Token]| {
            ts.iter().any(|t| {
                matches!(
                    t,
                    Token::Piece {
                        optional: false,
                        ..
                    }
                )
            })
        };
        if !required(&tokens[..i]) || !required(&tokens[i + 1..]) {
            return Err("both sides of `~~N` need a required token".into());
        }
    }
    Ok(tokens)
}

fn gap_len(raw: &str, digits: &str) -> Result<usize, String> {
    match digits.parse::<usize>() {
        Ok(n) if (1..=MAX_GAP).contains(&n) => Ok(n),
        _ => Err(format!(
            "`{raw}`: a gap is `~N` or `~~N` with N from 1 to {MAX_GAP}"
        )),
    }
}

fn is_identity(piece: &Piece, lists: &BTreeMap<String, ListEntries>) -> bool {
    match piece {
        Piece::List(name) => lists.get(name).is_some_and(|l| l.identity),
        Piece::Words(alts) => alts
            .iter()
            .all(|(w, _)| COMMON.contains(&w.as_str()) || is_identity_word(w, lists)),
    }
}

/// Whether a normalised word or phrase is an entry of an identity list.
pub(crate) fn is_identity_word(normalised: &str, lists: &BTreeMap<String, ListEntries>) -> bool {
    lists
        .values()
        .any(|l| l.identity && l.entries.iter().any(|e| e == normalised))
}

/// Words so common that anchoring on them would run the regex on most text.
const COMMON: [&str; 72] = [
    "i", "a", "an", "the", "to", "is", "are", "am", "be", "my", "me", "you", "of", "and", "in",
    "it", "im", "all", "al", "that", "this", "we", "they", "so", "was", "were", "as", "at", "on",
    "for", "with", "not", "no", "he", "she", "his", "her", "them", "our", "your", "u", "ur",
    "going", "goin", "gona", "go", "get", "got", "take", "had", "have", "want", "fel", "think",
    "know", "like", "just", "realy", "can", "wil", "would", "do", "dont", "don t", "one", "people",
    "everyone", "if", "what", "how", "why", "wana",
];

/// How often a token's words turn up in ordinary text, roughly: a common or very short
/// word counts as a thousand rare ones.
fn anchor_cost(piece: &Piece, lists: &BTreeMap<String, ListEntries>) -> usize {
    alternatives(piece, lists)
        .iter()
        .map(|(w, _)| {
            if w.len() <= 2 || COMMON.contains(&w.as_str()) {
                1000
            } else {
                1
            }
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex::Regex;

    fn lists() -> BTreeMap<String, ListEntries> {
        let mut m = BTreeMap::new();
        let list = |words: &[&str], identity| ListEntries {
            entries: words.iter().map(|w| normalise_term(w)).collect(),
            identity,
        };
        m.insert("want".into(), list(&["want", "wanna", "feel like"], false));
        m.insert(
            "die".into(),
            list(&["die", "end my life", "be dead"], false),
        );
        m.insert(
            "group".into(),
            list(&["muslims", "trans people", "jews"], true),
        );
        m
    }

    fn matches(pattern: &str, text: &str) -> Option<String> {
        let c = compile(pattern, &lists()).unwrap();
        let re = Regex::new(&c.regex).unwrap();
        let n = normalise_term(text);
        re.find(&n).map(|m| m.as_str().to_string())
    }

    #[test]
    fn words_either_side_of_the_anchor_bound_every_match() {
        // The gap before an optional word may be taken before it and again after it.
        let c = compile("tired ~2 so? very much", &lists()).unwrap();
        assert_eq!(c.anchors, [("tired".to_string(), false)]);
        let m = matches("tired ~2 so? very much", "tired a b so c d very much").unwrap();
        assert_eq!(m, "tired a b so c d very much");
        assert_eq!((c.words_before, c.words_after), (0, 7));
        let c = compile("{want} ~1 to? {die}", &lists()).unwrap();
        assert_eq!(c.max_words, 2 + 1 + 1 + 1 + 3);
    }

    #[test]
    fn slots_optional_words_gaps_and_prefixes() {
        assert!(matches("{want} to {die}", "I just wanna die hahaha").is_none());
        assert_eq!(
            matches("{want} to? {die}", "I just wanna die hahaha").as_deref(),
            Some("wana die")
        );
        assert_eq!(
            matches("{want} to {die}", "i really want to end my life").as_deref(),
            Some("want to end my life")
        );
        assert_eq!(
            matches("kill all {group}", "KILL ALL MUSLIMS").as_deref(),
            Some("kil al muslims")
        );
        assert!(matches("kill all {group}", "skill all muslims").is_none());
        assert_eq!(
            matches("i hate ~2 {group}", "i hate all the trans people").as_deref(),
            Some("i hate al the trans people")
        );
        assert!(matches("i hate ~1 {group}", "i hate all the trans people").is_none());
        assert_eq!(
            matches(
                "hopeless|worthless* ~~3 {die}",
                "i want to die i am worthlessness"
            )
            .as_deref(),
            Some("die i am worthlesnes")
        );
        assert_eq!(
            matches("really? {want} to {die}", "want to die").as_deref(),
            Some("want to die")
        );
    }

    #[test]
    fn last_words_are_those_a_match_can_end_with() {
        let c = compile("{want} to {die} now?", &lists()).unwrap();
        let words: Vec<&str> = c.last_words.iter().map(|(w, _)| w.as_str()).collect();
        assert_eq!(words, ["dead", "die", "life", "now"]);
        let c = compile("hate* ~~3 {group}", &lists()).unwrap();
        assert!(c.last_words.contains(&("hate".to_string(), true)));
        assert!(c.last_words.contains(&("people".to_string(), false)));
    }

    #[test]
    fn anchors_avoid_common_words() {
        let c = compile("{group} are vermin", &lists()).unwrap();
        assert_eq!(c.anchors, vec![("vermin".to_string(), false)]);
        let c = compile("i am {die}", &lists()).unwrap();
        assert_eq!(c.anchors.len(), 3);
    }

    #[test]
    fn gaps_report_the_words_they_skipped() {
        let gapped = |p: &str, text: &str| {
            let c = compile(p, &lists()).unwrap();
            let re = gapped_regex(&c.regex);
            let n = normalise_term(text);
            let m = Regex::new(&c.regex).unwrap().find(&n).unwrap().range();
            gap_spans(&re, &n, &m)
                .into_iter()
                .map(|r| n[r].to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            gapped(
                "{group} ~~12 they ~2 are? ~2 lazy",
                "jews they are not lazy"
            ),
            ["not "]
        );
        assert_eq!(
            gapped(
                "{group} ~~12 they ~2 are? ~2 lazy",
                "they are not lazy at all, jews"
            ),
            ["not ", "at al "]
        );
        assert!(gapped("{group} are not welcome", "jews are not welcome").is_empty());
        assert_eq!(
            gapped("i hate ~2 {group}", "i hate all the jews"),
            ["al the "]
        );
        // As few words as the match allows: 'is not' is the pattern's own.
        assert!(gapped(
            "{group} ~~8 (are not|not) compatible",
            "jews are not compatible"
        )
        .is_empty());
        assert_eq!(
            gapped(
                "{group} ~~8 (are not|not) compatible",
                "jews sadly are not compatible"
            ),
            ["sadly "]
        );
    }

    #[test]
    fn bad_patterns_are_explained() {
        let l = lists();
        for (p, want) in [
            ("{nope} are bad", "unknown word list `{nope}`"),
            ("~3 die", "cannot start or end with a gap"),
            ("die ~3 ~2 now", "two gaps in a row"),
            ("die ~99 now", "N from 1 to 12"),
            ("{group}", "identity words alone"),
            ("the {group} are", "identity words alone"),
            ("die? now?", "every token is optional"),
            ("a ~~2 b ~~3 c", "at most one"),
            ("{want", "written `{name}`"),
            ("a (b c", "needs a `)`"),
            ("a (b c)d", "put a space after"),
            ("!!!", "no letters or digits"),
            ("", "empty pattern"),
        ] {
            let err = compile(p, &l).unwrap_err();
            assert!(err.contains(want), "{p}: {err}");
        }
    }
}
