//! Signed policy bundles: the authority's policy as COSE_Sign1 over a CBOR
//! map `{"version": uint, "policy": text}`, signed with its root key.
//!
//! The policy text is the TOML policy file with every key file (issuers,
//! checkpoints, hubs) inlined, so a bundle stands alone; a checkpoint applies one only if the
//! signature verifies with its configured root key and the version is newer.

use std::path::Path;

use ed25519_dalek::{SigningKey, VerifyingKey};

use crate::codec::{self, Value};
use crate::policy::{Policy, PolicyError};
use crate::strict_key::StrictKey;
use crate::token::cose;

/// Why a bundle could not be made or applied.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The policy file is invalid.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// A file could not be read, or the policy is not TOML.
    #[error("{0}")]
    Input(String),
    /// Not a COSE_Sign1, or the signature does not verify with the root key.
    #[error("policy bundle: {0}")]
    Signature(#[from] cose::CoseError),
    /// The signed payload is not a policy bundle.
    #[error("policy bundle: {0}")]
    Payload(String),
}

/// The key id the bundles carry.
pub const DEFAULT_KID: &str = "permitgate-policy-root";

/// Makes a bundle from the policy file at `path`, signed with `key`.
pub fn sign(path: &Path, key: &SigningKey, kid: &str) -> Result<Vec<u8>, BundleError> {
    let policy = Policy::load(path)?;
    let text = std::fs::read_to_string(path)
        .map_err(|e| BundleError::Input(format!("{}: {e}", path.display())))?;
    let mut table: toml::Table = toml::from_str(&text)
        .map_err(|e| BundleError::Input(format!("{}: {}", path.display(), e.message())))?;
    let base = path.parent().unwrap_or(Path::new("."));
    for list in ["issuers", "checkpoints", "hubs"] {
        let Some(toml::Value::Array(entries)) = table.get_mut(list) else {
            continue;
        };
        for entry in entries.iter_mut() {
            let Some(t) = entry.as_table_mut() else {
                continue;
            };
            if let Some(toml::Value::String(file)) = t.remove("public_key_file") {
                let pem = std::fs::read_to_string(base.join(&file))
                    .map_err(|e| BundleError::Input(format!("{file}: {e}")))?;
                t.insert("public_key".into(), toml::Value::String(pem));
            }
        }
    }
    let inlined = toml::to_string(&table).map_err(|e| BundleError::Input(e.to_string()))?;
    let payload = codec::encode_value(&Value::Map(vec![
        (
            Value::Text("version".into()),
            Value::Integer(policy.version.into()),
        ),
        (Value::Text("policy".into()), Value::Text(inlined)),
    ]));
    Ok(cose::sign(kid.as_bytes(), payload, key))
}

/// Verifies a bundle with the root key and returns its policy.
pub fn open(bytes: &[u8], root: &VerifyingKey) -> Result<Policy, BundleError> {
    let msg = cose::parse(bytes)?;
    msg.verify(&StrictKey::from(*root))?;
    let entries =
        match codec::decode_value(&msg.payload).map_err(|e| BundleError::Payload(e.to_string()))? {
            Value::Map(m) => m,
            _ => return Err(BundleError::Payload("not a CBOR map".into())),
        };
    let get = |k: &str| {
        entries
            .iter()
            .find(|(key, _)| matches!(key, Value::Text(t) if t == k))
            .map(|(_, v)| v)
    };
    let (Some(Value::Integer(version)), Some(Value::Text(text))) = (get("version"), get("policy"))
    else {
        return Err(BundleError::Payload(
            "needs `version` (uint) and `policy` (text)".into(),
        ));
    };
    let name = format!("<policy bundle version {version}>");
    let policy = Policy::from_toml(text, Path::new(&name))?;
    if i128::from(policy.version) != *version {
        return Err(BundleError::Payload(format!(
            "the bundle says version {version} but its policy says {}",
            policy.version
        )));
    }
    Ok(policy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_opens_with_its_root_key_only() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = crate::policy::tests::sample(dir.path());
        let root = crate::keys::generate();
        let bundle = sign(&path, &root, DEFAULT_KID).unwrap();
        let policy = open(&bundle, &root.verifying_key()).unwrap();
        assert_eq!(policy.version, Policy::load(&path).unwrap().version);
        // Key files are inlined: the bundle opens without them.
        std::fs::remove_dir_all(dir.path()).unwrap();
        assert!(open(&bundle, &root.verifying_key()).is_ok());
        let other = crate::keys::generate().verifying_key();
        assert!(matches!(
            open(&bundle, &other),
            Err(BundleError::Signature(_))
        ));
        let mut flipped = bundle.clone();
        let n = flipped.len();
        flipped[n - 70] ^= 1;
        assert!(open(&flipped, &root.verifying_key()).is_err());
    }
}
