//! Exchanging a technician's enrolment token for an agent id, and replacing
//! an identity that was cloned onto another machine.

use std::path::Path;

use tutela_proto::token::{EnrolmentToken, TokenError};
use tutela_proto::v1::enrolment_client::EnrolmentClient;
use tutela_proto::v1::{EnrolRequest, RekeyRequest};

use crate::identity::{self, Enrolment, Identity, IdentityError};
use crate::pinning;

#[derive(Debug, thiserror::Error)]
pub enum EnrolError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Connect(#[from] pinning::PinningError),
    #[error("the collector refused the enrolment: {0}")]
    Refused(String),
}

/// Enrols this device: pins the collector's certificate from the token,
/// proves possession of the agent key and stores the agent id. The host the
/// key belongs to (machine and `station`, hashed) is recorded beside it;
/// `station` should be the name the agent runs under
/// (`session::station_name()`), or its first run re-keys as a moved identity.
pub async fn enrol(
    data_dir: &Path,
    token_text: &str,
    station: &str,
    now_ms: i64,
) -> Result<Enrolment, EnrolError> {
    let token = EnrolmentToken::decode(token_text, now_ms)?;
    let identity = Identity::load_or_create(data_dir)?;
    // The run-time check hashes `session::station_name()`: register that name.
    let host = identity::host_id(station);
    let addresses: Vec<String> = std::iter::once(token.collector.clone())
        .chain(token.fallbacks.iter().cloned())
        .collect();
    let channel = pinning::connect_any(&addresses, &token.fingerprint).await?;
    let mut proof_message = tutela_proto::ENROL_PROOF_DOMAIN.to_vec();
    proof_message.extend_from_slice(token.secret.as_bytes());
    let request = EnrolRequest {
        token_secret: token.secret.clone(),
        public_key: identity.public_key().to_vec(),
        station: station.to_owned(),
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        proof: identity.sign(&proof_message),
        machine_id: host.clone(),
    };
    let reply = EnrolmentClient::new(channel)
        .enrol(request)
        .await
        .map_err(|s| EnrolError::Refused(s.message().to_owned()))?
        .into_inner();
    let enrolment = Enrolment {
        agent_id: reply.agent_id,
        collector: token.collector,
        fallbacks: token.fallbacks,
        fingerprint: token.fingerprint,
        group: reply.group,
        key_fingerprint: identity.key_fingerprint(),
        bundle_key: hex::encode(&reply.bundle_public_key),
    };
    enrolment.save(data_dir)?;
    identity::record_host(data_dir, &host)?;
    tracing::info!(agent_id = %enrolment.agent_id, group = %enrolment.group, "enrolled");
    Ok(enrolment)
}

/// Why an identity is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RekeyReason {
    /// The agent found its key was made on another host (a cloned image).
    HostChanged,
    /// The collector saw this identity from two machines.
    CollectorRequest,
}

impl RekeyReason {
    fn as_str(self) -> &'static str {
        match self {
            Self::HostChanged => "machine-id-changed",
            Self::CollectorRequest => "collector-request",
        }
    }
}

/// Replaces a cloned identity: makes a new key pair, proves possession of
/// both the old and the new key to the collector (which flags both
/// identities for the technician), and only then stores the new key, the new
/// enrolment and this host. Returns the new enrolment and key.
pub async fn rekey(
    data_dir: &Path,
    old: &Enrolment,
    old_key: &Identity,
    reason: RekeyReason,
) -> Result<(Enrolment, Identity), EnrolError> {
    let station = crate::session::station_name();
    let host = identity::host_id(&station);
    let new_key = Identity::generate();
    let time_ms = crate::session::now_ms();
    let message = tutela_proto::rekey_message(&old.agent_id, new_key.public_key(), time_ms);
    let request = RekeyRequest {
        agent_id: old.agent_id.clone(),
        new_public_key: new_key.public_key().to_vec(),
        station,
        machine_id: host.clone(),
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        time_ms,
        reason: reason.as_str().to_owned(),
        old_signature: old_key.sign(&message),
        new_signature: new_key.sign(&message),
    };
    let channel = pinning::connect_any(&old.addresses(), &old.fingerprint).await?;
    let reply = EnrolmentClient::new(channel)
        .rekey(request)
        .await
        .map_err(|s| EnrolError::Refused(s.message().to_owned()))?
        .into_inner();
    let enrolment = Enrolment {
        agent_id: reply.agent_id,
        group: reply.group,
        key_fingerprint: new_key.key_fingerprint(),
        bundle_key: hex::encode(&reply.bundle_public_key),
        ..old.clone()
    };
    new_key.save(data_dir)?;
    enrolment.save(data_dir)?;
    identity::record_host(data_dir, &host)?;
    tracing::warn!(previous = %old.agent_id, agent_id = %enrolment.agent_id, reason = reason.as_str(), "identity replaced with a new key; the collector flags both for the technician");
    Ok((enrolment, new_key))
}
