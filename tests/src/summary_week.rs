//! The seeded week of the weekly summary tests: alerts, reviews, a rule
//! change, an exemption and stations written into a collector's database,
//! and the lines the summary must show, computed from that database by SQL.

use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection};

use crate::load::now_ms;
use crate::seed::insert_alert;

/// A day in milliseconds.
pub const DAY: i64 = 86_400_000;
/// An hour in milliseconds.
pub const HOUR: i64 = 3_600_000;
/// Monday 2 June 2025 00:00 BST.
pub const WEEK_START: i64 = 1_748_818_800_000;

/// A small deterministic generator for the seeded week.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> i64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % n) as i64
    }
}

const CATEGORIES: [&str; 5] = [
    "self-harm",
    "bullying",
    "violence",
    "extremism",
    "adult-content",
];

/// Seeds the week of 2 June 2025, the week before, an old unreviewed alert,
/// reviews, a rule change, an exemption and two stations (one silent).
pub fn seed(db: &Path) {
    let conn = Connection::open(db).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    let mut rng = Lcg(42);
    let mut seq = 0;
    for (start, n) in [(WEEK_START, 90), (WEEK_START - 7 * DAY, 50)] {
        for i in 0..n {
            seq += 1;
            let day = rng.next(7);
            let time = start + day * DAY + 8 * HOUR + rng.next(8 * 60) * 60_000 + i * 7;
            let category = CATEGORIES[[0, 0, 1, 1, 1, 2, 2, 3, 4][rng.next(9) as usize]];
            let severity = [1, 2, 2, 3, 3, 3, 4, 4, 5][rng.next(9) as usize];
            let user = if rng.next(12) == 0 {
                "mr.jones".to_owned()
            } else {
                format!("pupil.{}", rng.next(20))
            };
            let rule = format!("en-GB/{category}/{}", rng.next(3));
            let state = [
                "new",
                "new",
                "new",
                "closed",
                "closed",
                "false_positive",
                "false_positive",
                "in_review",
                "escalated",
            ][rng.next(9) as usize];
            let id = insert_alert(&conn, seq, &user, time, category, severity, &rule, state);
            if state != "new" {
                let first = time + 2000 + (5 + rng.next(600)) * 60_000;
                let to = if state == "escalated" {
                    "in_review"
                } else {
                    state
                };
                conn.execute(
                    "INSERT INTO console_history (alert_id, time_ms, actor, from_state, to_state) VALUES (?1, ?2, 'dsl', 'new', ?3)",
                    params![id, first, to],
                )
                .unwrap();
                if state == "escalated" {
                    conn.execute(
                        "INSERT INTO console_history (alert_id, time_ms, actor, from_state, to_state) VALUES (?1, ?2, 'dsl', 'in_review', 'escalated')",
                        params![id, first + HOUR],
                    )
                    .unwrap();
                }
            }
            if i % 15 == 0 {
                // A folded repeat: never counted on its own.
                seq += 1;
                insert_alert(
                    &conn,
                    seq,
                    &user,
                    time + 30_000,
                    category,
                    severity,
                    &rule,
                    "folded",
                );
            }
        }
    }
    seq += 1;
    insert_alert(
        &conn,
        seq,
        "pupil.3",
        WEEK_START - 30 * DAY,
        "bullying",
        2,
        "en-GB/bullying/0",
        "new",
    );
    conn.execute(
        "INSERT INTO rule_bundles (pack_id, version, shadow, bundle, pack_toml, published_ms) VALUES ('en-GB', 7, 0, x'00', '', ?1)",
        [WEEK_START + 2 * DAY + 10 * HOUR],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO rule_bundles (pack_id, version, shadow, bundle, pack_toml, published_ms) VALUES ('en-GB', 6, 0, x'00', '', ?1)",
        [WEEK_START - 20 * DAY],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO exemptions (grp, category, term, reason, created_by, created_ms, starts_ms, ends_ms)
         VALUES ('Year 9', 'self-harm', '', 'PSHE unit on wellbeing', 'dsl', ?1, ?2, ?3)",
        params![WEEK_START + DAY + 9 * HOUR, WEEK_START + DAY, WEEK_START + 5 * DAY],
    )
    .unwrap();
    let now = now_ms();
    for (id, station, seen) in [
        ("ag-silent", "LAB2-PC03", now - 10 * DAY),
        ("ag-live", "LAB1-PC01", now),
    ] {
        conn.execute(
            "INSERT INTO agents (agent_id, public_key, station, grp, enrolled_ms, last_seen_ms) VALUES (?1, ?2, ?3, 'ICT suite 2', ?4, ?5)",
            params![id, id.as_bytes(), station, now - 60 * DAY, seen],
        )
        .unwrap();
    }
}

/// The staff condition the console applies with `staff_pattern = "mr.*"`.
pub const STAFF: &str = "lower(user) GLOB 'mr.*'";

/// The single number `sql` selects with parameters `p`.
pub fn count(conn: &Connection, sql: &str, p: impl rusqlite::Params) -> i64 {
    conn.query_row(sql, p, |r| r.get(0)).unwrap()
}

/// A week-on-week change as the summary writes it: `+3`, `0`, `-2`.
fn change(now: i64, before: i64) -> String {
    match now - before {
        d if d > 0 => format!("+{d}"),
        d => d.to_string(),
    }
}

/// A duration as the summary writes it: its two largest units.
fn duration(ms: i64) -> String {
    let s = ms / 1000;
    let plural = |n: i64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    let (d, h, m) = (s / 86_400, s / 3600 % 24, s / 60 % 60);
    if d > 0 {
        format!("{} {}", plural(d, "day"), plural(h, "hour"))
    } else if h > 0 {
        format!("{} {}", plural(h, "hour"), plural(m, "minute"))
    } else if m > 0 {
        plural(m, "minute")
    } else {
        plural(s, "second")
    }
}

/// The text the summary must show for `scope` (`NOT (staff)` or `(staff)`),
/// from SQL over the seeded database; and the alert ids it may link to.
pub fn expected_lines(conn: &Connection, scope: &str) -> (Vec<String>, Vec<i64>) {
    let (s, e) = (WEEK_START, WEEK_START + 7 * DAY);
    let (ps, pe) = (s - 7 * DAY, s);
    let in_week = format!("{scope} AND state <> 'folded' AND time_ms >= ?1 AND time_ms < ?2");
    let mut lines = Vec::new();
    let total = count(
        conn,
        &format!("SELECT COUNT(*) FROM alerts WHERE {in_week}"),
        [s, e],
    );
    let prev = count(
        conn,
        &format!("SELECT COUNT(*) FROM alerts WHERE {in_week}"),
        [ps, pe],
    );
    assert!(total > 5, "the seed gives this scope alerts");
    lines.push(format!(
        "Alerts this week: {total} (previous week {prev}, change {})",
        change(total, prev)
    ));
    for cat in CATEGORIES {
        let by_sev: Vec<String> = (1..=5)
            .map(|sev| {
                count(
                    conn,
                    &format!("SELECT COUNT(*) FROM alerts WHERE {in_week} AND category = ?3 AND severity = ?4"),
                    params![s, e, cat, sev],
                )
                .to_string()
            })
            .collect();
        let t = count(
            conn,
            &format!("SELECT COUNT(*) FROM alerts WHERE {in_week} AND category = ?3"),
            params![s, e, cat],
        );
        let p = count(
            conn,
            &format!("SELECT COUNT(*) FROM alerts WHERE {in_week} AND category = ?3"),
            params![ps, pe, cat],
        );
        if t + p > 0 {
            lines.push(format!(
                "  {cat}: {}; {t}; {p}; {}",
                by_sev.join("/"),
                change(t, p)
            ));
        }
    }
    let unreviewed = count(
        conn,
        &format!("SELECT COUNT(*) FROM alerts WHERE {scope} AND state = 'new'"),
        [],
    );
    lines.push(format!("Unreviewed alerts: {unreviewed} (oldest waiting "));
    let mut waits: Vec<i64> = conn
        .prepare(&format!(
            "SELECT MIN(h.time_ms) - a.received_ms FROM alerts a JOIN console_history h
             ON h.alert_id = a.id AND h.from_state = 'new' WHERE {} GROUP BY a.id",
            in_week
                .replace("state", "a.state")
                .replace("time_ms", "a.time_ms")
        ))
        .unwrap()
        .query_map([s, e], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    waits.sort_unstable();
    let n = waits.len();
    assert!(n > 3, "the seed reviews some of this scope's alerts");
    let median = if n % 2 == 1 {
        waits[n / 2]
    } else {
        (waits[n / 2 - 1] + waits[n / 2]) / 2
    };
    lines.push(format!(
        "Median time to first review: {} ({n} alerts reviewed)",
        duration(median)
    ));
    let mut stmt = conn
        .prepare(&format!(
            "SELECT rule_id, SUM(state = 'false_positive'), COUNT(*) FROM alerts WHERE {in_week}
             GROUP BY rule_id HAVING SUM(state = 'false_positive') > 0 ORDER BY 2 DESC, 3 DESC, rule_id LIMIT 5"
        ))
        .unwrap();
    let fps: Vec<String> = stmt
        .query_map([s, e], |r| {
            Ok(format!(
                "  {}: {} of {} alerts",
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(!fps.is_empty());
    lines.extend(fps);
    let top: Vec<i64> = conn
        .prepare(&format!(
            "SELECT id FROM alerts WHERE {in_week} ORDER BY severity DESC, time_ms DESC LIMIT 10"
        ))
        .unwrap()
        .query_map([s, e], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    lines.push("Rule changes this week: 1".into());
    lines.push("  live pack en-GB version 7, published 2025-06-04 10:00:00 BST".into());
    lines.push("Curriculum exemptions made or revoked this week: 1".into());
    lines.push("LAB2-PC03 (ICT suite 2), last seen".into());
    (lines, top)
}
