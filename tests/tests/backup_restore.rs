//! Backup and restore: an encrypted backup of a live collector restored into
//! a working one, and the restores that must be refused.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tutela_tests::{bin, free_port, run_ok, wait_for, Agent, Collector, Scratch};

#[test]
fn backup_of_a_live_collector_restores_to_a_working_collector() {
    let scratch = Scratch::new("backup");
    let mut collector = Collector::init(scratch.path("collector")).unwrap();
    collector
        .set_console_port(free_port())
        .expect("console port set");
    collector.start().unwrap();
    let mut agent = Agent::new(scratch.path("agent"));
    agent.enrol(&collector.token(&[]).unwrap()).unwrap();
    let total = 3000;
    agent
        .start(&["--simulate", &total.to_string(), "--simulate-rate", "200"])
        .unwrap();
    wait_for("the first stored events", Duration::from_secs(60), || {
        collector.alert_count() >= 300
    })
    .unwrap();

    // Back up while the agent streams and the writer commits, encrypted with
    // a passphrase file kept elsewhere.
    let passphrase = scratch.path("backup.passphrase");
    std::fs::write(
        &passphrase,
        "kept in the head teacher's safe, not on the server\n",
    )
    .unwrap();
    let dest = scratch.path("backup");
    let refused = tutela_tests::run_failing(collector.cmd().arg("backup").arg(&dest));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--unencrypted"),
        "a backup without a passphrase must be refused: {}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let out = run_ok(
        collector
            .cmd()
            .arg("backup")
            .arg("--passphrase-file")
            .arg(&passphrase)
            .arg(&dest),
    )
    .unwrap();
    let backed_up: usize = out
        .strip_prefix("backup of ")
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected backup output: {out}"));
    assert!(out.contains("(integrity ok), encrypted"), "{out}");
    let leftovers: Vec<_> = std::fs::read_dir(&collector.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".partial"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "clear copies left behind: {leftovers:?}"
    );
    assert!(
        (300..total).contains(&backed_up),
        "the backup should catch the collector mid-stream: {backed_up} of {total}"
    );
    for f in [
        "tutela.db.enc",
        "collector.toml.enc",
        "collector.crt.enc",
        "collector.key.enc",
        "signing.key.enc",
        "capture.key.enc",
        "backup.toml",
    ] {
        let m = std::fs::metadata(dest.join(f)).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o600, "{f}");
    }
    assert_eq!(
        std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777,
        0o700
    );
    wait_for("every event stored", Duration::from_secs(120), || {
        collector.alert_count() == total
    })
    .unwrap();

    // Without the passphrase (or with another) the backup cannot be restored.
    let restored_dir = scratch.path("restored");
    let refused = tutela_tests::run_failing(
        Command::new(bin("tutela-collector"))
            .arg("--data-dir")
            .arg(&restored_dir)
            .arg("restore")
            .arg(&dest),
    );
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("is encrypted"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let wrong = scratch.path("wrong.passphrase");
    std::fs::write(&wrong, "a guess that is long enough to try").unwrap();
    let refused = tutela_tests::run_failing(
        Command::new(bin("tutela-collector"))
            .arg("--data-dir")
            .arg(&restored_dir)
            .arg("restore")
            .arg("--passphrase-file")
            .arg(&wrong)
            .arg(&dest),
    );
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("wrong passphrase file"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(
        !restored_dir.exists(),
        "a failed restore leaves nothing behind"
    );
    // A target holding a stale -wal from an earlier collector is refused, untouched.
    std::fs::create_dir_all(&restored_dir).unwrap();
    std::fs::write(restored_dir.join("tutela.db-wal"), b"stale").unwrap();
    assert_restore_refused(&restored_dir, &passphrase, &dest);
    assert_eq!(
        std::fs::read(restored_dir.join("tutela.db-wal")).unwrap(),
        b"stale"
    );
    std::fs::remove_dir_all(&restored_dir).unwrap();

    // Restore into a new directory: the copy is one consistent snapshot.
    let out = run_ok(
        Command::new(bin("tutela-collector"))
            .arg("--data-dir")
            .arg(&restored_dir)
            .arg("restore")
            .arg("--passphrase-file")
            .arg(&passphrase)
            .arg(&dest),
    )
    .unwrap();
    assert!(
        out.contains(&format!("restored {backed_up} alerts")),
        "{out}"
    );
    let mut restored = Collector {
        dir: restored_dir.clone(),
        port: free_port(),
        child: None,
        log: scratch.path("restored.log"),
    };
    let alerts = restored.alerts().unwrap();
    assert_eq!(alerts.len(), backed_up);
    let seqs: Vec<i64> = alerts.iter().map(|a| a["seq"].as_i64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=backed_up as i64).collect::<Vec<_>>(),
        "a restored prefix of the stream, no holes"
    );
    // Same certificate and keys: enrolled agents keep trusting it.
    for f in ["collector.crt", "signing.key", "capture.key"] {
        assert_eq!(
            std::fs::read(collector.dir.join(f)).unwrap(),
            std::fs::read(restored_dir.join(f)).unwrap(),
            "{f}"
        );
    }
    // It serves: stop the original and start the restored one in its place.
    collector.kill9();
    restored.set_console_port(free_port()).unwrap();
    let config = std::fs::read_to_string(restored_dir.join("collector.toml")).unwrap();
    assert!(config.contains(&format!("127.0.0.1:{}", collector.port)));
    restored.start().unwrap();
    let status = run_ok(restored.cmd().args(["agents", "list"])).unwrap();
    assert!(status.contains(&agent.agent_id()), "{status}");
    // Restoring over an existing collector is refused.
    assert_restore_refused(&restored_dir, &passphrase, &dest);
}

/// Restoring backup `dest` into `restored_dir` fails: it already holds a collector.
fn assert_restore_refused(restored_dir: &Path, passphrase: &Path, dest: &Path) {
    let refused = tutela_tests::run_failing(
        Command::new(bin("tutela-collector"))
            .arg("--data-dir")
            .arg(restored_dir)
            .arg("restore")
            .arg("--passphrase-file")
            .arg(passphrase)
            .arg(dest),
    );
    assert!(String::from_utf8_lossy(&refused.stderr).contains("already holds a collector"));
}
