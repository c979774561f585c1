//! Data minimisation in the console, over real HTTP against the real
//! collector: every role signs in; a technician, by default, reaches Fleet,
//! Publish rules, Tokens and Exemptions and no alert at all, and no page or
//! response a technician can reach holds a pupil's name, a station with an
//! alert, a category of an alert, the words matched or their rule id. When
//! the DSL chooses (audited) to give technicians a category-only queue, it
//! shows severity, category, time, state and a neutral rule id, and a filter
//! on a pupil or a station is ignored rather than answered.

use std::time::Duration;

use tutela_tests::web::{http, sign_in, Reply};
use tutela_tests::{wait_for, Collector, Scratch};

const PASSWORD: &str = "correct horse battery staple";

struct Seeded {
    user: &'static str,
    station: &'static str,
    category: &'static str,
    rule: &'static str,
    term: &'static str,
    context: &'static str,
}

const ALERTS: [Seeded; 3] = [
    Seeded {
        user: "pupil.ayodele",
        station: "LAB4-PC19",
        category: "suicide",
        rule: "suicide/kill myself",
        term: "kill myself",
        context: "i want to kill myself after school",
    },
    Seeded {
        user: "pupil.bronwen",
        station: "LAB4-PC20",
        category: "bullying",
        rule: "bullying/nobody likes you",
        term: "nobody likes you",
        context: "honestly nobody likes you just leave",
    },
    Seeded {
        user: "pupil.caoimhe",
        station: "LIB-PC02",
        category: "gambling",
        rule: "gambling/accumulator",
        term: "accumulator",
        context: "put the lunch money on an accumulator",
    },
];

fn seed(db: &rusqlite::Connection) -> Vec<i64> {
    ALERTS
        .iter()
        .enumerate()
        .map(|(i, a)| {
            db.execute(
                "INSERT INTO alerts (event_id, agent_id, seq, time_ms, received_ms, user, station, source,
                    context, app, app_path, window_title, url, search_query, category, severity, rule_id,
                    term, matches, rules_version, state, repeat_of, body, signature, body_hash)
                 VALUES (?1, 'ag-privacy', ?2, 1767000000000, 1767000000000, ?3, ?4, 'typed', ?5, 'chromium',
                    '', 'Homework', '', '', ?6, ?7, ?8, ?9, '[]', 1, 'new', '', x'00', x'00', x'00')",
                rusqlite::params![
                    format!("ev-privacy-{i}"),
                    i as i64 + 1,
                    a.user,
                    a.station,
                    a.context,
                    a.category,
                    5 - i as i64,
                    a.rule,
                    a.term,
                ],
            )
            .unwrap();
            db.last_insert_rowid()
        })
        .collect()
}

/// The links in a page's navigation bar.
fn nav_links(page: &Reply) -> Vec<String> {
    let text = &page.body;
    let Some(start) = text.find("<nav>") else {
        return Vec::new();
    };
    let nav = &text[start..start + text[start..].find("</nav>").unwrap()];
    nav.split("href=\"")
        .skip(1)
        .map(|s| s[..s.find('"').unwrap()].to_owned())
        .collect()
}

/// Words a technician must never meet: who, where, what was matched.
fn pupil_data() -> Vec<&'static str> {
    let mut words = Vec::new();
    for a in &ALERTS {
        words.extend([a.user, a.station, a.term, a.rule, a.context]);
    }
    words
}

fn assert_holds_none(what: &str, r: &Reply, words: &[&str]) {
    let text = &r.body;
    for w in words {
        assert!(
            !text.contains(w),
            "{what} ({}) shows {w:?} to a technician:\n{text}",
            r.status
        );
    }
}

#[test]
fn technicians_reach_no_pupil_data_and_the_category_only_queue_is_a_school_choice() {
    let scratch = Scratch::new("console-privacy");
    let roles = [
        ("dsl1", "dsl"),
        ("deputy1", "deputy-dsl"),
        ("head1", "head"),
        ("tech1", "technician"),
        ("audit1", "auditor"),
    ];
    let (mut collector, port) =
        Collector::with_console(scratch.path("collector"), &roles, PASSWORD).unwrap();
    collector.start().unwrap();
    wait_for("the console", Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .unwrap();
    let get = |path: &str, cookie: &str| http(port, "GET", path, cookie, &[]);
    let db = rusqlite::Connection::open(collector.dir.join("tutela.db")).unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    let ids = seed(&db);

    // Every role signs in and reaches its own pages.
    let mut sessions = std::collections::HashMap::new();
    for (name, role) in roles {
        let expected = match role {
            "technician" => Some("/fleet"),
            "auditor" => Some("/audit"),
            _ => None,
        };
        let (session, _) = sign_in(port, name, PASSWORD, expected.unwrap_or("/queue"));
        let landing = get("/queue", &session);
        match expected {
            Some(to) => {
                assert_eq!(landing.status, 303, "{role}: {}", landing.body);
                assert_eq!(landing.header("location"), Some(to), "{role}");
            }
            None => assert_eq!(landing.status, 200, "{role}: {}", landing.body),
        }
        sessions.insert(role, session);
    }
    let dsl = sessions["dsl"].clone();
    let dsl_queue = get("/queue", &dsl).body;
    assert!(dsl_queue.contains("pupil.ayodele") && dsl_queue.contains("kill myself"));

    // The technician's pages: the navigation and every alert route.
    let tech = sessions["technician"].clone();
    let tech_cookie = tech.as_str();
    let fleet = get("/fleet", tech_cookie);
    assert_eq!(fleet.status, 200);
    let links = nav_links(&fleet);
    for page in ["/fleet", "/exemptions", "/rules/publish", "/tokens"] {
        assert!(links.iter().any(|l| l == page), "{page} in {links:?}");
    }
    for page in ["/queue", "/rules", "/audit", "/settings"] {
        assert!(!links.iter().any(|l| l == page), "{page} in {links:?}");
    }
    let everything = pupil_data();
    let mut probes: Vec<String> = links
        .iter()
        .filter(|l| l.starts_with('/'))
        .cloned()
        .collect();
    probes.extend(
        [
            "/queue",
            "/queue?fragment=1",
            "/queue?state=all",
            "/queue.csv?state=all",
            "/rules",
            "/audit",
            "/settings",
        ]
        .map(String::from),
    );
    for id in &ids {
        for tail in [
            "",
            "/record",
            "/record.json",
            "/capture.jpg",
            "/preview.jpg",
        ] {
            probes.push(format!("/alerts/{id}{tail}"));
        }
    }
    for path in &probes {
        let r = get(path, tech_cookie);
        assert!(
            matches!(r.status, 200 | 303 | 403),
            "{path}: {} {}",
            r.status,
            r.body
        );
        assert_holds_none(path, &r, &everything);
        // Categories of alerts: none, except on the rule pack editor (the
        // technician's own work, where the pack's categories are its text).
        if path != "/rules/publish" {
            for a in &ALERTS {
                assert!(
                    !r.body.contains(a.category),
                    "{path} shows the category {:?}:\n{}",
                    a.category,
                    r.body
                );
            }
        }
    }
    for id in &ids {
        assert_eq!(get(&format!("/alerts/{id}"), tech_cookie).status, 403);
    }

    // Only the DSL changes the setting; a technician's attempt is refused.
    let tech_csrf = tutela_tests::web::csrf(&get("/fleet", tech_cookie).body);
    let refused = http(
        port,
        "POST",
        "/settings",
        tech_cookie,
        &[("csrf", &tech_csrf), ("technician_queue", "category-only")],
    );
    assert_eq!(refused.status, 403);
    let dsl_cookie = dsl.as_str();
    let dsl_csrf = tutela_tests::web::csrf(&get("/settings", dsl_cookie).body);
    let bad = http(
        port,
        "POST",
        "/settings",
        dsl_cookie,
        &[("csrf", &dsl_csrf), ("technician_queue", "everything")],
    );
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("Choose what technicians see"));
    let set = http(
        port,
        "POST",
        "/settings",
        dsl_cookie,
        &[("csrf", &dsl_csrf), ("technician_queue", "category-only")],
    );
    assert_eq!(set.status, 303, "{}", set.body);
    let (actor, detail): (String, String) = db
        .query_row(
            "SELECT actor, detail FROM console_audit WHERE action = 'setting_changed' AND target = 'setting:technician_queue'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        (actor.as_str(), detail.as_str()),
        ("dsl1", "none -> category-only")
    );

    // The category-only queue: categories and neutral rule ids, nothing else.
    let queue = get("/queue", tech_cookie);
    assert_eq!(queue.status, 200, "{}", queue.body);
    assert!(queue.body.contains("id=\"category-only\""));
    assert_holds_none("the category-only queue", &queue, &everything);
    for a in &ALERTS {
        assert!(queue.body.contains(a.category), "{}", queue.body);
    }
    assert!(!queue.body.contains("/alerts/"), "no link to an alert");
    // The DSL's rules page names the neutral id the technician sees.
    let rules = get("/rules", dsl_cookie).body;
    let row = &rules[rules.find("<td>suicide/kill myself</td>").unwrap()..];
    let neutral = &row[row.find("<td>r-").unwrap() + 4..];
    let neutral = &neutral[..neutral.find('<').unwrap()];
    assert_eq!(neutral.len(), 10, "{neutral}");
    assert!(queue.body.contains(neutral), "{}", queue.body);
    // Probing by pupil, station or words does not narrow the queue.
    let rows = |r: &Reply| r.body.matches("<tr data-id=").count();
    assert_eq!(rows(&queue), 3);
    for probe in [
        "/queue?pupil=pupil.ayodele",
        "/queue?station=LAB4-PC19",
        "/queue?q=kill",
        "/queue?pupil=nobody.at.all",
        "/queue?fragment=1&pupil=nobody.at.all",
    ] {
        let r = get(probe, tech_cookie);
        assert_eq!(r.status, 200);
        assert_holds_none(probe, &r, &everything);
        assert_eq!(rows(&r), 3, "{probe} was answered: {}", r.body);
    }
    assert_eq!(get(&format!("/alerts/{}", ids[0]), tech_cookie).status, 403);
    assert_eq!(get("/queue.csv?state=all", tech_cookie).status, 403);

    // The other roles are unchanged: the auditor sees the audit log, the head
    // teacher no pupil's alert, and neither a queue of pupils.
    let audit = get("/audit", &sessions["auditor"]);
    assert_eq!(audit.status, 200);
    assert!(audit.body.contains("setting_changed"));
    let head = get("/queue", &sessions["head"]);
    assert!(!head.body.contains("pupil.ayodele"));
    let deputy = get("/queue", &sessions["deputy-dsl"]);
    assert!(deputy.body.contains("pupil.ayodele"));
    assert_eq!(get("/settings", &sessions["deputy-dsl"]).status, 403);
}
