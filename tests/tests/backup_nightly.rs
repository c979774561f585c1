//! The Debian package's nightly backup job, taken from the built package:
//! on a collector storing in SQLite it makes a backup (even with a schedule
//! of its own); where the store is PostgreSQL and `[backup] dir` is set
//! (the collectors then back the shared database up once across the
//! cluster) it makes none on any machine and says why; on PostgreSQL
//! without a schedule it still backs up (and fails when it cannot reach
//! the database).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tutela_tests::{bin, require_programs, run_ok, workspace, Collector, Scratch};

/// Builds the collector package from the binaries the tests run and
/// unpacks it into `root`.
fn unpack_collector_deb(scratch: &Scratch, root: &Path) {
    let bin_dir = bin("tutela-collector").parent().unwrap().to_owned();
    let out = scratch.path("debs");
    let listed = run_ok(
        Command::new("sh")
            .arg(workspace().join("installer/build-deb.sh"))
            .arg("--bin-dir")
            .arg(&bin_dir)
            .arg("--out")
            .arg(&out)
            .args(["--compress", "none"]),
    )
    .unwrap();
    let deb = listed
        .lines()
        .find(|l| l.contains("tutela-collector_"))
        .unwrap_or_else(|| panic!("no collector package in {listed}"));
    run_ok(Command::new("dpkg-deb").arg("-x").arg(deb).arg(root)).unwrap();
}

/// Runs the packaged nightly job for `collector`, backing up into `dest`.
fn nightly(root: &Path, collector: &Collector, dest: &Path, passphrase: &Path) -> Output {
    Command::new("sh")
        .arg(root.join("usr/lib/tutela-collector/backup-nightly"))
        .env("TUTELA_COLLECTOR_BIN", bin("tutela-collector"))
        .env("TUTELA_COLLECTOR_DIR", &collector.dir)
        .env("TUTELA_BACKUP_DIR", dest)
        .env("TUTELA_BACKUP_PASSPHRASE_FILE", passphrase)
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The backups (dated directories) in `dest`.
fn backups(dest: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dest)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

#[test]
fn the_nightly_job_skips_a_clustered_postgresql_store_with_a_schedule_and_says_why() {
    require_programs(&["dpkg", "dpkg-deb"]);
    let scratch = Scratch::new("backup-nightly");
    let root = scratch.path("root");
    unpack_collector_deb(&scratch, &root);
    let passphrase = scratch.path("passphrase");
    std::fs::write(&passphrase, "a long enough backup passphrase\n").unwrap();
    let schedule = format!(
        "passphrase_file = {:?}\ndir = {:?}\nevery = \"6h\"",
        passphrase.to_str().unwrap(),
        scratch.path("scheduled").to_str().unwrap()
    );
    // Nothing listens on port 1: a backup that tried PostgreSQL would fail.
    let unreachable = "url = \"postgres://tutela:secret@127.0.0.1:1/school\"";

    // SQLite with a schedule: one process, the nightly job still backs up.
    let sqlite = Collector::init(scratch.path("sqlite")).unwrap();
    sqlite.set_section("backup", &schedule).unwrap();
    let dest = scratch.path("nightly-sqlite");
    std::fs::create_dir_all(&dest).unwrap();
    let out = nightly(&root, &sqlite, &dest, &passphrase);
    assert!(out.status.success(), "{}", text(&out));
    let made = backups(&dest);
    assert_eq!(made.len(), 1, "{made:?}\n{}", text(&out));
    assert!(made[0].join("backup.toml").is_file(), "{}", text(&out));

    // PostgreSQL with a schedule: nothing made, and the log says why.
    let clustered = Collector::init(scratch.path("clustered")).unwrap();
    clustered.set_section("storage", unreachable).unwrap();
    clustered.set_section("backup", &schedule).unwrap();
    let dest = scratch.path("nightly-clustered");
    std::fs::create_dir_all(&dest).unwrap();
    let out = nightly(&root, &clustered, &dest, &passphrase);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("no backup made here")
            && said.contains("once across the cluster")
            && said.contains("[backup] dir"),
        "{said}"
    );
    assert!(!said.contains("secret"), "the password is shown: {said}");
    assert_eq!(backups(&dest), Vec::<PathBuf>::new(), "{said}");

    // PostgreSQL without a schedule: the nightly job is the backup, so it
    // tries (and, with no database to reach, fails and says so).
    let unscheduled = Collector::init(scratch.path("unscheduled")).unwrap();
    unscheduled.set_section("storage", unreachable).unwrap();
    let dest = scratch.path("nightly-unscheduled");
    std::fs::create_dir_all(&dest).unwrap();
    let out = nightly(&root, &unscheduled, &dest, &passphrase);
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(!said.contains("no backup made here"), "{said}");
}
