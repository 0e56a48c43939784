//! What the daemon's stages hand each other, and every bound on what they hold.

use rumqttc::v5::mqttbytes::v5::Publish;

use crate::gate;

// Design: declarations are nearly all of the work; boxing them would cost
// an allocation each to save a few bytes on the rare other variants.
#[allow(clippy::large_enum_variant)]
pub(super) enum Work {
    /// A declaration, with the acknowledged publications (see
    /// [`Work::Delivered`]) that travel with it, so both are one hand-over.
    Declaration(Received, Vec<i64>),
    /// Publications the broker acknowledged: their queue rows can go.
    Delivered(Vec<i64>),
    /// Publish the queued messages with ids above this (0: start over).
    Resend(i64),
    /// A newer signed policy to decide under from now on.
    Policy(Box<crate::policy::Policy>),
}

/// A declaration and the connection it arrived on.
pub(super) struct Received {
    pub(super) publish: Publish,
    /// Which connection delivered it: a PUBACK is only valid on that one.
    pub(super) connection: u64,
    /// When it arrived, for the decision latency metric.
    pub(super) at: std::time::Instant,
}

/// A PUBACK owed for a committed declaration: only what the client needs
/// to send it.
///
/// Design: not the whole `Received` (240 bytes): in a flood the PUBACKs
/// wait behind the client's other requests, and 131,000 of them held the
/// whole messages, 63 MB, in a burst of 200,000.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct OwedAck {
    pub(super) pkid: u16,
    pub(super) qos: rumqttc::v5::mqttbytes::QoS,
    /// Which connection delivered it: a PUBACK is only valid on that one.
    pub(super) connection: u64,
}

impl OwedAck {
    /// The PUBACK owed for `r`.
    pub(super) fn of(r: &Received) -> Self {
        OwedAck {
            pkid: r.publish.pkid,
            qos: r.publish.qos,
            connection: r.connection,
        }
    }

    /// The message as the client's `try_ack` reads it (packet id and QoS).
    pub(super) fn as_publish(&self) -> Publish {
        let mut p = Publish::new("", self.qos, Vec::new(), None);
        p.pkid = self.pkid;
        p
    }
}

pub(super) struct Done {
    /// Declarations committed, in arrival order, payloads dropped.
    pub(super) acks: Vec<Received>,
    pub(super) publications: Vec<Publication>,
    /// Ledger totals after the commit.
    pub(super) counts: Counts,
    /// A re-send was cut at this id; ask for the rest once these are out.
    pub(super) more_after: Option<i64>,
    /// These publications were re-read from the ledger's queue.
    pub(super) resent: bool,
    /// The ledger stopped or resumed committing.
    pub(super) health: Option<LedgerHealth>,
}

/// A change in whether the ledger can commit.
#[derive(Debug, Clone)]
pub(super) enum LedgerHealth {
    /// It cannot (why, as SQLite says it); declarations wait unacknowledged.
    Fault(String),
    /// It commits again.
    Recovered,
}

impl Done {
    /// Only new counts.
    pub(super) fn counts(counts: Counts) -> Done {
        Done {
            acks: Vec::new(),
            publications: Vec::new(),
            counts,
            more_after: None,
            resent: false,
            health: None,
        }
    }
}

pub(super) use crate::ledger::{Publication, PublicationKind};

/// Most publications the connection task holds in memory, and the most
/// re-read from the ledger's queue at once. Beyond it, new ones stay in
/// the ledger's queue (where they are durable anyway) and are re-read once
/// those held have gone out.
pub(super) const RESEND_MAX: usize = 4096;

/// Events from the broker the MQTT session holds before it stops reading:
/// the connection task's read pause reaches the socket through it.
pub(super) const BROKER_EVENTS: usize = 64;
/// Capacity of the queues between the connection task and the worker.
pub(super) const QUEUE: usize = 4096;
/// Most work the connection task holds while the worker's queue is full.
/// When it is reached the daemon stops reading from the broker until half
/// of it has gone to the worker: TCP then holds the broker back.
///
/// Design: a broker should keep no more than its in-flight window
/// unacknowledged with us, but mosquitto 2.0.11 (Debian 12) was measured
/// sending 50,000 in a burst. Dropping the connection instead (as this
/// once did) made it redeliver them all at once, again and again.
pub(super) const BACKLOG_MAX: usize = 2048;
/// The same bound in payload bytes.
pub(super) const BACKLOG_BYTES: usize = 8 * 1024 * 1024;

/// Ledger totals and the policy in force, as the status reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Counts {
    pub(super) verdicts: u64,
    pub(super) consumed: u64,
    pub(super) outbox: u64,
    pub(super) policy_version: u64,
}

/// One batch after the CPU-bound stage, in arrival order.
pub(super) struct Verified {
    pub(super) declarations: Vec<Received>,
    pub(super) prepared: Vec<gate::Prepared>,
    pub(super) delivered: Vec<i64>,
    pub(super) resend: Option<i64>,
    pub(super) new_policy: Option<Box<crate::policy::Policy>>,
}

impl Verified {
    /// Whether `next` may join this batch's transaction: only while no
    /// re-send or policy change has to happen between the two.
    /// Both must be checked already: one the ledger stage checks itself is
    /// checked under the policy in force when it is decided, alone.
    pub(super) fn can_take(&self, next: &Verified) -> bool {
        self.resend.is_none()
            && self.new_policy.is_none()
            && next.resend.is_none()
            && self.is_checked()
            && next.is_checked()
    }

    /// Whether every declaration has its check (see [`super::stages::Stages`]).
    pub(super) fn is_checked(&self) -> bool {
        self.prepared.len() == self.declarations.len()
    }

    /// Appends `next` (checked with [`Verified::can_take`]); its policy
    /// change, if any, still comes after all these declarations.
    pub(super) fn take(&mut self, next: Verified) {
        self.declarations.extend(next.declarations);
        self.prepared.extend(next.prepared);
        self.delivered.extend(next.delivered);
        self.new_policy = next.new_policy;
    }
}

/// Batches that may wait between the two stages: one being verified while
/// one commits is the overlap that matters.
pub(super) const STAGED_BATCHES: usize = 2;
