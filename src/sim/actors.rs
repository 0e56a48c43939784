//! The adversaries: a holder of one post's stolen key, logged in as that
//! post (so the ACL lets it publish what the post may: its records, backfill
//! requests and witness), and an outsider on a misconfigured bridge that
//! sees every message and may publish anything, which replays what it saw.

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::{Mutex, OnceLock};

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::Moves;
use super::broker::{Broker, ClientId, Login, Msg};
use super::fixtures::{self, EPOCH};
use super::world::{PREFIX, SIZE_LIMIT, World};
use crate::merkle::head::{Head, checkpoint_origin};
use crate::merkle::{SqlLog, leaf_hash};
use crate::record::{ConsumptionRecord, Goods, KIND_CONSUMPTION};
use crate::sync::protocol::{Backfill, Records};

/// Which numbers a forged log's records take.
#[derive(Debug, Clone, Copy)]
pub(super) enum Seqs {
    /// From 1: the numbers the genuine post's first records take.
    First,
    /// The genuine post's next numbers.
    Next,
    /// Numbers far ahead of anything genuine.
    Far,
}

/// What a replay burst replays.
#[derive(Debug, Clone, Copy)]
pub(super) enum Pick {
    /// One acknowledgement to a post (most often the first it got).
    Ack,
    /// Two backfill requests of one post, alternately.
    Requests,
    /// Any message seen.
    Any,
}

/// An adversary's move.
#[derive(Debug, Clone)]
pub(super) enum Act {
    /// The key-holder publishes a log of its own: `leaves` consumption
    /// records (after some filler leaves), for licenses of the country's
    /// pool or made up.
    ForgedLog {
        leaves: usize,
        seqs: Seqs,
        made_up: bool,
        filler: usize,
        fork: bool,
    },
    /// The key-holder publishes one valid record as large as the broker takes.
    HugeRecord,
    /// The key-holder sends `left` more sealed backfill requests, 10 ms apart.
    RequestSpam { left: usize },
    /// The key-holder publishes, as the stolen post's witness, a hub head
    /// it saw long ago or bytes that are none.
    Witness { junk: bool },
    /// The outsider replays what it picked every `every` ms until `until`.
    Replay {
        pick: Pick,
        every: u64,
        until: u64,
        chosen: Vec<(String, Rc<[u8]>)>,
        turn: usize,
    },
}

/// Both adversaries' state.
pub(super) struct Adversary {
    /// The post whose key was stolen.
    pub stolen: Option<usize>,
    /// The key-holder's login (as the stolen post).
    forger: Option<ClientId>,
    /// The outsider's login.
    bridge: ClientId,
    /// Per topic, the first and the latest messages seen.
    captured: BTreeMap<String, Vec<Msg>>,
    moves: Moves,
    planned: Vec<&'static str>,
    forged: u64,
}

/// Messages kept per topic: the first half, and the latest.
const KEPT: usize = 8;

impl Adversary {
    /// The adversaries of a country of `posts` posts, as `moves` allow.
    pub fn new(
        broker: &mut Broker,
        rng: &mut ChaCha8Rng,
        moves: &Moves,
        posts: usize,
    ) -> Adversary {
        let key_moves = moves.forged_log || moves.huge_record || moves.request_spam;
        let stolen = (key_moves && rng.gen_bool(0.7)).then(|| rng.gen_range(0..posts));
        let forger = stolen.map(|i| broker.client(Login::Post(fixtures::post_id(i))));
        let bridge = broker.client(Login::Bridge);
        Adversary {
            stolen,
            forger,
            bridge,
            captured: BTreeMap::new(),
            moves: *moves,
            planned: Vec::new(),
            forged: 0,
        }
    }

    /// Whether client `c` is one of the adversaries'.
    pub fn owns(&self, c: ClientId) -> bool {
        c == self.bridge || Some(c) == self.forger
    }

    /// The outsider keeps what it saw.
    pub fn capture(&mut self, m: &Msg) {
        let kept = self.captured.entry(m.topic.clone()).or_default();
        if kept.len() >= KEPT {
            kept.remove(KEPT / 2);
        }
        kept.push(m.clone());
    }

    /// The moves and when, within `chaos` ms.
    pub fn plan(&mut self, rng: &mut ChaCha8Rng, chaos: u64, _posts: usize) -> Vec<(u64, Act)> {
        let mut acts = Vec::new();
        let m = self.moves;
        if self.stolen.is_some() {
            if m.forged_log && rng.gen_bool(0.7) {
                self.planned.push("forged_log");
                // Before the genuine post's first record, often: its numbers are free.
                let early = rng.gen_range(0..3_000);
                acts.push((early, forged(rng, Seqs::First)));
                if rng.gen_bool(0.5) {
                    let seqs = [Seqs::First, Seqs::Next, Seqs::Far][rng.gen_range(0..3)];
                    acts.push((rng.gen_range(0..chaos), forged(rng, seqs)));
                }
            }
            if m.huge_record && rng.gen_bool(0.3) {
                self.planned.push("huge_record");
                acts.push((rng.gen_range(0..chaos), Act::HugeRecord));
            }
            if m.request_spam && rng.gen_bool(0.3) {
                self.planned.push("request_spam");
                let left = rng.gen_range(20..60);
                acts.push((rng.gen_range(0..chaos), Act::RequestSpam { left }));
                for _ in 0..rng.gen_range(1..=3) {
                    let junk = rng.gen_bool(0.5);
                    acts.push((rng.gen_range(0..chaos), Act::Witness { junk }));
                }
            }
        }
        let burst = |rng: &mut ChaCha8Rng, pick: Pick, every: (u64, u64), long: (u64, u64)| {
            let t = rng.gen_range(0..chaos);
            let every = rng.gen_range(every.0..=every.1);
            let until = t + rng.gen_range(long.0..=long.1);
            (
                t,
                Act::Replay {
                    pick,
                    every,
                    until,
                    chosen: Vec::new(),
                    turn: 0,
                },
            )
        };
        if m.replay_acks && rng.gen_bool(0.5) {
            self.planned.push("replay_acks");
            for _ in 0..rng.gen_range(1..=2) {
                acts.push(burst(rng, Pick::Ack, (20, 120), (1_000, 5_000)));
            }
        }
        if m.replay_requests && rng.gen_bool(0.4) {
            self.planned.push("replay_requests");
            acts.push(burst(rng, Pick::Requests, (40, 40), (2_000, 2_000)));
        }
        if m.replay_any && rng.gen_bool(0.5) {
            self.planned.push("replay_any");
            for _ in 0..rng.gen_range(3..=10) {
                acts.push(burst(rng, Pick::Any, (50, 500), (0, 1_000)));
            }
        }
        acts
    }

    /// What the adversaries are up to, in words.
    pub fn describe(&self) -> String {
        let key = match self.stolen {
            Some(i) => format!("{}'s key stolen", fixtures::post_id(i)),
            None => "no key stolen".into(),
        };
        if self.planned.is_empty() {
            format!("{key}; no attack")
        } else {
            format!("{key}; attacks: {}", self.planned.join(", "))
        }
    }
}

fn forged(rng: &mut ChaCha8Rng, seqs: Seqs) -> Act {
    Act::ForgedLog {
        leaves: rng.gen_range(1..=3),
        seqs,
        made_up: rng.gen_bool(0.3),
        filler: if rng.gen_bool(0.5) {
            rng.gen_range(1..=3)
        } else {
            0
        },
        fork: rng.gen_bool(0.5),
    }
}

/// Carries out one move.
pub(super) fn perform(w: &mut World, act: Act) {
    match act {
        Act::ForgedLog {
            leaves,
            seqs,
            made_up,
            filler,
            fork,
        } => forge_log(w, leaves, seqs, made_up, filler, fork),
        Act::HugeRecord => {
            let (Some(i), Some(c)) = (w.adversary.stolen, w.adversary.forger) else {
                return;
            };
            let cp = fixtures::post_id(i);
            // A head dated at the start: anyone holding the key may backdate.
            let payload = huge_message(&cp);
            w.note(|| {
                format!(
                    "the key-holder signs a record of {} bytes as {cp}",
                    payload.len()
                )
            });
            w.publish(c, &format!("{PREFIX}/hub/records/{cp}"), payload, false);
        }
        Act::RequestSpam { left } => {
            let (Some(i), Some(c)) = (w.adversary.stolen, w.adversary.forger) else {
                return;
            };
            let cp = fixtures::post_id(i);
            let req = Backfill {
                checkpoint: cp.clone(),
                after: w.rng.gen_range(0..50),
                limit: 500,
                issued_at: w.now().unix,
                nonce: left as u64,
            };
            w.publish(
                c,
                &format!("{PREFIX}/hub/backfill"),
                req.seal(&fixtures::key(&cp)),
                false,
            );
            if left > 1 {
                let t = w.now + 10;
                w.at(
                    t,
                    super::world::Ev::Adversary(Act::RequestSpam { left: left - 1 }),
                );
            }
        }
        Act::Witness { junk } => {
            let (Some(i), Some(c)) = (w.adversary.stolen, w.adversary.forger) else {
                return;
            };
            let cp = fixtures::post_id(i);
            let old = w
                .adversary
                .captured
                .iter()
                .find(|(t, _)| t.ends_with("/sync/witness"))
                .and_then(|(_, m)| m.first())
                .map(|m| m.payload.to_vec());
            let payload = match old {
                Some(note) if !junk => note,
                _ => b"not a signed note".to_vec(),
            };
            w.note(|| format!("the key-holder publishes a witness as {cp}"));
            w.publish(c, &format!("{PREFIX}/{cp}/sync/witness"), payload, true);
        }
        Act::Replay {
            pick,
            every,
            until,
            mut chosen,
            turn,
        } => {
            if chosen.is_empty() {
                chosen = choose(w, pick);
            }
            if let Some((topic, payload)) = chosen.get(turn % chosen.len().max(1)).cloned() {
                let c = w.adversary.bridge;
                w.note(|| format!("the outsider replays a message on {topic}"));
                w.publish(c, &topic, payload.to_vec(), false);
            }
            if w.now + every <= until {
                let t = w.now + every;
                w.at(
                    t,
                    super::world::Ev::Adversary(Act::Replay {
                        pick,
                        every,
                        until,
                        chosen,
                        turn: turn + 1,
                    }),
                );
            }
        }
    }
}

/// What a replay burst replays, from what the outsider has seen so far.
fn choose(w: &mut World, pick: Pick) -> Vec<(String, Rc<[u8]>)> {
    let of = |m: &Msg| (m.topic.clone(), m.payload.clone());
    let captured = &w.adversary.captured;
    match pick {
        Pick::Ack => {
            let acks: Vec<&Vec<Msg>> = captured
                .iter()
                .filter(|(t, _)| t.ends_with("/sync/ack"))
                .map(|(_, v)| v)
                .collect();
            if acks.is_empty() {
                return Vec::new();
            }
            let of_post = acks[w.rng.gen_range(0..acks.len())];
            // Most often the first acknowledgement: the oldest state.
            let n = if w.rng.gen_bool(0.7) {
                0
            } else {
                w.rng.gen_range(0..of_post.len())
            };
            vec![of(&of_post[n])]
        }
        Pick::Requests => {
            let Some(requests) = captured.get(&format!("{PREFIX}/hub/backfill")) else {
                return Vec::new();
            };
            let mut two: Vec<(String, Rc<[u8]>)> = Vec::new();
            for m in requests.iter().rev() {
                if !two.iter().any(|(_, p)| p[..] == m.payload[..]) {
                    two.push(of(m));
                }
                if two.len() == 2 {
                    break;
                }
            }
            two
        }
        Pick::Any => {
            let all: Vec<&Msg> = captured.values().flatten().collect();
            if all.is_empty() {
                return Vec::new();
            }
            vec![of(all[w.rng.gen_range(0..all.len())])]
        }
    }
}

fn forge_log(w: &mut World, leaves: usize, seqs: Seqs, made_up: bool, filler: usize, fork: bool) {
    let (Some(i), Some(c)) = (w.adversary.stolen, w.adversary.forger) else {
        return;
    };
    let cp = fixtures::post_id(i);
    let first = match seqs {
        Seqs::First => 1,
        Seqs::Next => {
            let held: i64 = w.posts[i]
                .db
                .query_row("SELECT COALESCE(MAX(seq), 0) FROM consumed", [], |r| {
                    r.get(0)
                })
                .unwrap_or(0);
            held as u64 + 1
        }
        Seqs::Far => 1000 + w.rng.gen_range(0..1000),
    };
    // A fork: a log as long as the genuine post's at least, other from the
    // start, sent with a consistency proof from the genuine one's size and
    // its own root there, as the post itself would send it.
    let genuine: i64 = w.posts[i]
        .db
        .query_row("SELECT COALESCE(MAX(n) + 1, 0) FROM log_leaves", [], |r| {
            r.get(0)
        })
        .unwrap_or(0);
    let fork_from = (fork && genuine > 0).then_some(genuine as u64);
    let filler = filler.max(fork_from.unwrap_or(0) as usize);
    let mut log: Vec<Vec<u8>> = (0..filler)
        .map(|n| format!("filler {n} {}", w.rng.r#gen::<u64>()).into_bytes())
        .collect();
    let mut at = Vec::new();
    let mut licenses = Vec::new();
    for k in 0..leaves {
        w.adversary.forged += 1;
        let license = if made_up {
            format!("LIC-FORGED-{}", w.adversary.forged)
        } else {
            fixtures::license_id(w.rng.gen_range(0..fixtures::LICENSES))
        };
        let rec = record(&cp, first + k as u64, &license, w.now().unix, Vec::new());
        at.push(log.len() as u64);
        log.push(rec.to_leaf());
        licenses.push(license);
    }
    w.note(|| {
        format!(
            "the key-holder signs a log of {} leaves as {cp}: records {first}.. for {}",
            log.len(),
            licenses.join(", ")
        )
    });
    let payload = signed_log_from(&cp, &fixtures::key(&cp), &log, &at, w.now().unix, fork_from);
    w.publish(c, &format!("{PREFIX}/hub/records/{cp}"), payload, false);
}

fn record(cp: &str, seq: u64, license: &str, at: i64, goods: Vec<Goods>) -> ConsumptionRecord {
    ConsumptionRecord {
        kind: KIND_CONSUMPTION.to_owned(),
        checkpoint: cp.to_owned(),
        seq,
        license_id: license.to_owned(),
        declaration_id: format!("FORGED-{seq}"),
        consumed_at: at,
        token_sha256: [7; 32],
        declaration_sha256: [9; 32],
        exporter: "EXP-1".into(),
        consignee: "CON-1".into(),
        end_user: "END-1".into(),
        destination: "DE".into(),
        goods,
    }
}

/// A records message of one valid consumption record of `cp`, signed
/// with its key, a few bytes under the simulated broker's limit (made once
/// per post id).
fn huge_message(cp: &str) -> Vec<u8> {
    static MADE: OnceLock<Mutex<HashMap<String, Vec<u8>>>> = OnceLock::new();
    let made = MADE.get_or_init(Default::default);
    if let Some(l) = made.lock().ok().and_then(|m| m.get(cp).cloned()) {
        return l;
    }
    let item = Goods {
        hs_code: "850511".into(),
        elements: vec!["Dy".into()],
        net_kg: 1.0,
    };
    let key = fixtures::key(cp);
    let message = |leaf: &[u8]| signed_log(cp, &key, &[leaf.to_vec()], &[0], EPOCH).len();
    let made_of = |items: usize, pad: usize| {
        let mut r = record(cp, 9_999, "LIC-HUGE", EPOCH, vec![item.clone(); items]);
        r.declaration_id.push_str(&"x".repeat(pad));
        r.to_leaf()
    };
    // Each item adds the same bytes: two sizes give the rest.
    let (one, two) = (made_of(1_000, 0).len(), made_of(2_000, 0).len());
    let per_item = (two - one) / 1_000;
    let overhead = message(&made_of(1_000, 0)) - 1_000 * per_item;
    let items = (SIZE_LIMIT - 64 - overhead) / per_item.max(1);
    // The last bytes by the declaration id's length: 16 bytes under the limit.
    let short = (SIZE_LIMIT - 16).saturating_sub(message(&made_of(items, 0)));
    let message = signed_log(cp, &key, &[made_of(items, short)], &[0], EPOCH);
    if let Ok(mut m) = made.lock() {
        m.insert(cp.to_owned(), message.clone());
    }
    message
}

/// A records message of a log of `leaves` signed as `cp` with `key`,
/// carrying the leaves at indexes `records` with their proofs.
fn signed_log(
    cp: &str,
    key: &ed25519_dalek::SigningKey,
    leaves: &[Vec<u8>],
    records: &[u64],
    now: i64,
) -> Vec<u8> {
    signed_log_from(cp, key, leaves, records, now, None)
}

/// [`signed_log`], with a consistency proof from size `from` (and the
/// log's root there) when given.
fn signed_log_from(
    cp: &str,
    key: &ed25519_dalek::SigningKey,
    leaves: &[Vec<u8>],
    records: &[u64],
    now: i64,
    from: Option<u64>,
) -> Vec<u8> {
    let build = || -> Result<Vec<u8>, crate::merkle::MerkleError> {
        let conn = rusqlite::Connection::open_in_memory()?;
        conn.execute_batch(&SqlLog::create_sql("forged"))?;
        let log = SqlLog::new(&conn, "forged");
        for (n, leaf) in leaves.iter().enumerate() {
            log.append(n as u64, leaf_hash(leaf))?;
        }
        let size = leaves.len() as u64;
        let head = Head {
            origin: checkpoint_origin(cp),
            size,
            root: log.root(size)?,
            time: now,
        }
        .sign(key);
        let mut out = Vec::new();
        for &n in records {
            out.push((n, leaves[n as usize].clone(), log.prove_inclusion(n, size)?));
        }
        let consistency = match from.filter(|m| *m > 0 && *m < size) {
            Some(m) => Some(crate::sync::protocol::Consistency {
                from: m,
                root: Some(log.root(m)?),
                proof: log.prove_consistency(m, size)?,
            }),
            None => None,
        };
        Ok(Records {
            head,
            consistency,
            records: out,
        }
        .encode())
    };
    // Design: an in-memory log of a few leaves cannot fail; if it did, the
    // move is simply not made.
    build().unwrap_or_default()
}
