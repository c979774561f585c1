//! `tutela-collector notice`: set a group's monitoring notice from a file,
//! show the current notices, and list who has and has not accepted one.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::{Mode, NewNotice};
use crate::store;

#[derive(Debug, clap::Subcommand)]
pub enum NoticeCommand {
    /// Publish a new version of a group's notice (plain text from a file, or `-` for standard input).
    Set {
        /// The group (as given to `token create --group`).
        #[arg(long)]
        group: String,
        /// The notice text, at most 4,000 characters.
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        /// When stations show it: every-sign-in or once-per-version.
        #[arg(long, default_value = "every-sign-in")]
        mode: String,
        /// The pupils' 'Report a concern' page shown with the notice (default: the console's /concern).
        #[arg(long, value_name = "URL")]
        concern_url: Option<String>,
        /// Who sets it (recorded in the audit log).
        #[arg(long, default_value = "cli")]
        by: String,
        /// Only that school's stations (its id); without it, the trust's
        /// notice, shown where a school has none of its own.
        #[arg(long)]
        school: Option<String>,
    },
    /// Show each group's current notice.
    Show,
    /// Who has and has not accepted a group's current notice (names pupils).
    Acks {
        #[arg(long)]
        group: String,
        /// Only that school's stations (its id), against the notice they
        /// show (the school's own, else the trust's); without it, every
        /// station against the trust's notice.
        #[arg(long)]
        school: Option<String>,
        /// One JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(dir: &Path, command: NoticeCommand) -> Result<()> {
    let config = crate::config::CollectorConfig::load(&dir.join("collector.toml"))?;
    let location = store::Location::new(dir, &config.storage.url)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let store = runtime
        .block_on(store::Store::open(&location))
        .context("opening the collector's store")?;
    match command {
        NoticeCommand::Set {
            group,
            file,
            mode,
            concern_url,
            by,
            school,
        } => {
            let mut text = String::new();
            if file.as_os_str() == "-" {
                std::io::stdin()
                    .read_to_string(&mut text)
                    .context("reading the notice from standard input")?;
            } else {
                text = std::fs::read_to_string(&file)
                    .with_context(|| format!("reading the notice from {}", file.display()))?;
            }
            let mode = Mode::parse(&mode).ok_or(super::NoticeError::BadMode)?;
            let concern_url = match concern_url {
                Some(url) => url,
                None => format!("{}/concern", crate::mail::console_url(&config)),
            };
            let key = crate::secrets::load_signing_key(dir)
                .map_err(|e| anyhow::anyhow!("loading the signing key: {e}"))?;
            let version = runtime.block_on(super::set_in(
                &store,
                &key,
                &NewNotice {
                    group: group.clone(),
                    text,
                    mode,
                    concern_url,
                    created_by: by,
                    school: school.clone().unwrap_or_default(),
                },
            ))?;
            let at = school
                .map(|s| format!(" at school {s}"))
                .unwrap_or_default();
            println!("notice version {version} set for group {group}{at}; its stations show it {} (connected ones now)", mode.describe());
        }
        NoticeCommand::Show => {
            for n in runtime.block_on(store.current_notices())? {
                let at = if n.school.is_empty() {
                    String::new()
                } else {
                    format!(" at school {}", n.school)
                };
                println!(
                    "group {}{at} version {} shown {} (set by {}):",
                    n.grp,
                    n.version,
                    Mode::parse(&n.mode).map_or("?", Mode::describe),
                    n.created_by
                );
                for line in n.text.lines() {
                    println!("  {line}");
                }
                if !n.concern_url.is_empty() {
                    println!("  [report a concern: {}]", n.concern_url);
                }
            }
        }
        NoticeCommand::Acks {
            group,
            school,
            json,
        } => {
            if let Some(school) = school.as_deref() {
                if !runtime.block_on(store.school_exists(school))? {
                    anyhow::bail!("no school `{school}`; see `tutela-collector schools list`");
                }
            }
            let at = school.as_deref().unwrap_or("");
            let a = runtime.block_on(super::acceptance_at(&store, &group, at))?;
            if json {
                println!("{}", serde_json::to_string(&a)?);
            } else {
                println!("group {} current version {}", a.group, a.version);
                for s in &a.accepted {
                    println!("accepted  {:<24} {}", s.user, s.station);
                }
                for s in &a.pending {
                    println!(
                        "not yet   {:<24} last accepted version {}",
                        s.user, s.version
                    );
                }
            }
        }
    }
    Ok(())
}
