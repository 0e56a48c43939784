//! An officer's resolution of a held shipment: release, refuse or seize.
//!
//! [`resolve`] is pure, like the decision engine; [`apply`] runs it in one
//! ledger transaction, so a resolution and a redelivery of the same
//! declaration (or a second officer's resolution) are serialised by
//! SQLite's write lock and the later sees what the earlier wrote.

use crate::clock::{UnixTime, to_rfc3339};
use crate::decision::{self, Context, Decision, LedgerFacts};
use crate::declaration::ParsedDeclaration;
use crate::ledger::{Held, Identity, Ledger, LedgerError, PublicationKind};
use crate::policy::Policy;
use crate::verdict::{Alert, HoldOutcome, Reason, ReasonCode, Resolution, Verdict, VerdictKind};

/// Most characters kept of an officer's note.
pub const NOTE_MAX: usize = 2_000;

/// What an officer asks.
#[derive(Debug, Clone)]
pub struct Request {
    /// The held declaration.
    pub declaration_id: String,
    /// What the inspection found.
    pub outcome: HoldOutcome,
    /// The officer's id.
    pub officer: String,
    /// Why, in their words.
    pub note: String,
}

/// Why a resolution was not recorded; nothing was written.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    /// No verdict for that declaration id here.
    #[error("declaration {0} has no verdict at this post")]
    Unknown(String),
    /// Its standing verdict is not a hold.
    #[error("declaration {id} is not on hold: its verdict is {verdict}")]
    NotOnHold {
        /// The declaration.
        id: String,
        /// Its standing verdict.
        verdict: String,
    },
    /// Another officer (or this one) resolved it already.
    #[error("declaration {id} was already resolved: {outcome} by officer {officer} at {at}")]
    AlreadyResolved {
        /// The declaration.
        id: String,
        /// What was decided.
        outcome: String,
        /// By whom.
        officer: String,
        /// When (RFC 3339 UTC).
        at: String,
    },
    /// Released, it would still be refused: the license is used, expired,
    /// does not cover the goods…; the shipment stays on hold.
    #[error("declaration {id} cannot be released: {}; it stays on hold (refuse or seize it)", reasons.iter().map(|r| r.detail.as_str()).collect::<Vec<_>>().join("; "))]
    CannotRelease {
        /// The declaration.
        id: String,
        /// Why a release would be refused.
        reasons: Vec<Reason>,
    },
    /// Held before this version kept held declarations.
    #[error(
        "declaration {0} was held before this version kept held declarations: it can be refused or seized, not released"
    )]
    NotKept(String),
    /// The officer's id or note is missing.
    #[error("an officer id and a note are both required")]
    Incomplete,
}

/// A resolution could not be recorded.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// Refused: the ledger is unchanged.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The ledger failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// The held declaration, read back with its token opened.
pub struct Reopened {
    /// The declaration.
    pub parsed: ParsedDeclaration,
    /// Its token, opened against the policy's issuer keys.
    pub token: Option<Result<crate::token::VerifiedToken, crate::token::TokenError>>,
}

/// Decides a resolution (pure): the verdict that replaces the hold, or why there is none.
pub fn resolve(
    request: &Request,
    standing: Option<&Verdict>,
    held: Option<&Reopened>,
    policy: &Policy,
    facts: &LedgerFacts,
    ctx: &Context,
) -> Result<Decision, Refusal> {
    let id = &request.declaration_id;
    if request.officer.trim().is_empty() || request.note.trim().is_empty() {
        return Err(Refusal::Incomplete);
    }
    let standing = standing.ok_or_else(|| Refusal::Unknown(id.clone()))?;
    if let Some(r) = &standing.resolution {
        return Err(Refusal::AlreadyResolved {
            id: id.clone(),
            outcome: r.outcome.as_str().to_owned(),
            officer: r.officer.clone(),
            at: standing.decided_at.clone(),
        });
    }
    if standing.verdict != VerdictKind::Hold {
        return Err(Refusal::NotOnHold {
            id: id.clone(),
            verdict: standing.verdict.as_str().to_owned(),
        });
    }
    let resolution = Resolution {
        outcome: request.outcome,
        officer: request.officer.trim().to_owned(),
        note: crate::throttle::truncate(request.note.trim(), NOTE_MAX).to_owned(),
        held_at: standing.decided_at.clone(),
    };
    let (code, verb) = match request.outcome {
        HoldOutcome::Release => {
            let held = held.ok_or_else(|| Refusal::NotKept(id.clone()))?;
            let mut d =
                decision::decide_release(&held.parsed, held.token.as_ref(), policy, facts, ctx);
            let Decision::New {
                verdict,
                claims_declaration_id,
                ..
            } = &mut d
            else {
                return Err(Refusal::Unknown(id.clone()));
            };
            if !verdict.verdict.passes() {
                return Err(Refusal::CannotRelease {
                    id: id.clone(),
                    reasons: verdict.reasons.clone(),
                });
            }
            verdict.resolution = Some(resolution);
            // It takes the hold's place as the standing verdict (the caller's update).
            *claims_declaration_id = false;
            return Ok(d);
        }
        HoldOutcome::Refuse => (ReasonCode::RefusedByOfficer, "refused"),
        HoldOutcome::Seize => (ReasonCode::Seized, "seized"),
    };
    let verdict = Verdict {
        verdict: VerdictKind::Rejected,
        reasons: vec![Reason::new(
            code,
            format!(
                "{verb} by officer {} after inspection: {}",
                resolution.officer, resolution.note
            ),
        )],
        checkpoint: ctx.checkpoint.to_owned(),
        decided_at: to_rfc3339(ctx.now),
        resolution: Some(resolution),
        ..standing.clone()
    };
    Ok(Decision::New {
        alert: Alert::for_verdict(&verdict),
        verdict,
        consume: None,
        claims_declaration_id: false,
    })
}

/// What a recorded resolution produced.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The verdict that replaced the hold (published by the daemon).
    pub verdict: Verdict,
    /// The alert it raised (a seizure), if any.
    pub alert: Option<Alert>,
    /// The consumption record's number, when released with a license.
    pub consumed_seq: Option<u64>,
}

/// Resolves a hold in one transaction: the new verdict, the consumption of
/// a released license, its alert, and their publications, which the daemon
/// picks up and sends.
pub fn apply(
    ledger: &mut Ledger,
    policy: &Policy,
    identity: &Identity,
    request: &Request,
    now: UnixTime,
) -> Result<Resolved, ResolveError> {
    let mut batch = ledger.begin(identity)?;
    let standing = batch.standing(&request.declaration_id)?;
    let held = match batch.held(&request.declaration_id)? {
        Some(Held { declaration, token }) => ParsedDeclaration::from_stored(&declaration, token)
            .ok()
            .map(|parsed| {
                let token = parsed
                    .declaration
                    .license
                    .as_ref()
                    .map(|l| crate::token::open(&l.0, |kid| policy.issuer_key(kid)));
                Reopened { parsed, token }
            }),
        None => None,
    };
    let license_id = held
        .as_ref()
        .and_then(|h| h.token.as_ref())
        .and_then(|t| t.as_ref().ok())
        .map(|t| t.license.license_id.clone());
    let facts = batch.facts(&request.declaration_id, license_id.as_deref())?;
    let ctx = Context {
        checkpoint: &identity.checkpoint,
        now,
        clock: batch.clock,
    };
    let (standing_verdict, content_hash) = match standing {
        Some((v, h)) => (Some(v), h),
        None => (None, [0; 32]),
    };
    let decision = resolve(
        request,
        standing_verdict.as_ref(),
        held.as_ref(),
        policy,
        &facts,
        &ctx,
    )?;
    let recorded = batch.record_resolution(&decision, content_hash, identity, now)?;
    let verdict = decision.verdict().clone();
    if let Some(json) = &recorded.verdict_json {
        batch.enqueue_for_daemon(PublicationKind::Verdict, json)?;
    }
    if let Some(a) = &recorded.alert {
        batch.enqueue_for_daemon(
            PublicationKind::Alert,
            &serde_json::to_string(a).unwrap_or_default(),
        )?;
    }
    batch.commit()?;
    Ok(Resolved {
        verdict,
        alert: recorded.alert,
        consumed_seq: recorded.consumed_seq,
    })
}

#[cfg(test)]
#[path = "holds_tests.rs"]
mod tests;
