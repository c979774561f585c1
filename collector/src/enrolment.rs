//! Enrolment tokens and the Enrol RPC.

use std::sync::Mutex;

use ring::signature::{UnparsedPublicKey, ED25519};
use rusqlite::{params, Connection, OptionalExtension};
use tonic::{Request, Response, Status};
use tutela_proto::token::EnrolmentToken;
use tutela_proto::v1::enrolment_server::Enrolment;
use tutela_proto::v1::{EnrolRequest, EnrolResponse};

use crate::store;

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
    };
    conn.execute(
        "INSERT INTO tokens (secret_hash, label, grp, created_ms, expires_ms, max_uses) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![secret_hash(&secret), spec.label, spec.group, now, token.expires_ms, spec.max_uses],
    )?;
    Ok(token)
}

#[derive(Debug, Clone)]
pub struct EnrolmentService {
    conn: std::sync::Arc<Mutex<Connection>>,
    bundle_public_key: Vec<u8>,
}

impl EnrolmentService {
    pub fn open(dir: &std::path::Path, bundle_public_key: Vec<u8>) -> rusqlite::Result<Self> {
        Ok(Self {
            conn: std::sync::Arc::new(Mutex::new(store::open(dir)?)),
            bundle_public_key,
        })
    }

    fn enrol_blocking(&self, req: &EnrolRequest) -> Result<EnrolResponse, Status> {
        if req.public_key.len() != 32 {
            return Err(Status::invalid_argument(
                "the public key must be 32 bytes (Ed25519)",
            ));
        }
        if req.station.is_empty() || req.station.len() > 253 || req.token_secret.len() > 256 {
            return Err(Status::invalid_argument(
                "station name or token secret is malformed",
            ));
        }
        let mut proof = tutela_proto::ENROL_PROOF_DOMAIN.to_vec();
        proof.extend_from_slice(req.token_secret.as_bytes());
        UnparsedPublicKey::new(&ED25519, &req.public_key)
            .verify(&proof, &req.proof)
            .map_err(|_| Status::unauthenticated("the proof of key possession does not verify"))?;
        let internal = |e: rusqlite::Error| {
            tracing::error!(error = %e, "enrolment storage error");
            Status::unavailable("the collector cannot record the enrolment; retry later")
        };
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let tx = conn.transaction().map_err(internal)?;
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
        let existing: Option<String> = tx
            .query_row(
                "SELECT agent_id FROM agents WHERE public_key = ?1",
                [&req.public_key],
                |r| r.get(0),
            )
            .optional()
            .map_err(internal)?;
        let agent_id = match existing {
            Some(id) => id,
            None => {
                let id = store::random_id("ag-");
                tx.execute(
                    "INSERT INTO agents (agent_id, public_key, station, grp, agent_version, enrolled_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![id, req.public_key, req.station, group, req.agent_version, store::now_ms()],
                )
                .map_err(internal)?;
                id
            }
        };
        tx.execute(
            "UPDATE tokens SET uses = uses + 1 WHERE secret_hash = ?1",
            [secret_hash(&req.token_secret)],
        )
        .map_err(internal)?;
        tx.commit().map_err(internal)?;
        tracing::info!(%agent_id, station = %req.station, %group, "agent enrolled");
        Ok(EnrolResponse {
            agent_id,
            group,
            bundle_public_key: self.bundle_public_key.clone(),
        })
    }
}

#[tonic::async_trait]
impl Enrolment for EnrolmentService {
    async fn enrol(
        &self,
        request: Request<EnrolRequest>,
    ) -> Result<Response<EnrolResponse>, Status> {
        let service = self.clone();
        let req = request.into_inner();
        tokio::task::spawn_blocking(move || service.enrol_blocking(&req))
            .await
            .map_err(|_| Status::internal("enrolment task failed"))?
            .map(Response::new)
    }
}
