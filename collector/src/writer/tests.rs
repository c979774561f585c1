//! The writer against a real store: sequence rules, refusals and other writes.

use super::*;

fn event(seq: u64, reply: &Reply) -> Verified {
    Verified {
        body: seq.to_be_bytes().to_vec(),
        signature: vec![0; 64],
        body_hash: [seq as u8; 32],
        event: EventBody {
            agent_id: "ag-writer-test".into(),
            event_id: format!("ev-{seq}"),
            seq,
            prev_hash: vec![0; 32],
            ..Default::default()
        },
        sealed_capture: None,
        capture_key: None,
        received_ms: 0,
        clock_skew: false,
        reply: reply.clone(),
    }
}

fn enrol(dir: &std::path::Path, agent_id: &str) {
    store::open(dir)
        .unwrap()
        .execute(
            "INSERT INTO agents (agent_id, public_key, station, enrolled_ms) VALUES (?1, ?1, 'PC', 0)",
            [agent_id],
        )
        .unwrap();
}

/// A writer on a fresh store with one enrolled agent whose event 1 is stored, and the
/// stream's reply channel.
async fn writer_after_event_one(dir: &std::path::Path) -> (Writer, Reply, Replies) {
    let writer = Writer::start(Location::Sqlite(dir.to_owned()), 1000).unwrap();
    enrol(dir, "ag-writer-test");
    let (reply, mut replies) = reply_channel();
    writer.submit(event(1, &reply)).await.unwrap();
    assert_eq!(replies.recv().await.unwrap().unwrap().seq, 1);
    (writer, reply, replies)
}

#[tokio::test]
async fn events_of_an_agent_revoked_after_they_were_checked_are_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (writer, reply, mut replies) = writer_after_event_one(dir.path()).await;
    // Revoked by another connection (the CLI) once ingest had checked
    // the agent: the writer reads the flag in its own transaction.
    store::open(dir.path())
        .unwrap()
        .execute(
            "UPDATE agents SET revoked = 1 WHERE agent_id = 'ag-writer-test'",
            [],
        )
        .unwrap();
    writer.submit(event(2, &reply)).await.unwrap();
    let refusal = replies.recv().await.unwrap().unwrap_err();
    assert_eq!(refusal.code(), tonic::Code::PermissionDenied);
    let stored: i64 = store::open(dir.path())
        .unwrap()
        .query_row("SELECT COUNT(*) FROM alerts", [], |r| r.get(0))
        .unwrap();
    assert_eq!(stored, 1, "only the event before the revocation is stored");
}

#[tokio::test]
async fn nothing_sent_after_a_refused_event_on_its_stream_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (writer, reply, mut replies) = writer_after_event_one(dir.path()).await;
    // Event 1 again with other content, then event 2, on one stream.
    let mut conflicting = event(1, &reply);
    conflicting.body_hash = [0xee; 32];
    writer.submit(conflicting).await.unwrap();
    writer.submit(event(2, &reply)).await.unwrap();
    let refusal = replies.recv().await.unwrap().unwrap_err();
    assert_eq!(refusal.code(), tonic::Code::AlreadyExists);
    // A later batch of the same stream is not stored either.
    writer.submit(event(3, &reply)).await.unwrap();
    let (probe, mut probed) = reply_channel();
    writer
        .refuse(Status::cancelled("probe"), probe.clone())
        .await;
    probed.recv().await.unwrap().unwrap_err();
    let stored: Vec<i64> = store::open(dir.path())
        .unwrap()
        .prepare("SELECT seq FROM alerts ORDER BY seq")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(stored, [1], "nothing after the refused event");
    assert!(
        replies.try_recv().is_none(),
        "nothing more is sent on the refused stream"
    );
}

#[tokio::test]
async fn a_failed_write_is_undone_alone_and_others_commit_with_the_events() {
    let dir = tempfile::tempdir().unwrap();
    let (writer, reply, mut replies) = writer_after_event_one(dir.path()).await;
    let failing = writer.write("test change", |tx| {
        Box::pin(async move {
            tx.set_group("ag-writer-test", "changed", "default")
                .await
                .map_err(store_failed("test change"))?;
            Err::<(), _>(Status::failed_precondition("refused after writing"))
        })
    });
    let kept = writer.write("test change", |tx| {
        Box::pin(async move {
            tx.flag("ag-writer-test", "kept")
                .await
                .map_err(store_failed("test change"))
        })
    });
    let (failing, kept, submitted) = tokio::join!(failing, kept, writer.submit(event(2, &reply)));
    submitted.unwrap();
    assert_eq!(failing.unwrap_err().code(), tonic::Code::FailedPrecondition);
    kept.unwrap();
    assert_eq!(replies.recv().await.unwrap().unwrap().seq, 2);
    let (flag, group): (String, String) = store::open(dir.path())
        .unwrap()
        .query_row(
            "SELECT flag, grp FROM agents WHERE agent_id = 'ag-writer-test'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        (flag.as_str(), group.as_str()),
        ("kept", ""),
        "the failed write undone, the other kept"
    );
}

#[tokio::test]
async fn a_refusal_comes_after_the_acknowledgement_of_what_preceded_it() {
    let dir = tempfile::tempdir().unwrap();
    let writer = Writer::start(Location::Sqlite(dir.path().to_owned()), 1000).unwrap();
    enrol(dir.path(), "ag-writer-test");
    let (reply, mut replies) = reply_channel();
    for seq in 1..=10 {
        writer.submit(event(seq, &reply)).await.unwrap();
    }
    writer
        .refuse(Status::unauthenticated("event 11 is forged"), reply.clone())
        .await;
    drop(reply);
    let mut sent = Vec::new();
    while let Some(r) = replies.recv().await {
        sent.push(r);
    }
    let (refusal, acks) = sent.split_last().unwrap();
    let refusal = refusal.as_ref().unwrap_err();
    assert_eq!(refusal.code(), tonic::Code::Unauthenticated);
    let acks: Vec<u64> = acks.iter().map(|a| a.as_ref().unwrap().seq).collect();
    assert_eq!(
        acks.last(),
        Some(&10),
        "acknowledged before the refusal: {acks:?}"
    );
}

#[tokio::test]
async fn a_repeat_within_one_batch_is_a_duplicate_or_a_conflict_as_across_batches() {
    let dir = tempfile::tempdir().unwrap();
    let writer = Writer::start(Location::Sqlite(dir.path().to_owned()), 1000).unwrap();
    enrol(dir.path(), "ag-writer-test");
    let (reply, mut replies) = reply_channel();
    let (other, mut others) = reply_channel();
    // Submitted back to back: the writer takes them in one batch, so event 2
    // is decided on before it is stored.
    writer.submit(event(1, &reply)).await.unwrap();
    writer.submit(event(2, &reply)).await.unwrap();
    writer.submit(event(2, &reply)).await.unwrap();
    let mut conflicting = event(2, &other);
    conflicting.body_hash = [0xee; 32];
    writer.submit(conflicting).await.unwrap();
    let last = replies.recv().await.unwrap().unwrap();
    assert_eq!(last.seq, 2);
    let refusal = others.recv().await.unwrap().unwrap_err();
    assert_eq!(refusal.code(), tonic::Code::AlreadyExists, "{refusal:?}");
    assert!(replies.try_recv().is_none(), "the repeat is not refused");
    let stored: i64 = store::open(dir.path())
        .unwrap()
        .query_row("SELECT COUNT(*) FROM alerts", [], |r| r.get(0))
        .unwrap();
    assert_eq!(stored, 2);
}
