//! `tutela-collector summary`: preview, send now, status.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::content::Audience;
use crate::config::CollectorConfig;
use crate::mail::{self, Mailer};
use crate::store::{self, now_ms, Jobs};

#[derive(Debug, clap::Args)]
pub struct SummaryArgs {
    /// Write the summary as one HTML file (chart inline) instead of sending it.
    #[arg(long, value_name = "FILE")]
    pub preview: Option<PathBuf>,
    /// Queue the summary for every recipient and send it now; the week then
    /// counts as sent and the schedule will not send it again.
    #[arg(long)]
    pub send_now: bool,
    /// The week to summarise, by its first day (YYYY-MM-DD; another day
    /// means the week holding it, from the schedule's weekday). Default: the
    /// latest complete week by the schedule.
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub week: Option<String>,
    /// Preview the head teacher's summary (alerts about staff) instead of the DSL's.
    #[arg(long)]
    pub staff: bool,
    /// Show the weeks sent and the mail outbox: what is waiting, and why.
    #[arg(long)]
    pub status: bool,
    /// Queue again the emails the mail server refused for good (after the
    /// address or the server was fixed); the running collector sends them.
    #[arg(long)]
    pub retry_failed: bool,
}

/// Runs the command, on SQLite or PostgreSQL (`[storage] url`).
pub fn run(dir: &Path, args: SummaryArgs) -> Result<()> {
    let config = CollectorConfig::load(&dir.join("collector.toml"))?;
    let location = store::Location::new(dir, &config.storage.url)
        .context("the store is misconfigured; fix [storage] in collector.toml")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let jobs = Jobs::open(&location)
            .await
            .context("opening the collector's store")?;
        run_on(&jobs, config, args).await
    })
}

async fn run_on(jobs: &Jobs, config: CollectorConfig, args: SummaryArgs) -> Result<()> {
    let now = now_ms();
    let week = match &args.week {
        Some(date) => super::week_of(&config, date)?,
        None => super::latest_week(&config, now)?,
    };
    if args.retry_failed {
        let n = jobs.retry_failed_emails().await?;
        println!(
            "{n} refused emails queued again; the running collector sends them (see `tutela-collector summary --status`)"
        );
        return Ok(());
    }
    if args.status {
        let zone = super::zone(&config);
        println!("weekly summaries queued:");
        for r in jobs.summary_runs(20).await? {
            println!(
                "  week of {}: {} emails, {}, {}",
                r.week_start,
                r.emails,
                r.trigger,
                zone.format(r.queued_ms)
            );
        }
        println!("mail outbox (newest first, unsent before sent):");
        for r in jobs.outbox(50).await? {
            let state = match (r.sent_ms, r.failed_ms) {
                (Some(ms), _) => format!("sent {}", zone.format(ms)),
                (None, Some(ms)) => format!(
                    "FAILED for good {} (the server refused it; not retried): {}",
                    zone.format(ms),
                    r.last_error
                ),
                (None, None) if r.attempts == 0 && r.last_error.is_empty() => "waiting".to_owned(),
                (None, None) if r.attempts == 0 => format!(
                    "waiting, next try {}: {}",
                    zone.format(r.next_attempt_ms),
                    r.last_error
                ),
                (None, None) => format!(
                    "NOT SENT after {} attempts, next try {}: {}",
                    r.attempts,
                    zone.format(r.next_attempt_ms),
                    r.last_error
                ),
            };
            println!(
                "  #{} {} to {} queued {}: {} ({})",
                r.id,
                r.kind,
                r.recipient,
                zone.format(r.created_ms),
                state,
                r.subject
            );
        }
        return Ok(());
    }
    if let Some(out) = &args.preview {
        let audience = if args.staff {
            Audience::Staff
        } else {
            Audience::Pupils
        };
        let figures = jobs
            .summary_figures(&config, &week, audience, "", now_ms())
            .await?;
        let html = super::preview_html(figures)?;
        // Owner-only: the summary links alerts and names stations.
        crate::secrets::write_private(out, html.as_bytes())
            .with_context(|| format!("writing {}", out.display()))?;
        println!(
            "wrote the summary for the week of {} to {}",
            week.label(),
            out.display()
        );
        return Ok(());
    }
    if args.send_now {
        let mailer = Mailer::from_config(&config.mail)?.context(
            "mail is not configured: set [mail] host, from and recipients in collector.toml",
        )?;
        let queued = super::queue_week(
            jobs,
            &config,
            &mailer.from,
            &week,
            super::Trigger::Manual,
            now,
        )
        .await?
        .unwrap_or(0);
        anyhow::ensure!(
            queued > 0,
            "no recipient holds a role in [summary] roles ({}); add recipients to [mail] recipients",
            config.summary.roles.join(", ")
        );
        let stop = std::sync::atomic::AtomicBool::new(false);
        let done = mail::deliver_due(jobs, &mailer, &stop).await?;
        println!(
            "queued {queued} summary emails for the week of {}; {} sent, {} not sent yet, {} refused by the server",
            week.label(),
            done.sent,
            done.failed,
            done.rejected
        );
        anyhow::ensure!(
            done.rejected == 0,
            "{} emails were refused for good by the mail server (see `tutela-collector summary --status`); check those addresses",
            done.rejected
        );
        anyhow::ensure!(
            done.failed == 0,
            "{} emails could not be sent yet; they stay in the outbox and the running collector retries them (see `tutela-collector summary --status`)",
            done.failed
        );
        return Ok(());
    }
    anyhow::bail!("say what to do: --preview FILE, --send-now, --status or --retry-failed")
}
