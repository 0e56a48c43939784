//! The country simulation ([`permitgate::sim`]): a fixed set of seeds,
//! each a whole scenario of posts, hubs, a faulty broker, crashes and
//! insiders, must hold every invariant; a seed replays exactly.
//!
//! `PERMITGATE_SIM_SEEDS=N` runs N seeds instead of the fixed set;
//! `permitgate dev simulate` runs more, and replays one with its trace.

use permitgate::sim::{self, Options};

/// Seeds `cargo test` runs.
const SEEDS: u64 = 10_000;

fn seeds() -> u64 {
    std::env::var("PERMITGATE_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(SEEDS)
}

#[test]
fn every_seed_holds_every_invariant() {
    let opts = Options::default();
    let n = seeds();
    let summary = sim::run_many(0, n, 2, &opts, true);
    println!(
        "{} seeds, {} steps in {:.1} s ({:.0} seeds/s)",
        summary.seeds,
        summary.steps,
        summary.seconds,
        summary.seeds as f64 / summary.seconds
    );
    println!("{:?}", summary.counts);
    if let Some((seed, v)) = summary.failures.first() {
        let replay = sim::run(
            *seed,
            &Options {
                trace: true,
                ..opts.clone()
            },
        );
        for line in &replay.trace {
            println!("{line}");
        }
        panic!(
            "seed {seed} ({}): {v}\nreplay: permitgate dev simulate --seed {seed} --trace",
            replay.summary
        );
    }
    // The invariants were put to the test: uses, double uses, each kind of
    // equivocation, refusals and used licenses presented again all happened.
    let c = summary.counts;
    if n >= 1_000 {
        for (what, count) in [
            ("clearances", c.clearances),
            ("licenses presented again once settled", c.probes),
            ("double uses", c.double_uses),
            ("two records under one number", c.equivocal_records),
            ("two heads of one size", c.equivocal_heads),
            ("forks", c.forks),
            ("refusals at the hub", c.refused),
        ] {
            assert!(count > 0, "no {what} in {n} seeds: {c:?}");
        }
    }
}

#[test]
fn a_seed_replays_exactly() {
    let opts = Options::default();
    for seed in [3, 17, 4242] {
        let a = sim::run(seed, &opts);
        let b = sim::run(seed, &opts);
        assert_eq!(a.fingerprint, b.fingerprint, "seed {seed}");
        assert_eq!(a.steps, b.steps);
        assert!(a.steps > 100, "seed {seed} took {} steps", a.steps);
    }
}

/// `permitgate dev simulate`: a run of seeds says how it went; one seed
/// replays step by step; a bad option is said in plain words.
#[test]
fn the_command_runs_seeds_and_replays_one() {
    let bin = env!("CARGO_BIN_EXE_permitgate");
    let o = std::process::Command::new(bin)
        .args(["dev", "simulate", "--seeds", "20", "--from", "100"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("20 seeds (100..120)"), "{out}");
    assert!(out.contains("every invariant held in every seed"), "{out}");

    let o = std::process::Command::new(bin)
        .args(["dev", "simulate", "--seed", "101", "--trace"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}");
    assert!(out.contains(" ms  post-a starts"), "{out}");
    assert!(out.contains("seed 101: "), "{out}");
    assert!(out.contains("every invariant holds"), "{out}");

    let o = std::process::Command::new(bin)
        .args(["dev", "simulate", "--moves", "forged_log,teleport"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("unknown adversary move `teleport`"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
