//! Rules published from the review console over real HTTP: a technician
//! publishes the full shipped en-GB pack, and an oversized form is refused
//! with an explanation.

use std::net::TcpStream;
use std::time::Duration;

use tutela_tests::console_client::PASSWORD;
use tutela_tests::web::{self, http, url_encode};
use tutela_tests::{Collector, Scratch};

/// Signs in with the test password; returns the session cookie and CSRF token.
fn sign_in(port: u16, name: &str) -> (String, String) {
    web::sign_in(port, name, PASSWORD, "/exemptions")
}

/// The shipped en-GB pack.
fn en_gb_pack() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../rules/packs/en-GB.toml"
    ))
    .unwrap()
}

/// The form body `http` sends for `form`.
fn encoded_len(form: &[(&str, &str)]) -> usize {
    form.iter()
        .map(|(k, v)| url_encode(k).len() + url_encode(v).len() + 2)
        .sum()
}

#[test]
fn the_full_en_gb_pack_is_published_from_the_console_and_an_oversized_form_is_explained() {
    let scratch = Scratch::new("console-publish-large");
    let (mut collector, port) = Collector::with_console(
        scratch.path("collector"),
        &[("tech.one", "technician")],
        PASSWORD,
    )
    .unwrap();
    collector.start().unwrap();
    tutela_tests::wait_for("the console to listen", Duration::from_secs(30), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .unwrap();
    let (tech, csrf) = sign_in(port, "tech.one");
    // As a browser sends a textarea: CRLF line ends.
    let publish = |pack: &str| {
        let pack = pack.replace('\n', "\r\n");
        let form = [
            ("csrf", csrf.as_str()),
            ("action", "publish"),
            ("pack", pack.as_str()),
        ];
        (
            encoded_len(&form),
            http(port, "POST", "/rules/publish", &tech, &form),
        )
    };

    // The shipped pack as it is, at whatever version it has reached.
    let shipped = en_gb_pack();
    let v = tutela_rules::Pack::parse(&shipped, "en-GB.toml")
        .unwrap()
        .version;
    let (_, r) = publish(&shipped);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body
            .contains(&format!("Published live version {v} of en-GB")),
        "{}",
        r.body
    );

    // A new version of it, with its notes grown past the default 256 KiB form limit.
    let mut next = shipped
        .replacen(
            &format!("\nversion = {v}\n"),
            &format!("\nversion = {}\n", v + 1),
            1,
        )
        .replacen(
            &format!("[[changelog]]\nversion = {v}\n"),
            &format!("[[changelog]]\nversion = {}\ndate = \"2026-11-22\"\nnotes = \"Reviewer notes added.\"\n\n[[changelog]]\nversion = {v}\n", v + 1),
            1,
        );
    for n in 0..2000 {
        next.push_str(&format!(
            "# Reviewer note {n}: checked against the corpus, no change to the terms.\n"
        ));
    }
    let (size, r) = publish(&next);
    assert!(size > 256 * 1024, "the form is {size} bytes");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body
            .contains(&format!("Published live version {} of en-GB", v + 1)),
        "{}",
        r.body
    );
    let status = tutela_tests::run_ok(collector.cmd().args(["rules", "status"])).unwrap();
    assert!(status.contains(&format!("live: {}", v + 1)), "{status}");
    let db = rusqlite::Connection::open(collector.dir.join("tutela.db")).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    let stored: String = db
        .query_row(
            "SELECT pack_toml FROM rule_bundles WHERE shadow = 0 AND version = ?1",
            [v + 1],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        stored, next,
        "the whole pack was stored, line ends normalised"
    );

    // Above 2 MiB the page says what to do instead; nothing is published.
    let mut huge = next.replacen(
        &format!("\nversion = {}\n", v + 1),
        &format!("\nversion = {}\n", v + 2),
        1,
    );
    huge.push_str(&"# padding\n".repeat(120_000));
    let (size, r) = publish(&huge);
    assert!(size > 2 * 1024 * 1024, "the form is {size} bytes");
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(r.body.contains("at most 2048 KiB"), "{}", r.body);
    assert!(r.body.contains("tutela-collector rules push"), "{}", r.body);
    let status = tutela_tests::run_ok(collector.cmd().args(["rules", "status"])).unwrap();
    assert!(status.contains(&format!("live: {}", v + 1)), "{status}");

    // Other forms keep the default limit.
    let reason = "x".repeat(300 * 1024);
    let r = http(
        port,
        "POST",
        "/exemptions/add",
        &tech,
        &[("csrf", &csrf), ("reason", &reason)],
    );
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(r.body.contains("at most 256 KiB"), "{}", r.body);
}
