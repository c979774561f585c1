//! Packaging and operations: the .deb packages built from the real binaries
//! and installed into a scratch root (files, owners, modes, units verified by
//! systemd-analyze, upgrade keeps the identity, purge removes it), a backup
//! of a live collector restored into a working one, and the retention purge.

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rusqlite::{params, Connection};
use tutela_tests::{
    bin, free_port, require_programs, run_ok, wait_for, workspace, Agent, Collector, Scratch,
};

const DAY_MS: i64 = 86_400_000;

fn is_root() -> bool {
    run_ok(Command::new("id").arg("-u"))
        .map(|s| s.trim() == "0")
        .unwrap_or(false)
}

/// Builds both packages from the binaries the tests run.
fn build_debs(out: &Path) -> (PathBuf, PathBuf) {
    let bin_dir = bin("tutela-agent").parent().unwrap().to_owned();
    let listed = run_ok(
        Command::new("sh")
            .arg(workspace().join("installer/build-deb.sh"))
            .arg("--bin-dir")
            .arg(&bin_dir)
            .arg("--out")
            .arg(out)
            .args(["--compress", "none"]),
    )
    .unwrap();
    let debs: Vec<PathBuf> = listed.lines().map(PathBuf::from).collect();
    assert_eq!(debs.len(), 2, "{listed}");
    let agent = debs
        .iter()
        .find(|p| p.to_string_lossy().contains("tutela-agent_"));
    let collector = debs
        .iter()
        .find(|p| p.to_string_lossy().contains("tutela-collector_"));
    (agent.unwrap().clone(), collector.unwrap().clone())
}

/// dpkg acting on the scratch root, maintainer scripts run outside a chroot
/// with DPKG_ROOT set (the scripts honour it).
fn dpkg(root: &Path) -> Command {
    let mut c = Command::new("dpkg");
    c.arg(format!("--instdir={}", root.display()))
        .arg(format!(
            "--admindir={}",
            root.join("var/lib/dpkg").display()
        ))
        .args([
            "--force-script-chrootless",
            "--force-depends",
            "--log=/dev/null",
        ]);
    c
}

fn scratch_root(root: &Path) {
    for dir in ["var/lib/dpkg/updates", "var/lib/dpkg/info", "etc"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    std::fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
}

/// (mode bits, uid, gid) of a path inside the root.
fn meta(root: &Path, rel: &str) -> (u32, u32, u32) {
    let m = std::fs::metadata(root.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    (m.permissions().mode() & 0o7777, m.uid(), m.gid())
}

/// uid and gid of an account in the root's /etc/passwd.
fn account(root: &Path, name: &str) -> (u32, u32, String) {
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f[0] == name).then(|| {
                (
                    f[2].parse().unwrap(),
                    f[3].parse().unwrap(),
                    f[6].to_owned(),
                )
            })
        })
        .unwrap_or_else(|| panic!("no {name} account in the scratch root:\n{passwd}"))
}

/// The overall exposure level `systemd-analyze security` gives `unit` in
/// `root` (0 is fully locked down, 10 is none), and the report it came from.
fn unit_exposure(root: &Path, unit: &str) -> (f64, String) {
    let security = Command::new("systemd-analyze")
        .arg("security")
        .arg(format!("--root={}", root.display()))
        .arg("--offline=yes")
        .arg(unit)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&security.stdout).into_owned();
    let exposure: f64 = report
        .lines()
        .find_map(|l| l.split(&format!("{unit}: ")).nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{report}"));
    (exposure, report)
}

#[test]
fn debs_install_into_a_scratch_root_with_owners_modes_and_valid_units() {
    require_programs(&[
        "dpkg",
        "dpkg-deb",
        "systemd-sysusers",
        "systemd-tmpfiles",
        "systemd-analyze",
    ]);
    assert!(
        is_root(),
        "installing packages into a scratch root sets file owners: run the tests as root (CI does)"
    );
    let scratch = Scratch::new("debs");
    let (agent_deb, collector_deb) = build_debs(&scratch.path("debs"));
    let root = scratch.path("root");
    scratch_root(&root);
    let out = run_ok(dpkg(&root).arg("-i").arg(&collector_deb).arg(&agent_deb)).unwrap();
    assert!(
        out.contains("initialised /var/lib/tutela-collector"),
        "{out}"
    );
    assert!(out.contains("tutela-agent: not enrolled yet"), "{out}");

    // Files, owners and modes.
    let (uid, gid, shell) = account(&root, "tutela");
    assert_ne!(uid, 0, "the collector runs under its own account");
    assert_eq!(shell, "/usr/sbin/nologin");
    for (rel, want) in [
        ("usr/bin/tutela-agent", (0o755, 0, 0)),
        ("usr/bin/tutela-collector", (0o755, 0, 0)),
        ("usr/lib/tutela-agent/tutela-agent-session", (0o755, 0, 0)),
        ("usr/lib/tutela-collector/backup-nightly", (0o755, 0, 0)),
        ("usr/lib/systemd/system/tutela-agent.service", (0o644, 0, 0)),
        (
            "usr/lib/systemd/system/tutela-collector.service",
            (0o644, 0, 0),
        ),
        (
            "usr/lib/systemd/system/tutela-collector-backup.service",
            (0o644, 0, 0),
        ),
        (
            "usr/lib/systemd/system/tutela-collector-backup.timer",
            (0o644, 0, 0),
        ),
        ("usr/lib/sysusers.d/tutela-collector.conf", (0o644, 0, 0)),
        ("usr/lib/tmpfiles.d/tutela-collector.conf", (0o644, 0, 0)),
        ("usr/lib/tmpfiles.d/tutela-agent.conf", (0o644, 0, 0)),
        // The pupil's account can neither read the agent's key and spool nor
        // reach them.
        ("var/lib/tutela-agent", (0o700, 0, 0)),
        // The 'Report a concern' address for the pupils' desktop entry: readable by all.
        ("var/lib/tutela-agent-public", (0o755, 0, 0)),
        (
            "usr/share/applications/tutela-concern.desktop",
            (0o644, 0, 0),
        ),
        ("var/lib/tutela-collector", (0o700, uid, gid)),
        ("var/backups/tutela-collector", (0o700, uid, gid)),
        // The backup passphrase: the backup job (tutela group) reads it, only
        // root changes it.
        ("etc/tutela-collector", (0o750, 0, gid)),
        ("etc/tutela-collector/backup.passphrase", (0o640, 0, gid)),
    ] {
        assert_eq!(meta(&root, rel), want, "{rel}: (mode, uid, gid)");
    }
    // `init` ran on first install, as the service account, owner-only.
    for file in [
        "collector.toml",
        "collector.crt",
        "collector.key",
        "signing.key",
        "capture.key",
        "tutela.db",
    ] {
        let rel = format!("var/lib/tutela-collector/{file}");
        assert_eq!(meta(&root, &rel), (0o600, uid, gid), "{rel}");
    }
    let passphrase = root.join("etc/tutela-collector/backup.passphrase");
    assert!(
        std::fs::read_to_string(&passphrase).unwrap().trim().len() >= 32,
        "a random passphrase"
    );
    assert!(out.contains("COPY IT SOMEWHERE SAFE"), "{out}");
    let config =
        std::fs::read_to_string(root.join("var/lib/tutela-collector/collector.toml")).unwrap();
    assert!(
        config.contains("passphrase_file = \"/etc/tutela-collector/backup.passphrase\""),
        "{config}"
    );

    // The units pass systemd-analyze verify against the scratch root (with
    // the host's systemd units beside them, as on a Debian system); any
    // warning (an unknown key, a missing ExecStart) fails the test.
    let units = root.join("usr/lib/systemd/system");
    for host_units in ["/lib/systemd/system", "/usr/lib/systemd/system"] {
        if Path::new(host_units).is_dir() {
            run_ok(
                Command::new("cp")
                    .arg("-rn")
                    .arg(format!("{host_units}/."))
                    .arg(&units),
            )
            .unwrap();
        }
    }
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .args([
            "tutela-agent.service",
            "tutela-collector.service",
            "tutela-collector-backup.service",
            "tutela-collector-backup.timer",
        ])
        .output()
        .unwrap();
    let complaints = String::from_utf8_lossy(&verify.stderr);
    assert!(
        verify.status.success() && complaints.trim().is_empty(),
        "systemd-analyze verify: {}\n{complaints}",
        verify.status
    );
    // The collector's sandbox scores "OK" or better (0 is fully locked down, 10 is none).
    let (exposure, report) = unit_exposure(&root, "tutela-collector.service");
    assert!(
        exposure <= 2.0,
        "the collector unit's exposure is {exposure}:\n{report}"
    );
    // The agent runs as root (it must read every pupil's files), but boxed in:
    // a bounded capability set, read-only system, no namespaces, W^X.
    let (exposure, report) = unit_exposure(&root, "tutela-agent.service");
    assert!(
        exposure <= 3.5,
        "the agent unit's exposure is {exposure}:\n{report}"
    );

    // The nightly backup job, run three times with two to keep: the newest two
    // stay, each a complete backup.
    let backups = root.join("var/backups/tutela-collector");
    for _ in 0..3 {
        run_ok(
            Command::new("sh")
                .arg(root.join("usr/lib/tutela-collector/backup-nightly"))
                .env(
                    "TUTELA_COLLECTOR_BIN",
                    root.join("usr/bin/tutela-collector"),
                )
                .env(
                    "TUTELA_COLLECTOR_DIR",
                    root.join("var/lib/tutela-collector"),
                )
                .env("TUTELA_BACKUP_DIR", &backups)
                .env("TUTELA_BACKUP_PASSPHRASE_FILE", &passphrase)
                .env("TUTELA_BACKUP_KEEP", "2"),
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(1100));
    }
    let kept: Vec<PathBuf> = std::fs::read_dir(&backups)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(kept.len(), 2, "{kept:?}");
    for dir in &kept {
        assert!(dir.join("backup.toml").is_file() && dir.join("tutela.db.enc").is_file());
        for clear in ["tutela.db", "capture.key", "signing.key", "collector.key"] {
            assert!(!dir.join(clear).exists(), "{clear} in the clear in {dir:?}");
        }
    }
    // A nightly backup restores with the passphrase, and only with it.
    let refused = tutela_tests::run_failing(
        Command::new(root.join("usr/bin/tutela-collector"))
            .arg("--data-dir")
            .arg(scratch.path("nightly-restored"))
            .arg("restore")
            .arg(&kept[0]),
    );
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("is encrypted; pass --passphrase-file"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let out = run_ok(
        Command::new(root.join("usr/bin/tutela-collector"))
            .arg("--data-dir")
            .arg(scratch.path("nightly-restored"))
            .arg("restore")
            .arg("--passphrase-file")
            .arg(&passphrase)
            .arg(&kept[0]),
    )
    .unwrap();
    assert!(out.contains("restored 0 alerts"), "{out}");
    assert_eq!(
        std::fs::read(scratch.path("nightly-restored/capture.key")).unwrap(),
        std::fs::read(root.join("var/lib/tutela-collector/capture.key")).unwrap()
    );

    // The installed binaries work: serve the installed collector and enrol the
    // installed agent, as a technician would.
    let data = root.join("var/lib/tutela-collector");
    let port = free_port();
    let config = std::fs::read_to_string(data.join("collector.toml")).unwrap();
    let config = config
        .replacen(
            "advertise = \"\"",
            &format!("advertise = \"127.0.0.1:{port}\""),
            1,
        )
        .replacen("enabled = true", "enabled = false", 1);
    std::fs::write(data.join("collector.toml"), config).unwrap();
    let installed = |name: &str| root.join("usr/bin").join(name);
    let mut collector = Collector {
        dir: data.clone(),
        port,
        child: None,
        log: scratch.path("collector.log"),
    };
    let mut serve = Command::new(installed("tutela-collector"));
    serve
        .arg("--data-dir")
        .arg(&data)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&collector.log).unwrap());
    let mut child = serve.spawn().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert!(
        line.starts_with("listening on"),
        "{line}\n{}",
        collector.log_text()
    );
    collector.child = Some(child);
    let token = collector.token(&["--group", "lab"]).unwrap();
    let agent_dir = root.join("var/lib/tutela-agent");
    let enrolled = run_ok(
        Command::new(installed("tutela-agent"))
            .arg("--data-dir")
            .arg(&agent_dir)
            .args(["enrol", &token]),
    )
    .unwrap();
    assert!(enrolled.contains("enrolled as ag-"), "{enrolled}");
    run_ok(
        Command::new(installed("tutela-agent"))
            .arg("--data-dir")
            .arg(&agent_dir)
            .arg("status"),
    )
    .unwrap();
    collector.kill9();
    let snapshot = |dir: &Path| -> Vec<(String, Vec<u8>)> {
        let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file() && !p.to_string_lossy().ends_with("-shm"))
            .map(|p| {
                (
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    std::fs::read(&p).unwrap(),
                )
            })
            .collect();
        files.sort();
        files
    };
    let agent_before = snapshot(&agent_dir);
    let names: BTreeSet<&str> = agent_before.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        names.contains("enrolment.toml") && names.contains("spool.db"),
        "{names:?}"
    );
    let keys = [
        "collector.toml",
        "collector.crt",
        "collector.key",
        "signing.key",
        "capture.key",
    ];
    let collector_before: Vec<Vec<u8>> = keys
        .iter()
        .map(|k| std::fs::read(data.join(k)).unwrap())
        .collect();

    // An upgrade (the same packages installed again) keeps identity and spool.
    let out = run_ok(dpkg(&root).arg("-i").arg(&collector_deb).arg(&agent_deb)).unwrap();
    assert!(
        !out.contains("initialised"),
        "init ran again on upgrade:\n{out}"
    );
    assert_eq!(
        snapshot(&agent_dir),
        agent_before,
        "the agent's state changed on upgrade"
    );
    for (k, before) in keys.iter().zip(&collector_before) {
        assert_eq!(
            &std::fs::read(data.join(k)).unwrap(),
            before,
            "{k} changed on upgrade"
        );
    }
    assert_eq!(meta(&root, "var/lib/tutela-agent"), (0o700, 0, 0));

    // Remove keeps the data; purge deletes it.
    run_ok(dpkg(&root).args(["-r", "tutela-agent", "tutela-collector"])).unwrap();
    assert!(!root.join("usr/bin/tutela-agent").exists());
    assert!(!root.join("usr/bin/tutela-collector").exists());
    assert!(agent_dir.join("enrolment.toml").exists());
    assert!(data.join("tutela.db").exists());
    run_ok(dpkg(&root).args(["--purge", "tutela-agent", "tutela-collector"])).unwrap();
    assert!(!agent_dir.exists(), "purge leaves the agent's identity");
    assert!(!data.exists(), "purge leaves the collector's data");
}

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

/// The collector's live database, waiting up to ten seconds for its locks.
fn open_db(collector: &Collector) -> Connection {
    let conn = Connection::open(collector.dir.join("tutela.db")).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// One seeded alert: how it was reviewed, and whether the purge must take it.
struct Case {
    name: &'static str,
    state: &'static str,
    /// (days ago, to_state) transitions, oldest first.
    history: &'static [(i64, &'static str)],
    capture: bool,
    folded_repeat: bool,
    expired: bool,
}

const CASES: &[Case] = &[
    Case {
        name: "closed 400 days ago",
        state: "closed",
        history: &[(410, "in_review"), (400, "closed")],
        capture: true,
        folded_repeat: false,
        expired: true,
    },
    Case {
        name: "false positive 13 months ago",
        state: "false_positive",
        history: &[(400, "false_positive")],
        capture: true,
        folded_repeat: false,
        expired: true,
    },
    Case {
        name: "closed 2 years ago, with a folded repeat",
        state: "closed",
        history: &[(731, "in_review"), (730, "closed")],
        capture: true,
        folded_repeat: true,
        expired: true,
    },
    Case {
        name: "closed 45 days ago",
        state: "closed",
        history: &[(50, "in_review"), (45, "closed")],
        capture: true,
        folded_repeat: false,
        expired: false,
    },
    Case {
        name: "open, raised long ago",
        state: "new",
        history: &[],
        capture: true,
        folded_repeat: false,
        expired: false,
    },
    Case {
        name: "closed long ago, reopened",
        state: "in_review",
        history: &[(500, "in_review"), (499, "closed"), (20, "in_review")],
        capture: true,
        folded_repeat: false,
        expired: false,
    },
    Case {
        name: "closed long ago, reopened and closed again recently",
        state: "closed",
        history: &[
            (500, "in_review"),
            (499, "closed"),
            (20, "in_review"),
            (10, "closed"),
        ],
        capture: false,
        folded_repeat: false,
        expired: false,
    },
    Case {
        name: "closed with no recorded close time",
        state: "closed",
        history: &[],
        capture: true,
        folded_repeat: false,
        expired: false,
    },
    Case {
        name: "false positive 11 months ago",
        state: "false_positive",
        history: &[(330, "false_positive")],
        capture: true,
        folded_repeat: false,
        expired: false,
    },
];

fn count(conn: &Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

fn ids(conn: &Connection, sql: &str) -> BTreeSet<i64> {
    let mut stmt = conn.prepare(sql).unwrap();
    let rows = stmt.query_map([], |r| r.get(0)).unwrap();
    rows.map(|r| r.unwrap()).collect()
}

#[test]
fn retention_purge_removes_exactly_the_expired_alerts_and_their_captures() {
    let scratch = Scratch::new("retention");
    let mut collector = Collector::init(scratch.path("collector")).unwrap();
    collector.set_console_port(free_port()).unwrap();
    // This test runs each purge itself; the daily one has its own test.
    collector
        .set_section("retention", "closed_alert_months = 12\npurge_daily = false")
        .unwrap();
    collector.start().unwrap();
    let mut agent = Agent::new(scratch.path("agent"));
    agent.enrol(&collector.token(&[]).unwrap()).unwrap();
    let extra = 3;
    let n = CASES.len() + extra;
    agent.start(&["--simulate", &n.to_string()]).unwrap();
    wait_for("seed alerts stored", Duration::from_secs(60), || {
        collector.alert_count() == n
    })
    .unwrap();
    agent.kill9();
    // A dry run on a fresh collector removes nothing (and makes the console's
    // tables if the console has not yet).
    let out = run_ok(collector.cmd().args(["purge", "--dry-run"])).unwrap();
    assert!(out.contains("would remove 0 alerts"), "{out}");

    // Seed the review history straight into the live database.
    let conn = open_db(&collector);
    let now = now_ms();
    let alert_ids: Vec<i64> = ids(&conn, "SELECT id FROM alerts ORDER BY seq")
        .into_iter()
        .collect();
    let mut expired = BTreeSet::new();
    let mut kept = BTreeSet::new();
    let mut expired_captures = BTreeSet::new();
    let mut kept_captures = BTreeSet::new();
    let capture = |alert_id: i64| {
        conn.execute(
            "INSERT INTO captures (alert_id, sha256, size, width, height, sealed) VALUES (?1, ?2, 4, 2, 2, ?3)",
            params![alert_id, vec![7u8; 32], vec![9u8; 64]],
        )
        .unwrap();
        conn.execute(
            "UPDATE alerts SET has_capture = 1 WHERE id = ?1",
            [alert_id],
        )
        .unwrap();
    };
    for (case, &id) in CASES.iter().zip(&alert_ids) {
        conn.execute(
            "UPDATE alerts SET state = ?2, time_ms = ?3 WHERE id = ?1",
            params![id, case.state, now - 800 * DAY_MS],
        )
        .unwrap();
        let mut from = "new";
        for (days, to) in case.history {
            conn.execute(
                "INSERT INTO console_history (alert_id, time_ms, actor, from_state, to_state, reason) VALUES (?1, ?2, 'dsl', ?3, ?4, '')",
                params![id, now - days * DAY_MS, from, to],
            )
            .unwrap();
            from = to;
        }
        conn.execute(
            "INSERT INTO console_review (alert_id, fp_reason, updated_ms) VALUES (?1, '', ?2)",
            params![id, now],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO console_notes (alert_id, time_ms, author, text) VALUES (?1, ?2, 'dsl', ?3)",
            params![id, now - 400 * DAY_MS, case.name],
        )
        .unwrap();
        if case.capture {
            capture(id);
        }
        let (set, captures) = if case.expired {
            (&mut expired, &mut expired_captures)
        } else {
            (&mut kept, &mut kept_captures)
        };
        set.insert(id);
        if case.capture {
            captures.insert(id);
        }
        if case.folded_repeat {
            conn.execute(
                "INSERT INTO alerts (event_id, agent_id, seq, time_ms, received_ms, user, station, source, context, app, app_path,
                    window_title, url, search_query, category, severity, rule_id, term, matches, rules_version, state, repeat_of,
                    body, signature, body_hash)
                 SELECT event_id || '-r', agent_id, seq + 100000, time_ms, received_ms, user, station, source, context, app, app_path,
                    window_title, url, search_query, category, severity, rule_id, term, matches, rules_version, 'folded', event_id,
                    body, signature, body_hash FROM alerts WHERE id = ?1",
                [id],
            )
            .unwrap();
            let folded = conn.last_insert_rowid();
            capture(folded);
            set.insert(folded);
            captures.insert(folded);
        }
    }
    // The unreviewed rest stay, with or without captures.
    for &id in &alert_ids[CASES.len()..] {
        kept.insert(id);
    }
    capture(alert_ids[CASES.len()]);
    kept_captures.insert(alert_ids[CASES.len()]);
    let all_alerts = ids(&conn, "SELECT id FROM alerts");
    assert_eq!(all_alerts.len(), n + 1);
    let notes_before = count(&conn, "SELECT COUNT(*) FROM console_notes");
    let history_before = count(&conn, "SELECT COUNT(*) FROM console_history");

    // The dry run counts and changes nothing.
    let out = run_ok(collector.cmd().args(["purge", "--dry-run"])).unwrap();
    assert!(
        out.contains("(dry run): would remove 3 alerts")
            && out.contains("(1 folded repeats or burst shots, 4 captures)"),
        "{out}"
    );
    assert_eq!(ids(&conn, "SELECT id FROM alerts"), all_alerts);

    // The purge, while the collector serves.
    let out = run_ok(collector.cmd().arg("purge")).unwrap();
    assert!(
        out.contains("purge: removed 3 alerts closed before")
            && out.contains("(1 folded repeats or burst shots, 4 captures)"),
        "{out}"
    );
    assert_eq!(
        ids(&conn, "SELECT id FROM alerts"),
        kept,
        "exactly the expired alerts go"
    );
    assert_eq!(
        ids(&conn, "SELECT alert_id FROM captures"),
        kept_captures,
        "exactly their captures go"
    );
    let review = ids(&conn, "SELECT alert_id FROM console_review");
    assert!(
        review.is_disjoint(&expired),
        "review rows of purged alerts remain"
    );
    assert_eq!(review.len(), CASES.iter().filter(|c| !c.expired).count());
    // Append-only records stay (holding no evidence); the purge is audited.
    assert_eq!(
        count(&conn, "SELECT COUNT(*) FROM console_notes"),
        notes_before
    );
    assert_eq!(
        count(&conn, "SELECT COUNT(*) FROM console_history"),
        history_before
    );
    let audit: String = conn
        .query_row(
            "SELECT detail FROM console_audit WHERE action = 'retention_purge' ORDER BY id DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(audit.starts_with("removed 3 alerts"), "{audit}");
    // The collector still serves its queue.
    assert_eq!(collector.alerts().unwrap().len(), kept.len());

    // Again: nothing more to do.
    let out = run_ok(collector.cmd().arg("purge")).unwrap();
    assert!(out.contains("removed 0 alerts"), "{out}");

    // The period is configurable: one month takes the 45-day and 11-month ones too.
    collector
        .set_section("retention", "closed_alert_months = 1")
        .unwrap();
    let out = run_ok(collector.cmd().arg("purge")).unwrap();
    assert!(out.contains("removed 2 alerts"), "{out}");
    assert_eq!(ids(&conn, "SELECT id FROM alerts").len(), kept.len() - 2);
    // Zero months is refused rather than deleting every closed alert.
    collector
        .set_section("retention", "closed_alert_months = 0")
        .unwrap();
    let refused = tutela_tests::run_failing(collector.cmd().arg("purge"));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("set at least 1"));
}

/// The Linux session helper, run as the service runs it, with the X session
/// described by a stand-in for `loginctl` (this machine has no logind); the
/// X server, agent and collector are real.
struct SessionHelper {
    child: std::process::Child,
    log: PathBuf,
}

impl SessionHelper {
    /// Starts the helper for `agent` with `loginctl` from `stub_dir`, its run
    /// directory `scratch/run` and its log `scratch/helper.log`; with `home`
    /// as HOME when given.
    fn start(scratch: &Scratch, stub_dir: &Path, agent: &Agent, home: Option<&Path>) -> Self {
        let log = scratch.path("helper.log");
        let out = std::fs::File::create(&log).unwrap();
        let path = format!(
            "{}:{}",
            stub_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut cmd = Command::new("sh");
        cmd.arg(workspace().join("installer/debian/agent/tutela-agent-session"))
            .env("PATH", path)
            .env("TUTELA_AGENT_BIN", bin("tutela-agent"))
            .env("TUTELA_AGENT_DIR", &agent.dir)
            .env("TUTELA_SESSION_POLL", "1")
            .env("TUTELA_RUN_DIR", scratch.path("run"))
            .env("TUTELA_STATION", "LAB1-PC07");
        if let Some(home) = home {
            cmd.env("HOME", home);
        }
        let child = cmd
            .env("NO_COLOR", "1")
            .env_remove("DISPLAY")
            .env_remove("XAUTHORITY")
            .env_remove("TUTELA_USER")
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        SessionHelper { child, log }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_for_log(&self, what: &str, count: usize) {
        wait_for(what, Duration::from_secs(180), || {
            self.log_text().matches(what).count() >= count
        })
        .unwrap_or_else(|e| panic!("{e}; helper log:\n{}", self.log_text()));
    }

    /// Stops it as systemd does (SIGTERM); returns whether it exited cleanly.
    fn stop(&mut self) -> bool {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..200 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }
}

impl Drop for SessionHelper {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) && !self.stop() {
            let _ = self.child.kill();
        }
    }
}

fn set_session(state: &Path, session: &str, class: &str, display: &str, user: &str) {
    std::fs::write(
        state,
        format!(
            "ActiveSession={session}\nType=x11\nClass={class}\nState=active\nDisplay={display}\nName={user}\n"
        ),
    )
    .unwrap();
}

/// A logind stand-in: a `loginctl` in a fresh `bin` directory of `scratch`
/// that answers the two questions the session helper asks from a state file
/// (written by `set_session`). Returns the directory and the state file.
fn loginctl_stub(scratch: &Scratch) -> (PathBuf, PathBuf) {
    let stub_dir = scratch.path("bin");
    std::fs::create_dir_all(&stub_dir).unwrap();
    let state = scratch.path("logind.state");
    let stub = stub_dir.join("loginctl");
    std::fs::write(
        &stub,
        format!(
            "#!/bin/sh\nstate='{}'\ncase \"$1\" in\n  show-seat) ;;\n  show-session) [ \"$2\" = \"$(sed -n 's/^ActiveSession=//p' \"$state\")\" ] || exit 1 ;;\n  *) exit 1 ;;\nesac\nsed -n \"s/^$4=//p\" \"$state\"\n",
            state.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
    (stub_dir, state)
}

#[test]
fn the_session_helper_follows_the_active_x_session() {
    let scratch = Scratch::new("session-helper");
    let desktop = tutela_tests::Desktop::start(scratch.path("desktop.log")).unwrap();
    let mut collector = Collector::init(scratch.path("collector")).unwrap();
    collector.set_console_port(free_port()).unwrap();
    collector.start().unwrap();
    let agent = Agent::new(scratch.path("agent"));
    agent.enrol(&collector.token(&[]).unwrap()).unwrap();
    let home = scratch.path("home");
    std::fs::create_dir_all(&home).unwrap();

    // logind stand-in: answers the two questions the helper asks.
    let (stub_dir, state) = loginctl_stub(&scratch);
    // The login screen is up: nothing to watch yet.
    set_session(&state, "c0", "greeter", &desktop.display, "lightdm");

    let mut helper = SessionHelper::start(&scratch, &stub_dir, &agent, Some(&home));
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !helper.log_text().contains("watching"),
        "the agent started for the login screen:\n{}",
        helper.log_text()
    );

    // A pupil signs in: the agent starts on that display, as that pupil.
    set_session(&state, "c1", "user", &desktop.display, "pupil.one");
    helper.wait_for_log("watching session c1 of pupil.one", 1);
    helper.wait_for_log("sensors started", 1);
    let mut desktop = desktop;
    let alert_titled = |what: &str, title: &str| {
        collector
            .wait_for_alert(what, Duration::from_secs(60), |a| {
                a["window_title"] == title
            })
            .unwrap()
    };
    let window = desktop.open_xterm("Year 9 history notes").unwrap();
    let title = "I want to kill myself tonight";
    desktop.rename(&window, title).unwrap();
    let alert = alert_titled("the first pupil's alert", title);
    assert_eq!(alert["user"], "pupil.one", "{alert}");

    // Another pupil's session comes to the front: the agent follows it.
    set_session(&state, "c2", "user", &desktop.display, "pupil.two");
    helper.wait_for_log("session c1 is no longer in front", 1);
    helper.wait_for_log("watching session c2 of pupil.two", 1);
    helper.wait_for_log("sensors started", 2);
    let title = "best online casino bonus - free spins";
    desktop.rename(&window, title).unwrap();
    let alert = alert_titled("the second pupil's alert", title);
    assert_eq!(alert["user"], "pupil.two", "{alert}");

    // Stopping the service stops the agent with it.
    assert!(helper.stop(), "the helper did not exit cleanly on SIGTERM");
    let agent_dir = agent.dir.to_string_lossy().into_owned();
    let still_running: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .chars()
                .all(|c| c.is_ascii_digit())
        })
        .filter(|e| {
            // Only the agent itself (the helper's short sleeps share its environment).
            std::fs::read(e.path().join("cmdline"))
                .map(|c| {
                    c.split(|b| *b == 0)
                        .next()
                        .is_some_and(|arg0| arg0.ends_with(b"tutela-agent"))
                })
                .unwrap_or(false)
        })
        .filter(|e| {
            std::fs::read(e.path().join("environ"))
                .map(|env| {
                    env.split(|b| *b == 0)
                        .any(|kv| kv == format!("TUTELA_AGENT_DIR={agent_dir}").as_bytes())
                })
                .unwrap_or(false)
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    for pid in &still_running {
        let _ = Command::new("kill").args(["-KILL", pid]).status();
    }
    assert!(
        still_running.is_empty(),
        "an agent outlived the helper: {still_running:?}"
    );
}

/// Processes started for a test, killed when it ends.
struct Reap(Vec<std::process::Child>);

impl Drop for Reap {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn mkfifo(path: &Path) {
    run_ok(Command::new("mkfifo").arg(path)).unwrap();
}

/// Runs `sh -c 'loop' ARGS...` as `uid` (0: as the test), so that its command
/// line carries ARGS the way an X server's does.
fn lookalike(uid: u32, args: &[&str], env: &[(&str, &Path)]) -> std::process::Child {
    let mut c = if uid == 0 {
        Command::new("sh")
    } else {
        let mut c = Command::new("setpriv");
        c.arg(format!("--reuid={uid}"))
            .arg(format!("--regid={uid}"))
            .arg("--clear-groups")
            .arg("sh");
        c
    };
    c.args(["-c", "while :; do sleep 1; done"])
        .args(args)
        .env_remove("XAUTHORITY");
    for (k, v) in env {
        c.env(k, v);
    }
    c.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// An Xvfb that admits only clients with its cookie: (display, server).
fn guarded_x_server(scratch: &Scratch) -> (String, Reap) {
    let auth = scratch.path("server.Xauthority");
    for n in 300 + std::process::id() % 100..500 {
        if Path::new(&format!("/tmp/.X{n}-lock")).exists() {
            continue;
        }
        let display = format!(":{n}");
        run_ok(Command::new("xauth").arg("-f").arg(&auth).args([
            "add",
            &display,
            ".",
            "fedcba9876543210fedcba9876543210",
        ]))
        .unwrap();
        let server = Command::new("Xvfb")
            .arg(&display)
            .arg("-auth")
            .arg(&auth)
            .args(["-nolisten", "tcp", "-noreset"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut reap = Reap(vec![server]);
        let socket = format!("/tmp/.X11-unix/X{n}");
        let up = wait_for("the guarded X server", Duration::from_secs(15), || {
            Path::new(&socket).exists()
        });
        if up.is_ok() && matches!(reap.0[0].try_wait(), Ok(None)) {
            return (display, reap);
        }
    }
    panic!("no free X display for a second Xvfb");
}

#[test]
fn a_forged_x_authority_neither_hangs_the_agent_nor_fools_the_session_helper() {
    require_programs(&["setpriv", "xauth", "mkfifo", "timeout"]);
    assert!(
        is_root(),
        "the session helper runs as root: run the tests as root (CI does)"
    );
    let scratch = Scratch::new("xauth-forged");
    let mut desktop = tutela_tests::Desktop::start(scratch.path("desktop.log")).unwrap();
    let mut collector = Collector::init(scratch.path("collector")).unwrap();
    collector.set_console_port(free_port()).unwrap();
    collector.start().unwrap();
    let agent = Agent::new(scratch.path("agent"));
    agent.enrol(&collector.token(&[]).unwrap()).unwrap();

    // A pupil's directory with a FIFO, a symlink to it, and a FIFO of their own.
    let nobody = 65534;
    let pupil = scratch.path("pupil");
    std::fs::create_dir_all(&pupil).unwrap();
    let fifo = pupil.join("fifo");
    mkfifo(&fifo);
    let link = pupil.join("Xauthority");
    std::os::unix::fs::symlink(&fifo, &link).unwrap();
    let own_fifo = pupil.join("own-fifo");
    mkfifo(&own_fifo);
    std::os::unix::fs::chown(&pupil, Some(nobody), Some(nobody)).unwrap();
    std::os::unix::fs::chown(&own_fifo, Some(nobody), Some(nobody)).unwrap();

    // The agent, as root, pointed at a FIFO or a symlink to one, fails at once
    // with a clear error instead of blocking in the sensor start.
    for (xauthority, why) in [(&fifo, "it is a FIFO"), (&link, "it is a symbolic link")] {
        let mut child = agent
            .cmd()
            .arg("run")
            .env("DISPLAY", &desktop.display)
            .env("XAUTHORITY", xauthority)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let exited = wait_for("the agent to give up", Duration::from_secs(60), || {
            matches!(child.try_wait(), Ok(Some(_)))
        });
        if exited.is_err() {
            let _ = child.kill();
        }
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            exited.is_ok(),
            "the agent hung on {xauthority:?}:\n{stderr}"
        );
        assert!(!out.status.success(), "{stderr}");
        assert!(
            stderr.contains("refusing XAUTHORITY") && stderr.contains(why),
            "{stderr}"
        );
        assert!(!stderr.contains("sensors started"), "{stderr}");
    }

    // An X server with access control, and a wrong cookie (as a pupil could
    // leave in their session's XAUTHORITY): started for a session, the agent
    // does not run half-blind with only its browser and process sensors.
    let (guarded, _xvfb) = guarded_x_server(&scratch);
    let wrong = scratch.path("wrong.Xauthority");
    run_ok(Command::new("xauth").arg("-f").arg(&wrong).args([
        "add",
        &guarded,
        ".",
        "0123456789abcdef0123456789abcdef",
    ]))
    .unwrap();
    let out = agent
        .cmd()
        .arg("run")
        .env("DISPLAY", &guarded)
        .env("XAUTHORITY", &wrong)
        .env("TUTELA_REQUIRE_DISPLAY", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("could not be watched"), "{stderr}");

    // Processes that look like the X server of this display and name the FIFO
    // as its -auth file: one started by the pupil, one by root from a binary
    // that is not an X server. A process of the pupil's session advertises
    // XAUTHORITY=<their FIFO>.
    let display = desktop.display.clone();
    let fifo_arg = fifo.to_string_lossy().into_owned();
    let _fakes = Reap(vec![
        lookalike(
            nobody,
            &["/usr/lib/xorg/Xorg", &display, "-auth", &fifo_arg],
            &[],
        ),
        lookalike(
            0,
            &["/usr/lib/xorg/Xorg", &display, "-auth", &fifo_arg],
            &[],
        ),
        lookalike(nobody, &["session"], &[("XAUTHORITY", own_fifo.as_path())]),
    ]);
    // Processes here have no audit session: that is the session logind names.
    let session = std::fs::read_to_string("/proc/self/sessionid").unwrap();
    let (stub_dir, state) = loginctl_stub(&scratch);
    set_session(&state, session.trim(), "user", &display, "nobody");
    let run_dir = scratch.path("run");
    let mut helper = SessionHelper::start(&scratch, &stub_dir, &agent, None);
    helper.wait_for_log("watching session", 1);
    helper.wait_for_log("sensors started", 1);
    let text = helper.log_text();
    assert!(
        !text.contains("using the X server's authority file"),
        "a forged -auth was believed:\n{text}"
    );
    assert!(
        text.contains("no X authority cookie found"),
        "the pupil's FIFO should yield no cookie:\n{text}"
    );
    // The agent was given the root-only copy, a regular file.
    let copy = run_dir.join("Xauthority");
    let m = std::fs::symlink_metadata(&copy).unwrap();
    assert!(m.file_type().is_file());
    assert_eq!((m.uid(), m.permissions().mode() & 0o777), (0, 0o600));
    assert_eq!(
        std::fs::metadata(&run_dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    // And it watches: a title on the desktop becomes an alert.
    let window = desktop.open_xterm("Year 9 history notes").unwrap();
    let title = "I want to kill myself tonight";
    desktop.rename(&window, title).unwrap();
    let alert = collector
        .wait_for_alert("the pupil's alert", Duration::from_secs(60), |a| {
            a["window_title"] == title
        })
        .unwrap_or_else(|e| panic!("{e}\nhelper log:\n{}", helper.log_text()));
    assert_eq!(alert["user"], "nobody", "{alert}");
    assert!(helper.stop(), "the helper did not exit cleanly on SIGTERM");
}

#[test]
fn serve_runs_the_retention_purge_by_itself() {
    let scratch = Scratch::new("daily-purge");
    let mut collector = Collector::init(scratch.path("collector")).unwrap();
    collector.set_console_port(free_port()).unwrap();
    collector.start().unwrap();
    let mut agent = Agent::new(scratch.path("agent"));
    agent.enrol(&collector.token(&[]).unwrap()).unwrap();
    agent.start(&["--simulate", "2"]).unwrap();
    wait_for("two stored alerts", Duration::from_secs(60), || {
        collector.alert_count() == 2
    })
    .unwrap();
    agent.kill9();
    // The first alert was closed 400 days ago; the second is open.
    let conn = open_db(&collector);
    let now = now_ms();
    let first: i64 = conn
        .query_row("SELECT id FROM alerts WHERE seq = 1", [], |r| r.get(0))
        .unwrap();
    conn.execute("UPDATE alerts SET state = 'closed' WHERE id = ?1", [first])
        .unwrap();
    conn.execute(
        "INSERT INTO console_history (alert_id, time_ms, actor, from_state, to_state, reason) VALUES (?1, ?2, 'dsl', 'in_review', 'closed', '')",
        params![first, now - 400 * DAY_MS],
    )
    .unwrap();
    // serve purges a minute after it starts, then daily.
    wait_for(
        "the purge started by serve",
        Duration::from_secs(150),
        || collector.alert_count() == 1,
    )
    .unwrap_or_else(|e| panic!("{e}; collector log:\n{}", collector.log_text()));
    let left = collector.alerts().unwrap();
    assert_eq!(left[0]["seq"], 2, "{left:?}");
    wait_for("the purge's log line", Duration::from_secs(10), || {
        collector.log_text().contains("retention purge done")
    })
    .unwrap();
}
