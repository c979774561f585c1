//! Checking agents' Ed25519 signatures: one rule set (ZIP-215) for a single
//! signature and for a batch, so whatever ingest accepted in a batch the
//! review console verifies again on its own, and the other way round.
//!
//! Batches matter when an agent sends a burst (a spool catching up after an
//! outage): a batch of events signed with one key costs a quarter of one
//! verification per event. A batch that fails is checked one signature at a
//! time, so the first bad event is named exactly and the ones before it are
//! kept.
//!
//! Agents sign with ring (RFC 8032); every signature an honest agent makes
//! is valid under these rules too. They are looser than RFC 8032 in two
//! ways: non-canonical point encodings are accepted, and the check is the
//! cofactored equation. So the holder of an agent's private key could make
//! a signature these rules accept and a strict RFC 8032 verifier refuses;
//! nobody without the key can make one that either accepts. Keys are held
//! to a stricter rule than both: a key must be a point of the prime-order
//! subgroup, so a weak or mixed-order key is refused. (Enrolment and re-key
//! proofs are checked with ring, strictly, as well as by `PublicKey::parse`.)

use curve25519_dalek::edwards::CompressedEdwardsY;
use ed25519_zebra::{batch, Signature, VerificationKey, VerificationKeyBytes};

/// Length of an Ed25519 public key.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

/// Why a public key cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("an Ed25519 public key is {PUBLIC_KEY_LEN} bytes, not {0}")]
    Length(usize),
    #[error("the public key is not a point on Ed25519")]
    NotAPoint,
    #[error("the public key is a weak (small- or mixed-order) point; generate a new key")]
    Weak,
}

/// An agent's public key, parsed and checked once.
#[derive(Debug, Clone, Copy)]
pub struct PublicKey {
    key: VerificationKey,
    bytes: VerificationKeyBytes,
}

impl PublicKey {
    /// Parses a public key, refusing anything that is not a point of the
    /// prime-order subgroup.
    pub fn parse(bytes: &[u8]) -> Result<Self, KeyError> {
        let bytes: [u8; PUBLIC_KEY_LEN] = bytes
            .try_into()
            .map_err(|_| KeyError::Length(bytes.len()))?;
        let point = CompressedEdwardsY(bytes)
            .decompress()
            .ok_or(KeyError::NotAPoint)?;
        if point.is_small_order() || !point.is_torsion_free() {
            return Err(KeyError::Weak);
        }
        // Decompresses again; cannot fail after the check above.
        let key = VerificationKey::try_from(bytes).map_err(|_| KeyError::NotAPoint)?;
        Ok(Self {
            key,
            bytes: VerificationKeyBytes::from(bytes),
        })
    }
}

fn parse_signature(signature: &[u8]) -> Option<Signature> {
    let bytes: &[u8; SIGNATURE_LEN] = signature.try_into().ok()?;
    Some(Signature::from_bytes(bytes))
}

/// Whether `signature` is `key`'s signature over exactly `message`.
pub fn verify(key: &PublicKey, message: &[u8], signature: &[u8]) -> bool {
    parse_signature(signature).is_some_and(|s| key.key.verify(&s, message).is_ok())
}

/// One signature to check: the key, the signed bytes and the signature.
pub type Item<'a> = (&'a PublicKey, &'a [u8], &'a [u8]);

/// Checks every item; `Err(i)` names the first item, in order, whose
/// signature does not verify.
pub fn verify_all(items: &[Item<'_>]) -> Result<(), usize> {
    let first_bad = || {
        items
            .iter()
            .position(|(key, message, signature)| !verify(key, message, signature))
    };
    if items.len() < 2 {
        // A batch of one costs more than a single verification.
        return first_bad().map_or(Ok(()), Err);
    }
    let mut verifier = batch::Verifier::new();
    for (i, (key, message, signature)) in items.iter().enumerate() {
        let Some(signature) = parse_signature(signature) else {
            // Malformed: everything before it still gets its answer.
            return verify_all(&items[..i]).and(Err(i));
        };
        verifier.queue((key.bytes, signature, *message));
    }
    match verifier.verify(rand_core::OsRng) {
        Ok(()) => Ok(()),
        // Rare (an attack or a corrupted event): find which one, in order.
        Err(_) => first_bad().map_or(Ok(()), Err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};

    fn key_pair() -> Ed25519KeyPair {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()
    }

    fn signed(pair: &Ed25519KeyPair, n: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        (0..n)
            .map(|i| {
                let message = format!("event {i} of a burst").into_bytes();
                let signature = pair.sign(&message).as_ref().to_vec();
                (message, signature)
            })
            .collect()
    }

    fn items<'a>(key: &'a PublicKey, events: &'a [(Vec<u8>, Vec<u8>)]) -> Vec<Item<'a>> {
        events
            .iter()
            .map(|(m, s)| (key, m.as_slice(), s.as_slice()))
            .collect()
    }

    #[test]
    fn agrees_with_ring_on_good_and_altered_signatures() {
        let pair = key_pair();
        let key = PublicKey::parse(pair.public_key().as_ref()).unwrap();
        for (message, signature) in signed(&pair, 20) {
            assert!(verify(&key, &message, &signature));
            for bit in [0usize, 100, 255, 256, 511] {
                let mut altered = signature.clone();
                altered[bit / 8] ^= 1 << (bit % 8);
                let ring_ok = UnparsedPublicKey::new(&ED25519, pair.public_key().as_ref())
                    .verify(&message, &altered)
                    .is_ok();
                assert!(!ring_ok, "ring refuses bit {bit} flipped");
                assert!(!verify(&key, &message, &altered), "bit {bit} flipped");
            }
            let mut other = message.clone();
            other[0] ^= 1;
            assert!(!verify(&key, &other, &signature), "other bytes");
        }
    }

    #[test]
    fn a_batch_of_good_signatures_passes() {
        let (a, b) = (key_pair(), key_pair());
        let (ka, kb) = (
            PublicKey::parse(a.public_key().as_ref()).unwrap(),
            PublicKey::parse(b.public_key().as_ref()).unwrap(),
        );
        let (ea, eb) = (signed(&a, 40), signed(&b, 24));
        let mut all = items(&ka, &ea);
        all.extend(items(&kb, &eb));
        assert_eq!(verify_all(&all), Ok(()));
        assert_eq!(verify_all(&[]), Ok(()));
        assert_eq!(verify_all(&all[..1]), Ok(()));
    }

    #[test]
    fn a_batch_names_its_first_bad_signature() {
        let pair = key_pair();
        let key = PublicKey::parse(pair.public_key().as_ref()).unwrap();
        let mut events = signed(&pair, 64);
        // A forgery, a signature moved to another event, and a short one.
        events[17].1[3] ^= 0x40;
        events[30].1 = events[31].1.clone();
        events[50].1.truncate(63);
        assert_eq!(verify_all(&items(&key, &events)), Err(17));
        assert_eq!(verify_all(&items(&key, &events[18..])), Err(30 - 18));
        assert_eq!(verify_all(&items(&key, &events[31..])), Err(50 - 31));
        assert_eq!(verify_all(&items(&key, &events[51..])), Ok(()));
    }

    #[test]
    fn another_key_does_not_verify() {
        let (a, b) = (key_pair(), key_pair());
        let kb = PublicKey::parse(b.public_key().as_ref()).unwrap();
        let events = signed(&a, 8);
        assert_eq!(verify_all(&items(&kb, &events)), Err(0));
    }

    #[test]
    fn weak_and_malformed_keys_are_refused() {
        // The identity point, and a point of order 2: anyone could sign for them.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(PublicKey::parse(&identity).unwrap_err(), KeyError::Weak);
        let mut order_two = [0u8; 32];
        order_two[0] = 0xec;
        order_two[1..31].fill(0xff);
        order_two[31] = 0x7f;
        assert_eq!(PublicKey::parse(&order_two).unwrap_err(), KeyError::Weak);
        // A good key plus a point of order 2: mixed order.
        let good = key_pair();
        let point = CompressedEdwardsY(good.public_key().as_ref().try_into().unwrap())
            .decompress()
            .unwrap();
        let torsion = CompressedEdwardsY(order_two).decompress().unwrap();
        let mixed = (point + torsion).compress().to_bytes();
        assert_eq!(PublicKey::parse(&mixed).unwrap_err(), KeyError::Weak);
        assert_eq!(
            PublicKey::parse(&[1u8; 31]).unwrap_err(),
            KeyError::Length(31)
        );
        // y = 2 is not on the curve.
        let mut off_curve = [0u8; 32];
        off_curve[0] = 2;
        assert_eq!(
            PublicKey::parse(&off_curve).unwrap_err(),
            KeyError::NotAPoint
        );
        assert!(PublicKey::parse(good.public_key().as_ref()).is_ok());
    }
}
