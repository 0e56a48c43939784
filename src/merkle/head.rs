//! Signed tree heads: a C2SP tlog-checkpoint (origin, size, root) with one
//! extension line carrying the signer's time, as a C2SP signed note signed
//! with Ed25519 under the origin as key name. Any tool that reads Go's
//! `sumdb/note` or the C2SP formats reads them.
//!
//! ```text
//! permitgate/checkpoint/lyg-port-01
//! 1042
//! 2vT0cT7m8o1uR8Y3l+X2ub6mVHTmH2pXzZ8O3x8bmvU=
//! time 2026-11-30T15:04:05Z
//!
//! — permitgate/checkpoint/lyg-port-01 a3Fz9w…
//! ```

use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use signed_note::{Note, Signer, Verifier, VerifierList};
use tlog_tiles::Checkpoint;

use super::Hash;
use crate::clock::{UnixTime, parse_rfc3339, to_rfc3339};

/// Longest signed head accepted, bytes.
pub const HEAD_MAX: usize = 4096;

/// The origin of a checkpoint's log.
pub fn checkpoint_origin(checkpoint: &str) -> String {
    format!("permitgate/checkpoint/{checkpoint}")
}

/// The origin of the hub's national log.
pub const HUB_ORIGIN: &str = "permitgate/hub";

/// A tree head: which log, how many leaves, their root, and when it was signed.
#[derive(Debug, Clone, PartialEq)]
pub struct Head {
    /// The log's origin line.
    pub origin: String,
    /// Leaves in the tree.
    pub size: u64,
    /// RFC 9162 root of those leaves.
    pub root: Hash,
    /// When the signer signed it (its own clock), Unix seconds.
    pub time: UnixTime,
}

/// Why a signed head was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    /// Not a signed note holding a checkpoint with a time line.
    #[error("signed tree head: {0}")]
    Malformed(String),
    /// No signature by one of the expected keys verifies.
    #[error("signed tree head of {origin}: no valid signature by a key trusted for it")]
    Unverified {
        /// The head's origin.
        origin: String,
    },
    /// The head is of another log than the one expected.
    #[error("signed tree head of {found}, expected {expected}")]
    WrongLog {
        /// The expected origin.
        expected: String,
        /// The one found.
        found: String,
    },
}

struct NoteKey<'a> {
    name: &'a str,
    key: &'a SigningKey,
}

/// The signed-note key id: SHA-256(name ‖ "\n" ‖ 0x01 ‖ public key)[..4].
pub fn key_id(name: &str, key: &VerifyingKey) -> u32 {
    signed_note::key_id(name, &[&[1u8][..], key.as_bytes()].concat())
}

impl Signer for NoteKey<'_> {
    fn name(&self) -> &str {
        self.name
    }
    fn key_id(&self) -> u32 {
        key_id(self.name, &self.key.verifying_key())
    }
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, ed25519_dalek::ed25519::signature::Error> {
        Ok(self.key.sign(msg).to_bytes().to_vec())
    }
}

/// Verifies with `verify_strict`, as every other signature here.
struct StrictKey {
    name: String,
    key: VerifyingKey,
}

impl Verifier for StrictKey {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        key_id(&self.name, &self.key)
    }
    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        ed25519_dalek::Signature::from_slice(sig)
            .is_ok_and(|s| self.key.verify_strict(msg, &s).is_ok())
    }
}

impl Head {
    /// The note text: the checkpoint's three lines and `time RFC3339`.
    pub fn text(&self) -> Vec<u8> {
        let ext = format!("time {}\n", to_rfc3339(self.time));
        match Checkpoint::new(&self.origin, self.size, self.root, &ext) {
            Ok(c) => c.to_bytes(),
            // Origins are made here from checked ids; an empty one cannot occur.
            Err(_) => Vec::new(),
        }
    }

    /// The signed note, signed with `key` under the origin as key name.
    pub fn sign(&self, key: &SigningKey) -> String {
        let mut note = match Note::new(&self.text(), &[]) {
            Ok(n) => n,
            Err(_) => return String::new(),
        };
        let signer = NoteKey {
            name: &self.origin,
            key,
        };
        if note.add_sigs(&[&signer]).is_err() {
            return String::new();
        }
        String::from_utf8_lossy(&note.to_bytes()).into_owned()
    }

    /// Reads a signed head without checking its signature (to learn which
    /// log and time it claims, so the caller can pick the keys).
    pub fn peek(note: &[u8]) -> Result<Head, HeadError> {
        if note.len() > HEAD_MAX {
            return Err(HeadError::Malformed(format!(
                "{} bytes, at most {HEAD_MAX}",
                note.len()
            )));
        }
        let n = Note::from_bytes(note).map_err(|e| HeadError::Malformed(e.to_string()))?;
        parse_text(n.text())
    }

    /// Opens a signed head of log `origin` if one of `keys` signed it.
    pub fn open(note: &[u8], origin: &str, keys: &[VerifyingKey]) -> Result<Head, HeadError> {
        let head = Head::peek(note)?;
        if head.origin != origin {
            return Err(HeadError::WrongLog {
                expected: origin.to_owned(),
                found: head.origin,
            });
        }
        let n = Note::from_bytes(note).map_err(|e| HeadError::Malformed(e.to_string()))?;
        // The same key twice would make the note's verifier list ambiguous.
        let mut keys = keys.to_vec();
        keys.sort_unstable_by_key(|k| k.to_bytes());
        keys.dedup();
        let verifiers = VerifierList::new(
            keys.iter()
                .map(|k| {
                    Box::new(StrictKey {
                        name: origin.to_owned(),
                        key: *k,
                    }) as Box<dyn Verifier>
                })
                .collect(),
        );
        match n.verify(&verifiers) {
            Ok((verified, _)) if !verified.is_empty() => Ok(head),
            _ => Err(HeadError::Unverified {
                origin: origin.to_owned(),
            }),
        }
    }
}

fn parse_text(text: &[u8]) -> Result<Head, HeadError> {
    let c = Checkpoint::from_bytes(text).map_err(|e| HeadError::Malformed(e.to_string()))?;
    let time = c
        .extension()
        .lines()
        .find_map(|l| l.strip_prefix("time "))
        .ok_or_else(|| HeadError::Malformed("no `time` line".into()))
        .and_then(|t| parse_rfc3339(t).map_err(HeadError::Malformed))?;
    Ok(Head {
        origin: c.origin().to_owned(),
        size: c.size(),
        root: *c.hash(),
        time,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head() -> Head {
        Head {
            origin: checkpoint_origin("lyg-port-01"),
            size: 1042,
            root: Hash([7; 32]),
            time: 1_800_000_000,
        }
    }

    #[test]
    fn a_signed_head_opens_with_its_key_only() {
        let key = crate::keys::generate();
        let note = head().sign(&key);
        assert!(
            note.starts_with("permitgate/checkpoint/lyg-port-01\n1042\n"),
            "{note}"
        );
        assert!(
            note.contains("\ntime 2027-01-15T08:00:00Z\n\n— permitgate/checkpoint/lyg-port-01 "),
            "{note}"
        );
        let origin = checkpoint_origin("lyg-port-01");
        assert_eq!(
            Head::open(note.as_bytes(), &origin, &[key.verifying_key()]).unwrap(),
            head()
        );
        let other = crate::keys::generate().verifying_key();
        assert!(Head::open(note.as_bytes(), &origin, &[other]).is_err());
        // The right key among others, even twice, still opens it.
        let k = key.verifying_key();
        assert!(Head::open(note.as_bytes(), &origin, &[other, k, k]).is_ok());
        assert!(matches!(
            Head::open(note.as_bytes(), HUB_ORIGIN, &[key.verifying_key()]),
            Err(HeadError::WrongLog { .. })
        ));
        // Any flipped byte fails.
        let bytes = note.as_bytes();
        for i in 0..bytes.len() {
            let mut b = bytes.to_vec();
            b[i] ^= 0x01;
            assert!(
                Head::open(&b, &origin, &[key.verifying_key()]) != Ok(head()),
                "byte {i}"
            );
        }
    }

    #[test]
    fn garbage_is_malformed() {
        for g in [&b""[..], b"x", b"a\n1\n\n\n", &[0xff; 5000]] {
            assert!(Head::peek(g).is_err());
        }
    }
}
