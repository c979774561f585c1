//! Enrolment tokens: what a technician hands to a device.
//!
//! A token is `tutela1.` followed by base64url (no padding) of a small JSON
//! document: the collector's address, the SHA-256 fingerprint of its TLS
//! certificate (which the agent pins), the one-time secret and the expiry.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

const PREFIX: &str = "tutela1.";
/// Tokens longer than this are refused before decoding.
const MAX_TOKEN_LEN: usize = 2048;

/// The decoded content of an enrolment token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrolmentToken {
    /// `host:port` of the collector's gRPC endpoint.
    pub collector: String,
    /// Lower-case hex SHA-256 of the collector certificate (DER).
    pub fingerprint: String,
    /// The secret the collector knows by its hash.
    pub secret: String,
    /// Expiry, milliseconds since the Unix epoch.
    pub expires_ms: i64,
    /// Further `host:port` endpoints of the same collector service (serving
    /// the same certificate), tried in order when `collector` cannot be
    /// reached. Absent from tokens that have none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallbacks: Vec<String>,
}

/// Most fallback addresses a token may carry.
pub const MAX_FALLBACKS: usize = 8;

/// A `host:port` as tokens carry it: non-empty, at most 255 bytes, printable,
/// no spaces, with a port.
pub fn is_endpoint(addr: &str) -> bool {
    !addr.is_empty()
        && addr.len() <= 255
        && addr.bytes().all(|b| b.is_ascii_graphic())
        && addr.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        })
}

/// Why a token could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the enrolment token is malformed ({0}); copy the whole token from `tutela-collector token create` again")]
    Malformed(&'static str),
    #[error("the enrolment token expired; ask a technician for a new one (`tutela-collector token create`)")]
    Expired,
}

impl EnrolmentToken {
    /// Encodes the token as text.
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).expect("token serialises");
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(json))
    }

    /// Parses token text, checking its shape and its expiry against `now_ms`.
    pub fn decode(text: &str, now_ms: i64) -> Result<Self, TokenError> {
        let text = text.trim();
        if text.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed("too long"));
        }
        let rest = text
            .strip_prefix(PREFIX)
            .ok_or(TokenError::Malformed("it does not start with `tutela1.`"))?;
        let json = URL_SAFE_NO_PAD
            .decode(rest)
            .map_err(|_| TokenError::Malformed("not base64url"))?;
        let token: EnrolmentToken =
            serde_json::from_slice(&json).map_err(|_| TokenError::Malformed("bad content"))?;
        if token.fingerprint.len() != 64
            || !token.fingerprint.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(TokenError::Malformed("bad certificate fingerprint"));
        }
        if token.secret.len() < 16 || token.collector.is_empty() {
            return Err(TokenError::Malformed("missing secret or collector address"));
        }
        if token.fallbacks.len() > MAX_FALLBACKS || !token.fallbacks.iter().all(|a| is_endpoint(a))
        {
            return Err(TokenError::Malformed("bad fallback collector address"));
        }
        if token.expires_ms <= now_ms {
            return Err(TokenError::Expired);
        }
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> EnrolmentToken {
        EnrolmentToken {
            collector: "127.0.0.1:7443".into(),
            fingerprint: "ab".repeat(32),
            secret: "s".repeat(32),
            expires_ms: 2_000,
            fallbacks: Vec::new(),
        }
    }

    #[test]
    fn fallbacks_round_trip_are_omitted_when_empty_and_checked() {
        let plain = sample().encode();
        let json = URL_SAFE_NO_PAD
            .decode(plain.strip_prefix(PREFIX).unwrap())
            .unwrap();
        assert!(!String::from_utf8(json).unwrap().contains("fallbacks"));
        let mut t = sample();
        t.fallbacks = vec!["collector-b.school.test:7443".into(), "[::1]:7443".into()];
        assert_eq!(EnrolmentToken::decode(&t.encode(), 1_000).unwrap(), t);
        for bad in [
            vec![String::new()],
            vec!["no-port".into()],
            vec!["host:0".into()],
            vec!["two words:7443".into()],
            vec!["h:1".to_owned(); MAX_FALLBACKS + 1],
        ] {
            t.fallbacks = bad.clone();
            assert_eq!(
                EnrolmentToken::decode(&t.encode(), 1_000),
                Err(TokenError::Malformed("bad fallback collector address")),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn round_trips() {
        let t = sample();
        assert_eq!(EnrolmentToken::decode(&t.encode(), 1_000).unwrap(), t);
    }

    #[test]
    fn rejects_expired_and_malformed() {
        let t = sample();
        assert_eq!(
            EnrolmentToken::decode(&t.encode(), 3_000),
            Err(TokenError::Expired)
        );
        assert!(matches!(
            EnrolmentToken::decode("hello", 0),
            Err(TokenError::Malformed(_))
        ));
        assert!(matches!(
            EnrolmentToken::decode("tutela1.!!!", 0),
            Err(TokenError::Malformed(_))
        ));
        let mut bad = t.encode();
        bad.truncate(bad.len() - 4);
        assert!(EnrolmentToken::decode(&bad, 0).is_err());
    }
}
