//! Shared word lists: defined once in a pack (`[lists.want]`), used by patterns as
//! `{want}` and by cues. A list marked `identity = true` names groups of people: such
//! words never raise an alert on their own.

use crate::normalise::normalise_term;
use crate::pack::Problem;
use crate::pattern::ListEntries;
use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

/// One shared word list, as written in the pack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WordList {
    pub name: String,
    /// Entries as written (each may be several words).
    pub words: Vec<String>,
    /// Words naming groups of people (religions, nationalities, sexualities...).
    pub identity: bool,
    pub note: Option<String>,
    pub line: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawList {
    words: Vec<Spanned<String>>,
    #[serde(default)]
    identity: bool,
    #[serde(default)]
    note: Option<String>,
}

/// Validate the raw lists; `line` maps a byte offset to its line.
pub(crate) fn parse_lists(
    raw: &BTreeMap<String, Spanned<RawList>>,
    line: &dyn Fn(usize) -> usize,
    problems: &mut Vec<Problem>,
) -> Vec<WordList> {
    let mut out = Vec::new();
    for (name, list) in raw {
        let at = line(list.span().start);
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            problems.push(Problem {
                line: at,
                message: format!(
                    "word list name `{name}` may use letters, digits, `-` and `_` only"
                ),
            });
            continue;
        }
        let l = list.get_ref();
        if l.words.is_empty() {
            problems.push(Problem {
                line: at,
                message: format!("word list `{name}` is empty: add words or remove it"),
            });
        }
        let mut words = Vec::new();
        for w in &l.words {
            if normalise_term(w.get_ref()).is_empty() {
                problems.push(Problem {
                    line: line(w.span().start),
                    message: format!(
                        "`{}` in word list `{name}` has no letters or digits: remove it",
                        w.get_ref()
                    ),
                });
            } else {
                words.push(w.get_ref().clone());
            }
        }
        out.push(WordList {
            name: name.clone(),
            words,
            identity: l.identity,
            note: l.note.clone(),
            line: at,
        });
    }
    out
}

/// The lists as the pattern compiler sees them: normalised entries by name.
pub fn entries(lists: &[WordList]) -> BTreeMap<String, ListEntries> {
    lists
        .iter()
        .map(|l| {
            let mut entries: Vec<String> = l.words.iter().map(|w| normalise_term(w)).collect();
            entries.sort();
            entries.dedup();
            (
                l.name.clone(),
                ListEntries {
                    entries,
                    identity: l.identity,
                },
            )
        })
        .collect()
}

/// Expand `{list}` items in a phrase list (cues and exceptions may name lists).
pub(crate) fn expand(
    phrases: &[String],
    lists: &BTreeMap<String, ListEntries>,
) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for p in phrases {
        match p.trim().strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(name) => match lists.get(name) {
                Some(l) => out.extend(l.entries.iter().cloned()),
                None => {
                    return Err(format!(
                        "unknown word list `{{{name}}}`: define it under [lists.{name}]"
                    ))
                }
            },
            None => out.push(normalise_term(p)),
        }
    }
    Ok(out)
}
