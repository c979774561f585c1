//! Failure handling around email, backups and stopping, with the real
//! collector: a mail server refusing the sender (not a recipient) keeps
//! emails queued; a restore given a passphrase refuses a downgraded or
//! altered backup; a stop with agents connected ends within the service
//! unit's stop timeout.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tutela_tests::{free_port, run_failing, run_ok, wait_for, Agent, Collector, Scratch, SmtpSink};

/// `[mail]` for the sink on `port`: the DSL and a deputy, fast retries.
fn mail_section(port: u16) -> String {
    format!(
        "host = \"127.0.0.1\"\nport = {port}\nsecurity = \"none\"\nfrom = \"Tutela <tutela@school.test>\"\n\
         console_url = \"https://console.school.test\"\nurgent_interval_secs = 2\nretry_initial_secs = 1\nretry_max_secs = 2\n\
         \n[[mail.recipients]]\naddress = \"dsl@school.test\"\nroles = [\"dsl\"]\n\
         \n[[mail.recipients]]\naddress = \"deputy@school.test\"\nroles = [\"deputy-dsl\"]\n"
    )
}

fn configure_mail(c: &Collector, port: u16) {
    c.set_section("console", "enabled = false\ntime_zone = \"Europe/London\"")
        .unwrap();
    c.set_section("mail", &mail_section(port)).unwrap();
    c.set_section(
        "summary",
        "enabled = true\nday = \"monday\"\ntime = \"08:00\"\nroles = [\"dsl\", \"deputy-dsl\"]\ncheck_secs = 3600",
    )
    .unwrap();
}

fn count(db: &Path, sql: &str) -> i64 {
    let conn = Connection::open(db).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

#[test]
fn a_refused_sender_keeps_emails_queued_until_the_server_accepts_it() {
    let scratch = Scratch::new("mail-sender-refused");
    let mut c = Collector::init(scratch.path("collector")).unwrap();
    let port = free_port();
    configure_mail(&c, port);
    // The server refuses the sender (553 at MAIL FROM) while this file exists,
    // and refuses the DSL's mailbox (550 at RCPT TO) always.
    let refuse = scratch.path("refuse-sender");
    std::fs::write(&refuse, b"").unwrap();
    let sink = SmtpSink::start_with(
        port,
        scratch.path("mail"),
        &[
            "--refuse-sender-while",
            refuse.to_str().unwrap(),
            "--reject",
            "dsl@school.test",
        ],
    )
    .unwrap();
    let db = c.dir.join("tutela.db");

    let out = run_failing(
        c.cmd()
            .args(["summary", "--send-now", "--week", "2025-06-02"]),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("0 sent, 2 not sent yet, 0 refused by the server"),
        "{stdout}{stderr}"
    );
    // Logged as an error, with the server's reply.
    assert!(stderr.contains("ERROR"), "{stderr}");
    assert!(
        stderr.contains("553") && stderr.contains("Sender address rejected"),
        "{stderr}"
    );
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM mail_outbox WHERE failed_ms IS NOT NULL"
        ),
        0,
        "a refused sender is not a refused recipient"
    );
    let status = run_ok(c.cmd().args(["summary", "--status"])).unwrap();
    assert!(!status.contains("FAILED"), "{status}");
    assert!(status.contains("NOT SENT after 1 attempts"), "{status}");
    assert_eq!(sink.messages().len(), 0);

    // The server is fixed: the running collector sends what waited; the
    // DSL's mailbox is still refused, that one email alone fails for good.
    std::fs::remove_file(&refuse).unwrap();
    c.start().unwrap();
    let messages = sink.wait_for(1, Duration::from_secs(30)).unwrap();
    assert_eq!(messages[0].0, ["deputy@school.test"]);
    wait_for("the DSL's email refused", Duration::from_secs(30), || {
        count(
            &db,
            "SELECT COUNT(*) FROM mail_outbox WHERE failed_ms IS NOT NULL AND recipient = 'dsl@school.test'",
        ) == 1
    })
    .unwrap();
    let status = run_ok(c.cmd().args(["summary", "--status"])).unwrap();
    let failed: Vec<&str> = status.lines().filter(|l| l.contains("FAILED")).collect();
    assert_eq!(failed.len(), 1, "{status}");
    assert!(failed[0].contains("550"), "{status}");

    // `--retry-failed` queues it again; the server refuses it again.
    let out = run_ok(c.cmd().args(["summary", "--retry-failed"])).unwrap();
    assert!(out.contains("1 refused emails queued again"), "{out}");
    wait_for(
        "the retried email refused again",
        Duration::from_secs(30),
        || c.log_text().matches("recipient refused for good").count() >= 2,
    )
    .unwrap();
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM mail_outbox WHERE failed_ms IS NOT NULL AND last_error LIKE 'queued again after: %'"
        ),
        0,
        "the retry records the new refusal"
    );
    assert_eq!(sink.messages().len(), 1);
}

/// Rewrites one `key = value` line of a backup manifest.
fn edit_manifest(dir: &Path, key: &str, value: &str) {
    let path = dir.join("backup.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut found = false;
    let edited: Vec<String> = text
        .lines()
        .map(|l| {
            if l.starts_with(&format!("{key} = ")) {
                found = true;
                format!("{key} = {value}")
            } else {
                l.to_owned()
            }
        })
        .collect();
    assert!(found, "{key} in {text}");
    std::fs::write(&path, edited.join("\n") + "\n").unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[test]
fn a_restore_with_a_passphrase_refuses_a_downgraded_or_altered_backup() {
    let scratch = Scratch::new("backup-downgrade");
    let c = Collector::init(scratch.path("collector")).unwrap();
    let passphrase = scratch.path("backup.passphrase");
    std::fs::write(&passphrase, "kept in the head teacher's safe, not here\n").unwrap();
    let backup = scratch.path("backup");
    run_ok(
        c.cmd()
            .arg("backup")
            .arg("--passphrase-file")
            .arg(&passphrase)
            .arg(&backup),
    )
    .unwrap();
    let manifest = std::fs::read_to_string(backup.join("backup.toml")).unwrap();
    assert!(manifest.contains("mac = "), "{manifest}");

    let restore = |src: &Path, into: &str| {
        let mut cmd = Command::new(tutela_tests::bin("tutela-collector"));
        cmd.arg("--data-dir")
            .arg(scratch.path(into))
            .arg("restore")
            .arg("--passphrase-file")
            .arg(&passphrase)
            .arg(src);
        cmd
    };
    let refused = |src: &Path, into: &str, expected: &str| {
        let started = Instant::now();
        let out = run_failing(&mut restore(src, into));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "expected {expected:?}: {stderr}");
        assert!(!scratch.path(into).exists(), "nothing restored");
        started.elapsed()
    };

    // Someone replaces the backup with their own unencrypted one (their
    // secrets, their database): with the passphrase given, it is refused.
    let other = Collector::init(scratch.path("other")).unwrap();
    let swapped = scratch.path("swapped");
    run_ok(other.cmd().arg("backup").arg("--unencrypted").arg(&swapped)).unwrap();
    refused(
        &swapped,
        "from-swapped",
        "is not encrypted, but a passphrase file was given",
    );

    // An altered manifest (checksums recomputed or counts changed) fails its MAC.
    let altered = scratch.path("altered");
    copy_dir(&backup, &altered);
    edit_manifest(&altered, "alerts", "999");
    refused(&altered, "from-altered", "does not match the passphrase");
    // A manifest with its MAC removed is refused the same way.
    let stripped = scratch.path("stripped");
    copy_dir(&backup, &stripped);
    let text = std::fs::read_to_string(stripped.join("backup.toml")).unwrap();
    let text: String = text
        .lines()
        .filter(|l| !l.starts_with("mac = "))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(stripped.join("backup.toml"), text).unwrap();
    refused(&stripped, "from-stripped", "does not match the passphrase");

    // Argon2 asking for 4 TiB of memory is refused before any is taken.
    let greedy = scratch.path("greedy");
    copy_dir(&backup, &greedy);
    edit_manifest(&greedy, "m_cost", "4294967295");
    let took = refused(&greedy, "from-greedy", "outside the accepted bounds");
    println!("the greedy manifest was refused after {took:?}");

    // The untouched backup restores.
    let out = run_ok(&mut restore(&backup, "restored")).unwrap();
    assert!(out.contains("restored 0 alerts"), "{out}");
    assert_eq!(
        std::fs::read(scratch.path("restored/capture.key")).unwrap(),
        std::fs::read(c.dir.join("capture.key")).unwrap()
    );
}

/// The signal and stop timeout of the packaged service unit.
fn unit_stop() -> (String, u64) {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../installer/debian/collector/tutela-collector.service"),
    )
    .unwrap();
    let value = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("{key} in the unit"))
            .trim()
            .to_owned()
    };
    (
        value("KillSignal").trim_start_matches("SIG").to_owned(),
        value("TimeoutStopSec").parse().unwrap(),
    )
}

#[test]
fn stopping_the_collector_with_an_agent_connected_ends_within_the_units_timeout() {
    let (signal, timeout_secs) = unit_stop();
    let scratch = Scratch::new("collector-stop");
    let mut c = Collector::init(scratch.path("collector")).unwrap();
    let port = free_port();
    let sink = SmtpSink::start(port, scratch.path("mail")).unwrap();
    configure_mail(&c, port);
    c.start().unwrap();
    let mut agent = Agent::new(scratch.path("agent"));
    agent.enrol(&c.token(&[]).unwrap()).unwrap();
    agent.start(&["--simulate", "3"]).unwrap();
    // The agent's ingest and rules streams are open once its alerts arrive.
    wait_for("the agent's alerts", Duration::from_secs(60), || {
        c.alert_count() == 3
    })
    .unwrap();
    std::thread::sleep(Duration::from_secs(2));

    let mut child = c.child.take().unwrap();
    let started = Instant::now();
    run_ok(Command::new("kill").args(["-s", &signal, &child.id().to_string()])).unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(timeout_secs + 10) {
            let _ = child.kill();
            panic!("the collector did not stop:\n{}", c.log_text());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let took = started.elapsed();
    println!("the collector stopped {took:?} after SIG{signal}");
    assert!(status.success(), "{status:?}\n{}", c.log_text());
    // Within the unit's stop timeout with room to spare (it would be killed
    // at {timeout_secs} s, before the mail tasks finish).
    assert!(
        took < Duration::from_secs(timeout_secs / 2),
        "took {took:?}\n{}",
        c.log_text()
    );
    assert!(
        c.log_text().contains("collector stopped"),
        "{}",
        c.log_text()
    );
    drop(sink);
}

#[test]
fn a_collector_whose_mail_tables_cannot_be_written_refuses_to_start() {
    let scratch = Scratch::new("mail-db-broken");
    let mut c = Collector::init(scratch.path("collector")).unwrap();
    let port = free_port();
    configure_mail(&c, port);
    // A damaged database: the mail cursor table is a read-only view.
    let db = c.dir.join("tutela.db");
    let conn = Connection::open(&db).unwrap();
    conn.execute_batch("CREATE VIEW mail_cursor AS SELECT 'x' AS name, 0 AS value")
        .unwrap();
    let err = c.start().expect_err("mail cannot start").to_string();
    assert!(
        err.contains("urgent notification cursor cannot be set"),
        "{err}"
    );
    assert!(err.contains("then start the collector again"), "{err}");
    // Repaired, it starts and sends urgent notifications again.
    conn.execute_batch("DROP VIEW mail_cursor").unwrap();
    c.start().unwrap();
}
