//! Helpers shared by the schools-as-tenants tests: two schools' agents,
//! alerts and reports, a direct look at the store, and console requests.
#![allow(dead_code)]

use std::time::{SystemTime, UNIX_EPOCH};

use tutela_agent::event::{seal, Evidence};
use tutela_agent::identity::{Enrolment, Identity};
use tutela_tests::postgres::PgCluster;
use tutela_tests::typed::TypedMatch;
use tutela_tests::web::{field, http, Reply};

pub const PASSWORD: &str = "correct horse battery staple";
pub const SCHOOLS: [&str; 2] = ["north", "south"];
pub const ROLES: [&str; 5] = ["dsl", "deputy-dsl", "head", "technician", "auditor"];

#[allow(unused_imports)] // not every tenants test subscribes
pub use tutela_tests::agent::subscribe;

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A synthetic screenshot.
pub fn jpeg() -> Vec<u8> {
    let img = image::RgbImage::from_fn(64, 40, |x, y| image::Rgb([x as u8, y as u8, 90]));
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80)
        .encode_image(&img)
        .unwrap();
    out
}

/// Where the scenario's rows are, to look at them directly.
pub enum Db<'a> {
    Sqlite(std::path::PathBuf),
    Pg(&'a PgCluster),
}

impl<'a> Db<'a> {
    /// A new collector in `dir`, on PostgreSQL when `pg` is given (else on its
    /// own SQLite store), and where its rows are.
    pub fn collector(
        dir: std::path::PathBuf,
        pg: Option<&'a PgCluster>,
    ) -> (tutela_tests::Collector, Db<'a>) {
        let c = tutela_tests::Collector::init(dir).unwrap();
        let db = match pg {
            Some(pg) => {
                c.set_section("storage", &format!("url = \"{}\"", pg.url()))
                    .unwrap();
                Db::Pg(pg)
            }
            None => Db::Sqlite(c.dir.clone()),
        };
        (c, db)
    }
}

impl Db<'_> {
    /// The first column of the first row of `sql`, as text.
    pub fn one(&self, sql: &str) -> String {
        match self {
            Db::Sqlite(dir) => {
                let conn = rusqlite::Connection::open(dir.join("tutela.db")).unwrap();
                conn.query_row(sql, [], |r| {
                    Ok(match r.get_ref(0)? {
                        rusqlite::types::ValueRef::Integer(i) => i.to_string(),
                        rusqlite::types::ValueRef::Text(t) => {
                            String::from_utf8_lossy(t).into_owned()
                        }
                        other => format!("{other:?}"),
                    })
                })
                .unwrap()
            }
            Db::Pg(pg) => pg.query(sql).unwrap(),
        }
    }

    pub fn id(&self, sql: &str) -> i64 {
        self.one(sql).parse().unwrap()
    }

    /// Runs statements `sql` (written for both engines).
    pub fn exec(&self, sql: &str) {
        match self {
            Db::Sqlite(dir) => rusqlite::Connection::open(dir.join("tutela.db"))
                .unwrap()
                .execute_batch(sql)
                .unwrap(),
            Db::Pg(pg) => {
                pg.query(sql).unwrap();
            }
        }
    }

    /// A binary literal of the bytes `hex` in this engine's SQL.
    pub fn blob(&self, hex: &str) -> String {
        match self {
            Db::Sqlite(_) => format!("x'{hex}'"),
            Db::Pg(_) => format!("'\\x{hex}'"),
        }
    }
}

/// Streams a pupil's alert with a capture and a staff member's alert from
/// the agent enrolled in `dir`, both marked with `school`'s secret.
pub fn send(dir: &std::path::Path, school: &str) {
    let enrolment = Enrolment::load(dir).unwrap();
    let identity = Identity::load_or_create(dir).unwrap();
    let seeds = [
        (
            format!("pupil.{school}"),
            format!("SECRET-{school} i want to kill myself"),
            "kill myself",
            "suicide",
            5,
            true,
        ),
        (
            format!("t_{school}"),
            format!("SECRET-{school} staff how to hide a weapon"),
            "weapon",
            "weapons",
            4,
            false,
        ),
    ];
    let mut prev = [0; 32];
    let mut events = Vec::new();
    for (n, (user, context, word, category, severity, capture)) in seeds.iter().enumerate() {
        let typed = TypedMatch {
            time_ms: now_ms() - 60_000 + n as i64,
            user,
            station: &format!("{school}-PC01"),
            context,
            word,
            category,
            severity: *severity,
        };
        let evidence = capture.then(|| Evidence {
            jpeg: jpeg(),
            width: 64,
            height: 40,
        });
        let sealed = seal(
            &identity,
            &enrolment.agent_id,
            n as u64 + 1,
            prev,
            0,
            typed.draft(evidence),
        );
        prev = sealed.body_hash();
        events.push(sealed.to_wire());
    }
    tutela_tests::ingest::stream_stored(&enrolment, events, seeds.len() as u64);
}

/// Sends a pupil's report from `school`'s report page.
pub fn report(port: u16, school: &str) {
    let form = http(port, "GET", &format!("/concern?school={school}"), "", &[]);
    assert_eq!(form.status, 200, "{}", form.body);
    let token = field(&form.body, "token").expect("a form token");
    assert_eq!(field(&form.body, "school").as_deref(), Some(school));
    let sent = http(
        port,
        "POST",
        "/concern",
        "",
        &[
            ("token", &token),
            ("school", school),
            ("name", &format!("pupil.{school}")),
            (
                "text",
                &format!("SECRET-{school} report: someone is hurting me"),
            ),
        ],
    );
    assert_eq!(sent.status, 303, "{}", sent.body);
}

/// One school's rows, as the test refers to them.
pub struct Rows {
    pub pupil: i64,
    pub staff: i64,
    pub report: i64,
    pub token: String,
    pub agent: String,
}

/// The alert ids a queue page lists.
pub fn listed(body: &str) -> Vec<i64> {
    body.match_indices("<tr data-id=\"")
        .filter_map(|(at, m)| {
            let rest = &body[at + m.len()..];
            rest[..rest.find('"')?].parse().ok()
        })
        .collect()
}

pub fn refused(r: &Reply) -> bool {
    r.status == 403 || r.status == 404
}

/// What of `school`'s data a body must not show (the prober's own words
/// aside: its subject-access request in the audit log, its filter's value).
pub fn leaks<'a>(body: &str, school: &str, rows: &'a Rows) -> Option<&'a str> {
    let body = body
        .replace(&format!("user:pupil.{school}"), "")
        .replace(&format!("value=\"dsl-{school}\""), "");
    let marks = [
        format!("SECRET-{school}"),
        format!("{school}-PC01"),
        format!("pupil.{school}"),
        format!("dsl-{school}"),
    ];
    marks
        .iter()
        .find(|m| body.contains(m.as_str()))
        .map(|_| "a mark of the school")
        .or_else(|| body.contains(&rows.token).then_some("the school's token"))
        .or_else(|| body.contains(&rows.agent).then_some("the school's agent"))
}

/// A request to make: (method, path, form).
pub type Probe = (&'static str, String, Vec<(&'static str, &'static str)>);

/// Every page about alert `id`.
pub fn alert_pages(id: i64) -> Vec<Probe> {
    let mut pages: Vec<_> = [
        "",
        "/capture.jpg",
        "/preview.jpg",
        "/record",
        "/record.json",
    ]
    .iter()
    .map(|p| ("GET", format!("/alerts/{id}{p}"), Vec::new()))
    .collect();
    pages.push((
        "POST",
        format!("/alerts/{id}/reveal"),
        vec![("reason", "checking the context of the alert")],
    ));
    pages.push((
        "POST",
        format!("/alerts/{id}/state"),
        vec![("to", "in_review"), ("reason", "")],
    ));
    pages.push((
        "POST",
        format!("/alerts/{id}/assign"),
        vec![("assignee", "")],
    ));
    pages.push((
        "POST",
        format!("/alerts/{id}/note"),
        vec![("text", "a note")],
    ));
    pages
}

/// The console's answer to `method path` for a signed-in account.
pub fn ask(
    port: u16,
    session: &(String, String),
    method: &str,
    path: &str,
    form: &[(&str, &str)],
) -> Reply {
    let mut fields = vec![("csrf", session.1.as_str())];
    fields.extend_from_slice(form);
    let form = if method == "POST" { &fields[..] } else { &[] };
    http(port, method, path, &session.0, form)
}

/// The text part of a parsed email.
pub fn text_of(email: &serde_json::Value) -> String {
    email["parts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["type"] == "text/plain")
        .and_then(|p| p["text"].as_str())
        .unwrap_or_else(|| panic!("no text part in {email}"))
        .to_owned()
}

/// A `[mail]` section sending through the SMTP server on `smtp_port` to
/// North's DSL, South's DSL and the trust's lead (no school), with `extra`
/// settings (one per line) added.
pub fn mail_to_schools_and_trust(smtp_port: u16, extra: &str) -> String {
    let mut mail = format!(
        "host = \"127.0.0.1\"\nport = {smtp_port}\nsecurity = \"none\"\nfrom = \"Tutela <tutela@trust.test>\"\n\
         console_url = \"https://console.trust.test\"\n{extra}"
    );
    for (address, school) in [
        ("north@trust.test", Some("north")),
        ("south@trust.test", Some("south")),
        ("lead@trust.test", None),
    ] {
        mail.push_str(&format!(
            "\n[[mail.recipients]]\naddress = \"{address}\"\nroles = [\"dsl\"]\n"
        ));
        if let Some(school) = school {
            mail.push_str(&format!("school = \"{school}\"\n"));
        }
    }
    mail
}

/// Sends the summaries of the week of 2 June 2025 now, through an SMTP server
/// started on `smtp_port` writing to `mail_dir`: three, one each to North's
/// DSL, South's and the trust's lead (see [`mail_to_schools_and_trust`]).
/// Returns each recipient's (subject, plain text).
pub fn weekly_summaries(
    c: &tutela_tests::Collector,
    smtp_port: u16,
    mail_dir: std::path::PathBuf,
) -> std::collections::BTreeMap<String, (String, String)> {
    let sink = tutela_tests::SmtpSink::start(smtp_port, mail_dir).unwrap();
    let out = tutela_tests::run_ok(
        c.cmd()
            .args(["summary", "--send-now", "--week", "2025-06-02"]),
    )
    .unwrap();
    assert!(out.contains("queued 3 summary emails"), "{out}");
    let messages = sink
        .wait_for(3, std::time::Duration::from_secs(10))
        .unwrap();
    messages
        .iter()
        .map(|(rcpt, path)| {
            let email = tutela_tests::parse_email(path).unwrap();
            let subject = email["subject"].as_str().unwrap().to_owned();
            (rcpt[0].clone(), (subject, text_of(&email)))
        })
        .collect()
}

/// A new collector in `scratch` (on PostgreSQL when `pg` is given, else on
/// its own SQLite store) set up for the weekly summaries of two schools:
/// the console off with the trust's zone London (and `console` settings,
/// one per line, added), mail through an SMTP server on a free port to
/// North's DSL, South's and the trust's lead ([`mail_to_schools_and_trust`]),
/// the weekly summary on, and the schools `north` and `south` named
/// `names`; the summary's tables made. Returns it, where its rows are and
/// the SMTP port for [`weekly_summaries`].
pub fn summarised_schools<'a>(
    scratch: &tutela_tests::Scratch,
    pg: Option<&'a PgCluster>,
    console: &str,
    names: [&str; 2],
) -> (tutela_tests::Collector, Db<'a>, u16) {
    use tutela_tests::run_ok;
    let (c, db) = Db::collector(scratch.path("collector"), pg);
    let smtp_port = tutela_tests::free_port();
    c.set_section(
        "console",
        &format!("enabled = false\ntime_zone = \"Europe/London\"\n{console}"),
    )
    .unwrap();
    c.set_section("mail", &mail_to_schools_and_trust(smtp_port, ""))
        .unwrap();
    weekly_summary_on(&c);
    for (id, name) in SCHOOLS.iter().zip(names) {
        run_ok(c.cmd().args(["schools", "add", id, "--name", name])).unwrap();
    }
    // Creates the console, publishing and summary tables.
    run_ok(c.cmd().args(["summary", "--status"])).unwrap();
    (c, db, smtp_port)
}

/// Turns the weekly summary to DSLs on (Monday 08:00, checked every minute).
pub fn weekly_summary_on(c: &tutela_tests::Collector) {
    c.set_section(
        "summary",
        "enabled = true\nday = \"monday\"\ntime = \"08:00\"\nroles = [\"dsl\"]\ncheck_secs = 60",
    )
    .unwrap();
}

/// Gives `c` a console on a free loopback port and the schools `north` and
/// `south`, and adds accounts of `role` named `<prefix>-trust` (trust-wide)
/// and `<prefix>-north` (North only) with [`PASSWORD`]. Returns the port.
pub fn console_with_trust_and_north(
    c: &tutela_tests::Collector,
    scratch: &tutela_tests::Scratch,
    role: &str,
    prefix: &str,
) -> u16 {
    use tutela_tests::run_ok;
    let port = tutela_tests::free_port();
    c.set_section("console", &format!("listen = \"127.0.0.1:{port}\""))
        .unwrap();
    for id in SCHOOLS {
        run_ok(c.cmd().args(["schools", "add", id, "--name", id])).unwrap();
    }
    let password = scratch.path("password");
    std::fs::write(&password, format!("{PASSWORD}\n")).unwrap();
    for (scope, args) in [
        ("trust", &["--trust"][..]),
        ("north", &["--school", "north"][..]),
    ] {
        run_ok(
            c.cmd()
                .args(["user", "add", &format!("{prefix}-{scope}"), "--role", role])
                .args(args)
                .arg("--password-file")
                .arg(&password),
        )
        .unwrap();
    }
    port
}

/// Gives `c` a console on a free loopback port (staff are accounts named
/// `t_*`) and the schools `ids` (each named by its id). Returns the port.
pub fn console_with_schools(c: &tutela_tests::Collector, ids: &[&str]) -> u16 {
    let port = tutela_tests::free_port();
    c.set_section(
        "console",
        &format!("listen = \"127.0.0.1:{port}\"\nstaff_pattern = \"t_*\""),
    )
    .unwrap();
    for id in ids {
        tutela_tests::run_ok(c.cmd().args(["schools", "add", id, "--name", id])).unwrap();
    }
    port
}

/// For each of `schools` on the started collector `c`: an agent enrolled
/// with a token of that school (station `<school>-PC01`) sends its pupil's
/// alert with a capture and its staff alert, and a pupil reports a concern
/// from the school's page. Their rows, in the order of `schools`.
pub fn seed_schools(
    c: &tutela_tests::Collector,
    scratch: &tutela_tests::Scratch,
    db: &Db<'_>,
    port: u16,
    schools: &[&str],
) -> Vec<Rows> {
    let mut rows = Vec::new();
    for (n, school) in schools.iter().enumerate() {
        let token = c.token(&["--school", school, "--group", "lab"]).unwrap();
        let mut agent = tutela_tests::Agent::new(scratch.path(&format!("agent-{school}")));
        agent.as_station(&format!("{school}-PC01"));
        agent.on_machine(&char::from(b'a' + n as u8).to_string().repeat(64));
        agent.enrol(&token).unwrap();
        send(&agent.dir, school);
        report(port, school);
        let id = |user: &str, source: &str| {
            db.id(&format!(
                "SELECT id FROM alerts WHERE \"user\" = '{user}' AND source = '{source}'"
            ))
        };
        let hex = match db {
            Db::Pg(_) => "encode(secret_hash, 'hex')",
            Db::Sqlite(_) => "lower(hex(secret_hash))",
        };
        rows.push(Rows {
            pupil: id(&format!("pupil.{school}"), "typed"),
            staff: id(&format!("t_{school}"), "typed"),
            report: id(&format!("pupil.{school}"), "pupil_report"),
            token: db.one(&format!(
                "SELECT substr({hex}, 1, 12) FROM tokens WHERE school = '{school}'"
            )),
            agent: agent.agent_id(),
        });
    }
    rows
}
