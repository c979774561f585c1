//! The rule pack: parsing and validating the TOML format documented in `rules/README.md`.

use crate::cue::{declared_roles, parse_cues, role_problem, Cue, MAX_ROLES};
use crate::normalise::normalise_term;
use crate::pack_problems::{severity, unknown_category, weight, Lines};
pub use crate::pack_problems::{PackError, Problem};
use crate::pack_toml::RawPack;
use crate::pattern::is_identity_word;
use crate::wordlist::{entries, parse_lists, WordList};
use crate::{is_category, pattern, AgeBand, CaptureMode, Scope, CATEGORIES};
use std::fmt;
use std::path::Path;

/// How a term is matched against normalised text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TermKind {
    /// Whole word(s) on word boundaries.
    Word,
    /// Several words on word boundaries (same as `Word`).
    Phrase,
    /// Starts on a word boundary, any continuation (`suicid` matches `suicidal`).
    Prefix,
    /// A regular expression over the normalised text.
    Regex,
    /// A word pattern with `{list}` slots, optional words and gaps (see `pattern`).
    Pattern,
}

impl TermKind {
    /// The name used in packs.
    pub fn as_str(self) -> &'static str {
        match self {
            TermKind::Word => "word",
            TermKind::Phrase => "phrase",
            TermKind::Prefix => "prefix",
            TermKind::Regex => "regex",
            TermKind::Pattern => "pattern",
        }
    }
}

/// One entry of the pack's changelog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangelogEntry {
    pub version: u32,
    pub date: String,
    pub notes: String,
}

/// A category's defaults and URL domain list.
#[derive(Clone, Debug, PartialEq)]
pub struct Category {
    pub id: String,
    pub severity: u8,
    pub description: String,
    /// Hosts (and all their subdomains) that alert in this category.
    pub domains: Vec<String>,
    pub capture: CaptureMode,
    /// Score a text's matches in this category must reach to alert (default 1).
    pub threshold: f32,
    pub line: usize,
}

/// One term, with its group's options resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct Term {
    /// The term as written in the pack.
    pub text: String,
    pub category: String,
    pub kind: TermKind,
    pub severity: u8,
    pub scopes: Vec<Scope>,
    pub age: AgeBand,
    /// Words of which one must be within 8 words of the match (empty: no requirement).
    pub context: Vec<String>,
    pub capture: CaptureMode,
    /// What one match adds to its category's score (default 1).
    pub weight: f32,
    /// What its matches are to the weighing (`role = "topic"`): a cue group with `lowers`
    /// lowers only matches of the roles it names.
    pub role: Option<String>,
    pub note: Option<String>,
    /// Line of the term in the pack file.
    pub line: usize,
}

impl Term {
    /// `<category>/<term as written>`.
    pub fn rule_id(&self) -> String {
        format!("{}/{}", self.category, self.text)
    }
}

/// A phrase that cancels overlapping matches (all categories when `category` is `None`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExceptionRule {
    pub phrase: String,
    pub category: Option<String>,
    pub note: Option<String>,
    pub line: usize,
}

/// A parsed and validated rule pack.
#[derive(Clone, Debug, PartialEq)]
pub struct Pack {
    pub id: String,
    pub name: String,
    pub version: u32,
    pub language: String,
    pub description: String,
    pub changelog: Vec<ChangelogEntry>,
    /// Declared categories, in the order of [`CATEGORIES`].
    pub categories: Vec<Category>,
    pub terms: Vec<Term>,
    pub exceptions: Vec<ExceptionRule>,
    /// Shared word lists used by patterns and cues.
    pub lists: Vec<WordList>,
    /// Cues that raise or lower the weight of nearby matches.
    pub cues: Vec<Cue>,
    /// Where the pack came from (file name), for messages.
    pub origin: String,
}

/// The scopes a term gets when its group names none.
pub const DEFAULT_SCOPES: [Scope; 4] = [Scope::Typed, Scope::Title, Scope::Search, Scope::Url];

impl Pack {
    /// Load and validate a pack file.
    pub fn load(path: &Path) -> Result<Pack, PackError> {
        let text = std::fs::read_to_string(path).map_err(|source| PackError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let origin = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        Pack::parse(&text, &origin)
    }

    /// Parse and validate a pack. `origin` names it in messages (a file name).
    pub fn parse(toml_text: &str, origin: &str) -> Result<Pack, PackError> {
        let lines = Lines::new(toml_text);
        let raw: RawPack = toml::from_str(toml_text).map_err(|e| PackError::Syntax {
            origin: origin.to_string(),
            line: e.span().map(|s| lines.at(s.start)).unwrap_or(1),
            message: e.message().trim().to_string(),
        })?;
        let mut problems = Vec::new();
        let mut problem = |line: usize, message: String| problems.push(Problem { line, message });

        if raw.pack.id.trim().is_empty() {
            problem(
                1,
                "[pack] id is empty: give the pack a stable id such as \"en-GB\"".into(),
            );
        }
        if raw.pack.version == 0 {
            problem(
                1,
                "[pack] version is 0: versions start at 1 and every release bumps it".into(),
            );
        }

        let mut categories = Vec::new();
        for (id, cat) in &raw.categories {
            let line = lines.line(cat);
            let cat = cat.get_ref();
            if !is_category(id) {
                problem(line, unknown_category(id));
                continue;
            }
            let mut sev_problems = Vec::new();
            let severity = severity(&cat.severity, &lines, &mut sev_problems);
            for p in sev_problems {
                problem(p.line, p.message);
            }
            let capture = match &cat.capture {
                Some(c) => c.get_ref().parse().unwrap_or_else(|m| {
                    problem(lines.line(c), m);
                    CaptureMode::One
                }),
                None => CaptureMode::One,
            };
            let mut domains = Vec::new();
            for d in &cat.domains {
                let domain = d
                    .get_ref()
                    .trim()
                    .trim_end_matches('.')
                    .to_ascii_lowercase();
                if domain.is_empty()
                    || domain.contains(['/', ':', ' ', '?', '#', '@'])
                    || !domain.contains('.')
                {
                    problem(
                        lines.line(d),
                        format!(
                            "domain `{}` is not a bare host name: write it like \"example.org\" (no scheme or path)",
                            d.get_ref()
                        ),
                    );
                } else {
                    domains.push(domain);
                }
            }
            let mut weight_problems = Vec::new();
            let threshold = weight(&cat.threshold, "threshold", &lines, &mut weight_problems);
            for p in weight_problems {
                problem(p.line, p.message);
            }
            categories.push(Category {
                id: id.clone(),
                severity,
                description: cat.description.clone(),
                domains,
                capture,
                threshold,
                line,
            });
        }
        categories.sort_by_key(|c| CATEGORIES.iter().position(|k| *k == c.id));

        let line_of = |offset: usize| lines.at(offset);
        let mut list_problems = Vec::new();
        let lists = parse_lists(&raw.lists, &line_of, &mut list_problems);
        let list_entries = entries(&lists);
        let roles = declared_roles(&raw.terms);
        let cues = parse_cues(
            &raw.cues,
            &list_entries,
            &roles,
            &line_of,
            &mut list_problems,
        );
        for p in list_problems {
            problem(p.line, p.message);
        }

        let mut terms = Vec::new();
        for group in &raw.terms {
            let group_line = lines.line(group);
            let g = group.get_ref();
            let cat_id = g.category.get_ref();
            let Some(cat) = categories.iter().find(|c| &c.id == cat_id) else {
                if is_category(cat_id) {
                    problem(
                        lines.line(&g.category),
                        format!("category `{cat_id}` has no [categories.{cat_id}] table: add one with a default severity"),
                    );
                } else {
                    problem(lines.line(&g.category), unknown_category(cat_id));
                }
                continue;
            };
            let kind = match g.kind.as_ref().map(|k| k.get_ref().as_str()) {
                None | Some("word") => TermKind::Word,
                Some("phrase") => TermKind::Phrase,
                Some("prefix") => TermKind::Prefix,
                Some("regex") => TermKind::Regex,
                Some("pattern") => TermKind::Pattern,
                Some(other) => {
                    problem(
                        g.kind.as_ref().map(|k| lines.line(k)).unwrap_or(group_line),
                        format!(
                            "unknown term kind `{other}`: use one of word, phrase, prefix, regex, pattern"
                        ),
                    );
                    continue;
                }
            };
            let severity = match &g.severity {
                Some(s) => {
                    let mut sev_problems = Vec::new();
                    let v = severity(s, &lines, &mut sev_problems);
                    for p in sev_problems {
                        problem(p.line, p.message);
                    }
                    v
                }
                None => cat.severity,
            };
            let scopes = match &g.scope {
                None => DEFAULT_SCOPES.to_vec(),
                Some(list) => {
                    let mut scopes = Vec::new();
                    for s in list.get_ref() {
                        match s.get_ref().parse::<Scope>() {
                            Ok(scope) if !scopes.contains(&scope) => scopes.push(scope),
                            Ok(_) => {}
                            Err(e) => problem(lines.line(s), e.to_string()),
                        }
                    }
                    if list.get_ref().is_empty() {
                        problem(lines.line(list), "empty scope list: name at least one of typed, title, url, search, process, or leave `scope` out for the default".into());
                    }
                    scopes
                }
            };
            let age = match &g.age {
                Some(a) => a.get_ref().parse().unwrap_or_else(|m| {
                    problem(lines.line(a), m);
                    AgeBand::All
                }),
                None => AgeBand::All,
            };
            let capture = match &g.capture {
                Some(c) => c.get_ref().parse().unwrap_or_else(|m| {
                    problem(lines.line(c), m);
                    cat.capture
                }),
                None => cat.capture,
            };
            let mut weight_problems = Vec::new();
            let term_weight = weight(&g.weight, "weight", &lines, &mut weight_problems);
            for p in weight_problems {
                problem(p.line, p.message);
            }
            let role = g
                .role
                .as_ref()
                .and_then(|r| match role_problem(r.get_ref()) {
                    None => Some(r.get_ref().clone()),
                    Some(message) => {
                        problem(lines.line(r), message);
                        None
                    }
                });
            let mut context = Vec::new();
            for c in &g.context {
                if normalise_term(c.get_ref()).is_empty() {
                    problem(
                        lines.line(c),
                        format!(
                            "context word `{}` has no letters or digits: remove it",
                            c.get_ref()
                        ),
                    );
                } else {
                    context.push(c.get_ref().clone());
                }
            }
            if g.terms.is_empty() {
                problem(
                    group_line,
                    "term group has no terms: add some to `terms = [...]` or remove the group"
                        .into(),
                );
            }
            for t in &g.terms {
                let line = lines.line(t);
                let text = t.get_ref();
                if kind == TermKind::Regex {
                    if let Err(e) = regex::Regex::new(text) {
                        problem(
                            line,
                            format!("invalid regex `{text}`: {}", one_line(&e.to_string())),
                        );
                        continue;
                    }
                    if regex::Regex::new(text)
                        .map(|r| r.is_match(""))
                        .unwrap_or(false)
                    {
                        problem(line, format!("regex `{text}` matches empty text: make it require at least one character"));
                        continue;
                    }
                } else if kind == TermKind::Pattern {
                    if let Err(e) = pattern::compile(text, &list_entries) {
                        problem(line, format!("pattern `{text}`: {e}"));
                        continue;
                    }
                } else if normalise_term(text).is_empty() {
                    problem(
                        line,
                        format!(
                            "term `{text}` has no letters or digits after normalising: remove it"
                        ),
                    );
                    continue;
                } else if is_identity_word(&normalise_term(text), &list_entries) {
                    problem(
                        line,
                        format!("term `{text}` is an identity word: identity words never alert on their own (an alert must never out a pupil); use a pattern with a hostile word"),
                    );
                    continue;
                }
                terms.push(Term {
                    text: text.clone(),
                    category: cat.id.clone(),
                    kind,
                    severity,
                    scopes: scopes.clone(),
                    age,
                    context: context.clone(),
                    capture,
                    weight: term_weight,
                    role: role.clone(),
                    note: g.note.clone(),
                    line,
                });
            }
        }

        let mut exceptions = Vec::new();
        for group in &raw.exceptions {
            let g = group.get_ref();
            let category = match &g.category {
                Some(c) if !is_category(c.get_ref()) => {
                    problem(lines.line(c), unknown_category(c.get_ref()));
                    continue;
                }
                Some(c) => Some(c.get_ref().clone()),
                None => None,
            };
            for p in &g.phrases {
                if normalise_term(p.get_ref()).is_empty() {
                    problem(
                        lines.line(p),
                        format!(
                            "exception `{}` has no letters or digits: remove it",
                            p.get_ref()
                        ),
                    );
                    continue;
                }
                exceptions.push(ExceptionRule {
                    phrase: p.get_ref().clone(),
                    category: category.clone(),
                    note: g.note.clone(),
                    line: lines.line(p),
                });
            }
        }

        let distinct: std::collections::BTreeSet<&str> =
            roles.iter().map(|(_, r)| r.as_str()).collect();
        if distinct.len() > MAX_ROLES {
            problem(
                1,
                format!(
                    "the pack names {} term roles: use at most {MAX_ROLES}",
                    distinct.len()
                ),
            );
        }

        let changelog = raw
            .changelog
            .into_iter()
            .map(|c| ChangelogEntry {
                version: c.version,
                date: c.date,
                notes: c.notes,
            })
            .collect();

        if !problems.is_empty() {
            problems.sort_by_key(|p| p.line);
            return Err(PackError::Invalid {
                origin: origin.to_string(),
                problems,
            });
        }
        Ok(Pack {
            id: raw.pack.id,
            name: raw.pack.name,
            version: raw.pack.version,
            language: raw.pack.language,
            description: raw.pack.description,
            changelog,
            categories,
            terms,
            exceptions,
            lists,
            cues,
            origin: origin.to_string(),
        })
    }

    /// The declared category with this id.
    pub fn category(&self, id: &str) -> Option<&Category> {
        self.categories.iter().find(|c| c.id == id)
    }
}

impl fmt::Display for Pack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} v{} ({} terms)",
            self.id,
            self.version,
            self.terms.len()
        )
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
