//! TLS to PostgreSQL: a real PostgreSQL with `ssl = on` and a test CA's
//! certificate, refusing connections without TLS. `serve` connects with
//! `sslmode=verify-full` and `[storage] ca`, over TLS (the server's own
//! view says so); the wrong CA, a host name the certificate does not name,
//! or no CA at all stop `serve` with a message saying what to fix.

use tutela_tests::postgres::{PgCluster, TestCa};
use tutela_tests::{run_failing, run_ok, Collector, Scratch};

/// The server's name in its certificate; the tests reach it at 127.0.0.1.
const NAME: &str = "db.school.example";

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The cluster's URL with `host` as the name (connecting to 127.0.0.1)
/// and `params` added.
fn url(pg: &PgCluster, host: &str, params: &str) -> String {
    let plain = pg.url();
    let named = plain.replace("@127.0.0.1:", &format!("@{host}:"));
    format!("{named}?hostaddr=127.0.0.1&{params}")
}

/// Sets [storage] and runs `serve`, which must fail; returns what it said.
fn refused(collector: &Collector, storage: &str) -> String {
    collector.set_section("storage", storage).unwrap();
    let out = run_failing(collector.cmd().arg("serve"));
    text(&out)
}

#[test]
fn serve_uses_verified_tls_and_says_what_to_fix_when_it_cannot() {
    let pg = PgCluster::start().unwrap();
    let ca = TestCa::new(&[NAME]).unwrap();
    pg.enable_tls(&ca.cert_pem, &ca.key_pem).unwrap();
    let other = TestCa::new(&[NAME]).unwrap();
    let scratch = Scratch::new("postgres-tls");
    let mut collector = Collector::init(scratch.path("collector")).unwrap();
    std::fs::write(collector.dir.join("db-ca.pem"), &ca.ca_pem).unwrap();
    std::fs::write(collector.dir.join("other-ca.pem"), &other.ca_pem).unwrap();

    // Without TLS the server refuses the collector.
    let said = refused(
        &collector,
        &format!("url = \"{}\"", url(&pg, NAME, "connect_timeout=10")),
    );
    assert!(said.contains("cannot reach PostgreSQL"), "{said}");

    // The wrong CA.
    let said = refused(
        &collector,
        &format!(
            "url = \"{}\"\nca = \"other-ca.pem\"",
            url(&pg, NAME, "sslmode=verify-full")
        ),
    );
    assert!(
        said.contains("not signed by the CA in [storage] ca"),
        "{said}"
    );
    // A name the certificate does not name.
    let said = refused(
        &collector,
        &format!(
            "url = \"{}\"\nca = \"db-ca.pem\"",
            url(&pg, "other.school.example", "sslmode=verify-full")
        ),
    );
    assert!(said.contains("not issued for the host"), "{said}");
    // No CA for verify-full.
    let said = refused(
        &collector,
        &format!("url = \"{}\"", url(&pg, NAME, "sslmode=verify-full")),
    );
    assert!(said.contains("set [storage] ca"), "{said}");
    // An unreadable CA file.
    let said = refused(
        &collector,
        &format!(
            "url = \"{}\"\nca = \"missing.pem\"",
            url(&pg, NAME, "sslmode=verify-full")
        ),
    );
    assert!(said.contains("missing.pem cannot be read"), "{said}");

    // The right CA and name: serving, over TLS.
    collector
        .set_section(
            "storage",
            &format!(
                "url = \"{}\"\nca = \"db-ca.pem\"",
                url(&pg, NAME, "sslmode=verify-full")
            ),
        )
        .unwrap();
    collector.start().unwrap();
    let tokens = run_ok(collector.cmd().args(["token", "list"])).unwrap();
    assert!(tokens.contains("state"), "{tokens}");
    collector.token(&["--group", "lab-1"]).unwrap();
    let over_tls = pg.count(
        "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
         WHERE a.application_name = 'tutela-collector' AND s.ssl",
    );
    let in_clear = pg.count(
        "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
         WHERE a.application_name = 'tutela-collector' AND NOT s.ssl",
    );
    assert!(over_tls >= 1, "the collector's connections use TLS");
    assert_eq!(in_clear, 0);
    assert_eq!(pg.count("SELECT count(*) FROM tokens"), 1);
}
