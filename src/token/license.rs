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
    pub fn from_payload(payload: &[u8]) -> Result<License, String> {
        let v = codec::decode_value(payload).map_err(|e| format!("payload: {e}"))?;
        if !matches!(v, Value::Map(_)) {
            return Err("payload is not a CWT claims map".into());
        }
        let license_id = match v.map_get_int(CLAIM_CTI) {
            Some(Value::Bytes(b)) => String::from_utf8(b.clone())
                .map_err(|_| "claim cti (7) is not UTF-8 text".to_string())?,
            Some(Value::Text(t)) => t.clone(),
            _ => return Err("claim cti (7, the license id) is missing".into()),
        };
        if license_id.is_empty() || license_id.len() > 256 {
            return Err("claim cti (7) must be 1 to 256 bytes".into());
        }
        let issuer = match v.map_get_int(CLAIM_ISS) {
            Some(Value::Text(t)) => Some(t.clone()),
            None => None,
            Some(_) => return Err("claim iss (1) is not text".into()),
        };
        let time = |key: i128, name: &str| -> Result<Option<UnixTime>, String> {
            match v.map_get_int(key) {
                None => Ok(None),
                Some(Value::Integer(i)) => i64::try_from(*i)
                    .map(Some)
                    .map_err(|_| format!("claim {name} ({key}) is out of range")),
                Some(Value::Float(f)) if f.is_finite() && f.abs() < 1e15 => Ok(Some(*f as i64)),
                Some(_) => Err(format!("claim {name} ({key}) is not a NumericDate")),
            }
        };
        let expires = time(CLAIM_EXP, "exp")?.ok_or("claim exp (4) is missing")?;
        let issued_at = time(CLAIM_IAT, "iat")?.ok_or("claim iat (6) is missing")?;
        let not_before = time(CLAIM_NBF, "nbf")?;
        let terms = v
            .map_get_int(CLAIM_TERMS)
            .ok_or_else(|| format!("claim {CLAIM_TERMS} (license terms) is missing"))?;
        Ok(License {
            issuer,
            license_id,
            issued_at,
            not_before,
            expires,
            terms: terms_from_value(terms)?,
        })
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

fn field<'a>(v: &'a Value, key: &str, path: &str) -> Result<&'a Value, String> {
    match v {
        Value::Map(entries) => entries
            .iter()
            .find(|(k, _)| matches!(k, Value::Text(t) if t == key))
            .map(|(_, v)| v)
            .ok_or_else(|| format!("terms: `{path}{key}` is missing")),
        _ => Err(format!("terms: `{path}` is not a map")),
    }
}

fn text_field(v: &Value, key: &str, path: &str) -> Result<String, String> {
    match field(v, key, path)? {
        Value::Text(t) => Ok(t.clone()),
        _ => Err(format!("terms: `{path}{key}` is not text")),
    }
}

fn party_from_value(v: &Value, name: &str) -> Result<Party, String> {
    let p = field(v, name, "")?;
    let path = format!("{name}.");
    Ok(Party {
        id: text_field(p, "id", &path)?,
        name: text_field(p, "name", &path)?,
        country: text_field(p, "country", &path)?,
    })
}

fn terms_from_value(v: &Value) -> Result<Terms, String> {
    let Value::Array(items) = field(v, "items", "")? else {
        return Err("terms: `items` is not an array".into());
    };
    let items = items
        .iter()
        .enumerate()
        .map(|(n, item)| {
            let path = format!("items[{n}].");
            let Value::Array(els) = field(item, "elements", &path)? else {
                return Err(format!("terms: `{path}elements` is not an array"));
            };
            let elements = els
                .iter()
                .map(|e| match e {
                    Value::Text(t) => Ok(t.clone()),
                    _ => Err(format!("terms: `{path}elements` holds a non-text entry")),
                })
                .collect::<Result<Vec<_>, _>>()?;
            let max_net_kg = match field(item, "max_net_kg", &path)? {
                Value::Float(f) => *f,
                Value::Integer(i) => *i as f64,
                _ => return Err(format!("terms: `{path}max_net_kg` is not a number")),
            };
            if !max_net_kg.is_finite() || max_net_kg <= 0.0 {
                return Err(format!(
                    "terms: `{path}max_net_kg` is not a positive number"
                ));
            }
            Ok(LicensedItem {
                hs_code: text_field(item, "hs_code", &path)?,
                elements,
                max_net_kg,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let shipment_ref = match field(v, "shipment_ref", "") {
        Ok(Value::Text(t)) => Some(t.clone()),
        Ok(Value::Null) | Err(_) => None,
        Ok(_) => return Err("terms: `shipment_ref` is not text".into()),
    };
    Ok(Terms {
        exporter: party_from_value(v, "exporter")?,
        consignee: party_from_value(v, "consignee")?,
        end_user: party_from_value(v, "end_user")?,
        destination: text_field(v, "destination", "")?,
        items,
        shipment_ref,
    })
}
