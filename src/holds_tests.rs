//! Resolving holds on a real ledger file: release consumes as a clearance
//! does, a resolution stands against redelivery, double resolution and
//! races are refused or serialised.

use super::*;
use crate::gate;
use crate::ledger::Ledger;
use crate::token;
use crate::verdict::ReasonCode;

struct Post {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    /// Fresh: clears.
    policy: Policy,
    /// Past its allowed age: holds every controlled shipment.
    stale: Policy,
    token: String,
    identity: Identity,
}

fn post() -> Post {
    let dir = tempfile::tempdir().unwrap();
    let key = crate::keys::generate();
    crate::keys::write_keypair(dir.path(), "issuer", &key).unwrap();
    let p = dir.path().join("policy.toml");
    std::fs::write(&p, include_str!("../tests/data/policy.toml")).unwrap();
    let policy = Policy::load(&p).unwrap();
    let mut stale = policy.clone();
    stale.max_age = 60;
    let lic = token::License::from_claims_json(include_str!("../tests/data/claims.json")).unwrap();
    Post {
        path: dir.path().join("ledger.db"),
        _dir: dir,
        policy,
        stale,
        token: token::text::encode(&token::issue(&lic, "mofcom-2025-1", &key)),
        identity: Identity {
            checkpoint: "lyg-port-01".into(),
            key: crate::keys::generate(),
        },
    }
}

fn now() -> UnixTime {
    crate::clock::parse_rfc3339("2026-03-01T09:00:00Z").unwrap()
}

fn payload(id: &str, token: Option<&str>, elements: bool) -> Vec<u8> {
    let mut d: serde_json::Value =
        serde_json::from_str(include_str!("../tests/data/declaration.json")).unwrap();
    d["declaration_id"] = id.into();
    if let Some(t) = token {
        d["license"] = t.into();
    }
    if !elements {
        d["items"][0]["elements"] = serde_json::json!([]);
    }
    d.to_string().into_bytes()
}

/// Decides one payload in its own batch: (verdict, repeated).
fn decide(ledger: &mut Ledger, post: &Post, policy: &Policy, payload: &[u8]) -> (Verdict, bool) {
    let mut batch = ledger.begin(&post.identity).unwrap();
    let prepared = gate::prepare(payload, policy, 1 << 20);
    let out =
        gate::decide_and_record(&mut batch, &prepared, policy, &post.identity, now()).unwrap();
    batch.commit().unwrap();
    (out.verdict, out.repeated)
}

fn request(id: &str, outcome: HoldOutcome) -> Request {
    Request {
        declaration_id: id.into(),
        outcome,
        officer: "officer-7".into(),
        note: "container opened, goods match".into(),
    }
}

fn refusal(r: Result<Resolved, ResolveError>) -> Refusal {
    match r {
        Err(ResolveError::Refused(r)) => r,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_release_consumes_as_a_clearance_and_a_redelivery_gets_it() {
    let p = post();
    let mut ledger = Ledger::open(&p.path, "lyg-port-01").unwrap();
    let declaration = payload("D-1", Some(&p.token), true);
    let (held, _) = decide(&mut ledger, &p, &p.stale, &declaration);
    assert_eq!(held.verdict, VerdictKind::Hold);
    assert_eq!(ledger.open_holds(10).unwrap(), vec![held.clone()]);

    let r = apply(
        &mut ledger,
        &p.stale,
        &p.identity,
        &request("D-1", HoldOutcome::Release),
        now() + 600,
    )
    .unwrap();
    assert_eq!(r.verdict.verdict, VerdictKind::Cleared);
    assert_eq!(r.verdict.license_id.as_deref(), Some("LIC-2025-000123"));
    assert_eq!(
        r.consumed_seq,
        Some(1),
        "the license is consumed and numbered for sync"
    );
    let res = r.verdict.resolution.as_ref().unwrap();
    assert_eq!(
        (res.outcome, res.officer.as_str()),
        (HoldOutcome::Release, "officer-7")
    );
    assert_eq!(res.held_at, held.decided_at);
    assert!(ledger.open_holds(10).unwrap().is_empty());

    // The daemon picks the new verdict up to publish it, once.
    let queued = ledger.take_unannounced().unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!(
        serde_json::from_str::<Verdict>(&queued[0].payload).unwrap(),
        r.verdict
    );
    assert!(ledger.take_unannounced().unwrap().is_empty());

    // A redelivery of the declaration is answered with the release.
    let (again, repeated) = decide(&mut ledger, &p, &p.policy, &declaration);
    assert!(repeated);
    assert_eq!(again, r.verdict);
    // Another declaration with the same license: already used, here.
    let (other, _) = decide(
        &mut ledger,
        &p,
        &p.policy,
        &payload("D-2", Some(&p.token), true),
    );
    assert_eq!(other.reasons[0].code, ReasonCode::LicenseAlreadyUsed);
    assert_eq!(
        other.reasons[0]
            .previous_use
            .as_ref()
            .unwrap()
            .declaration_id,
        "D-1"
    );
    // The log and the tables still agree.
    let report = ledger
        .check_log(&[p.identity.key.verifying_key()], &[])
        .unwrap()
        .unwrap();
    assert_eq!((report.verdicts, report.consumed), (3, 1));
}

#[test]
fn goods_held_as_unclassifiable_consume_their_license_when_released() {
    let p = post();
    let mut ledger = Ledger::open(&p.path, "lyg-port-01").unwrap();
    let (held, _) = decide(
        &mut ledger,
        &p,
        &p.policy,
        &payload("U-1", Some(&p.token), false),
    );
    assert_eq!(held.reasons[0].code, ReasonCode::Unclassifiable);
    let r = apply(
        &mut ledger,
        &p.policy,
        &p.identity,
        &request("U-1", HoldOutcome::Release),
        now(),
    )
    .unwrap();
    assert_eq!(r.verdict.verdict, VerdictKind::Cleared);
    assert!(r.consumed_seq.is_some());

    // Without a license, the inspection found nothing controlled.
    let (held, _) = decide(&mut ledger, &p, &p.policy, &payload("U-2", None, false));
    assert_eq!(held.verdict, VerdictKind::Hold);
    let r = apply(
        &mut ledger,
        &p.policy,
        &p.identity,
        &request("U-2", HoldOutcome::Release),
        now(),
    )
    .unwrap();
    assert_eq!(r.verdict.verdict, VerdictKind::NotRequired);
    assert_eq!(r.consumed_seq, None);
}

#[test]
fn a_license_used_elsewhere_while_held_cannot_be_released() {
    let p = post();
    let mut ledger = Ledger::open(&p.path, "lyg-port-01").unwrap();
    decide(
        &mut ledger,
        &p,
        &p.stale,
        &payload("H-1", Some(&p.token), true),
    );
    let (cleared, _) = decide(
        &mut ledger,
        &p,
        &p.policy,
        &payload("C-1", Some(&p.token), true),
    );
    assert_eq!(cleared.verdict, VerdictKind::Cleared);

    let why = refusal(apply(
        &mut ledger,
        &p.policy,
        &p.identity,
        &request("H-1", HoldOutcome::Release),
        now(),
    ));
    let Refusal::CannotRelease { reasons, .. } = &why else {
        panic!("{why:?}")
    };
    assert_eq!(reasons[0].code, ReasonCode::LicenseAlreadyUsed);
    assert!(why.to_string().contains("stays on hold"), "{why}");
    // Nothing was written: still on hold, and it can be refused.
    assert_eq!(ledger.open_holds(10).unwrap().len(), 1);
    let r = apply(
        &mut ledger,
        &p.policy,
        &p.identity,
        &request("H-1", HoldOutcome::Refuse),
        now(),
    )
    .unwrap();
    assert_eq!(r.verdict.reasons[0].code, ReasonCode::RefusedByOfficer);
}

#[test]
fn refusal_raises_no_alert_and_seizure_does() {
    let p = post();
    let mut ledger = Ledger::open(&p.path, "lyg-port-01").unwrap();
    for id in ["R-1", "S-1"] {
        decide(
            &mut ledger,
            &p,
            &p.stale,
            &payload(id, Some(&p.token), true),
        );
    }
    let refused = apply(
        &mut ledger,
        &p.stale,
        &p.identity,
        &request("R-1", HoldOutcome::Refuse),
        now(),
    )
    .unwrap();
    assert_eq!(refused.verdict.verdict, VerdictKind::Rejected);
    assert!(refused.alert.is_none());
    let seized = apply(
        &mut ledger,
        &p.stale,
        &p.identity,
        &request("S-1", HoldOutcome::Seize),
        now(),
    )
    .unwrap();
    assert_eq!(seized.verdict.reasons[0].code, ReasonCode::Seized);
    assert!(seized.verdict.reasons[0].detail.contains("officer-7"));
    let alert = seized.alert.unwrap();
    assert_eq!(alert.declaration_id.as_deref(), Some("S-1"));
    // Neither consumed the license: a later shipment may still use it.
    let (later, _) = decide(
        &mut ledger,
        &p,
        &p.policy,
        &payload("L-1", Some(&p.token), true),
    );
    assert_eq!(later.verdict, VerdictKind::Cleared);
    // Verdict, verdict, alert: all queued for the daemon.
    assert_eq!(ledger.take_unannounced().unwrap().len(), 3);
}

#[test]
fn double_resolution_unknown_ids_clear_verdicts_and_empty_notes_are_refused() {
    let p = post();
    let mut ledger = Ledger::open(&p.path, "lyg-port-01").unwrap();
    decide(
        &mut ledger,
        &p,
        &p.stale,
        &payload("H-1", Some(&p.token), true),
    );
    decide(&mut ledger, &p, &p.policy, &payload("C-1", None, true));
    apply(
        &mut ledger,
        &p.stale,
        &p.identity,
        &request("H-1", HoldOutcome::Seize),
        now(),
    )
    .unwrap();

    let again = refusal(apply(
        &mut ledger,
        &p.stale,
        &p.identity,
        &request("H-1", HoldOutcome::Release),
        now(),
    ));
    assert!(
        matches!(&again, Refusal::AlreadyResolved { outcome, officer, .. } if outcome == "seize" && officer == "officer-7"),
        "{again:?}"
    );
    let not_held = refusal(apply(
        &mut ledger,
        &p.stale,
        &p.identity,
        &request("C-1", HoldOutcome::Release),
        now(),
    ));
    assert_eq!(
        not_held.to_string(),
        "declaration C-1 is not on hold: its verdict is rejected"
    );
    let unknown = refusal(apply(
        &mut ledger,
        &p.stale,
        &p.identity,
        &request("X-9", HoldOutcome::Refuse),
        now(),
    ));
    assert_eq!(unknown, Refusal::Unknown("X-9".into()));
    let mut blank = request("H-1", HoldOutcome::Refuse);
    blank.note = "  ".into();
    assert_eq!(
        refusal(apply(&mut ledger, &p.stale, &p.identity, &blank, now())),
        Refusal::Incomplete
    );
}

#[test]
fn a_resolution_racing_redeliveries_and_a_second_officer_is_applied_once() {
    let p = post();
    let mut ledger = Ledger::open(&p.path, "lyg-port-01").unwrap();
    let declaration = payload("H-1", Some(&p.token), true);
    let (held, _) = decide(&mut ledger, &p, &p.stale, &declaration);
    let barrier = std::sync::Barrier::new(3);
    let (answers, results) = std::thread::scope(|s| {
        let mut l = ledger.second_handle().unwrap();
        let (p, barrier, declaration) = (&p, &barrier, &declaration);
        let redeliver = s.spawn(move || {
            barrier.wait();
            (0..50)
                .map(|_| decide(&mut l, p, &p.stale, declaration))
                .collect::<Vec<_>>()
        });
        let officers: Vec<_> = [HoldOutcome::Release, HoldOutcome::Seize]
            .map(|outcome| {
                let mut l = ledger.second_handle().unwrap();
                s.spawn(move || {
                    barrier.wait();
                    apply(
                        &mut l,
                        &p.stale,
                        &p.identity,
                        &request("H-1", outcome),
                        now(),
                    )
                })
            })
            .into_iter()
            .collect();
        let results: Vec<_> = officers.into_iter().map(|h| h.join().unwrap()).collect();
        (redeliver.join().unwrap(), results)
    });
    let applied: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(
        applied.len(),
        1,
        "exactly one officer's resolution stands: {results:?}"
    );
    assert!(results.iter().any(|r| matches!(
        r,
        Err(ResolveError::Refused(Refusal::AlreadyResolved { .. }))
    )));
    // Every redelivery was answered with a stored verdict: the hold, then the resolution.
    assert!(answers.iter().all(|(_, repeated)| *repeated));
    let first_resolved = answers
        .iter()
        .position(|(v, _)| v.resolution.is_some())
        .unwrap_or(answers.len());
    assert!(answers[..first_resolved].iter().all(|(v, _)| *v == held));
    assert!(
        answers[first_resolved..]
            .iter()
            .all(|(v, _)| *v == applied[0].verdict)
    );
    let consumed = ledger
        .check_log(&[p.identity.key.verifying_key()], &[])
        .unwrap()
        .unwrap()
        .consumed;
    assert_eq!(
        consumed,
        u64::from(applied[0].verdict.verdict == VerdictKind::Cleared)
    );
}
