//! The command line's subcommands that are not part of one service module:
//! enrolment tokens, alerts, agents, rules, exemptions, backup, migration and
//! `init`. Each submodule has its clap arguments and a `run`; `main.rs` only
//! parses and dispatches.

pub mod agents;
pub mod alerts;
pub mod backup;
pub mod exemption;
pub mod init;
pub mod migrate;
pub mod rules;
pub mod token;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::config::CollectorConfig;
use crate::store;

/// The configuration file in a data directory.
pub fn config_path(dir: &Path) -> PathBuf {
    dir.join("collector.toml")
}

/// The data directory's configuration.
pub fn load_config(dir: &Path) -> Result<CollectorConfig> {
    Ok(CollectorConfig::load(&config_path(dir))?)
}

/// A runtime for one command's store calls.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// The store `[storage] url` names, and a runtime to use it on.
pub fn open_store(dir: &Path) -> Result<(tokio::runtime::Runtime, store::Store)> {
    let config = load_config(dir)?;
    let location = store::Location::new(dir, &config.storage.url)?;
    let runtime = runtime()?;
    let opened = runtime
        .block_on(store::Store::open(&location))
        .context("opening the collector's store")?;
    Ok((runtime, opened))
}
