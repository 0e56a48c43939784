//! The name screen measured on the project's labelled pairs
//! (`tests/data/screening_pairs.json`): persons, companies, organisations
//! and vessels, in Latin, Cyrillic, Arabic, Han, Hangul, Kana, Georgian,
//! Armenian and Khmer script. Each pair is screened as the gate screens a
//! party: the declared name against a list holding the pair's entry alone
//! (`permitgate::screening::measure`).
//!
//! Prints precision, recall and F1 per set, kind and script, and each
//! miss and each innocent flagged; holds the screen to its goals: no
//! innocent refused outright, no likeness refused, every exact name
//! refused, and the figures below.
//!
//! `cargo test --test screening_pairs -- --nocapture` prints them.

use permitgate::screening::measure::{Report, Set, measure};

fn print(name: &str, n: usize, r: &Report) {
    for w in &r.wrong {
        println!("{name}: {w}");
    }
    println!("\n{name}: {n} pairs\n{}", r.table());
}

#[test]
fn the_screen_meets_its_goals_on_the_labelled_pairs() {
    let set: Set = serde_json::from_str(include_str!("data/screening_pairs.json")).unwrap();
    assert!(set.tuning.len() >= 400, "the tuning set shrank");
    let r = measure(&set.tuning);
    print("tuning", set.tuning.len(), &r);
    let t = r.all;
    assert_eq!(
        t.refused_wrongly, 0,
        "a likeness or an innocent was refused outright"
    );
    assert_eq!(t.exact_missed, 0, "an exact name was not refused");
    assert!(t.f1() >= 0.85, "tuning F1 {:.3}", t.f1());
    assert!(
        t.innocents_held() <= 0.05,
        "{:.1} % of innocents held",
        t.innocents_held() * 100.0
    );
    // Design: the held-out part is never tuned on; only refusing outright
    // is held against it here (its figures are reported, in docs too).
    assert!(set.held_out.len() >= 150, "the held-out set shrank");
    let r = measure(&set.held_out);
    print("held out", set.held_out.len(), &r);
    assert_eq!(
        r.all.refused_wrongly, 0,
        "held out: refused outright on a likeness or an innocent"
    );
}
