//! `tutela-collector backup` and `restore` on PostgreSQL: a collector
//! serving from PostgreSQL stores an enrolled agent's events (with
//! captures) and audited console changes; a backup made while it serves is
//! encrypted, holds the dump and the keys, and restores into a new, empty
//! database with the same rows, whose collector shows the same alerts and
//! decrypts the same captures. A restore into a database that holds data,
//! or without saying which database, is refused and leaves nothing behind.
//! Scheduled backups run once per slot across collectors, and the claims
//! of slots older than the kept backups are deleted.

mod common;

use std::path::Path;

use common::send;
use tutela_tests::postgres::PgCluster;
use tutela_tests::{run_failing, run_ok, Agent, Collector, Scratch};

/// Tables compared between the live and the restored database.
const TABLES: &[&str] = &[
    "agents",
    "tokens",
    "alerts",
    "captures",
    "console_audit",
    "console_users",
    "gaps",
];

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Each table's rows, and every row's content hashed, in database `db`.
fn fingerprint(pg: &PgCluster, db: &str) -> Vec<String> {
    TABLES
        .iter()
        .map(|t| {
            pg.query_in(
                db,
                &format!("SELECT '{t}:' || count(*) || ':' || COALESCE(md5(string_agg(x::text, ',' ORDER BY x::text)), '') FROM {t} x"),
            )
            .unwrap()
        })
        .collect()
}

#[test]
fn a_postgresql_store_backed_up_while_serving_restores_into_a_new_database_with_the_same_data() {
    let pg = PgCluster::start().unwrap();
    let live = pg.database("school").unwrap();
    let fresh = pg.database("restored").unwrap();
    let scratch = Scratch::new("backup-postgres");
    let mut collector = Collector::init(scratch.path("collector")).unwrap();
    collector
        .set_section("storage", &format!("url = \"{live}\""))
        .unwrap();
    collector.start().unwrap();
    collector
        .add_console_user("dsl1", "dsl", "correct horse battery staple")
        .unwrap();
    let agent = Agent::new(scratch.path("pc07"));
    agent
        .enrol(&collector.token(&["--group", "lab-1"]).unwrap())
        .unwrap();
    let contexts = [
        "how to make a pipe bomb",
        "pipe bomb instructions",
        "is a pipe bomb legal",
    ];
    let shots = send(&agent.dir, &contexts);
    let alerts = collector.alerts().unwrap();
    assert_eq!(alerts.len(), 3, "{alerts:?}");

    // Backed up while the collector serves, encrypted.
    let passphrase = scratch.path("passphrase");
    std::fs::write(&passphrase, "a long enough backup passphrase\n").unwrap();
    let dest = scratch.path("backup");
    let made = run_ok(
        collector
            .cmd()
            .arg("backup")
            .arg(&dest)
            .arg("--passphrase-file")
            .arg(&passphrase),
    )
    .unwrap();
    assert!(made.contains("backup of 3 alerts and 3 captures"), "{made}");
    assert!(made.contains("1 agents' event chains (3 events)"), "{made}");
    let manifest = std::fs::read_to_string(dest.join("backup.toml")).unwrap();
    assert!(manifest.contains("store = \"postgres\""), "{manifest}");
    let key = std::fs::read(collector.dir.join("capture.key")).unwrap();
    for entry in std::fs::read_dir(&dest).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "backup.toml" {
            continue;
        }
        assert!(name.ends_with(".enc"), "{name} stored in the clear");
        let bytes = std::fs::read(entry.path()).unwrap();
        assert!(!bytes.starts_with(b"SQLite format 3"), "{name}");
        assert!(
            !bytes.windows(key.len()).any(|w| w == key.as_slice()),
            "{name} holds the capture key"
        );
    }

    // Without a target database, or into one that holds data, nothing is restored.
    let restored = scratch.path("restored");
    let out = run_failing(
        std::process::Command::new(tutela_tests::bin("tutela-collector"))
            .arg("--data-dir")
            .arg(&restored)
            .args(["restore", "--passphrase-file"])
            .arg(&passphrase)
            .arg(&dest),
    );
    assert!(text(&out).contains("--to postgres://"), "{}", text(&out));
    let out = run_failing(
        std::process::Command::new(tutela_tests::bin("tutela-collector"))
            .arg("--data-dir")
            .arg(&restored)
            .args(["restore", "--to", &live, "--passphrase-file"])
            .arg(&passphrase)
            .arg(&dest),
    );
    assert!(text(&out).contains("already holds data"), "{}", text(&out));
    assert!(!restored.exists(), "a refused restore leaves no directory");

    // Into the new database: the same rows, checked.
    let out = run_ok(
        std::process::Command::new(tutela_tests::bin("tutela-collector"))
            .arg("--data-dir")
            .arg(&restored)
            .args(["restore", "--to", &fresh, "--passphrase-file"])
            .arg(&passphrase)
            .arg(&dest),
    )
    .unwrap();
    assert!(out.contains("1 agents' event chains (3 events)"), "{out}");
    assert!(out.contains("restored 3 alerts and 3 captures"), "{out}");
    assert!(
        !restored.join("postgres.db").exists(),
        "no plain dump is left"
    );
    assert_eq!(fingerprint(&pg, "restored"), fingerprint(&pg, "school"));

    // A collector on the restored database shows the same alerts and
    // decrypts the same captures with the restored key.
    collector.kill9();
    let mut back = Collector {
        dir: restored.clone(),
        port: collector.port,
        child: None,
        log: restored.with_extension("log"),
    };
    back.set_section("storage", &format!("url = \"{fresh}\""))
        .unwrap();
    back.start().unwrap();
    assert_eq!(back.alerts().unwrap(), alerts);
    for (alert, shot) in alerts.iter().zip(&shots) {
        let id = alert["id"].as_i64().unwrap();
        assert_eq!(
            &back
                .capture(id, &scratch.path(&format!("shot-{id}.jpg")))
                .unwrap(),
            shot
        );
    }
    // New alerts continue the ids after the restored ones.
    let next: i64 = pg
        .query_in(
            "restored",
            "SELECT nextval(pg_get_serial_sequence('alerts', 'id'))",
        )
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        next > alerts.last().unwrap()["id"].as_i64().unwrap(),
        "{next}"
    );
}

/// The slot directories of scheduled backups in `dir` that are complete.
fn slots(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| e.path().join("backup.toml").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn two_collectors_with_a_schedule_make_one_backup_per_slot() {
    let pg = PgCluster::start().unwrap();
    let url = pg.database("school").unwrap();
    let scratch = Scratch::new("backup-schedule");
    let passphrase = scratch.path("passphrase");
    std::fs::write(&passphrase, "a long enough backup passphrase\n").unwrap();
    let nodes: Vec<Collector> = ["a", "b"]
        .iter()
        .map(|name| {
            let mut c = Collector::init(scratch.path(name)).unwrap();
            c.set_section("storage", &format!("url = \"{url}\"\nlease_secs = 3"))
                .unwrap();
            c.set_section("console", "enabled = false").unwrap();
            c.set_section(
                "backup",
                &format!(
                    "passphrase_file = {:?}\ndir = {:?}\nevery = \"3s\"\nkeep = 100",
                    passphrase.to_str().unwrap(),
                    scratch.path(&format!("{name}-backups")).to_str().unwrap()
                ),
            )
            .unwrap();
            c.start().unwrap();
            c
        })
        .collect();
    let dirs = [scratch.path("a-backups"), scratch.path("b-backups")];
    tutela_tests::wait_for(
        "four slots backed up",
        std::time::Duration::from_secs(90),
        || dirs.iter().map(|d| slots(d).len()).sum::<usize>() >= 4,
    )
    .unwrap_or_else(|e| {
        panic!(
            "{e}\n{}",
            nodes
                .iter()
                .map(|n| n.log_text())
                .collect::<Vec<_>>()
                .join("\n----\n")
        )
    });
    drop(nodes);
    let (a, b) = (slots(&dirs[0]), slots(&dirs[1]));
    let both: Vec<&String> = a.iter().filter(|s| b.contains(s)).collect();
    assert!(
        both.is_empty(),
        "slots backed up twice: {both:?} (a: {a:?}, b: {b:?})"
    );
    let all: std::collections::BTreeSet<&String> = a.iter().chain(&b).collect();
    assert!(all.len() >= 4, "{all:?}");
    // Each is a complete PostgreSQL backup.
    for slot in &a {
        let manifest = std::fs::read_to_string(dirs[0].join(slot).join("backup.toml")).unwrap();
        assert!(manifest.contains("store = \"postgres\""), "{manifest}");
        assert!(manifest.contains("mac = "), "encrypted: {manifest}");
    }
}

/// The slots named in the log's "scheduled backup written" lines, in order.
fn written_slots(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("scheduled backup written"))
        .filter_map(|l| {
            l.split(|c: char| !c.is_ascii_alphanumeric())
                .find(|w| {
                    w.len() == 16
                        && w.ends_with('Z')
                        && w.as_bytes()[8] == b'T'
                        && w[..8].bytes().all(|b| b.is_ascii_digit())
                })
                .map(str::to_owned)
        })
        .collect()
}

#[test]
fn a_schedule_deletes_the_claims_of_slots_older_than_the_kept_backups() {
    let pg = PgCluster::start().unwrap();
    let url = pg.database("school").unwrap();
    let scratch = Scratch::new("backup-claims");
    let passphrase = scratch.path("passphrase");
    std::fs::write(&passphrase, "a long enough backup passphrase\n").unwrap();
    let backups = scratch.path("backups");
    let mut c = Collector::init(scratch.path("node")).unwrap();
    c.set_section("storage", &format!("url = \"{url}\"\nlease_secs = 3"))
        .unwrap();
    c.set_section("console", "enabled = false").unwrap();
    c.set_section(
        "backup",
        &format!(
            "passphrase_file = {:?}\ndir = {:?}\nevery = \"2s\"\nkeep = 2",
            passphrase.to_str().unwrap(),
            backups.to_str().unwrap()
        ),
    )
    .unwrap();
    c.start().unwrap();
    tutela_tests::wait_for(
        "six slots backed up",
        std::time::Duration::from_secs(120),
        || written_slots(&c.log_text()).len() >= 6,
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", c.log_text()));
    let written = written_slots(&c.log_text());
    let claims: Vec<String> = pg
        .query_in(
            "school",
            "SELECT substr(name, 13) FROM leases WHERE name LIKE 'backup-slot:%' ORDER BY name",
        )
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    drop(c);
    // The slot before the last one written has finished, its clean-up too:
    // no claim of a slot more than two slots (keep = 2) before it is left.
    // Slots written are at least a slot apart, so every one written but the
    // last four is that old.
    let n = written.len();
    for old in &written[..n - 4] {
        assert!(
            !claims.contains(old),
            "the claim of {old} is left: {claims:?} (written: {written:?})"
        );
    }
    // The recent slots' claims stay, so no collector backs them up again.
    assert!(
        claims.contains(&written[n - 2]),
        "{claims:?} (written: {written:?})"
    );
    assert!(claims.len() <= 5, "{claims:?}");
    // And the kept backups are the newest two.
    assert_eq!(slots(&backups).len(), 2, "{:?}", slots(&backups));
}
