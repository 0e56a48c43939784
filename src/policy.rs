//! The policy: control list, trusted issuer keys, revocations, denied
//! parties and outright bans. Data, not code: read from a TOML file.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;
use serde::Deserialize;
use toml::Spanned;

use crate::clock::{UnixTime, parse_duration, parse_rfc3339};
use crate::elements::{canonical_symbol, hs_digits};
use crate::keys;
use crate::registry::{KeyEntry, Registry};
use crate::strict_key::StrictKey;

/// A policy file that cannot be used, with where and why.
#[derive(Debug, thiserror::Error)]
#[error("{file}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct PolicyError {
    /// The policy file.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// What is wrong, naming the key.
    pub message: String,
}

/// A trusted issuer key and when it may sign.
#[derive(Debug, Clone)]
pub struct Issuer {
    /// Key identifier as it appears in tokens.
    pub kid: String,
    /// The parsed public key, prepared once for the exact check (parsing costs more than a hash lookup).
    pub key: StrictKey,
    /// Tokens issued before this are not trusted.
    pub valid_from: Option<UnixTime>,
    /// Tokens issued after this are not trusted.
    pub valid_until: Option<UnixTime>,
}

pub use crate::screening::DeniedParty;

/// An outright ban: these goods may not go to these destinations, license or not.
#[derive(Debug, Clone)]
pub struct Ban {
    /// Canonical element symbols.
    pub elements: BTreeSet<String>,
    /// HS code prefixes (digits).
    pub hs_codes: Vec<String>,
    /// Destination countries.
    pub destinations: BTreeSet<String>,
    /// Why, for the verdict's detail.
    pub note: String,
}

/// A validated policy, ready for decisions.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Monotonic version; signed bundles must increase it.
    pub version: u64,
    /// When the authority issued it.
    pub issued_at: UnixTime,
    /// After `issued_at + max_age` the agent holds instead of clearing.
    pub max_age: i64,
    /// Allowance for clock differences on `nbf`, `exp` and key windows.
    pub clock_skew: i64,
    /// Controlled element symbols.
    pub controlled_elements: BTreeSet<String>,
    /// Controlled HS heading prefixes (digits).
    pub controlled_hs: Vec<String>,
    /// Revoked license ids.
    pub revoked: HashSet<String>,
    /// Trusted issuer keys.
    pub issuers: Vec<Issuer>,
    kid_index: HashMap<Vec<u8>, usize>,
    /// Denied parties.
    pub denied_parties: Vec<DeniedParty>,
    /// The denied-party list indexed for screening.
    pub screen_index: crate::screening::ScreenIndex,
    /// Outright bans.
    pub bans: Vec<Ban>,
    /// Checkpoint and hub keys: whose sync messages are accepted.
    pub registry: Registry,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    version: u64,
    issued_at: Spanned<String>,
    max_age: Spanned<String>,
    #[serde(default = "default_skew")]
    clock_skew: Spanned<String>,
    controlled_elements: Vec<Spanned<String>>,
    controlled_hs: Vec<Spanned<String>>,
    #[serde(default)]
    revoked_licenses: Vec<String>,
    #[serde(default)]
    issuers: Vec<RawIssuer>,
    #[serde(default)]
    denied_parties: Vec<RawDenied>,
    #[serde(default)]
    bans: Vec<RawBan>,
    #[serde(default)]
    checkpoints: Vec<RawKey>,
    #[serde(default)]
    hubs: Vec<RawKey>,
}

/// A `[[checkpoints]]` or `[[hubs]]` entry of the registry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    id: Spanned<String>,
    public_key_file: Option<Spanned<String>>,
    public_key: Option<Spanned<String>>,
    valid_from: Option<Spanned<String>>,
    valid_until: Option<Spanned<String>>,
}

fn default_skew() -> Spanned<String> {
    Spanned::new(0..0, "5m".into())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIssuer {
    kid: Spanned<String>,
    public_key_file: Option<Spanned<String>>,
    public_key: Option<Spanned<String>>,
    valid_from: Option<Spanned<String>>,
    valid_until: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDenied {
    #[serde(default)]
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    aliases: Vec<String>,
    #[serde(default)]
    source: String,
    #[serde(default)]
    kind: crate::screening::Kind,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBan {
    #[serde(default)]
    elements: Vec<Spanned<String>>,
    #[serde(default)]
    hs_codes: Vec<Spanned<String>>,
    destinations: Vec<Spanned<String>>,
    #[serde(default)]
    note: String,
}

/// Identifier normal form: ASCII case folded, whitespace removed. Anything
/// non-ASCII is kept as it is, so look-alike letters never match.
pub fn normalize_id(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// Country normal form: two ASCII letters, upper case.
pub fn normalize_country(s: &str) -> Option<String> {
    let t = s.trim();
    (t.len() == 2 && t.bytes().all(|b| b.is_ascii_alphabetic())).then(|| t.to_ascii_uppercase())
}

impl Policy {
    /// Reads and validates a policy file; key files are resolved beside it.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|e| PolicyError {
            file: path.to_owned(),
            line: None,
            message: format!("cannot read: {e}"),
        })?;
        Policy::from_toml(&text, path)
    }

    /// Validates policy text; `path` names it in errors and anchors relative key files.
    pub fn from_toml(text: &str, path: &Path) -> Result<Policy, PolicyError> {
        let err = |span: Option<std::ops::Range<usize>>, message: String| PolicyError {
            file: path.to_owned(),
            line: span.map(|s| line_of(text, s.start)),
            message,
        };
        let raw: RawPolicy =
            toml::from_str(text).map_err(|e| err(e.span(), e.message().trim().to_owned()))?;
        let at = |s: &Spanned<String>, key: &str| {
            parse_rfc3339(s.get_ref()).map_err(|m| err(Some(s.span()), format!("`{key}`: {m}")))
        };
        let dur = |s: &Spanned<String>, key: &str| {
            parse_duration(s.get_ref()).map_err(|m| err(Some(s.span()), format!("`{key}`: {m}")))
        };
        let element = |s: &Spanned<String>, key: &str| {
            canonical_symbol(s.get_ref())
                .map(str::to_owned)
                .ok_or_else(|| {
                    err(
                        Some(s.span()),
                        format!(
                            "`{key}`: `{}` is not a chemical element symbol",
                            s.get_ref()
                        ),
                    )
                })
        };
        let hs = |s: &Spanned<String>, key: &str| {
            hs_digits(s.get_ref()).ok_or_else(|| {
                err(
                    Some(s.span()),
                    format!(
                        "`{key}`: `{}` is not an HS code (4 to 10 digits)",
                        s.get_ref()
                    ),
                )
            })
        };
        let country = |s: &Spanned<String>, key: &str| {
            normalize_country(s.get_ref()).ok_or_else(|| {
                err(
                    Some(s.span()),
                    format!(
                        "`{key}`: `{}` is not an ISO 3166-1 alpha-2 code",
                        s.get_ref()
                    ),
                )
            })
        };

        // A key given as a file beside the policy or inline as PEM text.
        let public_key = |file: Option<&Spanned<String>>,
                          pem: Option<&Spanned<String>>,
                          named: &Spanned<String>,
                          key_name: &str|
         -> Result<VerifyingKey, PolicyError> {
            match (file, pem) {
                (Some(f), None) => {
                    let p = path.parent().unwrap_or(Path::new(".")).join(f.get_ref());
                    keys::load_verifying_key(&p).map_err(|e| {
                        err(Some(f.span()), format!("`{key_name}.public_key_file`: {e}"))
                    })
                }
                (None, Some(pem)) => keys::parse_public_pem(pem.get_ref()).map_err(|e| {
                    err(
                        Some(pem.span()),
                        format!("`{key_name}.public_key`: not an SPKI PEM Ed25519 key ({e})"),
                    )
                }),
                _ => Err(err(
                    Some(named.span()),
                    format!("`{key_name}` needs exactly one of `public_key_file` or `public_key`"),
                )),
            }
        };
        let registry_entries = |raw: &[RawKey],
                                table: &str|
         -> Result<Vec<KeyEntry>, PolicyError> {
            let mut out = Vec::new();
            for (n, rk) in raw.iter().enumerate() {
                let key_name = format!("{table}[{n}]");
                let id = rk.id.get_ref().clone();
                if !crate::mqtt::topic_level_ok(&id) {
                    return Err(err(
                        Some(rk.id.span()),
                        format!(
                            "`{key_name}.id`: `{id}` must be 1 to 64 characters without `/`, `+` or `#`"
                        ),
                    ));
                }
                let key = public_key(
                    rk.public_key_file.as_ref(),
                    rk.public_key.as_ref(),
                    &rk.id,
                    &key_name,
                )?;
                let valid_from = rk
                    .valid_from
                    .as_ref()
                    .map(|s| at(s, &format!("{key_name}.valid_from")))
                    .transpose()?;
                let valid_until = rk
                    .valid_until
                    .as_ref()
                    .map(|s| at(s, &format!("{key_name}.valid_until")))
                    .transpose()?;
                if let (Some(f), Some(u)) = (valid_from, valid_until)
                    && u < f
                {
                    return Err(err(
                        Some(rk.id.span()),
                        format!("`{key_name}`: `valid_until` is before `valid_from`"),
                    ));
                }
                out.push(KeyEntry {
                    id,
                    key,
                    valid_from,
                    valid_until,
                });
            }
            Ok(out)
        };
        let checkpoint_keys = registry_entries(&raw.checkpoints, "checkpoints")?;
        let hub_keys = registry_entries(&raw.hubs, "hubs")?;
        {
            let mut seen = HashSet::new();
            for h in &hub_keys {
                if !seen.insert(h.id.as_str()) {
                    return Err(err(None, format!("`hubs`: kid `{}` is listed twice", h.id)));
                }
            }
        }

        let mut issuers = Vec::new();
        let mut kid_index = HashMap::new();
        for (n, ri) in raw.issuers.iter().enumerate() {
            let key_name = format!("issuers[{n}]");
            let kid = ri.kid.get_ref().clone();
            if kid.is_empty() {
                return Err(err(
                    Some(ri.kid.span()),
                    format!("`{key_name}.kid` is empty"),
                ));
            }
            let key = StrictKey::from(public_key(
                ri.public_key_file.as_ref(),
                ri.public_key.as_ref(),
                &ri.kid,
                &key_name,
            )?);
            // Checked once here rather than found at the first token.
            if key.is_small_order() {
                return Err(err(
                    Some(ri.kid.span()),
                    format!(
                        "`{key_name}`: the key is a point of small order, under which no signature verifies; it is not a genuine issuer key"
                    ),
                ));
            }
            let valid_from = ri
                .valid_from
                .as_ref()
                .map(|s| at(s, &format!("{key_name}.valid_from")))
                .transpose()?;
            let valid_until = ri
                .valid_until
                .as_ref()
                .map(|s| at(s, &format!("{key_name}.valid_until")))
                .transpose()?;
            // Design: a kid names one key. Two entries under one kid would let
            // a token verify against whichever the lookup happened to pick.
            if kid_index.insert(kid.as_bytes().to_vec(), n).is_some() {
                return Err(err(
                    Some(ri.kid.span()),
                    format!("`{key_name}.kid`: `{kid}` is listed twice"),
                ));
            }
            issuers.push(Issuer {
                kid,
                key,
                valid_from,
                valid_until,
            });
        }

        let controlled_elements = raw
            .controlled_elements
            .iter()
            .map(|e| element(e, "controlled_elements"))
            .collect::<Result<BTreeSet<_>, _>>()?;
        let controlled_hs = raw
            .controlled_hs
            .iter()
            .map(|h| hs(h, "controlled_hs"))
            .collect::<Result<Vec<_>, _>>()?;

        let mut bans = Vec::new();
        for (n, b) in raw.bans.iter().enumerate() {
            let key = format!("bans[{n}]");
            let ban = Ban {
                elements: b
                    .elements
                    .iter()
                    .map(|e| element(e, &format!("{key}.elements")))
                    .collect::<Result<_, _>>()?,
                hs_codes: b
                    .hs_codes
                    .iter()
                    .map(|h| hs(h, &format!("{key}.hs_codes")))
                    .collect::<Result<_, _>>()?,
                destinations: b
                    .destinations
                    .iter()
                    .map(|d| country(d, &format!("{key}.destinations")))
                    .collect::<Result<_, _>>()?,
                note: b.note.clone(),
            };
            if ban.elements.is_empty() && ban.hs_codes.is_empty() {
                return Err(err(
                    None,
                    format!("`{key}` names neither `elements` nor `hs_codes`"),
                ));
            }
            bans.push(ban);
        }

        let denied_parties = raw
            .denied_parties
            .iter()
            .enumerate()
            .map(|(n, d)| {
                if d.id.trim().is_empty() && d.name.trim().is_empty() {
                    return Err(err(
                        None,
                        format!("`denied_parties[{n}]` has neither `id` nor `name`"),
                    ));
                }
                Ok(DeniedParty {
                    id: crate::screening::id_key(&d.id),
                    kind: d.kind,
                    display_name: d.name.clone(),
                    aliases: d.aliases.clone(),
                    source: d.source.clone(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;

        let clock_skew = dur(&raw.clock_skew, "clock_skew")?;
        Ok(Policy {
            version: raw.version,
            issued_at: at(&raw.issued_at, "issued_at")?,
            max_age: dur(&raw.max_age, "max_age")?,
            clock_skew,
            controlled_elements,
            controlled_hs,
            revoked: raw.revoked_licenses.into_iter().collect(),
            issuers,
            kid_index,
            screen_index: crate::screening::ScreenIndex::new(&denied_parties),
            denied_parties,
            bans,
            registry: Registry::new(checkpoint_keys, hub_keys, clock_skew),
        })
    }

    /// The issuer entry for a token's kid.
    pub fn issuer(&self, kid: &[u8]) -> Option<&Issuer> {
        self.kid_index.get(kid).map(|&i| &self.issuers[i])
    }

    /// The issuer key for a kid, for [`crate::token::open`].
    pub fn issuer_key(&self, kid: &[u8]) -> Option<StrictKey> {
        self.issuer(kid).map(|i| i.key)
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn sample(dir: &Path) -> (PathBuf, ed25519_dalek::SigningKey) {
        let key = keys::generate();
        keys::write_keypair(dir, "issuer", &key).unwrap();
        let p = dir.join("policy.toml");
        std::fs::write(&p, include_str!("../tests/data/policy.toml")).unwrap();
        (p, key)
    }

    #[test]
    fn loads_the_sample_policy() {
        let dir = tempfile::tempdir().unwrap();
        let (p, key) = sample(dir.path());
        let pol = Policy::load(&p).unwrap();
        assert_eq!(pol.controlled_elements.len(), 7);
        assert!(pol.controlled_hs.contains(&"850511".to_string()));
        assert_eq!(
            pol.issuer_key(b"mofcom-2025-1"),
            Some(key.verifying_key().into())
        );
        assert!(pol.bans[0].destinations.contains("US"));
        assert_eq!(pol.clock_skew, 300);
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let (p, _) = sample(dir.path());
        let text = std::fs::read_to_string(&p).unwrap();
        let bad = text.replace("\"Dy\"", "\"Dq\"");
        let e = Policy::from_toml(&bad, &p).unwrap_err().to_string();
        let line = bad.lines().position(|l| l.contains("\"Dq\"")).unwrap() + 1;
        assert!(e.contains(&format!("policy.toml:{line}:")), "{e}");
        assert!(e.contains("controlled_elements") && e.contains("Dq"), "{e}");

        let bad = text.replace("issuer.pub.pem", "missing.pem");
        let e = Policy::from_toml(&bad, &p).unwrap_err().to_string();
        assert!(
            e.contains("public_key_file") && e.contains("missing.pem"),
            "{e}"
        );

        let bad = text.replace("max_age = ", "max_agee = ");
        let e = Policy::from_toml(&bad, &p).unwrap_err().to_string();
        assert!(e.contains("max_agee"), "{e}");
    }

    #[test]
    fn duplicate_kid_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (p, _) = sample(dir.path());
        let text = std::fs::read_to_string(&p).unwrap();
        let dup = format!(
            "{text}\n[[issuers]]\nkid = \"mofcom-2025-1\"\npublic_key_file = \"issuer.pub.pem\"\n"
        );
        let e = Policy::from_toml(&dup, &p).unwrap_err().to_string();
        assert!(e.contains("listed twice"), "{e}");
    }

    #[test]
    fn a_small_order_issuer_key_is_refused_at_load() {
        use ed25519_dalek::pkcs8::EncodePublicKey;
        let dir = tempfile::tempdir().unwrap();
        let (p, _) = sample(dir.path());
        let text = std::fs::read_to_string(&p).unwrap();
        // The identity point: a valid encoding, and every "signature" with
        // R = identity and S = 0 would satisfy the unchecked equation.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let pem = VerifyingKey::from_bytes(&identity)
            .unwrap()
            .to_public_key_pem(Default::default())
            .unwrap();
        let weak =
            format!("{text}\n[[issuers]]\nkid = \"weak\"\npublic_key = \"\"\"\n{pem}\"\"\"\n");
        let e = Policy::from_toml(&weak, &p).unwrap_err().to_string();
        assert!(e.contains("issuers[1]") && e.contains("small order"), "{e}");
    }

    #[test]
    fn normal_forms() {
        assert_eq!(normalize_id(" de-hrb 20002 "), "DE-HRB20002");
        assert_eq!(normalize_country(" de "), Some("DE".into()));
        assert_eq!(normalize_country("DEU"), None);
    }
}
