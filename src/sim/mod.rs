//! A deterministic simulation of a country: several posts and hub
//! processes, each the real state machine ([`crate::sync::post::PostSync`],
//! [`crate::hub::intake::Intake`]) over its real store (the ledger's and
//! the hub's SQLite logic, in memory), under one seeded scheduler. The
//! simulated broker ([`broker`]) loses, duplicates, delays, reorders and
//! replays messages and enforces the national ACL and a size limit; posts
//! go offline for long spells; posts and hubs crash (memory lost, files
//! kept); one holder of a stolen post key signs and publishes whatever
//! that post's login may publish, and an outsider on a misconfigured
//! bridge replays whatever it saw.
//!
//! After every step and once the network has healed, the invariants in
//! [`check`] are checked. A seed is the whole scenario: the same seed
//! plays the same scenario, step for step, so a failing seed's trace
//! replays exactly (`permitgate dev simulate --seed N --trace`).
//!
//! Design: the way FoundationDB and TigerBeetle's VOPR test, in the small:
//! no threads, no wall clock, no randomness but the seed's.

mod actors;
pub mod broker;
mod check;
pub mod fixtures;
mod world;

use std::time::Instant;

pub use world::World;

/// Which of the adversaries' moves a run may make (all, by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Moves {
    /// The key-holder publishes a log of its own under the stolen key.
    pub forged_log: bool,
    /// The key-holder publishes one valid record as large as the broker takes.
    pub huge_record: bool,
    /// The key-holder sends backfill requests in bursts.
    pub request_spam: bool,
    /// The outsider replays acknowledgements it saw, again and again.
    pub replay_acks: bool,
    /// The outsider replays backfill requests it saw, alternating two.
    pub replay_requests: bool,
    /// The outsider replays any message it saw.
    pub replay_any: bool,
}

impl Moves {
    /// Every move.
    pub const ALL: Moves = Moves {
        forged_log: true,
        huge_record: true,
        request_spam: true,
        replay_acks: true,
        replay_requests: true,
        replay_any: true,
    };

    /// No adversary at all: faults of the network and crashes only.
    pub const NONE: Moves = Moves {
        forged_log: false,
        huge_record: false,
        request_spam: false,
        replay_acks: false,
        replay_requests: false,
        replay_any: false,
    };

    /// Parses a comma-separated list of move names (`all`, `none`, or
    /// `forged_log`, `huge_record`, `request_spam`, `replay_acks`,
    /// `replay_requests`, `replay_any`).
    pub fn parse(text: &str) -> Result<Moves, String> {
        let mut m = Moves::NONE;
        for name in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match name {
                "all" => m = Moves::ALL,
                "none" => m = Moves::NONE,
                "forged_log" => m.forged_log = true,
                "huge_record" => m.huge_record = true,
                "request_spam" => m.request_spam = true,
                "replay_acks" => m.replay_acks = true,
                "replay_requests" => m.replay_requests = true,
                "replay_any" => m.replay_any = true,
                other => return Err(format!("unknown adversary move `{other}`")),
            }
        }
        Ok(m)
    }
}

/// How a run goes.
#[derive(Debug, Clone)]
pub struct Options {
    /// What the adversaries may do.
    pub moves: Moves,
    /// Simulated time of network faults, crashes and attacks before the network heals, ms.
    pub chaos_ms: u64,
    /// Keep a line per step, to print.
    pub trace: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            moves: Moves::ALL,
            chaos_ms: 20_000,
            trace: false,
        }
    }
}

/// An invariant that did not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Its name ([`check`]).
    pub invariant: &'static str,
    /// Simulated time, ms.
    pub at_ms: u64,
    /// What was seen, in words.
    pub detail: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} at {} ms: {}",
            self.invariant, self.at_ms, self.detail
        )
    }
}

/// What one seed's run did.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The seed.
    pub seed: u64,
    /// Steps (events) taken.
    pub steps: u64,
    /// The first invariant that did not hold, if any.
    pub violation: Option<Violation>,
    /// One line per step (with [`Options::trace`]).
    pub trace: Vec<String>,
    /// A hash of every step taken: two runs of a seed agree on it.
    pub fingerprint: [u8; 32],
    /// What the scenario held, in words (posts, hubs, moves).
    pub summary: String,
    /// What the settled country holds and did, counted (so that a run of
    /// seeds can show its invariants were put to the test, not passed
    /// with nothing to check).
    pub counts: Counts,
}

/// What a settled country holds and did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Licenses cleared at a gate.
    pub clearances: u64,
    /// Licenses presented again at another post once settled, and refused as used.
    pub probes: u64,
    /// `double_use` alerts the hub holds.
    pub double_uses: u64,
    /// `log_equivocation` alerts the hub holds whose evidence is two records under one number.
    pub equivocal_records: u64,
    /// Those whose evidence is two heads of one size.
    pub equivocal_heads: u64,
    /// Those whose evidence is a fork proven from the later log's own root.
    pub forks: u64,
    /// Records and requests the hub refused.
    pub refused: u64,
    /// Messages the broker carried.
    pub messages: u64,
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, o: Counts) {
        self.clearances += o.clearances;
        self.probes += o.probes;
        self.double_uses += o.double_uses;
        self.equivocal_records += o.equivocal_records;
        self.equivocal_heads += o.equivocal_heads;
        self.forks += o.forks;
        self.refused += o.refused;
        self.messages += o.messages;
    }
}

/// Runs the scenario of `seed`.
pub fn run(seed: u64, opts: &Options) -> Outcome {
    World::new(seed, opts).run()
}

/// What running many seeds found.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Seeds run.
    pub seeds: u64,
    /// Seeds whose run broke an invariant, with what broke.
    pub failures: Vec<(u64, Violation)>,
    /// Steps taken in all.
    pub steps: u64,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// What the settled countries held and did, summed.
    pub counts: Counts,
}

/// Runs seeds `from..to` on `threads` threads; stops each thread at its
/// first failure when `stop_at_first` is set.
pub fn run_many(
    from: u64,
    to: u64,
    threads: usize,
    opts: &Options,
    stop_at_first: bool,
) -> Summary {
    let started = Instant::now();
    let threads = threads.max(1) as u64;
    let results: Vec<Summary> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let opts = opts.clone();
                s.spawn(move || {
                    let mut sum = Summary::default();
                    let mut seed = from + t;
                    while seed < to {
                        // Design: a panic is a finding too (nothing may panic on
                        // what arrives from the network), reported as its seed's.
                        let o = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            run(seed, &opts)
                        }));
                        sum.seeds += 1;
                        let violation = match o {
                            Ok(o) => {
                                sum.steps += o.steps;
                                sum.counts += o.counts;
                                o.violation
                            }
                            Err(p) => Some(Violation {
                                invariant: "no_panic",
                                at_ms: 0,
                                detail: p
                                    .downcast_ref::<String>()
                                    .cloned()
                                    .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                                    .unwrap_or_else(|| "a panic".into()),
                            }),
                        };
                        if let Some(v) = violation {
                            sum.failures.push((seed, v));
                            if stop_at_first {
                                break;
                            }
                        }
                        seed += threads;
                    }
                    sum
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let mut total = Summary::default();
    for r in results {
        total.seeds += r.seeds;
        total.steps += r.steps;
        total.failures.extend(r.failures);
        total.counts += r.counts;
    }
    total.failures.sort_by_key(|f| f.0);
    total.seconds = started.elapsed().as_secs_f64();
    total
}
