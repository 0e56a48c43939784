//! Shipment declarations as scanners and declaration systems send them.
//!
//! Format: a payload whose first non-blank byte is `{` is JSON; anything else
//! is CBOR (a CBOR map starts with 0xa0..0xbf, and `{` as CBOR would be a
//! text string, which is never a declaration), so the two never collide.

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::codec::{self, Unreadability, Unreadable};
use crate::elements;
use crate::token::Party;

/// Most items one declaration may list.
pub const MAX_ITEMS: usize = 10_000;
/// Longest declaration id accepted.
pub const MAX_ID_LEN: usize = 128;

/// One declared line of goods.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// HS code as declared (dots and spaces allowed).
    pub hs_code: String,
    /// Free-text description.
    #[serde(default)]
    pub description: String,
    /// Net mass in kilograms.
    pub net_kg: f64,
    /// Chemical symbols of the elements the goods contain, as declared.
    #[serde(default)]
    pub elements: Vec<String>,
}

/// The license as carried in a declaration: `PG1:` text or raw COSE bytes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LicenseField(#[serde(with = "hex_bytes")] pub Vec<u8>);

/// A shipment declaration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Declaration {
    /// Unique id of the declaration in the declaring system.
    pub declaration_id: String,
    /// Bill of lading or similar reference.
    #[serde(default)]
    pub shipment_ref: Option<String>,
    /// The exporter.
    pub exporter: Party,
    /// The consignee.
    pub consignee: Party,
    /// The end user.
    pub end_user: Party,
    /// Destination country, ISO 3166-1 alpha-2.
    pub destination: String,
    /// Declared goods.
    pub items: Vec<Item>,
    /// The license token, when the shipment carries one.
    #[serde(default)]
    pub license: Option<LicenseField>,
}

/// A declaration that could not be read, with the id when one was readable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{detail}")]
pub struct MalformedDeclaration {
    /// The declaration id, if the payload carried a readable one.
    pub declaration_id: Option<String>,
    /// What is wrong, and where.
    pub detail: String,
}

/// A parsed declaration and the hash of its content (format-independent).
#[derive(Debug, Clone)]
pub struct ParsedDeclaration {
    /// The declaration.
    pub declaration: Declaration,
    /// SHA-256 of its canonical form: the same content gives the same hash
    /// in JSON or CBOR, with the license as `PG1:` text or as COSE bytes.
    pub content_hash: [u8; 32],
    /// The license exactly as carried, when it came as `PG1:` text (the
    /// declaration itself holds its COSE bytes).
    pub license_as_carried: Option<LicenseField>,
    /// Exporter, consignee and end user as the denied-party list compares
    /// them: ([`crate::screening::id_key`], [`crate::screening::name_key`]).
    /// Computed with the parse, which runs on every core, rather than in
    /// the serial decision.
    pub screening: [(String, std::sync::Arc<[crate::screening::NameKey]>); 3],
}

/// Parses a JSON or CBOR declaration, refusing payloads over `max_bytes`.
pub fn parse(payload: &[u8], max_bytes: usize) -> Result<ParsedDeclaration, MalformedDeclaration> {
    let is_json = payload
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{');
    if payload.len() > max_bytes {
        return Err(MalformedDeclaration {
            declaration_id: None,
            detail: format!(
                "payload is {} bytes, more than the {max_bytes} allowed",
                payload.len()
            ),
        });
    }
    let parsed: Option<Declaration> = if is_json {
        serde_json::from_slice(payload).ok()
    } else {
        codec::from_slice(payload).ok()
    };
    // Design: the fast parse keeps no field path; a refused payload is read
    // again, slowly, only to say in its own terms what is wrong.
    let Some(mut declaration) = parsed else {
        return Err(MalformedDeclaration {
            declaration_id: read_id(payload, is_json),
            detail: explain(payload, is_json),
        });
    };
    if let Err(detail) = validate(&declaration) {
        return Err(MalformedDeclaration {
            declaration_id: Some(declaration.declaration_id).filter(|id| valid_id(id)),
            detail,
        });
    }
    let license_as_carried = canonical_license(&mut declaration);
    Ok(ParsedDeclaration::new(declaration, license_as_carried))
}

impl ParsedDeclaration {
    /// A declaration whose license (if any) is already its COSE bytes.
    fn new(declaration: Declaration, license_as_carried: Option<LicenseField>) -> Self {
        let content_hash = content_hash(&declaration);
        let screen = |p: &Party| {
            (
                crate::screening::id_key(&p.id),
                crate::screening::name_keys_cached(&p.name),
            )
        };
        let screening = [
            screen(&declaration.exporter),
            screen(&declaration.consignee),
            screen(&declaration.end_user),
        ];
        ParsedDeclaration {
            declaration,
            content_hash,
            license_as_carried,
            screening,
        }
    }

    /// The declaration as a held shipment keeps it: JSON without the
    /// license, and the license's COSE bytes beside it.
    pub fn to_stored(&self) -> (String, Option<Vec<u8>>) {
        let mut d = self.declaration.clone();
        let token = d.license.take().map(|l| l.0);
        (serde_json::to_string(&d).unwrap_or_default(), token)
    }

    /// A held declaration read back from [`ParsedDeclaration::to_stored`]'s form.
    pub fn from_stored(json: &str, token: Option<Vec<u8>>) -> Result<Self, String> {
        let mut d: Declaration = serde_json::from_str(json).map_err(|e| e.to_string())?;
        d.license = token.map(LicenseField);
        Ok(ParsedDeclaration::new(d, None))
    }
}

// Design: one license, one identity. A scanner that re-encodes a token
// (another zlib stream, or raw COSE in a CBOR declaration) sends the same
// content; hashing the carried text would call it a conflict. So the
// declaration holds the token's COSE bytes, and the text it came as is kept
// aside. A license that cannot be read stays as carried: its verdict says why.
fn canonical_license(d: &mut Declaration) -> Option<LicenseField> {
    let carried = d.license.as_mut()?;
    let cose = crate::token::text::to_cose_bytes(&carried.0).ok()?;
    // Only what could be a COSE_Sign1 (tagged or not) becomes the identity.
    if cose == carried.0 || !matches!(cose.first(), Some(0xd2 | 0x84)) {
        return None;
    }
    Some(LicenseField(std::mem::replace(&mut carried.0, cose)))
}

impl ParsedDeclaration {
    /// The content hash as versions before canonical licenses computed it
    /// (over the `PG1:` text as carried), for verdicts stored by them.
    pub fn content_hash_as_carried(&self) -> Option<[u8; 32]> {
        let carried = self.license_as_carried.as_ref()?;
        let mut d = self.declaration.clone();
        d.license = Some(carried.clone());
        Some(content_hash(&d))
    }
}

/// SHA-256 of the declaration's canonical JSON (fields in struct order).
pub fn content_hash(d: &Declaration) -> [u8; 32] {
    /// Feeds the JSON straight into the hash, without building it in memory.
    struct HashWriter(Sha256);
    impl std::io::Write for HashWriter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.update(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut w = HashWriter(Sha256::new());
    // Serializing a struct of strings, numbers and vectors cannot fail.
    let _ = serde_json::to_writer(&mut w, d);
    w.0.finalize().into()
}

fn valid_id(id: &str) -> bool {
    !id.trim().is_empty() && id.len() <= MAX_ID_LEN && !id.chars().any(char::is_control)
}

fn validate(d: &Declaration) -> Result<(), String> {
    if !valid_id(&d.declaration_id) {
        return Err(format!(
            "`declaration_id` must be 1 to {MAX_ID_LEN} printable characters"
        ));
    }
    for (field, country) in [
        ("destination", &d.destination),
        ("exporter.country", &d.exporter.country),
        ("consignee.country", &d.consignee.country),
        ("end_user.country", &d.end_user.country),
    ] {
        if crate::policy::normalize_country(country).is_none() {
            return Err(format!(
                "`{field}` `{country}` is not an ISO 3166-1 alpha-2 country code"
            ));
        }
    }
    if d.items.is_empty() {
        return Err("`items` is empty".into());
    }
    if d.items.len() > MAX_ITEMS {
        return Err(format!(
            "{} items, more than the {MAX_ITEMS} allowed",
            d.items.len()
        ));
    }
    for (n, item) in d.items.iter().enumerate() {
        if !item.net_kg.is_finite() || item.net_kg <= 0.0 {
            return Err(format!(
                "`items[{n}].net_kg` must be a positive number, got {}",
                item.net_kg
            ));
        }
        if elements::hs_digits(&item.hs_code).is_none() {
            return Err(format!(
                "`items[{n}].hs_code` `{}` is not an HS code (4 to 10 digits, dots allowed)",
                item.hs_code
            ));
        }
        if let Some(bad) = item
            .elements
            .iter()
            .find(|e| elements::canonical_symbol(e).is_none())
        {
            return Err(format!(
                "`items[{n}].elements`: `{bad}` is not a chemical element symbol"
            ));
        }
    }
    Ok(())
}

/// Why a payload is not a declaration, in plain words and the declaration's terms.
fn explain(payload: &[u8], is_json: bool) -> String {
    let (format, why) = if is_json {
        ("JSON", json_traced(payload))
    } else {
        (
            "CBOR",
            codec::from_slice_traced::<Declaration>(payload).err(),
        )
    };
    match why {
        Some(why) => plain_words(&why, format),
        None => "the declaration could not be read".into(),
    }
}

fn json_traced(payload: &[u8]) -> Option<Unreadable> {
    use serde_json::error::Category;
    let mut de = serde_json::Deserializer::from_slice(payload);
    let traced: Result<Declaration, _> = serde_path_to_error::deserialize(&mut de);
    let (path, e) = match traced {
        Ok(_) => (String::new(), de.end().err()?),
        Err(e) => (e.path().to_string(), e.into_inner()),
    };
    let text = e.to_string();
    let message = text[..text.rfind(" at line ").unwrap_or(text.len())].to_owned();
    Some(Unreadable {
        kind: match e.classify() {
            Category::Eof => Unreadability::Truncated,
            Category::Syntax => Unreadability::Syntax,
            Category::Data | Category::Io => Unreadability::Content,
        },
        path: if path == "." { String::new() } else { path },
        message,
        at: (e.line() > 0).then(|| format!("line {}, column {}", e.line(), e.column())),
    })
}

/// Turns a decoder's message into a sentence an officer can act on.
fn plain_words(u: &Unreadable, format: &str) -> String {
    let at =
        u.at.as_deref()
            .map(|a| format!(" (at {a})"))
            .unwrap_or_default();
    let field = if u.path.is_empty() {
        "the declaration".to_owned()
    } else {
        format!("`{}`", u.path)
    };
    let m = u.message.as_str();
    match u.kind {
        Unreadability::Truncated => {
            format!("the {format} ends early{at}: the declaration is cut off")
        }
        Unreadability::Syntax if m.contains("trailing") => {
            format!("there is more after the end of the declaration{at}")
        }
        Unreadability::Syntax => format!("not well-formed {format}{at}: {m}"),
        Unreadability::Content => {
            if let Some(name) = m.strip_prefix("missing field ") {
                let name = name.trim_matches('`');
                match u.path.as_str() {
                    "" => format!("`{name}` is missing"),
                    parent => format!("`{parent}.{name}` is missing"),
                }
            } else if let Some((found, expected)) = m
                .strip_prefix("invalid type: ")
                .or_else(|| m.strip_prefix("invalid value: "))
                .and_then(|rest| rest.split_once(", expected "))
            {
                format!(
                    "{field} is {}, but must be {}",
                    plain_found(found),
                    plain_expected(expected)
                )
            } else {
                format!("{field}: {m}")
            }
        }
    }
}

fn plain_found(found: &str) -> String {
    let value = |prefix: &str| {
        found
            .strip_prefix(prefix)
            .map(|v| v.trim_matches('`').to_owned())
    };
    if let Some(v) = value("string ") {
        format!("the text {v}")
    } else if let Some(v) = value("floating point ").or_else(|| value("integer ")) {
        format!("the number {v}")
    } else if let Some(v) = value("boolean ") {
        v
    } else {
        match found {
            "map" => "a map".into(),
            "sequence" => "a list".into(),
            "unit" | "null" => "null".into(),
            "byte array" => "bytes".into(),
            other => other.into(),
        }
    }
}

fn plain_expected(expected: &str) -> &str {
    match expected {
        "struct Declaration" => {
            "a map of the declaration's fields (declaration_id, exporter, consignee, end_user, destination, items)"
        }
        "struct Party" => "a map with id, name and country",
        "struct Item" => "a map with hs_code, net_kg and optionally description and elements",
        "a string" => "text",
        "f64" => "a number",
        "a sequence" => "a list",
        other => other,
    }
}

/// Best-effort read of the id from a payload that failed to parse as a whole.
fn read_id(payload: &[u8], is_json: bool) -> Option<String> {
    #[derive(Deserialize)]
    struct IdOnly {
        declaration_id: String,
    }
    let id = if is_json {
        serde_json::from_slice::<IdOnly>(payload)
            .ok()?
            .declaration_id
    } else {
        codec::from_slice::<IdOnly>(payload).ok()?.declaration_id
    };
    valid_id(&id).then_some(id)
}

impl<'de> Deserialize<'de> for LicenseField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = LicenseField;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a PG1: text string or COSE bytes")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<LicenseField, E> {
                Ok(LicenseField(v.as_bytes().to_vec()))
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<LicenseField, E> {
                Ok(LicenseField(v.to_vec()))
            }
        }
        d.deserialize_any(V)
    }
}

mod hex_bytes {
    use serde::Serializer;

    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        let mut buf = vec![0u8; b.len() * 2];
        // The buffer is exactly twice the input, and hex digits are ASCII.
        let _ = hex::encode_to_slice(b, &mut buf);
        s.serialize_str(std::str::from_utf8(&buf).unwrap_or_default())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub const SAMPLE: &str = include_str!("../tests/data/declaration.json");

    #[test]
    fn refusals_say_what_is_wrong_in_the_declarations_terms() {
        let sample: serde_json::Value = serde_json::from_str(SAMPLE).unwrap();
        let cbor = codec::to_vec(&sample).unwrap();
        let with = |path: &[&str], v: serde_json::Value| {
            let mut d = sample.clone();
            let mut at = &mut d;
            for p in &path[..path.len() - 1] {
                at = match p.parse::<usize>() {
                    Ok(n) => &mut at[n],
                    Err(_) => &mut at[*p],
                };
            }
            let last = path[path.len() - 1];
            if v.is_null() {
                at.as_object_mut().unwrap().remove(last);
            } else {
                at[last] = v;
            }
            d.to_string().into_bytes()
        };
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (
                b"hello world".to_vec(),
                "the declaration is the text \"ello wor\", but must be a map of the declaration's fields",
            ),
            (
                cbor[..5].to_vec(),
                "the CBOR ends early (at byte 5): the declaration is cut off",
            ),
            (
                [&cbor[..], &[0x01]].concat(),
                "there is more after the end of the declaration",
            ),
            (
                SAMPLE.as_bytes()[..40].to_vec(),
                "the JSON ends early (at line 2",
            ),
            (
                format!("{SAMPLE} x").into_bytes(),
                "there is more after the end of the declaration (at line",
            ),
            (
                b"{\"declaration_id\": }".to_vec(),
                "not well-formed JSON (at line 1, column 20)",
            ),
            (
                with(&["exporter"], serde_json::Value::Null),
                "`exporter` is missing",
            ),
            (
                with(&["end_user", "country"], serde_json::Value::Null),
                "`end_user.country` is missing",
            ),
            (
                with(&["items", "0", "net_kg"], "480 kg".into()),
                "`items[0].net_kg` is the text \"480 kg\", but must be a number",
            ),
            (
                with(&["items"], serde_json::json!({"hs_code": "2846"})),
                "`items` is a map, but must be a list",
            ),
            (
                with(&["consignee"], "ACME".into()),
                "`consignee` is the text \"ACME\", but must be a map with id, name and country",
            ),
            (
                with(&["destination"], 49.into()),
                "`destination` is the number 49, but must be text",
            ),
        ];
        for (payload, expected) in cases {
            let detail = parse(&payload, 65536).unwrap_err().detail;
            assert!(
                detail.starts_with(expected),
                "{detail:?} does not start with {expected:?}"
            );
            for internal in [
                "struct ",
                "invalid type",
                "EOF",
                "offset",
                "f64",
                "sequence",
            ] {
                assert!(!detail.contains(internal), "{detail:?} leaks {internal:?}");
            }
        }
    }

    #[test]
    fn parses_the_design_example() {
        let p = parse(SAMPLE.as_bytes(), 65536).unwrap();
        assert_eq!(p.declaration.declaration_id, "CN-LYG-2025-000123");
        assert_eq!(p.declaration.items[0].elements, ["Nd", "Dy"]);
    }

    #[test]
    fn the_content_hash_is_stable_across_versions() {
        // Stored hashes tell a redelivery from a changed declaration, so the
        // canonical form must never change: every earlier version computed these.
        let p = parse(SAMPLE.as_bytes(), 65536).unwrap();
        assert_eq!(
            hex::encode(p.content_hash),
            "472ea757b988213358bcfe9e550b403d24f4a61c60931306b8579e7e55056e4a"
        );
        let mut v: serde_json::Value = serde_json::from_str(SAMPLE).unwrap();
        v["license"] = "PG1:ABC".into();
        let p = parse(v.to_string().as_bytes(), 65536).unwrap();
        assert_eq!(
            hex::encode(p.content_hash),
            "e4b585eb844c83e1e513546da321024bb83ec345e227e35091ea84b6cc13a9d1"
        );
    }

    #[test]
    fn json_and_cbor_of_the_same_content_hash_alike() {
        let p = parse(SAMPLE.as_bytes(), 65536).unwrap();
        let v: serde_json::Value = serde_json::from_str(SAMPLE).unwrap();
        let cbor = codec::to_vec(&v).unwrap();
        let q = parse(&cbor, 65536).unwrap();
        assert_eq!(p.content_hash, q.content_hash);
        let mut changed = v.clone();
        changed["items"][0]["net_kg"] = serde_json::json!(481.0);
        let r = parse(changed.to_string().as_bytes(), 65536).unwrap();
        assert_ne!(p.content_hash, r.content_hash);
    }

    #[test]
    fn unknown_fields_are_ignored_and_missing_ones_named() {
        let mut v: serde_json::Value = serde_json::from_str(SAMPLE).unwrap();
        v["customs_office"] = "LYG".into();
        assert!(parse(v.to_string().as_bytes(), 65536).is_ok());
        v.as_object_mut().unwrap().remove("destination");
        let e = parse(v.to_string().as_bytes(), 65536).unwrap_err();
        assert_eq!(e.declaration_id.as_deref(), Some("CN-LYG-2025-000123"));
        assert!(e.detail.contains("destination"), "{}", e.detail);
    }

    #[test]
    fn bad_masses_and_sizes_are_malformed() {
        for bad in ["-1.0", "0", "1e400"] {
            let text = SAMPLE.replace("480.0", bad);
            assert!(parse(text.as_bytes(), 65536).is_err(), "{bad}");
        }
        let e = parse(SAMPLE.as_bytes(), 100).unwrap_err();
        assert!(e.detail.contains("more than the 100"));
        assert!(
            parse(b"{\"declaration_id\": 7}", 100)
                .unwrap_err()
                .declaration_id
                .is_none()
        );
        assert!(parse(b"", 100).is_err());
        assert!(parse(b"\xff\x00", 100).is_err());
    }
}
