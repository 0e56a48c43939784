//! The connection task's state, without I/O: what it holds for the broker
//! (publications, PUBACK order, hold and re-send) and when it reads
//! (the backlog bound and the read pause). [`SessionState::on_event`] takes
//! the MQTT session's events and says what the connection task must do;
//! all of it is unit-tested without a broker.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use super::messages::*;
use crate::mqtt::SessionEvent;

/// What the connection task must do after an event, in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Action {
    /// Tell telemetry the broker is up.
    LinkUp,
    /// Subscribe to the declarations topic.
    Subscribe,
    /// Publish the retained status.
    Announce,
    /// Tell telemetry the broker is down.
    LinkDown,
}

/// Everything the connection task knows of the broker and of the work in
/// hand; changed only by events, with the time passed in.
pub(super) struct SessionState {
    /// What is held for the broker.
    pub(super) out: Outbound,
    /// Work waiting for room in the worker's queue.
    pub(super) backlog: Backlog,
    /// Whether the broker is read.
    pub(super) reads: Reads,
    /// Publications acknowledged, waiting to travel to the worker.
    pub(super) delivered: Acknowledged,
    /// Numbers the connections, so a PUBACK never goes out on a later one.
    pub(super) connection: u64,
    /// Connected, as far as the events taken tell.
    pub(super) connected: bool,
    /// False once the daemon stops: nothing new is taken.
    pub(super) accepting: bool,
}

impl Default for SessionState {
    fn default() -> Self {
        SessionState {
            out: Outbound::default(),
            backlog: Backlog::default(),
            reads: Reads::default(),
            delivered: Acknowledged::default(),
            connection: 0,
            connected: false,
            accepting: true,
        }
    }
}

impl SessionState {
    /// Takes one event of the MQTT session at `now`; `declarations` is the
    /// topic declarations arrive on.
    pub(super) fn on_event(
        &mut self,
        ev: SessionEvent,
        declarations: &str,
        now: tokio::time::Instant,
    ) -> Vec<Action> {
        self.reads.polled();
        match ev {
            SessionEvent::Connected => {
                self.connected = true;
                self.connection += 1;
                // Queued publications are re-read from the ledger (Resend below).
                self.out.connected(self.accepting);
                if self.accepting {
                    // Deleted first, so what the broker already has is not read again.
                    self.backlog.push_delivered(&mut self.delivered);
                    self.backlog.push(Work::Resend(0));
                }
                vec![Action::LinkUp, Action::Subscribe, Action::Announce]
            }
            SessionEvent::Message(p) => {
                if self.accepting && crate::mqtt::topic_of(&p) == declarations {
                    let r = Received {
                        publish: p,
                        connection: self.connection,
                        at: now.into_std(),
                    };
                    self.backlog
                        .push(Work::Declaration(r, self.delivered.take()));
                }
                Vec::new()
            }
            SessionEvent::Sent(pkid) => {
                self.out.sent(pkid);
                Vec::new()
            }
            SessionEvent::Acknowledged(pkid) => {
                if let Some(id) = self.out.acknowledged(pkid)
                    && self.accepting
                {
                    self.delivered.add(id, now);
                    if self.delivered.ids.len() >= RESEND_MAX {
                        self.backlog.push_delivered(&mut self.delivered);
                    }
                }
                Vec::new()
            }
            SessionEvent::Lost => {
                // The session dropped rumqttc's copies; the durable ones are in the ledger.
                self.connected = false;
                self.out.lost();
                // The broker redelivers them.
                self.backlog.forget_declarations();
                vec![Action::LinkDown]
            }
            // A tracking session reports refusals as acknowledgements (logged there).
            SessionEvent::Refused(_) => Vec::new(),
        }
    }
}

/// How often the event loop is polled while reads are paused.
pub(super) const PAUSED_POLL_EVERY: Duration = Duration::from_millis(200);

/// What the connection task holds for the broker: what it still has to hand
/// to the client, and what the client has in flight for it.
#[derive(Default)]
pub(super) struct Outbound {
    /// PUBACKs for committed declarations, in arrival order.
    pub(super) acks: VecDeque<OwedAck>,
    /// Verdicts and alerts to publish: (queue id, kind, payload).
    pub(super) publications: VecDeque<Publication>,
    /// Alerts about the daemon itself, not queued in the ledger (it may be
    /// the ledger that fails): sent once, on this connection.
    pub(super) alerts: VecDeque<String>,
    /// Publications handed to the client, in order, until rumqttc gives them
    /// a packet id (`None`: not from the ledger's queue).
    pub(super) handed: VecDeque<Option<i64>>,
    /// Publications sent and not yet acknowledged, by packet id.
    pub(super) awaiting: HashMap<u16, Option<i64>>,
    /// Publications above this id are still in the ledger's queue only: ask
    /// for them once those held are out.
    pub(super) more_after: Option<i64>,
    /// True while publications are re-read from the ledger's queue (after a
    /// connect, or when more were made than are held): new ones are left
    /// there for the re-send to pick up, in order.
    pub(super) catching_up: bool,
    /// The newest publication id held (or already sent).
    pub(super) last_held: i64,
}

impl Outbound {
    /// A new connection: the client's in-flight state is gone, and queued
    /// publications are re-read from the ledger (`resending`: from the start).
    pub(super) fn connected(&mut self, resending: bool) {
        self.handed.clear();
        self.awaiting.clear();
        self.publications.clear();
        self.more_after = None;
        if resending {
            self.catching_up = true;
        }
    }

    /// The connection is gone. Unsent PUBACKs go too: the broker redelivers
    /// those declarations, and the ledger answers them with the stored verdict.
    pub(super) fn lost(&mut self) {
        self.handed.clear();
        self.awaiting.clear();
        self.acks.clear();
    }

    /// A message of the daemon's own (status, alert), not from the ledger's
    /// queue, was handed to the client.
    pub(super) fn handed_own(&mut self) {
        self.handed.push_back(None);
    }

    /// Whether one of the daemon's own messages still waits for a packet id.
    pub(super) fn own_in_hand(&self) -> bool {
        self.handed.contains(&None)
    }

    /// rumqttc gave the oldest publication handed to it this packet id.
    pub(super) fn sent(&mut self, pkid: u16) {
        if let Some(id) = self.handed.pop_front() {
            self.awaiting.insert(pkid, id);
        }
    }

    /// The broker acknowledged `pkid`: the queue id it was sent from, if any.
    pub(super) fn acknowledged(&mut self, pkid: u16) -> Option<i64> {
        self.awaiting.remove(&pkid).flatten()
    }

    /// Takes what the ledger stage committed or re-read. New publications
    /// are held only while the re-send has caught up and they fit in
    /// [`RESEND_MAX`]; otherwise they are left in the ledger's queue and a
    /// re-send after the newest held picks them up, in order.
    pub(super) fn take(
        &mut self,
        acks: Vec<Received>,
        publications: Vec<Publication>,
        more_after: Option<i64>,
        resent: bool,
    ) {
        self.more_after = more_after.or(self.more_after);
        self.acks.extend(acks.iter().map(OwedAck::of));
        let newest = publications.last().map(|p| p.id);
        let hold = if resent {
            self.catching_up = more_after.is_some();
            true
        } else if self.catching_up {
            false
        } else if self.publications.len() + publications.len() > RESEND_MAX {
            self.catching_up = true;
            self.more_after = Some(self.last_held);
            false
        } else {
            true
        };
        if hold {
            self.last_held = self.last_held.max(newest.unwrap_or(0));
            self.publications.extend(publications);
        }
    }

    /// Where the next re-send starts, once everything held is out.
    pub(super) fn resend_due(&mut self) -> Option<i64> {
        if self.publications.is_empty() {
            self.more_after.take()
        } else {
            None
        }
    }
}

/// Whether the event loop is polled for more from the broker.
///
/// Design: reads pause while the backlog is full and resume once it is
/// half empty, so a backlog at the edge does not flap. While paused the
/// loop is still polled once every [`PAUSED_POLL_EVERY`], so pings, the
/// status and alerts (say, of a full disk that stalls the worker) still go
/// out; each such poll admits at most one message.
pub(super) struct Reads {
    pub(super) reading: bool,
    pub(super) poll_once: bool,
}

impl Default for Reads {
    fn default() -> Self {
        Reads {
            reading: true,
            poll_once: false,
        }
    }
}

impl Reads {
    /// Pauses reads when the backlog is full, resumes them when it is half empty.
    pub(super) fn follow(&mut self, backlog: &Backlog) {
        if self.reading && backlog.is_full() {
            self.reading = false;
            tracing::debug!(
                backlog = backlog.items.len(),
                "backlog full: not reading from the broker until the worker catches up"
            );
        } else if !self.reading && backlog.is_half_empty() {
            self.reading = true;
        }
        if self.reading {
            self.poll_once = false;
        }
    }

    pub(super) fn paused(&self) -> bool {
        !self.reading
    }

    /// A pause interval has passed: one poll is allowed.
    pub(super) fn allow_one(&mut self) {
        self.poll_once = true;
    }

    /// Whether the event loop may be polled now; `rush` polls it while paused.
    pub(super) fn may_poll(&self, rush: bool) -> bool {
        self.reading || self.poll_once || rush
    }

    /// The event loop was polled.
    pub(super) fn polled(&mut self) {
        self.poll_once = false;
    }
}

/// Work waiting for room in the worker's queue, bounded by count and bytes.
#[derive(Default)]
pub(super) struct Backlog {
    pub(super) items: VecDeque<Work>,
    pub(super) bytes: usize,
}

impl Backlog {
    pub(super) fn push(&mut self, w: Work) {
        self.bytes += work_bytes(&w);
        self.items.push_back(w);
    }

    /// Queues the acknowledged publications held so far, if any.
    pub(super) fn push_delivered(&mut self, delivered: &mut Acknowledged) {
        if let Some(w) = delivered.work() {
            self.push(w);
        }
    }

    pub(super) fn pop(&mut self) -> Option<Work> {
        let w = self.items.pop_front()?;
        self.bytes -= work_bytes(&w);
        Some(w)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub(super) fn is_full(&self) -> bool {
        self.items.len() >= BACKLOG_MAX || self.bytes >= BACKLOG_BYTES
    }

    pub(super) fn is_half_empty(&self) -> bool {
        self.items.len() <= BACKLOG_MAX / 2 && self.bytes <= BACKLOG_BYTES / 2
    }

    /// Moves what fits into the stages' queues, keeping the order.
    pub(super) fn feed(&mut self, stages: &super::stages::Stages) {
        while let Some(w) = self.pop() {
            if let Err(w) = stages.try_send(w, self.items.is_empty()) {
                self.bytes += work_bytes(&w);
                self.items.push_front(w);
                return;
            }
        }
    }

    /// Declarations of a lost connection: the broker redelivers them (the
    /// acknowledgements they carried stay).
    pub(super) fn forget_declarations(&mut self) {
        self.items = std::mem::take(&mut self.items)
            .into_iter()
            .filter_map(|w| match w {
                Work::Declaration(_, ids) if ids.is_empty() => None,
                Work::Declaration(_, ids) => Some(Work::Delivered(ids)),
                other => Some(other),
            })
            .collect();
        self.bytes = self.items.iter().map(work_bytes).sum();
    }

    pub(super) fn clear(&mut self) {
        self.items.clear();
        self.bytes = 0;
    }
}

/// How long acknowledged publications wait for a declaration to travel
/// with before they go to the ledger on their own.
pub(super) const ACKED_IDLE: Duration = Duration::from_secs(1);

/// Publications the broker acknowledged, not yet handed to the worker.
///
/// Design: they travel with the next declaration, so both stages wake once
/// for the two and the deletion rides in that declaration's transaction (a
/// transaction of its own costs an fsync per declaration at a quiet gate);
/// only after [`ACKED_IDLE`] without one do they go alone. One lost only
/// means the message is published again.
#[derive(Default)]
pub(super) struct Acknowledged {
    pub(super) ids: Vec<i64>,
    /// When they go alone: [`ACKED_IDLE`] after the first was held.
    pub(super) due: Option<tokio::time::Instant>,
}

impl Acknowledged {
    pub(super) fn add(&mut self, id: i64, now: tokio::time::Instant) {
        if self.ids.is_empty() {
            self.due = Some(now + ACKED_IDLE);
        }
        self.ids.push(id);
    }

    pub(super) fn take(&mut self) -> Vec<i64> {
        self.due = None;
        std::mem::take(&mut self.ids)
    }

    /// All of them as work for the worker, if there are any.
    pub(super) fn work(&mut self) -> Option<Work> {
        (!self.ids.is_empty()).then(|| Work::Delivered(self.take()))
    }
}

pub(super) fn work_bytes(w: &Work) -> usize {
    match w {
        Work::Declaration(r, _) => r.publish.payload.len(),
        _ => 0,
    }
}
