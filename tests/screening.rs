//! Denied-party screening measured on the labelled set in
//! `tests/data/screening.json`, through the whole gate (policy loader,
//! declaration parser, decision): prints precision and recall, and holds
//! the screen to its goal — recall of 90 % or more on true variants, no
//! innocent firm flagged, every exact hit rejected, and nothing else
//! rejected (a likeness through a lossy step holds).
//!
//! `cargo test --test screening -- --nocapture` prints the figures and each miss.

use permitgate::decision::{Context, LedgerFacts};
use permitgate::gate;
use permitgate::policy::Policy;
use permitgate::verdict::ReasonCode;

#[derive(serde::Deserialize)]
struct Set {
    listed: Vec<Listed>,
    cases: Vec<Case>,
    held_out: Vec<Case>,
}

#[derive(serde::Deserialize, serde::Serialize)]
struct Listed {
    id: String,
    name: String,
    #[serde(default)]
    aliases: Vec<String>,
    source: String,
}

#[derive(serde::Deserialize)]
struct Case {
    name: String,
    #[serde(default)]
    id: Option<String>,
    expect: String,
}

/// The test policy with the set's list as its denied parties.
fn policy(dir: &std::path::Path, listed: &[Listed]) -> Policy {
    permitgate::keys::write_keypair(dir, "issuer", &permitgate::keys::generate()).unwrap();
    let base = include_str!("data/policy.toml");
    let start = base.find("[[denied_parties]]").unwrap();
    let end = start + base[start..].find("\n\n").unwrap();
    let list: String = listed
        .iter()
        .map(|l| {
            format!(
                "[[denied_parties]]\nid = {}\nname = {}\naliases = {}\nsource = {}\n\n",
                toml_str(&l.id),
                toml_str(&l.name),
                serde_json::to_string(&l.aliases).unwrap(),
                toml_str(&l.source)
            )
        })
        .collect();
    let text = format!("{}{list}{}", &base[..start], &base[end..]);
    let p = dir.join("policy.toml");
    std::fs::write(&p, text).unwrap();
    Policy::load(&p).unwrap()
}

fn toml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// The screen's answer for a consignee named so: `exact`, `possible` or `clean`.
fn screen(policy: &Policy, name: &str, id: Option<&str>) -> (&'static str, String) {
    let mut d: serde_json::Value =
        serde_json::from_str(include_str!("data/declaration.json")).unwrap();
    d["consignee"]["name"] = name.into();
    d["consignee"]["id"] = id.unwrap_or("ZZ-UNRELATED-1").into();
    // Uncontrolled goods: nothing but the screen can refuse or hold them.
    d["items"] = serde_json::json!([{"hs_code": "9403.20", "net_kg": 10.0, "elements": ["Fe"]}]);
    let prepared = gate::prepare(d.to_string().as_bytes(), policy, 1 << 16);
    let ctx = Context {
        checkpoint: "lyg-port-01",
        now: permitgate::clock::parse_rfc3339("2026-03-01T09:00:00Z").unwrap(),
        clock: permitgate::clock_trust::ClockStatus::Unknown,
    };
    let verdict = gate::decide(&prepared, policy, &LedgerFacts::default(), &ctx)
        .0
        .verdict()
        .clone();
    let detail = verdict
        .reasons
        .iter()
        .map(|r| r.detail.clone())
        .collect::<Vec<_>>()
        .join("; ");
    let codes: Vec<ReasonCode> = verdict.reasons.iter().map(|r| r.code).collect();
    let answer = if codes.contains(&ReasonCode::DeniedParty) {
        "exact"
    } else if codes.contains(&ReasonCode::PossibleDeniedParty) {
        "possible"
    } else {
        "clean"
    };
    (answer, detail)
}

/// Screens `cases`: (true positives, false positives, misses, true negatives, what went wrong).
fn measure(policy: &Policy, cases: &[Case]) -> (u32, u32, u32, u32, Vec<String>) {
    let (mut tp, mut fp, mut fn_, mut tn) = (0u32, 0u32, 0u32, 0u32);
    let mut wrong = Vec::new();
    for c in cases {
        let (answer, detail) = screen(policy, &c.name, c.id.as_deref());
        let flagged = answer != "clean";
        match (c.expect.as_str(), flagged) {
            ("innocent", false) => tn += 1,
            ("innocent", true) => {
                fp += 1;
                wrong.push(format!("innocent flagged: {} → {detail}", c.name));
            }
            (_, true) => tp += 1,
            (_, false) => {
                fn_ += 1;
                println!("missed: {} ({})", c.name, c.expect);
            }
        }
        if c.expect == "exact" && answer != "exact" {
            wrong.push(format!(
                "an exact hit was not rejected: {} → {answer} {detail}",
                c.name
            ));
        }
        // Only certainty refuses: a likeness through a lossy step holds.
        if c.expect != "exact" && answer == "exact" {
            wrong.push(format!(
                "refused outright on a likeness alone: {} → {detail}",
                c.name
            ));
        }
    }
    (tp, fp, fn_, tn, wrong)
}

/// Prints a set's figures; returns (precision, recall).
fn report(what: &str, (tp, fp, fn_, tn): (u32, u32, u32, u32)) -> (f64, f64) {
    let precision = f64::from(tp) / f64::from((tp + fp).max(1));
    let recall = f64::from(tp) / f64::from((tp + fn_).max(1));
    println!(
        "screening, {what}: {} true variants, {} innocents; flagged {tp} of the variants and {fp} innocents; precision {:.1} %, recall {:.1} %",
        tp + fn_,
        tn + fp,
        precision * 100.0,
        recall * 100.0
    );
    (precision, recall)
}

#[test]
fn the_screen_catches_what_smugglers_write_and_leaves_innocent_firms_alone() {
    let set: Set = serde_json::from_str(include_str!("data/screening.json")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let policy = policy(dir.path(), &set.listed);
    let (tp, fp, fn_, tn, wrong) = measure(&policy, &set.cases);
    let (_, recall) = report("tuning set", (tp, fp, fn_, tn));
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(
        recall >= 0.9,
        "recall {:.1} % is under the goal of 90 %",
        recall * 100.0
    );
    assert_eq!(fp, 0);

    // Written after the thresholds were set: the figures that say how it generalises.
    let (tp, fp, fn_, tn, wrong) = measure(&policy, &set.held_out);
    let (_, recall) = report("held-out set", (tp, fp, fn_, tn));
    assert_eq!(fp, 0, "{}", wrong.join("\n"));
    assert!(recall >= 0.8, "held-out recall {:.1} %", recall * 100.0);
}
