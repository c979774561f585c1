//! The review queue's keyset pages over real HTTP, followed by their Next
//! and Previous links.

use std::time::Duration;

use tutela_tests::console_client::{wait_for_port, Endpoint, Response, PASSWORD};
use tutela_tests::{Collector, Scratch};

/// The ids of the queue rows on a page, in order.
fn row_ids(page: &Response) -> Vec<i64> {
    page.body
        .split("<tr data-id=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next()?.parse().ok())
        .collect()
}

/// The target of the pager link with `id` on a page, unescaped.
fn pager_link(page: &Response, id: &str) -> Option<String> {
    let at = page.body.find(&format!("id=\"{id}\""))?;
    let start = page.body[..at].rfind("href=\"")? + 6;
    let end = start + page.body[start..].find('"')?;
    Some(page.body[start..end].replace("&amp;", "&"))
}

#[test]
fn queue_pages_follow_next_and_previous_links_over_http() {
    let scratch = Scratch::new("console-pages");
    let (mut collector, port) =
        Collector::with_console(scratch.path("collector"), &[("dsl1", "dsl")], PASSWORD).unwrap();
    collector.start().unwrap();
    wait_for_port(port);
    // 130 stored alerts, with ties in severity and time so that the id orders some of them;
    // every seventh is closed and not in the open queue.
    let db = rusqlite::Connection::open(collector.dir.join("tutela.db")).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    for i in 0..130_i64 {
        db.execute(
            "INSERT INTO alerts (event_id, agent_id, seq, time_ms, received_ms, user, station, source,
                context, app, app_path, window_title, url, search_query, category, severity, rule_id,
                term, matches, rules_version, state, repeat_of, body, signature, body_hash)
             VALUES (?1, 'ag-pages', ?2, ?3, ?3, 'pupil.one', 'LAB1-PC07', 'typed', 'context', 'app', '',
                'Homework', '', '', 'bullying', ?4, 'bullying/seed', 'term', '[]', 1, ?5, '', x'00', x'00', x'00')",
            rusqlite::params![
                format!("{i:032x}"),
                i + 1,
                1_767_000_000_000_i64 + (i / 3) * 60_000,
                1 + i % 4,
                if i % 7 == 0 { "closed" } else { "new" },
            ],
        )
        .unwrap();
    }
    let expected: Vec<i64> = db
        .prepare(
            "SELECT id FROM alerts WHERE state = 'new' ORDER BY severity DESC, time_ms DESC, id DESC",
        )
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(expected.len(), 111);

    let http = Endpoint::Http(port);
    let ok = http.login("dsl1", PASSWORD);
    assert_eq!(ok.status, 303, "{ok:?}");
    let session = ok.cookie_value("tutela_session").unwrap();
    let cookies = [("tutela_session", session.as_str())];
    let first = http.get("/queue?category=bullying", &cookies);
    assert_eq!(first.status, 200);
    assert!(pager_link(&first, "page-previous").is_none());
    let mut pages = vec![row_ids(&first)];
    let mut page = first;
    while let Some(next) = pager_link(&page, "page-next") {
        assert!(
            next.contains("category=bullying"),
            "filters are kept: {next}"
        );
        assert!(next.contains("after="), "{next}");
        page = http.get(&next, &cookies);
        assert_eq!(page.status, 200, "{next}");
        pages.push(row_ids(&page));
    }
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![50, 50, 11]
    );
    assert_eq!(
        pages.concat(),
        expected,
        "every open alert once, in queue order"
    );
    // The counts per state stay whole on a deep page.
    assert!(page.body.contains("Open <b>111</b>"), "{}", page.body);
    // And back: Previous from the last page gives the middle page, then the first.
    let previous = pager_link(&page, "page-previous").expect("a Previous link on page 3");
    let middle = http.get(&previous, &cookies);
    assert_eq!(row_ids(&middle), pages[1]);
    let previous = pager_link(&middle, "page-previous").expect("a Previous link on page 2");
    let top = http.get(&previous, &cookies);
    assert_eq!(row_ids(&top), pages[0]);
    assert!(pager_link(&top, "page-previous").is_none());
    // A cursor that is not one shows the first page.
    let odd = http.get("/queue?after=not-a-cursor", &cookies);
    assert_eq!(odd.status, 200);
    assert_eq!(row_ids(&odd), pages[0]);

    // The last page grows while it is open: the poll brings a Next link.
    let last = pager_link(&middle, "page-next").expect("a Next link on page 2");
    let poll_url = format!("{last}&fragment=1");
    let polled = http.get(&poll_url, &cookies);
    let fragment: serde_json::Value = serde_json::from_str(&polled.body).unwrap();
    assert!(!fragment["pager"].as_str().unwrap().contains("page-next"));
    for i in 0..45_i64 {
        db.execute(
            "INSERT INTO alerts (event_id, agent_id, seq, time_ms, received_ms, user, station, source,
                context, app, app_path, window_title, url, search_query, category, severity, rule_id,
                term, matches, rules_version, state, repeat_of, body, signature, body_hash)
             VALUES (?1, 'ag-pages', ?2, 1000, 1000, 'pupil.one', 'LAB1-PC07', 'typed', 'context', 'app', '',
                'Homework', '', '', 'bullying', 1, 'bullying/seed', 'term', '[]', 1, 'new', '', x'00', x'00', x'00')",
            rusqlite::params![format!("late{i:028x}"), 1000 + i],
        )
        .unwrap();
    }
    let polled = http.get(&poll_url, &cookies);
    let fragment: serde_json::Value = serde_json::from_str(&polled.body).unwrap();
    let pager = fragment["pager"].as_str().unwrap();
    assert!(
        pager.contains("page-next") && pager.contains("page-previous"),
        "{pager}"
    );
}
