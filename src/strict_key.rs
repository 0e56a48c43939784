//! An Ed25519 public key prepared once, whose check accepts exactly the
//! signatures `ed25519_dalek::VerifyingKey::verify_strict` accepts, cheaper.
//!
//! `verify_strict` decompresses R (a field exponentiation) only to reject
//! small-order R, then compares R's bytes with the encoding of
//! `[s]B - [k]A`. An encoding the library computes is canonical and names a
//! point on the curve, so when the bytes are equal R decompresses to that
//! point anyway; comparing R's bytes with the eight canonical encodings of
//! the small-order points gives the same answer without decompressing.
//! A small-order key is found once, when the key is prepared.
//!
//! Design: accepts exactly the set `verify_strict` accepts; the differential
//! test (`tests/strict_key.rs`) holds it to that on the C2SP CCTV and
//! ed25519-speccheck vectors and on a million random and mutated signatures
//! (CI).

use std::sync::OnceLock;

use curve25519_dalek::constants::EIGHT_TORSION;
use curve25519_dalek::edwards::EdwardsPoint;
use curve25519_dalek::scalar::Scalar;
use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest, Sha512};

/// Why a signature was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StrictError {
    /// The key is of small order: `verify_strict` accepts nothing under it.
    #[error("the public key is of small order")]
    WeakKey,
    /// S is not below the group order (a malleated signature).
    #[error("the signature's S is not reduced")]
    UnreducedS,
    /// R is a small-order point.
    #[error("the signature's R is of small order")]
    SmallOrderR,
    /// The equation does not hold.
    #[error("the signature does not verify")]
    Mismatch,
}

/// A public key with `-A` decompressed and its order checked once.
#[derive(Debug, Clone, Copy)]
pub struct StrictKey {
    key: VerifyingKey,
    minus_a: EdwardsPoint,
    small_order: bool,
}

impl PartialEq for StrictKey {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl From<VerifyingKey> for StrictKey {
    fn from(key: VerifyingKey) -> Self {
        let a = key.to_edwards();
        StrictKey {
            key,
            minus_a: -a,
            small_order: a.is_small_order(),
        }
    }
}

/// The canonical encodings of the eight points of small order.
fn small_order_encodings() -> &'static [[u8; 32]; 8] {
    static ENCODINGS: OnceLock<[[u8; 32]; 8]> = OnceLock::new();
    ENCODINGS.get_or_init(|| EIGHT_TORSION.map(|p| p.compress().to_bytes()))
}

impl StrictKey {
    /// The key as ed25519-dalek holds it.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// Whether the key is of small order, so that nothing verifies under it.
    pub fn is_small_order(&self) -> bool {
        self.small_order
    }

    /// Accepts `signature` over `message` exactly when `verify_strict` would.
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), StrictError> {
        if self.small_order {
            return Err(StrictError::WeakKey);
        }
        let r = signature.r_bytes();
        let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(*signature.s_bytes()))
            .ok_or(StrictError::UnreducedS)?;
        let mut h = Sha512::new();
        h.update(r);
        h.update(self.key.as_bytes());
        h.update(message);
        let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
        let expected = EdwardsPoint::vartime_double_scalar_mul_basepoint(&k, &self.minus_a, &s);
        if expected.compress().as_bytes() != r {
            return Err(StrictError::Mismatch);
        }
        // Equal bytes: R is the canonical encoding of `expected`, a curve point.
        if small_order_encodings().contains(r) {
            return Err(StrictError::SmallOrderR);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::Signer;

    #[test]
    fn accepts_a_genuine_signature_and_refuses_a_changed_message() {
        let sk = crate::keys::generate();
        let key = StrictKey::from(sk.verifying_key());
        let sig = sk.sign(b"one batch, one license");
        assert_eq!(key.verify(b"one batch, one license", &sig), Ok(()));
        assert_eq!(
            key.verify(b"one batch, two licenses", &sig),
            Err(StrictError::Mismatch)
        );
    }

    #[test]
    fn small_order_encodings_are_eight_distinct_points() {
        let e = small_order_encodings();
        for (i, a) in e.iter().enumerate() {
            assert!(e[i + 1..].iter().all(|b| b != a));
        }
        assert!(EIGHT_TORSION.iter().all(|p| p.is_small_order()));
        // The canonical encodings C2SP CCTV lists for the low-order points.
        let mut listed = [
            "0000000000000000000000000000000000000000000000000000000000000000",
            "0000000000000000000000000000000000000000000000000000000000000080",
            "0100000000000000000000000000000000000000000000000000000000000000",
            "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
            "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
            "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
            "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
            "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        ]
        .map(String::from);
        let mut ours = e.map(hex::encode);
        listed.sort();
        ours.sort();
        assert_eq!(ours, listed);
    }
}
