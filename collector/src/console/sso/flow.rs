//! Sign-ins in progress: each has a random `state` (single use), a `nonce`
//! the ID token must carry, a PKCE verifier, and a binding token kept in a
//! short-lived cookie of the browser that began it, so that a callback URL
//! carried to another browser, or used twice, is refused.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;

use crate::console::auth::{fresh_token, same_secret};

/// How long a sign-in at the provider may take.
pub const FLOW_TTL: Duration = Duration::from_secs(600);
/// Most sign-ins in progress at once (beyond it new ones are refused).
const MAX_PENDING: usize = 10_000;

/// What a callback needs from its sign-in's start.
#[derive(Debug)]
pub struct Pending {
    pub provider: String,
    pub nonce: String,
    pub verifier: String,
    binding: String,
    started: Instant,
}

impl Pending {
    /// Whether the browser's binding cookie is this sign-in's.
    pub fn bound_to(&self, cookie: Option<&str>) -> bool {
        cookie.is_some_and(|c| same_secret(c, &self.binding))
    }
}

/// A started sign-in: what goes to the provider and into the cookie.
#[derive(Debug)]
pub struct Started {
    pub state: String,
    pub nonce: String,
    pub challenge: String,
    pub binding: String,
}

#[derive(Debug, Default)]
pub struct Flows {
    pending: Mutex<HashMap<String, Pending>>,
}

/// The PKCE S256 challenge of a verifier.
pub fn challenge(verifier: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref())
}

impl Flows {
    /// Starts a sign-in with `provider`; `None` when too many are pending.
    pub fn begin(&self, provider: &str) -> Option<Started> {
        let mut map = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_PENDING {
            map.retain(|_, p| p.started.elapsed() < FLOW_TTL);
            if map.len() >= MAX_PENDING {
                return None;
            }
        }
        let verifier = fresh_token();
        let started = Started {
            state: fresh_token(),
            nonce: fresh_token(),
            challenge: challenge(&verifier),
            binding: fresh_token(),
        };
        map.insert(
            started.state.clone(),
            Pending {
                provider: provider.to_owned(),
                nonce: started.nonce.clone(),
                verifier,
                binding: started.binding.clone(),
                started: Instant::now(),
            },
        );
        Some(started)
    }

    /// Takes the sign-in `state` names: it is gone afterwards, whatever the
    /// callback's outcome. `None`: unknown, used already, or expired.
    pub fn take(&self, state: &str) -> Option<Pending> {
        let mut map = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(state).filter(|p| p.started.elapsed() < FLOW_TTL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_is_single_use_and_bound() {
        let flows = Flows::default();
        let s = flows.begin("idp").unwrap();
        // base64url(SHA-256(verifier)), unpadded (RFC 7636, S256).
        assert_eq!(
            challenge("dBjftJeZ4CVP-mJ0kzbMzMKx1UBnZdRZ_S4J1-oM7w4"),
            "jPTToZSo2S-wRx9k_Y158VN64KJse89N8-RvPcuAnP4"
        );
        let p = flows.take(&s.state).unwrap();
        assert!(p.bound_to(Some(&s.binding)));
        assert!(!p.bound_to(Some("another browser")));
        assert!(!p.bound_to(None));
        assert!(flows.take(&s.state).is_none(), "a state works once");
        assert!(flows.take("never issued").is_none());
    }
}
