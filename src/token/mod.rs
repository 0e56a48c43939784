//! License tokens: COSE_Sign1 over a CWT claims map, Ed25519-signed.
//!
//! [`open`] is the only way to read a token: it verifies the signature over
//! the bytes as received before any claim is decoded.

pub mod cose;
pub mod license;
pub mod text;

use ed25519_dalek::SigningKey;

use crate::strict_key::StrictKey;
use sha2::{Digest, Sha256};

pub use license::{License, LicensedItem, Party, Terms};

/// Why a token could not be accepted as genuine.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TokenError {
    /// Not a token at all, or a genuine signature over claims that do not decode.
    #[error("{0}")]
    Malformed(String),
    /// The `kid` names no trusted issuer key.
    #[error("kid `{0}` is not a trusted issuer key")]
    UnknownIssuer(String),
    /// The signature does not verify, or the algorithm is not Ed25519.
    #[error("{0}")]
    BadSignature(String),
}

/// A token whose signature verified, with its decoded license.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    /// The issuer key that signed it.
    pub kid: String,
    /// The decoded claims.
    pub license: License,
    /// SHA-256 of the COSE bytes, to tie records to the exact token.
    pub sha256: [u8; 32],
}

/// Reads a token (`PG1:` text or COSE bytes) and verifies it with the key `trusted` returns for its kid.
pub fn open(
    input: &[u8],
    trusted: impl Fn(&[u8]) -> Option<StrictKey>,
) -> Result<VerifiedToken, TokenError> {
    let bytes = text::to_cose_bytes(input).map_err(TokenError::Malformed)?;
    let msg = cose::parse(&bytes).map_err(|e| match e {
        cose::CoseError::Algorithm(_) => TokenError::BadSignature(e.to_string()),
        _ => TokenError::Malformed(e.to_string()),
    })?;
    let kid = cose::kid_text(&msg.kid);
    let key = trusted(&msg.kid).ok_or_else(|| TokenError::UnknownIssuer(kid.clone()))?;
    msg.verify(&key).map_err(|_| {
        TokenError::BadSignature(format!("signature does not verify with issuer key `{kid}`"))
    })?;
    let license = License::from_payload(&msg.payload)
        .map_err(|e| TokenError::Malformed(format!("signed payload: {e}")))?;
    Ok(VerifiedToken {
        kid,
        license,
        sha256: Sha256::digest(&bytes).into(),
    })
}

/// Issues a token for `license`, signed by `key` under `kid`; returns the COSE bytes.
pub fn issue(license: &License, kid: &str, key: &SigningKey) -> Vec<u8> {
    cose::sign(kid.as_bytes(), license.to_payload(), key)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn sample_license() -> License {
        License::from_claims_json(include_str!("../../tests/data/claims.json")).unwrap()
    }

    #[test]
    fn issue_then_open() {
        let key = crate::keys::generate();
        let vk = key.verifying_key();
        let lic = sample_license();
        let cose = issue(&lic, "mofcom-2025-1", &key);
        let t = open(text::encode(&cose).as_bytes(), |k| {
            (k == b"mofcom-2025-1").then_some(vk.into())
        })
        .unwrap();
        assert_eq!(t.license, lic);
        assert_eq!(t.kid, "mofcom-2025-1");
    }

    #[test]
    fn unknown_kid_and_wrong_key() {
        let key = crate::keys::generate();
        let cose = issue(&sample_license(), "k", &key);
        assert_eq!(
            open(&cose, |_| None).unwrap_err(),
            TokenError::UnknownIssuer("k".into())
        );
        let other = crate::keys::generate().verifying_key();
        assert!(matches!(
            open(&cose, |_| Some(other.into())).unwrap_err(),
            TokenError::BadSignature(_)
        ));
    }

    #[test]
    fn genuine_signature_over_garbage_is_malformed() {
        let key = crate::keys::generate();
        let vk = key.verifying_key();
        let cose = cose::sign(b"k", b"\xa1\x01\x02garbage".to_vec(), &key);
        assert!(matches!(
            open(&cose, |_| Some(vk.into())).unwrap_err(),
            TokenError::Malformed(_)
        ));
    }
}
