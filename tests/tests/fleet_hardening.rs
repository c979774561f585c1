//! Enrolment and rule streams at their edges, against the real collector:
//! a revoked key cannot come back by enrolling again, a known key enrolled
//! with another group's token moves to that group, a revoked agent's open
//! rule stream is ended, and revoking a re-keyed family takes every member.

use std::process::Stdio;
use std::time::{Duration, Instant};

use prost::Message;
use tonic::Code;
use tutela_proto::v1::rules_update::Update;
use tutela_proto::v1::{ExemptionSet, RulesUpdate};
use tutela_tests::agent::subscribe;
use tutela_tests::packs::{small_pack, weapons, About};
use tutela_tests::{run_failing, run_ok, Agent, Collector, Scratch};

fn started(name: &str) -> (Scratch, Collector) {
    let scratch = Scratch::new(name);
    let mut collector = Collector::init(scratch.path("collector")).unwrap();
    collector.start().unwrap();
    (scratch, collector)
}

/// An agent in `scratch`'s folder `name`, enrolled into group lab-1.
fn enrolled_in_lab(scratch: &Scratch, collector: &Collector, name: &str) -> Agent {
    let agent = Agent::new(scratch.path(name));
    agent
        .enrol(&collector.token(&["--group", "lab-1"]).unwrap())
        .unwrap();
    agent
}

/// The `token list` line of the token labelled `label`.
fn token_line(collector: &Collector, label: &str) -> String {
    let list = run_ok(collector.cmd().args(["token", "list"])).unwrap();
    list.lines()
        .find(|l| l.ends_with(label))
        .unwrap_or_else(|| panic!("{label} not listed:\n{list}"))
        .to_owned()
}

/// The `agents list` line of agent `id`.
fn agent_line(collector: &Collector, id: &str) -> String {
    let list = run_ok(collector.cmd().args(["agents", "list"])).unwrap();
    list.lines()
        .find(|l| l.starts_with(id))
        .unwrap_or_else(|| panic!("{id} not listed:\n{list}"))
        .to_owned()
}

/// The next update on `stream`, failing after `within`.
async fn next(
    stream: &mut tonic::Streaming<RulesUpdate>,
    within: Duration,
) -> Result<Option<RulesUpdate>, tonic::Status> {
    tokio::time::timeout(within, stream.message())
        .await
        .expect("an update or the end of the stream in time")
}

fn exemption_set(update: RulesUpdate) -> ExemptionSet {
    match update.update {
        Some(Update::Exemptions(signed)) => ExemptionSet::decode(signed.body.as_slice()).unwrap(),
        other => panic!("expected an exemption set, got {other:?}"),
    }
}

fn pack(version: u32) -> String {
    let about = About::new("hardening", "Hardening test pack", "A small test pack.");
    small_pack(&about, version, &[weapons(&["zip gun"])])
}

#[test]
fn a_revoked_key_enrolling_again_is_refused_and_the_token_is_not_used() {
    let (scratch, collector) = started("revoked-reenrol");
    let agent = enrolled_in_lab(&scratch, &collector, "pc01");
    let first_id = agent.agent_id();
    run_ok(collector.cmd().args(["agents", "revoke", &first_id])).unwrap();

    let token = collector
        .token(&["--group", "lab-1", "--label", "second"])
        .unwrap();
    let out = run_failing(agent.cmd().args(["enrol", &token]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("key was revoked") && err.contains("delete agent.key"),
        "{err}"
    );
    assert!(
        token_line(&collector, "second").contains("0/1"),
        "the refused enrolment used no token slot"
    );
    assert!(agent_line(&collector, &first_id).contains("revoked=true"));

    // Doing what the message says enrols the device as a new identity.
    std::fs::remove_file(agent.dir.join("agent.key")).unwrap();
    std::fs::remove_file(agent.dir.join("enrolment.toml")).unwrap();
    agent.enrol(&token).unwrap();
    assert_ne!(agent.agent_id(), first_id);
    assert!(token_line(&collector, "second").contains("1/1"));
}

#[test]
fn a_known_key_enrolled_with_another_groups_token_moves_and_gets_that_groups_exemptions() {
    let (scratch, collector) = started("regroup");
    let agent = enrolled_in_lab(&scratch, &collector, "pc01");
    let id = agent.agent_id();

    // An unknown category is refused, naming the valid ones.
    let out = run_failing(collector.cmd().args([
        "exemption",
        "add",
        "--group",
        "year-10",
        "--category",
        "drug",
        "--until",
        "7d",
        "--reason",
        "PSHE",
    ]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown category `drug`") && err.contains("drugs"),
        "{err}"
    );
    // A group no agent is in yet: added, with a warning naming the groups there are.
    let out = collector
        .cmd()
        .args([
            "exemption",
            "add",
            "--group",
            "year-10",
            "--category",
            "drugs",
            "--until",
            "7d",
            "--reason",
            "PSHE on drugs",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no enrolled agent is in group `year-10`") && err.contains("lab-1"),
        "{err}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("in force"));

    // The same device, same key, enrolled with a year-10 token.
    let out = agent
        .enrol(&collector.token(&["--group", "year-10"]).unwrap())
        .unwrap();
    assert!(out.contains("group year-10"), "{out}");
    assert_eq!(agent.agent_id(), id, "the identity is kept");
    assert!(
        agent_line(&collector, &id).contains("group=year-10"),
        "the collector moved it"
    );
    assert!(
        collector.log_text().contains("agent moved"),
        "the move is logged"
    );

    // Its rule stream carries year-10's exemptions (the collector reads
    // publications every 250 ms, so a first set may still be empty).
    let rt = tokio::runtime::Runtime::new().unwrap();
    let set = rt.block_on(async {
        let mut stream = subscribe(&agent).await;
        loop {
            let set = exemption_set(
                next(&mut stream, Duration::from_secs(30))
                    .await
                    .unwrap()
                    .unwrap(),
            );
            if !set.exemptions.is_empty() {
                break set;
            }
        }
    });
    assert_eq!(set.group, "year-10");
    assert_eq!(set.exemptions.len(), 1, "{set:?}");
    assert_eq!(set.exemptions[0].category, "drugs");

    // Now that an agent is in year-10, no warning.
    let out = collector
        .cmd()
        .args([
            "exemption",
            "add",
            "--group",
            "year-10",
            "--term",
            "cannabis",
            "--until",
            "7d",
            "--reason",
            "PSHE on drugs",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("warning"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_revoked_agents_open_rule_stream_ends_without_further_updates() {
    let (scratch, collector) = started("revoked-stream");
    let quiet = enrolled_in_lab(&scratch, &collector, "pc01");
    let busy = Agent::new(scratch.path("pc02"));
    busy.enrol(&collector.token(&["--group", "lab-1"]).unwrap())
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut quiet_stream = subscribe(&quiet).await;
        let mut busy_stream = subscribe(&busy).await;
        // Each first receives its group's (empty) exemption set.
        for s in [&mut quiet_stream, &mut busy_stream] {
            let set = exemption_set(next(s, Duration::from_secs(30)).await.unwrap().unwrap());
            assert!(set.exemptions.is_empty());
        }

        // Revoked with nothing published since: the periodic check ends the stream.
        run_ok(
            collector
                .cmd()
                .args(["agents", "revoke", &quiet.agent_id()]),
        )
        .unwrap();
        let started = Instant::now();
        let ended = next(&mut quiet_stream, Duration::from_secs(120)).await;
        let status = ended.expect_err("the stream ends with an error");
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        assert!(status.message().contains("revoked"), "{status:?}");
        eprintln!(
            "quiet stream ended {:?} after revocation",
            started.elapsed()
        );

        // Revoked, then a pack is published at once: the stream ends rather
        // than carrying the new bundle to the revoked identity.
        run_ok(collector.cmd().args(["agents", "revoke", &busy.agent_id()])).unwrap();
        let file = scratch.path("pack.toml");
        std::fs::write(&file, pack(1)).unwrap();
        run_ok(collector.cmd().args(["rules", "push"]).arg(&file)).unwrap();
        match next(&mut busy_stream, Duration::from_secs(120)).await {
            Err(status) => assert_eq!(status.code(), Code::PermissionDenied, "{status:?}"),
            Ok(update) => panic!("a revoked agent was sent {update:?}"),
        }
    });
}

#[test]
fn revoking_with_descendants_takes_an_identity_rekeyed_while_it_waits() {
    let (scratch, collector) = started("revoke-family");
    let agent = enrolled_in_lab(&scratch, &collector, "pc01");
    let root = agent.agent_id();
    // Console tables exist (the revoke audits), so only the revocation writes.
    run_ok(collector.cmd().args(["agents", "clear-flag", &root])).unwrap();

    // Another writer holds the database while the technician revokes.
    let mut db = rusqlite::Connection::open(collector.dir.join("tutela.db")).unwrap();
    let tx = db
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .unwrap();
    let revoke = collector
        .cmd()
        .args(["agents", "revoke", &root, "--with-descendants"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    // Meanwhile the root is re-keyed (a cloned station) and that commits first.
    tx.execute(
        "INSERT INTO agents (agent_id, public_key, station, grp, enrolled_ms, rekeyed_from)
         VALUES ('ag-late-clone', x'0102030405', 'LAB1-PC02', 'lab-1', 0, ?1)",
        [&root],
    )
    .unwrap();
    tx.commit().unwrap();
    let out = revoke.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(agent_line(&collector, &root).contains("revoked=true"));
    assert!(
        agent_line(&collector, "ag-late-clone").contains("revoked=true"),
        "the identity re-keyed while the revocation waited is revoked too: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}
