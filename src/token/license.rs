//! The license carried in a token: CWT claims (RFC 8392) plus the private
//! `terms` claim.

use serde::{Deserialize, Serialize};

use crate::clock::{UnixTime, parse_rfc3339};
use crate::codec::{self, Value};

/// CWT claim keys (RFC 8392 §4).
const CLAIM_ISS: i128 = 1;
const CLAIM_EXP: i128 = 4;
const CLAIM_NBF: i128 = 5;
const CLAIM_IAT: i128 = 6;
const CLAIM_CTI: i128 = 7;
/// Private claim holding the license terms (RFC 8392 §3.1: below -65536 is private use).
pub const CLAIM_TERMS: i128 = -65537;

/// A party named by a license or a declaration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Party {
    /// Registry identifier (e.g. a unified social credit code or a trade register number).
    pub id: String,
    /// Registered name.
    pub name: String,
    /// ISO 3166-1 alpha-2 country.
    pub country: String,
}

/// One line of goods a license covers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LicensedItem {
    /// HS code (digits; a declared code must start with it).
    pub hs_code: String,
    /// Controlled elements the goods contain (chemical symbols).
    pub elements: Vec<String>,
    /// Largest total net mass, in kg, that declarations of this line may carry.
    pub max_net_kg: f64,
}

/// What the license permits: parties, destination, goods.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Terms {
    /// The exporter.
    pub exporter: Party,
    /// The consignee.
    pub consignee: Party,
    /// The end user.
    pub end_user: Party,
    /// Destination country, ISO 3166-1 alpha-2.
    pub destination: String,
    /// Licensed goods.
    pub items: Vec<LicensedItem>,
    /// The shipment the license was issued for, when it names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipment_ref: Option<String>,
}

/// A license: the token's claims once decoded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct License {
    /// `iss`: the issuing authority.
    pub issuer: Option<String>,
    /// `cti`: the license id.
    pub license_id: String,
    /// `iat`.
    pub issued_at: UnixTime,
    /// `nbf`.
    pub not_before: Option<UnixTime>,
    /// `exp`.
    pub expires: UnixTime,
    /// The private `terms` claim.
    pub terms: Terms,
}

/// A time in a claims file: Unix seconds or RFC 3339 text.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum TimeField {
    Seconds(i64),
    Text(String),
}

impl TimeField {
    fn resolve(&self, name: &str) -> Result<UnixTime, String> {
        match self {
            TimeField::Seconds(s) => Ok(*s),
            TimeField::Text(t) => parse_rfc3339(t).map_err(|e| format!("`{name}`: {e}")),
        }
    }
}

/// The JSON claims file that `permitgate issue --claims` reads.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClaimsFile {
    iss: Option<String>,
    license_id: String,
    iat: TimeField,
    nbf: Option<TimeField>,
    exp: TimeField,
    terms: Terms,
}

impl License {
    /// Reads the JSON claims file format (see the README).
    pub fn from_claims_json(text: &str) -> Result<License, String> {
        let c: ClaimsFile = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let license = License {
            issuer: c.iss,
            license_id: c.license_id,
            issued_at: c.iat.resolve("iat")?,
            not_before: c.nbf.as_ref().map(|t| t.resolve("nbf")).transpose()?,
            expires: c.exp.resolve("exp")?,
            terms: c.terms,
        };
        if license.license_id.is_empty() {
            return Err("`license_id` is empty".into());
        }
        if license.terms.items.is_empty() {
            return Err("`terms.items` is empty: a license covers at least one line".into());
        }
        if let Some(bad) = license
            .terms
            .items
            .iter()
            .find(|i| !i.max_net_kg.is_finite() || i.max_net_kg <= 0.0)
        {
            return Err(format!(
                "`max_net_kg` {} is not a positive number",
                bad.max_net_kg
            ));
        }
        Ok(license)
    }

    /// The CWT claims map, CBOR-encoded: the token's payload.
    pub fn to_payload(&self) -> Vec<u8> {
        let mut claims = Vec::new();
        if let Some(iss) = &self.issuer {
            claims.push((Value::Integer(CLAIM_ISS), Value::Text(iss.clone())));
        }
        claims.push((
            Value::Integer(CLAIM_EXP),
            Value::Integer(self.expires.into()),
        ));
        if let Some(nbf) = self.not_before {
            claims.push((Value::Integer(CLAIM_NBF), Value::Integer(nbf.into())));
        }
        claims.push((
            Value::Integer(CLAIM_IAT),
            Value::Integer(self.issued_at.into()),
        ));
        claims.push((
            Value::Integer(CLAIM_CTI),
            Value::Bytes(self.license_id.as_bytes().to_vec()),
        ));
        claims.push((Value::Integer(CLAIM_TERMS), terms_to_value(&self.terms)));
        codec::encode_value(&Value::Map(claims))
    }

    /// Decodes a token payload. Call only after its signature has verified.
    ///
    /// Design: read straight into the claims (serde through `codec`), with
    /// no CBOR value tree in between: it is on every declaration's path.
    pub fn from_payload(payload: &[u8]) -> Result<License, String> {
        let c: Claims = codec::from_slice(payload).map_err(|e| format!("payload: {e}"))?;
        let license_id = c
            .license_id
            .ok_or("claim cti (7, the license id) is missing")?;
        if license_id.is_empty() || license_id.len() > 256 {
            return Err("claim cti (7) must be 1 to 256 bytes".into());
        }
        let terms = c
            .terms
            .ok_or_else(|| format!("claim {CLAIM_TERMS} (license terms) is missing"))?;
        if let Some(n) = terms
            .items
            .iter()
            .position(|i| !i.max_net_kg.is_finite() || i.max_net_kg <= 0.0)
        {
            return Err(format!(
                "terms: `items[{n}].max_net_kg` is not a positive number"
            ));
        }
        Ok(License {
            issuer: c.issuer,
            license_id,
            issued_at: c.issued_at.ok_or("claim iat (6) is missing")?,
            not_before: c.not_before,
            expires: c.expires.ok_or("claim exp (4) is missing")?,
            terms,
        })
    }
}

/// The CWT claims map as read from the payload, before the checks.
#[derive(Default)]
struct Claims {
    issuer: Option<String>,
    license_id: Option<String>,
    expires: Option<UnixTime>,
    not_before: Option<UnixTime>,
    issued_at: Option<UnixTime>,
    terms: Option<Terms>,
}

/// A claims map key: an integer, or anything else (ignored).
enum ClaimKey {
    Int(i128),
    Other,
}

impl<'de> serde::Deserialize<'de> for ClaimKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = ClaimKey;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a claim key")
            }
            fn visit_i64<E>(self, v: i64) -> Result<ClaimKey, E> {
                Ok(ClaimKey::Int(v.into()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<ClaimKey, E> {
                Ok(ClaimKey::Int(v.into()))
            }
            fn visit_str<E>(self, _: &str) -> Result<ClaimKey, E> {
                Ok(ClaimKey::Other)
            }
            fn visit_bytes<E>(self, _: &[u8]) -> Result<ClaimKey, E> {
                Ok(ClaimKey::Other)
            }
        }
        d.deserialize_any(V)
    }
}

/// `cti`: bytes (RFC 8392) or text, UTF-8 either way.
struct LicenseId(String);

impl<'de> serde::Deserialize<'de> for LicenseId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = LicenseId;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("claim cti (7) as bytes or text")
            }
            fn visit_str<E>(self, v: &str) -> Result<LicenseId, E> {
                Ok(LicenseId(v.to_owned()))
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<LicenseId, E> {
                String::from_utf8(v.to_vec())
                    .map(LicenseId)
                    .map_err(|_| E::custom("claim cti (7) is not UTF-8 text"))
            }
        }
        d.deserialize_any(V)
    }
}

/// A NumericDate: an integer, or a float (RFC 8392 allows one).
struct NumericDate(UnixTime);

impl<'de> serde::Deserialize<'de> for NumericDate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = NumericDate;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a NumericDate")
            }
            fn visit_i64<E>(self, v: i64) -> Result<NumericDate, E> {
                Ok(NumericDate(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<NumericDate, E> {
                i64::try_from(v)
                    .map(NumericDate)
                    .map_err(|_| E::custom("out of range"))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<NumericDate, E> {
                if v.is_finite() && v.abs() < 1e15 {
                    Ok(NumericDate(v as i64))
                } else {
                    Err(E::custom("out of range"))
                }
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> serde::Deserialize<'de> for Claims {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Claims;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a CWT claims map")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Claims, A::Error> {
                use serde::de::Error;
                let mut c = Claims::default();
                let date = |r: Result<NumericDate, A::Error>, name: &str, key: i128| {
                    r.map(|d| Some(d.0)).map_err(|e| {
                        A::Error::custom(format!("claim {name} ({key}) is not a NumericDate: {e}"))
                    })
                };
                while let Some(key) = map.next_key::<ClaimKey>()? {
                    match key {
                        ClaimKey::Int(CLAIM_ISS) => {
                            c.issuer = Some(
                                map.next_value::<String>()
                                    .map_err(|_| A::Error::custom("claim iss (1) is not text"))?,
                            )
                        }
                        ClaimKey::Int(CLAIM_EXP) => {
                            c.expires = date(map.next_value(), "exp", CLAIM_EXP)?
                        }
                        ClaimKey::Int(CLAIM_NBF) => {
                            c.not_before = date(map.next_value(), "nbf", CLAIM_NBF)?
                        }
                        ClaimKey::Int(CLAIM_IAT) => {
                            c.issued_at = date(map.next_value(), "iat", CLAIM_IAT)?
                        }
                        ClaimKey::Int(CLAIM_CTI) => {
                            c.license_id = Some(map.next_value::<LicenseId>()?.0)
                        }
                        ClaimKey::Int(CLAIM_TERMS) => {
                            c.terms = Some(
                                map.next_value::<Terms>()
                                    .map_err(|e| A::Error::custom(format!("terms: {e}")))?,
                            )
                        }
                        _ => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(c)
            }
        }
        d.deserialize_map(V)
    }
}

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

fn party_to_value(p: &Party) -> Value {
    Value::Map(vec![
        (text("id"), text(&p.id)),
        (text("name"), text(&p.name)),
        (text("country"), text(&p.country)),
    ])
}

fn terms_to_value(t: &Terms) -> Value {
    let items = t
        .items
        .iter()
        .map(|i| {
            Value::Map(vec![
                (text("hs_code"), text(&i.hs_code)),
                (
                    text("elements"),
                    Value::Array(i.elements.iter().map(|e| text(e)).collect()),
                ),
                (text("max_net_kg"), Value::Float(i.max_net_kg)),
            ])
        })
        .collect();
    let mut m = vec![
        (text("exporter"), party_to_value(&t.exporter)),
        (text("consignee"), party_to_value(&t.consignee)),
        (text("end_user"), party_to_value(&t.end_user)),
        (text("destination"), text(&t.destination)),
        (text("items"), Value::Array(items)),
    ];
    if let Some(r) = &t.shipment_ref {
        m.push((text("shipment_ref"), text(r)));
    }
    Value::Map(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> License {
        crate::token::tests::sample_license()
    }

    /// The sample's claims with `f` applied to the map's entries.
    fn claims_with(f: impl FnOnce(&mut Vec<(Value, Value)>)) -> Vec<u8> {
        let Value::Map(mut m) = codec::decode_value(&sample().to_payload()).unwrap() else {
            panic!("claims are a map")
        };
        f(&mut m);
        codec::encode_value(&Value::Map(m))
    }

    fn set(m: &mut [(Value, Value)], key: i128, v: Value) {
        let e = m
            .iter_mut()
            .find(|(k, _)| *k == Value::Integer(key))
            .unwrap();
        e.1 = v;
    }

    #[test]
    fn round_trip_and_the_forms_rfc_8392_allows() {
        assert_eq!(License::from_payload(&sample().to_payload()), Ok(sample()));
        // cti as text, times as floats, an unknown claim and an integer mass.
        let p = claims_with(|m| {
            set(m, CLAIM_CTI, Value::Text(sample().license_id));
            set(m, CLAIM_EXP, Value::Float(sample().expires as f64));
            m.push((Value::Text("note".into()), Value::Array(vec![Value::Null])));
            m.push((Value::Integer(-70000), Value::Bytes(vec![1, 2])));
        });
        let l = License::from_payload(&p).unwrap();
        assert_eq!(l.license_id, sample().license_id);
        assert_eq!(l.expires, sample().expires);
    }

    #[test]
    fn refusals_say_which_claim() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (codec::encode_value(&Value::Array(vec![])), "CWT claims map"),
            (
                claims_with(|m| m.retain(|(k, _)| *k != Value::Integer(CLAIM_CTI))),
                "claim cti (7, the license id) is missing",
            ),
            (
                claims_with(|m| set(m, CLAIM_CTI, Value::Bytes(vec![0xff, 0xfe]))),
                "claim cti (7) is not UTF-8 text",
            ),
            (
                claims_with(|m| set(m, CLAIM_CTI, Value::Text(String::new()))),
                "claim cti (7) must be 1 to 256 bytes",
            ),
            (
                claims_with(|m| set(m, CLAIM_EXP, Value::Text("tomorrow".into()))),
                "claim exp (4) is not a NumericDate",
            ),
            (
                claims_with(|m| m.retain(|(k, _)| *k != Value::Integer(CLAIM_IAT))),
                "claim iat (6) is missing",
            ),
            (
                claims_with(|m| m.retain(|(k, _)| *k != Value::Integer(CLAIM_TERMS))),
                "(license terms) is missing",
            ),
            (
                claims_with(|m| set(m, CLAIM_TERMS, Value::Map(vec![]))),
                "terms: missing field",
            ),
        ];
        for (payload, words) in cases {
            let e = License::from_payload(&payload).unwrap_err();
            assert!(e.contains(words), "`{e}` should say `{words}`");
        }
        let mut bad = sample();
        bad.terms.items[0].max_net_kg = -1.0;
        assert_eq!(
            License::from_payload(&bad.to_payload()).unwrap_err(),
            "terms: `items[0].max_net_kg` is not a positive number"
        );
    }
}
