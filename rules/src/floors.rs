//! Per-file quality floors for `tutela-rules eval --floors`: each corpus file named in the
//! floors file must keep its recall at or above `min_recall` and its false alert rate at
//! or below `max_false_alert_rate`, so a pack's quality can only go up.
//!
//! ```toml
//! [sdcnl]                      # the corpus file's name without `.tsv`
//! min_recall = 0.68
//! [bbc_bodies]
//! max_false_alert_rate = 0.025
//! ```

use crate::eval::Report;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// One file's floor.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Floor {
    pub min_recall: Option<f64>,
    pub max_false_alert_rate: Option<f64>,
}

/// Floors by corpus file stem.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Floors {
    pub files: BTreeMap<String, Floor>,
}

/// Why a floors file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FloorsError {
    #[error("cannot read floors file {path}: {source}; check the path")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("floors file {path}: {message}; each table is a corpus name with min_recall and/or max_false_alert_rate between 0 and 1")]
    Invalid { path: String, message: String },
}

impl Floors {
    /// Load and check a floors file.
    pub fn load(path: &Path) -> Result<Floors, FloorsError> {
        let text = std::fs::read_to_string(path).map_err(|source| FloorsError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Floors::parse(&text, &path.display().to_string())
    }

    /// Parse floors; `origin` names the file in messages.
    pub fn parse(text: &str, origin: &str) -> Result<Floors, FloorsError> {
        let invalid = |message: String| FloorsError::Invalid {
            path: origin.to_string(),
            message,
        };
        let files: BTreeMap<String, Floor> =
            toml::from_str(text).map_err(|e| invalid(e.message().trim().to_string()))?;
        for (name, f) in &files {
            for v in [f.min_recall, f.max_false_alert_rate].into_iter().flatten() {
                if !(0.0..=1.0).contains(&v) {
                    return Err(invalid(format!("[{name}] has {v}, outside 0 to 1")));
                }
            }
            if f.min_recall.is_none() && f.max_false_alert_rate.is_none() {
                return Err(invalid(format!("[{name}] sets no floor")));
            }
        }
        Ok(Floors { files })
    }

    /// The floor for a corpus file, by its name without extension.
    pub fn get(&self, stem: &str) -> Option<&Floor> {
        self.files.get(stem)
    }
}

impl Floor {
    /// What falls short of this floor in `report`, one message each (empty: it holds).
    pub fn shortfalls(&self, report: &Report) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(min) = self.min_recall {
            if report.risk_lines > 0 && report.recall() < min {
                out.push(format!(
                    "recall {:.4} is below its floor {min}",
                    report.recall()
                ));
            }
        }
        if let Some(max) = self.max_false_alert_rate {
            if report.benign_lines > 0 && report.false_alert_rate() > max {
                out.push(format!(
                    "false alert rate {:.4} is above its ceiling {max}",
                    report.false_alert_rate()
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floors_parse_and_refuse_nonsense() {
        let f = Floors::parse(
            "[a]\nmin_recall = 0.5\n[b]\nmax_false_alert_rate = 0.02\n",
            "f.toml",
        )
        .unwrap();
        assert_eq!(f.get("a").unwrap().min_recall, Some(0.5));
        assert!(f.get("c").is_none());
        for bad in [
            "[a]\nmin_recall = 1.5\n",
            "[a]\n",
            "[a]\nmin_recal = 0.5\n",
            "a = 1",
        ] {
            let err = Floors::parse(bad, "f.toml").unwrap_err().to_string();
            assert!(err.starts_with("floors file f.toml:"), "{bad}: {err}");
        }
    }
}
