//! What is wrong with a rule pack and where: the problems found while loading one, the
//! error that carries them, and the checks of single values (severity, weight) that name
//! the line of the pack they are on.

use crate::cue::MAX_WEIGHT;
use crate::normalise::offsets_of;
use crate::CATEGORIES;
use toml::Spanned;

/// One problem found in a pack, with its line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub message: String,
}

/// Why a pack could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("cannot read rule pack {path}: {source}; check the path and its permissions")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}:{line}: {message}; fix the TOML syntax at this line")]
    Syntax {
        origin: String,
        line: usize,
        message: String,
    },
    #[error("{}", format_problems(origin, problems))]
    Invalid {
        origin: String,
        problems: Vec<Problem>,
    },
}

fn format_problems(origin: &str, problems: &[Problem]) -> String {
    let mut out = String::new();
    for (i, p) in problems.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&format!("{origin}:{}: {}", p.line, p.message));
    }
    out
}

impl PackError {
    /// Every problem with its line (a syntax error is one problem).
    pub fn problems(&self) -> Vec<Problem> {
        match self {
            PackError::Io { .. } => vec![Problem {
                line: 0,
                message: self.to_string(),
            }],
            PackError::Syntax { line, message, .. } => vec![Problem {
                line: *line,
                message: message.clone(),
            }],
            PackError::Invalid { problems, .. } => problems.clone(),
        }
    }
}

/// Line numbers of byte offsets in the pack text (offsets of every newline, searched).
pub(crate) struct Lines {
    newlines: Vec<usize>,
}

impl Lines {
    pub(crate) fn new(text: &str) -> Lines {
        Lines {
            newlines: offsets_of(text, b'\n'),
        }
    }
    pub(crate) fn line<T>(&self, s: &Spanned<T>) -> usize {
        self.at(s.span().start)
    }
    pub(crate) fn at(&self, offset: usize) -> usize {
        self.newlines.partition_point(|&n| n < offset) + 1
    }
}

pub(crate) fn severity(value: &Spanned<i64>, lines: &Lines, problems: &mut Vec<Problem>) -> u8 {
    let v = *value.get_ref();
    if (1..=5).contains(&v) {
        v as u8
    } else {
        problems.push(Problem {
            line: lines.line(value),
            message: format!("severity {v} is out of range: use 1 (lowest) to 5 (highest)"),
        });
        1
    }
}

/// A weight or threshold: positive, at most [`MAX_WEIGHT`].
pub(crate) fn weight(
    value: &Option<Spanned<f64>>,
    what: &str,
    lines: &Lines,
    problems: &mut Vec<Problem>,
) -> f32 {
    let Some(v) = value else { return 1.0 };
    let w = *v.get_ref();
    if w.is_finite() && w > 0.0 && w <= MAX_WEIGHT {
        w as f32
    } else {
        problems.push(Problem {
            line: lines.line(v),
            message: format!(
                "{what} {w} is out of range: use a number above 0 and at most {MAX_WEIGHT}"
            ),
        });
        1.0
    }
}

pub(crate) fn unknown_category(id: &str) -> String {
    format!(
        "unknown category `{id}`: use one of {}",
        CATEGORIES.join(", ")
    )
}
