//! Backups and restores of the embedded store, and their refusals.

use std::fs;
use std::path::Path;

use super::files::remove_stale_partials;
use super::seal::{new_encryption, BackupKey, CHUNK, PREFIX};
use super::*;
use crate::secrets::CAPTURE_KEY_FILE;

#[test]
fn plain_copies_left_by_an_interrupted_backup_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let stale = dir.path().join(".backup-00aa.tutela.db.partial");
    let running = dir.path().join(".backup-00bb.tutela.db.partial");
    let live = dir.path().join("tutela.db");
    for f in [&stale, &running, &live] {
        fs::write(f, b"x").unwrap();
    }
    let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    for f in [&stale, &live] {
        fs::File::options()
            .write(true)
            .open(f)
            .unwrap()
            .set_modified(two_hours_ago)
            .unwrap();
    }
    remove_stale_partials(dir.path());
    assert!(!stale.exists(), "an old plain copy is removed");
    assert!(running.exists(), "a backup running now keeps its copy");
    assert!(live.exists(), "nothing else is touched");
}

fn collector() -> tempfile::TempDir {
    let data = tempfile::tempdir().unwrap();
    crate::secrets::create_missing(data.path(), &[]).unwrap();
    fs::write(data.path().join(CONFIG_FILE), "").unwrap();
    store::open(data.path()).unwrap();
    data
}

fn passphrase(dir: &Path, text: &str) -> Passphrase {
    let path = dir.join(format!("pass-{}", text.len()));
    fs::write(&path, format!("{text}\n")).unwrap();
    Passphrase::read(&path).unwrap()
}

#[test]
fn a_damaged_backup_is_refused() {
    let data = collector();
    let dest = tempfile::tempdir().unwrap();
    let copy = dest.path().join("b");
    let report = backup(data.path(), &copy, None).unwrap();
    assert_eq!(report.manifest.alerts, 0);
    assert!(verify(&copy).is_ok());
    assert!(matches!(
        backup(data.path(), &copy, None),
        Err(BackupError::DestinationNotEmpty(_))
    ));
    fs::write(copy.join(CAPTURE_KEY_FILE), b"not the key").unwrap();
    assert!(matches!(verify(&copy), Err(BackupError::Checksum(_))));
    let target = dest.path().join("restored");
    assert!(matches!(
        restore(&copy, &target, None),
        Err(BackupError::Checksum(_))
    ));
    assert!(!target.join(DB_FILE).exists());
}

#[test]
fn an_encrypted_backup_holds_nothing_in_the_clear_and_needs_its_passphrase() {
    let data = collector();
    let scratch = tempfile::tempdir().unwrap();
    let right = passphrase(scratch.path(), "correct horse battery staple");
    let wrong = passphrase(scratch.path(), "not the passphrase at all");
    let copy = scratch.path().join("b");
    backup(data.path(), &copy, Some(&right)).unwrap();
    let key = fs::read(data.path().join(CAPTURE_KEY_FILE)).unwrap();
    for entry in fs::read_dir(&copy).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == MANIFEST_FILE {
            continue;
        }
        assert!(name.ends_with(SEALED_SUFFIX), "{name} stored in the clear");
        let bytes = fs::read(entry.path()).unwrap();
        assert!(
            !bytes.windows(key.len()).any(|w| w == key.as_slice()),
            "{name} holds the capture key"
        );
        assert!(!bytes.starts_with(b"SQLite format 3"), "{name}");
    }
    verify(&copy).unwrap();
    let target = scratch.path().join("restored");
    assert!(matches!(
        restore(&copy, &target, None),
        Err(BackupError::PassphraseNeeded(_))
    ));
    assert!(matches!(
        restore(&copy, &target, Some(&wrong)),
        Err(BackupError::ManifestForged(_))
    ));
    assert!(!target.exists());
    // An unencrypted backup put in its place is refused when a passphrase is given.
    let plain = scratch.path().join("plain");
    backup(data.path(), &plain, None).unwrap();
    assert!(matches!(
        restore(&plain, &target, Some(&right)),
        Err(BackupError::NotEncrypted(_))
    ));
    // Argon2 parameters outside the bounds are refused before deriving.
    let mut manifest = read_manifest(&copy).unwrap();
    let enc = manifest.encryption.as_mut().unwrap();
    enc.m_cost = u32::MAX;
    assert!(matches!(
        BackupKey::derive(&right, enc),
        Err(BackupError::Kdf(e)) if e.contains("outside the accepted bounds")
    ));
    let leftovers: Vec<_> = fs::read_dir(scratch.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().contains(".restore-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    restore(&copy, &target, Some(&right)).unwrap();
    for name in FILES {
        assert_eq!(
            fs::read(data.path().join(name)).unwrap(),
            fs::read(target.join(name)).unwrap(),
            "{name}"
        );
    }
    check_database(&target.join(DB_FILE)).unwrap();
    // A short passphrase is refused outright.
    let short = scratch.path().join("short");
    fs::write(&short, "abc\n").unwrap();
    assert!(matches!(
        Passphrase::read(&short),
        Err(BackupError::BadPassphrase { .. })
    ));
}

#[test]
fn a_large_database_round_trips_across_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let pass = passphrase(dir.path(), "a passphrase long enough");
    let enc = new_encryption().unwrap();
    let key = BackupKey::derive(&pass, &enc).unwrap();
    for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK + 17] {
        let plain = dir.path().join(format!("p{len}"));
        let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        fs::write(&plain, &data).unwrap();
        let sealed = dir.path().join(format!("s{len}"));
        key.seal_file("x", &plain, &sealed).unwrap();
        let back = dir.path().join(format!("o{len}"));
        key.open_file("x", &sealed, &back).unwrap();
        assert_eq!(fs::read(&back).unwrap(), data, "{len}");
        // Bound to its name, and cut short it fails.
        assert!(key
            .open_file("y", &sealed, &dir.path().join(format!("y{len}")))
            .is_err());
        let bytes = fs::read(&sealed).unwrap();
        if len >= CHUNK {
            fs::write(&sealed, &bytes[..PREFIX + CHUNK + 16]).unwrap();
            assert!(key
                .open_file("x", &sealed, &dir.path().join(format!("t{len}")))
                .is_err());
        }
    }
}

#[test]
fn restore_refuses_a_target_with_a_leftover_wal() {
    let data = collector();
    let scratch = tempfile::tempdir().unwrap();
    let copy = scratch.path().join("b");
    backup(data.path(), &copy, None).unwrap();
    let target = scratch.path().join("restored");
    fs::create_dir(&target).unwrap();
    fs::write(target.join(format!("{DB_FILE}-wal")), b"stale wal").unwrap();
    assert!(matches!(
        restore(&copy, &target, None),
        Err(BackupError::RestoreOverLive(_))
    ));
    assert_eq!(
        fs::read(target.join(format!("{DB_FILE}-wal"))).unwrap(),
        b"stale wal"
    );
    assert!(!target.join(DB_FILE).exists());
    // An empty existing directory is fine, and ends up owner-only.
    fs::remove_file(target.join(format!("{DB_FILE}-wal"))).unwrap();
    restore(&copy, &target, None).unwrap();
    check_database(&target.join(DB_FILE)).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&target).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}
