//! `permitgate dev simulate`: the country simulation ([`crate::sim`]) from
//! the command line — many seeds, or one replayed with its trace.

use anyhow::{Result, bail};

use super::Outcome;
use crate::sim::{self, Moves, Options};

/// What `dev simulate` runs.
#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// How many seeds to run, from `--from`.
    #[arg(long, default_value_t = 10_000)]
    seeds: u64,
    /// The first seed.
    #[arg(long, default_value_t = 0)]
    from: u64,
    /// Replay this one seed (with `--trace`, print every step).
    #[arg(long, conflicts_with_all = ["seeds", "from"])]
    seed: Option<u64>,
    /// Print every step of the seed replayed.
    #[arg(long, requires = "seed")]
    trace: bool,
    /// The adversaries' moves, comma-separated: all, none, forged_log,
    /// huge_record, request_spam, replay_acks, replay_requests, replay_any.
    #[arg(long, default_value = "all")]
    moves: String,
    /// Simulated milliseconds of faults and attacks before the network heals.
    #[arg(long, default_value_t = 20_000)]
    chaos_ms: u64,
    /// Threads to run seeds on (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Keep going after a failing seed and count them all.
    #[arg(long)]
    keep_going: bool,
}

/// Runs `dev simulate`.
pub fn run(args: SimulateArgs) -> Result<Outcome> {
    let moves = match Moves::parse(&args.moves) {
        Ok(m) => m,
        Err(e) => bail!("--moves: {e}"),
    };
    let opts = Options {
        moves,
        chaos_ms: args.chaos_ms,
        trace: args.trace,
    };
    if let Some(seed) = args.seed {
        let o = sim::run(seed, &opts);
        for line in &o.trace {
            println!("{line}");
        }
        println!("seed {seed}: {}; {} steps", o.summary, o.steps);
        return Ok(match o.violation {
            Some(v) => {
                println!("VIOLATION {v}");
                Outcome::Refused
            }
            None => {
                println!("every invariant holds");
                Outcome::Ok
            }
        });
    }
    let threads = match args.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let to = args.from.saturating_add(args.seeds);
    let s = sim::run_many(args.from, to, threads, &opts, !args.keep_going);
    println!(
        "{} seeds ({}..{}), {} steps, {:.1} s: {:.0} scenarios/s on {threads} thread(s)",
        s.seeds,
        args.from,
        to,
        s.steps,
        s.seconds,
        s.seeds as f64 / s.seconds.max(1e-9)
    );
    let c = &s.counts;
    println!(
        "in all: {} clearances, {} licenses refused as used once settled, {} double uses, {} equivocations (two records under one number {}, two heads of one size {}, forks {}), {} refusals at the hub, {} messages",
        c.clearances,
        c.probes,
        c.double_uses,
        c.equivocal_records + c.equivocal_heads + c.forks,
        c.equivocal_records,
        c.equivocal_heads,
        c.forks,
        c.refused,
        c.messages
    );
    if s.failures.is_empty() {
        println!("every invariant held in every seed");
        return Ok(Outcome::Ok);
    }
    let mut by: std::collections::BTreeMap<&str, (u64, u64)> = Default::default();
    for (seed, v) in &s.failures {
        let e = by.entry(v.invariant).or_insert((0, *seed));
        e.0 += 1;
    }
    for (invariant, (n, first)) in by {
        println!("{invariant}: {n} seed(s), first {first}");
    }
    if let Some((seed, v)) = s.failures.first() {
        println!("first failure: seed {seed}: {v}");
        println!("replay: permitgate dev simulate --seed {seed} --trace");
    }
    Ok(Outcome::Refused)
}
