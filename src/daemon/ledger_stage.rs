//! The ledger stage: decides a batch in one transaction, commits, and hands back PUBACKs and publications.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::clock::Clock;
use crate::gate;
use crate::ledger::{Identity, Ledger, LedgerError};
use crate::telemetry::Telemetry;

use super::{messages::*, verify::*};

/// What the ledger worker owns.
pub(super) struct Worker {
    /// Where the time is read.
    pub(super) clock: crate::clock::SharedClock,
    pub(super) ledger: Ledger,
    pub(super) policy: crate::policy::Policy,
    pub(super) identity: Identity,
    pub(super) counts: Counts,
    /// Set when the daemon stops: a batch held by a storage fault is let go.
    pub(super) stopping: Arc<AtomicBool>,
    pub(super) telemetry: Arc<Telemetry>,
    /// Most declarations joined into one transaction (the last batch joined may pass it).
    pub(super) batch_max: usize,
    /// Wakes the sync task when consumptions are committed.
    pub(super) committed: Arc<tokio::sync::Notify>,
    /// Largest declaration read, for those this stage checks itself.
    pub(super) max_bytes: usize,
}

/// The ledger stage: decides each verified batch in one transaction,
/// commits, and hands the connection task the PUBACKs and publications.
pub(super) fn ledger_stage(
    w: Worker,
    rx: std::sync::mpsc::Receiver<Verified>,
    tx: mpsc::Sender<Done>,
) {
    let Worker {
        mut ledger,
        mut policy,
        identity,
        mut counts,
        stopping,
        telemetry,
        batch_max,
        committed: committed_wake,
        clock,
        max_bytes,
    } = w;
    let mut carried = None;
    loop {
        if carried.is_none() {
            match rx.recv_timeout(PICK_UP_EVERY) {
                Ok(b) => carried = Some(b),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    let picked = pick_up(&mut ledger, &mut counts, &telemetry, &*clock);
                    if picked.outbox > 0 {
                        committed_wake.notify_one();
                    }
                    if !picked.publications.is_empty()
                        && tx
                            .blocking_send(Done {
                                publications: picked.publications,
                                ..Done::counts(counts)
                            })
                            .is_err()
                    {
                        return;
                    }
                    continue;
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
            }
        }
        let Some(mut batch) = next_batch(&rx, &mut carried, batch_max) else {
            return;
        };
        super::stages::complete(&mut batch, &policy, max_bytes);
        let Verified {
            mut declarations,
            prepared,
            mut delivered,
            resend,
            new_policy,
        } = batch;
        // Acknowledged publications ride in the decision transaction, but go
        // alone before a re-send reads the queue (what the broker has is not
        // read again to be sent once more).
        if resend.is_some() {
            delete_delivered(&mut ledger, &mut delivered);
        }
        if let Some(after) = resend {
            // Up to the newest: while a re-send runs, the connection task
            // leaves new publications to it rather than holding them twice.
            let publications = ledger
                .last_publication_id()
                .and_then(|upto| ledger.pending_publications(after, upto, RESEND_MAX))
                .unwrap_or_else(|e| {
                    error!(error = %e, "could not read the publication queue; it is sent again on the next connection");
                    Vec::new()
                });
            if after == 0 && !publications.is_empty() {
                info!(
                    count = publications.len(),
                    "publishing queued verdicts and alerts"
                );
            }
            let more_after = (publications.len() == RESEND_MAX)
                .then(|| publications.last().map(|p| p.id))
                .flatten();
            let done = Done {
                publications,
                more_after,
                resent: true,
                ..Done::counts(counts)
            };
            if tx.blocking_send(done).is_err() {
                return;
            }
        }
        // When it is not committed, nothing is acknowledged: the broker keeps
        // the declarations and redelivers them on the next connection.
        let committed = (!declarations.is_empty())
            .then(|| {
                commit_batch(
                    &mut ledger,
                    Rules {
                        policy: &policy,
                        clock_status: telemetry.clock.status(),
                        clock: &*clock,
                    },
                    &identity,
                    &prepared,
                    &delivered,
                    (counts, &stopping),
                    &tx,
                )
            })
            .flatten();
        // Nothing to ride in, or it was not committed: they go alone.
        if committed.is_none() {
            delete_delivered(&mut ledger, &mut delivered);
        }
        if let Some(committed) = committed {
            let Committed {
                resolved,
                publications,
                added,
                decided,
                alerts,
            } = committed;
            counts.verdicts += added.verdicts;
            counts.consumed += added.consumed;
            if announce(&publications[..resolved], &mut counts, &telemetry, &*clock) > 0 {
                committed_wake.notify_one();
            }
            telemetry.ledger_counts(counts.verdicts, counts.consumed);
            if added.outbox > 0 {
                telemetry.consumed_at(clock.now(), added.outbox);
                committed_wake.notify_one();
            }
            for (r, v) in declarations.iter().zip(decided) {
                if let Some(v) = v {
                    telemetry.decided(v, Some(r.at.elapsed()));
                }
            }
            for a in alerts {
                telemetry.alerted(a);
            }
            for r in &mut declarations {
                // Only the packet id is needed to acknowledge. Design: the
                // topic goes too: in MQTT 5 it is a slice of the read buffer,
                // and would keep the whole buffer alive until the PUBACK.
                r.publish.payload = Default::default();
                r.publish.topic = Default::default();
            }
            let done = Done {
                acks: declarations,
                publications,
                ..Done::counts(counts)
            };
            if tx.blocking_send(done).is_err() {
                return;
            }
        }
        if let Some(p) = new_policy {
            info!(
                from = policy.version,
                to = p.version,
                "policy updated; deciding under the new one from now on"
            );
            policy = *p;
            counts.policy_version = policy.version;
            telemetry.policy(policy.version, policy.issued_at, policy.max_age);
            if tx.blocking_send(Done::counts(counts)).is_err() {
                return;
            }
        }
    }
}

/// Deletes publications the broker acknowledged, in a transaction of their own.
pub(super) fn delete_delivered(ledger: &mut Ledger, delivered: &mut Vec<i64>) {
    if delivered.is_empty() {
        return;
    }
    if let Err(e) = ledger.delete_publications(delivered) {
        error!(error = %e, "could not clear published messages; they will be sent again");
    }
    delivered.clear();
}

/// How often an idle ledger stage looks for what officers wrote (a hold
/// resolved from the console or the command line) to publish it.
pub(super) const PICK_UP_EVERY: Duration = Duration::from_millis(250);

/// What officers wrote outside the stage since it last looked.
struct PickedUp {
    publications: Vec<Publication>,
    /// Consumption records among them (released holds), for the sync task.
    outbox: u64,
}

/// Takes the publications written outside the stage (an officer's hold resolution) and announces them.
fn pick_up(
    ledger: &mut Ledger,
    counts: &mut Counts,
    telemetry: &Telemetry,
    clock: &dyn Clock,
) -> PickedUp {
    let publications = ledger.take_unannounced().unwrap_or_else(|e| {
        error!(error = %e, "could not read officers' resolutions; they are published on the next connection");
        Vec::new()
    });
    let outbox = announce(&publications, counts, telemetry, clock);
    PickedUp {
        publications,
        outbox,
    }
}

/// Takes in publications officers wrote (each verdict a new audit row, a
/// release with a license a consumption): shows them on the console,
/// counts them, and returns the consumptions added.
fn announce(
    publications: &[Publication],
    counts: &mut Counts,
    telemetry: &Telemetry,
    clock: &dyn Clock,
) -> u64 {
    let mut consumed = 0;
    for p in publications {
        match p.kind {
            PublicationKind::Verdict => {
                if let Ok(v) = serde_json::from_str::<crate::verdict::Verdict>(&p.payload) {
                    info!(
                        declaration_id = v.declaration_id.as_deref().unwrap_or("-"),
                        verdict = v.verdict.as_str(),
                        officer = v.resolution.as_ref().map_or("-", |r| r.officer.as_str()),
                        "hold resolved by an officer"
                    );
                    counts.verdicts += 1;
                    if v.verdict == crate::verdict::VerdictKind::Cleared && v.license_id.is_some() {
                        consumed += 1;
                    }
                    telemetry.decided(Arc::new(v), None);
                }
            }
            PublicationKind::Alert => {
                if let Ok(a) = serde_json::from_str::<crate::verdict::Alert>(&p.payload) {
                    telemetry.alerted(Arc::new(a));
                }
            }
        }
    }
    if !publications.is_empty() {
        counts.consumed += consumed;
        telemetry.ledger_counts(counts.verdicts, counts.consumed);
        if consumed > 0 {
            telemetry.consumed_at(clock.now(), consumed);
        }
    }
    consumed
}

/// First and longest wait between attempts to commit while the ledger's storage fails.
pub(super) const FAULT_RETRY: (Duration, Duration) =
    (Duration::from_millis(250), Duration::from_secs(5));

/// What a batch is decided under: the policy, what the hub's signed time
/// says of this clock, and the clock itself.
#[derive(Clone, Copy)]
pub(super) struct Rules<'a> {
    /// The policy in force.
    pub(super) policy: &'a crate::policy::Policy,
    /// What the hub's signed time says of this clock.
    pub(super) clock_status: crate::clock_trust::ClockStatus,
    /// Where the time is read.
    pub(super) clock: &'a dyn Clock,
}

/// Decides and commits one batch. While the storage fails (disk full,
/// read-only) it holds the batch and tries again, reporting the fault and
/// the recovery to the connection task, until it commits or the daemon
/// stops; `None` when the batch was not committed.
///
/// Design: holding the batch (rather than dropping it) keeps its
/// declarations unacknowledged on the live connection, so the broker keeps
/// them and sends no more than its in-flight window; nothing is lost if the
/// process dies meanwhile.
pub(super) fn commit_batch(
    ledger: &mut Ledger,
    rules: Rules<'_>,
    identity: &Identity,
    prepared: &[gate::Prepared],
    delivered: &[i64],
    (counts, stopping): (Counts, &AtomicBool),
    tx: &mpsc::Sender<Done>,
) -> Option<Committed> {
    let mut wait = FAULT_RETRY.0;
    let mut faulted = false;
    loop {
        match decide_batch(ledger, rules, identity, prepared, delivered) {
            Ok(out) => {
                if faulted {
                    info!(
                        count = prepared.len(),
                        "ledger: committing again; the declarations held are decided"
                    );
                    let _ = tx.blocking_send(Done {
                        health: Some(LedgerHealth::Recovered),
                        ..Done::counts(counts)
                    });
                }
                return Some(out);
            }
            Err(e) if e.is_storage_fault() && !stopping.load(Ordering::Relaxed) => {
                if !faulted {
                    error!(error = %e, count = prepared.len(), "ledger: cannot commit; holding these declarations unacknowledged and retrying until it can");
                    faulted = true;
                    let _ = tx.blocking_send(Done {
                        health: Some(LedgerHealth::Fault(e.to_string())),
                        ..Done::counts(counts)
                    });
                }
                std::thread::sleep(wait);
                wait = (wait * 2).min(FAULT_RETRY.1);
            }
            Err(e) => {
                error!(error = %e, count = prepared.len(), "could not commit decisions; not acknowledging them");
                return None;
            }
        }
    }
}

pub(super) fn decide_batch(
    ledger: &mut Ledger,
    rules: Rules<'_>,
    identity: &Identity,
    prepared: &[gate::Prepared],
    delivered: &[i64],
) -> Result<Committed, LedgerError> {
    let Rules {
        policy,
        clock_status,
        clock,
    } = rules;
    let now = clock.now();
    let mut added = Counts {
        verdicts: 0,
        consumed: 0,
        outbox: 0,
        policy_version: policy.version,
    };
    let mut batch = ledger.begin(identity)?;
    batch.clock = clock_status;
    batch.delete_publications(delivered)?;
    // Design: taken under the batch's write lock, so an officer's resolution
    // is either here or committed after this batch, never missed between.
    let mut publications = batch.take_unannounced()?;
    let resolved = publications.len();
    publications.reserve(prepared.len());
    let mut decided = Vec::with_capacity(prepared.len());
    let mut alerts = Vec::new();
    // Design: logged only once committed. A batch held by a storage fault
    // is decided again on every attempt; its declarations are logged once.
    let mut logged = Vec::with_capacity(prepared.len());
    for prepared in prepared {
        let mut out = gate::decide_and_record(&mut batch, prepared, policy, identity, now)?;
        added.verdicts += u64::from(out.recorded.audit_id.is_some());
        let consumed = u64::from(out.recorded.consumed_seq.is_some());
        added.consumed += consumed;
        added.outbox += consumed;
        let v = &out.verdict;
        let json = out
            .recorded
            .verdict_json
            .take()
            .unwrap_or_else(|| serde_json::to_string(v).unwrap_or_default());
        publications.push(Publication {
            id: batch.enqueue_publication(PublicationKind::Verdict, &json)?,
            kind: PublicationKind::Verdict,
            payload: json,
        });
        let alert = match out.alert {
            Some(alert) => {
                let json = serde_json::to_string(&alert).unwrap_or_default();
                publications.push(Publication {
                    id: batch.enqueue_publication(PublicationKind::Alert, &json)?,
                    kind: PublicationKind::Alert,
                    payload: json,
                });
                let alert = Arc::new(alert);
                alerts.push(alert.clone());
                Some(alert)
            }
            None => None,
        };
        let verdict = Arc::new(out.verdict);
        // A redelivery's stored verdict is an answer, not a new decision.
        decided.push((!out.repeated).then(|| verdict.clone()));
        logged.push((verdict, out.repeated, alert));
    }
    batch.commit()?;
    for &(ref v, repeated, ref alert) in &logged {
        info!(
            declaration_id = v.declaration_id.as_deref().unwrap_or("-"),
            license_id = v.license_id.as_deref().unwrap_or("-"),
            verdict = v.verdict.as_str(),
            reasons = %v.reasons.iter().map(|r| r.code.as_str()).collect::<Vec<_>>().join(","),
            repeated,
            "decision"
        );
        if let Some(alert) = alert {
            warn!(declaration_id = v.declaration_id.as_deref().unwrap_or("-"), kind = ?alert.kind, "alert");
        }
    }
    Ok(Committed {
        resolved,
        publications,
        added,
        decided,
        alerts,
    })
}

/// What one committed batch produced.
pub(super) struct Committed {
    /// The first `resolved` publications are officers' resolutions picked up.
    pub(super) resolved: usize,
    pub(super) publications: Vec<Publication>,
    /// What the batch added to the ledger's totals.
    pub(super) added: Counts,
    /// Per declaration, in order: the new verdict (`None` for a repeated one).
    pub(super) decided: Vec<Option<Arc<crate::verdict::Verdict>>>,
    pub(super) alerts: Vec<Arc<crate::verdict::Alert>>,
}
