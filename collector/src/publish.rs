//! Rule publishing: a technician pushes a pack; the collector lints it,
//! shows the change against the live version, compiles and signs a bundle,
//! and every connected agent receives it over the `Rules.Subscribe` stream
//! (agents that were offline receive it when they reconnect).

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use prost::Message;
use ring::signature::{Ed25519KeyPair, UnparsedPublicKey, ED25519};
use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::watch;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tutela_proto::v1::rules_server::Rules;
use tutela_proto::v1::{RuleBundle, SignedSubscribe, SubscribeBody};
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
";

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
    ensure_schema(conn)?;
    let text =
        std::fs::read_to_string(pack_path).map_err(|source| tutela_rules::PackError::Io {
            path: pack_path.display().to_string(),
            source,
        })?;
    let pack = Pack::parse(&text, &pack_path.display().to_string())?;
    let findings = lint(&pack);
    let errors = findings.iter().filter(|f| f.level == Level::Error).count();
    let findings_text: Vec<String> = findings
        .iter()
        .map(|f| format!("{}:{f}", pack_path.display()))
        .collect();
    if errors > 0 {
        for f in &findings_text {
            eprintln!("{f}");
        }
        return Err(PublishError::Lint(errors));
    }
    let live = latest(conn, false)?;
    let newest_of_kind = latest(conn, shadow)?.map(|(v, _, _)| v);
    let floor = newest_of_kind.max(live.as_ref().map(|(v, _, _)| *v));
    if let Some(v) = floor {
        if pack.version <= v {
            return Err(PublishError::NotNewer {
                offered: pack.version,
                live: v,
            });
        }
    }
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
    let bundle = tutela_rules::bundle::sign(&text, key)?;
    conn.execute(
        "INSERT INTO rule_bundles (pack_id, version, shadow, bundle, pack_toml, published_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![pack.id, pack.version, shadow, bundle, text, store::now_ms()],
    )?;
    tracing::info!(pack = %pack.id, version = pack.version, shadow, added = added.len(), removed = removed.len(), "rule bundle published");
    Ok(PushReport {
        version: pack.version,
        previous: live.map(|(v, _, _)| v),
        findings: findings_text,
        added,
        removed,
    })
}

/// The newest live and shadow bundles, as agents should have them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Published {
    pub live: Option<(u32, Vec<u8>)>,
    pub shadow: Option<(u32, Vec<u8>)>,
}

/// Watches the store for publications (pushes come from the CLI, another
/// process) and tells every subscriber at once.
pub fn watch_publications(dir: &Path) -> rusqlite::Result<watch::Receiver<Published>> {
    let conn = store::open(dir)?;
    ensure_schema(&conn)?;
    let read = |conn: &Connection| -> rusqlite::Result<Published> {
        Ok(Published {
            live: latest(conn, false)?.map(|(v, b, _)| (v, b)),
            shadow: latest(conn, true)?.map(|(v, b, _)| (v, b)),
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
}

#[tonic::async_trait]
impl Rules for RulesService {
    type SubscribeStream = ReceiverStream<Result<RuleBundle, Status>>;

    async fn subscribe(
        &self,
        request: Request<SignedSubscribe>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let signed = request.into_inner();
        if signed.body.len() > 4096 {
            return Err(Status::resource_exhausted("subscription too large"));
        }
        let body = SubscribeBody::decode(signed.body.as_slice())
            .map_err(|_| Status::invalid_argument("not a valid tutela.v1.SubscribeBody"))?;
        let key = self
            .keys
            .lookup(&body.agent_id)?
            .ok_or_else(|| Status::not_found(format!("agent {} is not enrolled", body.agent_id)))?;
        if key.1 {
            return Err(Status::permission_denied("agent revoked"));
        }
        UnparsedPublicKey::new(&ED25519, &key.0)
            .verify(&signed.body, &signed.signature)
            .map_err(|_| Status::unauthenticated("subscription signature does not verify"))?;
        let mut published = self.published.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let agent_id = body.agent_id.clone();
        let mut sent_live = body.current_version;
        let mut sent_shadow = 0u32;
        tokio::spawn(async move {
            loop {
                let now = published.borrow_and_update().clone();
                if let Some((v, bytes)) = now.live {
                    if v > sent_live {
                        sent_live = v;
                        let b = RuleBundle {
                            bundle: bytes,
                            version: v,
                            shadow: false,
                        };
                        if tx.send(Ok(b)).await.is_err() {
                            return;
                        }
                    }
                }
                if let Some((v, bytes)) = now.shadow {
                    if v > sent_shadow && v > sent_live {
                        sent_shadow = v;
                        let b = RuleBundle {
                            bundle: bytes,
                            version: v,
                            shadow: true,
                        };
                        if tx.send(Ok(b)).await.is_err() {
                            return;
                        }
                    }
                }
                tokio::select! {
                    changed = published.changed() => if changed.is_err() { return },
                    _ = tx.closed() => return,
                }
            }
        });
        tracing::debug!(%agent_id, "agent subscribed to rule updates");
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
