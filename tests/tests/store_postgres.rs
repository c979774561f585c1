//! The collector's store on a real PostgreSQL (a throwaway cluster on
//! loopback): two writers on one database stand for two collectors. Ingest
//! stays exactly-once per (agent, seq) with its chain, gap and replay checks
//! when an agent's events reach both; a token's uses are spent exactly once
//! across both; bad configuration is refused with a message that says what
//! to fix.

use std::path::Path;

use prost::Message;
use tonic::{Code, Status};
use tutela_collector::store::{Location, Store};
use tutela_collector::writer::Writer;
use tutela_proto::v1::EventBody;
use tutela_tests::postgres::PgCluster;
use tutela_tests::store::{
    chain, enrol, event, heartbeat, keypair, location, node, outcome, runtime, stream, token,
};

#[test]
fn two_collectors_given_the_same_events_store_each_exactly_once() {
    let pg = PgCluster::start().unwrap();
    let rt = runtime();
    let a = node(&rt, &location(&pg.url()));
    let b = node(&rt, &location(&pg.url()));
    const AGENTS: usize = 12;
    const EVENTS: u64 = 150;
    let chains: Vec<Vec<(EventBody, Vec<u8>)>> = rt.block_on(async {
        let secret = token(&a.store, AGENTS as u32).await;
        let mut chains = Vec::new();
        for _ in 0..AGENTS {
            let id = enrol(&a, &keypair(), &secret).await.unwrap();
            chains.push(chain(&id, EVENTS));
        }
        chains
    });
    // Every agent's stream reaches both collectors at once (an agent that
    // reconnected elsewhere resending its spool): each event must be stored
    // once, the other collector answering "duplicate". Heartbeats of the same
    // agents reach both meanwhile: their rows are locked in the same order
    // as the events', so no batch waits on another in a cycle.
    let answers = rt.block_on(async {
        let mut tasks = Vec::new();
        let mut beats = Vec::new();
        for c in &chains {
            for (n, node) in [&a, &b].into_iter().enumerate() {
                let writer = node.writer.clone();
                let events = c.clone();
                tasks.push(tokio::spawn(async move { stream(&writer, &events).await }));
                let writer = node.writer.clone();
                let agent_id = c[0].0.agent_id.clone();
                beats.push(tokio::spawn(async move {
                    for t in 1..=20 {
                        heartbeat(&writer, &agent_id, 2 * t + n as i64).await?;
                    }
                    Ok::<_, Status>(())
                }));
            }
        }
        for b in beats {
            b.await
                .unwrap()
                .expect("every heartbeat recorded or refused as old");
        }
        let mut answers = Vec::new();
        for t in tasks {
            answers.push(t.await.unwrap());
        }
        answers
    });
    for sent in &answers {
        for r in sent {
            let ack = r.as_ref().unwrap_or_else(|s| panic!("refused: {s:?}"));
            assert!(ack.status == 1 || ack.status == 2, "{ack:?}");
        }
        assert_eq!(sent.last().unwrap().as_ref().unwrap().seq, EVENTS);
    }
    let total = (AGENTS as u64 * EVENTS) as i64;
    assert_eq!(pg.count("SELECT COUNT(*) FROM alerts"), total);
    assert_eq!(
        pg.count("SELECT COUNT(DISTINCT (agent_id, seq)) FROM alerts"),
        total
    );
    assert_eq!(
        pg.count("SELECT COUNT(*) FROM alerts WHERE NOT chain_ok"),
        0
    );
    assert_eq!(pg.count("SELECT COUNT(*) FROM gaps"), 0);
    assert_eq!(
        pg.count(&format!(
            "SELECT COUNT(*) FROM agents WHERE last_seq = {EVENTS} AND last_heartbeat_ms = 41"
        )),
        AGENTS as i64
    );
}

#[test]
fn replays_gaps_and_broken_chains_are_caught_across_collectors() {
    let pg = PgCluster::start().unwrap();
    let rt = runtime();
    let a = node(&rt, &location(&pg.url()));
    let b = node(&rt, &location(&pg.url()));
    rt.block_on(async {
        let secret = token(&a.store, 1).await;
        let id = enrol(&a, &keypair(), &secret).await.unwrap();
        let events = chain(&id, 20);
        // Events 1-10 stored through collector A.
        assert_eq!(outcome(&a.writer, &events[..10]).await.unwrap().seq, 10);
        // Through B: event 3 again with other content is refused.
        let (mut forged, _) = events[2].clone();
        forged.observation.as_mut().unwrap().context = "other words".into();
        let forged_body = forged.encode_to_vec();
        let refusal = outcome(&b.writer, &[(forged, forged_body)])
            .await
            .unwrap_err();
        assert_eq!(refusal.code(), Code::AlreadyExists, "{refusal:?}");
        // The same event 3 replayed through B is a duplicate, nothing stored.
        assert_eq!(outcome(&b.writer, &events[2..3]).await.unwrap().status, 2);
        // Event 15 through B: stored, and 11-14 recorded as a gap.
        assert_eq!(outcome(&b.writer, &events[14..15]).await.unwrap().status, 1);
        // Event 12 through A, never stored and now behind: out of order.
        let refusal = outcome(&a.writer, &events[11..12]).await.unwrap_err();
        assert_eq!(refusal.code(), Code::FailedPrecondition, "{refusal:?}");
        // Event 16 through A with a previous-event hash that does not match
        // what B stored as 15: stored, flagged as a broken chain.
        let broken = event(&id, 16, [9; 32], "broken chain");
        let body = broken.encode_to_vec();
        assert_eq!(
            outcome(&a.writer, &[(broken, body)]).await.unwrap().status,
            1
        );
    });
    assert_eq!(pg.count("SELECT COUNT(*) FROM alerts"), 12);
    assert_eq!(
        pg.query("SELECT from_seq, to_seq FROM gaps").unwrap(),
        "11|14"
    );
    assert_eq!(
        pg.query("SELECT seq FROM alerts WHERE NOT chain_ok")
            .unwrap(),
        "16"
    );
    assert_eq!(
        pg.query("SELECT context FROM alerts WHERE seq = 3")
            .unwrap(),
        "typed text 3"
    );
    assert_eq!(pg.count("SELECT last_seq FROM agents"), 16);
}

#[test]
fn a_tokens_uses_are_spent_exactly_once_across_collectors() {
    let pg = PgCluster::start().unwrap();
    let rt = runtime();
    let a = node(&rt, &location(&pg.url()));
    let b = node(&rt, &location(&pg.url()));
    let a = std::sync::Arc::new(a);
    let b = std::sync::Arc::new(b);
    const USES: u32 = 3;
    const DEVICES: usize = 16;
    let results = rt.block_on(async {
        let secret = token(&a.store, USES).await;
        let mut tasks = Vec::new();
        for n in 0..DEVICES {
            let node = if n % 2 == 0 { a.clone() } else { b.clone() };
            let secret = secret.clone();
            tasks.push(tokio::spawn(async move {
                enrol(&node, &keypair(), &secret).await
            }));
        }
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.unwrap());
        }
        results
    });
    let enrolled = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(enrolled, USES as usize, "{results:?}");
    for refused in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
        assert!(
            refused.message().contains("already been used"),
            "{refused:?}"
        );
    }
    assert_eq!(pg.count("SELECT uses FROM tokens"), i64::from(USES));
    assert_eq!(pg.count("SELECT COUNT(*) FROM agents"), i64::from(USES));
    // The token list reads the same on both collectors.
    let (on_a, on_b) = rt.block_on(async {
        (
            a.store.list_tokens().await.unwrap(),
            b.store.list_tokens().await.unwrap(),
        )
    });
    assert_eq!(on_a.len(), 1);
    assert_eq!((on_a[0].uses, on_b[0].uses), (3, 3));
    assert_eq!(on_a[0].state(0), "used up");
}

#[test]
fn bad_configuration_is_refused_with_what_to_fix() {
    let pg = PgCluster::start().unwrap();
    let rt = runtime();
    // Wrong password: says PostgreSQL cannot be reached and where to fix
    // it, and never shows the password.
    let wrong = pg.url_with_password("not-the-password");
    let err = rt
        .block_on(Store::open(&location(&wrong)))
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot reach PostgreSQL"), "{err}");
    assert!(err.contains("[storage] url"), "{err}");
    assert!(err.contains("password authentication failed"), "{err}");
    assert!(!err.contains("not-the-password"), "{err}");
    // Nothing listening.
    let nowhere = format!(
        "postgres://tutela:x@127.0.0.1:{}/postgres",
        tutela_tests::free_port()
    );
    let err = rt
        .block_on(Store::open(&location(&nowhere)))
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot reach PostgreSQL"), "{err}");
    // Not a URL the collector knows.
    let err = Location::new(Path::new("/d"), "mysql://root:secret@db/x")
        .unwrap_err()
        .to_string();
    assert!(err.contains("[storage] url"), "{err}");
    assert!(!err.contains("secret"), "{err}");
    // A schema newer than this collector: refused, not written to.
    rt.block_on(Store::open(&location(&pg.url()))).unwrap();
    pg.query("UPDATE tutela_schema SET version = version + 1")
        .unwrap();
    let err = rt
        .block_on(Store::open(&location(&pg.url())))
        .unwrap_err()
        .to_string();
    assert!(err.contains("a newer collector has upgraded it"), "{err}");
    let err = Writer::start(location(&pg.url()), 10)
        .unwrap_err()
        .to_string();
    let newer = tutela_collector::store::postgres::schema::VERSION + 1;
    assert!(err.contains(&format!("schema is version {newer}")), "{err}");
}

#[test]
fn a_database_that_goes_away_makes_ingest_unavailable_until_it_returns() {
    let pg = PgCluster::start().unwrap();
    let rt = runtime();
    let a = node(&rt, &location(&pg.url()));
    let keys = tutela_collector::ingest::AgentKeys::new(a.store.clone());
    rt.block_on(async {
        let secret = token(&a.store, 1).await;
        let id = enrol(&a, &keypair(), &secret).await.unwrap();
        let events = chain(&id, 8);
        assert_eq!(outcome(&a.writer, &events[..4]).await.unwrap().seq, 4);
        pg.stop().unwrap();
        // Refused as unavailable: the agent keeps its spool and retries.
        let refusal = outcome(&a.writer, &events[4..6]).await.unwrap_err();
        assert_eq!(refusal.code(), Code::Unavailable, "{refusal:?}");
        let lookup = keys.get("ag-never-cached").await.unwrap_err();
        assert_eq!(lookup.code(), Code::Unavailable, "{lookup:?}");
        pg.start_server().unwrap();
        // The agent's retries are stored once the database is back.
        let mut stored = None;
        for _ in 0..120 {
            match outcome(&a.writer, &events[4..]).await {
                Ok(ack) => {
                    stored = Some(ack);
                    break;
                }
                Err(s) => {
                    assert_eq!(s.code(), Code::Unavailable, "{s:?}");
                    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                }
            }
        }
        assert_eq!(stored.expect("stored after the database returned").seq, 8);
        assert!(keys.get(&id).await.unwrap().is_some());
    });
    assert_eq!(pg.count("SELECT COUNT(*) FROM alerts"), 8);
    assert_eq!(
        pg.count("SELECT COUNT(*) FROM alerts WHERE NOT chain_ok"),
        0
    );
    assert_eq!(pg.count("SELECT COUNT(*) FROM gaps"), 0);
}
