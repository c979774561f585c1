//! The TOML shapes of a pack file, as read before validation (see `pack`). Unknown keys
//! are errors, so a misspelt key is caught instead of silently ignored.

use crate::cue::RawCue;
use crate::wordlist::RawList;
use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPack {
    pub(crate) pack: RawHeader,
    #[serde(default)]
    pub(crate) changelog: Vec<RawChange>,
    #[serde(default)]
    pub(crate) categories: BTreeMap<String, Spanned<RawCategory>>,
    #[serde(default)]
    pub(crate) terms: Vec<Spanned<RawTermGroup>>,
    #[serde(default)]
    pub(crate) exceptions: Vec<Spanned<RawExceptions>>,
    #[serde(default)]
    pub(crate) lists: BTreeMap<String, Spanned<RawList>>,
    #[serde(default)]
    pub(crate) cues: Vec<Spanned<RawCue>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHeader {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) version: u32,
    pub(crate) language: String,
    #[serde(default)]
    pub(crate) description: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawChange {
    pub(crate) version: u32,
    #[serde(default)]
    pub(crate) date: String,
    #[serde(default)]
    pub(crate) notes: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCategory {
    pub(crate) severity: Spanned<i64>,
    #[serde(default)]
    pub(crate) description: String,
    #[serde(default)]
    pub(crate) domains: Vec<Spanned<String>>,
    pub(crate) capture: Option<Spanned<String>>,
    pub(crate) threshold: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTermGroup {
    pub(crate) category: Spanned<String>,
    pub(crate) kind: Option<Spanned<String>>,
    pub(crate) terms: Vec<Spanned<String>>,
    pub(crate) severity: Option<Spanned<i64>>,
    pub(crate) scope: Option<Spanned<Vec<Spanned<String>>>>,
    pub(crate) age: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) context: Vec<Spanned<String>>,
    pub(crate) capture: Option<Spanned<String>>,
    pub(crate) weight: Option<Spanned<f64>>,
    pub(crate) role: Option<Spanned<String>>,
    pub(crate) note: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawExceptions {
    pub(crate) category: Option<Spanned<String>>,
    pub(crate) phrases: Vec<Spanned<String>>,
    #[serde(default)]
    pub(crate) note: Option<String>,
}
