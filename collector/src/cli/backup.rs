//! `tutela-collector backup` and `restore`.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;

use super::load_config;
use crate::backup::{self, BackupError, Passphrase};

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// A new or empty directory for the backup.
    dest: PathBuf,
    /// File holding the passphrase that encrypts the backup (default: [backup] passphrase_file).
    #[arg(long, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
    /// Write the keys and database in the clear (anyone with the backup can read every capture).
    #[arg(long, conflicts_with = "passphrase_file")]
    unencrypted: bool,
    /// Do nothing (and say why) where `serve` makes the scheduled backups
    /// once across a cluster: a PostgreSQL store with `[backup] dir` set.
    /// The packages' nightly job on every machine passes this.
    #[arg(long)]
    unless_scheduled: bool,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The backup directory (made by `backup`).
    src: PathBuf,
    /// The passphrase file the backup was made with (for an encrypted backup).
    #[arg(long, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
    /// For a backup of a PostgreSQL store: the new, empty database to
    /// restore it into (postgres://user:password@host:port/database).
    #[arg(long, value_name = "URL")]
    to: Option<String>,
}

pub fn backup(dir: &Path, args: BackupArgs) -> Result<()> {
    if args.unless_scheduled {
        if let Some(why) = scheduled_in_cluster(&load_config(dir)?) {
            println!("{why}");
            return Ok(());
        }
    }
    let passphrase = if args.unencrypted {
        eprintln!("warning: writing an UNENCRYPTED backup: it holds the capture key and the database in the clear");
        None
    } else {
        let file = match args.passphrase_file {
            Some(f) => f,
            None => load_config(dir)?
                .backup
                .passphrase_file
                .ok_or(BackupError::NoPassphrase)?,
        };
        Some(Passphrase::read(&file)?)
    };
    let location = crate::store::Location::new(dir, &load_config(dir)?.storage.url)?;
    let report = match &location {
        crate::store::Location::Sqlite(_) => backup::backup(dir, &args.dest, passphrase.as_ref())?,
        #[cfg(feature = "postgres")]
        crate::store::Location::Postgres(pg) => {
            let runtime = pg_runtime()?;
            let (report, checked) = backup::postgres::backup(
                dir,
                pg,
                runtime.handle(),
                &args.dest,
                passphrase.as_ref(),
            )?;
            println!(
                "PostgreSQL {} read in one snapshot (schema version {}): {} tables; checked {} agents' event chains ({} events) and the audit log ({} entries)",
                pg.target(),
                checked.schema_version,
                checked.tables.len(),
                checked.agents_checked,
                checked.events_checked,
                checked.audit_entries
            );
            report
        }
    };
    println!(
        "backup of {} alerts and {} captures written to {} (integrity ok){}",
        report.manifest.alerts,
        report.manifest.captures,
        report.dir.display(),
        if report.manifest.encryption.is_some() {
            ", encrypted"
        } else {
            ", NOT encrypted"
        }
    );
    Ok(())
}

/// Why a backup here would repeat the cluster's scheduled ones, if it would:
/// the store is PostgreSQL (shared by every collector) and `[backup] dir`
/// is set, so `serve` backs it up once per slot across the cluster.
fn scheduled_in_cluster(config: &crate::config::CollectorConfig) -> Option<String> {
    let url = config.storage.url.trim();
    let postgres = url.starts_with("postgres://") || url.starts_with("postgresql://");
    let dir = config.backup.dir.as_ref().filter(|_| postgres)?;
    Some(format!(
        "no backup made here: the store is PostgreSQL and [backup] dir is set, so the collectors make the scheduled backups once across the cluster (into {} on the collector holding the backup lease, every {}); remove --unless-scheduled to back up anyway",
        dir.display(),
        config.backup.every.as_deref().unwrap_or("24h")
    ))
}

pub fn restore(dir: &Path, args: RestoreArgs) -> Result<()> {
    let passphrase = args
        .passphrase_file
        .as_deref()
        .map(Passphrase::read)
        .transpose()?;
    if let Some(url) = &args.to {
        return restore_postgres(dir, &args.src, passphrase.as_ref(), url);
    }
    let report = backup::restore(&args.src, dir, passphrase.as_ref())?;
    println!(
        "restored {} alerts and {} captures into {} (integrity ok); start the collector with this --data-dir",
        report.manifest.alerts,
        report.manifest.captures,
        report.dir.display()
    );
    Ok(())
}

/// A runtime whose worker drives PostgreSQL while this thread waits.
#[cfg(feature = "postgres")]
fn pg_runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?)
}

#[cfg(feature = "postgres")]
fn restore_postgres(
    dir: &Path,
    src: &Path,
    passphrase: Option<&Passphrase>,
    url: &str,
) -> Result<()> {
    let pg = crate::store::postgres::PgConfig::parse(url)?;
    let runtime = pg_runtime()?;
    let (report, copied) =
        backup::postgres::restore(src, dir, passphrase, &pg, runtime.handle(), &mut |line| {
            println!("{line}")
        })?;
    println!(
        "checked: row counts of {} tables, {} agents' event chains ({} events), the audit log ({} entries)",
        copied.copied.len(),
        copied.agents_checked,
        copied.events_checked,
        copied.audit_entries
    );
    println!(
        "restored {} alerts and {} captures into {} and the keys and configuration into {}; set [storage] url in its collector.toml to this database if it names another, then start the collector",
        report.manifest.alerts,
        report.manifest.captures,
        pg.target(),
        report.dir.display()
    );
    Ok(())
}

#[cfg(not(feature = "postgres"))]
fn restore_postgres(_: &Path, _: &Path, _: Option<&Passphrase>, _: &str) -> Result<()> {
    anyhow::bail!("this tutela-collector was built without PostgreSQL support: build it with `--features postgres` to restore into PostgreSQL")
}
