//! The rules the agent starts with: the pack last pushed, else the built-in one.

use std::sync::Arc;

use anyhow::{Context, Result};
use tutela_agent::config::AgentConfig;
use tutela_agent::identity::Enrolment;
use tutela_agent::monitor::LiveRules;

/// The shipped English (UK) pack, used until the collector pushes a bundle.
const BUILT_IN_PACK: &str = include_str!("../../../rules/packs/en-GB.toml");

pub(super) fn age_band(config: &AgentConfig) -> Result<tutela_rules::AgeBand> {
    Ok(match config.rules.age.as_deref().unwrap_or("all") {
        "all" => tutela_rules::AgeBand::All,
        "primary" => tutela_rules::AgeBand::Primary,
        "secondary" => tutela_rules::AgeBand::Secondary,
        other => anyhow::bail!("[rules] age = {other:?} is not one of all, primary, secondary"),
    })
}

/// The rules to run: a local override pack if configured, else the last
/// bundle the collector published, else the built-in pack.
pub(super) fn load_rules(
    config: &AgentConfig,
    data_dir: &std::path::Path,
    enrolment: &Enrolment,
    age: tutela_rules::AgeBand,
) -> Result<LiveRules> {
    if config.rules.pack_file.is_none() {
        if let Some(m) = tutela_agent::rules_sync::load_saved(data_dir, enrolment, age) {
            tracing::info!(pack = %m.pack_id(), version = m.version(), "rules loaded from the last published bundle");
            tutela_agent::memory::release_freed();
            return Ok(Arc::new(std::sync::RwLock::new(Arc::new(m))));
        }
    }
    let (text, origin) = match &config.rules.pack_file {
        Some(path) => (
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the rule pack {}", path.display()))?,
            path.display().to_string(),
        ),
        None => (BUILT_IN_PACK.to_owned(), "built-in en-GB.toml".to_owned()),
    };
    let pack = tutela_rules::Pack::parse(&text, &origin)?;
    let matcher = tutela_rules::Matcher::compile(&pack, &tutela_rules::CompileOptions { age })?;
    tracing::info!(pack = %matcher.pack_id(), version = matcher.version(), terms = matcher.term_count(), "rules loaded");
    drop((pack, text));
    tutela_agent::memory::release_freed();
    Ok(Arc::new(std::sync::RwLock::new(Arc::new(matcher))))
}
