//! `tutela-collector user add` and `tutela-collector users import`.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;

use super::auth::{self, Role};
use super::{schema, staff};
use crate::store;

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a console account, or reset its password and role. The password
    /// is read from standard input unless --password-file is given.
    Add {
        name: String,
        /// dsl, deputy-dsl, head, technician or auditor.
        #[arg(long, value_parser = parse_role)]
        role: String,
        /// Read the password from this file (first line) instead of standard input.
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Replace the list of staff accounts from a CSV of users and groups
    /// (header `username,groups[,type]`; staff by type or a `staff` group).
    Import { csv: PathBuf },
}

fn parse_role(text: &str) -> Result<String, String> {
    Role::parse(text)
        .map(|r| r.as_str().to_owned())
        .ok_or_else(|| "roles are dsl, deputy-dsl, head, technician and auditor".to_owned())
}

pub fn user(dir: &Path, command: UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::Add {
            name,
            role,
            password_file,
        } => {
            let mut text = String::new();
            match password_file {
                Some(path) => {
                    text = std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {}", path.display()))?
                }
                None => {
                    std::io::stdin().read_to_string(&mut text)?;
                }
            }
            let password = text.lines().next().unwrap_or("");
            let role = Role::parse(&role).context("unknown role")?;
            let conn = store::open(dir).context("opening the collector database")?;
            schema::create(&conn)?;
            let existed = auth::add_user(&conn, &name, role, password)?;
            println!(
                "{} console account {name} ({})",
                if existed { "updated" } else { "created" },
                role.as_str()
            );
            Ok(())
        }
    }
}

pub fn users(dir: &Path, command: UsersCommand) -> anyhow::Result<()> {
    match command {
        UsersCommand::Import { csv } => {
            let text = std::fs::read_to_string(&csv)
                .with_context(|| format!("reading {}", csv.display()))?;
            let mut conn = store::open(dir).context("opening the collector database")?;
            schema::create(&conn)?;
            let n = staff::import(&mut conn, &text)?;
            println!(
                "imported {} staff accounts ({} other accounts ignored); their alerts go to the head teacher",
                n.staff, n.others
            );
            Ok(())
        }
    }
}
