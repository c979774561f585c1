//! Pack lint: problems that parse but make a pack wrong or noisy.

use crate::normalise::normalise_term;
use crate::pack::{Pack, Term, TermKind};
use crate::{CompileOptions, Matcher};
use std::collections::HashMap;
use std::fmt;

/// How serious a finding is. Errors fail `tutela-rules check`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Warning,
    Error,
}

/// One lint finding, at a line of the pack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub level: Level,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.level {
            Level::Error => "error",
            Level::Warning => "warning",
        };
        write!(f, "{}: {level}: {}", self.line, self.message)
    }
}

/// Lint a parsed pack. Parse errors (unknown categories, invalid regexes, bad severities)
/// come from [`Pack::parse`]; this finds duplicates, terms an exception always cancels,
/// terms that cannot match their own text, and changelog gaps.
pub fn lint(pack: &Pack) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut seen: HashMap<(String, bool, String), Vec<&Term>> = HashMap::new();
    let mut across: HashMap<String, (String, usize)> = HashMap::new();
    for t in &pack.terms {
        let normalised = if matches!(t.kind, TermKind::Regex | TermKind::Pattern) {
            t.text.clone()
        } else {
            normalise_term(&t.text)
        };
        let key = (
            t.category.clone(),
            t.kind == TermKind::Prefix,
            normalised.clone(),
        );
        let earlier = seen.entry(key).or_default();
        let clash = earlier
            .iter()
            .find(|e| e.scopes.iter().any(|s| t.scopes.contains(s)) && e.age == t.age);
        if let Some(first) = clash {
            let same_text = first.text.trim().to_lowercase() == t.text.trim().to_lowercase();
            out.push(if same_text {
                Finding {
                    level: Level::Error,
                    line: t.line,
                    message: format!(
                        "duplicate term `{}` in {}: already on line {}; remove one",
                        t.text, t.category, first.line
                    ),
                }
            } else {
                Finding {
                    level: Level::Warning,
                    line: t.line,
                    message: format!(
                        "term `{}` is redundant: it normalises to `{normalised}` like `{}` on line {}, so the normaliser already covers it",
                        t.text, first.text, first.line
                    ),
                }
            });
            continue;
        }
        earlier.push(t);
        if !matches!(t.kind, TermKind::Regex | TermKind::Pattern) {
            match across.get(&normalised) {
                Some((cat, line)) if *cat != t.category => out.push(Finding {
                    level: Level::Warning,
                    line: t.line,
                    message: format!(
                        "term `{}` is also in {cat} (line {line}); one text will alert in both categories",
                        t.text
                    ),
                }),
                Some(_) => {}
                None => {
                    across.insert(normalised.clone(), (t.category.clone(), t.line));
                }
            }
        }
    }

    match Matcher::compile(pack, &CompileOptions::default()) {
        Err(e) => out.push(Finding {
            level: Level::Error,
            line: 1,
            message: e.to_string(),
        }),
        Ok(matcher) => {
            let literal = |t: &&Term| !matches!(t.kind, TermKind::Regex | TermKind::Pattern);
            for t in pack.terms.iter().filter(literal) {
                let rule_id = t.rule_id();
                let Some(&scope) = t.scopes.first() else {
                    continue;
                };
                let e = matcher.explain(scope, &t.text);
                if let Some(c) = e.cancelled.iter().find(|c| c.matched.rule_id == rule_id) {
                    out.push(Finding {
                        level: Level::Error,
                        line: t.line,
                        message: format!(
                            "term `{}` is shadowed: exception `{}` (line {}) cancels it wherever it matches; remove the term or narrow the exception",
                            t.text, c.exception, c.exception_line
                        ),
                    });
                } else if !e
                    .matches
                    .iter()
                    .chain(&e.missing_context)
                    .chain(e.weighed.iter().map(|w| &w.matched))
                    .any(|m| m.rule_id == rule_id)
                {
                    out.push(Finding {
                        level: Level::Warning,
                        line: t.line,
                        message: format!(
                            "term `{}` does not match its own text (normalised `{}`); check its kind",
                            t.text, e.normalised
                        ),
                    });
                }
            }
        }
    }

    for t in pack.terms.iter().filter(|t| t.kind == TermKind::Regex) {
        if has_doubled_letter(&t.text) {
            out.push(Finding {
                level: Level::Warning,
                line: t.line,
                message: format!(
                    "regex `{}` has a doubled letter, but normalised text never repeats a letter (`kill` is `kil`); write the letter once",
                    t.text
                ),
            });
        }
    }

    if !pack.changelog.iter().any(|c| c.version == pack.version) {
        out.push(Finding {
            level: Level::Warning,
            line: 1,
            message: format!(
                "no [[changelog]] entry for version {}: add one saying what changed",
                pack.version
            ),
        });
    }
    for c in &pack.categories {
        if c.domains.is_empty() && !pack.terms.iter().any(|t| t.category == c.id) {
            out.push(Finding {
                level: Level::Warning,
                line: c.line,
                message: format!("category {} has no terms and no domains", c.id),
            });
        }
    }
    out.sort_by_key(|f| (f.line, std::cmp::Reverse(f.level)));
    out
}

fn has_doubled_letter(re: &str) -> bool {
    let b = re.as_bytes();
    (1..b.len())
        .any(|i| b[i].is_ascii_lowercase() && b[i] == b[i - 1] && (i < 2 || b[i - 2] != b'\\'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_duplicates_and_shadowed_terms() {
        let text = "[pack]\nid = \"l\"\nname = \"L\"\nversion = 2\nlanguage = \"en\"\n\n[categories.violence]\nseverity = 3\n\n[[terms]]\ncategory = \"violence\"\nkind = \"phrase\"\nterms = [\"kill\", \"KIILL\", \"Kill\", \"assassin's creed\"]\n\n[[terms]]\ncategory = \"violence\"\nkind = \"regex\"\nterms = [\"kill+\"]\n\n[[exceptions]]\nphrases = [\"assassin's creed\"]\n";
        let pack = Pack::parse(text, "l.toml").unwrap();
        let f = lint(&pack);
        let errors: Vec<_> = f.iter().filter(|f| f.level == Level::Error).collect();
        assert_eq!(errors.len(), 2, "{f:?}");
        assert!(errors[0].message.contains("duplicate term `Kill`") && errors[0].line == 13);
        assert!(f
            .iter()
            .any(|f| f.level == Level::Warning && f.message.contains("`KIILL` is redundant")));
        assert!(errors[1].message.contains("shadowed"));
        assert!(f.iter().any(|f| f.message.contains("doubled letter")));
        assert!(f
            .iter()
            .any(|f| f.message.contains("no [[changelog]] entry for version 2")));
    }
}
