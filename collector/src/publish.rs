//! Rule publishing: a technician pushes a pack; the collector lints it,
//! shows the change against the live version, compiles and signs a bundle,
//! and every connected agent receives it over the `Rules.Subscribe` stream
//! (agents that were offline receive it when they reconnect).

use std::collections::BTreeSet;
use std::path::Path;

use ring::signature::Ed25519KeyPair;
use rusqlite::Connection;
use tutela_proto::v1::{HeartbeatBody, RuleBundle};
use tutela_rules::lint::{lint, Level};
use tutela_rules::Pack;

use crate::store::exemption::AuditNote;
pub use crate::store::publication::ShadowTotal;
use crate::store::publication::{BundleRow, NewBundle, Published};
use crate::store::{self, sqlite, Store, StoreError};

pub fn ensure_schema(conn: &Connection) -> rusqlite::Result<()> {
    sqlite::publication::ensure_schema(conn)
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("{0}")]
    Pack(#[from] tutela_rules::PackError),
    #[error("the pack has {0} lint error(s); fix them (see above) and push again")]
    Lint(usize),
    #[error(
        "pack version {offered} is not newer than the live version {live}; bump [pack] version"
    )]
    NotNewer { offered: u32, live: u32 },
    #[error("cannot sign the bundle: {0}")]
    Bundle(#[from] tutela_rules::bundle::BundleError),
    #[error("database error: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// What a push did, for the technician.
#[derive(Debug, Clone)]
pub struct PushReport {
    pub version: u32,
    pub previous: Option<u32>,
    pub findings: Vec<String>,
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

fn term_set(pack: &Pack) -> BTreeSet<String> {
    pack.terms
        .iter()
        .map(|t| format!("{}/{}", t.category, t.text))
        .collect()
}

/// The latest published bundle of a kind (live or shadow): (version, bundle bytes, pack text).
pub fn latest(conn: &Connection, shadow: bool) -> rusqlite::Result<Option<(u32, Vec<u8>, String)>> {
    Ok(sqlite::publication::latest(conn, shadow)?.map(|b| (b.version, b.bundle, b.pack_toml)))
}

/// Reads a pack file for a push.
fn read_pack(pack_path: &Path) -> Result<(String, String), PublishError> {
    let text =
        std::fs::read_to_string(pack_path).map_err(|source| tutela_rules::PackError::Io {
            path: pack_path.display().to_string(),
            source,
        })?;
    Ok((text, pack_path.display().to_string()))
}

/// Refuses a pack `check` did not pass, printing its lint findings.
fn refuse_unless_passed(report: &CheckReport, print: bool) -> Result<(), PublishError> {
    if report.errors > 0 {
        if print {
            for f in &report.findings {
                eprintln!("{f}");
            }
        }
        return Err(PublishError::Lint(report.errors));
    }
    if let Some(live) = report.not_newer_than {
        return Err(PublishError::NotNewer {
            offered: report.version,
            live,
        });
    }
    Ok(())
}

/// Lints, diffs, signs and publishes `pack_path`.
pub fn push(
    conn: &Connection,
    key: &Ed25519KeyPair,
    pack_path: &Path,
    shadow: bool,
) -> Result<PushReport, PublishError> {
    let (text, origin) = read_pack(pack_path)?;
    let report = check(conn, &text, &origin, shadow)?;
    refuse_unless_passed(&report, true)?;
    publish_checked(conn, key, &text, shadow, report)
}

/// Lints, diffs, signs and publishes `pack_path` in `store` (either backend):
/// agents connected to any collector on it receive the bundle.
pub async fn push_to(
    store: &Store,
    key: &Ed25519KeyPair,
    pack_path: &Path,
    shadow: bool,
) -> Result<PushReport, PublishError> {
    let (text, origin) = read_pack(pack_path)?;
    let live = store.latest_bundle(false).await?;
    let newest_of_kind = store.latest_bundle(shadow).await?.map(|b| b.version);
    let report = check_against(&text, &origin, shadow, live, newest_of_kind)?;
    refuse_unless_passed(&report, true)?;
    let (bundle, ids) = sign_checked(key, &text, shadow, &report)?;
    let outcome = store
        .publish_bundle(&new_bundle(&report, shadow, &bundle, &text, &ids))
        .await?;
    published(outcome, shadow, report)
}

/// As [`check`], against the bundles in `store` (either backend).
pub async fn check_in(
    store: &Store,
    text: &str,
    origin: &str,
    shadow: bool,
) -> Result<CheckReport, PublishError> {
    let live = store.latest_bundle(false).await?;
    let newest_of_kind = store.latest_bundle(shadow).await?.map(|b| b.version);
    check_against(text, origin, shadow, live, newest_of_kind)
}

/// Signs and publishes a pack that [`check_in`] passed, in `store`, with
/// `note` written to the audit log in the same transaction.
pub async fn publish_checked_to(
    store: &Store,
    key: &Ed25519KeyPair,
    text: &str,
    shadow: bool,
    report: CheckReport,
    note: &AuditNote,
) -> Result<PushReport, PublishError> {
    let (bundle, ids) = sign_checked(key, text, shadow, &report)?;
    let outcome = store
        .publish_bundle_audited(&new_bundle(&report, shadow, &bundle, text, &ids), note)
        .await?;
    published(outcome, shadow, report)
}

/// What publishing a pack would do: lint findings, the change against the
/// live version, and whether its version is newer.
#[derive(Debug, Clone)]
pub struct CheckReport {
    pub pack_id: String,
    pub version: u32,
    pub previous: Option<u32>,
    /// `origin:line: level: message`.
    pub findings: Vec<String>,
    pub errors: usize,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Set when the version is not newer than this published one.
    pub not_newer_than: Option<u32>,
}

/// Parses, lints and diffs a pack against the live version without publishing it.
pub fn check(
    conn: &Connection,
    text: &str,
    origin: &str,
    shadow: bool,
) -> Result<CheckReport, PublishError> {
    ensure_schema(conn)?;
    let live = sqlite::publication::latest(conn, false)?;
    let newest_of_kind = sqlite::publication::latest(conn, shadow)?.map(|b| b.version);
    check_against(text, origin, shadow, live, newest_of_kind)
}

/// Parses, lints and diffs a pack against `live`; `newest_of_kind` is the
/// newest published version of the pack's kind.
fn check_against(
    text: &str,
    origin: &str,
    shadow: bool,
    live: Option<BundleRow>,
    newest_of_kind: Option<u32>,
) -> Result<CheckReport, PublishError> {
    let pack = Pack::parse(text, origin)?;
    let findings = lint(&pack);
    let errors = findings.iter().filter(|f| f.level == Level::Error).count();
    let findings_text: Vec<String> = findings.iter().map(|f| format!("{origin}:{f}")).collect();
    let floor = if shadow {
        newest_of_kind.max(live.as_ref().map(|b| b.version))
    } else {
        live.as_ref().map(|b| b.version)
    };
    let not_newer_than = floor.filter(|v| pack.version <= *v);
    let (added, removed) = match &live {
        Some(live) => match Pack::parse(&live.pack_toml, "live") {
            Ok(old) => {
                let (a, b) = (term_set(&old), term_set(&pack));
                (
                    b.difference(&a).cloned().collect(),
                    a.difference(&b).cloned().collect(),
                )
            }
            Err(_) => (Vec::new(), Vec::new()),
        },
        None => (term_set(&pack).into_iter().collect(), Vec::new()),
    };
    Ok(CheckReport {
        pack_id: pack.id.clone(),
        version: pack.version,
        previous: live.map(|b| b.version),
        findings: findings_text,
        errors,
        added,
        removed,
        not_newer_than,
    })
}

/// Signs a checked pack: the bundle, and for a candidate its rule ids.
fn sign_checked(
    key: &Ed25519KeyPair,
    text: &str,
    shadow: bool,
    report: &CheckReport,
) -> Result<(Vec<u8>, Vec<String>), PublishError> {
    refuse_unless_passed(report, false)?;
    let bundle = tutela_rules::bundle::sign(text, key)?;
    let ids = if shadow {
        shadow_rule_ids(report.version, text)
    } else {
        Vec::new()
    };
    Ok((bundle, ids))
}

fn new_bundle<'a>(
    report: &'a CheckReport,
    shadow: bool,
    bundle: &'a [u8],
    text: &'a str,
    ids: &'a [String],
) -> NewBundle<'a> {
    NewBundle {
        pack_id: &report.pack_id,
        version: report.version,
        shadow,
        bundle,
        pack_toml: text,
        published_ms: store::now_ms(),
        shadow_rule_ids: ids,
    }
}

/// The push's report once the store took the bundle (or refused it: a
/// version at or above it was published meanwhile).
fn published(
    outcome: Published,
    shadow: bool,
    report: CheckReport,
) -> Result<PushReport, PublishError> {
    if let Published::NotNewerThan(live) = outcome {
        return Err(PublishError::NotNewer {
            offered: report.version,
            live,
        });
    }
    crate::subscription::nudge();
    tracing::info!(pack = %report.pack_id, version = report.version, shadow, added = report.added.len(), removed = report.removed.len(), "rule bundle published");
    Ok(PushReport {
        version: report.version,
        previous: report.previous,
        findings: report.findings,
        added: report.added,
        removed: report.removed,
    })
}

/// Signs and publishes a pack that `check` passed (no lint errors, newer
/// version), on the SQLite connection `conn` (in the caller's transaction
/// when there is one: the console publishes and audits in one).
pub fn publish_checked(
    conn: &Connection,
    key: &Ed25519KeyPair,
    text: &str,
    shadow: bool,
    report: CheckReport,
) -> Result<PushReport, PublishError> {
    let (bundle, ids) = sign_checked(key, text, shadow, &report)?;
    let outcome = sqlite::publication::insert(
        conn,
        &new_bundle(&report, shadow, &bundle, text, &ids),
        None,
    )?;
    published(outcome, shadow, report)
}

/// The rule ids a pack's matcher reports: `<category>/<term>` for each term
/// and `<category>/domain:<domain>` for each listed domain.
pub fn rule_ids(pack: &Pack) -> BTreeSet<String> {
    let mut ids: BTreeSet<String> = pack.terms.iter().map(|t| t.rule_id()).collect();
    for c in &pack.categories {
        ids.extend(c.domains.iter().map(|d| format!("{}/domain:{d}", c.id)));
    }
    ids
}

/// The rule ids of shadow `version` (pack text `text`): the only ones its
/// agents' counts are accepted for.
pub fn shadow_rule_ids(version: u32, text: &str) -> Vec<String> {
    match Pack::parse(text, "shadow") {
        Ok(pack) => rule_ids(&pack).into_iter().collect(),
        Err(e) => {
            tracing::warn!(version, error = %e, "published shadow pack does not parse; no counts are accepted for it");
            Vec::new()
        }
    }
}

/// Stores the shadow-pack counts an agent reported (see
/// `store::sqlite::publication::record_shadow_counts`).
pub fn record_shadow_counts(conn: &Connection, body: &HeartbeatBody) -> rusqlite::Result<()> {
    sqlite::publication::record_shadow_counts(conn, body)
}

/// The shadow version's counts per rule, noisiest first, and how many
/// agents report running it.
pub fn shadow_totals(conn: &Connection, version: u32) -> rusqlite::Result<(Vec<ShadowTotal>, i64)> {
    sqlite::publication::shadow_totals(conn, version)
}

/// A bundle as sent to agents, with the collector's release signature over
/// its role (live or shadow), version and bytes.
pub fn release(
    signer: &ring::signature::Ed25519KeyPair,
    bundle: &[u8],
    version: u32,
    shadow: bool,
) -> RuleBundle {
    let mut sha = [0u8; 32];
    sha.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, bundle).as_ref());
    let message = tutela_proto::release_message(&sha, version, shadow);
    RuleBundle {
        bundle: bundle.to_vec(),
        version,
        shadow,
        release_signature: signer.sign(&message).as_ref().to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heartbeat(run: &str, counts: &[(&str, u64)]) -> HeartbeatBody {
        HeartbeatBody {
            agent_id: "ag-1".into(),
            shadow_version: 2,
            shadow_run: run.into(),
            shadow_counts: counts.iter().map(|(r, c)| ((*r).to_owned(), *c)).collect(),
            ..HeartbeatBody::default()
        }
    }

    /// A candidate pack at `version` with three weapons terms and a domain.
    fn candidate(version: u32) -> String {
        format!(
            "[pack]\nid = \"p\"\nname = \"P\"\nversion = {version}\nlanguage = \"en-GB\"\n\n\
             [categories.weapons]\nseverity = 3\ndomains = [\"Guns.Example.org\"]\n\n\
             [[terms]]\ncategory = \"weapons\"\nterms = [\"zip gun\", \"pipe\", \"huge\"]\n"
        )
    }

    fn recorded_ids(conn: &Connection) -> Vec<String> {
        conn.prepare("SELECT DISTINCT rule_id FROM shadow_run_counts ORDER BY rule_id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    #[test]
    fn only_rule_ids_of_the_published_candidate_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let conn = store::open(dir.path()).unwrap();
        ensure_schema(&conn).unwrap();
        let pkcs8 = tutela_rules::bundle::generate_pkcs8().unwrap();
        let key = tutela_rules::bundle::load_pkcs8(&pkcs8).unwrap();
        let text = candidate(2);
        let report = check(&conn, &text, "candidate.toml", true).unwrap();
        publish_checked(&conn, &key, &text, true, report).unwrap();
        record_shadow_counts(
            &conn,
            &heartbeat(
                "run-a",
                &[
                    ("weapons/zip gun", 2),
                    ("weapons/domain:guns.example.org", 1),
                    ("weapons/made up", 7),
                    ("drugs/zip gun", 7),
                    ("weapons/ZIP GUN", 7),
                ],
            ),
        )
        .unwrap();
        assert_eq!(
            recorded_ids(&conn),
            ["weapons/domain:guns.example.org", "weapons/zip gun"]
        );
        // A newer candidate supersedes the old one's rule ids.
        let text = candidate(3).replace("\"huge\"", "\"ghost gun\"");
        let report = check(&conn, &text, "candidate.toml", true).unwrap();
        publish_checked(&conn, &key, &text, true, report).unwrap();
        let mut hb = heartbeat("run-a", &[("weapons/ghost gun", 1), ("weapons/huge", 1)]);
        hb.shadow_version = 3;
        record_shadow_counts(&conn, &hb).unwrap();
        let (totals, _) = shadow_totals(&conn, 3).unwrap();
        assert_eq!(totals.len(), 1, "{totals:?}");
        assert_eq!(totals[0].rule_id, "weapons/ghost gun");
        let stale: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM shadow_rule_ids WHERE version = 2",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(stale, 0);
    }

    #[test]
    fn counts_of_successive_agent_runs_add_up() {
        let dir = tempfile::tempdir().unwrap();
        let conn = store::open(dir.path()).unwrap();
        ensure_schema(&conn).unwrap();
        // Version 2 is the published candidate.
        conn.execute(
            "INSERT INTO rule_bundles (pack_id, version, shadow, bundle, pack_toml, published_ms) VALUES ('p', 2, 1, x'00', ?1, 0)",
            [candidate(2)],
        )
        .unwrap();
        // First run: cumulative counts, one heartbeat late (out of order).
        record_shadow_counts(&conn, &heartbeat("run-a", &[("weapons/zip gun", 3)])).unwrap();
        record_shadow_counts(
            &conn,
            &heartbeat("run-a", &[("weapons/zip gun", 5), ("weapons/pipe", 1)]),
        )
        .unwrap();
        record_shadow_counts(&conn, &heartbeat("run-a", &[("weapons/zip gun", 4)])).unwrap();
        // The agent restarts and counts from zero in a new run.
        record_shadow_counts(&conn, &heartbeat("run-b", &[("weapons/zip gun", 2)])).unwrap();
        let (totals, agents) = shadow_totals(&conn, 2).unwrap();
        assert_eq!(agents, 1);
        assert_eq!(
            totals,
            vec![
                ShadowTotal {
                    rule_id: "weapons/zip gun".into(),
                    count: 7,
                    agents: 1
                },
                ShadowTotal {
                    rule_id: "weapons/pipe".into(),
                    count: 1,
                    agents: 1
                },
            ]
        );
        // A rule id the candidate does not have is not stored.
        record_shadow_counts(&conn, &heartbeat("run-b", &[("weapons/invented", 9)])).unwrap();
        assert_eq!(shadow_totals(&conn, 2).unwrap().0.len(), 2);
        // An over-long run id is ignored rather than stored.
        record_shadow_counts(
            &conn,
            &heartbeat(&"x".repeat(65), &[("weapons/zip gun", 9)]),
        )
        .unwrap();
        assert_eq!(shadow_totals(&conn, 2).unwrap().0[0].count, 7);
        // A version that is not the published candidate opens no allowance.
        let mut made_up = heartbeat("run-c", &[("weapons/zip gun", 9)]);
        made_up.shadow_version = 3;
        record_shadow_counts(&conn, &made_up).unwrap();
        assert!(shadow_totals(&conn, 3).unwrap().0.is_empty());
        // Absurd counts are clamped and totals cannot overflow.
        record_shadow_counts(&conn, &heartbeat("run-d", &[("weapons/huge", u64::MAX)])).unwrap();
        record_shadow_counts(&conn, &heartbeat("run-e", &[("weapons/huge", u64::MAX)])).unwrap();
        let (totals, _) = shadow_totals(&conn, 2).unwrap();
        assert_eq!(totals[0].rule_id, "weapons/huge");
        assert_eq!(
            totals[0].count,
            2 * crate::store::publication::MAX_SHADOW_COUNT
        );
    }
}
