//! The invariants, checked after every step and once the healed country
//! has settled. Each has a name that a violation carries:
//!
//! - `messages_fit`: nothing a genuine part publishes is larger than any
//!   sync message may be, nor than the broker takes (checked where it
//!   publishes, [`super::world`]).
//! - `memory_bounded`: what a post's machine and a hub's intake remember
//!   (verified heads, opened acknowledgements, requests answered) stays
//!   within its bounds.
//! - `acks_never_move_back`: the head a post believes the hub holds of it
//!   never shrinks, whatever is replayed.
//! - `no_false_loss`: a post whose ledger lost nothing never says it lost
//!   committed decisions.
//! - `genuine_records_accepted`: the hub refuses nothing a genuine post sends.
//! - `replays_ignored`: a hub process never answers one sealed backfill
//!   request twice within a second (a process that restarted has forgotten
//!   what it answered: counted afresh).
//! - `backfill_rate`: a hub process answers at most [`BACKFILL_RATE`]
//!   backfill requests of one checkpoint key in any second, and one more
//!   (the key's newest).
//! - At rest: `every_record_once` (each genuine record is in the national
//!   log exactly once), `no_post_silenced` (every post's outbox empties),
//!   `every_post_learns` (every post holds the whole national log),
//!   `double_use_alerted` (a license cleared at two posts is alerted, with
//!   evidence that verifies, by the hub and by each of them; and any
//!   license the national log holds under two numbers, by the hub),
//!   `equivocation_alerted` (two records under one number of one checkpoint
//!   in the national log are alerted as `log_equivocation`, with evidence
//!   that verifies, by the hub and by every post), `alerts_verify` (every
//!   such alert the hub raised verifies), and
//!   `used_license_refused` (a license consumed anywhere is refused at any
//!   other post as already used).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use sha2::{Digest, Sha256};

use super::broker::Msg;
use super::fixtures;
use super::world::{PREFIX, World};
use crate::hub::intake::Out;
use crate::merkle::head::Head;
use crate::verdict::{Alert, AlertKind};

/// Backfill replies to one checkpoint key in any second, at most.
pub(super) const BACKFILL_RATE: usize = crate::hub::intake::BACKFILL_RATE;

/// What the per-step invariants remember.
#[derive(Debug, Default)]
pub(super) struct Watch {
    /// Per post: the largest head it has believed the hub holds.
    acked: BTreeMap<usize, u64>,
    /// Per hub process and sealed request (its SHA-256): when it last answered it.
    answered: BTreeMap<(usize, [u8; 32]), u64>,
    /// Per hub process and checkpoint: when it answered its requests in the last second.
    replies: BTreeMap<(usize, String), VecDeque<u64>>,
}

impl Watch {
    /// Hub process `j` starts with nothing in memory: what it answered
    /// before is forgotten with it (a replay may be answered once more, and
    /// its rate is counted afresh; documented).
    pub(super) fn hub_started(&mut self, j: usize) {
        self.answered.retain(|(h, _), _| *h != j);
        self.replies.retain(|(h, _), _| *h != j);
    }
}

/// An alert post `i` raised and passes on.
pub(super) fn post_alert(w: &mut World, i: usize, json: &str) {
    if json.contains("lost or erased") {
        let detail = format!("{} says it lost decisions: {json}", fixtures::post_id(i));
        w.fail("no_false_loss", detail);
    }
}

/// After post `i`'s machine took a step.
pub(super) fn after_post_step(w: &mut World, i: usize) {
    if let Some(Err(why)) = w.posts[i].machine.as_ref().map(|m| m.within_bounds()) {
        let detail = format!("{}: {why}", fixtures::post_id(i));
        return w.fail("memory_bounded", detail);
    }
    let size = w.posts[i]
        .ledger
        .hub_holds_head()
        .ok()
        .flatten()
        .and_then(|n| Head::peek(n.as_bytes()).ok())
        .map(|h| h.size)
        .unwrap_or(0);
    let before = w.watch.acked.entry(i).or_default();
    if size < *before {
        let detail = format!(
            "{} went back from believing the hub holds {} entries of its log to {size}",
            fixtures::post_id(i),
            *before
        );
        w.fail("acks_never_move_back", detail);
    } else {
        *before = size;
    }
}

/// After hub process `j` handled `msg`, refusing `refused` things and sending `outs`.
pub(super) fn after_hub_step(w: &mut World, j: usize, msg: &Msg, refused: u64, outs: &[Out]) {
    if let Some(Err(why)) = w.hubs[j].intake.as_ref().map(|m| m.within_bounds()) {
        return w.fail("memory_bounded", format!("hub process {j}: {why}"));
    }
    let sender = w.posts.iter().position(|p| p.client == msg.from);
    if let Some(i) = sender
        && msg.topic.starts_with(&format!("{PREFIX}/hub/records/"))
    {
        let inconsistent = outs.iter().any(|o| {
            serde_json::from_slice::<Alert>(&o.payload)
                .is_ok_and(|a| a.kind == AlertKind::LogInconsistent)
        });
        if refused > 0 || inconsistent {
            let detail = format!(
                "the hub refused {} of {}'s genuine records message {}",
                if inconsistent { "the head" } else { "a record" },
                fixtures::post_id(i),
                msg.id
            );
            w.fail("genuine_records_accepted", detail);
        }
    }
    if msg.topic == format!("{PREFIX}/hub/backfill") {
        let digest: [u8; 32] = Sha256::digest(&msg.payload).into();
        for o in outs {
            let Some(cp) = o
                .topic
                .strip_prefix(&format!("{PREFIX}/"))
                .and_then(|t| t.strip_suffix("/sync/feed"))
            else {
                continue;
            };
            let now = w.now;
            if let Some(at) = w.watch.answered.get(&(j, digest))
                && now.saturating_sub(*at) < 1_000
            {
                let detail = format!("message {} answered again {} ms after", msg.id, now - at);
                return w.fail("replays_ignored", detail);
            }
            w.watch.answered.insert((j, digest), now);
            let times = w.watch.replies.entry((j, cp.to_owned())).or_default();
            times.push_back(now);
            while times
                .front()
                .is_some_and(|t| now.saturating_sub(*t) >= 1_000)
            {
                times.pop_front();
            }
            if times.len() > BACKFILL_RATE + 1 {
                let detail = format!("{} replies to {cp} within one second", times.len());
                return w.fail("backfill_rate", detail);
            }
        }
    }
}

/// The national log's size.
pub(super) fn national_size(w: &World) -> u64 {
    w.hub_db
        .query_row("SELECT COALESCE(MAX(g), 0) FROM records", [], |r| {
            r.get::<_, i64>(0)
        })
        .map(|n| n as u64)
        .unwrap_or(0)
}

/// Once the healed country has settled (or took too long to).
pub(super) fn at_rest(w: &mut World) {
    if let Err((invariant, detail)) = records_and_posts(w) {
        return w.fail(invariant, detail);
    }
    if let Err(detail) = double_uses(w) {
        return w.fail("double_use_alerted", detail);
    }
    if let Err(detail) = equivocations(w) {
        return w.fail("equivocation_alerted", detail);
    }
    if let Err(detail) = alerts_verify(w) {
        return w.fail("alerts_verify", detail);
    }
    probe(w);
    if w.violation.is_none() {
        w.note(|| "settled; every invariant holds".into());
    }
}

type Failed = (&'static str, String);

/// The one text column of every row `sql` selects.
fn texts(db: &rusqlite::Connection, sql: &str) -> Result<Vec<String>, String> {
    let mut st = db.prepare(sql).map_err(|e| e.to_string())?;
    let rows = st
        .query_map([], |r| r.get::<_, String>(0))
        .map_err(|e| e.to_string())?;
    Ok(rows.flatten().collect())
}

/// The alerts of `kind` a ledger or hub store holds.
fn alerts_of(db: &rusqlite::Connection, kind: &str) -> Vec<Alert> {
    texts(
        db,
        &format!("SELECT alert_json FROM alerts WHERE kind = '{kind}'"),
    )
    .unwrap_or_default()
    .iter()
    .filter_map(|j| serde_json::from_str(j).ok())
    .collect()
}

/// Every genuine record once in the national log; every post caught up.
fn records_and_posts(w: &World) -> Result<(), Failed> {
    let size = national_size(w);
    for p in &w.posts {
        let own = own_records(&p.db).map_err(|e| ("every_record_once", e.to_string()))?;
        for (seq, leaf) in own {
            let n: i64 = w
                .hub_db
                .query_row(
                    "SELECT COUNT(*) FROM records WHERE checkpoint = ?1 AND seq = ?2 AND leaf = ?3",
                    rusqlite::params![p.id, seq, leaf],
                    |r| r.get(0),
                )
                .map_err(|e| ("every_record_once", e.to_string()))?;
            if n != 1 {
                let detail = format!("{}'s record {seq} is in the national log {n} times", p.id);
                return Err(("every_record_once", detail));
            }
        }
        let outbox = p.ledger.outbox_depth().unwrap_or(u64::MAX);
        if outbox != 0 {
            let detail = format!("{} still has {outbox} records waiting", p.id);
            return Err(("no_post_silenced", detail));
        }
        let hw = p.ledger.feed_high_water().unwrap_or(0);
        if hw != size {
            let detail = format!("{} holds the national log up to {hw} of {size}", p.id);
            return Err(("every_post_learns", detail));
        }
    }
    Ok(())
}

fn own_records(db: &rusqlite::Connection) -> rusqlite::Result<Vec<(i64, Vec<u8>)>> {
    let mut st = db.prepare("SELECT seq, record FROM consumed ORDER BY seq")?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

/// A license cleared at two posts: alerted by the hub and by each, with evidence that verifies.
fn double_uses(w: &World) -> Result<(), String> {
    let mut at: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
    for (i, p) in w.posts.iter().enumerate() {
        for id in texts(&p.db, "SELECT license_id FROM consumed")? {
            at.entry(id).or_default().insert(i);
        }
    }
    let registry = fixtures::policy().registry;
    let now = w.now().unix;
    let verified = |db: &rusqlite::Connection, license: &str| -> bool {
        alerts_of(db, "double_use")
            .iter()
            .filter(|a| a.license_id.as_deref() == Some(license))
            .any(|a| crate::sync::verify::proven_double_use(a, &registry, now).is_ok())
    };
    let twice = texts(
        &w.hub_db,
        "SELECT license_id FROM records GROUP BY license_id HAVING COUNT(DISTINCT checkpoint || '/' || seq) > 1",
    )?;
    for license in twice {
        if !verified(&w.hub_db, &license) {
            return Err(format!(
                "the national log holds {license} under two numbers; the hub holds no double-use alert whose evidence verifies"
            ));
        }
    }
    for (license, posts) in at.iter().filter(|(_, p)| p.len() > 1) {
        if !verified(&w.hub_db, license) {
            return Err(format!(
                "{license} was cleared at {} posts; the hub holds no double-use alert whose evidence verifies",
                posts.len()
            ));
        }
        for &i in posts {
            if !verified(&w.posts[i].db, license) {
                return Err(format!(
                    "{license} was cleared at {} posts; {} holds no double-use alert whose evidence verifies",
                    posts.len(),
                    w.posts[i].id
                ));
            }
        }
    }
    Ok(())
}

/// Two records under one number of one checkpoint: `log_equivocation`,
/// with evidence that verifies, at the hub and at every post.
fn equivocations(w: &World) -> Result<(), String> {
    let mut st = w
        .hub_db
        .prepare("SELECT checkpoint, seq FROM records GROUP BY checkpoint, seq HAVING COUNT(*) > 1")
        .map_err(|e| e.to_string())?;
    let numbers: Vec<(String, i64)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(|e| e.to_string())?
        .flatten()
        .collect();
    let registry = fixtures::policy().registry;
    let now = w.now().unix;
    let alerted = |db: &rusqlite::Connection, cp: &str, seq: i64| -> bool {
        alerts_of(db, "log_equivocation")
            .iter()
            .filter(|a| {
                a.signer.as_deref() == Some(cp)
                    && a.records.len() == 2
                    && a.records.iter().all(|r| r.seq == seq as u64)
            })
            .any(|a| crate::sync::equivocation::verify(a, &registry, "check", now).is_ok())
    };
    for (cp, seq) in numbers {
        if !alerted(&w.hub_db, &cp, seq) {
            return Err(format!(
                "the national log holds two records under {cp}'s number {seq}; the hub holds no log_equivocation alert whose evidence verifies"
            ));
        }
        for p in &w.posts {
            if !alerted(&p.db, &cp, seq) {
                return Err(format!(
                    "the national log holds two records under {cp}'s number {seq}; {} holds no log_equivocation alert whose evidence verifies",
                    p.id
                ));
            }
        }
    }
    Ok(())
}

/// Every `double_use` and `log_equivocation` alert the hub raised verifies.
fn alerts_verify(w: &mut World) -> Result<(), String> {
    let registry = fixtures::policy().registry;
    let now = w.now().unix;
    let alerts = texts(
        &w.hub_db,
        "SELECT alert_json FROM alerts WHERE kind IN ('double_use', 'log_equivocation')",
    )?;
    let mut counts = super::Counts::default();
    for json in alerts {
        let a: Alert = serde_json::from_str(&json).map_err(|e| e.to_string())?;
        match (a.kind, a.fork.is_some(), a.records.len()) {
            (AlertKind::DoubleUse, ..) => counts.double_uses += 1,
            (_, true, _) => counts.forks += 1,
            (_, false, 2) => counts.equivocal_records += 1,
            _ => counts.equivocal_heads += 1,
        }
        let checked = match a.kind {
            AlertKind::DoubleUse => crate::sync::verify::proven_double_use(&a, &registry, now),
            _ => crate::sync::equivocation::verify(&a, &registry, "check", now),
        };
        if let Err(why) = checked {
            return Err(format!(
                "the hub raised a {} alert that does not verify: {why}",
                a.kind.as_str()
            ));
        }
    }
    w.counts += counts;
    Ok(())
}

/// Every license consumed at a post is presented at every other: none clears.
fn probe(w: &mut World) {
    let consumed: Vec<(usize, usize)> = w
        .clearances
        .iter()
        .map(|c| (c.post, c.license))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    for (at, license) in consumed {
        for i in 0..w.posts.len() {
            if i == at {
                continue;
            }
            let id = format!(
                "PROBE-{}-{}",
                fixtures::post_id(i),
                fixtures::license_id(license)
            );
            match w.gate(i, license, &id) {
                Ok((false, Some("license_already_used"))) => w.counts.probes += 1,
                Ok((false, other)) => {
                    let detail = format!(
                        "{} consumed at {} was refused at {} for {other:?}, not as already used",
                        fixtures::license_id(license),
                        fixtures::post_id(at),
                        fixtures::post_id(i)
                    );
                    return w.fail("used_license_refused", detail);
                }
                Ok((true, _)) => {
                    let detail = format!(
                        "{} consumed at {} clears again at {} once the country has settled",
                        fixtures::license_id(license),
                        fixtures::post_id(at),
                        fixtures::post_id(i)
                    );
                    return w.fail("used_license_refused", detail);
                }
                Err(e) => return w.fail("ledger_works", e),
            }
        }
    }
}
