//! Several real collectors (`tutela-collector serve`) on one store, serving
//! as one service: the first node's certificate and keys are copied to the
//! others (agents pin one fingerprint), each node advertises its own address
//! first and the others as fallbacks, so a token made on any node names them
//! all. On PostgreSQL (a throwaway cluster, [`PgCluster`]) any number of
//! nodes share the database; on SQLite there is one node. Also what the load
//! benchmark and the cluster test read from the nodes: resident memory and
//! store errors in their logs.

use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::postgres::PgCluster;
use crate::{Collector, Scratch};

/// The files that make nodes one service: same certificate (the pinned
/// fingerprint), same rule-signing key, same capture key.
const SHARED_SECRETS: [&str; 4] = [
    "collector.crt",
    "collector.key",
    "signing.key",
    "capture.key",
];

/// Collector nodes and, on PostgreSQL, the database they share.
pub struct Nodes {
    pub collectors: Vec<Collector>,
    // After the collectors: stopped once they are.
    pub pg: Option<PgCluster>,
}

impl Nodes {
    /// Makes `count` nodes under `scratch` (review console off) and starts
    /// them; on PostgreSQL when `postgres`, else on SQLite (one node only).
    pub fn start(scratch: &Scratch, count: usize, postgres: bool) -> Result<Self> {
        if count == 0 || (count > 1 && !postgres) {
            bail!("several collectors need PostgreSQL (one SQLite file serves one collector)");
        }
        let pg = if postgres {
            Some(PgCluster::start()?)
        } else {
            None
        };
        let mut collectors = Vec::new();
        for i in 0..count {
            collectors.push(Collector::init(scratch.path(&format!("node-{i}")))?);
        }
        let addrs: Vec<String> = collectors
            .iter()
            .map(|c| format!("127.0.0.1:{}", c.port))
            .collect();
        for (i, c) in collectors.iter().enumerate() {
            if i > 0 {
                for file in SHARED_SECRETS {
                    std::fs::copy(collectors[0].dir.join(file), c.dir.join(file))
                        .with_context(|| format!("copying {file} to node {i}"))?;
                }
            }
            let others: Vec<String> = (1..count)
                .map(|k| format!("\"{}\"", addrs[(i + k) % count]))
                .collect();
            set_top_level(&c.dir, "advertise", &format!("\"{}\"", addrs[i]))?;
            set_top_level(
                &c.dir,
                "advertise_also",
                &format!("[{}]", others.join(", ")),
            )?;
            c.set_section("console", "enabled = false")?;
            if let Some(pg) = &pg {
                c.set_section("storage", &format!("url = \"{}\"", pg.url()))?;
            }
        }
        for c in &mut collectors {
            c.start()?;
        }
        Ok(Self { collectors, pg })
    }

    /// Process ids of the nodes serving now (None for a stopped one).
    pub fn pids(&self) -> Vec<Option<u32>> {
        self.collectors
            .iter()
            .map(|c| c.child.as_ref().map(|p| p.id()))
            .collect()
    }

    /// Events stored, counted in the store itself.
    pub fn count(&self, sql: &str) -> Result<i64> {
        match &self.pg {
            Some(pg) => {
                let text = pg.query(sql)?;
                text.parse()
                    .with_context(|| format!("{sql} gave {text:?}, not a number"))
            }
            None => {
                let db = rusqlite::Connection::open(self.collectors[0].dir.join("tutela.db"))?;
                Ok(db.query_row(sql, [], |r| r.get(0))?)
            }
        }
    }

    /// Store errors in every node's log so far.
    pub fn store_errors(&self) -> usize {
        self.collectors
            .iter()
            .map(|c| store_errors(&c.log_text()))
            .sum()
    }

    /// Every node's log, for a failure message.
    pub fn logs(&self) -> String {
        self.collectors
            .iter()
            .enumerate()
            .map(|(i, c)| format!("---- node {i}\n{}", c.log_text()))
            .collect()
    }
}

/// Replaces the top-level `key = ...` line of a collector's collector.toml.
fn set_top_level(dir: &Path, key: &str, value: &str) -> Result<()> {
    let path = dir.join("collector.toml");
    let text = std::fs::read_to_string(&path)?;
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{key} =")))
        .with_context(|| format!("init writes no {key} line"))?
        .to_owned();
    std::fs::write(&path, text.replace(&line, &format!("{key} = {value}")))?;
    Ok(())
}

/// Store errors in a collector's log: writes that failed, batches that did
/// not commit, SQLite's lock timeouts.
pub fn store_errors(log: &str) -> usize {
    log.lines()
        .filter(|l| {
            l.contains("database is locked")
                || l.contains("failed to commit")
                || l.contains("store write failed")
                || l.contains("storage error")
                || l.contains("cannot record")
        })
        .count()
}

/// A process's resident memory in MiB and its thread count.
pub fn memory(pid: u32) -> (f64, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| -> f64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0)
    };
    (field("VmRSS:") / 1024.0, field("Threads:") as usize)
}

/// The `p`th percentile of sorted microseconds, in milliseconds.
pub fn percentile_ms(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

/// The share of sorted microseconds at or under `limit_ms`.
pub fn share_within(sorted: &[u32], limit_ms: u32) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let within = sorted.partition_point(|&us| us <= limit_ms.saturating_mul(1000));
    within as f64 / sorted.len() as f64
}

/// CPU seconds (user and system) a process has used, with those of its
/// children now running (a PostgreSQL server's backends) when `children`.
pub fn cpu_seconds(pid: u32, children: bool) -> f64 {
    let ticks = |pid: u32| -> Option<(u64, u32)> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command name, which is in parentheses.
        let rest = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let parent = f.get(1)?.parse().ok()?;
        let used = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
        Some((used, parent))
    };
    let mut total = ticks(pid).map_or(0, |(t, _)| t);
    if children {
        let procs = std::fs::read_dir("/proc").into_iter().flatten().flatten();
        for p in procs {
            let Some(child) = p.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue;
            };
            if let Some((t, parent)) = ticks(child) {
                if parent == pid {
                    total += t;
                }
            }
        }
    }
    // The kernel counts in clock ticks of 1/100 s on Linux.
    total as f64 / 100.0
}
