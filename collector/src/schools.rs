//! `tutela-collector schools add|list|set`: the schools of a trust, each a
//! tenant of the collector (the rows are in `store::schools`), and a
//! school's own settings (time zone, retention), each falling back to the
//! trust's (collector.toml) while unset.

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
    /// List the schools, with their own settings.
    List,
    /// Set a school's own time zone or retention (each the trust's, from
    /// collector.toml, until set; `trust` or 0 gives it back).
    Set {
        /// The school's id.
        id: String,
        /// Its time zone: an IANA name (Europe/London), UTC or an offset
        /// (+01:00); `trust` for the trust's `[console] time_zone`.
        #[arg(long)]
        time_zone: Option<String>,
        /// Calendar months its closed alerts are kept (1-120); 0 for the
        /// trust's `[retention] closed_alert_months`.
        #[arg(long)]
        retention_months: Option<u32>,
    },
}

/// Checks a school's time zone as given (`trust` or '' for the trust's):
/// what to store, or what is wrong and what to give instead.
pub fn checked_time_zone(given: &str) -> anyhow::Result<String> {
    let given = given.trim();
    if given.is_empty() || given == "trust" {
        return Ok(String::new());
    }
    crate::console::tz::Zone::parse(given)
        .map(|z| z.name().to_owned())
        .map_err(|e| anyhow::anyhow!("{e}; or \"trust\" for the trust's time zone"))
}

/// Checks a school's retention in months (0 for the trust's).
pub fn checked_retention(months: u32) -> anyhow::Result<u32> {
    anyhow::ensure!(
        months <= schools::MAX_RETENTION_MONTHS,
        "a school keeps closed alerts for 1-{} calendar months ({months} given); give 0 for the trust's [retention] closed_alert_months",
        schools::MAX_RETENTION_MONTHS
    );
    Ok(months)
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
                let mut own = Vec::new();
                if !s.time_zone.is_empty() {
                    own.push(format!("time zone {}", s.time_zone));
                }
                if s.retention_months > 0 {
                    own.push(format!("retention {} months", s.retention_months));
                }
                if own.is_empty() {
                    println!("{}\t{}", s.id, s.name);
                } else {
                    println!("{}\t{}\t{}", s.id, s.name, own.join(", "));
                }
            }
        }
        SchoolsCommand::Set {
            id,
            time_zone,
            retention_months,
        } => {
            drop(store);
            drop(runtime);
            set(dir, &id, time_zone.as_deref(), retention_months)?;
        }
    }
    Ok(())
}

/// `schools set`: checks the values, then changes the school's settings,
/// audited as the command line's.
fn set(
    dir: &Path,
    id: &str,
    time_zone: Option<&str>,
    retention_months: Option<u32>,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        time_zone.is_some() || retention_months.is_some(),
        "give --time-zone and/or --retention-months; nothing was changed"
    );
    let time_zone = time_zone.map(checked_time_zone).transpose()?;
    let retention_months = retention_months.map(checked_retention).transpose()?;
    let change = schools::SettingsChange {
        time_zone: time_zone.as_deref(),
        retention_months,
    };
    let detail = change.detail(id);
    let found = crate::console::cli::with_store(dir, |db| {
        Ok(db.set_school_settings(
            id,
            &change,
            &crate::store::users::Audited {
                actor: "cli",
                action: "school_settings",
                target: &format!("school:{id}"),
                detail: &detail,
            },
        )?)
    })?;
    anyhow::ensure!(
        found,
        "there is no school {id:?}; `tutela-collector schools list` shows the schools and `schools add` adds one; nothing was changed"
    );
    println!("school {id}: {}", detail.replace("; ", ", "));
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
