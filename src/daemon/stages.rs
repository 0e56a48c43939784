//! The connection task's way into the stages: work goes to the verify
//! stage, except a declaration that arrives alone while that stage holds
//! nothing, which goes straight to the ledger stage and is checked there.
//!
//! Design: at a quiet gate every thread a declaration passes through is a
//! sleep and a wake-up, which on a virtual machine cost more CPU than the
//! signature check; skipping the verify thread saves one of each. Order is
//! kept: the shortcut is taken only when every piece of work handed to the
//! verify stage has already been passed on to the ledger stage's queue.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::mpsc;

use super::messages::*;

/// Senders to both stages, and what the verify stage still holds.
#[derive(Clone)]
pub(super) struct Stages {
    verify: mpsc::Sender<Work>,
    ledger: std::sync::mpsc::SyncSender<Verified>,
    /// Pieces of work sent to the verify stage and not yet passed on.
    in_verify: Arc<AtomicUsize>,
}

impl Stages {
    /// Senders to the two stages; `in_verify` is shared with the verify stage.
    pub(super) fn new(
        verify: mpsc::Sender<Work>,
        ledger: std::sync::mpsc::SyncSender<Verified>,
        in_verify: Arc<AtomicUsize>,
    ) -> Stages {
        Stages {
            verify,
            ledger,
            in_verify,
        }
    }

    /// Hands `w` on without waiting; `alone` says nothing else is waiting
    /// to go. Gives it back when neither stage has room.
    // Design: the work comes back by value, as the channels give it, rather
    // than boxed: an allocation per declaration to shorten a rare path.
    #[allow(clippy::result_large_err)]
    pub(super) fn try_send(&self, w: Work, alone: bool) -> Result<(), Work> {
        let w = match w {
            Work::Declaration(r, delivered) if alone && self.verify_idle() => {
                match self.ledger.try_send(unchecked(r, delivered)) {
                    Ok(()) => return Ok(()),
                    Err(std::sync::mpsc::TrySendError::Full(v))
                    | Err(std::sync::mpsc::TrySendError::Disconnected(v)) => back_to_work(v),
                }
            }
            w => w,
        };
        self.in_verify.fetch_add(1, Ordering::AcqRel);
        self.verify.try_send(w).map_err(|e| {
            self.in_verify.fetch_sub(1, Ordering::AcqRel);
            match e {
                mpsc::error::TrySendError::Full(w) | mpsc::error::TrySendError::Closed(w) => w,
            }
        })
    }

    /// Room in the verify stage's queue, once there is some.
    pub(super) async fn reserve(self) -> Option<(Stages, mpsc::OwnedPermit<Work>)> {
        let permit = self.verify.clone().reserve_owned().await.ok()?;
        Some((self, permit))
    }

    /// Sends `w` to the verify stage through a permit from [`Stages::reserve`].
    pub(super) fn send_reserved(&self, permit: mpsc::OwnedPermit<Work>, w: Work) {
        self.in_verify.fetch_add(1, Ordering::AcqRel);
        permit.send(w);
    }

    fn verify_idle(&self) -> bool {
        self.in_verify.load(Ordering::Acquire) == 0
    }
}

/// A declaration for the ledger stage to check itself.
fn unchecked(r: Received, delivered: Vec<i64>) -> Verified {
    Verified {
        declarations: vec![r],
        prepared: Vec::new(),
        delivered,
        resend: None,
        new_policy: None,
    }
}

fn back_to_work(mut v: Verified) -> Work {
    match v.declarations.pop() {
        Some(r) => Work::Declaration(r, v.delivered),
        None => Work::Delivered(v.delivered),
    }
}

/// Checks the declarations of `batch` that came without their check (see
/// [`Stages`]), under the policy the ledger stage is deciding by.
pub(super) fn complete(batch: &mut Verified, policy: &crate::policy::Policy, max_bytes: usize) {
    let from = batch.prepared.len();
    for r in &batch.declarations[from.min(batch.declarations.len())..] {
        let p = crate::gate::prepare(&r.publish.payload, policy, max_bytes);
        batch.prepared.push(p);
    }
}
