//! The checkpoint's side of sync as a state machine: inputs in (a
//! connection, a message, a tick, a commit), outputs out (subscriptions,
//! publications, alerts), the time passed in. It sends the post's signed
//! consumption records to the hub until the national log holds them,
//! stores everyone's records from the hub's feed, backfills gaps, and
//! passes the hub's double-use alerts on.
//!
//! Its durable memory is the ledger; what it keeps besides (timers, the
//! alert throttle) is lost with the process and rebuilt from nothing.
//! [`super::agent`] drives it over MQTT; the country simulation
//! ([`crate::sim`]) drives it over a simulated broker.
//!
//! Design: the broker is transport, never trust. An acknowledgement or a
//! feed message counts only if a hub key the policy names sealed it; every
//! record in the feed or in an alert is verified against the registry
//! before it is stored or acted on; anything else is refused, counted and
//! alerted at a bounded rate ([`crate::throttle`]).

use std::sync::Arc;

use ed25519_dalek::SigningKey;
use tracing::{debug, error, info, warn};

use super::equivocation::{self, Evidenced};
use super::protocol::{
    BATCH_MAX, Backfill, Consistency, Feed, HubStatus, HubTime, MESSAGE_MAX, Opened, Records,
    SyncTopics,
};
use super::verify::{
    Verified, check_feed_with, log_inconsistent_alert, proven_double_use_with, refused_alert,
};
pub use crate::clock::{Millis, Now};
use crate::clock_trust::{judge, sample_words};
use crate::in_force::PolicyInForce;
use crate::ledger::{FeedConflict, Ledger, Publication};
use crate::merkle::head::Head;
use crate::registry::Registry;
use crate::telemetry::Telemetry;
use crate::throttle::{AlertThrottle, bounded_detail};
use crate::verdict::{Alert, AlertKind};

/// What happens to the post's sync.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    /// The uplink's connection is up (again).
    Connected,
    /// The uplink's connection is lost.
    Lost,
    /// A message arrived.
    Message {
        /// Its topic.
        topic: &'a str,
        /// Its payload.
        payload: &'a [u8],
    },
    /// The periodic timer (every `sync.interval_ms`).
    Tick,
    /// The gate committed consumptions: they go out at once.
    Committed,
    /// A publication of ours could not be queued: what it carried goes again.
    NotSent,
}

/// What the driver does for the machine.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Subscribe to this topic filter (QoS 1).
    Subscribe(String),
    /// Publish (QoS 1).
    Publish {
        /// Topic.
        topic: String,
        /// Payload.
        payload: Vec<u8>,
        /// Retained.
        retain: bool,
    },
    /// An alert stored in the ledger, to publish on the checkpoint's own alerts topic.
    Alert(Publication),
}

/// The machine's settings.
pub struct PostSyncConfig {
    /// This checkpoint's id.
    pub checkpoint: String,
    /// Its signing key, for backfill requests.
    pub key: SigningKey,
    /// The uplink's topic prefix.
    pub prefix: String,
    /// How often the driver sends [`Input::Tick`], ms.
    pub interval_ms: u64,
    /// Records not seen in the national log within this long go again, ms.
    pub resend_after_ms: u64,
    /// The authority's root key; signed policy bundles are applied when set.
    pub policy_root: Option<ed25519_dalek::VerifyingKey>,
    /// The policy in force: its registry says whose messages count.
    pub in_force: Arc<PolicyInForce>,
    /// Metrics and health.
    pub telemetry: Arc<Telemetry>,
}

/// Most record batches sent per tick, so a long backlog goes out in steps.
const BATCHES_PER_TICK: usize = 20;
/// Records per batch.
const RECORDS_PER_BATCH: usize = BATCH_MAX;
/// A backfill request unanswered this long may be repeated, ms.
const BACKFILL_TIMEOUT: Millis = 5_000;
/// Least time between two backfill requests that a reply did not prompt, ms.
const BACKFILL_GAP: Millis = 250;

/// The checkpoint's sync, between inputs.
pub struct PostSync {
    cfg: PostSyncConfig,
    topics: SyncTopics,
    /// True while the uplink is connected.
    connected: bool,
    /// Highest own record sent on this connection.
    sent_upto: u64,
    /// When the hub last moved our acknowledgement (or we last started over).
    last_progress: Millis,
    /// Wait before sending unacknowledged records again; doubles while the hub stays silent.
    resend_wait: Millis,
    /// A backfill request is out since then.
    backfill_since: Option<Millis>,
    /// The hub's head as last heard in a message it sealed.
    hub_head: u64,
    /// When the hub was last asked, gap or not.
    last_backfill: Millis,
    /// Which refusals raise an alert now.
    throttle: AlertThrottle,
    /// The hub head last published as this checkpoint's witness.
    witnessed: Option<String>,
    /// The `issued_at` of the last backfill request: its reply's sealed time answers it.
    asked_at: Option<i64>,
    /// The newest hub status seen (its time), so a replayed one changes nothing.
    hub_status_at: i64,
    /// Backfill requests made: each one's nonce.
    asked: u64,
    /// Signed heads already verified.
    verified: Verified,
    /// Acknowledgements already opened.
    opened: Opened,
}

impl PostSync {
    /// A machine that starts with nothing in memory at `now`.
    pub fn new(cfg: PostSyncConfig, now: Now) -> PostSync {
        let topics = SyncTopics::new(&cfg.prefix);
        let resend_wait = cfg.resend_after_ms;
        if cfg.in_force.current().registry.hub_keys() == 0 {
            warn!(
                "sync: the policy names no hub key ([[hubs]]); no acknowledgement or feed from the hub can be accepted"
            );
        }
        PostSync {
            cfg,
            topics,
            connected: false,
            sent_upto: 0,
            last_progress: now.mono,
            resend_wait,
            backfill_since: None,
            hub_head: 0,
            last_backfill: now.mono,
            throttle: AlertThrottle::default(),
            witnessed: None,
            asked_at: None,
            hub_status_at: 0,
            asked: 0,
            verified: Verified::default(),
            opened: Opened::default(),
        }
    }

    /// Whether what it remembers is within its bounds (the simulation
    /// checks it after every step): verified heads, opened acknowledgements.
    pub fn within_bounds(&self) -> Result<(), String> {
        let heads = 2 * super::verify::VERIFIED_KEPT + 1;
        if self.verified.len() > heads || self.opened.len() > super::protocol::OPENED_KEPT {
            return Err(format!(
                "{} verified heads and {} opened acknowledgements remembered",
                self.verified.len(),
                self.opened.len()
            ));
        }
        Ok(())
    }

    /// The topics it speaks on.
    pub fn topics(&self) -> &SyncTopics {
        &self.topics
    }

    /// Handles one input; what the driver must do, in order, goes to `out`.
    pub fn handle(
        &mut self,
        input: Input<'_>,
        ledger: &mut Ledger,
        now: Now,
        out: &mut Vec<Output>,
    ) {
        match input {
            Input::Connected => {
                self.connected = true;
                self.cfg
                    .telemetry
                    .link(crate::telemetry::LinkName::Uplink, true, now.unix);
                self.sent_upto = 0;
                self.last_progress = now.mono;
                self.resend_wait = self.cfg.resend_after_ms;
                self.backfill_since = None;
                let cp = &self.cfg.checkpoint;
                for t in [
                    self.topics.ack(cp),
                    self.topics.backfill_reply(cp),
                    self.topics.feed(),
                    self.topics.alerts(),
                    self.topics.witness_filter(),
                    self.topics.hub_status(),
                ] {
                    out.push(Output::Subscribe(t));
                }
                if self.cfg.policy_root.is_some() {
                    out.push(Output::Subscribe(self.topics.policy()));
                }
                self.send_records(ledger, now, out);
                self.maybe_backfill(ledger, now, true, out);
            }
            Input::Lost => {
                self.connected = false;
                self.cfg
                    .telemetry
                    .link(crate::telemetry::LinkName::Uplink, false, now.unix);
            }
            Input::Message { topic, payload } => self.on_message(ledger, topic, payload, now, out),
            // Design: new consumptions go at once, not at the next tick, so
            // another post knows of them within a fraction of a second.
            Input::Committed if self.connected => self.send_records(ledger, now, out),
            Input::Tick if self.connected => {
                self.send_records(ledger, now, out);
                // Design: the witness goes out at most once a tick, not after
                // every feed message: every post reads every other's, so it is
                // the one message whose traffic grows with the square of posts.
                self.witness(ledger, out);
                // Design: besides gaps it sees in the feed, the post asks the
                // hub now and then anyway, which is how it learns of entries
                // it never heard of (a broker restart without persistence, a
                // ledger restored from a copy).
                let ask_every = self.cfg.interval_ms.saturating_mul(10);
                let periodic = now.mono.saturating_sub(self.last_backfill) >= ask_every;
                self.maybe_backfill(ledger, now, periodic, out);
            }
            Input::Committed | Input::Tick => {}
            Input::NotSent => {
                self.sent_upto = 0;
                self.witnessed = None;
                self.backfill_since = None;
            }
        }
    }

    /// Sends own records not yet in the hub's log, in batches, each with
    /// its inclusion proof against the newest signed head and, once, the
    /// proof that this head extends the one the hub holds.
    fn send_records(&mut self, ledger: &mut Ledger, now: Now, out: &mut Vec<Output>) {
        let depth = self.cfg.telemetry.outbox_depth();
        if depth > 0 && now.mono.saturating_sub(self.last_progress) >= self.resend_wait {
            // Nothing of ours reached the hub's log for a while: the hub (or a
            // bridge) may have lost them. Design: the wait doubles (to 64×
            // `resend_after`), so a hub that is down does not find its queue
            // flooded with copies.
            debug!(
                depth,
                wait_ms = self.resend_wait,
                "sync: no progress; sending the outbox again"
            );
            self.sent_upto = 0;
            self.last_progress = now.mono;
            self.resend_wait = (self.resend_wait * 2).min(self.cfg.resend_after_ms * 64);
        }
        let holds = ledger
            .hub_holds_head()
            .ok()
            .flatten()
            .and_then(|n| Head::peek(n.as_bytes()).ok());
        for _ in 0..BATCHES_PER_TICK {
            let batch = match ledger.outbox_proofs(self.sent_upto, RECORDS_PER_BATCH) {
                Ok(Some(b)) => b,
                Ok(None) => return,
                Err(e) => {
                    error!(error = %e, "sync: cannot read the outbox");
                    return;
                }
            };
            if batch.records.is_empty() {
                return;
            }
            // Design: the proof starts from the newest of this log's heads
            // the hub acknowledged, and names this log's root there, so a
            // head of that size the hub holds with another root is proven
            // a fork (someone else signed it with this checkpoint's key).
            let consistency = match &holds {
                Some(h) if h.size > 0 && h.size < batch.size => {
                    match (
                        ledger.log_consistency(h.size, batch.size),
                        ledger.log_root(h.size),
                    ) {
                        (Ok(proof), Ok(root)) => Some(Consistency {
                            from: h.size,
                            root: Some(root),
                            proof,
                        }),
                        (Err(e), _) | (_, Err(e)) => {
                            warn!(error = %e, "sync: cannot prove this log extends the head the hub holds");
                            None
                        }
                    }
                }
                _ => None,
            };
            // Design: a message carries what fits in MESSAGE_MAX (records
            // are bounded where the gate makes them, so one always fits).
            let mut room = MESSAGE_MAX.saturating_sub(
                batch.head.len() + consistency.as_ref().map_or(0, |c| 34 * c.proof.len() + 64) + 64,
            );
            let mut records = Vec::with_capacity(batch.records.len());
            let mut last = self.sent_upto;
            for (seq, n, leaf, proof) in batch.records {
                let cost = leaf.len() + 34 * proof.len() + 16;
                if !records.is_empty() && cost > room {
                    break;
                }
                room = room.saturating_sub(cost);
                last = seq;
                records.push((n, leaf, proof));
            }
            let msg = Records {
                head: batch.head,
                consistency,
                records,
            };
            out.push(Output::Publish {
                topic: self.topics.records(&self.cfg.checkpoint),
                payload: msg.encode(),
                retain: false,
            });
            if let Err(e) = ledger.note_sent(last) {
                error!(error = %e, "sync: cannot note what was sent");
            }
            self.sent_upto = last;
        }
    }

    /// Asks the hub for feed entries this ledger lacks: on a timer, or when a gap shows.
    ///
    /// Design: at most one request is out at a time, and one not prompted
    /// by a reply waits [`BACKFILL_GAP`] after the last; a reply asks again
    /// only if it brought something ([`PostSync::on_feed`]). So no message,
    /// true or forged, can start an exchange that does not end.
    fn maybe_backfill(&mut self, ledger: &Ledger, now: Now, periodic: bool, out: &mut Vec<Output>) {
        if self
            .backfill_since
            .is_some_and(|t| now.mono.saturating_sub(t) < BACKFILL_TIMEOUT)
        {
            return;
        }
        if !periodic && now.mono.saturating_sub(self.last_backfill) < BACKFILL_GAP {
            return;
        }
        let high_water = match ledger.feed_high_water() {
            Ok(h) => h,
            Err(e) => {
                error!(error = %e, "sync: cannot read the feed high-water mark");
                return;
            }
        };
        // The periodic request doubles as learning the hub's head after a restart.
        if !periodic && self.hub_head <= high_water {
            return;
        }
        let req = Backfill {
            checkpoint: self.cfg.checkpoint.clone(),
            after: high_water,
            limit: BATCH_MAX as u32,
            issued_at: now.unix,
            nonce: self.asked,
        };
        self.asked += 1;
        out.push(Output::Publish {
            topic: self.topics.backfill(),
            payload: req.seal(&self.cfg.key),
            retain: false,
        });
        self.backfill_since = Some(now.mono);
        self.last_backfill = now.mono;
        self.asked_at = Some(now.unix);
    }

    /// The hub's sealed time in a backfill reply: judges this clock, if it
    /// answers the request this checkpoint made last (not a replay).
    fn judge_clock(&mut self, sealed: &[u8], registry: &Registry, now: Now) {
        let Ok(t) = HubTime::open(sealed, registry, now.unix) else {
            // A hub key retired meanwhile, or a forgery: no judgement either way.
            return;
        };
        if t.checkpoint != self.cfg.checkpoint || Some(t.asked_at) != self.asked_at {
            return;
        }
        self.asked_at = None;
        let status = judge(t.asked_at, now.unix, t.hub_time, registry.skew());
        debug!(sample = %sample_words(t.asked_at, now.unix, t.hub_time), ?status, "sync: the hub's time");
        self.cfg.telemetry.clock.set(status);
    }

    fn on_message(
        &mut self,
        ledger: &mut Ledger,
        topic: &str,
        payload: &[u8],
        now: Now,
        out: &mut Vec<Output>,
    ) {
        let cp = &self.cfg.checkpoint;
        if topic == self.topics.ack(cp) {
            self.on_ack(ledger, payload, now, out);
        } else if topic == self.topics.feed() || topic == self.topics.backfill_reply(cp) {
            let reply = topic != self.topics.feed();
            self.on_feed(ledger, payload, reply, now, out);
        } else if topic == self.topics.policy() {
            self.on_policy(ledger, payload, now, out);
        } else if topic == self.topics.alerts() {
            self.on_hub_alert(ledger, payload, now, out);
        } else if topic == self.topics.hub_status() {
            self.on_hub_status(ledger, payload, now, out);
        } else if topic.ends_with("/sync/witness") && topic != self.topics.witness(cp) {
            self.on_witness(ledger, payload, now, out);
        }
    }

    fn on_ack(&mut self, ledger: &mut Ledger, payload: &[u8], now: Now, out: &mut Vec<Output>) {
        let cp = self.cfg.checkpoint.clone();
        let policy = self.cfg.in_force.current().version;
        let ack = match self.opened.ack(payload, &self.registry(), now.unix, policy) {
            Ok(a) => a,
            Err(e) => {
                return self.refuse(ledger, "ack", e.code(), &e.to_string(), payload, now, out);
            }
        };
        if ack.checkpoint != cp {
            let why = format!(
                "an acknowledgement for `{}` on this checkpoint's topic",
                ack.checkpoint
            );
            return self.refuse(ledger, "ack", "wrong_checkpoint", &why, payload, now, out);
        }
        // Design: an acknowledgement deletes nothing (records leave the
        // outbox only once seen in the hub's signed log); it says which of
        // our heads the hub holds, so the next proof starts from it. It can
        // only move that forward, and only to a head of this very log: a
        // replayed or delayed one changes nothing, and one naming a head of
        // another log under this key says the key is used elsewhere.
        if let Some(note) = &ack.post_head {
            let policy = self.cfg.in_force.current().version;
            let head = match self.verified.post_head(note, &self.registry(), policy) {
                Ok((signer, h)) if signer == cp => h,
                Ok((signer, _)) => {
                    let why = format!("an acknowledgement naming a head of `{signer}`");
                    return self.refuse(ledger, "ack", "wrong_checkpoint", &why, payload, now, out);
                }
                Err(e) => {
                    let why =
                        format!("the hub says it holds a head this checkpoint did not sign: {e}");
                    return self.refuse(ledger, "ack", "bad_signature", &why, payload, now, out);
                }
            };
            match ledger.holds_head(&head) {
                Ok(true) => {
                    let held = ledger
                        .hub_holds_head()
                        .ok()
                        .flatten()
                        .and_then(|n| Head::peek(n.as_bytes()).ok())
                        .map_or(0, |h| h.size);
                    if head.size > held
                        && let Err(e) = ledger.set_hub_holds_head(note)
                    {
                        error!(error = %e, "sync: cannot keep the head the hub holds");
                    }
                }
                Ok(false) => {
                    let detail = format!(
                        "the hub holds a head of {} entries under this checkpoint's key that this checkpoint never signed: the key is being used elsewhere (or this ledger was restored from an older copy); what it signs counts as uses, never frees a license",
                        head.size
                    );
                    self.foreign_head(ledger, note, &detail, now, out);
                    return;
                }
                Err(e) => error!(error = %e, "sync: cannot compare the hub's head with this log"),
            }
        }
        self.cfg.telemetry.synced(now.unix);
        debug!(
            contiguous = ack.contiguous,
            "sync: hub acknowledged records"
        );
    }

    /// Raises (once per head) that a head under this checkpoint's key is
    /// not of its log: the key is in someone else's hands.
    fn foreign_head(
        &mut self,
        ledger: &mut Ledger,
        note: &str,
        detail: &str,
        now: Now,
        out: &mut Vec<Output>,
    ) {
        let alert = equivocation::foreign_head(&self.cfg.checkpoint, note, detail, now.unix);
        if self.queue_alert(ledger, &alert, now, out) {
            error!(%detail, "alert: this checkpoint's key signs outside this checkpoint");
            self.cfg.telemetry.refused("ack", "foreign_head");
        }
    }

    fn on_feed(
        &mut self,
        ledger: &mut Ledger,
        payload: &[u8],
        reply: bool,
        now: Now,
        out: &mut Vec<Output>,
    ) {
        let registry = self.registry();
        let feed = match Feed::decode(payload) {
            Ok(f) => f,
            Err(e) => {
                return self.refuse(
                    ledger,
                    "feed",
                    "unreadable",
                    &e.to_string(),
                    payload,
                    now,
                    out,
                );
            }
        };
        let policy = self.cfg.in_force.current().version;
        let checked = match check_feed_with(&feed, &registry, &mut self.verified, policy) {
            Ok(c) => c,
            Err(e) => {
                let code = match e {
                    crate::merkle::head::HeadError::Unverified { .. } => "bad_signature",
                    crate::merkle::head::HeadError::WrongLog { .. } => "wrong_log",
                    crate::merkle::head::HeadError::Malformed(_) => "unreadable",
                };
                return self.refuse(ledger, "feed", code, &e.to_string(), payload, now, out);
            }
        };
        if reply {
            self.backfill_since = None;
            if let Some(t) = &feed.time {
                self.judge_clock(t, &registry, now);
            }
        }
        // Design: a reply carries the hub's newest head for this request:
        // it replaces what any feed message claimed, so a head far ahead
        // (forged with a stolen hub key, or a stale one) starts at most one
        // request, never a stream of them.
        self.hub_head = if reply {
            checked.hub_head.size
        } else {
            self.hub_head.max(checked.hub_head.size)
        };
        for (_, code, why) in &checked.refused {
            self.refuse(ledger, "feed", code, why, payload, now, out);
        }
        let before = ledger.feed_high_water().unwrap_or(0);
        let hub_head = (&checked.hub_head, checked.hub_note.as_str());
        let stored = match ledger.store_feed(&checked.entries, Some(hub_head), now.unix) {
            Ok(o) => o,
            Err(e) => {
                error!(error = %e, "sync: cannot store feed entries; the hub will be asked again");
                return;
            }
        };
        let progress = stored.stored > 0 || stored.high_water > before;
        if stored.stored > 0 {
            debug!(
                stored = stored.stored,
                high_water = stored.high_water,
                "sync: stored feed entries"
            );
            self.cfg.telemetry.synced(now.unix);
        }
        if stored.included > 0 {
            let left = ledger.outbox_depth().unwrap_or(0);
            self.cfg
                .telemetry
                .outbox(left, ledger.oldest_unsynced().unwrap_or(None));
            self.last_progress = now.mono;
            self.resend_wait = self.cfg.resend_after_ms;
        }
        self.conflicts(ledger, &stored.conflicts, payload, now, out);
        for p in stored.publications {
            warn!(
                "alert: a license consumed here was also consumed at another checkpoint (double use)"
            );
            out.push(Output::Alert(p));
        }
        // A reply that brought nothing ends the exchange until the next
        // periodic request, whatever head it claims.
        if !reply || progress {
            self.maybe_backfill(ledger, now, false, out);
        }
    }

    /// The hub came back: what waits goes at once, not after the back-off.
    fn on_hub_status(
        &mut self,
        ledger: &mut Ledger,
        payload: &[u8],
        now: Now,
        out: &mut Vec<Output>,
    ) {
        let Ok(status) = HubStatus::open(payload, &self.registry(), now.unix) else {
            // Unsealed or stale: a hub status proves nothing, and costs nothing to ignore.
            self.cfg.telemetry.refused("hub_status", "bad_signature");
            return;
        };
        if status.issued_at <= self.hub_status_at {
            return;
        }
        self.hub_status_at = status.issued_at;
        if status.state == "online" {
            info!(kid = %status.kid, "sync: the hub is back; sending what waits");
            self.sent_upto = 0;
            self.last_progress = now.mono;
            self.resend_wait = self.cfg.resend_after_ms;
            if self.connected {
                self.send_records(ledger, now, out);
                self.maybe_backfill(ledger, now, true, out);
            }
        }
    }

    /// Publishes (retained) the newest hub head the replica matched, so
    /// other checkpoints can check the hub shows them the same history.
    fn witness(&mut self, ledger: &Ledger, out: &mut Vec<Output>) {
        let Ok(Some(note)) = ledger.newest_hub_head() else {
            return;
        };
        if self.witnessed.as_deref() == Some(note.as_str()) {
            return;
        }
        out.push(Output::Publish {
            topic: self.topics.witness(&self.cfg.checkpoint),
            payload: note.clone().into_bytes(),
            retain: true,
        });
        self.witnessed = Some(note);
    }

    /// Another checkpoint's witnessed hub head: checked against this replica.
    fn on_witness(&mut self, ledger: &mut Ledger, payload: &[u8], now: Now, out: &mut Vec<Output>) {
        let note = String::from_utf8_lossy(payload).into_owned();
        let policy = self.cfg.in_force.current().version;
        let head = match self.verified.hub_head(&note, &self.registry(), policy) {
            Ok(h) => h,
            Err(e) => {
                let why = e.to_string();
                return self.refuse(ledger, "witness", "bad_signature", &why, payload, now, out);
            }
        };
        match ledger.witness_hub_head(&head, &note, now.unix) {
            Ok(conflicts) => self.conflicts(ledger, &conflicts, payload, now, out),
            Err(e) => error!(error = %e, "sync: cannot keep a witnessed hub head"),
        }
    }

    /// Raises what a feed or a witnessed head contradicted, or showed.
    fn conflicts(
        &mut self,
        ledger: &mut Ledger,
        conflicts: &[FeedConflict],
        payload: &[u8],
        now: Now,
        out: &mut Vec<Output>,
    ) {
        for c in conflicts {
            match c {
                FeedConflict::GlobalNumber { .. } => {
                    let why = c.to_string();
                    self.refuse(ledger, "feed", "conflicting_entry", &why, payload, now, out)
                }
                FeedConflict::Equivocation {
                    checkpoint,
                    pair,
                    own,
                    ..
                } => {
                    let ev = Evidenced::Records(pair.clone());
                    let mut alert =
                        equivocation::alert(checkpoint, &ev, &self.cfg.checkpoint, now.unix);
                    if *own {
                        alert.detail = Some(c.to_string());
                        error!(detail = %c, "alert: this checkpoint's key signs outside this checkpoint");
                    } else {
                        warn!(detail = %c, "alert: a checkpoint's key signed two histories");
                    }
                    self.queue_alert(ledger, &alert, now, out);
                }
                FeedConflict::ForeignOwn { head, .. } => {
                    self.foreign_head(ledger, head, &c.to_string(), now, out)
                }
                FeedConflict::LostOwn { .. } | FeedConflict::HubLog { .. } => {
                    let heads = match c {
                        FeedConflict::HubLog { head, earlier, .. } => {
                            let mut h = vec![head.clone()];
                            h.extend(earlier.clone());
                            h
                        }
                        FeedConflict::LostOwn { head, .. } => {
                            let mut h = vec![head.clone()];
                            h.extend(ledger.log_head().ok().flatten().map(|x| x.1));
                            h
                        }
                        _ => Vec::new(),
                    };
                    let alert = log_inconsistent_alert(
                        &self.cfg.checkpoint,
                        &c.to_string(),
                        heads,
                        now.unix,
                    );
                    error!(detail = %c, "alert: a log is inconsistent");
                    self.cfg.telemetry.refused("feed", "log_inconsistent");
                    self.queue_alert(ledger, &alert, now, out);
                }
            }
        }
    }

    /// A `double_use` alert from the hub counts only through its evidence:
    /// every record in it verified, two or more for one license. The alert
    /// stored and passed on is rebuilt from those records.
    fn on_hub_alert(
        &mut self,
        ledger: &mut Ledger,
        payload: &[u8],
        now: Now,
        out: &mut Vec<Output>,
    ) {
        let alert = match serde_json::from_slice::<Alert>(payload) {
            Ok(a) => a,
            Err(e) => {
                let why = format!("not an alert: {e}");
                return self.refuse(ledger, "alert", "unreadable", &why, payload, now, out);
            }
        };
        // Design: an alert counts only through its evidence, rebuilt from it.
        let checked = match alert.kind {
            AlertKind::DoubleUse => {
                let policy = self.cfg.in_force.current().version;
                let registry = self.registry();
                proven_double_use_with(&alert, &registry, now.unix, &mut self.verified, policy)
            }
            AlertKind::LogEquivocation => {
                equivocation::verify(&alert, &self.registry(), "hub", now.unix)
            }
            // The hub's other alerts concern the hub (records it refused).
            _ => return,
        };
        match checked {
            Ok(rebuilt) => {
                if self.queue_alert(ledger, &rebuilt, now, out) {
                    warn!(
                        kind = rebuilt.kind.as_str(),
                        license_id = rebuilt.license_id.as_deref().unwrap_or("-"),
                        signer = rebuilt.signer.as_deref().unwrap_or("-"),
                        "alert: reported by the hub, evidence verified"
                    );
                }
            }
            Err(why) => self.refuse(ledger, "alert", "unproven_alert", &why, payload, now, out),
        }
    }

    /// Applies a signed policy bundle if it verifies and may replace the
    /// policy in force ([`crate::in_force`]); keeps it in the ledger.
    fn on_policy(&mut self, ledger: &mut Ledger, bundle: &[u8], now: Now, out: &mut Vec<Output>) {
        let Some(root) = &self.cfg.policy_root else {
            return;
        };
        let p = match crate::bundle::open(bundle, root) {
            Ok(p) => p,
            Err(e) => {
                let current = self.cfg.in_force.current().version;
                warn!(error = %e, current, "policy bundle refused; keeping the current policy");
                return self.refuse(
                    ledger,
                    "policy",
                    "bad_bundle",
                    &e.to_string(),
                    bundle,
                    now,
                    out,
                );
            }
        };
        let version = p.version;
        // The decision stages watch the policy in force; putting it there is all.
        match self.cfg.in_force.offer(p, now.unix) {
            Ok(_) => {
                if let Err(e) = ledger.store_policy_bundle(version, bundle, now.unix) {
                    error!(error = %e, "policy bundle verified but not stored; applying it anyway");
                }
                info!(version, "signed policy bundle accepted");
            }
            // The retained bundle comes again on every connection.
            Err(crate::in_force::Refusal::NotNewer { offered, in_force })
                if offered == in_force => {}
            Err(e) => {
                warn!(error = %e, "policy bundle refused; keeping the current policy");
                self.cfg.telemetry.refused("policy", "not_admissible");
            }
        }
    }

    fn registry(&self) -> Registry {
        self.cfg.in_force.current().registry.clone()
    }

    /// Stores an alert once and hands it to the driver; false if it was held already.
    fn queue_alert(
        &mut self,
        ledger: &mut Ledger,
        alert: &Alert,
        now: Now,
        out: &mut Vec<Output>,
    ) -> bool {
        match ledger.queue_sync_alert(alert, now.unix) {
            Ok(Some(p)) => {
                out.push(Output::Alert(p));
                true
            }
            Ok(None) => false,
            Err(e) => {
                error!(error = %e, "sync: cannot store an alert");
                false
            }
        }
    }

    /// A refused message or record: counted always, logged and alerted
    /// (`refused_record`, with the payload's SHA-256) at most once a minute
    /// per kind of message and reason.
    #[allow(clippy::too_many_arguments)]
    fn refuse(
        &mut self,
        ledger: &mut Ledger,
        message: &'static str,
        reason: &'static str,
        detail: &str,
        payload: &[u8],
        now: Now,
        out: &mut Vec<Output>,
    ) {
        self.cfg.telemetry.refused(message, reason);
        let Some(held_back) = self.throttle.admit(message, reason, now.unix) else {
            return;
        };
        let detail = bounded_detail(detail);
        warn!(message, reason, %detail, held_back, "sync: refused");
        let alert = refused_alert(
            &self.cfg.checkpoint,
            message,
            reason,
            &detail,
            held_back,
            payload,
            now.unix,
        );
        self.queue_alert(ledger, &alert, now, out);
    }
}

#[cfg(test)]
mod tests;
