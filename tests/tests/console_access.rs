//! Subject-access exports over real HTTP against the real collector: the
//! DSL exports one pupil account as a ZIP and the test reads it back and
//! checks it against the database (every alert, folded repeat and named
//! report of that account and nothing of anyone else's; captures byte for
//! byte, the gravest withheld; staff notes withheld); the export is audited;
//! an unknown or malformed account gets a clear answer; technicians and
//! forged forms are refused.

use std::io::Read;
use std::time::Duration;

use tutela_tests::console_db;
use tutela_tests::web::{field, http, sign_in};
use tutela_tests::{wait_for, Collector, Scratch};

const PASSWORD: &str = "correct horse battery staple";

fn insert_alert(
    db: &rusqlite::Connection,
    event: &str,
    user: &str,
    category: &str,
    severity: i64,
    context: &str,
) -> i64 {
    db.execute(
        "INSERT INTO alerts (event_id, agent_id, seq, time_ms, received_ms, user, station, source,
            context, app, app_path, window_title, url, search_query, category, severity, rule_id,
            term, matches, rules_version, state, repeat_of, body, signature, body_hash)
         VALUES (?1, 'ag-access', (SELECT COUNT(*) + 1 FROM alerts), 1767000000000 + (SELECT COUNT(*) FROM alerts),
            1767000000000, ?2, 'LAB2-PC05', 'typed', ?3, 'chromium', '', 'Homework', 'https://search.example/', '',
            ?4, ?5, ?6, 'term', '[]', 1, 'new', '', x'00', x'00', x'00')",
        rusqlite::params![
            event,
            user,
            context,
            category,
            severity,
            format!("{category}/seed"),
        ],
    )
    .unwrap();
    db.last_insert_rowid()
}

/// Seals a small JPEG with the collector's capture key, as ingest does;
/// returns the JPEG.
fn store_capture(
    collector: &Collector,
    db: &rusqlite::Connection,
    alert: i64,
    event: &str,
    shade: u8,
) -> Vec<u8> {
    let mut jpeg = Vec::new();
    image::RgbImage::from_pixel(64, 48, image::Rgb([shade, 30, 30]))
        .write_to(
            &mut std::io::Cursor::new(&mut jpeg),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
    console_db::store_capture(collector, db, alert, event, &jpeg, [shade; 12]);
    jpeg
}

/// Sends a report from the pupils' page.
fn report(port: u16, name: &str, text: &str) {
    let form = http(port, "GET", "/concern", "", &[]);
    let token = field(&form.body, "token").expect("a form token");
    let r = http(
        port,
        "POST",
        "/concern",
        "",
        &[("token", &token), ("name", name), ("text", text)],
    );
    assert_eq!(r.status, 303, "{}", r.body);
}

fn entry(zip: &mut zip::ZipArchive<std::io::Cursor<Vec<u8>>>, name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    zip.by_name(name)
        .unwrap_or_else(|e| panic!("{name} in the export: {e}"))
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[test]
fn a_subject_access_export_holds_exactly_what_the_database_holds_for_the_account() {
    let scratch = Scratch::new("console-access");
    let (mut collector, port) = Collector::with_console(
        scratch.path("collector"),
        &[("dsl1", "dsl"), ("tech1", "technician")],
        PASSWORD,
    )
    .unwrap();
    collector.start().unwrap();
    wait_for("the console", Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .unwrap();
    let db = rusqlite::Connection::open(collector.dir.join("tutela.db")).unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();

    let bullying = insert_alert(
        &db,
        "ev-a1",
        "pupil.ezra",
        "bullying",
        3,
        "they all laugh at me in maths",
    );
    db.execute(
        "UPDATE alerts SET state = 'in_review' WHERE id = ?1",
        [bullying],
    )
    .unwrap();
    let jpeg = store_capture(&collector, &db, bullying, "ev-a1", 180);
    let grave = insert_alert(
        &db,
        "ev-a2",
        "Pupil.Ezra",
        "suicide",
        5,
        "i want to end it all",
    );
    store_capture(&collector, &db, grave, "ev-a2", 90);
    // A repeat folded into the first alert is held too.
    let repeat = insert_alert(
        &db,
        "ev-a3",
        "pupil.ezra",
        "bullying",
        3,
        "they all laugh at me again",
    );
    db.execute(
        "UPDATE alerts SET state = 'folded', repeat_of = 'ev-a1' WHERE id = ?1",
        [repeat],
    )
    .unwrap();
    let other = insert_alert(
        &db,
        "ev-b1",
        "pupil.finn",
        "gambling",
        2,
        "another pupil's accumulator",
    );
    db.execute(
        "INSERT INTO console_notes (alert_id, time_ms, author, text) VALUES (?1, 1, 'dsl1', 'Spoke to mum on Tuesday')",
        [bullying],
    )
    .unwrap();
    report(
        port,
        "pupil.ezra",
        "My phone was taken and my photos were posted",
    );
    report(port, "", "an anonymous worry that is no one's data");

    let (cookie, csrf) = sign_in(port, "dsl1", PASSWORD, "/subject-access");
    let post =
        |cookie: &str, form: &[(&str, &str)]| http(port, "POST", "/subject-access", cookie, form);
    let r = post(&cookie, &[("csrf", &csrf), ("account", "PUPIL.EZRA")]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("application/zip"));
    assert!(r
        .header("content-disposition")
        .is_some_and(|d| d.contains("tutela-subject-access-PUPIL.EZRA.zip")));
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(r.bytes.clone())).unwrap();
    let mut names: Vec<String> = zip.file_names().map(str::to_owned).collect();
    names.sort();
    let capture = format!("captures/alert-{bullying}.jpg");
    assert_eq!(
        names,
        vec![capture.clone(), "data.json".into(), "index.html".into()]
    );
    assert_eq!(
        entry(&mut zip, &capture),
        jpeg,
        "the capture, byte for byte"
    );

    // data.json against the database.
    let data: serde_json::Value = serde_json::from_slice(&entry(&mut zip, "data.json")).unwrap();
    let expected: Vec<(i64, String, String, bool)> = db
        .prepare(
            "SELECT id, context, state, has_capture FROM alerts
             WHERE user = 'pupil.ezra' COLLATE NOCASE AND source <> 'pupil_report' ORDER BY time_ms, id",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(expected.len(), 3);
    let alerts = data["alerts"].as_array().unwrap();
    let got: Vec<(i64, String, String, bool)> = alerts
        .iter()
        .map(|a| {
            (
                a["id"].as_i64().unwrap(),
                a["context"].as_str().unwrap().to_owned(),
                a["state"].as_str().unwrap().to_owned(),
                a["capture"].is_string() || a["capture_withheld"] == true,
            )
        })
        .collect();
    assert_eq!(got, expected);
    assert!(
        got.iter().any(|(id, ..)| *id == repeat),
        "folded repeats are held too"
    );
    let grave_json = alerts.iter().find(|a| a["id"] == grave).unwrap();
    assert_eq!(grave_json["capture_withheld"], true);
    assert!(grave_json["capture"].is_null());
    let (report_id, report_text): (i64, String) = db
        .query_row(
            "SELECT id, context FROM alerts WHERE source = 'pupil_report' AND user = 'pupil.ezra'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        data["reports"],
        serde_json::json!([{
            "id": report_id,
            "time": data["reports"][0]["time"],
            "time_ms": data["reports"][0]["time_ms"],
            "category": "concern",
            "help_now": false,
            "text": report_text,
            "state": "new",
        }])
    );
    assert_eq!(data["withheld"].as_array().unwrap().len(), 3);

    // The readable index says the same, and nothing of anyone else's or of staff notes.
    let index = String::from_utf8(entry(&mut zip, "index.html")).unwrap();
    assert!(
        index.contains("they all laugh at me in maths") && index.contains("My phone was taken")
    );
    assert!(index.contains(&capture) && index.contains("Withheld"));
    let json = serde_json::to_string(&data).unwrap();
    for absent in [
        "pupil.finn",
        "another pupil's accumulator",
        "an anonymous worry",
        "Spoke to mum",
    ] {
        assert!(
            !index.contains(absent) && !json.contains(absent),
            "{absent:?} in the export"
        );
    }
    assert!(!got.iter().any(|(id, ..)| *id == other));

    // Audited, with what went out.
    let detail: String = db
        .query_row(
            "SELECT detail FROM console_audit WHERE actor = 'dsl1' AND action = 'subject_access_export' AND target = 'user:PUPIL.EZRA'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        detail,
        "3 alerts, 1 reports, 1 captures; 1 captures withheld"
    );

    // Unknown and malformed accounts get a clear answer and no file.
    let unknown = post(&cookie, &[("csrf", &csrf), ("account", "pupil.nobody")]);
    assert_eq!(unknown.status, 404);
    assert!(unknown
        .body
        .contains("Nothing is held for the account 'pupil.nobody'"));
    assert_ne!(unknown.header("content-type"), Some("application/zip"));
    let nothing: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM console_audit WHERE action = 'subject_access_export' AND detail = 'nothing held'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(nothing, 1);
    let malformed = post(&cookie, &[("csrf", &csrf), ("account", "../../etc/passwd")]);
    assert_eq!(malformed.status, 400);
    assert!(malformed.body.contains("not an account name"));
    let empty = post(&cookie, &[("csrf", &csrf), ("account", "")]);
    assert_eq!(empty.status, 400);

    // A forged form and a technician are refused.
    let forged = post(&cookie, &[("account", "pupil.ezra")]);
    assert_eq!(forged.status, 403);
    let (tech, tech_csrf) = sign_in(port, "tech1", PASSWORD, "/fleet");
    let refused = post(&tech, &[("csrf", &tech_csrf), ("account", "pupil.ezra")]);
    assert_eq!(refused.status, 403);
    assert_eq!(http(port, "GET", "/subject-access", &tech, &[]).status, 403);
}
