//! Exchanging a technician's enrolment token for an agent id.

use std::path::Path;

use tutela_proto::token::{EnrolmentToken, TokenError};
use tutela_proto::v1::enrolment_client::EnrolmentClient;
use tutela_proto::v1::EnrolRequest;

use crate::identity::{Enrolment, Identity, IdentityError};
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
/// proves possession of the agent key and stores the agent id.
pub async fn enrol(
    data_dir: &Path,
    token_text: &str,
    station: &str,
    now_ms: i64,
) -> Result<Enrolment, EnrolError> {
    let token = EnrolmentToken::decode(token_text, now_ms)?;
    let identity = Identity::load_or_create(data_dir)?;
    let channel = pinning::connect(&token.collector, &token.fingerprint).await?;
    let mut proof_message = tutela_proto::ENROL_PROOF_DOMAIN.to_vec();
    proof_message.extend_from_slice(token.secret.as_bytes());
    let request = EnrolRequest {
        token_secret: token.secret.clone(),
        public_key: identity.public_key().to_vec(),
        station: station.to_owned(),
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        proof: identity.sign(&proof_message),
    };
    let reply = EnrolmentClient::new(channel)
        .enrol(request)
        .await
        .map_err(|s| EnrolError::Refused(s.message().to_owned()))?
        .into_inner();
    let enrolment = Enrolment {
        agent_id: reply.agent_id,
        collector: token.collector,
        fingerprint: token.fingerprint,
        group: reply.group,
        key_fingerprint: identity.key_fingerprint(),
        bundle_key: hex::encode(&reply.bundle_public_key),
    };
    enrolment.save(data_dir)?;
    tracing::info!(agent_id = %enrolment.agent_id, group = %enrolment.group, "enrolled");
    Ok(enrolment)
}
