//! Enrolment tokens and the Enrol RPC.

use ring::signature::{UnparsedPublicKey, ED25519};
use rusqlite::{params, Connection, OptionalExtension};
use tonic::{Request, Response, Status};
use tutela_proto::token::EnrolmentToken;
use tutela_proto::v1::enrolment_server::Enrolment;
use tutela_proto::v1::{EnrolRequest, EnrolResponse, HeartbeatBody, RekeyRequest};

use crate::store;
use crate::writer::Writer;

/// What a technician chooses when making a token.
#[derive(Debug, Clone)]
pub struct TokenSpec {
    pub valid_for_ms: i64,
    pub max_uses: u32,
    pub group: String,
    pub label: String,
}

fn secret_hash(secret: &str) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, secret.as_bytes())
        .as_ref()
        .to_vec()
}

/// Makes a token: stores the hash of its secret and returns the token text.
pub fn create_token(
    conn: &Connection,
    spec: &TokenSpec,
    collector: &str,
    fingerprint: &str,
) -> rusqlite::Result<EnrolmentToken> {
    use ring::rand::SecureRandom;
    let mut secret = [0u8; 24];
    ring::rand::SystemRandom::new()
        .fill(&mut secret)
        .expect("the system random source works");
    let secret = hex::encode(secret);
    let now = store::now_ms();
    let token = EnrolmentToken {
        collector: collector.to_owned(),
        fingerprint: fingerprint.to_owned(),
        secret: secret.clone(),
        expires_ms: now + spec.valid_for_ms,
        fallbacks: Vec::new(),
    };
    conn.execute(
        "INSERT INTO tokens (secret_hash, label, grp, created_ms, expires_ms, max_uses) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![secret_hash(&secret), spec.label, spec.group, now, token.expires_ms, spec.max_uses],
    )?;
    Ok(token)
}

/// The Enrol and Rekey RPCs. Their changes to the store go through the
/// single writer: under load, enrolments on a connection of their own were
/// refused with "database is locked" beside the writer's event batches.
#[derive(Debug, Clone)]
pub struct EnrolmentService {
    writer: Writer,
    bundle_public_key: Vec<u8>,
}

impl EnrolmentService {
    pub fn new(writer: Writer, bundle_public_key: Vec<u8>) -> Self {
        Self {
            writer,
            bundle_public_key,
        }
    }

    async fn enrol_agent(&self, req: EnrolRequest) -> Result<EnrolResponse, Status> {
        check_enrol_request(&req)?;
        let bundle_public_key = self.bundle_public_key.clone();
        self.writer
            .write("enrolment", move |tx| {
                record_enrolment(tx, &req, bundle_public_key)
            })
            .await
    }

    async fn rekey_agent(&self, req: RekeyRequest) -> Result<EnrolResponse, Status> {
        check_rekey_request(&req)?;
        let bundle_public_key = self.bundle_public_key.clone();
        // An inner refusal keeps what was written before it (the flags of a
        // family that reached its re-key limit); an outer one undoes it.
        self.writer
            .write("new identity", move |tx| {
                record_rekey(tx, &req, bundle_public_key)
            })
            .await?
    }
}

/// Checks an enrolment request before the store is involved: key, station,
/// and the proof that the agent holds the key.
fn check_enrol_request(req: &EnrolRequest) -> Result<(), Status> {
    crate::signature::PublicKey::parse(&req.public_key)
        .map_err(|e| Status::invalid_argument(format!("the agent's public key is refused: {e}")))?;
    if !valid_station(&req.station) || req.token_secret.len() > 256 {
        return Err(Status::invalid_argument(
                "station name or token secret is malformed (a station name is 1-253 characters with no control characters)",
            ));
    }
    let mut proof = tutela_proto::ENROL_PROOF_DOMAIN.to_vec();
    proof.extend_from_slice(req.token_secret.as_bytes());
    UnparsedPublicKey::new(&ED25519, &req.public_key)
        .verify(&proof, &req.proof)
        .map_err(|_| Status::unauthenticated("the proof of key possession does not verify"))?;
    Ok(())
}

/// Records an enrolment on the writer's connection (in its transaction).
/// A refusal undoes whatever was written.
fn record_enrolment(
    tx: &Connection,
    req: &EnrolRequest,
    bundle_public_key: Vec<u8>,
) -> Result<EnrolResponse, Status> {
    let internal = crate::writer::store_failed("enrolment");
    let token: Option<(i64, i64, i64, bool, String)> = tx
        .query_row(
            "SELECT expires_ms, max_uses, uses, revoked, grp FROM tokens WHERE secret_hash = ?1",
            [secret_hash(&req.token_secret)],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .optional()
        .map_err(internal)?;
    let Some((expires_ms, max_uses, uses, revoked, group)) = token else {
        tracing::warn!(station = %req.station, "enrolment with an unknown token");
        return Err(Status::permission_denied(
                "the enrolment token is not recognised by this collector; ask a technician for a new one",
            ));
    };
    if revoked {
        return Err(Status::permission_denied(
            "the enrolment token has been revoked; ask a technician for a new one",
        ));
    }
    if expires_ms <= store::now_ms() {
        return Err(Status::failed_precondition(
            "the enrolment token has expired; ask a technician for a new one",
        ));
    }
    if uses >= max_uses {
        return Err(Status::failed_precondition(format!(
                "the enrolment token has already been used ({uses} of {max_uses} uses); ask a technician for a new one"
            )));
    }
    let existing: Option<(String, bool, String)> = tx
        .query_row(
            "SELECT agent_id, revoked, grp FROM agents WHERE public_key = ?1",
            [&req.public_key],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .map_err(internal)?;
    let agent_id = match existing {
        // A revoked key stays revoked: enrolling it again must not bring
        // it back, nor use up the token (the transaction is dropped).
        Some((id, true, _)) => {
            tracing::warn!(agent_id = %id, station = %req.station, "enrolment with a revoked key refused");
            return Err(Status::permission_denied(REVOKED_KEY_MESSAGE));
        }
        Some((id, false, old_group)) => {
            if old_group != group {
                tx.execute(
                    "UPDATE agents SET grp = ?2 WHERE agent_id = ?1",
                    params![id, group],
                )
                .map_err(internal)?;
                tracing::info!(agent_id = %id, station = %req.station, from = %old_group, to = %group, "enrolled again with a token for another group; agent moved");
            }
            id
        }
        None => {
            let id = store::random_id("ag-");
            tx.execute(
                    "INSERT INTO agents (agent_id, public_key, station, grp, agent_version, enrolled_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![id, req.public_key, req.station, group, req.agent_version, store::now_ms()],
                )
                .map_err(internal)?;
            // The same machine enrolling again with a new key: flag both identities.
            if valid_machine_id(&req.machine_id) {
                let earlier: Vec<String> = {
                    let mut stmt = tx
                        .prepare(
                            "SELECT h.agent_id FROM agent_hosts h JOIN agents a USING (agent_id)
                                 WHERE h.machine_id = ?1 AND a.revoked = 0",
                        )
                        .map_err(internal)?;
                    let rows = stmt
                        .query_map([&req.machine_id], |r| r.get(0))
                        .map_err(internal)?;
                    rows.collect::<rusqlite::Result<_>>().map_err(internal)?
                };
                for old in &earlier {
                    flag(tx, old, &format!("re-enrolled with a new key as {id}"))
                        .map_err(internal)?;
                    flag(
                        tx,
                        &id,
                        &format!("re-enrolment of {old} on the same machine"),
                    )
                    .map_err(internal)?;
                    tracing::warn!(agent_id = %id, previous = %old, station = %req.station, "a machine re-enrolled with a new key; flagged");
                }
                record_host(tx, &id, &req.machine_id, &req.station).map_err(internal)?;
            }
            id
        }
    };
    tx.execute(
        "UPDATE tokens SET uses = uses + 1 WHERE secret_hash = ?1",
        [secret_hash(&req.token_secret)],
    )
    .map_err(internal)?;
    tracing::info!(%agent_id, station = %req.station, %group, "agent enrolled");
    Ok(EnrolResponse {
        agent_id,
        group,
        bundle_public_key,
    })
}

/// Checks a re-key request's form and time before the store is involved.
fn check_rekey_request(req: &RekeyRequest) -> Result<(), Status> {
    crate::signature::PublicKey::parse(&req.new_public_key).map_err(|e| {
        Status::invalid_argument(format!("the agent's new public key is refused: {e}"))
    })?;
    if !valid_station(&req.station)
        || req.agent_id.len() > 64
        || req.reason.len() > 64
        || !(req.machine_id.is_empty() || valid_machine_id(&req.machine_id))
    {
        return Err(Status::invalid_argument(
            "agent id, station, machine id or reason is malformed",
        ));
    }
    if (req.time_ms - store::now_ms()).abs() > REKEY_WINDOW_MS {
        return Err(Status::failed_precondition(
            "the re-key request is too old or the agent clock is wrong; check the clock and retry",
        ));
    }
    Ok(())
}

/// Records a re-key on the writer's connection (in its transaction). An
/// outer refusal undoes whatever was written; an inner one keeps it.
fn record_rekey(
    tx: &Connection,
    req: &RekeyRequest,
    bundle_public_key: Vec<u8>,
) -> Result<Result<EnrolResponse, Status>, Status> {
    let internal = crate::writer::store_failed("new identity");
    let message = tutela_proto::rekey_message(&req.agent_id, &req.new_public_key, req.time_ms);
    let old: Option<(Vec<u8>, bool, String)> = tx
        .query_row(
            "SELECT public_key, revoked, grp FROM agents WHERE agent_id = ?1",
            [&req.agent_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .map_err(internal)?;
    // One answer for an unknown, revoked or unproven identity, so the
    // reply tells a prober nothing; the log says which.
    let refused = |why: &str| {
        tracing::warn!(agent_id = %req.agent_id, station = %req.station, why, "re-key refused");
        Status::unauthenticated(
                "re-key refused: the old identity is unknown here, revoked, or its proof does not verify; enrol the device with a new token",
            )
    };
    let Some((old_key, revoked, group)) = old else {
        return Err(refused("unknown identity"));
    };
    UnparsedPublicKey::new(&ED25519, &old_key)
        .verify(&message, &req.old_signature)
        .map_err(|_| refused("the old key's signature does not verify"))?;
    if revoked {
        return Err(refused("the old identity is revoked"));
    }
    UnparsedPublicKey::new(&ED25519, &req.new_public_key)
        .verify(&message, &req.new_signature)
        .map_err(|_| Status::unauthenticated("the new key's signature does not verify"))?;
    // The cap covers the whole family (re-keys of re-keys too), so a
    // copied key cannot mint identities without end by chaining.
    let (root, rekeys) = family(tx, &req.agent_id).map_err(internal)?;
    if rekeys >= MAX_REKEYS_PER_IDENTITY {
        let _ = flag(
            tx,
            &req.agent_id,
            "re-key limit reached: more copies of this identity tried to re-key",
        );
        tracing::warn!(agent_id = %req.agent_id, %root, rekeys, "re-key refused: the family's limit is reached");
        return Ok(Err(Status::resource_exhausted(format!(
                "identity {} belongs to a family (from {root}) already re-keyed {rekeys} times; a technician must enrol this device with a new token",
                req.agent_id
            ))));
    }
    let taken: bool = tx
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM agents WHERE public_key = ?1)",
            [&req.new_public_key],
            |r| r.get(0),
        )
        .map_err(internal)?;
    if taken {
        return Err(Status::already_exists(
            "the new key is already enrolled; make another key pair",
        ));
    }
    let id = store::random_id("ag-");
    tx.execute(
            "INSERT INTO agents (agent_id, public_key, station, grp, agent_version, enrolled_ms, rekeyed_from) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![id, req.new_public_key, req.station, group, req.agent_version, store::now_ms(), req.agent_id],
        )
        .map_err(internal)?;
    let why = match req.reason.as_str() {
        "collector-request" => "the collector saw it from two machines",
        _ => "it started on a different machine (cloned image)",
    };
    flag(
        tx,
        &id,
        &format!("re-keyed from {} on {}: {why}", req.agent_id, req.station),
    )
    .map_err(internal)?;
    flag(
        tx,
        &req.agent_id,
        &format!("identity cloned: re-keyed as {id} on {}", req.station),
    )
    .map_err(internal)?;
    if !req.machine_id.is_empty() {
        record_host(tx, &id, &req.machine_id, &req.station).map_err(internal)?;
    }
    tracing::warn!(agent_id = %id, previous = %req.agent_id, station = %req.station, reason = %req.reason, "cloned identity re-keyed; both flagged");
    Ok(Ok(EnrolResponse {
        agent_id: id,
        group,
        bundle_public_key,
    }))
}

/// What a device enrolling with a revoked key is told. The agent keeps its
/// key in `agent.key` in its data directory; a new one is made when it is gone.
pub const REVOKED_KEY_MESSAGE: &str = "this device's key was revoked; delete agent.key and enrolment.toml from the agent's data directory, then enrol again (the token was not used)";

/// Re-keys one enrolled identity and everything re-keyed from it may give
/// rise to in all: the stations of a lab cloned from one enrolled image each
/// re-key once; a key copied off a disk image cannot mint identities without
/// end, directly or by re-keying its own re-keys. Revoking the original with
/// `agents revoke --with-descendants` revokes them all.
pub const MAX_REKEYS_PER_IDENTITY: i64 = 500;

/// How far a re-key request's time may be from the collector's.
const REKEY_WINDOW_MS: i64 = tutela_proto::limits::REKEY_WINDOW_MS;

/// A station name as shown to staff (console, emails): 1-253 bytes, no
/// control characters (no line breaks to forge lines in a plain-text email).
fn valid_station(station: &str) -> bool {
    !station.trim().is_empty() && station.len() <= 253 && !station.chars().any(char::is_control)
}

/// Machine ids travel as hex SHA-256 digests.
fn valid_machine_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The identity `agent_id` was ultimately re-keyed from (itself when it was
/// enrolled with a token), and how many identities were re-keyed from that
/// root, directly or through others.
pub fn family(conn: &Connection, agent_id: &str) -> rusqlite::Result<(String, i64)> {
    let root: String = conn
        .query_row(
            "WITH RECURSIVE up(id, parent, depth) AS (
                 SELECT agent_id, rekeyed_from, 0 FROM agents WHERE agent_id = ?1
                 UNION ALL SELECT a.agent_id, a.rekeyed_from, up.depth + 1
                 FROM agents a JOIN up ON a.agent_id = up.parent
                 WHERE up.parent <> '' AND up.depth < 100000)
             SELECT id FROM up ORDER BY depth DESC LIMIT 1",
            [agent_id],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or_else(|| agent_id.to_owned());
    let count = conn.query_row(
        "WITH RECURSIVE d(id) AS (
             SELECT agent_id FROM agents WHERE rekeyed_from = ?1
             UNION SELECT a.agent_id FROM agents a JOIN d ON a.rekeyed_from = d.id)
         SELECT COUNT(*) FROM d",
        [&root],
        |r| r.get(0),
    )?;
    Ok((root, count))
}

/// Identities made by re-keying from `agent_id`, and from those, and so on.
pub fn descendants(conn: &Connection, agent_id: &str) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare(
        "WITH RECURSIVE d(id) AS (
             SELECT agent_id FROM agents WHERE rekeyed_from = ?1
             UNION SELECT a.agent_id FROM agents a JOIN d ON a.rekeyed_from = d.id)
         SELECT id FROM d ORDER BY id",
    )?;
    let rows = stmt.query_map([agent_id], |r| r.get(0))?;
    rows.collect()
}

/// Adds a note to an agent's flag (shown by `agents list` and the coverage page).
pub fn flag(conn: &Connection, agent_id: &str, note: &str) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE agents SET flag = CASE WHEN flag IS NULL OR flag = '' THEN ?2
             WHEN length(flag) > 1000 THEN flag ELSE flag || '; ' || ?2 END
         WHERE agent_id = ?1",
        params![agent_id, note],
    )?;
    Ok(())
}

fn record_host(
    conn: &Connection,
    agent_id: &str,
    machine_id: &str,
    station: &str,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT OR IGNORE INTO agent_hosts (agent_id, machine_id, station, first_ms) VALUES (?1, ?2, ?3, ?4)",
        params![agent_id, machine_id, station, store::now_ms()],
    )?;
    Ok(())
}

/// Checks a verified heartbeat's machine against the one the identity was
/// first seen on. Returns true when the agent must re-key: the same identity
/// runs on another machine (a cloned image the agent did not notice itself).
pub fn check_host(conn: &Connection, body: &HeartbeatBody) -> rusqlite::Result<bool> {
    if !valid_machine_id(&body.machine_id) {
        return Ok(false);
    }
    let known: Option<String> = conn
        .query_row(
            "SELECT machine_id FROM agent_hosts WHERE agent_id = ?1",
            [&body.agent_id],
            |r| r.get(0),
        )
        .optional()?;
    match known {
        None => {
            record_host(conn, &body.agent_id, &body.machine_id, &body.station)?;
            Ok(false)
        }
        Some(m) if m == body.machine_id => Ok(false),
        Some(_) => {
            tracing::warn!(agent_id = %body.agent_id, station = %body.station, "one identity seen from two machines; telling the newcomer to re-key");
            flag(
                conn,
                &body.agent_id,
                &format!("identity seen from a second machine ({})", body.station),
            )?;
            Ok(true)
        }
    }
}

/// A token as technicians see it (never its secret).
#[derive(Debug, Clone)]
pub struct TokenInfo {
    /// The first 12 hex digits of the secret's hash.
    pub id: String,
    pub label: String,
    pub group: String,
    pub created_ms: i64,
    pub expires_ms: i64,
    pub max_uses: i64,
    pub uses: i64,
    pub revoked: bool,
}

impl TokenInfo {
    pub fn state(&self, now_ms: i64) -> &'static str {
        if self.revoked {
            "revoked"
        } else if self.expires_ms <= now_ms {
            "expired"
        } else if self.uses >= self.max_uses {
            "used up"
        } else {
            "valid"
        }
    }
}

/// Every token, newest first.
pub fn list_tokens(conn: &Connection) -> rusqlite::Result<Vec<TokenInfo>> {
    let mut stmt = conn.prepare(
        "SELECT secret_hash, label, grp, created_ms, expires_ms, max_uses, uses, revoked
         FROM tokens ORDER BY created_ms DESC, rowid DESC",
    )?;
    let rows = stmt.query_map([], |r| {
        let hash: Vec<u8> = r.get(0)?;
        Ok(TokenInfo {
            id: hex::encode(&hash)[..12].to_owned(),
            label: r.get(1)?,
            group: r.get(2)?,
            created_ms: r.get(3)?,
            expires_ms: r.get(4)?,
            max_uses: r.get(5)?,
            uses: r.get(6)?,
            revoked: r.get(7)?,
        })
    })?;
    rows.collect()
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("give at least 4 hex digits of the token id (see `tutela-collector token list`)")]
    ShortId,
    #[error("no token has an id starting {0}; see `tutela-collector token list`")]
    NotFound(String),
    #[error("{0} tokens have ids starting {1}; give more digits")]
    Ambiguous(usize, String),
    #[error("database error: {0}")]
    Db(#[from] rusqlite::Error),
}

/// Revokes the token whose id starts with `prefix`; returns its full id.
pub fn revoke_token(conn: &Connection, prefix: &str) -> Result<String, TokenError> {
    let prefix = prefix.trim().to_ascii_lowercase();
    if prefix.len() < 4 || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(TokenError::ShortId);
    }
    let matching: Vec<TokenInfo> = list_tokens(conn)?
        .into_iter()
        .filter(|t| t.id.starts_with(&prefix) || prefix.starts_with(&t.id))
        .collect();
    match matching.as_slice() {
        [] => Err(TokenError::NotFound(prefix)),
        [one] => {
            conn.execute(
                "UPDATE tokens SET revoked = 1 WHERE lower(hex(substr(secret_hash, 1, 6))) = ?1",
                [&one.id],
            )?;
            tracing::info!(token = %one.id, "enrolment token revoked");
            Ok(one.id.clone())
        }
        many => Err(TokenError::Ambiguous(many.len(), prefix)),
    }
}

#[tonic::async_trait]
impl Enrolment for EnrolmentService {
    async fn enrol(
        &self,
        request: Request<EnrolRequest>,
    ) -> Result<Response<EnrolResponse>, Status> {
        self.enrol_agent(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn rekey(
        &self,
        request: Request<RekeyRequest>,
    ) -> Result<Response<EnrolResponse>, Status> {
        self.rekey_agent(request.into_inner())
            .await
            .map(Response::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{Ed25519KeyPair, KeyPair};

    fn keypair() -> Ed25519KeyPair {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
        Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()
    }

    /// The service on a fresh store, a connection of its own to look at
    /// the store, and a runtime to call the service on.
    struct Fixture {
        service: EnrolmentService,
        conn: std::sync::Mutex<Connection>,
        rt: tokio::runtime::Runtime,
    }

    fn service() -> (tempfile::TempDir, Fixture) {
        let dir = tempfile::tempdir().unwrap();
        let writer = Writer::start(dir.path().to_owned(), 1000).unwrap();
        let fixture = Fixture {
            service: EnrolmentService::new(writer, vec![7; 32]),
            conn: std::sync::Mutex::new(store::open(dir.path()).unwrap()),
            rt: tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap(),
        };
        (dir, fixture)
    }

    fn token(service: &Fixture, group: &str) -> String {
        let conn = service.conn.lock().unwrap();
        let spec = TokenSpec {
            valid_for_ms: 60_000,
            max_uses: 5,
            group: group.into(),
            label: String::new(),
        };
        create_token(&conn, &spec, "127.0.0.1:1", "00")
            .unwrap()
            .secret
    }

    fn enrol(
        service: &Fixture,
        key: &Ed25519KeyPair,
        secret: &str,
    ) -> Result<EnrolResponse, Status> {
        let mut proof = tutela_proto::ENROL_PROOF_DOMAIN.to_vec();
        proof.extend_from_slice(secret.as_bytes());
        service
            .rt
            .block_on(service.service.enrol_agent(EnrolRequest {
                token_secret: secret.into(),
                public_key: key.public_key().as_ref().to_vec(),
                station: "LAB1-PC01".into(),
                agent_version: "test".into(),
                proof: key.sign(&proof).as_ref().to_vec(),
                machine_id: String::new(),
            }))
    }

    fn uses(service: &Fixture) -> Vec<i64> {
        let conn = service.conn.lock().unwrap();
        list_tokens(&conn).unwrap().iter().map(|t| t.uses).collect()
    }

    fn rekey(
        service: &Fixture,
        old_id: &str,
        old: &Ed25519KeyPair,
        new: &Ed25519KeyPair,
    ) -> Result<EnrolResponse, Status> {
        let time_ms = store::now_ms();
        let message = tutela_proto::rekey_message(old_id, new.public_key().as_ref(), time_ms);
        service
            .rt
            .block_on(service.service.rekey_agent(RekeyRequest {
                agent_id: old_id.into(),
                new_public_key: new.public_key().as_ref().to_vec(),
                station: "LAB1-PC02".into(),
                machine_id: String::new(),
                agent_version: "test".into(),
                time_ms,
                reason: "machine-id-changed".into(),
                old_signature: old.sign(&message).as_ref().to_vec(),
                new_signature: new.sign(&message).as_ref().to_vec(),
            }))
    }

    #[test]
    fn a_revoked_key_enrolling_again_is_refused_without_using_the_token() {
        let (_dir, service) = service();
        let key = keypair();
        let first = enrol(&service, &key, &token(&service, "lab-1")).unwrap();
        service
            .conn
            .lock()
            .unwrap()
            .execute(
                "UPDATE agents SET revoked = 1 WHERE agent_id = ?1",
                [&first.agent_id],
            )
            .unwrap();
        let secret = token(&service, "lab-1");
        let err = enrol(&service, &key, &secret).unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied);
        assert!(err.message().contains("agent.key"), "{}", err.message());
        assert_eq!(uses(&service), [0, 1], "the second token was not used");
        let revoked: bool = service
            .conn
            .lock()
            .unwrap()
            .query_row(
                "SELECT revoked FROM agents WHERE agent_id = ?1",
                [&first.agent_id],
                |r| r.get(0),
            )
            .unwrap();
        assert!(revoked, "still revoked");
        // A new key (agent.key deleted) enrols with the same token.
        let again = enrol(&service, &keypair(), &secret).unwrap();
        assert_ne!(again.agent_id, first.agent_id);
    }

    #[test]
    fn a_known_key_enrolled_with_another_groups_token_moves_to_that_group() {
        let (_dir, service) = service();
        let key = keypair();
        let first = enrol(&service, &key, &token(&service, "lab-1")).unwrap();
        let second = enrol(&service, &key, &token(&service, "year-10")).unwrap();
        assert_eq!(second.agent_id, first.agent_id);
        assert_eq!(second.group, "year-10");
        let grp: String = service
            .conn
            .lock()
            .unwrap()
            .query_row(
                "SELECT grp FROM agents WHERE agent_id = ?1",
                [&first.agent_id],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(grp, "year-10");
    }

    #[test]
    fn the_rekey_limit_counts_the_whole_family_not_direct_children() {
        let (_dir, service) = service();
        let root_key = keypair();
        let root = enrol(&service, &root_key, &token(&service, "lab-1"))
            .unwrap()
            .agent_id;
        // A chain root -> c1 -> ... -> c(N-1), each re-keyed from the one before.
        let last_key = keypair();
        let mut parent = root.clone();
        {
            let conn = service.conn.lock().unwrap();
            for n in 1..MAX_REKEYS_PER_IDENTITY {
                let id = format!("ag-chain{n:04}");
                let public_key = if n == MAX_REKEYS_PER_IDENTITY - 1 {
                    last_key.public_key().as_ref().to_vec()
                } else {
                    format!("fake-key-{n:04}").into_bytes()
                };
                conn.execute(
                    "INSERT INTO agents (agent_id, public_key, station, grp, enrolled_ms, rekeyed_from) VALUES (?1, ?2, 'PC', 'lab-1', 0, ?3)",
                    params![id, public_key, parent],
                )
                .unwrap();
                parent = id;
            }
        }
        assert_eq!(
            family(&service.conn.lock().unwrap(), &parent).unwrap(),
            (root.clone(), MAX_REKEYS_PER_IDENTITY - 1)
        );
        // The last one in the chain may re-key: the family reaches the limit.
        let next_key = keypair();
        let next = rekey(&service, &parent, &last_key, &next_key).unwrap();
        // Its new identity has no children of its own, but the family is full.
        let err = rekey(&service, &next.agent_id, &next_key, &keypair()).unwrap_err();
        assert_eq!(
            err.code(),
            tonic::Code::ResourceExhausted,
            "{}",
            err.message()
        );
        let err = rekey(&service, &root, &root_key, &keypair()).unwrap_err();
        assert_eq!(
            err.code(),
            tonic::Code::ResourceExhausted,
            "{}",
            err.message()
        );
    }

    #[test]
    fn station_names_cannot_carry_control_characters() {
        assert!(valid_station("LAB2-PC07"));
        assert!(valid_station("Ystafell 3 – cyfrifiadur 12"));
        assert!(!valid_station(""));
        assert!(!valid_station("   "));
        assert!(!valid_station(&"x".repeat(254)));
        assert!(!valid_station(
            "PC1 last seen never\n\nACTION REQUIRED: sign in at http://evil.example"
        ));
        assert!(!valid_station("PC1\r"));
        assert!(!valid_station("PC1\u{1b}[31m"));
    }
}
