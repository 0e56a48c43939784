//! One declaration from payload to committed verdict: decode, open the
//! token, ask the ledger, decide, record. The daemon and the command line
//! both go through here.

use sha2::{Digest, Sha256};

use crate::clock::UnixTime;
use crate::decision::{self, Context, Decision, LedgerFacts};
use crate::declaration::{self, MalformedDeclaration, ParsedDeclaration};
use crate::ledger::{Batch, Identity, Ledger, LedgerError, Recorded};
use crate::policy::Policy;
use crate::token::{self, TokenError, VerifiedToken};
use crate::verdict::{Alert, AlertKind, Verdict};

/// A payload after the CPU-bound work (parsing, signature check), before the ledger.
// Design: the malformed case is rare; keeping the common case unboxed avoids an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Prepared {
    /// A readable declaration and its token, if it carried one.
    Declaration {
        /// The declaration.
        parsed: ParsedDeclaration,
        /// The opened token.
        token: Option<Result<VerifiedToken, TokenError>>,
    },
    /// Not a readable declaration.
    Malformed {
        /// What was wrong.
        error: MalformedDeclaration,
        /// SHA-256 of the payload, for the alert when there is no id.
        payload_sha256: [u8; 32],
    },
}

/// The outcome of one declaration.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The verdict (new, or the stored one for a redelivery).
    pub verdict: Verdict,
    /// The alert raised, if any.
    pub alert: Option<Alert>,
    /// True when the stored verdict was returned and nothing was written.
    pub repeated: bool,
    /// Where it was recorded.
    pub recorded: Recorded,
}

/// Parses a payload and opens its token. Pure CPU work; safe to run on any thread.
pub fn prepare(payload: &[u8], policy: &Policy, max_bytes: usize) -> Prepared {
    match declaration::parse(payload, max_bytes) {
        Ok(parsed) => {
            let token = parsed
                .declaration
                .license
                .as_ref()
                .map(|l| token::open(&l.0, |kid| policy.issuer_key(kid)));
            Prepared::Declaration { parsed, token }
        }
        Err(error) => Prepared::Malformed {
            error,
            payload_sha256: Sha256::digest(payload).into(),
        },
    }
}

/// Decides a prepared payload against `facts` (pure).
pub fn decide(
    prepared: &Prepared,
    policy: &Policy,
    facts: &LedgerFacts,
    ctx: &Context,
) -> (Decision, Option<[u8; 32]>) {
    match prepared {
        Prepared::Declaration { parsed, token } => (
            decision::decide(parsed, token.as_ref(), policy, facts, ctx),
            Some(parsed.content_hash),
        ),
        Prepared::Malformed {
            error,
            payload_sha256,
        } => {
            let mut d = decision::malformed(
                error.declaration_id.clone(),
                &error.detail,
                policy.version,
                ctx,
            );
            if error.declaration_id.is_none()
                && let Decision::New { alert, .. } = &mut d
            {
                *alert = Some(Alert {
                    kind: AlertKind::UnreadablePayload,
                    checkpoint: ctx.checkpoint.to_owned(),
                    raised_at: crate::clock::to_rfc3339(ctx.now),
                    declaration_id: None,
                    license_id: None,
                    reasons: d_reasons(error),
                    payload_sha256: Some(hex::encode(payload_sha256)),
                    alert_id: None,
                    records: Vec::new(),
                    signer: None,
                    fork: None,
                    heads: Vec::new(),
                    detail: None,
                });
            }
            (d, None)
        }
    }
}

fn d_reasons(error: &MalformedDeclaration) -> Vec<crate::verdict::Reason> {
    vec![crate::verdict::Reason::new(
        crate::verdict::ReasonCode::Malformed,
        error.detail.clone(),
    )]
}

fn keys_of(prepared: &Prepared) -> Option<(&str, Option<&str>)> {
    match prepared {
        Prepared::Declaration { parsed, token } => Some((
            parsed.declaration.declaration_id.as_str(),
            token
                .as_ref()
                .and_then(|t| t.as_ref().ok())
                .map(|t| t.license.license_id.as_str()),
        )),
        Prepared::Malformed { .. } => None,
    }
}

/// Decides and records one prepared payload inside an open batch.
pub fn decide_and_record(
    batch: &mut Batch<'_>,
    prepared: &Prepared,
    policy: &Policy,
    identity: &Identity,
    now: UnixTime,
) -> Result<Outcome, LedgerError> {
    let facts = match keys_of(prepared) {
        Some((decl, lic)) => batch.facts(decl, lic)?,
        None => LedgerFacts::default(),
    };
    let ctx = Context {
        checkpoint: &identity.checkpoint,
        now,
        clock: batch.clock,
    };
    let (decision, hash) = decide(prepared, policy, &facts, &ctx);
    let mut recorded = batch.record(&decision, hash, identity, now)?;
    // A hold keeps its declaration, so an officer's release can decide it again.
    if let (Decision::New { verdict, .. }, Some(audit_id), Prepared::Declaration { parsed, .. }) =
        (&decision, recorded.audit_id, prepared)
        && verdict.verdict == crate::verdict::VerdictKind::Hold
    {
        batch.keep_hold(parsed, audit_id, now)?;
    }
    Ok(match decision {
        Decision::Repeat(verdict) => Outcome {
            verdict,
            alert: None,
            repeated: true,
            recorded,
        },
        Decision::New { verdict, .. } => Outcome {
            verdict,
            alert: recorded.alert.take(),
            repeated: false,
            recorded,
        },
    })
}

/// Decides without recording anything (a dry run); `ledger` may be absent.
pub fn dry_run(
    ledger: Option<&Ledger>,
    prepared: &Prepared,
    policy: &Policy,
    checkpoint: &str,
    now: UnixTime,
) -> Result<Verdict, LedgerError> {
    let facts = match (ledger, keys_of(prepared)) {
        (Some(l), Some((decl, lic))) => l.facts(decl, lic)?,
        _ => LedgerFacts::default(),
    };
    let ctx = Context {
        checkpoint,
        now,
        clock: crate::clock_trust::ClockStatus::Unknown,
    };
    Ok(decide(prepared, policy, &facts, &ctx).0.verdict().clone())
}
