//! Exemptions in a school's weekly summary, on SQLite and on PostgreSQL: a
//! school's summary counts its own exemptions and the trust-wide ones
//! (each trust-wide one marked so), never another school's; the trust's
//! summary counts every one, unmarked.

mod tenants_common;

use tenants_common::weekly_summaries;
use tutela_tests::postgres::PgCluster;
use tutela_tests::Scratch;

/// Tuesday 3 June 2025, noon UTC: in the week of Monday 2 June.
const TUESDAY: i64 = 1_748_952_000_000;
const MARK: &str = "(trust-wide, every school)";

fn scenario(pg: Option<&PgCluster>, name: &str) {
    let scratch = Scratch::new(name);
    let (c, db, smtp_port) =
        tenants_common::summarised_schools(&scratch, pg, "", ["North Primary", "South Academy"]);
    // The trust's, North's and South's exemption of the week.
    for (category, reason, school) in [
        ("self-harm", "trust wellbeing unit", ""),
        ("drugs", "north drugs lesson", "north"),
        ("extremism", "south history lesson", "south"),
    ] {
        db.exec(&format!(
            "INSERT INTO exemptions (grp, category, term, reason, created_by, created_ms, starts_ms, ends_ms, school)
             VALUES ('lab', '{category}', '', '{reason}', 'dsl', {TUESDAY}, {TUESDAY}, {TUESDAY} + 86400000, '{school}')"
        ));
    }

    let by_rcpt: std::collections::BTreeMap<String, String> =
        weekly_summaries(&c, smtp_port, scratch.path("mail"))
            .into_iter()
            .map(|(rcpt, (_, text))| (rcpt, text))
            .collect();
    let line = |rcpt: &str, part: &str| -> Option<String> {
        by_rcpt[rcpt]
            .lines()
            .find(|l| l.contains(part))
            .map(str::to_owned)
    };
    for (rcpt, own, other) in [
        (
            "north@trust.test",
            "north drugs lesson",
            "south history lesson",
        ),
        (
            "south@trust.test",
            "south history lesson",
            "north drugs lesson",
        ),
    ] {
        let text = &by_rcpt[rcpt];
        assert!(
            text.lines()
                .any(|l| l == "Curriculum exemptions made or revoked this week: 2"),
            "{rcpt}:\n{text}"
        );
        let own = line(rcpt, own).unwrap_or_else(|| panic!("{rcpt}: its own\n{text}"));
        assert!(!own.contains(MARK), "{rcpt}: {own}");
        let trust = line(rcpt, "trust wellbeing unit")
            .unwrap_or_else(|| panic!("{rcpt}: the trust's\n{text}"));
        assert!(trust.ends_with(MARK), "{rcpt}: {trust}");
        assert!(
            line(rcpt, other).is_none(),
            "{rcpt}: another school's\n{text}"
        );
    }
    let text = &by_rcpt["lead@trust.test"];
    assert!(
        text.lines()
            .any(|l| l == "Curriculum exemptions made or revoked this week: 3"),
        "{text}"
    );
    assert!(!text.contains("trust-wide"), "{text}");
}

#[test]
fn on_sqlite_a_schools_summary_counts_its_own_and_the_trusts_exemptions() {
    scenario(None, "tenants-summary-exemptions-sqlite");
}

#[test]
fn on_postgresql_a_schools_summary_counts_its_own_and_the_trusts_exemptions() {
    let pg = PgCluster::start().unwrap();
    scenario(Some(&pg), "tenants-summary-exemptions-postgres");
}
