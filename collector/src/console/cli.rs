//! `tutela-collector user add|passwd|unlock|disable|enable|list` and
//! `tutela-collector users import`.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::auth::{self, Role};
use super::staff;
use crate::store::console::{Console, ConsoleStore};
use crate::store::now_ms;
use crate::store::schools::{grants_label, GrantChange, Scope, NO_SCHOOL};
use crate::store::users::AccountChange;
use anyhow::{bail, Context};
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a console account, or reset its password and role (an account
    /// of several grants keeps them unless --school or --trust sets this
    /// role's). The password is read from standard input unless
    /// --password-file is given. On a collector of several schools a new
    /// account needs --school or --trust.
    Add {
        name: String,
        /// dsl, deputy-dsl, head, technician or auditor.
        #[arg(long, value_parser = parse_role)]
        role: String,
        /// Read the password from this file (first line) instead of standard input.
        #[arg(long)]
        password_file: Option<PathBuf>,
        /// Grant the role over this school only (`schools list`).
        #[arg(long, conflicts_with = "trust")]
        school: Option<String>,
        /// Grant the role over every school of the trust.
        #[arg(long)]
        trust: bool,
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
    /// List console accounts with their role (or grants) and whether they are locked or disabled.
    List,
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Replace the list of staff accounts from a CSV of users and groups
    /// (header `username,groups[,type]`; staff by type or a `staff` group).
    Import { csv: PathBuf },
    /// Give an account a role over one more school (--school) or every
    /// school of the trust (--trust); its sessions end. A role the account
    /// does not hold yet is a grant of its own beside its others (DSL at
    /// one school, deputy DSL at another); one it holds takes the school in
    /// (a school for a trust-wide grant of the role narrows it).
    #[command(group(clap::ArgGroup::new("scope").required(true).args(["school", "trust"])))]
    Grant {
        name: String,
        /// dsl, deputy-dsl, head, technician or auditor.
        #[arg(long, value_parser = parse_role)]
        role: String,
        /// The school (`schools list`).
        #[arg(long)]
        school: Option<String>,
        /// Every school of the trust.
        #[arg(long)]
        trust: bool,
    },
    /// Take away an account's grant over one school (--school) or the trust
    /// (--trust), of every role or of --role only; its sessions end. With
    /// none left it sees nothing until `users grant` gives it one.
    #[command(name = "revoke-grant")]
    #[command(group(clap::ArgGroup::new("scope").required(true).args(["school", "trust"])))]
    RevokeGrant {
        name: String,
        /// The school (`schools list`).
        #[arg(long)]
        school: Option<String>,
        /// The trust-wide grant.
        #[arg(long)]
        trust: bool,
        /// Only this role's grant (dsl, deputy-dsl, head, technician or
        /// auditor); every role's when not given.
        #[arg(long, value_parser = parse_role)]
        role: Option<String>,
    },
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

/// Opens the store the collector in `dir` uses (`[storage] url`: SQLite
/// in `dir`, or PostgreSQL) and runs `f` with the console's view of it.
pub(crate) fn with_store<T>(
    dir: &Path,
    f: impl FnOnce(&Console<'_>) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let url = crate::config::CollectorConfig::load(&dir.join("collector.toml"))
        .map(|c| c.storage.url)
        .unwrap_or_default();
    let location = crate::store::Location::new(dir, &url)
        .context("the store is misconfigured; fix [storage] in collector.toml")?;
    if !location.shared() {
        let store = ConsoleStore::open_sqlite(dir).with_context(|| {
            format!(
                "opening the collector database in {} (is --data-dir right?)",
                dir.display()
            )
        })?;
        return store.with(f).0;
    }
    // The store's connection runs on a runtime of its own; the command's
    // work is driven from this thread.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let store = runtime
        .block_on(ConsoleStore::open(&location))
        .context("opening the collector's store")?;
    let outcome = store.with(f).0;
    drop(store);
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    outcome
}

/// The scope --school or --trust names, if either (the school must exist).
fn chosen_scope(
    db: &Console<'_>,
    school: Option<String>,
    trust: bool,
) -> anyhow::Result<Option<Scope>> {
    match school {
        Some(id) => {
            if !db.schools()?.iter().any(|s| s.id == id) {
                bail!("there is no school {id:?}; `tutela-collector schools list` shows the schools and `schools add` adds one");
            }
            Ok(Some(Scope::School(id)))
        }
        None if trust => Ok(Some(Scope::Trust)),
        None => Ok(None),
    }
}

/// Applies `change` to account `name`, or says there is no such account.
fn change(db: &Console<'_>, name: &str, change: AccountChange<'_>) -> anyhow::Result<()> {
    if !db.change_account(name, change)? {
        bail!("there is no console account named {name:?}; `tutela-collector user list` shows the accounts");
    }
    Ok(())
}

fn require_account(db: &Console<'_>, name: &str) -> anyhow::Result<()> {
    if db.login_row(name)?.is_none() {
        bail!("there is no console account named {name:?}; `tutela-collector user list` shows the accounts");
    }
    Ok(())
}

pub fn user(dir: &Path, command: UserCommand) -> anyhow::Result<()> {
    with_store(dir, |db| match command {
        UserCommand::Add {
            name,
            role,
            password_file,
            school,
            trust,
        } => {
            let scope = chosen_scope(db, school, trust)?;
            // Fail closed: on a collector of several schools a new account
            // is not given the whole trust by default.
            if scope.is_none() && db.login_row(&name)?.is_none() && db.schools()?.len() > 1 {
                bail!("this collector has several schools: pass --school <id> (`tutela-collector schools list` shows them) or --trust to say what {name} may see; nothing was changed");
            }
            let password = read_password(password_file)?;
            let role = Role::parse(&role).context("unknown role")?;
            let existed = auth::add_user(db, &name, role, &password)?;
            let scope = match scope {
                Some(scope) => {
                    db.grant(&name, role.as_str(), GrantChange::Set(&scope))?;
                    format!(" for the {}", scope.label())
                }
                None => String::new(),
            };
            println!(
                "{} console account {name} ({}){scope}",
                if existed { "updated" } else { "created" },
                role.as_str()
            );
            Ok(())
        }
        UserCommand::Passwd {
            name,
            password_file,
        } => {
            require_account(db, &name)?;
            let password = read_password(password_file)?;
            anyhow::ensure!(
                password.chars().count() >= auth::MIN_PASSWORD_CHARS,
                "the password must be at least {} characters; nothing was changed",
                auth::MIN_PASSWORD_CHARS
            );
            let hash = auth::hash_password(&password)?;
            change(db, &name, AccountChange::Password(&hash))?;
            println!("new password set for console account {name}; its sessions ended");
            Ok(())
        }
        UserCommand::Unlock { name } => {
            change(db, &name, AccountChange::Unlock)?;
            println!("console account {name} unlocked");
            Ok(())
        }
        UserCommand::Disable { name } => {
            change(db, &name, AccountChange::Disable)?;
            println!("console account {name} disabled; its sessions ended");
            Ok(())
        }
        UserCommand::Enable { name } => {
            change(db, &name, AccountChange::Enable)?;
            println!("console account {name} enabled");
            Ok(())
        }
        UserCommand::List => {
            let now = now_ms();
            for a in db.accounts()? {
                let name = &a.name;
                let state = if a.disabled {
                    "disabled".to_owned()
                } else if a.locked_until_ms > now {
                    format!(
                        "locked ({} min left; `user unlock {name}` lifts it)",
                        (a.locked_until_ms - now + 59_999) / 60_000
                    )
                } else if a.failed > 0 {
                    format!("active ({} failed sign-ins)", a.failed)
                } else {
                    "active".to_owned()
                };
                // Single sign-on accounts have no password; the role is the
                // mapping's at their last sign-in.
                let how = if a.single_sign_on {
                    "\tsingle sign-on"
                } else {
                    ""
                };
                let grants: Vec<(String, Scope)> = a
                    .grants
                    .iter()
                    .map(|(role, school)| (role.clone(), Scope::from_grant(school)))
                    .collect();
                let (role, scope) = match grants.as_slice() {
                    // One grant: its role, then its school (none for the
                    // trust: every account of a single-school install
                    // prints as before).
                    [(role, scope)] => (role.clone(), one_scope(scope)),
                    [] => (a.role.clone(), one_scope(&Scope::from_grant(NO_SCHOOL))),
                    several => (grants_label(several), String::new()),
                };
                println!("{name}\t{role}\t{state}{how}{scope}");
            }
            Ok(())
        }
    })
}

/// How `user list` shows an account's one grant after its state.
fn one_scope(scope: &Scope) -> String {
    match scope {
        Scope::Trust => String::new(),
        none if none.is_none() => "\tno school yet (`users grant` gives one)".to_owned(),
        school => format!("\t{}", school.label()),
    }
}

/// What `users grant` and `revoke-grant` say an account holds now.
fn now_holds(name: &str, grants: &[(String, Scope)]) -> String {
    match grants {
        [(role, scope)] if scope.is_none() => format!(
            "console account {name} ({role}) now has no school and sees nothing until `users grant` gives it one; its sessions ended"
        ),
        [(role, scope)] => format!(
            "console account {name} is now {role} for the {}; its sessions ended",
            scope.label()
        ),
        several => format!(
            "console account {name} now has the grants {}; it acts under one at a time, chosen after signing in; its sessions ended",
            grants_label(several)
        ),
    }
}

pub fn users(dir: &Path, command: UsersCommand) -> anyhow::Result<()> {
    match command {
        UsersCommand::Grant {
            name,
            role,
            school,
            trust,
        } => with_store(dir, |db| {
            let scope = chosen_scope(db, school, trust)?.unwrap_or(Scope::Trust);
            let Some(grants) = db.grant(&name, &role, GrantChange::Add(&scope))? else {
                bail!("there is no console account named {name:?}; `tutela-collector user add` makes one");
            };
            println!("{}", now_holds(&name, &grants));
            Ok(())
        }),
        UsersCommand::RevokeGrant {
            name,
            school,
            trust,
            role,
        } => with_store(dir, |db| {
            // A school that no longer exists may still be revoked.
            let scope = match school {
                Some(id) if !crate::store::schools::valid_id(&id) => {
                    bail!("{id:?} is not a school id; `tutela-collector user list` shows each account's schools; nothing was changed")
                }
                Some(id) => Scope::School(id),
                None if trust => Scope::Trust,
                None => bail!("pass --school <id> or --trust to say which grant to take away; nothing was changed"),
            };
            let role = role.unwrap_or_default();
            let Some(grants) = db.grant(&name, &role, GrantChange::Remove(&scope))? else {
                bail!("there is no console account named {name:?}; `tutela-collector user list` shows the accounts");
            };
            println!("{}", now_holds(&name, &grants));
            Ok(())
        }),
        UsersCommand::Import { csv } => {
            let text = std::fs::read_to_string(&csv)
                .with_context(|| format!("reading {}", csv.display()))?;
            let n = with_store(dir, |db| staff::import(db, &text))?;
            println!(
                "imported {} staff accounts ({} other accounts ignored); their alerts go to the head teacher",
                n.staff, n.others
            );
            Ok(())
        }
    }
}
