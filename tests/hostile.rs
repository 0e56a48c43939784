//! The hostile-input catalogue: what a smuggler would try, each case
//! asserting the rejection (or hold) and the alert where one is due.
//!
//! Normalisation (documented in the README): a licensed party is bound by
//! its registration id and country; ids compare after trimming and
//! upper-casing, countries are two ASCII letters in either case. Names
//! (for the denied-party list) compare after folding Unicode look-alikes
//! (TR39 skeletons), case and accents, and collapsing everything that is
//! not a letter or digit to one space; ids on the denied-party list also
//! compare with look-alikes folded. A license binds a party by its exact
//! id: there a Cyrillic "Е" makes another id.

use permitgate::codec::{self, Value};
use permitgate::decision::{Context, LedgerFacts};
use permitgate::gate;
use permitgate::policy::Policy;
use permitgate::token::{self, License};
use permitgate::verdict::{Alert, Verdict};

const KID: &str = "mofcom-2025-1";

struct Gate {
    policy: Policy,
    key: ed25519_dalek::SigningKey,
    _dir: tempfile::TempDir,
}

fn gate() -> Gate {
    let dir = tempfile::tempdir().unwrap();
    let key = permitgate::keys::generate();
    permitgate::keys::write_keypair(dir.path(), "issuer", &key).unwrap();
    let p = dir.path().join("policy.toml");
    std::fs::write(&p, include_str!("data/policy.toml")).unwrap();
    Gate {
        policy: Policy::load(&p).unwrap(),
        key,
        _dir: dir,
    }
}

fn license() -> License {
    License::from_claims_json(include_str!("data/claims.json")).unwrap()
}

fn now() -> i64 {
    permitgate::clock::parse_rfc3339("2026-03-01T09:00:00Z").unwrap()
}

impl Gate {
    fn decide_at(&self, payload: &[u8], at: i64) -> (Verdict, Option<Alert>) {
        let prepared = gate::prepare(payload, &self.policy, 1 << 20);
        let ctx = Context {
            checkpoint: "lyg-port-01",
            now: at,
            clock: permitgate::clock_trust::ClockStatus::Unknown,
        };
        let d = gate::decide(&prepared, &self.policy, &LedgerFacts::default(), &ctx).0;
        match d {
            permitgate::decision::Decision::New { verdict, alert, .. } => (verdict, alert),
            permitgate::decision::Decision::Repeat(v) => (v, None),
        }
    }

    fn decide(&self, d: &serde_json::Value) -> (Verdict, Option<Alert>) {
        self.decide_at(d.to_string().as_bytes(), now())
    }

    fn with_token(&self, cose: &[u8]) -> serde_json::Value {
        let mut d: serde_json::Value =
            serde_json::from_str(include_str!("data/declaration.json")).unwrap();
        d["license"] = token::text::encode(cose).into();
        d
    }
}

fn code(v: &Verdict) -> String {
    v.reasons
        .first()
        .map(|r| r.code.as_str().to_owned())
        .unwrap_or_else(|| v.verdict.as_str().to_owned())
}

/// A COSE_Sign1 taken apart: (protected, payload, signature).
fn parts(cose: &[u8]) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let m = token::cose::parse(cose).unwrap();
    (m.protected, m.payload, m.signature)
}

fn assemble(protected: Vec<u8>, payload: Vec<u8>, signature: Vec<u8>) -> Vec<u8> {
    codec::encode_value(&Value::Tag(
        18,
        Box::new(Value::Array(vec![
            Value::Bytes(protected),
            Value::Map(vec![]),
            Value::Bytes(payload),
            Value::Bytes(signature),
        ])),
    ))
}

#[test]
fn the_genuine_token_clears_as_a_baseline() {
    let g = gate();
    let (v, alert) = g.decide(&g.with_token(&token::issue(&license(), KID, &g.key)));
    assert_eq!(v.verdict.as_str(), "cleared", "{v:?}");
    assert!(alert.is_none());
}

#[test]
fn forged_tokens_are_rejected_and_alerted() {
    let g = gate();
    let genuine = token::issue(&license(), KID, &g.key);
    let mut other = license();
    other.license_id = "LIC-2025-999999".into();
    let other = token::issue(&other, KID, &g.key);
    let impostor = permitgate::keys::generate();
    let (gp, _, gsig) = parts(&genuine);
    let (_, opay, _) = parts(&other);

    // Re-signed with an untrusted key under the trusted kid (a colliding kid).
    let resigned = token::issue(&license(), KID, &impostor);
    // A genuine signature copied onto another payload.
    let copied = assemble(gp.clone(), opay, gsig.clone());
    // The same license replayed with one field changed (the destination).
    let mut lic = license();
    lic.terms.destination = "NL".into();
    let (_, changed_payload, _) = parts(&token::issue(&lic, KID, &impostor));
    let changed = assemble(gp, changed_payload, gsig);
    // The kid one character off: an unknown issuer, not a near match.
    let near_kid = token::issue(&license(), "mofcom-2025-1 ", &g.key);
    // Truncated signature.
    let (p2, pay2, mut sig2) = parts(&genuine);
    sig2.truncate(63);
    let short = assemble(p2, pay2, sig2);

    for (name, cose, want) in [
        ("re-signed", resigned, "bad_signature"),
        ("copied signature", copied, "bad_signature"),
        ("changed field", changed, "bad_signature"),
        ("near kid", near_kid, "unknown_issuer"),
        ("short signature", short, "bad_signature"),
    ] {
        let (v, alert) = g.decide(&g.with_token(&cose));
        assert_eq!(
            (v.verdict.as_str(), code(&v).as_str()),
            ("rejected", want),
            "{name}: {v:?}"
        );
        assert!(alert.is_some(), "{name}: a forgery raises an alert");
    }
}

#[test]
fn quantities_over_negative_nan_infinite_or_split_do_not_clear() {
    let g = gate();
    let d0 = g.with_token(&token::issue(&license(), KID, &g.key));
    // Licensed for 500 kg of magnets.
    let mut over = d0.clone();
    over["items"][0]["net_kg"] = 500.001.into();
    let (v, _) = g.decide(&over);
    assert_eq!(v.verdict.as_str(), "rejected", "just over: {v:?}");

    let mut negative = d0.clone();
    negative["items"][0]["net_kg"] = (-5).into();
    assert_eq!(code(&g.decide(&negative).0), "malformed");

    // Split into many small items whose sum is over the licensed mass.
    let mut split = d0.clone();
    let item = split["items"][0].clone();
    let mut items = Vec::new();
    for _ in 0..60 {
        let mut i = item.clone();
        i["net_kg"] = 9.into();
        items.push(i);
    }
    split["items"] = items.into();
    let (v, _) = g.decide(&split);
    assert_eq!(v.verdict.as_str(), "rejected", "split: {v:?}");

    // NaN and infinity cannot be written in JSON; in CBOR they can.
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let mut d: serde_json::Value = d0.clone();
        d["items"][0]["net_kg"] = 1.into();
        let mut cbor = codec::decode_value(&codec::to_vec(&d).unwrap()).unwrap();
        set_net_kg(&mut cbor, bad);
        let (v, _) = g.decide_at(&codec::encode_value(&cbor), now());
        assert_eq!(code(&v), "malformed", "{bad}: {v:?}");
    }
}

fn set_net_kg(v: &mut Value, x: f64) {
    match v {
        Value::Map(entries) => {
            for (k, val) in entries.iter_mut() {
                if matches!(k, Value::Text(t) if t == "net_kg") {
                    *val = Value::Float(x);
                } else {
                    set_net_kg(val, x);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| set_net_kg(i, x)),
        _ => {}
    }
}

#[test]
fn parties_are_bound_by_exact_id_and_denied_parties_caught_through_look_alikes() {
    let g = gate();
    let d0 = g.with_token(&token::issue(&license(), KID, &g.key));
    let mut folded = d0.clone();
    folded["end_user"]["name"] = "  EXAMPLE   auto-ag ".into();
    folded["end_user"]["id"] = " de-hrb-20002 ".into();
    folded["end_user"]["country"] = "de".into();
    assert_eq!(g.decide(&folded).0.verdict.as_str(), "cleared");

    // An id with a Cyrillic "Е" is another id: the party does not match.
    let mut look_alike = d0.clone();
    look_alike["end_user"]["id"] = "D\u{0415}-HRB-20002".into();
    let (v, alert) = g.decide(&look_alike);
    assert_eq!(
        (v.verdict.as_str(), code(&v).as_str()),
        ("rejected", "party_mismatch"),
        "{v:?}"
    );
    assert!(alert.is_some());

    // A denied party is caught by id, and by name however it is cased or spaced.
    let mut denied = d0.clone();
    denied["consignee"]["name"] = "shadow   DEFENSE systems, llc".into();
    let (v, alert) = g.decide(&denied);
    assert_eq!(code(&v), "denied_party", "{v:?}");
    assert!(alert.is_some());

    // Fullwidth letters are the same name (width is a lossless step):
    // refused outright.
    let mut d = d0.clone();
    d["consignee"]["name"] = "\u{FF33}hadow Defense Systems LLC".into();
    let (v, alert) = g.decide(&d);
    assert_eq!(code(&v), "denied_party", "{v:?}");
    assert!(alert.is_some());
    // Written with look-alikes, a denied party is caught all the same, and
    // held for an officer (a look-alike is a lossy step, never certain):
    // by name (Cyrillic, a zero for an o, an accent) ...
    for disguised in [
        "Sh\u{0430}dow D\u{0435}fense Systems LLC",
        "Shad0w Défense Systems LLC",
    ] {
        let mut d = d0.clone();
        d["consignee"]["name"] = disguised.into();
        let (v, alert) = g.decide(&d);
        assert_eq!(code(&v), "possible_denied_party", "{disguised}: {v:?}");
        assert_eq!(v.verdict.as_str(), "hold", "{disguised}: {v:?}");
        assert!(alert.is_none(), "an officer's hold, not an alert");
    }
    // ... and by id.
    let mut d = d0.clone();
    d["consignee"]["name"] = "Harmless Trading".into();
    d["consignee"]["id"] = "US-D\u{0415}-0666".into();
    let (v, _) = g.decide(&d);
    assert_eq!(code(&v), "possible_denied_party", "{v:?}");
}

#[test]
fn destination_variants() {
    let g = gate();
    let d0 = g.with_token(&token::issue(&license(), KID, &g.key));
    let mut lower = d0.clone();
    lower["destination"] = "de".into();
    assert_eq!(g.decide(&lower).0.verdict.as_str(), "cleared");
    for bad in ["DEU", "D E", "", "276"] {
        let mut d = d0.clone();
        d["destination"] = bad.into();
        assert_eq!(code(&g.decide(&d).0), "malformed", "{bad}");
    }
    let mut elsewhere = d0.clone();
    elsewhere["destination"] = "NL".into();
    let (v, alert) = g.decide(&elsewhere);
    assert_eq!(
        (v.verdict.as_str(), code(&v).as_str()),
        ("rejected", "destination_mismatch")
    );
    assert!(alert.is_some());
}

#[test]
fn thousands_of_items_are_decided_and_too_many_refused() {
    let g = gate();
    let d0 = g.with_token(&token::issue(&license(), KID, &g.key));
    let item = d0["items"][0].clone();
    let mut many = d0.clone();
    many["items"] = vec![item.clone(); 5000].into();
    assert_eq!(
        g.decide(&many).0.verdict.as_str(),
        "rejected",
        "5000 × 480 kg is over the license"
    );
    let mut too_many = d0.clone();
    too_many["items"] = vec![item; 10_001].into();
    assert_eq!(code(&g.decide(&too_many).0), "malformed");
}

#[test]
fn a_clock_far_off_never_clears() {
    let g = gate();
    let d = g.with_token(&token::issue(&license(), KID, &g.key));
    let future = now() + 50 * 365 * 86_400;
    let (v, _) = g.decide_at(d.to_string().as_bytes(), future);
    assert_ne!(v.verdict.as_str(), "cleared", "{v:?}");
    let past = now() - 30 * 365 * 86_400;
    let (v, _) = g.decide_at(d.to_string().as_bytes(), past);
    assert_ne!(v.verdict.as_str(), "cleared", "{v:?}");
}

/// An error detail may echo the input; it is cut, so a 250 KB string is
/// not stored again in the audit log and the alert.
#[test]
fn an_error_detail_never_echoes_a_huge_input() {
    let g = gate();
    let mut d: serde_json::Value =
        serde_json::from_str(include_str!("data/declaration.json")).unwrap();
    d["items"][0]["net_kg"] = "9".repeat(250_000).into();
    let (v, _) = g.decide_at(d.to_string().as_bytes(), now());
    assert_eq!(code(&v), "malformed", "{v:?}");
    let detail = &v.reasons[0].detail;
    assert!(detail.chars().count() < 260, "{} characters", detail.len());
    assert!(detail.contains("cut"), "{detail}");
}
