//! `tutela-collector user add|passwd|unlock|disable|enable|list` and
//! `tutela-collector users import`.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Subcommand;
use rusqlite::{params, Connection, OptionalExtension};

use super::auth::{self, Role};
use super::{audit, schema, staff};
use crate::store::{self, now_ms};

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
    /// Set a new password for an account (keeping its role), unlock it and
    /// end its sessions. The password is read from standard input unless
    /// --password-file is given.
    Passwd {
        name: String,
        /// Read the password from this file (first line) instead of standard input.
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// Lift the 15-minute lock that failed sign-ins put on an account.
    Unlock { name: String },
    /// Stop an account from signing in and end its sessions (its history stays).
    Disable { name: String },
    /// Let a disabled account sign in again.
    Enable { name: String },
    /// List console accounts with their role and whether they are locked or disabled.
    List,
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

/// The first line of `path`, or of standard input.
fn read_password(path: Option<PathBuf>) -> anyhow::Result<String> {
    let mut text = String::new();
    match path {
        Some(path) => {
            text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading the password from {}", path.display()))?
        }
        None => {
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading the password from standard input")?;
        }
    }
    Ok(text.lines().next().unwrap_or("").to_owned())
}

fn open(dir: &Path) -> anyhow::Result<Connection> {
    let conn = store::open(dir).with_context(|| {
        format!(
            "opening the collector database in {} (is --data-dir right?)",
            dir.display()
        )
    })?;
    schema::create(&conn)?;
    Ok(conn)
}

/// Fails with a hint unless an account called `name` exists.
fn require_account(conn: &Connection, name: &str) -> anyhow::Result<()> {
    let found = conn
        .query_row(
            "SELECT 1 FROM console_users WHERE name = ?1",
            [name],
            |_| Ok(()),
        )
        .optional()?;
    if found.is_none() {
        bail!("there is no console account named {name:?}; `tutela-collector user list` shows the accounts");
    }
    Ok(())
}

pub fn user(dir: &Path, command: UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::Add {
            name,
            role,
            password_file,
        } => {
            let password = read_password(password_file)?;
            let role = Role::parse(&role).context("unknown role")?;
            let conn = open(dir)?;
            let existed = auth::add_user(&conn, &name, role, &password)?;
            println!(
                "{} console account {name} ({})",
                if existed { "updated" } else { "created" },
                role.as_str()
            );
            Ok(())
        }
        UserCommand::Passwd {
            name,
            password_file,
        } => {
            let conn = open(dir)?;
            require_account(&conn, &name)?;
            let password = read_password(password_file)?;
            anyhow::ensure!(
                password.chars().count() >= auth::MIN_PASSWORD_CHARS,
                "the password must be at least {} characters; nothing was changed",
                auth::MIN_PASSWORD_CHARS
            );
            let hash = auth::hash_password(&password)?;
            let tx = super::write_tx(&conn)?;
            tx.execute(
                "UPDATE console_users SET password_hash = ?2, failed = 0, locked_until_ms = 0 WHERE name = ?1",
                params![name, hash],
            )?;
            tx.execute("DELETE FROM console_sessions WHERE user = ?1", [&name])?;
            audit::append(&tx, "cli", "password_reset", &format!("user:{name}"), "")?;
            tx.commit()?;
            println!("new password set for console account {name}; its sessions ended");
            Ok(())
        }
        UserCommand::Unlock { name } => {
            let conn = open(dir)?;
            require_account(&conn, &name)?;
            let tx = super::write_tx(&conn)?;
            tx.execute(
                "UPDATE console_users SET failed = 0, locked_until_ms = 0 WHERE name = ?1",
                [&name],
            )?;
            audit::append(&tx, "cli", "account_unlocked", &format!("user:{name}"), "")?;
            tx.commit()?;
            println!("console account {name} unlocked");
            Ok(())
        }
        UserCommand::Disable { name } => {
            let conn = open(dir)?;
            require_account(&conn, &name)?;
            let tx = super::write_tx(&conn)?;
            tx.execute(
                "UPDATE console_users SET disabled = 1 WHERE name = ?1",
                [&name],
            )?;
            tx.execute("DELETE FROM console_sessions WHERE user = ?1", [&name])?;
            audit::append(&tx, "cli", "account_disabled", &format!("user:{name}"), "")?;
            tx.commit()?;
            println!("console account {name} disabled; its sessions ended");
            Ok(())
        }
        UserCommand::Enable { name } => {
            let conn = open(dir)?;
            require_account(&conn, &name)?;
            let tx = super::write_tx(&conn)?;
            tx.execute(
                "UPDATE console_users SET disabled = 0, failed = 0, locked_until_ms = 0 WHERE name = ?1",
                [&name],
            )?;
            audit::append(&tx, "cli", "account_enabled", &format!("user:{name}"), "")?;
            tx.commit()?;
            println!("console account {name} enabled");
            Ok(())
        }
        UserCommand::List => {
            let conn = open(dir)?;
            let mut stmt = conn.prepare(
                "SELECT name, role, failed, locked_until_ms, disabled, password_hash = '' FROM console_users ORDER BY name",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, bool>(4)?,
                    r.get::<_, bool>(5)?,
                ))
            })?;
            let now = now_ms();
            for row in rows {
                let (name, role, failed, locked_until, disabled, sso) = row?;
                let state = if disabled {
                    "disabled".to_owned()
                } else if locked_until > now {
                    format!(
                        "locked ({} min left; `user unlock {name}` lifts it)",
                        (locked_until - now + 59_999) / 60_000
                    )
                } else if failed > 0 {
                    format!("active ({failed} failed sign-ins)")
                } else {
                    "active".to_owned()
                };
                // Single sign-on accounts have no password; the role is the
                // mapping's at their last sign-in.
                let how = if sso { "\tsingle sign-on" } else { "" };
                println!("{name}\t{role}\t{state}{how}");
            }
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
