//! `tutela-collector webhooks status|retry-failed`.

use clap::Subcommand;

use super::outbox;
use crate::console::tz::Zone;

#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// List webhook messages waiting, refused and recently sent, with the last error.
    Status,
    /// Queue again the messages a receiver refused for good (after fixing it).
    RetryFailed,
}

pub fn run(dir: &std::path::Path, command: WebhooksCommand) -> anyhow::Result<()> {
    use anyhow::Context;
    let conn = crate::store::open(dir).with_context(|| {
        format!(
            "opening the collector database in {} (is --data-dir right?)",
            dir.display()
        )
    })?;
    match command {
        WebhooksCommand::RetryFailed => {
            let n = outbox::retry_failed(&conn)?;
            println!("{n} refused webhook messages queued again; the running collector posts them");
        }
        WebhooksCommand::Status => {
            let config = crate::config::CollectorConfig::load(&dir.join("collector.toml"))?;
            let zone = Zone::parse(&config.console.time_zone).unwrap_or_else(|_| Zone::utc());
            let rows = outbox::rows(&conn, 100)?;
            if rows.is_empty() {
                println!("no webhook messages");
            }
            for r in rows {
                let state = match (r.sent_ms, r.failed_ms) {
                    (Some(t), _) => format!("sent {}", zone.format(t)),
                    (None, Some(t)) => format!("refused for good {}", zone.format(t)),
                    (None, None) => format!("waiting, next try {}", zone.format(r.next_attempt_ms)),
                };
                println!(
                    "#{} {} ({} alerts, queued {}): {state}; {} attempts{}",
                    r.id,
                    r.target,
                    r.alerts,
                    zone.format(r.created_ms),
                    r.attempts,
                    if r.last_error.is_empty() {
                        String::new()
                    } else {
                        format!("; last error: {}", r.last_error)
                    }
                );
            }
        }
    }
    Ok(())
}
