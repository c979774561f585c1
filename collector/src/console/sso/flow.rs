//! Sign-ins in progress: each has a random `state` (single use), a `nonce`
//! the ID token must carry, a PKCE verifier, and a binding token kept in a
//! short-lived cookie of the browser that began it, so that a callback URL
//! carried to another browser, or used twice, is refused.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;

use crate::console::auth::{fresh_token, same_secret};

/// How long a sign-in at the provider may take.
pub const FLOW_TTL: Duration = Duration::from_secs(600);
/// Most sign-ins in progress at once (beyond it new ones are refused).
const MAX_PENDING: usize = 10_000;
/// Most sign-ins in progress from one address, so that one client cannot
/// fill the table and keep everyone else from signing in.
const MAX_PENDING_PER_ADDRESS: usize = 20;

/// What a callback needs from its sign-in's start.
#[derive(Debug)]
pub struct Pending {
    pub provider: String,
    pub nonce: String,
    pub verifier: String,
    binding: String,
    started: Instant,
    from: IpAddr,
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
    /// Starts a sign-in with `provider` for a browser at `from`; `None`
    /// when too many are pending, in all or from that address.
    pub fn begin(&self, provider: &str, from: IpAddr) -> Option<Started> {
        let mut map = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let from_here = |map: &HashMap<String, Pending>| {
            map.values()
                .filter(|p| p.from == from && p.started.elapsed() < FLOW_TTL)
                .count()
        };
        if map.len() >= MAX_PENDING || from_here(&map) >= MAX_PENDING_PER_ADDRESS {
            map.retain(|_, p| p.started.elapsed() < FLOW_TTL);
            if map.len() >= MAX_PENDING || from_here(&map) >= MAX_PENDING_PER_ADDRESS {
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
                from,
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
        let here = IpAddr::from([192, 0, 2, 1]);
        let s = flows.begin("idp", here).unwrap();
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
        // One address cannot hold more than its share of pending sign-ins.
        for _ in 0..MAX_PENDING_PER_ADDRESS {
            assert!(flows.begin("idp", here).is_some());
        }
        assert!(flows.begin("idp", here).is_none());
        assert!(flows.begin("idp", IpAddr::from([192, 0, 2, 2])).is_some());
    }
}
