//! The trust registry the policy carries: every checkpoint's public key and
//! the hub's signing keys, each with a validity window.
//!
//! Design: nothing that arrives over sync is trusted for where it came
//! from; it is trusted for who signed it, and a signer is trusted only if
//! the authority's policy names its key for that moment. A checkpoint may
//! have several entries (a key rotated: the old one's window ends, the new
//! one's begins); a record is checked with the keys whose window holds its
//! own time.

use std::collections::HashMap;

use ed25519_dalek::VerifyingKey;

use crate::clock::{UnixTime, to_rfc3339};

/// One key and when it may sign.
#[derive(Debug, Clone)]
pub struct KeyEntry {
    /// The checkpoint id, or the hub key's kid.
    pub id: String,
    /// The public key, parsed once.
    pub key: VerifyingKey,
    /// Nothing signed before this is accepted.
    pub valid_from: Option<UnixTime>,
    /// Nothing signed after this is accepted: the key is retired.
    pub valid_until: Option<UnixTime>,
}

impl KeyEntry {
    /// True if the window, widened by `skew` seconds, holds `at`.
    pub fn valid_at(&self, at: UnixTime, skew: i64) -> bool {
        self.valid_from.is_none_or(|f| at >= f.saturating_sub(skew))
            && self
                .valid_until
                .is_none_or(|u| at <= u.saturating_add(skew))
    }
}

/// Why a signer is not trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignerError {
    /// The policy does not name it.
    #[error("`{0}` is not in the registry of the policy in force")]
    Unknown(String),
    /// The policy names it, but no key of it is valid at that time.
    #[error("no key of `{id}` is valid at {at} (retired, or not yet in force)")]
    OutsideWindow {
        /// The signer.
        id: String,
        /// The time the signature claims, RFC 3339.
        at: String,
    },
}

impl SignerError {
    /// Short machine-readable name, for metrics and alert throttling.
    pub fn code(&self) -> &'static str {
        match self {
            SignerError::Unknown(_) => "unknown_signer",
            SignerError::OutsideWindow { .. } => "key_not_valid",
        }
    }
}

/// Checkpoint keys and hub keys, from the policy.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    checkpoints: HashMap<String, Vec<KeyEntry>>,
    hubs: HashMap<String, KeyEntry>,
    /// Allowance for clock differences at window edges, seconds.
    skew: i64,
}

impl Registry {
    /// A registry of `checkpoints` (several entries per id allowed) and `hubs` (one per kid).
    pub fn new(checkpoints: Vec<KeyEntry>, hubs: Vec<KeyEntry>, skew: i64) -> Registry {
        let mut by_id: HashMap<String, Vec<KeyEntry>> = HashMap::new();
        for e in checkpoints {
            by_id.entry(e.id.clone()).or_default().push(e);
        }
        Registry {
            checkpoints: by_id,
            hubs: hubs.into_iter().map(|e| (e.id.clone(), e)).collect(),
            skew,
        }
    }

    /// The keys of checkpoint `id` valid at `at` (normally one).
    pub fn checkpoint_keys_at(
        &self,
        id: &str,
        at: UnixTime,
    ) -> Result<Vec<VerifyingKey>, SignerError> {
        let entries = self
            .checkpoints
            .get(id)
            .ok_or_else(|| SignerError::Unknown(format!("checkpoint {id}")))?;
        let keys: Vec<VerifyingKey> = entries
            .iter()
            .filter(|e| e.valid_at(at, self.skew))
            .map(|e| e.key)
            .collect();
        if keys.is_empty() {
            return Err(SignerError::OutsideWindow {
                id: format!("checkpoint {id}"),
                at: to_rfc3339(at),
            });
        }
        Ok(keys)
    }

    /// Every key the policy names for checkpoint `id`, whatever its window.
    pub fn all_checkpoint_keys(&self, id: &str) -> Vec<VerifyingKey> {
        self.checkpoints
            .get(id)
            .map(|e| e.iter().map(|k| k.key).collect())
            .unwrap_or_default()
    }

    /// The hub key `kid`, if valid at `at`.
    pub fn hub_key_at(&self, kid: &str, at: UnixTime) -> Result<VerifyingKey, SignerError> {
        let e = self
            .hubs
            .get(kid)
            .ok_or_else(|| SignerError::Unknown(format!("hub key {kid}")))?;
        if !e.valid_at(at, self.skew) {
            return Err(SignerError::OutsideWindow {
                id: format!("hub key {kid}"),
                at: to_rfc3339(at),
            });
        }
        Ok(e.key)
    }

    /// The allowance for clock differences at window edges, seconds.
    pub fn skew(&self) -> i64 {
        self.skew
    }

    /// Every hub key valid at `at`.
    pub fn hub_keys_at(&self, at: UnixTime) -> Vec<VerifyingKey> {
        self.hubs
            .values()
            .filter(|e| e.valid_at(at, self.skew))
            .map(|e| e.key)
            .collect()
    }

    /// True if the policy names checkpoint `id` at all.
    pub fn knows_checkpoint(&self, id: &str) -> bool {
        self.checkpoints.contains_key(id)
    }

    /// Checkpoint ids named, sorted.
    pub fn checkpoint_ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self.checkpoints.keys().map(String::as_str).collect();
        ids.sort_unstable();
        ids
    }

    /// Number of hub keys named.
    pub fn hub_keys(&self) -> usize {
        self.hubs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, key: &ed25519_dalek::SigningKey, from: i64, until: i64) -> KeyEntry {
        KeyEntry {
            id: id.into(),
            key: key.verifying_key(),
            valid_from: Some(from),
            valid_until: Some(until),
        }
    }

    #[test]
    fn a_rotated_checkpoint_key_is_used_inside_its_window_only() {
        let old = crate::keys::generate();
        let new = crate::keys::generate();
        let r = Registry::new(
            vec![entry("p", &old, 0, 1000), entry("p", &new, 1000, 5000)],
            vec![],
            10,
        );
        assert_eq!(
            r.checkpoint_keys_at("p", 500).unwrap(),
            [old.verifying_key()]
        );
        assert_eq!(
            r.checkpoint_keys_at("p", 2000).unwrap(),
            [new.verifying_key()]
        );
        // At the handover (within the skew) both are tried.
        assert_eq!(r.checkpoint_keys_at("p", 1005).unwrap().len(), 2);
        assert!(matches!(
            r.checkpoint_keys_at("p", 6000),
            Err(SignerError::OutsideWindow { .. })
        ));
        assert!(matches!(
            r.checkpoint_keys_at("q", 500),
            Err(SignerError::Unknown(_))
        ));
    }

    #[test]
    fn hub_keys_by_kid_and_window() {
        let k = crate::keys::generate();
        let r = Registry::new(vec![], vec![entry("hub-1", &k, 100, 200)], 0);
        assert_eq!(r.hub_key_at("hub-1", 150).unwrap(), k.verifying_key());
        assert_eq!(
            r.hub_key_at("hub-1", 201).unwrap_err().code(),
            "key_not_valid"
        );
        assert_eq!(
            r.hub_key_at("hub-2", 150).unwrap_err().code(),
            "unknown_signer"
        );
    }
}
