//! Webhooks per school, on SQLite and on PostgreSQL: a `[[webhooks.targets]]`
//! entry with `school = "north"` receives North's urgent alerts only, named
//! by North's name; one without `school` receives every school's, as
//! before; a target naming a school that does not exist stops `serve`,
//! saying so.

mod tenants_common;

use std::time::Duration;

use tenants_common::{now_ms, Db};
use tutela_tests::postgres::PgCluster;
use tutela_tests::web::WebhookReceiver;
use tutela_tests::{free_port, run_ok, wait_for, Scratch};

const SECRET: &str = "a webhook signing secret";

fn scenario(pg: Option<&PgCluster>, name: &str) {
    let scratch = Scratch::new(name);
    let (mut c, db) = Db::collector(scratch.path("collector"), pg);
    c.set_section("console", "enabled = false").unwrap();
    c.set_section("mail", "console_url = \"https://console.trust.test\"")
        .unwrap();
    for (id, title) in [("north", "North Primary"), ("south", "South Academy")] {
        run_ok(c.cmd().args(["schools", "add", id, "--name", title])).unwrap();
    }
    let receiver_port = free_port();
    let base = format!("http://127.0.0.1:{receiver_port}");
    let secret = scratch.path("secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    let webhooks = |schools: &[(&str, &str)]| {
        let mut section =
            "school = \"Hill Trust\"\ninterval_secs = 1\nretry_initial_secs = 1\nretry_max_secs = 2\n"
                .to_owned();
        for (target, school) in schools {
            section.push_str(&format!(
                "[[webhooks.targets]]\nname = \"{target}\"\nformat = \"json\"\nurl = \"{base}/{target}\"\nsecret_file = \"{}\"\n",
                secret.display()
            ));
            if !school.is_empty() {
                section.push_str(&format!("school = \"{school}\"\n"));
            }
        }
        section
    };

    // A school that does not exist: serve stops and says so.
    c.set_section("webhooks", &webhooks(&[("west", "west")]))
        .unwrap();
    let refused = c.start().expect_err("serve with a webhook for no school");
    assert!(
        refused.to_string().contains("there is no school \"west\""),
        "{refused}"
    );

    c.set_section(
        "webhooks",
        &webhooks(&[("north", "north"), ("south", "south"), ("trust", "")]),
    )
    .unwrap();
    let log = scratch.path("received.jsonl");
    let _receiver = WebhookReceiver::start(receiver_port, &log);
    c.start().unwrap();

    // Urgent alerts after the start: one of North's, two of South's, and a
    // severity-3 one of North's that no target posts.
    let byte = db.blob("00");
    let now = now_ms();
    for (n, (school, severity)) in [("north", 5), ("south", 5), ("south", 4), ("north", 3)]
        .iter()
        .enumerate()
    {
        db.exec(&format!(
            "INSERT INTO alerts (event_id, agent_id, seq, time_ms, received_ms, \"user\", station,
                source, context, app, app_path, window_title, url, search_query, category,
                severity, rule_id, term, matches, rules_version, body, signature, body_hash, school)
             VALUES ('ev-{n}', 'ag-{school}', {n} + 1, {now}, {now}, 'pupil.{school}', '{school}-PC01',
                'typed', 'context', 'firefox', '', '', '', '', 'suicide', {severity}, 'suicide/seed',
                'term', '[]', 7, {byte}, {byte}, {byte}, '{school}')"
        ));
    }
    let received = || -> Vec<serde_json::Value> {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    wait_for("three webhook messages", Duration::from_secs(30), || {
        received().len() >= 3
    })
    .unwrap();
    // Another interval: nothing more arrives.
    std::thread::sleep(Duration::from_secs(3));
    let mut seen: Vec<(String, String, i64)> = received()
        .iter()
        .map(|r| {
            let body: serde_json::Value =
                serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
            (
                r["path"].as_str().unwrap().to_owned(),
                body["school"].as_str().unwrap_or_default().to_owned(),
                body["count"].as_i64().unwrap(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("/north".to_owned(), "North Primary".to_owned(), 1),
            ("/south".to_owned(), "South Academy".to_owned(), 2),
            ("/trust".to_owned(), "Hill Trust".to_owned(), 3),
        ],
        "a school's target gets its school's urgent alerts, the trust's every school's"
    );
    c.kill9();
}

#[test]
fn on_sqlite_a_schools_webhook_receives_only_its_schools_urgent_alerts() {
    scenario(None, "tenants-webhooks-sqlite");
}

#[test]
fn on_postgresql_a_schools_webhook_receives_only_its_schools_urgent_alerts() {
    let pg = PgCluster::start().unwrap();
    scenario(Some(&pg), "tenants-webhooks-postgres");
}
