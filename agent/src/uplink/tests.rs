use super::*;

fn tagged(status: tonic::Status, seq: u64) -> tonic::Status {
    let mut status = status;
    status.metadata_mut().insert(
        tutela_proto::REJECTED_SEQ_METADATA,
        seq.to_string().parse().unwrap(),
    );
    status
}

#[test]
fn repeated_untagged_size_refusals_set_the_first_event_aside() {
    let too_big = tonic::Status::resource_exhausted("event body too large");
    let mut streak = RefusalStreak::default();
    assert_eq!(streak.record(Some(4), 0, Some(&too_big)), None);
    assert_eq!(streak.record(Some(4), 0, Some(&too_big)), None);
    assert_eq!(streak.record(Some(4), 0, Some(&too_big)), Some(4));
    // The count starts again for the next event.
    assert_eq!(streak.record(Some(5), 0, Some(&too_big)), None);
    let malformed = tonic::Status::invalid_argument("not a valid EventBody");
    assert_eq!(streak.record(Some(5), 0, Some(&malformed)), None);
    assert_eq!(streak.record(Some(5), 0, Some(&malformed)), Some(5));
}

#[test]
fn other_endings_break_the_streak() {
    let too_big = tonic::Status::resource_exhausted("event body too large");
    let mut streak = RefusalStreak::default();
    streak.record(Some(4), 0, Some(&too_big));
    streak.record(Some(4), 0, Some(&too_big));
    // A dropped connection in between: the collector may have been restarting.
    assert_eq!(streak.record(Some(4), 0, None), None);
    streak.record(Some(4), 0, Some(&too_big));
    streak.record(Some(4), 0, Some(&too_big));
    // Progress in between: events before it were stored.
    assert_eq!(streak.record(Some(4), 3, Some(&too_big)), None);
    assert_eq!(streak.record(Some(4), 0, Some(&too_big)), None);
    assert_eq!(streak.record(Some(4), 0, Some(&too_big)), Some(4));
    // Other refusals never count: the agent is revoked, unknown, or the
    // collector is unavailable; setting events aside would lose them.
    for status in [
        tonic::Status::permission_denied("revoked"),
        tonic::Status::not_found("not enrolled"),
        tonic::Status::unavailable("restarting"),
        tonic::Status::unauthenticated("bad signature"),
    ] {
        for _ in 0..5 {
            assert_eq!(streak.record(Some(9), 0, Some(&status)), None);
        }
    }
    // A refusal naming its event is quarantined at once elsewhere.
    for _ in 0..5 {
        let named = tagged(tonic::Status::resource_exhausted("too large"), 9);
        assert_eq!(streak.record(Some(9), 0, Some(&named)), None);
    }
    // Nothing to set aside in an empty spool.
    for _ in 0..5 {
        assert_eq!(streak.record(None, 0, Some(&too_big)), None);
    }
}

fn ack(agent_id: &str, seq: u64) -> tutela_proto::v1::Ack {
    tutela_proto::v1::Ack {
        agent_id: agent_id.into(),
        seq,
        status: AckStatus::Stored as i32,
    }
}

#[test]
fn acknowledgements_must_name_this_agent_and_an_event_sent_on_this_stream() {
    let sent: VecDeque<u64> = [4, 5, 6, 9].into_iter().collect();
    assert_eq!(
        check_ack(&sent, "ag-1", &ack("ag-1", 4)),
        AckCheck::Covers(1)
    );
    assert_eq!(
        check_ack(&sent, "ag-1", &ack("ag-1", 6)),
        AckCheck::Covers(3)
    );
    assert_eq!(
        check_ack(&sent, "ag-1", &ack("ag-1", 9)),
        AckCheck::Covers(4)
    );
    // Another agent's acknowledgement deletes nothing here.
    assert_eq!(
        check_ack(&sent, "ag-1", &ack("ag-2", 5)),
        AckCheck::WrongAgent
    );
    assert_eq!(check_ack(&sent, "ag-1", &ack("", 5)), AckCheck::WrongAgent);
    // Sequence numbers not sent on this stream: before, between, after.
    assert_eq!(check_ack(&sent, "ag-1", &ack("ag-1", 3)), AckCheck::NotSent);
    assert_eq!(check_ack(&sent, "ag-1", &ack("ag-1", 7)), AckCheck::NotSent);
    assert_eq!(
        check_ack(&sent, "ag-1", &ack("ag-1", u64::MAX)),
        AckCheck::NotSent
    );
    assert_eq!(
        check_ack(&VecDeque::new(), "ag-1", &ack("ag-1", 1)),
        AckCheck::NotSent
    );
}

#[test]
fn backoff_grows_with_jitter_and_caps() {
    let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
    let d0 = b.next_delay();
    assert!(d0 >= Duration::from_millis(50) && d0 <= Duration::from_millis(100));
    for _ in 0..10 {
        b.next_delay();
    }
    let late = b.next_delay();
    assert!(
        late >= Duration::from_secs(1) && late <= Duration::from_secs(2),
        "{late:?}"
    );
    b.reset();
    assert!(b.next_delay() <= Duration::from_millis(100));
}

fn draft(n: u64) -> crate::event::EventDraft {
    crate::event::EventDraft {
        time_ms: 1,
        user: "pupil".into(),
        station: "lab-1".into(),
        observation: tutela_proto::v1::Observation {
            context: format!("event {n}"),
            ..Default::default()
        },
        matches: vec![tutela_proto::v1::RuleMatch {
            severity: 3,
            ..Default::default()
        }],
        evidence: None,
        rules_version: 1,
        count: 1,
        event_id: None,
        repeat_of: String::new(),
    }
}

fn spool_with(dir: &std::path::Path, events: u64) -> (SharedSpool, crate::identity::Identity) {
    let identity = crate::identity::Identity::generate();
    let mut spool = Spool::open(
        &dir.join("spool.db"),
        "ag-1",
        crate::spool::SpoolConfig::default(),
    )
    .unwrap();
    for n in 0..events {
        spool.append(&identity, draft(n)).unwrap();
    }
    (Arc::new(Mutex::new(spool)), identity)
}

/// Waits for `check`, for at most 10 s of wall time.
async fn until(mut check: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("not within 10 s");
}

#[tokio::test]
async fn the_stream_is_ended_once_everything_sent_is_acknowledged_and_idle() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = spool_with(dir.path(), 2);
    let (tx, mut rx) = mpsc::channel(READ_BATCH);
    let sent: Sent = Arc::default();
    let idle = Idle {
        after: Some(Duration::from_millis(50)),
        closed: Arc::default(),
    };
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let sender = tokio::spawn(send_loop(
        spool.clone(),
        Arc::new(Notify::new()),
        tx,
        in_flight,
        sent.clone(),
        idle.clone(),
    ));
    let first = rx.recv().await.unwrap();
    let second = rx.recv().await.unwrap();
    assert_ne!(first.body, second.body);
    // Sent and not acknowledged: the stream stays open however long it waits.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!idle.closed.load(Ordering::Acquire));
    assert!(!sender.is_finished());
    // Acknowledged: the send loop ends its side after the idle time.
    lock_sent(&sent).clear();
    until(|| sender.is_finished()).await;
    assert!(idle.closed.load(Ordering::Acquire));
    assert!(rx.recv().await.is_none(), "this side of the stream ended");
}

#[tokio::test]
async fn without_an_idle_time_the_stream_stays_open() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = spool_with(dir.path(), 0);
    let (tx, _rx) = mpsc::channel(READ_BATCH);
    let idle = Idle {
        after: None,
        closed: Arc::default(),
    };
    let sender = tokio::spawn(send_loop(
        spool,
        Arc::new(Notify::new()),
        tx,
        Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        Arc::default(),
        idle.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!sender.is_finished());
    assert!(!idle.closed.load(Ordering::Acquire));
    sender.abort();
}

#[tokio::test]
async fn an_event_appended_while_idle_wakes_the_uplink() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, identity) = spool_with(dir.path(), 0);
    let appended = Arc::new(Notify::new());
    let waiting = tokio::spawn({
        let (spool, appended) = (spool.clone(), appended.clone());
        async move { wait_for_events(&spool, &appended).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished(), "nothing to send: no stream");
    lock(&spool).append(&identity, draft(1)).unwrap();
    appended.notify_one();
    until(|| waiting.is_finished()).await;
}
