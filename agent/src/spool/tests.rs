use super::*;
use tutela_proto::v1::{Observation, RuleMatch};

fn draft(severity: u32, pad: usize) -> EventDraft {
    EventDraft {
        time_ms: 1,
        user: "pupil".into(),
        station: "lab-1".into(),
        observation: Observation {
            context: "x".repeat(pad),
            ..Default::default()
        },
        matches: vec![RuleMatch {
            severity,
            ..Default::default()
        }],
        evidence: None,
        rules_version: 1,
        count: 1,
        event_id: None,
        repeat_of: String::new(),
    }
}

fn temp(name: &str) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("tutela-spool-{name}-{}.db", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

#[test]
fn survives_reopen_and_keeps_the_chain() {
    let path = temp("reopen");
    let id = Identity::generate();
    let mut spool = Spool::open(&path, "a1", SpoolConfig::default()).unwrap();
    assert_eq!(spool.append(&id, draft(3, 10)).unwrap(), 1);
    assert_eq!(spool.append(&id, draft(3, 10)).unwrap(), 2);
    let first = spool.pending_after(0, 10).unwrap();
    drop(spool);
    let mut spool = Spool::open(&path, "a1", SpoolConfig::default()).unwrap();
    assert_eq!(spool.append(&id, draft(3, 10)).unwrap(), 3);
    let all = spool.pending_after(0, 10).unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0], first[0]);
    let body = <tutela_proto::v1::EventBody as prost::Message>::decode(&all[2].body[..]).unwrap();
    assert_eq!(body.prev_hash, all[1].body_hash().to_vec());
    spool.acknowledge(&[1, 2]).unwrap();
    assert_eq!(spool.stats().unwrap().backlog, 1);
    assert!(matches!(
        Spool::open(&path, "other", SpoolConfig::default()),
        Err(SpoolError::ForeignSpool(_))
    ));
}

#[test]
fn two_processes_opening_a_new_spool_at_once_both_succeed() {
    // `tutela-agent status` run while the agent starts opens the same new
    // spool: both must claim it for the agent, neither may fail.
    for round in 0..300 {
        let path = temp(&format!("race-{round}"));
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (path, barrier) = (path.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    Spool::open(&path, "a1", SpoolConfig::default()).map(|_| ())
                })
            })
            .collect();
        for t in threads {
            if let Err(e) = t.join().unwrap() {
                panic!("round {round}: {e}");
            }
        }
        assert!(matches!(
            Spool::open(&path, "other", SpoolConfig::default()),
            Err(SpoolError::ForeignSpool(_))
        ));
        let _ = std::fs::remove_file(&path);
    }
}

#[test]
fn unsent_events_carry_over_to_a_new_identity_with_their_content() {
    let (old_path, new_path) = (temp("carry-old"), temp("carry-new"));
    let (old_id, new_id) = (Identity::generate(), Identity::generate());
    let mut old = Spool::open(&old_path, "a-old", SpoolConfig::default()).unwrap();
    old.append(&old_id, draft(2, 5)).unwrap();
    let mut shot = draft(5, 20);
    shot.evidence = Some(crate::event::Evidence {
        jpeg: vec![0xff, 0xd8, 1, 2, 3],
        width: 4,
        height: 3,
    });
    shot.repeat_of = "ev-first".into();
    old.append(&old_id, shot.clone()).unwrap();
    old.append(&old_id, draft(3, 7)).unwrap();
    old.acknowledge(&[3]).unwrap();

    // From seq 2 on, still unsent: the shot only.
    let drafts = old.drafts_from(2).unwrap();
    assert_eq!(drafts.len(), 1);
    let carried = &drafts[0];
    assert_eq!(carried.observation, shot.observation);
    assert_eq!(carried.matches, shot.matches);
    assert_eq!(carried.repeat_of, "ev-first");
    let evidence = carried.evidence.as_ref().unwrap();
    assert_eq!(
        (evidence.jpeg.as_slice(), evidence.width, evidence.height),
        (&[0xff, 0xd8, 1, 2, 3][..], 4, 3)
    );
    let old_event = old.pending_after(1, 10).unwrap().remove(0);
    let old_body =
        <tutela_proto::v1::EventBody as prost::Message>::decode(&old_event.body[..]).unwrap();
    assert_eq!(
        carried.event_id.as_deref(),
        Some(old_body.event_id.as_str())
    );

    // Sealed again under the new identity: its own agent id and sequence.
    let mut new = Spool::open(&new_path, "a-new", SpoolConfig::default()).unwrap();
    assert_eq!(new.append(&new_id, drafts[0].clone()).unwrap(), 1);
    let resealed = new.pending_after(0, 10).unwrap().remove(0);
    let body = <tutela_proto::v1::EventBody as prost::Message>::decode(&resealed.body[..]).unwrap();
    assert_eq!(body.agent_id, "a-new");
    assert_eq!(body.event_id, old_body.event_id);
    assert_eq!(resealed.capture, old_event.capture);
    assert!(ring::signature::UnparsedPublicKey::new(
        &ring::signature::ED25519,
        new_id.public_key()
    )
    .verify(
        &tutela_proto::event_message(&resealed.body),
        &resealed.signature
    )
    .is_ok());
}

#[test]
fn make_durable_syncs_once_per_new_appends_and_keeps_events() {
    let path = temp("durable");
    let id = Identity::generate();
    let mut spool = Spool::open(&path, "a1", SpoolConfig::default()).unwrap();
    assert!(!spool.make_durable().unwrap(), "nothing appended yet");
    for _ in 0..3 {
        spool.append(&id, draft(3, 10)).unwrap();
    }
    let before = spool.pending_after(0, 10).unwrap();
    let db_bytes = || std::fs::metadata(&path).unwrap().len();
    let unchecked = db_bytes();
    assert!(spool.make_durable().unwrap());
    assert!(
        db_bytes() > unchecked,
        "the WAL was checkpointed into the database ({unchecked} bytes before)"
    );
    assert!(!spool.make_durable().unwrap(), "already durable");
    let synchronous: i64 = spool
        .conn
        .query_row("PRAGMA synchronous", [], |r| r.get(0))
        .unwrap();
    assert_eq!(synchronous, 1, "appends are back to NORMAL");
    assert_eq!(spool.pending_after(0, 10).unwrap(), before);
    let marker: Vec<u8> = spool
        .conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'durable_through'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(marker, 3u64.to_le_bytes().to_vec());
    spool.append(&id, draft(3, 10)).unwrap();
    assert!(spool.make_durable().unwrap(), "a new append needs a sync");
    drop(spool);
    let spool = Spool::open(&path, "a1", SpoolConfig::default()).unwrap();
    assert_eq!(spool.pending_after(0, 10).unwrap().len(), 4);
    assert_eq!(spool.next_seq(), 5);
}

fn quarantined_seqs(spool: &Spool) -> Vec<u64> {
    let mut stmt = spool
        .conn
        .prepare("SELECT seq FROM quarantine ORDER BY seq")
        .unwrap();
    let rows = stmt.query_map([], |r| r.get::<_, i64>(0)).unwrap();
    rows.map(|r| r.unwrap() as u64).collect()
}

#[test]
fn quarantine_keeps_the_newest_rows_and_counts_the_rest_as_dropped() {
    let path = temp("quarantine-rows");
    let id = Identity::generate();
    let mut spool = Spool::open(&path, "a1", SpoolConfig::default()).unwrap();
    let total = MAX_QUARANTINE_ROWS as u64 + 5;
    for _ in 0..total {
        let seq = spool.append(&id, draft(3, 10)).unwrap();
        spool.quarantine(seq, "refused").unwrap();
    }
    let stats = spool.stats().unwrap();
    assert_eq!(stats.quarantined, MAX_QUARANTINE_ROWS as u64);
    assert_eq!(stats.dropped, 5);
    assert_eq!(stats.backlog, 0);
    assert_eq!(quarantined_seqs(&spool), (6..=total).collect::<Vec<_>>());
    // The count survives a restart and is carried by the next event.
    drop(spool);
    let mut spool = Spool::open(&path, "a1", SpoolConfig::default()).unwrap();
    assert_eq!(spool.stats().unwrap().dropped, 5);
    spool.append(&id, draft(3, 10)).unwrap();
    let next = spool.pending_after(0, 1).unwrap();
    let body = <tutela_proto::v1::EventBody as prost::Message>::decode(&next[0].body[..]).unwrap();
    assert_eq!(body.dropped_before, 5);
}

#[test]
fn quarantine_is_bounded_in_bytes() {
    let path = temp("quarantine-bytes");
    let id = Identity::generate();
    let mut spool = Spool::open(&path, "a1", SpoolConfig::default()).unwrap();
    let shot = 3 * 1024 * 1024;
    for _ in 0..4 {
        let mut d = draft(3, 10);
        d.evidence = Some(crate::event::Evidence {
            jpeg: vec![0xAB; shot],
            width: 1,
            height: 1,
        });
        let seq = spool.append(&id, d).unwrap();
        spool.quarantine(seq, "capture too large").unwrap();
    }
    // 8 MiB holds two 3 MiB captures: the two oldest are deleted.
    assert_eq!(quarantined_seqs(&spool), vec![3, 4]);
    assert_eq!(spool.stats().unwrap().dropped, 2);
}

#[test]
fn full_spool_drops_lowest_severity_first_and_counts() {
    let path = temp("full");
    let id = Identity::generate();
    let mut spool = Spool::open(&path, "a1", SpoolConfig { max_bytes: 4_000 }).unwrap();
    for i in 0..20 {
        let severity = if i % 4 == 0 { 5 } else { 1 };
        spool.append(&id, draft(severity, 300)).unwrap();
    }
    let stats = spool.stats().unwrap();
    assert!(stats.bytes <= 4_000, "{stats:?}");
    assert!(stats.dropped > 0);
    let kept = spool.pending_after(0, 100).unwrap();
    assert_eq!(kept.len() as u64 + stats.dropped, 20);
    // Every severity-5 event is still there.
    assert_eq!(kept.iter().filter(|e| e.severity == 5).count(), 5);
}
