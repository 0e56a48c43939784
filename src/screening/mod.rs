//! Denied-party screening: a declared party's id and name against the
//! list, by certainty and by likeness.
//!
//! - [`names`]: a name folded into words, in whatever script it came.
//! - [`score`]: how close two names come; only certainty refuses.
//! - [`ids`]: identifiers, their look-alikes, one character apart, check digits.
//! - [`index`]: the list indexed, so a party meets only names that could come close.
//! - [`explain`]: two names side by side, for the hold and the desk.
//! - [`import`]: lists from OpenSanctions' formats.
//! - [`measure`]: the screen measured on labelled pairs.
//! - [`words`]: the word lists (legal forms, shared words, titles, particles).
//!
//! Design: only certainty refuses. An exact hit is the listed id itself,
//! or the listed name itself after lossless steps alone (case, width,
//! spacing, punctuation, one spelling per legal form, the same legal
//! form): it rejects. Anything reached through a lossy step (look-alikes
//! folded, another script transliterated, words moved or dropped, letters
//! changed, an id's look-alike or neighbour) can at most hold, for an
//! officer. The thresholds were set on the tuning part of
//! `tests/data/screening_pairs.json` (docs/operations.md has the figures).

pub mod explain;
pub mod ids;
pub mod import;
pub mod index;
pub mod measure;
pub mod names;
mod near;
mod postings;
pub mod score;
pub mod words;

pub use explain::{Explained, explain};
pub use ids::{
    ID_LOOK_ALIKE, ID_NEAR_MIN, ID_ONE_EDIT, id_key, id_look, ids_one_apart, uscc_checks,
};
pub use index::ScreenIndex;
pub use names::NameKey;
pub use score::{Closeness, POSSIBLE_AT};

/// What a listed entry is: it decides whether word order, initials,
/// titles and patronymics matter (FollowTheMoney's schema on import).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A person.
    Person,
    /// A company.
    Company,
    /// An organisation (a public body, an institute, an armed group).
    Organization,
    /// A vessel.
    Vessel,
    /// Not said (FollowTheMoney's `LegalEntity`): read as a firm's name
    /// when it carries a legal form, else as a person's.
    #[default]
    Unknown,
}

impl Kind {
    /// The kind of a FollowTheMoney schema; `None` for one that cannot be
    /// a party to a shipment.
    pub fn of_schema(schema: &str) -> Option<Kind> {
        Some(match schema {
            "Person" => Kind::Person,
            "Company" => Kind::Company,
            "Organization" | "PublicBody" => Kind::Organization,
            "Vessel" => Kind::Vessel,
            "LegalEntity" => Kind::Unknown,
            _ => return None,
        })
    }

    /// The kind as the policy file writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Person => "person",
            Kind::Company => "company",
            Kind::Organization => "organization",
            Kind::Vessel => "vessel",
            Kind::Unknown => "unknown",
        }
    }
}

/// A party on the denied-party list.
#[derive(Debug, Clone, Default)]
pub struct DeniedParty {
    /// Identifier, in [`id_key`]; empty if the list gives only a name.
    pub id: String,
    /// What it is.
    pub kind: Kind,
    /// Name as listed.
    pub display_name: String,
    /// Other names it is listed under, as listed.
    pub aliases: Vec<String>,
    /// Where the entry comes from (an announcement, a list name).
    pub source: String,
}

impl DeniedParty {
    /// Its name and aliases, the empty ones left out.
    pub fn all_names(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.display_name.as_str())
            .chain(self.aliases.iter().map(String::as_str))
            .filter(|n| !n.trim().is_empty())
    }
}

/// A declared name's keys (see [`names::declared_keys`]).
pub fn name_keys(s: &str) -> Vec<NameKey> {
    names::declared_keys(s)
}

/// How many declared names [`name_keys_cached`] keeps.
const CACHED_NAMES: usize = 4096;

type NameCache = std::sync::Mutex<std::collections::HashMap<Box<str>, std::sync::Arc<[NameKey]>>>;

static NAME_CACHE: std::sync::LazyLock<NameCache> =
    std::sync::LazyLock::new(|| std::sync::Mutex::new(Default::default()));

/// [`name_keys`] through a bounded cache shared by the verify stage's
/// threads: the same exporters, consignees and end users come back all
/// day, and their keys cost about a third of a declaration's parse.
///
/// Design: bounded; when full it is emptied and fills again, so a flood
/// of invented names costs memory no more than `CACHED_NAMES` entries.
pub fn name_keys_cached(s: &str) -> std::sync::Arc<[NameKey]> {
    use std::sync::Arc;
    let cache = &*NAME_CACHE;
    if let Ok(c) = cache.lock()
        && let Some(k) = c.get(s)
    {
        return k.clone();
    }
    let keys: Arc<[NameKey]> = name_keys(s).into();
    if let Ok(mut c) = cache.lock() {
        if c.len() >= CACHED_NAMES {
            c.clear();
        }
        c.insert(s.into(), keys.clone());
    }
    keys
}

/// The TR39 skeleton of `s` (look-alikes folded, decomposed).
///
/// Design: names and ids are nearly always ASCII, and the skeleton of an
/// ASCII string whose characters' skeletons are all ASCII is those joined
/// (NFD leaves ASCII as it is): a table lookup instead of two
/// normalisations and a search of the confusables table per character.
pub(crate) fn skeleton(s: &str) -> String {
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

#[cfg(test)]
mod tests;
