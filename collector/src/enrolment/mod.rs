//! Enrolment tokens and the Enrol and Rekey RPCs: who may enrol or take a
//! new identity. The rows are read and written through the store's
//! transaction ([`store::Tx`]), in the writer's batch.

use ring::signature::{UnparsedPublicKey, ED25519};
use tonic::{Request, Response, Status};
use tutela_proto::token::EnrolmentToken;
use tutela_proto::v1::enrolment_server::Enrolment;
use tutela_proto::v1::{EnrolRequest, EnrolResponse, HeartbeatBody, RekeyRequest};

pub use crate::store::agents::TokenInfo;
use crate::store::agents::{NewAgent, NewToken};
use crate::store::{self, StoreError, Tx};
use crate::writer::{store_failed, Writer};

/// What a technician chooses when making a token.
#[derive(Debug, Clone)]
pub struct TokenSpec {
    pub valid_for_ms: i64,
    pub max_uses: u32,
    pub group: String,
    pub label: String,
    /// The school the agents enrolled with it belong to.
    pub school: String,
}

fn secret_hash(secret: &str) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, secret.as_bytes())
        .as_ref()
        .to_vec()
}

/// Makes a token: the token text for the technician, and the row to store
/// (which holds only the hash of its secret).
pub fn new_token(
    spec: &TokenSpec,
    collector: &str,
    fingerprint: &str,
) -> (EnrolmentToken, NewToken) {
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
    let row = NewToken {
        secret_hash: secret_hash(&secret),
        label: spec.label.clone(),
        group: spec.group.clone(),
        school: spec.school.clone(),
        created_ms: now,
        expires_ms: token.expires_ms,
        max_uses: i64::from(spec.max_uses),
    };
    (token, row)
}

/// Makes a token and stores it.
pub async fn create_token(
    store: &store::Store,
    spec: &TokenSpec,
    collector: &str,
    fingerprint: &str,
) -> Result<EnrolmentToken, StoreError> {
    let (token, row) = new_token(spec, collector, fingerprint);
    store.insert_token(&row).await?;
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
                Box::pin(record_enrolment(tx, req, bundle_public_key))
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
                Box::pin(record_rekey(tx, req, bundle_public_key))
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

/// Records an enrolment in the writer's transaction. A refusal undoes
/// whatever was written. The token is read (and, on a shared store, locked)
/// in this transaction, so its uses are spent exactly once whichever
/// collectors the devices enrol through.
async fn record_enrolment(
    tx: &mut Tx<'_>,
    req: EnrolRequest,
    bundle_public_key: Vec<u8>,
) -> Result<EnrolResponse, Status> {
    let internal = store_failed("enrolment");
    let hash = secret_hash(&req.token_secret);
    let Some(token) = tx.token_for_use(&hash).await.map_err(internal)? else {
        tracing::warn!(station = %req.station, "enrolment with an unknown token");
        return Err(Status::permission_denied(
                "the enrolment token is not recognised by this collector; ask a technician for a new one",
            ));
    };
    if token.revoked {
        return Err(Status::permission_denied(
            "the enrolment token has been revoked; ask a technician for a new one",
        ));
    }
    if token.expires_ms <= store::now_ms() {
        return Err(Status::failed_precondition(
            "the enrolment token has expired; ask a technician for a new one",
        ));
    }
    if token.uses >= token.max_uses {
        return Err(Status::failed_precondition(format!(
                "the enrolment token has already been used ({} of {} uses); ask a technician for a new one",
                token.uses, token.max_uses
            )));
    }
    let group = token.group;
    let school = token.school;
    let existing = tx.agent_by_key(&req.public_key).await.map_err(internal)?;
    let agent_id = match existing {
        // A revoked key stays revoked: enrolling it again must not bring
        // it back, nor use up the token (the transaction is dropped).
        Some(a) if a.revoked => {
            tracing::warn!(agent_id = %a.agent_id, station = %req.station, "enrolment with a revoked key refused");
            return Err(Status::permission_denied(REVOKED_KEY_MESSAGE));
        }
        Some(a) => {
            if a.group != group || a.school != school {
                tx.set_group(&a.agent_id, &group, &school)
                    .await
                    .map_err(internal)?;
                tracing::info!(agent_id = %a.agent_id, station = %req.station, from = %a.group, to = %group, from_school = %a.school, to_school = %school, "enrolled again with a token for another group or school; agent moved");
            }
            a.agent_id
        }
        None => {
            let id = store::random_id("ag-");
            tx.insert_agent(&NewAgent {
                agent_id: &id,
                public_key: &req.public_key,
                station: &req.station,
                group: &group,
                agent_version: &req.agent_version,
                enrolled_ms: store::now_ms(),
                rekeyed_from: "",
                school: &school,
            })
            .await
            .map_err(internal)?;
            // The same machine enrolling again with a new key: flag both identities.
            if valid_machine_id(&req.machine_id) {
                let earlier = tx
                    .live_agents_on_machine(&req.machine_id)
                    .await
                    .map_err(internal)?;
                for old in &earlier {
                    tx.flag(old, &format!("re-enrolled with a new key as {id}"))
                        .await
                        .map_err(internal)?;
                    tx.flag(&id, &format!("re-enrolment of {old} on the same machine"))
                        .await
                        .map_err(internal)?;
                    tracing::warn!(agent_id = %id, previous = %old, station = %req.station, "a machine re-enrolled with a new key; flagged");
                }
                tx.record_host(&id, &req.machine_id, &req.station, store::now_ms())
                    .await
                    .map_err(internal)?;
            }
            id
        }
    };
    tx.consume_token(&hash).await.map_err(internal)?;
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

/// Records a re-key in the writer's transaction. An outer refusal undoes
/// whatever was written; an inner one keeps it.
async fn record_rekey(
    tx: &mut Tx<'_>,
    req: RekeyRequest,
    bundle_public_key: Vec<u8>,
) -> Result<Result<EnrolResponse, Status>, Status> {
    let internal = store_failed("new identity");
    let message = tutela_proto::rekey_message(&req.agent_id, &req.new_public_key, req.time_ms);
    let old = tx.agent(&req.agent_id).await.map_err(internal)?;
    // One answer for an unknown, revoked or unproven identity, so the
    // reply tells a prober nothing; the log says which.
    let refused = |why: &str| {
        tracing::warn!(agent_id = %req.agent_id, station = %req.station, why, "re-key refused");
        Status::unauthenticated(
                "re-key refused: the old identity is unknown here, revoked, or its proof does not verify; enrol the device with a new token",
            )
    };
    let Some(old) = old else {
        return Err(refused("unknown identity"));
    };
    UnparsedPublicKey::new(&ED25519, &old.public_key)
        .verify(&message, &req.old_signature)
        .map_err(|_| refused("the old key's signature does not verify"))?;
    if old.revoked {
        return Err(refused("the old identity is revoked"));
    }
    UnparsedPublicKey::new(&ED25519, &req.new_public_key)
        .verify(&message, &req.new_signature)
        .map_err(|_| Status::unauthenticated("the new key's signature does not verify"))?;
    let group = old.group;
    // The cap covers the whole family (re-keys of re-keys too), so a
    // copied key cannot mint identities without end by chaining.
    let (root, rekeys) = tx.family(&req.agent_id).await.map_err(internal)?;
    if rekeys >= MAX_REKEYS_PER_IDENTITY {
        let _ = tx
            .flag(
                &req.agent_id,
                "re-key limit reached: more copies of this identity tried to re-key",
            )
            .await;
        tracing::warn!(agent_id = %req.agent_id, %root, rekeys, "re-key refused: the family's limit is reached");
        return Ok(Err(Status::resource_exhausted(format!(
                "identity {} belongs to a family (from {root}) already re-keyed {rekeys} times; a technician must enrol this device with a new token",
                req.agent_id
            ))));
    }
    if tx
        .agent_by_key(&req.new_public_key)
        .await
        .map_err(internal)?
        .is_some()
    {
        return Err(Status::already_exists(
            "the new key is already enrolled; make another key pair",
        ));
    }
    let id = store::random_id("ag-");
    tx.insert_agent(&NewAgent {
        agent_id: &id,
        public_key: &req.new_public_key,
        station: &req.station,
        group: &group,
        agent_version: &req.agent_version,
        enrolled_ms: store::now_ms(),
        rekeyed_from: &req.agent_id,
        school: "",
    })
    .await
    .map_err(internal)?;
    let why = match req.reason.as_str() {
        "collector-request" => "the collector saw it from two machines",
        _ => "it started on a different machine (cloned image)",
    };
    tx.flag(
        &id,
        &format!("re-keyed from {} on {}: {why}", req.agent_id, req.station),
    )
    .await
    .map_err(internal)?;
    tx.flag(
        &req.agent_id,
        &format!("identity cloned: re-keyed as {id} on {}", req.station),
    )
    .await
    .map_err(internal)?;
    if !req.machine_id.is_empty() {
        tx.record_host(&id, &req.machine_id, &req.station, store::now_ms())
            .await
            .map_err(internal)?;
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

/// Checks a verified heartbeat's machine against the one the identity was
/// first seen on. Returns true when the agent must re-key: the same identity
/// runs on another machine (a cloned image the agent did not notice itself).
pub async fn check_host(tx: &mut Tx<'_>, body: &HeartbeatBody) -> Result<bool, StoreError> {
    if !valid_machine_id(&body.machine_id) {
        return Ok(false);
    }
    match tx.host_of(&body.agent_id).await? {
        None => {
            tx.record_host(
                &body.agent_id,
                &body.machine_id,
                &body.station,
                store::now_ms(),
            )
            .await?;
            Ok(false)
        }
        Some(m) if m == body.machine_id => Ok(false),
        Some(_) => {
            tracing::warn!(agent_id = %body.agent_id, station = %body.station, "one identity seen from two machines; telling the newcomer to re-key");
            tx.flag(
                &body.agent_id,
                &format!("identity seen from a second machine ({})", body.station),
            )
            .await?;
            Ok(true)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("give at least 4 hex digits of the token id (see `tutela-collector token list`)")]
    ShortId,
    #[error("no token has an id starting {0}; see `tutela-collector token list`")]
    NotFound(String),
    #[error("{0} tokens have ids starting {1}; give more digits")]
    Ambiguous(usize, String),
}

/// The id of the one token in `tokens` whose id starts with `prefix`.
pub fn token_by_prefix(tokens: &[TokenInfo], prefix: &str) -> Result<String, TokenError> {
    let prefix = prefix.trim().to_ascii_lowercase();
    if prefix.len() < 4 || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(TokenError::ShortId);
    }
    let matching: Vec<&TokenInfo> = tokens
        .iter()
        .filter(|t| t.id.starts_with(&prefix) || prefix.starts_with(&t.id))
        .collect();
    match matching.as_slice() {
        [] => Err(TokenError::NotFound(prefix)),
        [one] => Ok(one.id.clone()),
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
mod tests;
