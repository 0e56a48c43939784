//! The decision engine, reason by reason, on a realistic shipment: NdFeB
//! magnets with dysprosium from a Jiangsu maker to a German carmaker.

use ed25519_dalek::SigningKey;
use proptest::prelude::*;

use super::*;
use crate::clock::parse_rfc3339;
use crate::gate::{self, Prepared};
use crate::token::{self, License};
use crate::verdict::{AlertKind, ReasonCode as R};

struct Fixture {
    policy: Policy,
    key: SigningKey,
    _dir: tempfile::TempDir,
}

const KID: &str = "mofcom-2025-1";

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let key = crate::keys::generate();
    crate::keys::write_keypair(dir.path(), "issuer", &key).unwrap();
    let p = dir.path().join("policy.toml");
    std::fs::write(&p, include_str!("../tests/data/policy.toml")).unwrap();
    Fixture {
        policy: Policy::load(&p).unwrap(),
        key,
        _dir: dir,
    }
}

fn license() -> License {
    License::from_claims_json(include_str!("../tests/data/claims.json")).unwrap()
}

fn declaration() -> serde_json::Value {
    serde_json::from_str(include_str!("../tests/data/declaration.json")).unwrap()
}

fn now() -> UnixTime {
    parse_rfc3339("2026-03-01T09:00:00Z").unwrap()
}

impl Fixture {
    fn token(&self, lic: &License) -> String {
        token::text::encode(&token::issue(lic, KID, &self.key))
    }

    fn run_with(&self, decl: &serde_json::Value, facts: &LedgerFacts, at: UnixTime) -> Decision {
        let prepared = gate::prepare(decl.to_string().as_bytes(), &self.policy, 1 << 20);
        let ctx = Context {
            checkpoint: "lyg-port-01",
            now: at,
            clock: crate::clock_trust::ClockStatus::Unknown,
        };
        gate::decide(&prepared, &self.policy, facts, &ctx).0
    }

    fn run(&self, decl: &serde_json::Value) -> Decision {
        self.run_with(decl, &LedgerFacts::default(), now())
    }

    fn with_license(&self, lic: &License) -> serde_json::Value {
        let mut d = declaration();
        d["license"] = self.token(lic).into();
        d
    }
}

fn codes(d: &Decision) -> Vec<R> {
    d.verdict().reasons.iter().map(|r| r.code).collect()
}

fn kind(d: &Decision) -> VerdictKind {
    d.verdict().verdict
}

fn alerted(d: &Decision) -> bool {
    matches!(d, Decision::New { alert: Some(_), .. })
}

fn consumed(d: &Decision) -> Option<String> {
    match d {
        Decision::New { consume, .. } => consume.as_ref().map(|c| c.license_id.clone()),
        Decision::Repeat(_) => None,
    }
}

#[test]
fn valid_license_clears_and_consumes() {
    let f = fixture();
    let d = f.run(&f.with_license(&license()));
    assert_eq!(kind(&d), VerdictKind::Cleared, "{:?}", d.verdict().reasons);
    assert_eq!(consumed(&d).as_deref(), Some("LIC-2025-000123"));
    assert_eq!(d.verdict().license_id.as_deref(), Some("LIC-2025-000123"));
    assert!(!alerted(&d));
}

#[test]
fn uncontrolled_goods_are_not_required_and_consume_nothing() {
    let f = fixture();
    let mut d = f.with_license(&license());
    d["items"][0] =
        serde_json::json!({"hs_code": "8505.19", "net_kg": 100.0, "elements": ["Fe", "Nd", "B"]});
    let out = f.run(&d);
    assert_eq!(kind(&out), VerdictKind::NotRequired);
    assert_eq!(consumed(&out), None);
    assert_eq!(out.verdict().license_id, None);
}

#[test]
fn controlled_goods_without_license() {
    let f = fixture();
    let out = f.run(&declaration());
    assert_eq!(codes(&out), [R::LicenseMissing]);
    assert_eq!(kind(&out), VerdictKind::Rejected);
    assert!(alerted(&out));
}

#[test]
fn controlled_by_element_alone_under_an_uncontrolled_heading() {
    let f = fixture();
    let mut d = declaration();
    d["items"][0]["hs_code"] = "2805.19".into();
    d["items"][0]["elements"] = serde_json::json!(["Tb"]);
    assert_eq!(codes(&f.run(&d)), [R::LicenseMissing]);
}

#[test]
fn controlled_heading_without_elements_is_held() {
    let f = fixture();
    let mut d = f.with_license(&license());
    d["items"][0]["elements"] = serde_json::json!([]);
    let out = f.run(&d);
    assert_eq!(kind(&out), VerdictKind::Hold);
    assert_eq!(codes(&out), [R::Unclassifiable]);
    assert_eq!(consumed(&out), None);
}

#[test]
fn forged_signature() {
    let f = fixture();
    let mut d = declaration();
    let forger = crate::keys::generate();
    d["license"] = token::text::encode(&token::issue(&license(), KID, &forger)).into();
    let out = f.run(&d);
    assert_eq!(codes(&out), [R::BadSignature]);
    assert!(alerted(&out));
    assert_eq!(
        out.verdict().license_id,
        None,
        "an unverified license id is not reported as fact"
    );
}

#[test]
fn untrusted_kid() {
    let f = fixture();
    let mut d = declaration();
    d["license"] = token::text::encode(&token::issue(&license(), "someone-else", &f.key)).into();
    assert_eq!(codes(&f.run(&d)), [R::UnknownIssuer]);
}

#[test]
fn key_outside_its_validity_window() {
    let f = fixture();
    let mut lic = license();
    lic.issued_at = parse_rfc3339("2024-06-01T00:00:00Z").unwrap();
    lic.not_before = None;
    assert_eq!(codes(&f.run(&f.with_license(&lic))), [R::UnknownIssuer]);
}

#[test]
fn expired_and_not_yet_valid() {
    let f = fixture();
    let lic = license();
    let late = parse_rfc3339("2026-11-02T00:00:00Z").unwrap();
    let out = f.run_with(&f.with_license(&lic), &LedgerFacts::default(), late);
    assert_eq!(codes(&out), [R::Expired]);
    // Within the clock-skew allowance it still passes.
    let edge = lic.expires - 10;
    assert_eq!(
        kind(&f.run_with(&f.with_license(&lic), &LedgerFacts::default(), edge)),
        VerdictKind::Cleared
    );

    let mut early = lic.clone();
    early.not_before = Some(now() + 86_400);
    assert_eq!(codes(&f.run(&f.with_license(&early))), [R::NotYetValid]);
}

#[test]
fn revoked_license() {
    let f = fixture();
    let mut lic = license();
    lic.license_id = "LIC-2025-REVOKED".into();
    assert_eq!(codes(&f.run(&f.with_license(&lic))), [R::Revoked]);
}

#[test]
fn license_already_used_names_where_and_when() {
    let f = fixture();
    let facts = LedgerFacts {
        uses: vec![LicenseUse {
            checkpoint: "erenhot-02".into(),
            declaration_id: "CN-EHT-2025-000009".into(),
            at: now() - 3600,
        }],
        ..Default::default()
    };
    let out = f.run_with(&f.with_license(&license()), &facts, now());
    assert_eq!(codes(&out), [R::LicenseAlreadyUsed]);
    let prev = out.verdict().reasons[0].previous_use.clone().unwrap();
    assert_eq!(prev.checkpoint, "erenhot-02");
    assert_eq!(prev.declaration_id, "CN-EHT-2025-000009");
    assert_eq!(consumed(&out), None);
    assert!(alerted(&out));
}

#[test]
fn party_mismatch_per_role() {
    let f = fixture();
    for role in ["exporter", "consignee", "end_user"] {
        let mut d = f.with_license(&license());
        d[role]["id"] = "XX-OTHER-1".into();
        let out = f.run(&d);
        assert_eq!(codes(&out), [R::PartyMismatch], "{role}");
        assert!(out.verdict().reasons[0].detail.starts_with(role));
    }
    // Case and spacing of an id do not matter; a Cyrillic look-alike does.
    let mut d = f.with_license(&license());
    d["end_user"]["id"] = " de-hrb-20002 ".into();
    assert_eq!(kind(&f.run(&d)), VerdictKind::Cleared);
    d["end_user"]["id"] = "DE-HRB-2000\u{0417}".into();
    assert_eq!(codes(&f.run(&d)), [R::PartyMismatch]);
}

#[test]
fn destination_mismatch() {
    let f = fixture();
    let mut d = f.with_license(&license());
    d["destination"] = "NL".into();
    assert_eq!(codes(&f.run(&d)), [R::DestinationMismatch]);
}

#[test]
fn shipment_reference_must_match_when_licensed() {
    let f = fixture();
    let mut d = f.with_license(&license());
    d["shipment_ref"] = "BL-999999".into();
    assert_eq!(codes(&f.run(&d)), [R::ShipmentRefMismatch]);
    d.as_object_mut().unwrap().remove("shipment_ref");
    assert_eq!(codes(&f.run(&d)), [R::ShipmentRefMismatch]);
}

#[test]
fn goods_not_covered() {
    let f = fixture();
    let mut d = f.with_license(&license());
    d["items"][0]["elements"] = serde_json::json!(["Nd", "Tb"]);
    assert_eq!(codes(&f.run(&d)), [R::GoodsNotCovered]);
    let mut d = f.with_license(&license());
    d["items"][0]["hs_code"] = "2846.90".into();
    assert_eq!(codes(&f.run(&d)), [R::GoodsNotCovered]);
    // A national 8-digit code under the licensed 6-digit one is covered.
    let mut d = f.with_license(&license());
    d["items"][0]["hs_code"] = "8505.1100".into();
    assert_eq!(kind(&f.run(&d)), VerdictKind::Cleared);
}

#[test]
fn quantity_just_over_and_split_items() {
    let f = fixture();
    let mut d = f.with_license(&license());
    d["items"][0]["net_kg"] = 500.001.into();
    assert_eq!(codes(&f.run(&d)), [R::QuantityExceedsLicense]);
    d["items"][0]["net_kg"] = 500.0.into();
    assert_eq!(kind(&f.run(&d)), VerdictKind::Cleared);
    // 60 items of 10 kg: each under the limit, together over it.
    let item = serde_json::json!({"hs_code": "850511", "net_kg": 10.0, "elements": ["Dy"]});
    d["items"] = serde_json::Value::Array(vec![item; 60]);
    assert_eq!(codes(&f.run(&d)), [R::QuantityExceedsLicense]);
}

#[test]
fn denied_party_rejects_even_with_valid_license_and_for_uncontrolled_goods() {
    let f = fixture();
    let mut d = f.with_license(&license());
    d["end_user"] =
        serde_json::json!({"id": "us-de-0666", "name": "Shadow Defense", "country": "US"});
    let c = codes(&f.run(&d));
    assert!(
        c.contains(&R::DeniedParty) && c.contains(&R::PartyMismatch),
        "{c:?}"
    );
    let mut d = declaration();
    d["items"][0] = serde_json::json!({"hs_code": "7208.10", "net_kg": 5.0, "elements": ["Fe"]});
    d["consignee"]["name"] = "SHADOW DEFENSE SYSTEMS, LLC".into();
    d["consignee"]["id"] = "unknown".into();
    assert_eq!(codes(&f.run(&d)), [R::DeniedParty]);
}

#[test]
fn outright_ban_by_destination() {
    let f = fixture();
    let mut d = declaration();
    d["destination"] = "US".into();
    d["items"][0] = serde_json::json!({"hs_code": "8112.92", "net_kg": 20.0, "elements": ["Ga"]});
    let out = f.run(&d);
    assert_eq!(codes(&out), [R::BannedDestination]);
    assert!(alerted(&out));
    d["destination"] = "DE".into();
    assert_eq!(kind(&f.run(&d)), VerdictKind::NotRequired);
}

#[test]
fn malformed_declarations_and_tokens() {
    let f = fixture();
    let mut d = declaration();
    d.as_object_mut().unwrap().remove("exporter");
    let out = f.run(&d);
    assert_eq!(codes(&out), [R::Malformed]);
    assert!(out.verdict().reasons[0].detail.contains("exporter"));
    assert!(!alerted(&out));

    let mut d = declaration();
    d["license"] = "PG1:NOT-A-TOKEN".into();
    assert_eq!(codes(&f.run(&d)), [R::Malformed]);

    let mut d = declaration();
    d["items"][0]["elements"] = serde_json::json!(["D\u{0443}"]);
    assert_eq!(codes(&f.run(&d)), [R::Malformed]);
}

#[test]
fn unreadable_payload_raises_an_alert_with_its_hash() {
    let f = fixture();
    let prepared = gate::prepare(b"\x00\x01garbage", &f.policy, 1024);
    assert!(matches!(prepared, Prepared::Malformed { .. }));
    let ctx = Context {
        checkpoint: "p",
        now: now(),
        clock: crate::clock_trust::ClockStatus::Unknown,
    };
    let (d, _) = gate::decide(&prepared, &f.policy, &LedgerFacts::default(), &ctx);
    match d {
        Decision::New {
            alert: Some(a),
            verdict,
            ..
        } => {
            assert_eq!(a.kind, AlertKind::UnreadablePayload);
            assert_eq!(a.payload_sha256.unwrap().len(), 64);
            assert_eq!(verdict.declaration_id, None);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn redelivery_repeats_and_conflict_keeps_first_verdict() {
    let f = fixture();
    let decl = f.with_license(&license());
    let first = f.run(&decl);
    let prepared = gate::prepare(decl.to_string().as_bytes(), &f.policy, 1 << 20);
    let Prepared::Declaration { parsed, .. } = &prepared else {
        panic!()
    };
    let facts = LedgerFacts {
        prior: Some(PriorDecision {
            content_hash: parsed.content_hash,
            verdict: first.verdict().clone(),
        }),
        uses: vec![LicenseUse {
            checkpoint: "lyg-port-01".into(),
            declaration_id: "CN-LYG-2025-000123".into(),
            at: now(),
        }],
        newest_decision_at: Some(now()),
    };
    let again = f.run_with(&decl, &facts, now() + 60);
    assert_eq!(again, Decision::Repeat(first.verdict().clone()));

    let mut changed = decl.clone();
    changed["items"][0]["net_kg"] = 490.0.into();
    let conflict = f.run_with(&changed, &facts, now() + 60);
    assert_eq!(codes(&conflict), [R::DeclarationConflict]);
    assert!(alerted(&conflict));
    assert!(matches!(
        conflict,
        Decision::New {
            claims_declaration_id: false,
            consume: None,
            ..
        }
    ));
}

#[test]
fn the_same_license_re_encoded_is_a_redelivery_not_a_conflict() {
    let f = fixture();
    let cose = token::issue(&license(), KID, &f.key);
    let decl = f.with_license(&license());
    let first = f.run(&decl);
    let facts = |content_hash| LedgerFacts {
        prior: Some(PriorDecision {
            content_hash,
            verdict: first.verdict().clone(),
        }),
        ..LedgerFacts::default()
    };
    let parsed = |payload: &[u8]| match gate::prepare(payload, &f.policy, 1 << 20) {
        Prepared::Declaration { parsed, .. } => parsed,
        Prepared::Malformed { error, .. } => panic!("{error}"),
    };
    let stored = parsed(decl.to_string().as_bytes()).content_hash;

    // The same COSE bytes: zlib at another level, uncompressed base45, raw in CBOR.
    let mut fast = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut fast, &cose).unwrap();
    let fast = format!("PG1:{}", base45::encode(fast.finish().unwrap()));
    let plain = format!("PG1:{}", base45::encode(&cose));
    let mut in_cbor =
        crate::codec::decode_value(&crate::codec::to_vec(&declaration()).unwrap()).unwrap();
    if let crate::codec::Value::Map(m) = &mut in_cbor {
        m.push((
            crate::codec::Value::Text("license".into()),
            crate::codec::Value::Bytes(cose.clone()),
        ));
    }
    let in_cbor = crate::codec::encode_value(&in_cbor);
    for text in [fast, plain] {
        assert_ne!(text, decl["license"].as_str().unwrap());
        let mut d = declaration();
        d["license"] = text.into();
        let payload = d.to_string();
        assert_eq!(parsed(payload.as_bytes()).content_hash, stored);
        let prepared = gate::prepare(payload.as_bytes(), &f.policy, 1 << 20);
        let ctx = Context {
            checkpoint: "lyg-port-01",
            now: now() + 60,
            clock: crate::clock_trust::ClockStatus::Unknown,
        };
        let again = gate::decide(&prepared, &f.policy, &facts(stored), &ctx).0;
        assert_eq!(again, Decision::Repeat(first.verdict().clone()));
    }
    assert_eq!(parsed(&in_cbor).content_hash, stored);

    // A verdict stored by an earlier version hashed the text as carried.
    let legacy = parsed(decl.to_string().as_bytes())
        .content_hash_as_carried()
        .unwrap();
    assert_ne!(legacy, stored);
    let again = f.run_with(&decl, &facts(legacy), now() + 60);
    assert_eq!(again, Decision::Repeat(first.verdict().clone()));
}

#[test]
fn stale_policy_and_clock_behind_ledger_hold_instead_of_clearing() {
    let f = fixture();
    let mut policy = f.policy.clone();
    policy.max_age = 86_400;
    let prepared = gate::prepare(
        f.with_license(&license()).to_string().as_bytes(),
        &policy,
        1 << 20,
    );
    let ctx = Context {
        checkpoint: "p",
        now: now(),
        clock: crate::clock_trust::ClockStatus::Unknown,
    };
    let (d, _) = gate::decide(&prepared, &policy, &LedgerFacts::default(), &ctx);
    assert_eq!(codes(&d), [R::PolicyStale]);
    assert_eq!(kind(&d), VerdictKind::Hold);
    assert_eq!(consumed(&d), None);

    let facts = LedgerFacts {
        newest_decision_at: Some(now() + 7 * 86_400),
        ..Default::default()
    };
    let out = f.run_with(&f.with_license(&license()), &facts, now());
    assert_eq!(codes(&out), [R::ClockBehindLedger]);
    assert_eq!(kind(&out), VerdictKind::Hold);
}

#[test]
fn the_hubs_signed_time_decides_whether_the_clock_is_trusted() {
    use crate::clock_trust::ClockStatus;
    let f = fixture();
    let prepared = gate::prepare(
        f.with_license(&license()).to_string().as_bytes(),
        &f.policy,
        1 << 20,
    );
    // A decision dated far ahead (a clock once 50 years off) is in the ledger.
    let facts = LedgerFacts {
        newest_decision_at: Some(now() + 50 * 365 * 86_400),
        ..Default::default()
    };
    let at = |clock| Context {
        checkpoint: "p",
        now: now(),
        clock,
    };
    // Vouched for by the hub: the ledger's future date does not hold it.
    let (d, _) = gate::decide(&prepared, &f.policy, &facts, &at(ClockStatus::Trusted));
    assert_eq!(kind(&d), VerdictKind::Cleared);
    // Nobody vouches: held.
    let (d, _) = gate::decide(&prepared, &f.policy, &facts, &at(ClockStatus::Unknown));
    assert_eq!(codes(&d), [R::ClockBehindLedger]);
    // The hub's time says the clock is off: held, whatever the ledger says.
    for offset in [7200, -7200] {
        let (d, _) = gate::decide(
            &prepared,
            &f.policy,
            &LedgerFacts::default(),
            &at(ClockStatus::Untrusted { offset }),
        );
        assert_eq!(codes(&d), [R::ClockUntrusted]);
        assert_eq!(kind(&d), VerdictKind::Hold);
        assert_eq!(consumed(&d), None);
    }
    // Goods that need no license are not held for the clock.
    let mut uncontrolled = f.with_license(&license());
    uncontrolled["items"][0] =
        serde_json::json!({"hs_code": "8505.19", "net_kg": 100.0, "elements": ["Fe", "Nd", "B"]});
    let plain = gate::prepare(uncontrolled.to_string().as_bytes(), &f.policy, 1 << 20);
    let (d, _) = gate::decide(
        &plain,
        &f.policy,
        &LedgerFacts::default(),
        &at(ClockStatus::Untrusted { offset: 7200 }),
    );
    assert_eq!(kind(&d), VerdictKind::NotRequired);
}

#[test]
fn every_reason_code_is_produced_by_some_test_above() {
    // Keeps this file honest when a code is added: list it here once it has a test.
    let covered = [
        R::Malformed,
        R::DeclarationConflict,
        R::BadSignature,
        R::UnknownIssuer,
        R::Expired,
        R::NotYetValid,
        R::Revoked,
        R::LicenseAlreadyUsed,
        R::PartyMismatch,
        R::DestinationMismatch,
        R::ShipmentRefMismatch,
        R::GoodsNotCovered,
        R::QuantityExceedsLicense,
        R::DeniedParty,
        R::BannedDestination,
        R::LicenseMissing,
        R::Unclassifiable,
        R::PolicyStale,
        R::ClockBehindLedger,
        R::ClockUntrusted,
    ];
    let json = serde_json::to_string(&covered).unwrap();
    for code in covered {
        assert!(json.contains(code.as_str()));
    }
    assert_eq!(covered.len(), 20);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn flipping_any_token_byte_never_clears(pos in any::<prop::sample::Index>(), bit in 0u8..8) {
        let f = fixture_cached();
        let mut cose = token::issue(&license(), KID, &f.key);
        let i = pos.index(cose.len());
        cose[i] ^= 1 << bit;
        let mut d = declaration();
        d["license"] = token::text::encode(&cose).into();
        let out = f.run(&d);
        prop_assert_ne!(kind(&out), VerdictKind::Cleared);
        prop_assert_eq!(consumed(&out), None);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let f = fixture_cached();
        let _ = token::open(&bytes, |k| f.policy.issuer_key(k));
        let mut text = b"PG1:".to_vec();
        text.extend_from_slice(&bytes);
        let _ = token::open(&text, |k| f.policy.issuer_key(k));
        let _ = gate::prepare(&bytes, &f.policy, 1 << 20);
        let _ = crate::codec::decode_value(&bytes);
    }
}

fn fixture_cached() -> &'static Fixture {
    static F: std::sync::OnceLock<Fixture> = std::sync::OnceLock::new();
    F.get_or_init(fixture)
}

#[test]
fn a_shipment_whose_record_no_hub_would_take_is_refused_and_consumes_nothing() {
    let f = fixture();
    let lines = |n: usize| {
        let mut d = f.with_license(&license());
        let mut item = d["items"][0].clone();
        item["net_kg"] = 0.1.into();
        d["items"] = serde_json::Value::Array(vec![item; n]);
        d
    };
    let d = f.run(&lines(100));
    assert_eq!(kind(&d), VerdictKind::Cleared, "{:?}", d.verdict().reasons);
    let d = f.run(&lines(3_000));
    assert_eq!(kind(&d), VerdictKind::Rejected);
    assert_eq!(codes(&d), vec![R::Malformed]);
    let detail = &d.verdict().reasons[0].detail;
    assert!(
        detail.contains("3000 item lines") && detail.contains("65536"),
        "{detail}"
    );
    let Decision::New { consume, .. } = &d else {
        panic!("a new decision")
    };
    assert!(consume.is_none(), "nothing is consumed");
}

#[test]
fn an_id_one_character_from_a_listed_one_holds_and_the_listed_one_refuses() {
    let f = fixture();
    let with_consignee_id = |id: &str| {
        let mut d = f.with_license(&license());
        d["consignee"]["id"] = id.into();
        d
    };
    // The listed id itself (case and punctuation aside): refused.
    let d = f.run(&with_consignee_id("us de 0666"));
    assert!(
        codes(&d).contains(&R::DeniedParty),
        "{:?}",
        d.verdict().reasons
    );
    // One character changed, or two swapped: held, the listed entry named.
    for near in ["US-DE-0667", "US-DE-6066"] {
        let d = f.run(&with_consignee_id(near));
        assert!(
            codes(&d).contains(&R::PossibleDeniedParty),
            "{near}: {:?}",
            d.verdict().reasons
        );
        assert!(!codes(&d).contains(&R::DeniedParty));
        let detail = &d
            .verdict()
            .reasons
            .iter()
            .find(|r| r.code == R::PossibleDeniedParty)
            .unwrap()
            .detail;
        assert!(
            detail.contains("Shadow Defense Systems") && detail.contains("0.90"),
            "{detail}"
        );
    }
    // Two characters apart: another id.
    let d = f.run(&with_consignee_id("US-DE-0777"));
    assert!(
        !codes(&d).contains(&R::PossibleDeniedParty),
        "{:?}",
        d.verdict().reasons
    );
}

#[test]
fn a_unified_social_credit_code_that_fails_its_check_digit_holds() {
    let f = fixture();
    let with_exporter_id = |id: &str| {
        let mut d = f.with_license(&license());
        d["exporter"]["id"] = id.into();
        d
    };
    // The license binds its exporter by id: the ids here are its own.
    let mut lic = license();
    lic.terms.exporter.id = "91350100M000100Y43".into();
    let mut d = with_exporter_id("91350100M000100Y43");
    d["license"] = f.token(&lic).into();
    assert_eq!(kind(&f.run(&d)), VerdictKind::Cleared, "a code that checks");
    lic.terms.exporter.id = "91350100M000100Y44".into();
    let mut d = with_exporter_id("91350100M000100Y44");
    d["license"] = f.token(&lic).into();
    let d = f.run(&d);
    assert_eq!(kind(&d), VerdictKind::Hold);
    assert_eq!(codes(&d), vec![R::InvalidId]);
    assert!(d.verdict().reasons[0].detail.contains("check digit"));
}
