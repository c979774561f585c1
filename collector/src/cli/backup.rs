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
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The backup directory (made by `backup`).
    src: PathBuf,
    /// The passphrase file the backup was made with (for an encrypted backup).
    #[arg(long, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
}

pub fn backup(dir: &Path, args: BackupArgs) -> Result<()> {
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
    let report = backup::backup(dir, &args.dest, passphrase.as_ref())?;
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

pub fn restore(dir: &Path, args: RestoreArgs) -> Result<()> {
    let passphrase = args
        .passphrase_file
        .as_deref()
        .map(Passphrase::read)
        .transpose()?;
    let report = backup::restore(&args.src, dir, passphrase.as_ref())?;
    println!(
        "restored {} alerts and {} captures into {} (integrity ok); start the collector with this --data-dir",
        report.manifest.alerts,
        report.manifest.captures,
        report.dir.display()
    );
    Ok(())
}
