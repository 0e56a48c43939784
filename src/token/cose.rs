//! COSE_Sign1 (RFC 9052 §4.2) with Ed25519, as used for license tokens and
//! consumption records.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use crate::codec::{self, Value};
use crate::strict_key::StrictKey;

/// CBOR tag of a COSE_Sign1 message.
pub const TAG_SIGN1: u64 = 18;
/// COSE algorithm EdDSA (RFC 9053).
pub const ALG_EDDSA: i128 = -8;
/// COSE algorithm Ed25519, fully specified (RFC 9864).
pub const ALG_ED25519: i128 = -19;
const HDR_ALG: i128 = 1;
const HDR_KID: i128 = 4;

/// Why a COSE_Sign1 message could not be opened.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CoseError {
    /// The bytes are not a COSE_Sign1 structure.
    #[error("not a COSE_Sign1 message: {0}")]
    Structure(String),
    /// The algorithm is missing or not Ed25519.
    #[error("algorithm {0} is not EdDSA/Ed25519")]
    Algorithm(String),
    /// No key identifier in either header.
    #[error("no kid in the protected or unprotected header")]
    NoKid,
    /// The signature does not verify with the named key.
    #[error("signature does not verify")]
    BadSignature,
}

/// A parsed, not yet verified, COSE_Sign1 message.
#[derive(Debug, Clone)]
pub struct Sign1 {
    /// The protected header exactly as received.
    pub protected: Vec<u8>,
    /// Key identifier, from the protected header, else the unprotected one.
    pub kid: Vec<u8>,
    /// The payload exactly as received.
    pub payload: Vec<u8>,
    /// The 64-byte signature.
    pub signature: Vec<u8>,
}

/// The `Sig_structure` for a COSE_Sign1 with empty external AAD.
pub fn sig_structure(protected: &[u8], payload: &[u8]) -> Vec<u8> {
    codec::encode_value(&Value::Array(vec![
        Value::Text("Signature1".into()),
        Value::Bytes(protected.to_vec()),
        Value::Bytes(Vec::new()),
        Value::Bytes(payload.to_vec()),
    ]))
}

/// Parses a COSE_Sign1, tagged (18) or untagged.
pub fn parse(bytes: &[u8]) -> Result<Sign1, CoseError> {
    let v = codec::decode_value(bytes).map_err(|e| CoseError::Structure(e.to_string()))?;
    let v = match v {
        Value::Tag(TAG_SIGN1, inner) => *inner,
        Value::Tag(t, _) => return Err(CoseError::Structure(format!("CBOR tag {t}, expected 18"))),
        other => other,
    };
    let Value::Array(parts) = v else {
        return Err(CoseError::Structure("not an array".into()));
    };
    let [protected, unprotected, payload, signature]: [Value; 4] =
        parts.try_into().map_err(|p: Vec<Value>| {
            CoseError::Structure(format!("{} elements, expected 4", p.len()))
        })?;
    let (Value::Bytes(protected), Value::Bytes(payload), Value::Bytes(signature)) =
        (protected, payload, signature)
    else {
        return Err(CoseError::Structure(
            "protected header, payload and signature must be byte strings".into(),
        ));
    };
    if !matches!(unprotected, Value::Map(_)) {
        return Err(CoseError::Structure(
            "unprotected header is not a map".into(),
        ));
    }
    let prot_map = if protected.is_empty() {
        Value::Map(Vec::new())
    } else {
        codec::decode_value(&protected)
            .map_err(|e| CoseError::Structure(format!("protected header: {e}")))?
    };
    if !matches!(prot_map, Value::Map(_)) {
        return Err(CoseError::Structure("protected header is not a map".into()));
    }
    match prot_map.map_get_int(HDR_ALG) {
        Some(Value::Integer(a)) if *a == ALG_EDDSA || *a == ALG_ED25519 => {}
        Some(Value::Integer(a)) => return Err(CoseError::Algorithm(a.to_string())),
        Some(other) => return Err(CoseError::Algorithm(format!("{other:?}"))),
        None => return Err(CoseError::Algorithm("(none)".into())),
    }
    let kid = match prot_map
        .map_get_int(HDR_KID)
        .or_else(|| unprotected.map_get_int(HDR_KID))
    {
        Some(Value::Bytes(k)) => k.clone(),
        // Some issuers put a text kid; accept its UTF-8 bytes.
        Some(Value::Text(t)) => t.clone().into_bytes(),
        _ => return Err(CoseError::NoKid),
    };
    Ok(Sign1 {
        protected,
        kid,
        payload,
        signature,
    })
}

impl Sign1 {
    /// Verifies the signature with `key`, accepting exactly what `verify_strict` accepts.
    pub fn verify(&self, key: &StrictKey) -> Result<(), CoseError> {
        let sig = Signature::from_slice(&self.signature).map_err(|_| CoseError::BadSignature)?;
        key.verify(&sig_structure(&self.protected, &self.payload), &sig)
            .map_err(|_| CoseError::BadSignature)
    }

    /// Verifies with ed25519-dalek's own `verify_strict`: the reference the bench measures against.
    pub fn verify_strict(&self, key: &VerifyingKey) -> Result<(), CoseError> {
        let sig = Signature::from_slice(&self.signature).map_err(|_| CoseError::BadSignature)?;
        key.verify_strict(&sig_structure(&self.protected, &self.payload), &sig)
            .map_err(|_| CoseError::BadSignature)
    }
}

/// Signs `payload` as a tagged COSE_Sign1 with protected header `{1: -8, 4: kid}`.
pub fn sign(kid: &[u8], payload: Vec<u8>, key: &SigningKey) -> Vec<u8> {
    let protected = codec::encode_value(&Value::Map(vec![
        (Value::Integer(HDR_ALG), Value::Integer(ALG_EDDSA)),
        (Value::Integer(HDR_KID), Value::Bytes(kid.to_vec())),
    ]));
    let sig = key.sign(&sig_structure(&protected, &payload));
    codec::encode_value(&Value::Tag(
        TAG_SIGN1,
        Box::new(Value::Array(vec![
            Value::Bytes(protected),
            Value::Map(Vec::new()),
            Value::Bytes(payload),
            Value::Bytes(sig.to_bytes().to_vec()),
        ])),
    ))
}

/// A kid as text: UTF-8 when it is, hex otherwise.
pub fn kid_text(kid: &[u8]) -> String {
    match std::str::from_utf8(kid) {
        Ok(s) if s.chars().all(|c| !c.is_control()) => s.to_owned(),
        _ => format!("hex:{}", hex::encode(kid)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_then_verify() {
        let key = crate::keys::generate();
        let msg = sign(b"k1", b"hello".to_vec(), &key);
        let s = parse(&msg).unwrap();
        assert_eq!(s.kid, b"k1");
        assert_eq!(s.payload, b"hello");
        s.verify(&key.verifying_key().into()).unwrap();
        let other = crate::keys::generate();
        assert_eq!(
            s.verify(&other.verifying_key().into()),
            Err(CoseError::BadSignature)
        );
    }

    #[test]
    fn untagged_and_unprotected_kid_are_accepted() {
        let key = crate::keys::generate();
        let protected = codec::encode_value(&Value::Map(vec![(
            Value::Integer(1),
            Value::Integer(ALG_ED25519),
        )]));
        let payload = b"p".to_vec();
        let sig = key.sign(&sig_structure(&protected, &payload));
        let msg = codec::encode_value(&Value::Array(vec![
            Value::Bytes(protected),
            Value::Map(vec![(Value::Integer(4), Value::Bytes(b"u".to_vec()))]),
            Value::Bytes(payload),
            Value::Bytes(sig.to_bytes().to_vec()),
        ]));
        let s = parse(&msg).unwrap();
        assert_eq!(s.kid, b"u");
        s.verify(&key.verifying_key().into()).unwrap();
    }

    #[test]
    fn other_algorithms_are_refused() {
        let protected =
            codec::encode_value(&Value::Map(vec![(Value::Integer(1), Value::Integer(-7))]));
        let msg = codec::encode_value(&Value::Array(vec![
            Value::Bytes(protected),
            Value::Map(vec![(Value::Integer(4), Value::Bytes(b"k".to_vec()))]),
            Value::Bytes(vec![]),
            Value::Bytes(vec![0; 64]),
        ]));
        assert!(matches!(parse(&msg), Err(CoseError::Algorithm(_))));
    }
}
