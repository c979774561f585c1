//! The labelled corpus and the evaluation of a pack against it.
//!
//! A corpus file has one example per line, `scope<TAB>text<TAB>expected`, `#` starts a
//! comment. `expected` is category ids joined by `|` (must alert in one of them), `-` (must
//! not alert), or `-|cat` (may alert in `cat` or not; counted in neither rate).

use crate::{is_category, Matcher, Scope, CATEGORIES};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What a corpus line expects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expected {
    /// Must not alert.
    Benign,
    /// Must alert in at least one of these categories.
    Risk(Vec<String>),
    /// Either outcome is acceptable (`-|cat`); not counted.
    Either(Vec<String>),
}

/// One labelled example.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Example {
    pub line: usize,
    pub scope: Scope,
    pub text: String,
    pub expected: Expected,
}

/// A malformed corpus line.
#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    #[error("cannot read corpus {path}: {source}; check the path")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}:{line}: {message}")]
    Line {
        origin: String,
        line: usize,
        message: String,
    },
}

/// Parse a corpus file's text. `origin` names it in messages.
pub fn parse_corpus(text: &str, origin: &str) -> Result<Vec<Example>, CorpusError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let err = |message: String| CorpusError::Line {
            origin: origin.to_string(),
            line,
            message,
        };
        let raw = raw.trim_end_matches('\r');
        if raw.trim().is_empty() || raw.trim_start().starts_with('#') {
            continue;
        }
        let (Some(first), Some(last)) = (raw.find('\t'), raw.rfind('\t')) else {
            return Err(err("expected `scope<TAB>text<TAB>expected`: separate the three fields with tab characters".into()));
        };
        if first == last {
            return Err(err("expected three tab-separated fields, found two: add the expected categories (or `-`)".into()));
        }
        let scope: Scope = raw[..first]
            .parse()
            .map_err(|e: crate::UnknownScope| err(e.to_string()))?;
        let text = raw[first + 1..last].to_string();
        let expected_field = raw[last + 1..].trim();
        let categories = |list: &str| -> Result<Vec<String>, CorpusError> {
            let mut cats = Vec::new();
            for c in list.split('|').map(str::trim) {
                if !is_category(c) {
                    return Err(err(format!(
                        "unknown category `{c}` in expected field: use category ids ({}) joined by `|`, or `-`",
                        CATEGORIES.join(", ")
                    )));
                }
                cats.push(c.to_string());
            }
            Ok(cats)
        };
        let expected = if expected_field == "-" {
            Expected::Benign
        } else if let Some(rest) = expected_field.strip_prefix("-|") {
            Expected::Either(categories(rest)?)
        } else if expected_field.is_empty() {
            return Err(err(
                "empty expected field: write category ids joined by `|`, or `-` for must-not-alert"
                    .into(),
            ));
        } else {
            Expected::Risk(categories(expected_field)?)
        };
        out.push(Example {
            line,
            scope,
            text,
            expected,
        });
    }
    Ok(out)
}

/// Read and parse a corpus file.
pub fn load_corpus(path: &Path) -> Result<Vec<Example>, CorpusError> {
    let text = std::fs::read_to_string(path).map_err(|source| CorpusError::Io {
        path: path.display().to_string(),
        source,
    })?;
    parse_corpus(&text, &path.display().to_string())
}

/// The categories a matcher alerts in for one example.
pub fn alerted(matcher: &Matcher, scope: Scope, text: &str) -> BTreeSet<String> {
    alerted_rules(matcher, scope, text).0
}

/// The categories a matcher alerts in for one example, and the rule ids that alerted.
pub fn alerted_rules(
    matcher: &Matcher,
    scope: Scope,
    text: &str,
) -> (BTreeSet<String>, BTreeSet<String>) {
    let matches = if scope == Scope::Url {
        matcher.find_url(text)
    } else {
        matcher.find(scope, text)
    };
    let rules = matches.iter().map(|m| m.rule_id.to_string()).collect();
    (
        matches.iter().map(|m| m.category.to_string()).collect(),
        rules,
    )
}

/// Counts for one category.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CategoryStats {
    pub true_positives: usize,
    pub false_positives: usize,
    pub false_negatives: usize,
}

impl CategoryStats {
    pub fn precision(&self) -> Option<f64> {
        let d = self.true_positives + self.false_positives;
        (d > 0).then(|| self.true_positives as f64 / d as f64)
    }
    pub fn recall(&self) -> Option<f64> {
        let d = self.true_positives + self.false_negatives;
        (d > 0).then(|| self.true_positives as f64 / d as f64)
    }
}

/// An example the pack got wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mistake {
    pub origin: String,
    pub line: usize,
    pub scope: Scope,
    pub text: String,
    pub expected: Vec<String>,
    pub alerted: Vec<String>,
    /// The rule ids that alerted (empty for a miss that nothing matched).
    pub rules: Vec<String>,
}

/// Evaluation results over one or more corpus files.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub categories: BTreeMap<String, CategoryStats>,
    pub risk_lines: usize,
    pub risk_recalled: usize,
    pub benign_lines: usize,
    pub benign_alerted: usize,
    pub either_lines: usize,
    pub misses: Vec<Mistake>,
    pub false_alerts: Vec<Mistake>,
}

impl Report {
    /// Risk lines that alerted in an expected category / risk lines.
    pub fn recall(&self) -> f64 {
        if self.risk_lines == 0 {
            1.0
        } else {
            self.risk_recalled as f64 / self.risk_lines as f64
        }
    }

    /// Benign lines that alerted / benign lines.
    pub fn false_alert_rate(&self) -> f64 {
        if self.benign_lines == 0 {
            0.0
        } else {
            self.benign_alerted as f64 / self.benign_lines as f64
        }
    }

    /// Add the results of `examples` (from `origin`) matched with `matcher`.
    pub fn add(&mut self, matcher: &Matcher, origin: &str, examples: &[Example]) {
        for ex in examples {
            let (got, rules) = alerted_rules(matcher, ex.scope, &ex.text);
            let mistake = |expected: &[String]| Mistake {
                origin: origin.to_string(),
                line: ex.line,
                scope: ex.scope,
                text: ex.text.clone(),
                expected: expected.to_vec(),
                alerted: got.iter().cloned().collect(),
                rules: rules.iter().cloned().collect(),
            };
            match &ex.expected {
                Expected::Either(_) => self.either_lines += 1,
                Expected::Benign => {
                    self.benign_lines += 1;
                    if !got.is_empty() {
                        self.benign_alerted += 1;
                        self.false_alerts.push(mistake(&[]));
                    }
                    for c in &got {
                        self.categories
                            .entry(c.clone())
                            .or_default()
                            .false_positives += 1;
                    }
                }
                Expected::Risk(expected) => {
                    self.risk_lines += 1;
                    if expected.iter().any(|c| got.contains(c)) {
                        self.risk_recalled += 1;
                    } else {
                        self.misses.push(mistake(expected));
                    }
                    for c in expected {
                        let s = self.categories.entry(c.clone()).or_default();
                        if got.contains(c) {
                            s.true_positives += 1;
                        } else {
                            s.false_negatives += 1;
                        }
                    }
                    for c in got.iter().filter(|c| !expected.contains(c)) {
                        self.categories
                            .entry(c.clone())
                            .or_default()
                            .false_positives += 1;
                    }
                }
            }
        }
    }

    /// The per-category table and the closing `recall=R false_alert_rate=F` line.
    pub fn render(&self) -> String {
        let fmt = |v: Option<f64>| v.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into());
        let mut out = format!(
            "{:<20} {:>9} {:>7} {:>5} {:>5} {:>5}\n",
            "category", "precision", "recall", "tp", "fp", "fn"
        );
        for id in CATEGORIES {
            if let Some(s) = self.categories.get(id) {
                out.push_str(&format!(
                    "{:<20} {:>9} {:>7} {:>5} {:>5} {:>5}\n",
                    id,
                    fmt(s.precision()),
                    fmt(s.recall()),
                    s.true_positives,
                    s.false_positives,
                    s.false_negatives
                ));
            }
        }
        out.push_str(&format!(
            "risk lines {} (recalled {}), benign lines {} (alerted {}), either lines {}\n",
            self.risk_lines,
            self.risk_recalled,
            self.benign_lines,
            self.benign_alerted,
            self.either_lines
        ));
        out.push_str(&format!(
            "recall={:.4} false_alert_rate={:.4}\n",
            self.recall(),
            self.false_alert_rate()
        ));
        out
    }
}

/// The pack in `packs_dir` for a corpus file: the pack whose file stem is the longest
/// prefix of the corpus file stem (`en-GB.tsv` and `en-GB-search.tsv` use `en-GB.toml`).
pub fn pack_for_corpus(corpus: &Path, packs_dir: &Path) -> Option<PathBuf> {
    let stem = corpus.file_stem()?.to_str()?;
    let mut best: Option<(usize, PathBuf)> = None;
    for entry in std::fs::read_dir(packs_dir).ok()?.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let Some(pack) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        let fits = stem == pack
            || stem
                .strip_prefix(pack)
                .is_some_and(|rest| rest.starts_with(['-', '_', '.']));
        if fits && best.as_ref().is_none_or(|(len, _)| pack.len() > *len) {
            best = Some((pack.len(), path));
        }
    }
    best.map(|(_, p)| p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CompileOptions, Pack};

    #[test]
    fn parses_and_scores() {
        let pack = Pack::parse(
            "[pack]\nid = \"e\"\nname = \"E\"\nversion = 1\nlanguage = \"en\"\n[categories.drugs]\nseverity = 2\n[categories.violence]\nseverity = 3\n[[terms]]\ncategory = \"drugs\"\nterms = [\"cocaine\", \"weed\"]\n",
            "e.toml",
        )
        .unwrap();
        let m = Matcher::compile(&pack, &CompileOptions::default()).unwrap();
        let corpus = "# comment\n\ntyped\tbuying cocaine\tdrugs\ntitle\tweed killer for the garden\t-\nsearch\tweed\t-|drugs\ntyped\tstab him\tviolence|drugs\ntyped\thello\t-\n";
        let ex = parse_corpus(corpus, "c.tsv").unwrap();
        assert_eq!(ex.len(), 5);
        assert_eq!(ex[0].line, 3);
        let mut r = Report::default();
        r.add(&m, "c.tsv", &ex);
        assert_eq!(
            (
                r.risk_lines,
                r.risk_recalled,
                r.benign_lines,
                r.benign_alerted,
                r.either_lines
            ),
            (2, 1, 2, 1, 1)
        );
        assert_eq!(r.recall(), 0.5);
        assert_eq!(r.false_alert_rate(), 0.5);
        assert_eq!(
            r.categories["drugs"],
            CategoryStats {
                true_positives: 1,
                false_positives: 1,
                false_negatives: 1
            }
        );
        assert!(r
            .render()
            .ends_with("recall=0.5000 false_alert_rate=0.5000\n"));
        assert_eq!(r.misses[0].line, 6);
    }

    #[test]
    fn rejects_bad_lines() {
        for (bad, what) in [
            ("typed only two\tfields", "three tab-separated"),
            ("screen\tx\t-", "unknown scope"),
            ("typed\tx\tviolense", "unknown category `violense`"),
            ("typed\tx\t", "empty expected"),
            ("typed x -", "tab characters"),
        ] {
            let e = parse_corpus(bad, "c.tsv").unwrap_err().to_string();
            assert!(e.contains(what) && e.starts_with("c.tsv:1:"), "{e}");
        }
    }
}
