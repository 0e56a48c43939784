//! Interoperability with an independent COSE implementation (the `coset`
//! crate): it issues a token the agent accepts, and reads one the agent issues.

use coset::cbor::value::Value;
use coset::cwt::{ClaimsSet, ClaimsSetBuilder, Timestamp};
use coset::{
    CborSerializable, CoseSign1, CoseSign1Builder, HeaderBuilder, TaggedCborSerializable, iana,
};
use ed25519_dalek::{Signature, Signer};
use permitgate::token::{self, License};

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

fn party(id: &str, name: &str, country: &str) -> Value {
    Value::Map(vec![
        (text("id"), text(id)),
        (text("name"), text(name)),
        (text("country"), text(country)),
    ])
}

#[test]
fn a_token_issued_with_coset_is_accepted() {
    let key = permitgate::keys::generate();
    let terms = Value::Map(vec![
        (
            text("exporter"),
            party("91320700MA1X0001", "Jiangsu Example Magnet Co.", "CN"),
        ),
        (
            text("consignee"),
            party("DE-HRB-10001", "Example Import GmbH", "DE"),
        ),
        (
            text("end_user"),
            party("DE-HRB-20002", "Example Auto AG", "DE"),
        ),
        (text("destination"), text("DE")),
        (
            text("items"),
            Value::Array(vec![Value::Map(vec![
                (text("hs_code"), text("850511")),
                (text("elements"), Value::Array(vec![text("Dy"), text("Tb")])),
                (text("max_net_kg"), Value::Integer(750.into())),
            ])]),
        ),
    ]);
    let claims = ClaimsSetBuilder::new()
        .issuer("CN-MOFCOM".into())
        .issued_at(Timestamp::WholeSeconds(1_761_955_200))
        .expiration_time(Timestamp::WholeSeconds(1_793_491_200))
        .cwt_id(b"LIC-COSET-1".to_vec())
        .private_claim(-65537, terms)
        .build()
        .to_vec()
        .unwrap();
    let msg = CoseSign1Builder::new()
        .protected(
            HeaderBuilder::new()
                .algorithm(iana::Algorithm::EdDSA)
                .key_id(b"coset-kid".to_vec())
                .build(),
        )
        .payload(claims)
        .create_signature(b"", |data| key.sign(data).to_bytes().to_vec())
        .build()
        .to_tagged_vec()
        .unwrap();

    let vk = key.verifying_key();
    let opened = token::open(token::text::encode(&msg).as_bytes(), |kid| {
        (kid == b"coset-kid").then_some(vk.into())
    })
    .unwrap();
    let lic = opened.license;
    assert_eq!(lic.license_id, "LIC-COSET-1");
    assert_eq!(lic.issuer.as_deref(), Some("CN-MOFCOM"));
    assert_eq!(lic.terms.end_user.id, "DE-HRB-20002");
    assert_eq!(lic.terms.items[0].max_net_kg, 750.0);
    assert_eq!(lic.terms.items[0].elements, ["Dy", "Tb"]);
}

#[test]
fn a_token_issued_by_permitgate_reads_and_verifies_with_coset() {
    let key = permitgate::keys::generate();
    let license = License::from_claims_json(include_str!("data/claims.json")).unwrap();
    let cose = token::issue(&license, "mofcom-2025-1", &key);

    let msg = CoseSign1::from_tagged_slice(&cose).unwrap();
    assert_eq!(msg.protected.header.key_id, b"mofcom-2025-1");
    assert_eq!(
        msg.protected.header.alg,
        Some(coset::RegisteredLabelWithPrivate::Assigned(
            iana::Algorithm::EdDSA
        ))
    );
    let vk = key.verifying_key();
    msg.verify_signature(b"", |sig, data| {
        let sig = Signature::from_slice(sig).map_err(|e| e.to_string())?;
        vk.verify_strict(data, &sig).map_err(|e| e.to_string())
    })
    .unwrap();
    let claims = ClaimsSet::from_slice(msg.payload.as_deref().unwrap()).unwrap();
    assert_eq!(claims.cwt_id.as_deref(), Some(&b"LIC-2025-000123"[..]));
    assert_eq!(claims.issuer.as_deref(), Some("CN-MOFCOM"));
    assert_eq!(
        claims.expiration_time,
        Some(Timestamp::WholeSeconds(license.expires))
    );
    let (_, terms) = claims
        .rest
        .iter()
        .find(|(k, _)| *k == coset::RegisteredLabelWithPrivate::PrivateUse(-65537))
        .expect("terms claim");
    let dest = terms
        .as_map()
        .unwrap()
        .iter()
        .find(|(k, _)| k.as_text() == Some("destination"))
        .unwrap();
    assert_eq!(dest.1.as_text(), Some("DE"));
}
