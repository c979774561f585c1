//! `tutela-collector backup` and `restore` timed on this machine, for a
//! store of EVENTS alerts each with a capture: PostgreSQL (one snapshot
//! dumped into the archive; restore into a new database, with checks)
//! beside SQLite (the online backup API; restore of the file). Both
//! encrypted with a passphrase (Argon2id 64 MiB, AES-256-GCM).
//!
//! `cargo bench -p tutela-tests --bench backup_postgres -- [EVENTS]`
//! (default 2000). Needs PostgreSQL installed (a throwaway cluster is
//! started on loopback).

use std::path::Path;
use std::process::Command;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tutela_agent::event::{seal, EventDraft, Evidence};
use tutela_agent::identity::{Enrolment, Identity};
use tutela_proto::v1::{Observation, RuleMatch, Source};
use tutela_tests::postgres::PgCluster;
use tutela_tests::{bin, run_ok, Agent, Collector, Scratch};

/// A synthetic 320x200 screenshot with some detail (about the size of a
/// small real one once compressed).
fn jpeg() -> Vec<u8> {
    let img = image::RgbImage::from_fn(320, 200, |x, y| {
        let v = (x * 7 + y * 13 + (x * y) % 31) as u8;
        image::Rgb([v, v.wrapping_mul(3), v ^ 0x5a])
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 70)
        .encode_image(&img)
        .unwrap();
    out
}

/// Streams `n` alerts with captures from the agent enrolled in `dir`.
fn fill(dir: &Path, n: u64) {
    let enrolment = Enrolment::load(dir).unwrap();
    let identity = Identity::load_or_create(dir).unwrap();
    let shot = jpeg();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut prev = [0u8; 32];
    let mut events = Vec::new();
    for seq in 1..=n {
        let context = format!("message {seq}: how to make a pipe bomb");
        let start = context.find("pipe bomb").unwrap() as u32;
        let sealed = seal(
            &identity,
            &enrolment.agent_id,
            seq,
            prev,
            0,
            EventDraft {
                time_ms: now - 60_000 + seq as i64,
                user: format!("pupil.{}", seq % 40),
                station: "LAB1-PC07".into(),
                observation: Observation {
                    source: Source::Typed as i32,
                    context,
                    app: "chromium".into(),
                    ..Default::default()
                },
                matches: vec![RuleMatch {
                    rule_id: "weapons/seed".into(),
                    category: "weapons".into(),
                    severity: 3,
                    term: "pipe bomb".into(),
                    start,
                    end: start + 9,
                }],
                evidence: Some(Evidence {
                    jpeg: shot.clone(),
                    width: 320,
                    height: 200,
                }),
                rules_version: 1,
                count: 1,
                event_id: None,
                repeat_of: String::new(),
            },
        );
        prev = sealed.body_hash();
        events.push(sealed.to_wire());
    }
    tutela_tests::ingest::stream_stored(&enrolment, events, n);
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

/// A serving collector in `scratch/name` on `url` (empty: SQLite), holding `n` alerts.
fn collector(scratch: &Scratch, name: &str, url: &str, n: u64) -> Collector {
    let mut c = Collector::init(scratch.path(name)).unwrap();
    if !url.is_empty() {
        c.set_section("storage", &format!("url = \"{url}\""))
            .unwrap();
    }
    c.set_section("console", "enabled = false").unwrap();
    c.start().unwrap();
    let agent = Agent::new(scratch.path(&format!("{name}-agent")));
    agent.enrol(&c.token(&[]).unwrap()).unwrap();
    fill(&agent.dir, n);
    c
}

fn timed(cmd: &mut Command) -> f64 {
    let start = Instant::now();
    run_ok(cmd).unwrap();
    start.elapsed().as_secs_f64()
}

fn main() {
    let events: u64 = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(2000);
    let scratch = Scratch::new("bench-backup");
    let passphrase = scratch.path("passphrase");
    std::fs::write(&passphrase, "a long enough backup passphrase\n").unwrap();
    let pg = PgCluster::start().unwrap();
    let live = pg.database("school").unwrap();
    let fresh = pg.database("restored").unwrap();
    println!("{events} alerts, each with a {} byte capture", jpeg().len());
    for (name, url) in [("sqlite", String::new()), ("postgres", live)] {
        let c = collector(&scratch, name, &url, events);
        let dest = scratch.path(&format!("{name}-backup"));
        let backup = timed(
            c.cmd()
                .arg("backup")
                .arg(&dest)
                .arg("--passphrase-file")
                .arg(&passphrase),
        );
        let mut restore = Command::new(bin("tutela-collector"));
        restore
            .arg("--data-dir")
            .arg(scratch.path(&format!("{name}-restored")))
            .args(["restore", "--passphrase-file"])
            .arg(&passphrase);
        if !url.is_empty() {
            restore.args(["--to", &fresh]);
        }
        let restored = timed(restore.arg(&dest));
        println!(
            "{name:>8}: backup while serving {backup:.2} s, restore {restored:.2} s, archive {:.1} MB",
            dir_bytes(&dest) as f64 / 1e6
        );
    }
}
