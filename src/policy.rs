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
    /// The parsed public key (parsed once: parsing costs more than a hash lookup).
    pub key: VerifyingKey,
    /// Tokens issued before this are not trusted.
    pub valid_from: Option<UnixTime>,
    /// Tokens issued after this are not trusted.
    pub valid_until: Option<UnixTime>,
}

/// A party on the denied-party list.
#[derive(Debug, Clone)]
pub struct DeniedParty {
    /// Identifier, in [`denied_id_form`]; empty if the list gives only a name.
    pub id: String,
    /// Name, normalized (see [`normalize_name`]).
    pub name: String,
    /// Name as listed, for reports.
    pub display_name: String,
    /// Where the entry comes from (an announcement, a list name).
    pub source: String,
}

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
    source: String,
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

/// Name normal form, for the denied-party list: Unicode look-alikes folded
/// (the skeleton of Unicode TR39, so a Cyrillic `е`, a fullwidth `Ｅ` or a
/// digit `0` for `o` all fold to one form; accents are dropped), lower case,
/// runs of anything but letters and digits become one space.
///
/// Design: the form is only ever compared, never shown; it folds more than
/// a reader would (`m` and `rn` meet), which on a denial list errs toward
/// catching an evasion.
pub fn normalize_name(s: &str) -> String {
    let lower: String = s.chars().flat_map(char::to_lowercase).collect();
    // The skeleton is decomposed: accents come out as combining marks, dropped here.
    let folded: String = skeleton(&lower)
        .chars()
        .filter(|c| !unicode_normalization::char::is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .collect();
    let mut out = String::with_capacity(folded.len());
    for word in folded
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// An identifier as the denied-party list compares it: [`normalize_id`],
/// then Unicode look-alikes folded as for names, so `US-DЕ-0666` with a
/// Cyrillic `Е` is still the listed `US-DE-0666`. (A license binds a party
/// by its exact [`normalize_id`]: there a look-alike is another party.)
pub fn denied_id_form(s: &str) -> String {
    let id = normalize_id(s);
    skeleton(&id).chars().flat_map(char::to_uppercase).collect()
}

/// The TR39 skeleton of `s` (look-alikes folded, decomposed).
///
/// Design: names and ids are nearly always ASCII, and the skeleton of an
/// ASCII string whose characters' skeletons are all ASCII is those joined
/// (NFD leaves ASCII as it is): a table lookup instead of two
/// normalisations and a search of the confusables table per character.
fn skeleton(s: &str) -> String {
    let table = &*ASCII_SKELETON;
    if s.is_ascii() && s.bytes().all(|b| table[usize::from(b)].is_some()) {
        let mut out = String::with_capacity(s.len());
        for b in s.bytes() {
            out.push_str(table[usize::from(b)].as_deref().unwrap_or_default());
        }
        out
    } else {
        unicode_security::confusable_detection::skeleton(s).collect()
    }
}

/// Each ASCII character's TR39 skeleton, where that is ASCII too.
static ASCII_SKELETON: std::sync::LazyLock<Vec<Option<String>>> = std::sync::LazyLock::new(|| {
    (0u8..128)
        .map(|b| {
            let one: String = unicode_security::confusable_detection::skeleton(
                char::from(b).encode_utf8(&mut [0; 4]),
            )
            .collect();
            one.is_ascii().then_some(one)
        })
        .collect()
});

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
            let key = public_key(
                ri.public_key_file.as_ref(),
                ri.public_key.as_ref(),
                &ri.kid,
                &key_name,
            )?;
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
                    id: denied_id_form(&d.id),
                    name: normalize_name(&d.name),
                    display_name: d.name.clone(),
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
    pub fn issuer_key(&self, kid: &[u8]) -> Option<VerifyingKey> {
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
    fn the_ascii_skeleton_table_agrees_with_tr39() {
        use unicode_security::confusable_detection::skeleton as tr39;
        // Only `%` (to `°/₀`) leaves ASCII; a string with one takes the long way.
        let outside: Vec<u8> = (0u8..128)
            .filter(|b| ASCII_SKELETON[usize::from(*b)].is_none())
            .collect();
        assert_eq!(outside, b"%");
        assert_eq!(skeleton("10%"), tr39("10%").collect::<String>());
        // And whole strings agree, including the look-alikes TR39 folds in ASCII.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for n in 0..2000 {
            let s: String = (0..n % 40)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    char::from((x % 128) as u8)
                })
                .collect();
            assert_eq!(skeleton(&s), tr39(&s).collect::<String>(), "{s:?}");
        }
        for s in ["rn", "m", "0O1lI|", "ACME Rare Earth Trading Co., Ltd."] {
            assert_eq!(skeleton(s), tr39(s).collect::<String>());
        }
    }

    #[test]
    fn loads_the_sample_policy() {
        let dir = tempfile::tempdir().unwrap();
        let (p, key) = sample(dir.path());
        let pol = Policy::load(&p).unwrap();
        assert_eq!(pol.controlled_elements.len(), 7);
        assert!(pol.controlled_hs.contains(&"850511".to_string()));
        assert_eq!(pol.issuer_key(b"mofcom-2025-1"), Some(key.verifying_key()));
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
    fn normal_forms() {
        assert_eq!(normalize_id(" de-hrb 20002 "), "DE-HRB20002");
        // Case and punctuation go; `m` is folded to its look-alike `rn`.
        assert_eq!(normalize_name("Example  Auto, AG."), "exarnple auto ag");
        // Look-alikes fold: Cyrillic, fullwidth and mathematical letters, a digit for a letter.
        let plain = normalize_name("Shadow Defense Systems LLC");
        for disguised in [
            "Shadow D\u{0435}fense Systems LLC",
            "\u{FF33}hadow Defense Systems LLC",
            "Shad0w Defense Systems LLC",
            "\u{1D412}hadow Defense Systems LLC",
            "Shadow Défense Systems, LLC.",
        ] {
            assert_eq!(normalize_name(disguised), plain, "{disguised}");
        }
        assert_ne!(normalize_name("Shadow Offense Systems LLC"), plain);
        assert_eq!(
            denied_id_form("us-d\u{0415}-0666"),
            denied_id_form("US-DE-0666")
        );
        assert_ne!(denied_id_form("US-DE-0667"), denied_id_form("US-DE-0666"));
        assert_eq!(normalize_country(" de "), Some("DE".into()));
        assert_eq!(normalize_country("DEU"), None);
    }
}
