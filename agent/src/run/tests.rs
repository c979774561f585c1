use tutela_agent::event::EventDraft;
use tutela_proto::v1::{Observation, Source};

use super::clone::discard_cloned_spools;
use super::*;

fn draft(n: u64) -> EventDraft {
    EventDraft {
        time_ms: session::now_ms(),
        user: "pupil".into(),
        station: "LAB1-PC01".into(),
        observation: Observation {
            source: Source::Title as i32,
            context: format!("typed context {n}"),
            ..Default::default()
        },
        matches: Vec::new(),
        evidence: None,
        rules_version: 0,
        count: 1,
        event_id: None,
        repeat_of: String::new(),
    }
}

#[test]
fn a_cloned_identitys_spool_is_deleted_with_its_wal() {
    let dir = tempfile::tempdir().unwrap();
    let identity = Identity::generate();
    {
        let mut spool =
            Spool::open(&spool_path(dir.path()), "ag-old", SpoolConfig::default()).unwrap();
        for n in 0..5 {
            spool.append(&identity, draft(n)).unwrap();
        }
        assert!(dir.path().join("spool.db-wal").exists());
        // A spool an earlier version set aside.
        std::fs::copy(
            spool_path(dir.path()),
            dir.path().join("spool.cloned-1700000000000.db"),
        )
        .unwrap();
        discard_cloned_spools(dir.path());
    }
    let left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(left.iter().all(|n| !n.starts_with("spool")), "{left:?}");
    // The new identity starts an empty spool.
    let spool = Spool::open(&spool_path(dir.path()), "ag-new", SpoolConfig::default()).unwrap();
    assert_eq!(spool.stats().unwrap().backlog, 0);
}
