//! Packaging: the .deb packages built from the real binaries and installed
//! into a scratch root (files, owners, modes, units verified by
//! systemd-analyze, upgrade keeps the identity, purge removes it).

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tutela_tests::{
    bin, free_port, is_root, require_programs, run_ok, workspace, Collector, Scratch,
};

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
