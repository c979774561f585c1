//! A device moved to a school whose notice has an older version than the
//! one it holds, on SQLite and on PostgreSQL. The trust's notice for `lab`
//! is version 1, North's own version 2; a North station whose pupil
//! accepted North's notice moves to South, which shows the trust's. The
//! collector signs the trust's version 1 again under the group's next issue
//! and the agent's notice code, fed from the station's real rule stream over
//! gRPC on loopback, takes it and shows it at once; its acknowledgement is
//! stored and counted. Replays of the notices issued before (South's
//! version 1 as first signed, North's version 2) are still refused, and
//! South's own station receives the same version again without its pupil
//! being asked again. Moved back to North from the Fleet page, it takes
//! North's version 2 issued again, which its pupil is not asked again.

mod tenants_common;

use std::time::{Duration, Instant};

use tenants_common::{subscribe, Db, PASSWORD};
use tutela_agent::identity::{Enrolment, Identity};
use tutela_agent::notice::{issue_of, Acknowledger, Applied, NoticeError, Notices};
use tutela_proto::v1::notices_client::NoticesClient;
use tutela_proto::v1::rules_update::Update;
use tutela_proto::v1::{Notice, RulesUpdate, SignedNotice};
use tutela_tests::postgres::PgCluster;
use tutela_tests::web::{http, sign_in};
use tutela_tests::{run_ok, Agent, Collector, Scratch};

const WAIT: Duration = Duration::from_secs(30);

/// One station: its agent, the agent's notice code and its rule stream.
struct Station {
    agent: Agent,
    notices: Notices,
    stream: tonic::Streaming<RulesUpdate>,
    ackr: Acknowledger,
}

impl Station {
    async fn enrol(c: &Collector, scratch: &Scratch, name: &str, school: &str, user: &str) -> Self {
        let agent = Agent::new(scratch.path(name));
        agent
            .enrol(&c.token(&["--school", school, "--group", "lab"]).unwrap())
            .unwrap();
        let enrolment = Enrolment::load(&agent.dir).unwrap();
        let key = hex::decode(&enrolment.bundle_key).unwrap();
        let notices = Notices::load(&agent.dir, &enrolment.group, &key);
        let stream = subscribe(&agent).await;
        let ackr = Acknowledger {
            identity: std::sync::Arc::new(Identity::load_or_create(&agent.dir).unwrap()),
            agent_id: enrolment.agent_id,
            user: user.into(),
            station: format!("{name}-PC"),
        };
        Self {
            agent,
            notices,
            stream,
            ackr,
        }
    }

    /// The next notice on the stream, as signed, and what applying it did.
    async fn next_notice(&mut self, what: &str) -> (SignedNotice, Applied) {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let update = tokio::time::timeout(left, self.stream.message())
                .await
                .unwrap_or_else(|_| panic!("{what}: no notice in time"))
                .unwrap()
                .unwrap_or_else(|| panic!("{what}: the stream ended"));
            if let Some(Update::Notice(signed)) = update.update {
                let applied = self
                    .notices
                    .accept(signed.clone())
                    .unwrap_or_else(|e| panic!("{what}: refused: {e}"));
                return (signed, applied);
            }
        }
    }

    /// The pupil acknowledges the held notice; the collector stores it.
    async fn acknowledge(&self) {
        let signed = self.notices.acknowledge(&self.ackr).expect("a notice held");
        let enrolment = Enrolment::load(&self.agent.dir).unwrap();
        let channel = tutela_agent::pinning::connect(&enrolment.collector, &enrolment.fingerprint)
            .await
            .unwrap();
        let reply = NoticesClient::new(channel)
            .acknowledge(signed)
            .await
            .unwrap_or_else(|s| panic!("acknowledgement refused: {}", s.message()));
        assert!(reply.into_inner().stored);
    }
}

fn decode(signed: &SignedNotice) -> Notice {
    prost::Message::decode(signed.body.as_slice()).unwrap()
}

/// `notice acks --group lab --school <school>`: (accepted, not yet).
fn standing(c: &Collector, school: &str) -> (Vec<String>, Vec<String>) {
    let out = run_ok(c.cmd().args([
        "notice", "acks", "--group", "lab", "--json", "--school", school,
    ]))
    .unwrap();
    let a: serde_json::Value = serde_json::from_str(&out).unwrap();
    let users = |list: &str| {
        a[list]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["user"].as_str().unwrap().to_owned())
            .collect()
    };
    (users("accepted"), users("pending"))
}

async fn scenario(pg: Option<&PgCluster>, name: &str) {
    let scratch = Scratch::new(name);
    let (mut c, db) = Db::collector(scratch.path("collector"), pg);
    let port = tenants_common::console_with_trust_and_north(&c, &scratch, "technician", "tech");
    // The trust's notice for `lab` (version 1), then North's own (2); each
    // pupil is asked once per version.
    for (text, school) in [
        ("This computer is monitored for safeguarding.", None),
        ("North Primary monitors this computer.", Some("north")),
    ] {
        let path = scratch.path("notice.txt");
        std::fs::write(&path, text).unwrap();
        let mut cmd = c.cmd();
        cmd.args([
            "notice",
            "set",
            "--group",
            "lab",
            "--mode",
            "once-per-version",
        ])
        .arg("--file")
        .arg(&path);
        if let Some(school) = school {
            cmd.args(["--school", school]);
        }
        run_ok(&mut cmd).unwrap();
    }
    c.start().unwrap();

    let mut moved = Station::enrol(&c, &scratch, "moved", "north", "pupil.m1").await;
    let mut south = Station::enrol(&c, &scratch, "south", "south", "pupil.s1").await;
    let (north_v2, applied) = moved.next_notice("North's notice").await;
    assert_eq!(applied, Applied::Shown);
    assert_eq!(
        (decode(&north_v2).version, issue_of(&decode(&north_v2))),
        (2, 2)
    );
    moved.acknowledge().await;
    let (trust_v1, applied) = south.next_notice("the trust's notice at South").await;
    assert_eq!(applied, Applied::Shown);
    assert_eq!(
        (decode(&trust_v1).version, issue_of(&decode(&trust_v1))),
        (1, 1)
    );
    south.acknowledge().await;
    assert!(!south.notices.due_for("pupil.s1", true));
    assert_eq!(standing(&c, "south"), (vec!["pupil.s1".to_owned()], vec![]));

    // The station moves to South: the trust's version 1 is issued again.
    let out = run_ok(
        c.cmd()
            .args(["agents", "move", &moved.ackr.agent_id, "--school", "south"]),
    )
    .unwrap();
    assert!(out.contains("issued again (issue 3)"), "{out}");
    let (reissued, applied) = moved.next_notice("South's notice after the move").await;
    let notice = decode(&reissued);
    assert_eq!(
        applied,
        Applied::Shown,
        "the older-numbered notice is shown"
    );
    assert_eq!((notice.version, notice.issue), (1, 3));
    assert_eq!(notice.text, decode(&trust_v1).text);
    let held = moved.notices.held().unwrap();
    assert_eq!(
        (held.version, held.text.as_str()),
        (1, "This computer is monitored for safeguarding.")
    );
    assert!(moved.notices.due_for("pupil.m1", false), "shown at once");
    // Until its pupil accepts it, South counts them as not yet.
    assert_eq!(
        standing(&c, "south"),
        (vec!["pupil.s1".to_owned()], vec!["pupil.m1".to_owned()])
    );

    // Replays of the notices issued before it are refused.
    for (replay, issue) in [(trust_v1.clone(), 1), (north_v2, 2)] {
        match moved.notices.accept(replay) {
            Err(NoticeError::Older { offered, held: 3 }) => assert_eq!(offered, issue),
            other => panic!("a replayed notice (issue {issue}) was not refused: {other:?}"),
        }
    }
    assert_eq!(moved.notices.held().unwrap().version, 1);

    // South's own station receives the same version again: kept, and its
    // pupil is not asked again.
    let (again, applied) = south.next_notice("the notice issued again at South").await;
    assert_eq!(applied, Applied::Reissued);
    assert_eq!(again, reissued);
    assert!(!south.notices.due_for("pupil.s1", true));
    assert!(!south.notices.due_for("pupil.s1", false));

    // The moved pupil accepts; the collector takes the acknowledgement of
    // the body issued again, and one of the body first issued still counts.
    moved.acknowledge().await;
    assert_eq!(
        standing(&c, "south"),
        (vec!["pupil.m1".to_owned(), "pupil.s1".to_owned()], vec![])
    );
    assert_eq!(standing(&c, "north"), (vec![], vec![]));
    assert_eq!(
        db.one("SELECT COUNT(*) FROM notice_acks WHERE \"user\" = 'pupil.s1'"),
        "1",
        "South's pupil acknowledged once"
    );
    assert_eq!(db.one("SELECT COUNT(*) FROM notice_reissued"), "1");
    assert_eq!(
        db.one("SELECT COUNT(*) FROM notices"),
        "2",
        "no new version"
    );

    // The trust's technician moves it back to North from the Fleet page:
    // North's version 2 is issued again (issue 4) and taken; its pupil,
    // who accepted version 2 on this station, is not asked again.
    tutela_tests::console_client::wait_for_port(port);
    let tech = sign_in(port, "tech-trust", PASSWORD, "/fleet");
    let r = http(
        port,
        "POST",
        "/fleet/move-school",
        &tech.0,
        &[
            ("csrf", &tech.1),
            ("agent", &moved.ackr.agent_id),
            ("school", "north"),
        ],
    );
    assert_eq!(r.status, 303, "{}", r.body);
    let (back, applied) = moved.next_notice("North's notice after moving back").await;
    assert_eq!(applied, Applied::Shown);
    assert_eq!((decode(&back).version, decode(&back).issue), (2, 4));
    assert!(!moved.notices.due_for("pupil.m1", true));
    assert_eq!(db.one("SELECT COUNT(*) FROM notice_reissued"), "2");
    c.kill9();
}

#[tokio::test(flavor = "multi_thread")]
async fn on_sqlite_a_moved_device_takes_its_new_schools_older_numbered_notice() {
    scenario(None, "tenants-notice-move-sqlite").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn on_postgresql_a_moved_device_takes_its_new_schools_older_numbered_notice() {
    let pg = PgCluster::start().unwrap();
    scenario(Some(&pg), "tenants-notice-move-postgres").await;
}
