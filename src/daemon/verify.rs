//! The CPU-bound stage: parses declarations and checks their tokens on every core.

use tokio::sync::mpsc;

use crate::gate;

use super::messages::*;

/// Takes the next batch and joins to it the batches verified while the last
/// commit ran (group commit: one transaction, one fsync); a batch that
/// cannot join is kept in `carried` for the next turn. `None` once the
/// verify stage has stopped.
pub(super) fn next_batch(
    rx: &std::sync::mpsc::Receiver<Verified>,
    carried: &mut Option<Verified>,
    batch_max: usize,
) -> Option<Verified> {
    let mut batch = match carried.take() {
        Some(b) => b,
        None => rx.recv().ok()?,
    };
    while batch.declarations.len() < batch_max {
        match rx.try_recv() {
            Ok(next) if batch.can_take(&next) => batch.take(next),
            Ok(next) => {
                *carried = Some(next);
                break;
            }
            Err(_) => break,
        }
    }
    Some(batch)
}

/// The CPU-bound stage: gathers what arrived together into a batch, parses
/// and verifies its declarations on every core, and hands it on in order.
///
/// Design: it runs beside the ledger stage, so the signature checks of one
/// batch overlap the commit (fsync) of the one before.
pub(super) fn verify_stage(
    mut policy: crate::policy::Policy,
    max_bytes: usize,
    batch_max: usize,
    mut rx: mpsc::Receiver<Work>,
    tx: std::sync::mpsc::SyncSender<Verified>,
    in_verify: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use rayon::prelude::*;
    while let Some(first) = rx.blocking_recv() {
        // Pieces of work taken, given back to the count once passed on.
        let mut taken = 0;
        let mut declarations = Vec::new();
        let mut delivered = Vec::new();
        let mut resend = None;
        let mut new_policy = None;
        let mut next = Some(first);
        while let Some(w) = next {
            taken += 1;
            match w {
                Work::Declaration(r, ids) => {
                    declarations.push(r);
                    delivered.extend(ids);
                }
                Work::Delivered(ids) => delivered.extend(ids),
                Work::Resend(after) => resend = Some(after),
                // Declarations before it are decided under the old policy, the rest under it.
                Work::Policy(p) => new_policy = Some(p),
            }
            next = if declarations.len() < batch_max && new_policy.is_none() {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        // One alone is checked here: handing it to the pool costs a
        // thread wake-up, which is most of a quiet gate's latency.
        let prepare = |r: &Received| gate::prepare(&r.publish.payload, &policy, max_bytes);
        let prepared: Vec<gate::Prepared> = if declarations.len() == 1 {
            declarations.iter().map(prepare).collect()
        } else {
            declarations.par_iter().map(prepare).collect()
        };
        if let Some(p) = &new_policy {
            policy = (**p).clone();
        }
        let batch = Verified {
            declarations,
            prepared,
            delivered,
            resend,
            new_policy,
        };
        if tx.send(batch).is_err() {
            return;
        }
        // Design: after the send, so the connection task sees the stage idle
        // only once all it was given is in the ledger stage's queue.
        in_verify.fetch_sub(taken, std::sync::atomic::Ordering::AcqRel);
    }
}
