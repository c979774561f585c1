//! `tutela-collector schools add|list`: the schools of a trust, each a
//! tenant of the collector (the rows are in `store::schools`).

use std::path::Path;

use anyhow::Context;
use clap::Subcommand;

use crate::store::schools::{self, Added};
use crate::store::Store;

#[derive(Debug, Subcommand)]
pub enum SchoolsCommand {
    /// Add a school (or rename one): its id names it in tokens and grants.
    Add {
        /// 1-32 lower-case letters, digits or '-', e.g. north-primary.
        id: String,
        /// The school's name as people know it.
        #[arg(long)]
        name: String,
    },
    /// List the schools.
    List,
}

/// Runs `command` on the store the collector in `dir` uses.
pub fn run(dir: &Path, command: SchoolsCommand) -> anyhow::Result<()> {
    let (runtime, store) = open(dir)?;
    match command {
        SchoolsCommand::Add { id, name } => {
            anyhow::ensure!(
                schools::valid_id(&id),
                "{id:?} is not a school id: use 1-{} lower-case letters, digits or '-' (not first), e.g. north-primary",
                schools::MAX_ID_BYTES
            );
            let name = name.trim();
            anyhow::ensure!(
                !name.is_empty() && name.chars().count() <= 200,
                "give the school's name with --name (at most 200 characters)"
            );
            match runtime.block_on(store.put_school(&id, name))? {
                Added::Created => println!("added school {id} ({name})"),
                Added::Renamed => println!("school {id} is now named {name}"),
            }
        }
        SchoolsCommand::List => {
            for s in runtime.block_on(store.schools())? {
                println!("{}\t{}", s.id, s.name);
            }
        }
    }
    Ok(())
}

fn open(dir: &Path) -> anyhow::Result<(tokio::runtime::Runtime, Store)> {
    let url = crate::config::CollectorConfig::load(&dir.join("collector.toml"))
        .map(|c| c.storage.url)
        .unwrap_or_default();
    let location = crate::store::Location::new(dir, &url)
        .context("the store is misconfigured; fix [storage] in collector.toml")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let store = runtime
        .block_on(Store::open(&location))
        .with_context(|| format!("opening the collector's store in {}", dir.display()))?;
    Ok((runtime, store))
}
