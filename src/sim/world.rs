//! The simulated country: posts, hub processes, the broker between them,
//! and one queue of timed events that a seeded generator fills.

use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ed25519_dalek::SigningKey;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

use super::actors::{Act, Adversary};
use super::broker::{Broker, ClientId, Login, Msg, Refusal};
use super::check::Watch;
use super::fixtures::{self, EPOCH};
use super::{Options, Outcome, Violation};
use crate::clock::Now;
use crate::hub::http::HubTelemetry;
use crate::hub::intake::{Incoming, Intake, IntakeConfig};
use crate::hub::store::{SqliteStore, Store};
use crate::in_force::PolicyInForce;
use crate::ledger::{Identity, Ledger};
use crate::sync::post::{Input, Output, PostSync, PostSyncConfig};
use crate::telemetry::Telemetry;

/// The national broker's topic prefix.
pub(super) const PREFIX: &str = "permitgate";
/// The simulated broker's `message_size_limit`, bytes: above the sync
/// messages' own bound and far below the shipped 16 MB, so a message as
/// large as the broker takes stays cheap to simulate.
pub(super) const SIZE_LIMIT: usize = 2 << 20;
/// Messages the broker queues for a client that is away.
const QUEUE_LIMIT: usize = 1000;
/// How often a post's sync timer fires, ms.
const TICK_MS: u64 = 1_000;
/// Records not seen in the national log within this long go again, ms.
const RESEND_MS: u64 = 5_000;
/// Longest the healed country may take to settle, ms.
const SETTLE_MAX_MS: u64 = 900_000;

/// A part of the country that can crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Node {
    Post(usize),
    Hub(usize),
}

/// Something that happens at a moment.
pub(super) enum Ev {
    /// The broker hands a message to a client.
    Deliver { to: ClientId, msg: Msg },
    /// A post's sync timer.
    Tick(usize),
    /// A shipment arrives at a post's gate under a license.
    Declare {
        post: usize,
        license: usize,
        id: String,
    },
    /// A process dies: its memory is lost, its files are kept.
    Crash(Node),
    /// A process starts (again).
    Start(Node),
    /// A post's uplink goes down.
    Offline(usize),
    /// A post's uplink comes back.
    Online(usize),
    /// An adversary's move.
    Adversary(Act),
    /// The network heals: every process up, no more faults or attacks.
    Heal,
    /// Once healed: has the country settled?
    Settle,
}

/// A post: its ledger (kept across crashes), its sync machine (not).
pub(super) struct SimPost {
    pub id: String,
    pub key: SigningKey,
    pub ledger: Ledger,
    /// The simulation's own connection to the ledger, for the checks.
    pub db: rusqlite::Connection,
    pub machine: Option<PostSync>,
    pub telemetry: Arc<Telemetry>,
    pub in_force: Arc<PolicyInForce>,
    pub client: ClientId,
    /// Its uplink is cut (an outage), whether or not the process runs.
    pub cut: bool,
}

/// A hub process: its intake (lost in a crash) over the shared store.
pub(super) struct SimHub {
    pub kid: String,
    pub store: Store,
    pub intake: Option<Intake>,
    pub telemetry: Arc<HubTelemetry>,
    pub client: ClientId,
}

/// A license cleared at a post's gate.
#[derive(Debug, Clone)]
pub(super) struct Clearance {
    pub post: usize,
    pub license: usize,
}

/// One simulated country and its scenario.
pub struct World {
    pub(super) seed: u64,
    pub(super) opts: Options,
    pub(super) rng: ChaCha8Rng,
    pub(super) now: u64,
    queue: BTreeMap<(u64, u64), Ev>,
    next: u64,
    /// Deliveries scheduled and not yet made.
    in_flight: u64,
    pub(super) broker: Broker,
    pub(super) posts: Vec<SimPost>,
    pub(super) hubs: Vec<SimHub>,
    /// The hubs' shared store, as the checks read it (and what keeps it alive).
    pub(super) hub_db: rusqlite::Connection,
    pub(super) adversary: Adversary,
    pub(super) healed: bool,
    finished: bool,
    steps: u64,
    trace: Vec<String>,
    fingerprint: Sha256,
    pub(super) violation: Option<Violation>,
    pub(super) clearances: Vec<Clearance>,
    pub(super) watch: Watch,
    summary: String,
    pub(super) counts: super::Counts,
}

/// Names in-memory databases apart across threads and runs.
static DATABASES: AtomicU64 = AtomicU64::new(0);

fn memory_uri(what: &str) -> String {
    let n = DATABASES.fetch_add(1, Ordering::Relaxed);
    format!(
        "file:permitgate-sim-{}-{n}-{what}?mode=memory&cache=shared",
        std::process::id()
    )
}

/// Which empty database to start from.
#[derive(Clone, Copy)]
enum Template {
    Ledger,
    Hub,
}

thread_local! {
    /// An empty ledger and an empty hub store, migrated once per thread.
    static TEMPLATES: std::cell::RefCell<Option<(rusqlite::Connection, rusqlite::Connection)>> =
        const { std::cell::RefCell::new(None) };
}

/// A new in-memory database at `uri` holding an empty ledger's or hub
/// store's schema, copied page by page from a template (migrating each
/// anew was a tenth of a scenario); the connection keeps it alive.
fn database(uri: &str, kind: Template) -> Result<rusqlite::Connection, String> {
    TEMPLATES.with(|t| {
        let mut t = t.borrow_mut();
        if t.is_none() {
            let mut ledger = rusqlite::Connection::open_in_memory().map_err(|e| e.to_string())?;
            crate::ledger::schema::migrate(&mut ledger)?;
            let hub_uri = memory_uri("hub-template");
            let hub = rusqlite::Connection::open(&hub_uri).map_err(|e| e.to_string())?;
            SqliteStore::open(Path::new(&hub_uri)).map_err(|e| e.to_string())?;
            *t = Some((ledger, hub));
        }
        let Some((ledger, hub)) = t.as_ref() else {
            return Err("no template".into());
        };
        let src = match kind {
            Template::Ledger => ledger,
            Template::Hub => hub,
        };
        let mut dst = rusqlite::Connection::open(uri).map_err(|e| e.to_string())?;
        rusqlite::backup::Backup::new(src, &mut dst)
            .and_then(|b| b.run_to_completion(1 << 20, std::time::Duration::ZERO, None))
            .map_err(|e| e.to_string())?;
        Ok(dst)
    })
}

/// Polls a future that never waits (the hub's SQLite store answers at once).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        // Design: the SQLite store never awaits; if it did, the simulation
        // would no longer be deterministic, so it stops here.
        std::task::Poll::Pending => panic!("the hub's store awaited in the simulation"),
    }
}

impl World {
    /// The country and scenario of `seed`.
    pub fn new(seed: u64, opts: &Options) -> World {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let posts_n = [2, 3, 3, 4][rng.gen_range(0..4)];
        let hubs_n = if rng.gen_bool(0.3) { 2 } else { 1 };
        let mut broker = Broker::new(PREFIX, SIZE_LIMIT, QUEUE_LIMIT);
        let hub_uri = memory_uri("hub");
        let hub_db = match database(&hub_uri, Template::Hub) {
            Ok(c) => c,
            Err(e) => panic!("simulation: cannot open an in-memory database: {e}"),
        };
        let mut posts = Vec::new();
        for i in 0..posts_n {
            let id = fixtures::post_id(i);
            let uri = memory_uri(&id);
            let db = match database(&uri, Template::Ledger) {
                Ok(c) => c,
                Err(e) => panic!("simulation: cannot open an in-memory database: {e}"),
            };
            let ledger = match Ledger::open(Path::new(&uri), &id) {
                Ok(l) => l,
                Err(e) => panic!("simulation: cannot open a ledger in memory: {e}"),
            };
            let client = broker.client(Login::Post(id.clone()));
            posts.push(SimPost {
                key: fixtures::key(&id),
                telemetry: Telemetry::new(Path::new(&uri), true, EPOCH),
                in_force: PolicyInForce::new(fixtures::policy()),
                id,
                ledger,
                db,
                machine: None,
                client,
                cut: false,
            });
        }
        let mut hubs = Vec::new();
        for j in 0..hubs_n {
            let store = match SqliteStore::open(Path::new(&hub_uri)) {
                Ok(s) => Store::Sqlite(Box::new(s)),
                Err(e) => panic!("simulation: cannot open the hub's store in memory: {e}"),
            };
            hubs.push(SimHub {
                kid: fixtures::hub_kid(j),
                store,
                intake: None,
                telemetry: HubTelemetry::new(),
                client: broker.client(Login::Hub),
            });
        }
        let adversary = Adversary::new(&mut broker, &mut rng, &opts.moves, posts_n);
        let mut w = World {
            seed,
            opts: opts.clone(),
            rng,
            now: 0,
            queue: BTreeMap::new(),
            next: 0,
            in_flight: 0,
            broker,
            posts,
            hubs,
            hub_db,
            adversary,
            healed: false,
            finished: false,
            steps: 0,
            trace: Vec::new(),
            fingerprint: Sha256::new(),
            violation: None,
            clearances: Vec::new(),
            watch: Watch::default(),
            summary: String::new(),
            counts: super::Counts::default(),
        };
        w.plan();
        w
    }

    /// Fills the queue with the scenario: starts, ticks, shipments, faults, attacks.
    fn plan(&mut self) {
        let chaos = self.opts.chaos_ms;
        for j in 0..self.hubs.len() {
            let t = self.rng.gen_range(0..100);
            self.at(t, Ev::Start(Node::Hub(j)));
            if self.rng.gen_bool(0.3) {
                let down = self.rng.gen_range(0..chaos);
                let up = down + self.rng.gen_range(500..10_000);
                self.at(down, Ev::Crash(Node::Hub(j)));
                self.at(up, Ev::Start(Node::Hub(j)));
            }
        }
        let mut shipments = 0;
        for i in 0..self.posts.len() {
            let t = self.rng.gen_range(0..200);
            self.at(t, Ev::Start(Node::Post(i)));
            let first_tick = t + self.rng.gen_range(1..TICK_MS);
            self.at(first_tick, Ev::Tick(i));
            for n in 0..self.rng.gen_range(1..=4) {
                let t = self.rng.gen_range(0..chaos);
                let license = self.rng.gen_range(0..fixtures::LICENSES);
                let id = format!("SIM-{}-{n}", self.posts[i].id);
                self.at(
                    t,
                    Ev::Declare {
                        post: i,
                        license,
                        id,
                    },
                );
                shipments += 1;
            }
            if self.rng.gen_bool(0.5) {
                let down = self.rng.gen_range(0..chaos);
                let up = down + self.rng.gen_range(1_000..20_000);
                self.at(down, Ev::Offline(i));
                self.at(up, Ev::Online(i));
            }
            if self.rng.gen_bool(0.3) {
                let down = self.rng.gen_range(0..chaos);
                let up = down + self.rng.gen_range(500..10_000);
                self.at(down, Ev::Crash(Node::Post(i)));
                self.at(up, Ev::Start(Node::Post(i)));
            }
        }
        let acts = self.adversary.plan(&mut self.rng, chaos, self.posts.len());
        for (t, act) in acts {
            self.at(t, Ev::Adversary(act));
        }
        self.at(chaos, Ev::Heal);
        self.summary = format!(
            "{} posts, {} hub process(es), {shipments} shipments; {}",
            self.posts.len(),
            self.hubs.len(),
            self.adversary.describe()
        );
    }

    /// Schedules `ev` at `t` ms.
    pub(super) fn at(&mut self, t: u64, ev: Ev) {
        if matches!(ev, Ev::Deliver { .. }) {
            self.in_flight += 1;
        }
        self.queue.insert((t, self.next), ev);
        self.next += 1;
    }

    /// The time of the step being taken.
    pub(super) fn now(&self) -> Now {
        Now {
            mono: self.now,
            unix: EPOCH + (self.now / 1000) as i64,
        }
    }

    /// Runs the scenario to its end: settled after healing, or the first violation.
    pub fn run(mut self) -> Outcome {
        while let Some(((t, _), ev)) = self.queue.pop_first() {
            self.now = t;
            self.steps += 1;
            self.step(ev);
            if self.violation.is_some() || self.finished {
                break;
            }
        }
        if self.violation.is_none() && !self.finished {
            self.fail(
                "settles",
                "the queue ran dry before the country settled".into(),
            );
        }
        Outcome {
            seed: self.seed,
            steps: self.steps,
            violation: self.violation,
            trace: self.trace,
            fingerprint: self.fingerprint.finalize().into(),
            summary: self.summary,
            counts: self.counts,
        }
    }

    /// Notes what a step did, in the trace and the fingerprint.
    pub(super) fn note(&mut self, line: impl FnOnce() -> String) {
        let line = line();
        self.fingerprint.update(self.now.to_be_bytes());
        self.fingerprint.update(line.as_bytes());
        if self.opts.trace {
            self.trace.push(format!("{:>8} ms  {line}", self.now));
        }
    }

    /// Records the first invariant broken.
    pub(super) fn fail(&mut self, invariant: &'static str, detail: String) {
        if self.violation.is_none() {
            self.note(|| format!("VIOLATION {invariant}: {detail}"));
            self.violation = Some(Violation {
                invariant,
                at_ms: self.now,
                detail,
            });
        }
    }

    fn step(&mut self, ev: Ev) {
        match ev {
            Ev::Deliver { to, msg } => {
                self.in_flight -= 1;
                self.deliver(to, msg);
            }
            Ev::Tick(i) => {
                self.at(self.now + TICK_MS, Ev::Tick(i));
                self.post_input(i, Input::Tick);
            }
            Ev::Declare { post, license, id } => self.declare(post, license, &id),
            Ev::Crash(n) => self.crash(n),
            Ev::Start(n) => self.start(n),
            Ev::Offline(i) => {
                if !self.healed {
                    self.note(|| format!("{} uplink down", fixtures::post_id(i)));
                    self.posts[i].cut = true;
                    self.link(i);
                }
            }
            Ev::Online(i) => {
                self.note(|| format!("{} uplink up", fixtures::post_id(i)));
                self.posts[i].cut = false;
                self.link(i);
            }
            Ev::Adversary(act) => {
                if !self.healed {
                    super::actors::perform(self, act);
                }
            }
            Ev::Heal => self.heal(),
            Ev::Settle => {
                if self.settled() || self.now > self.opts.chaos_ms + SETTLE_MAX_MS {
                    super::check::at_rest(self);
                    self.finished = true;
                } else {
                    self.at(self.now + 1_000, Ev::Settle);
                }
            }
        }
    }

    fn heal(&mut self) {
        self.note(|| "the network heals: every process up, no more faults or attacks".into());
        self.healed = true;
        for j in 0..self.hubs.len() {
            if self.hubs[j].intake.is_none() {
                self.start(Node::Hub(j));
            }
        }
        for i in 0..self.posts.len() {
            self.posts[i].cut = false;
            if self.posts[i].machine.is_none() {
                self.start(Node::Post(i));
            } else {
                self.link(i);
            }
        }
        self.at(self.now + 1_000, Ev::Settle);
    }

    /// True once nothing is in flight and every post holds the whole national log with nothing left to send.
    fn settled(&mut self) -> bool {
        if self.in_flight > 0 {
            return false;
        }
        let size = super::check::national_size(self);
        self.posts.iter().all(|p| {
            p.ledger.outbox_depth().ok() == Some(0) && p.ledger.feed_high_water().ok() == Some(size)
        })
    }

    /// Connects or disconnects post `i`'s uplink to match its state.
    fn link(&mut self, i: usize) {
        let want = !self.posts[i].cut && self.posts[i].machine.is_some();
        let c = self.posts[i].client;
        if want && !self.broker.connected(c) {
            let queued = self.broker.connect(c);
            self.post_input(i, Input::Connected);
            for m in queued {
                self.deliver_later(c, m);
            }
        } else if !want && self.broker.connected(c) {
            self.broker.disconnect(c);
            self.post_input(i, Input::Lost);
        }
    }

    fn crash(&mut self, n: Node) {
        if self.healed {
            return;
        }
        self.note(|| format!("{n:?} crashes"));
        match n {
            Node::Post(i) => {
                self.posts[i].machine = None;
                self.broker.disconnect(self.posts[i].client);
            }
            Node::Hub(j) => {
                if self.hubs[j].intake.take().is_some() {
                    let c = self.hubs[j].client;
                    self.broker.disconnect(c);
                    // Its last will, sealed when it connected.
                    let will = crate::sync::protocol::HubStatus::offline(
                        &self.hubs[j].kid,
                        self.now().unix,
                    )
                    .seal(&self.hubs[j].kid, &fixtures::key(&self.hubs[j].kid));
                    self.publish(c, &format!("{PREFIX}/hub/status"), will, true);
                }
            }
        }
    }

    fn start(&mut self, n: Node) {
        let now = self.now();
        match n {
            Node::Post(i) => {
                if self.posts[i].machine.is_some() {
                    return;
                }
                self.note(|| format!("{} starts", fixtures::post_id(i)));
                let p = &mut self.posts[i];
                p.telemetry = Telemetry::new(Path::new(&p.id), true, now.unix);
                let outbox = p.ledger.outbox_depth().unwrap_or(0);
                p.telemetry
                    .outbox(outbox, p.ledger.oldest_unsynced().unwrap_or(None));
                p.machine = Some(PostSync::new(
                    PostSyncConfig {
                        checkpoint: p.id.clone(),
                        key: p.key.clone(),
                        prefix: PREFIX.into(),
                        interval_ms: TICK_MS,
                        resend_after_ms: RESEND_MS,
                        policy_root: None,
                        in_force: p.in_force.clone(),
                        telemetry: p.telemetry.clone(),
                    },
                    now,
                ));
                self.link(i);
            }
            Node::Hub(j) => {
                if self.hubs[j].intake.is_some() {
                    return;
                }
                self.note(|| format!("{} starts", fixtures::hub_kid(j)));
                self.watch.hub_started(j);
                let h = &mut self.hubs[j];
                let key = fixtures::key(&h.kid);
                if let Err(e) = block_on(h.store.ensure_head(&key, now.unix)) {
                    return self.fail("store_works", e.to_string());
                }
                let intake = Intake::new(IntakeConfig {
                    kid: h.kid.clone(),
                    key,
                    prefix: PREFIX.into(),
                    share_group: "hubs".into(),
                    policy_root: None,
                    in_force: PolicyInForce::new(fixtures::policy()),
                    telemetry: h.telemetry.clone(),
                });
                let subscriptions = intake.subscriptions();
                let status = intake.status(true, now.unix);
                h.intake = Some(intake);
                let c = h.client;
                let queued = self.broker.connect(c);
                for f in subscriptions {
                    for m in self.broker.subscribe(c, &f) {
                        self.deliver_later(c, m);
                    }
                }
                self.publish(c, &status.topic, status.payload, status.retain);
                for m in queued {
                    self.deliver_later(c, m);
                }
            }
        }
    }

    /// A shipment at post `i`'s gate: decided and committed by the real gate.
    fn declare(&mut self, i: usize, license: usize, id: &str) {
        if self.posts[i].machine.is_none() {
            return;
        }
        let cleared = match self.gate(i, license, id) {
            Ok((c, _)) => c,
            Err(e) => return self.fail("ledger_works", e),
        };
        self.note(|| {
            format!(
                "{} decides {id} under {}: {}",
                fixtures::post_id(i),
                fixtures::license_id(license),
                if cleared { "cleared" } else { "refused" }
            )
        });
        if cleared {
            self.clearances.push(Clearance { post: i, license });
            self.counts.clearances += 1;
            self.post_input(i, Input::Committed);
        }
    }

    /// Decides `id` under `license` at post `i`: whether it cleared, and
    /// the first reason code of a verdict that did not.
    pub(super) fn gate(
        &mut self,
        i: usize,
        license: usize,
        id: &str,
    ) -> Result<(bool, Option<&'static str>), String> {
        let now = self.now().unix;
        let prepared = fixtures::prepared(id, license);
        let p = &mut self.posts[i];
        let policy = p.in_force.current();
        let identity = Identity {
            checkpoint: p.id.clone(),
            key: p.key.clone(),
        };
        let mut batch = p.ledger.begin(&identity).map_err(|e| e.to_string())?;
        let out = crate::gate::decide_and_record(&mut batch, &prepared, &policy, &identity, now)
            .map_err(|e| e.to_string())?;
        batch.commit().map_err(|e| e.to_string())?;
        let cleared = out.recorded.consumed_seq.is_some();
        if cleared {
            p.telemetry.consumed_at(now, 1);
        }
        Ok((
            cleared,
            out.verdict.reasons.first().map(|r| r.code.as_str()),
        ))
    }

    /// Gives post `i`'s machine an input and does what it asks.
    fn post_input(&mut self, i: usize, input: Input<'_>) {
        let now = self.now();
        let p = &mut self.posts[i];
        let Some(machine) = p.machine.as_mut() else {
            return;
        };
        let mut out = Vec::new();
        machine.handle(input, &mut p.ledger, now, &mut out);
        let c = p.client;
        for o in out {
            match o {
                Output::Subscribe(f) => {
                    for m in self.broker.subscribe(c, &f) {
                        self.deliver_later(c, m);
                    }
                }
                Output::Publish {
                    topic,
                    payload,
                    retain,
                } => self.publish(c, &topic, payload, retain),
                Output::Alert(a) => super::check::post_alert(self, i, &a.payload),
            }
        }
        super::check::after_post_step(self, i);
    }

    /// A client publishes; the broker routes it and the network carries it.
    pub(super) fn publish(&mut self, from: ClientId, topic: &str, payload: Vec<u8>, retain: bool) {
        let len = payload.len();
        let payload: Rc<[u8]> = Rc::from(payload);
        let genuine = !self.adversary.owns(from);
        self.note(|| format!("client {from} publishes {topic} ({len} B)"));
        if genuine && len > crate::sync::protocol::MESSAGE_MAX {
            let max = crate::sync::protocol::MESSAGE_MAX;
            return self.fail(
                "messages_fit",
                format!("client {from} published {len} bytes on {topic}: above the {max} any sync message may have"),
            );
        }
        match self.broker.publish(from, topic, payload, retain) {
            Ok((m, to)) => {
                self.counts.messages += 1;
                // The outsider on the bridge sees everything the broker carries.
                if genuine {
                    self.adversary.capture(&m);
                }
                for c in to {
                    self.deliver_later(c, m.clone());
                }
            }
            Err(Refusal::TooLarge) if genuine => self.fail(
                "messages_fit",
                format!("client {from} published {len} bytes on {topic}: above the broker's limit of {SIZE_LIMIT}"),
            ),
            Err(Refusal::NotAuthorized) if genuine => self.fail(
                "acl_respected",
                format!("client {from} may not publish on {topic}"),
            ),
            Err(e) => self.note(|| format!("the broker refuses it: {e:?}")),
        }
    }

    /// Schedules a delivery with the network's latency, and in the chaos its faults.
    pub(super) fn deliver_later(&mut self, to: ClientId, msg: Msg) {
        let mut latency = self.rng.gen_range(1..30);
        if !self.healed {
            let roll: f64 = self.rng.r#gen();
            if roll < 0.01 {
                self.note(|| format!("the network loses message {} to client {to}", msg.id));
                return;
            }
            if roll < 0.04 {
                latency += self.rng.gen_range(200..3_000);
            }
            if self.rng.gen_bool(0.02) {
                let again = latency + self.rng.gen_range(1..2_000);
                self.at(
                    self.now + again,
                    Ev::Deliver {
                        to,
                        msg: msg.clone(),
                    },
                );
            }
        }
        self.at(self.now + latency, Ev::Deliver { to, msg });
    }

    fn deliver(&mut self, to: ClientId, msg: Msg) {
        if !self.broker.connected(to) {
            // Not acknowledged: the broker keeps it for the next connection.
            self.broker.requeue(to, msg);
            return;
        }
        self.note(|| {
            format!(
                "client {to} receives message {} on {} ({} B)",
                msg.id,
                msg.topic,
                msg.payload.len()
            )
        });
        if let Some(i) = self.posts.iter().position(|p| p.client == to) {
            let input = Input::Message {
                topic: &msg.topic,
                payload: &msg.payload,
            };
            self.post_input(i, input);
        } else if let Some(j) = self.hubs.iter().position(|h| h.client == to) {
            self.hub_message(j, &msg);
        }
    }

    fn hub_message(&mut self, j: usize, msg: &Msg) {
        let now = self.now();
        let h = &mut self.hubs[j];
        let Some(intake) = h.intake.as_mut() else {
            return;
        };
        let refused_before = h.telemetry.refused_total();
        let incoming = [Incoming {
            topic: &msg.topic,
            payload: &msg.payload,
        }];
        let outs = match block_on(intake.handle_group(&mut h.store, &incoming, now)) {
            Ok(o) => o,
            Err(e) => return self.fail("store_works", e.to_string()),
        };
        let refused = h.telemetry.refused_total() - refused_before;
        self.counts.refused += refused;
        let c = h.client;
        super::check::after_hub_step(self, j, msg, refused, &outs);
        for o in outs {
            self.publish(c, &o.topic, o.payload, o.retain);
        }
    }
}
