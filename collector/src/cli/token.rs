//! `tutela-collector token create|list|revoke`: enrolment tokens.

use std::path::Path;

use anyhow::Result;
use clap::Subcommand;

use super::load_config;
use crate::console::cli::with_store;
use crate::enrolment::{self, TokenSpec};
use crate::store::users::Audited;
use crate::{secrets, store};

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make an enrolment token for devices to join with `tutela-agent enrol`.
    Create {
        /// How long the token is valid, e.g. 30m, 24h, 7d.
        #[arg(long, default_value = "24h", value_parser = parse_duration_ms)]
        expires: i64,
        /// How many devices may enrol with it.
        #[arg(long, default_value_t = 1)]
        uses: u32,
        /// Group the devices join (site, room or year group).
        #[arg(long, default_value = "")]
        group: String,
        /// A note for technicians.
        #[arg(long, default_value = "")]
        label: String,
    },
    /// List enrolment tokens (never their secrets) with uses and state.
    List,
    /// Revoke a token by its id (or a prefix of at least 4 digits) from `token list`.
    Revoke { id: String },
}

/// A token's validity: a duration (a bare number counts hours), at most 365 days.
fn parse_duration_ms(text: &str) -> Result<i64, String> {
    use crate::duration::{parse_ms, DurationError};
    let text = text.trim();
    let hours;
    let with_unit = if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        hours = format!("{text}h");
        &hours
    } else {
        text
    };
    match parse_ms(with_unit) {
        Ok(ms) if ms <= MAX_TOKEN_VALIDITY_MS => Ok(ms),
        Ok(_) | Err(DurationError::TooLong(_)) => Err(format!(
            "`{text}` is too long: a token may be valid for at most 365d"
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// Longest an enrolment token may stay valid.
const MAX_TOKEN_VALIDITY_MS: i64 = 365 * 86_400_000;

/// Runs the command on the store `[storage] url` names; a change and its
/// audit entry commit together.
pub fn run(dir: &Path, command: TokenCommand) -> Result<()> {
    match command {
        TokenCommand::Create {
            expires,
            uses,
            group,
            label,
        } => {
            let config = load_config(dir)?;
            let tls = secrets::load_tls(dir)?;
            anyhow::ensure!(uses >= 1, "--uses must be at least 1");
            let (mut token, row) = enrolment::new_token(
                &TokenSpec {
                    valid_for_ms: expires,
                    max_uses: uses,
                    group: group.clone(),
                    label: label.clone(),
                },
                &config.advertised(),
                &tls.fingerprint,
            );
            token.fallbacks = config.advertise_also.clone();
            let entry = Audited {
                actor: "cli",
                action: "token-create",
                target: &format!("group:{group}"),
                detail: &format!("{uses} uses, valid {} s, label {label}", expires / 1000),
            };
            with_store(dir, |db| Ok(db.create_token(&row, &entry)?))?;
            println!("{}", token.encode());
        }
        TokenCommand::List => {
            let now = store::now_ms();
            println!(
                "{:<12} {:<10} {:<12} {:>9} {:<24} label",
                "id", "state", "group", "uses", "expires"
            );
            for t in with_store(dir, |db| Ok(db.tokens()?))? {
                println!(
                    "{:<12} {:<10} {:<12} {:>9} {:<24} {}",
                    t.id,
                    t.state(now),
                    if t.group.is_empty() { "-" } else { &t.group },
                    format!("{}/{}", t.uses, t.max_uses),
                    crate::console::tz::Zone::utc().format(t.expires_ms),
                    t.label
                );
            }
        }
        TokenCommand::Revoke { id } => {
            let id = with_store(dir, |db| {
                let id = enrolment::token_by_prefix(&db.tokens()?, &id)?;
                db.revoke_token(
                    &id,
                    &Audited {
                        actor: "cli",
                        action: "token-revoke",
                        target: &format!("token:{id}"),
                        detail: "from the command line",
                    },
                )?;
                Ok(id)
            })?;
            tracing::info!(token = %id, "enrolment token revoked");
            println!("revoked token {id}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_durations_parse_and_huge_ones_are_refused() {
        assert_eq!(parse_duration_ms("30m"), Ok(30 * 60_000));
        assert_eq!(parse_duration_ms("24"), Ok(24 * 3_600_000));
        assert_eq!(parse_duration_ms("365d"), Ok(MAX_TOKEN_VALIDITY_MS));
        for huge in ["366d", "9223372036854775807d", "999999999999999999s"] {
            let err = parse_duration_ms(huge).unwrap_err();
            assert!(err.contains("at most 365d"), "{huge}: {err}");
        }
        assert!(parse_duration_ms("0h").is_err());
        assert!(parse_duration_ms("3y")
            .unwrap_err()
            .contains("unknown unit"));
        assert!(parse_duration_ms("99999999999999999999d").is_err());
    }
}
