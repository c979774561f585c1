//! Rule publishing: a technician pushes a pack; the collector lints it,
//! shows the change against the live version, compiles and signs a bundle,
//! and every connected agent receives it over the `Rules.Subscribe` stream
//! (agents that were offline receive it when they reconnect).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message;
use ring::signature::Ed25519KeyPair;
use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::watch;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tutela_proto::v1::rules_server::Rules;
use tutela_proto::v1::rules_update::Update;
use tutela_proto::v1::{
    ExemptionSet, HeartbeatBody, RuleBundle, RulesUpdate, SignedSubscribe, SubscribeBody,
};
use tutela_rules::lint::{lint, Level};
use tutela_rules::Pack;

use crate::ingest::AgentKeys;
use crate::store;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS rule_bundles (
    id INTEGER PRIMARY KEY,
    pack_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    shadow INTEGER NOT NULL,
    bundle BLOB NOT NULL,
    pack_toml TEXT NOT NULL,
    published_ms INTEGER NOT NULL,
    UNIQUE (shadow, version)
);
-- The rule ids of each published shadow (candidate) pack: the only ids
-- agents' would-be-match counts are accepted for.
CREATE TABLE IF NOT EXISTS shadow_rule_ids (
    version INTEGER NOT NULL,
    rule_id TEXT NOT NULL,
    PRIMARY KEY (version, rule_id)
) WITHOUT ROWID;
";

/// How often a subscribed agent's enrolment is checked again while its
/// stream stays open (besides every publication), so a revoked agent stops
/// receiving updates within this time.
const RECHECK_EVERY: Duration = Duration::from_secs(30);

/// Most shadow rule ids recorded per heartbeat (a bound on what an agent can make us store).
const MAX_SHADOW_RULES: usize = 2000;
/// Most runs (agent starts) recorded per agent and shadow version.
const MAX_SHADOW_RUNS: i64 = 50;
/// Distinct rule ids kept per agent and shadow version (a pack has a few
/// thousand rules at most), and the largest count believed for one.
const MAX_SHADOW_RULE_IDS: i64 = 5000;
const MAX_SHADOW_COUNT: i64 = 1_000_000_000;
/// Longest run id accepted (agents send 16 hex digits).
const MAX_RUN_ID_LEN: usize = 64;

pub fn ensure_schema(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(SCHEMA)
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
    conn.query_row(
        "SELECT version, bundle, pack_toml FROM rule_bundles WHERE shadow = ?1 ORDER BY version DESC LIMIT 1",
        [shadow],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .optional()
}

/// Lints, diffs, signs and publishes `pack_path`.
pub fn push(
    conn: &Connection,
    key: &Ed25519KeyPair,
    pack_path: &Path,
    shadow: bool,
) -> Result<PushReport, PublishError> {
    let text =
        std::fs::read_to_string(pack_path).map_err(|source| tutela_rules::PackError::Io {
            path: pack_path.display().to_string(),
            source,
        })?;
    let origin = pack_path.display().to_string();
    let report = check(conn, &text, &origin, shadow)?;
    if report.errors > 0 {
        for f in &report.findings {
            eprintln!("{f}");
        }
        return Err(PublishError::Lint(report.errors));
    }
    if let Some(live) = report.not_newer_than {
        return Err(PublishError::NotNewer {
            offered: report.version,
            live,
        });
    }
    publish_checked(conn, key, &text, shadow, report)
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
    let pack = Pack::parse(text, origin)?;
    let findings = lint(&pack);
    let errors = findings.iter().filter(|f| f.level == Level::Error).count();
    let findings_text: Vec<String> = findings.iter().map(|f| format!("{origin}:{f}")).collect();
    let live = latest(conn, false)?;
    let newest_of_kind = latest(conn, shadow)?.map(|(v, _, _)| v);
    let floor = newest_of_kind.max(live.as_ref().map(|(v, _, _)| *v));
    let not_newer_than = floor.filter(|v| pack.version <= *v);
    let (added, removed) = match &live {
        Some((_, _, live_text)) => match Pack::parse(live_text, "live") {
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
        previous: live.map(|(v, _, _)| v),
        findings: findings_text,
        errors,
        added,
        removed,
        not_newer_than,
    })
}

/// Signs and publishes a pack that `check` passed (no lint errors, newer version).
pub fn publish_checked(
    conn: &Connection,
    key: &Ed25519KeyPair,
    text: &str,
    shadow: bool,
    report: CheckReport,
) -> Result<PushReport, PublishError> {
    if report.errors > 0 {
        return Err(PublishError::Lint(report.errors));
    }
    if let Some(live) = report.not_newer_than {
        return Err(PublishError::NotNewer {
            offered: report.version,
            live,
        });
    }
    let bundle = tutela_rules::bundle::sign(text, key)?;
    // A savepoint, not a transaction: atomic on its own, and part of the
    // caller's transaction when there is one (the console publishes and
    // audits in one).
    store::in_savepoint(conn, "publish", || -> Result<(), PublishError> {
        conn.execute(
            "INSERT INTO rule_bundles (pack_id, version, shadow, bundle, pack_toml, published_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![report.pack_id, report.version, shadow, bundle, text, store::now_ms()],
        )?;
        if shadow {
            store_shadow_rule_ids(conn, report.version, text)?;
        }
        conn.execute(
            "DELETE FROM shadow_rule_ids WHERE version < ?1",
            [report.version],
        )?;
        Ok(())
    })?;
    // Counts of superseded candidates are of no further use.
    if let Err(e) = conn.execute(
        "DELETE FROM shadow_run_counts WHERE shadow_version < ?1",
        [report.version],
    ) {
        tracing::warn!(error = %e, "could not clear superseded shadow counts");
    }
    tracing::info!(pack = %report.pack_id, version = report.version, shadow, added = report.added.len(), removed = report.removed.len(), "rule bundle published");
    Ok(PushReport {
        version: report.version,
        previous: report.previous,
        findings: report.findings,
        added: report.added,
        removed: report.removed,
    })
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

/// Records the rule ids of shadow `version` (pack text `text`).
fn store_shadow_rule_ids(conn: &Connection, version: u32, text: &str) -> rusqlite::Result<()> {
    let ids = match Pack::parse(text, "shadow") {
        Ok(pack) => rule_ids(&pack),
        Err(e) => {
            tracing::warn!(version, error = %e, "published shadow pack does not parse; no counts are accepted for it");
            BTreeSet::new()
        }
    };
    let mut stmt = conn.prepare_cached(
        "INSERT OR IGNORE INTO shadow_rule_ids (version, rule_id) VALUES (?1, ?2)",
    )?;
    for id in &ids {
        stmt.execute(params![version, id])?;
    }
    Ok(())
}

/// The newest live and shadow bundles, as agents should have them, and the
/// curriculum exemptions not yet ended (every group). Bundle bytes are
/// shared, so each subscriber's copy of this is cheap.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Published {
    pub live: Option<(u32, Arc<[u8]>)>,
    pub shadow: Option<(u32, Arc<[u8]>)>,
    pub exemptions: Vec<crate::exemption::Exemption>,
    /// The current monitoring notice of each group that has one, as signed.
    pub notices: Vec<(String, tutela_proto::v1::SignedNotice)>,
}

impl Published {
    /// The exemption set an agent of `group` must hold.
    fn exemptions_for(&self, group: &str) -> ExemptionSet {
        ExemptionSet {
            exemptions: self
                .exemptions
                .iter()
                .filter(|e| !group.is_empty() && e.grp == group)
                .map(|e| e.to_wire())
                .collect(),
            group: group.to_owned(),
            issued_ms: 0,
        }
    }

    /// The signed notice an agent of `group` must show, if its group has one.
    fn notice_for(&self, group: &str) -> Option<&tutela_proto::v1::SignedNotice> {
        self.notices
            .iter()
            .find(|(g, _)| !group.is_empty() && g == group)
            .map(|(_, n)| n)
    }
}

/// The newest bundle of a kind, without its pack text.
fn latest_bundle(conn: &Connection, shadow: bool) -> rusqlite::Result<Option<(u32, Arc<[u8]>)>> {
    conn.query_row(
        "SELECT version, bundle FROM rule_bundles WHERE shadow = ?1 ORDER BY version DESC LIMIT 1",
        [shadow],
        |r| Ok((r.get(0)?, r.get::<_, Vec<u8>>(1)?.into())),
    )
    .optional()
}

/// Watches the store for publications (pushes come from the CLI, another
/// process) and tells every subscriber at once.
pub fn watch_publications(dir: &Path) -> rusqlite::Result<watch::Receiver<Published>> {
    let conn = store::open(dir)?;
    ensure_schema(&conn)?;
    crate::notice::ensure_schema(&conn)?;
    let read = |conn: &Connection| -> rusqlite::Result<Published> {
        Ok(Published {
            live: latest_bundle(conn, false)?,
            shadow: latest_bundle(conn, true)?,
            exemptions: crate::exemption::pending(conn, store::now_ms())?,
            notices: crate::notice::current_all(conn)?
                .into_iter()
                .map(|n| (n.grp, n.signed))
                .collect(),
        })
    };
    let (tx, rx) = watch::channel(read(&conn)?);
    std::thread::Builder::new()
        .name("tutela-publications".into())
        .spawn(move || loop {
            std::thread::sleep(Duration::from_millis(250));
            match read(&conn) {
                Ok(p) => {
                    if *tx.borrow() != p && tx.send(p).is_err() {
                        return;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot read published rule bundles"),
            }
            if tx.is_closed() {
                return;
            }
        })
        .expect("the publications thread starts");
    Ok(rx)
}

#[derive(Debug, Clone)]
pub struct RulesService {
    pub keys: std::sync::Arc<AgentKeys>,
    pub published: watch::Receiver<Published>,
    /// For looking up a subscriber's group.
    pub db: Arc<Mutex<Connection>>,
    /// The rule-bundle key, which also signs exemption sets.
    pub signer: std::sync::Arc<ring::signature::Ed25519KeyPair>,
}

impl RulesService {
    pub fn open(dir: &Path, keys: std::sync::Arc<AgentKeys>) -> anyhow::Result<Self> {
        Ok(Self {
            keys,
            published: watch_publications(dir)?,
            db: std::sync::Arc::new(std::sync::Mutex::new(store::open(dir)?)),
            signer: std::sync::Arc::new(
                crate::secrets::load_signing_key(dir)
                    .map_err(|e| anyhow::anyhow!("loading the rule-signing key: {e}"))?,
            ),
        })
    }

    fn group_of(&self, agent_id: &str) -> Result<String, Status> {
        self.db
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .query_row(
                "SELECT grp FROM agents WHERE agent_id = ?1",
                [agent_id],
                |r| r.get(0),
            )
            .map_err(|e| {
                tracing::error!(error = %e, "agent group lookup failed");
                Status::unavailable("the collector cannot read its agent list; retry later")
            })
    }
}

/// Whether `agent_id` may still receive rule updates: enrolled and not
/// revoked. Read from the store each time (no cache).
fn standing(db: &Mutex<Connection>, agent_id: &str) -> Result<(), Status> {
    let revoked: Option<bool> = db
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .query_row(
            "SELECT revoked FROM agents WHERE agent_id = ?1",
            [agent_id],
            |r| r.get(0),
        )
        .optional()
        .map_err(|e| {
            tracing::error!(error = %e, "agent lookup failed");
            Status::unavailable("the collector cannot read its agent list; retry later")
        })?;
    match revoked {
        Some(false) => Ok(()),
        Some(true) => Err(Status::permission_denied(format!(
            "agent {agent_id} has been revoked; a technician must re-enrol the device"
        ))),
        None => Err(Status::permission_denied(format!(
            "agent {agent_id} is no longer enrolled; enrol the device with a token from a technician"
        ))),
    }
}

/// Stores the shadow-pack counts an agent reported. Counts are cumulative
/// within one run of the agent (`shadow_run`, random at its start), so the
/// largest figure per (agent, shadow version, run, rule) is kept (heartbeats
/// may arrive out of order) and totals add the runs up: a restarted agent,
/// counting from zero again, adds to what its earlier runs reported.
pub fn record_shadow_counts(conn: &Connection, body: &HeartbeatBody) -> rusqlite::Result<()> {
    if body.shadow_version == 0 || body.shadow_counts.is_empty() {
        return Ok(());
    }
    // Only the candidate actually published is counted: an agent cannot
    // open fresh allowances with made-up versions.
    let current: Option<u32> = conn.query_row(
        "SELECT MAX(version) FROM rule_bundles WHERE shadow = 1",
        [],
        |r| r.get(0),
    )?;
    if current != Some(body.shadow_version) {
        tracing::debug!(agent_id = %body.agent_id, shadow_version = body.shadow_version, "shadow counts for a version not published as the current candidate ignored");
        return Ok(());
    }
    if body.shadow_run.len() > MAX_RUN_ID_LEN {
        tracing::warn!(agent_id = %body.agent_id, "shadow counts with an over-long run id ignored");
        return Ok(());
    }
    // Candidates published before rule ids were recorded: record them now.
    let ids_known: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM shadow_rule_ids WHERE version = ?1)",
        [body.shadow_version],
        |r| r.get(0),
    )?;
    if !ids_known {
        let text: String = conn.query_row(
            "SELECT pack_toml FROM rule_bundles WHERE shadow = 1 AND version = ?1",
            [body.shadow_version],
            |r| r.get(0),
        )?;
        store_shadow_rule_ids(conn, body.shadow_version, &text)?;
    }
    let known_run: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM shadow_run_counts WHERE agent_id = ?1 AND shadow_version = ?2 AND run = ?3)",
        params![body.agent_id, body.shadow_version, body.shadow_run],
        |r| r.get(0),
    )?;
    if !known_run {
        let runs: i64 = conn.query_row(
            "SELECT COUNT(DISTINCT run) FROM shadow_run_counts WHERE agent_id = ?1 AND shadow_version = ?2",
            params![body.agent_id, body.shadow_version],
            |r| r.get(0),
        )?;
        if runs >= MAX_SHADOW_RUNS {
            tracing::warn!(agent_id = %body.agent_id, shadow_version = body.shadow_version, runs, "shadow counts of a further agent run ignored: too many restarts recorded for this version");
            return Ok(());
        }
    }
    let mut known_ids: i64 = conn.query_row(
        "SELECT COUNT(DISTINCT rule_id) FROM shadow_run_counts WHERE agent_id = ?1 AND shadow_version = ?2",
        params![body.agent_id, body.shadow_version],
        |r| r.get(0),
    )?;
    let now = store::now_ms();
    let mut rejected = 0usize;
    let tx = conn.unchecked_transaction()?;
    let mut seen = tx.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM shadow_run_counts WHERE agent_id = ?1 AND shadow_version = ?2 AND rule_id = ?3)",
    )?;
    let mut in_pack = tx.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM shadow_rule_ids WHERE version = ?1 AND rule_id = ?2)",
    )?;
    let mut stmt = tx.prepare_cached(
        "INSERT INTO shadow_run_counts (agent_id, shadow_version, run, rule_id, count, updated_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (agent_id, shadow_version, run, rule_id)
         DO UPDATE SET count = MAX(count, excluded.count), updated_ms = excluded.updated_ms",
    )?;
    for (rule_id, count) in body.shadow_counts.iter().take(MAX_SHADOW_RULES) {
        if rule_id.len() > 256 {
            continue;
        }
        // Only rules of the candidate pack: an agent cannot fill the table
        // (or the technician's report) with made-up rule ids.
        let ours: bool = in_pack.query_row(params![body.shadow_version, rule_id], |r| r.get(0))?;
        if !ours {
            rejected += 1;
            continue;
        }
        if known_ids >= MAX_SHADOW_RULE_IDS {
            let known: bool = seen
                .query_row(params![body.agent_id, body.shadow_version, rule_id], |r| {
                    r.get(0)
                })?;
            if !known {
                continue;
            }
        }
        known_ids += 1;
        let count = i64::try_from(*count)
            .unwrap_or(i64::MAX)
            .min(MAX_SHADOW_COUNT);
        stmt.execute(params![
            body.agent_id,
            body.shadow_version,
            body.shadow_run,
            rule_id,
            count,
            now
        ])?;
    }
    drop((seen, in_pack, stmt));
    if rejected > 0 {
        tracing::warn!(agent_id = %body.agent_id, shadow_version = body.shadow_version, rejected, "shadow counts for rule ids not in the candidate pack ignored");
    }
    tx.commit()
}

/// Per-rule would-be matches of a shadow version across agents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShadowTotal {
    pub rule_id: String,
    pub count: i64,
    pub agents: i64,
}

/// The shadow version's counts per rule, noisiest first, and how many
/// agents report running it.
pub fn shadow_totals(conn: &Connection, version: u32) -> rusqlite::Result<(Vec<ShadowTotal>, i64)> {
    let mut stmt = conn.prepare(
        "SELECT rule_id, CAST(MIN(TOTAL(count), 9.0e18) AS INTEGER), COUNT(DISTINCT agent_id) FROM shadow_run_counts
         WHERE shadow_version = ?1 GROUP BY rule_id ORDER BY TOTAL(count) DESC, rule_id",
    )?;
    let totals = stmt
        .query_map([version], |r| {
            Ok(ShadowTotal {
                rule_id: r.get(0)?,
                count: r.get(1)?,
                agents: r.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let agents = conn.query_row(
        "SELECT COUNT(DISTINCT agent_id) FROM shadow_run_counts WHERE shadow_version = ?1",
        [version],
        |r| r.get(0),
    )?;
    Ok((totals, agents))
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

#[tonic::async_trait]
impl Rules for RulesService {
    type SubscribeStream = ReceiverStream<Result<RulesUpdate, Status>>;

    async fn subscribe(
        &self,
        request: Request<SignedSubscribe>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let signed = request.into_inner();
        if signed.body.len() > tutela_proto::limits::MAX_SUBSCRIBE_BYTES {
            return Err(Status::resource_exhausted(format!(
                "subscription of {} bytes exceeds the limit of {} bytes",
                signed.body.len(),
                tutela_proto::limits::MAX_SUBSCRIBE_BYTES
            )));
        }
        let body = SubscribeBody::decode(signed.body.as_slice())
            .map_err(|_| Status::invalid_argument("not a valid tutela.v1.SubscribeBody"))?;
        let key = self
            .keys
            .get(&body.agent_id)?
            .ok_or_else(|| Status::not_found(format!("agent {} is not enrolled", body.agent_id)))?;
        if key.revoked {
            return Err(crate::ingest::revoked_status(&body.agent_id));
        }
        let key = key.usable(&body.agent_id)?;
        let message = tutela_proto::subscribe_message(&signed.body);
        if !crate::signature::verify(key, &message, &signed.signature) {
            return Err(Status::unauthenticated(format!(
                "the subscription's signature does not verify against agent {}'s enrolled key{}",
                body.agent_id,
                crate::ingest::protocol_1_hint(key, &signed.body, &signed.signature)
            )));
        }
        let group = self.group_of(&body.agent_id)?;
        let mut published = self.published.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let agent_id = body.agent_id.clone();
        let mut sent_live = body.current_version;
        let mut sent_shadow = body.current_shadow_version;
        let mut sent_exemptions: Option<ExemptionSet> = None;
        let mut sent_notice: Option<tutela_proto::v1::SignedNotice> = None;
        let signer = self.signer.clone();
        let db = self.db.clone();
        let bundle = |b: RuleBundle| RulesUpdate {
            update: Some(Update::Bundle(b)),
        };
        tokio::spawn(async move {
            let start = tokio::time::Instant::now() + RECHECK_EVERY;
            let mut recheck = tokio::time::interval_at(start, RECHECK_EVERY);
            recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                // Revocation takes effect on an open stream too: checked
                // afresh (no cache) before anything more is sent.
                let id = agent_id.clone();
                let db = db.clone();
                let standing = tokio::task::spawn_blocking(move || standing(&db, &id))
                    .await
                    .unwrap_or_else(|_| {
                        Err(Status::unavailable(
                            "the collector cannot check the agent's enrolment; retry later",
                        ))
                    });
                if let Err(status) = standing {
                    tracing::warn!(%agent_id, reason = status.message(), "rule stream ended");
                    let _ = tx.send(Err(status)).await;
                    return;
                }
                let now = published.borrow_and_update().clone();
                if let Some((v, bytes)) = &now.live {
                    let v = *v;
                    if v > sent_live {
                        sent_live = v;
                        let b = release(&signer, bytes, v, false);
                        if tx.send(Ok(bundle(b))).await.is_err() {
                            return;
                        }
                    }
                }
                if let Some((v, bytes)) = &now.shadow {
                    let v = *v;
                    if v > sent_shadow && v > sent_live {
                        sent_shadow = v;
                        let b = release(&signer, bytes, v, true);
                        if tx.send(Ok(bundle(b))).await.is_err() {
                            return;
                        }
                    }
                }
                // The whole set on connect and whenever this group's set changes.
                let set = now.exemptions_for(&group);
                if sent_exemptions.as_ref() != Some(&set) {
                    sent_exemptions = Some(set.clone());
                    let update = RulesUpdate {
                        update: Some(Update::Exemptions(crate::exemption::sign_set(&signer, set))),
                    };
                    if tx.send(Ok(update)).await.is_err() {
                        return;
                    }
                }
                // The group's notice on connect and after every new version.
                if let Some(notice) = now.notice_for(&group) {
                    if sent_notice.as_ref() != Some(notice) {
                        sent_notice = Some(notice.clone());
                        let update = RulesUpdate {
                            update: Some(Update::Notice(notice.clone())),
                        };
                        if tx.send(Ok(update)).await.is_err() {
                            return;
                        }
                    }
                }
                tokio::select! {
                    changed = published.changed() => if changed.is_err() { return },
                    _ = recheck.tick() => {}
                    _ = tx.closed() => return,
                }
            }
        });
        tracing::debug!(agent_id = %body.agent_id, "agent subscribed to rule updates");
        Ok(Response::new(ReceiverStream::new(rx)))
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
        assert_eq!(totals[0].count, 2 * MAX_SHADOW_COUNT);
    }
}
