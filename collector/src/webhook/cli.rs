//! `tutela-collector webhooks status|retry-failed`.

use clap::Subcommand;

use crate::console::tz::Zone;
use crate::store::{Jobs, Location};

#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// List webhook messages waiting, refused and recently sent, with the last error.
    Status,
    /// Queue again the messages a receiver refused for good (after fixing it).
    RetryFailed,
}

/// Runs the command, on SQLite or PostgreSQL (`[storage] url`).
pub fn run(dir: &std::path::Path, command: WebhooksCommand) -> anyhow::Result<()> {
    use anyhow::Context;
    let config = crate::config::CollectorConfig::load(&dir.join("collector.toml"))?;
    let location = Location::new(dir, &config.storage.url)
        .context("the store is misconfigured; fix [storage] in collector.toml")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let jobs = Jobs::open(&location).await.with_context(|| {
            format!(
                "opening the collector's store in {} (is --data-dir right?)",
                dir.display()
            )
        })?;
        run_on(&jobs, &config, command).await
    })
}

async fn run_on(
    jobs: &Jobs,
    config: &crate::config::CollectorConfig,
    command: WebhooksCommand,
) -> anyhow::Result<()> {
    match command {
        WebhooksCommand::RetryFailed => {
            let n = jobs.retry_failed_webhooks().await?;
            println!("{n} refused webhook messages queued again; the running collector posts them");
        }
        WebhooksCommand::Status => {
            let zone = Zone::parse(&config.console.time_zone).unwrap_or_else(|_| Zone::utc());
            let rows = jobs.webhook_rows(100).await?;
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
