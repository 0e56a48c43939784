//! What every simulated country shares: keys made from fixed names, the
//! policy whose registry names them, license tokens, and the prepared
//! declarations a post's gate decides (parsed and their tokens checked
//! once per process, not once per scenario).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use ed25519_dalek::SigningKey;
use sha2::{Digest, Sha256};

use crate::clock::UnixTime;
use crate::gate::Prepared;
use crate::policy::Policy;
use crate::registry::{KeyEntry, Registry};

/// When every simulated country starts (2026-06-01T00:00:00Z).
pub const EPOCH: UnixTime = 1_780_272_000;

/// The licenses shipments are declared under.
pub const LICENSES: usize = 8;

/// Most posts a simulated country has.
pub const POSTS_MAX: usize = 4;

/// Most hub processes a simulated country has.
pub const HUBS_MAX: usize = 2;

/// A key made from a name: the same in every run, so a seed replays exactly.
pub fn key(name: &str) -> SigningKey {
    SigningKey::from_bytes(&Sha256::digest(format!("permitgate-sim/{name}")).into())
}

/// Post `i`'s checkpoint id.
pub fn post_id(i: usize) -> String {
    format!("post-{}", (b'a' + i as u8) as char)
}

/// Hub process `j`'s key id.
pub fn hub_kid(j: usize) -> String {
    format!("hub-{}", j + 1)
}

/// License `l`'s id.
pub fn license_id(l: usize) -> String {
    format!("LIC-SIM-{:02}", l + 1)
}

/// The policy every part starts with: the controlled goods, the issuer,
/// and a registry of every post's and hub's key.
pub fn policy() -> Policy {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    POLICY
        .get_or_init(|| {
            let pem = crate::keys::public_pem(&key("issuer").verifying_key());
            let text = format!(
                "version = 1\nissued_at = \"2026-01-01T00:00:00Z\"\nmax_age = \"3650d\"\nclock_skew = \"5m\"\n\
                 controlled_elements = [\"Sm\", \"Gd\", \"Tb\", \"Dy\", \"Lu\", \"Sc\", \"Y\"]\n\
                 controlled_hs = [\"2805.30\", \"2846\", \"8505.11\"]\n\
                 [[issuers]]\nkid = \"sim-issuer\"\npublic_key = \"\"\"\n{pem}\"\"\"\n"
            );
            let mut p = match Policy::from_toml(&text, std::path::Path::new("simulation")) {
                Ok(p) => p,
                // Design: the text above is fixed; a failure is a bug in this file.
                Err(e) => panic!("the simulation's policy does not load: {e}"),
            };
            p.registry = Registry::new(
                (0..POSTS_MAX)
                    .map(|i| KeyEntry {
                        id: post_id(i),
                        key: key(&post_id(i)).verifying_key(),
                        valid_from: None,
                        valid_until: None,
                    })
                    .collect(),
                (0..HUBS_MAX)
                    .map(|j| KeyEntry {
                        id: hub_kid(j),
                        key: key(&hub_kid(j)).verifying_key(),
                        valid_from: None,
                        valid_until: None,
                    })
                    .collect(),
                p.clock_skew,
            );
            p
        })
        .clone()
}

/// The declaration `id` at a gate, carrying the token of license `l`:
/// Dy-doped magnets within the license's terms, so it clears unless the
/// license was used.
pub fn prepared(id: &str, l: usize) -> Prepared {
    static CACHE: OnceLock<Mutex<HashMap<(String, usize), Prepared>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let key = (id.to_owned(), l);
    if let Some(p) = cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
        return p;
    }
    let p = crate::gate::prepare(declaration(id, l).as_bytes(), &policy(), 1 << 20);
    if let Ok(mut c) = cache.lock() {
        c.insert(key, p.clone());
    }
    p
}

fn token(l: usize) -> String {
    static TOKENS: OnceLock<Vec<String>> = OnceLock::new();
    TOKENS.get_or_init(|| {
        (0..LICENSES)
            .map(|l| {
                let claims = format!(
                    r#"{{"iss": "SIM", "license_id": "{}", "iat": "2026-01-01T00:00:00Z",
                    "nbf": "2026-01-01T00:00:00Z", "exp": "2027-12-31T00:00:00Z",
                    "terms": {{"exporter": {{"id": "EXP-1", "name": "Example Magnet Co.", "country": "CN"}},
                    "consignee": {{"id": "CON-1", "name": "Example Import GmbH", "country": "DE"}},
                    "end_user": {{"id": "END-1", "name": "Example Auto AG", "country": "DE"}},
                    "destination": "DE",
                    "items": [{{"hs_code": "850511", "elements": ["Dy"], "max_net_kg": 500.0}}]}}}}"#,
                    license_id(l)
                );
                let license = match crate::token::License::from_claims_json(&claims) {
                    Ok(l) => l,
                    Err(e) => panic!("the simulation's claims do not load: {e}"),
                };
                crate::token::text::encode(&crate::token::issue(
                    &license,
                    "sim-issuer",
                    &key("issuer"),
                ))
            })
            .collect()
    })[l]
        .clone()
}

fn declaration(id: &str, l: usize) -> String {
    format!(
        r#"{{"declaration_id": "{id}",
        "exporter": {{"id": "EXP-1", "name": "Example Magnet Co.", "country": "CN"}},
        "consignee": {{"id": "CON-1", "name": "Example Import GmbH", "country": "DE"}},
        "end_user": {{"id": "END-1", "name": "Example Auto AG", "country": "DE"}},
        "destination": "DE",
        "items": [{{"hs_code": "850511", "description": "NdFeB magnets", "net_kg": 400.0, "elements": ["Nd", "Dy"]}}],
        "license": "{}"}}"#,
        token(l)
    )
}
