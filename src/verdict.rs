//! Verdicts and alerts: what the agent publishes and stores.

use serde::{Deserialize, Serialize};

/// The four outcomes a declaration can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerdictKind {
    /// Controlled goods, valid license, now consumed by this shipment.
    Cleared,
    /// No controlled goods; no license needed, none consumed.
    NotRequired,
    /// Refused, with reasons.
    Rejected,
    /// The agent cannot decide safely; an officer must inspect.
    Hold,
}

impl VerdictKind {
    /// The wire name (`cleared`, `not_required`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            VerdictKind::Cleared => "cleared",
            VerdictKind::NotRequired => "not_required",
            VerdictKind::Rejected => "rejected",
            VerdictKind::Hold => "hold",
        }
    }

    /// True for the outcomes that let the shipment pass.
    pub fn passes(self) -> bool {
        matches!(self, VerdictKind::Cleared | VerdictKind::NotRequired)
    }
}

/// Machine-readable reason codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonCode {
    /// The declaration or its token cannot be read.
    Malformed,
    /// The declaration id was already decided with different content.
    DeclarationConflict,
    /// The token's signature does not verify, or uses another algorithm.
    BadSignature,
    /// The token's key is not trusted, or was not valid when the token was issued.
    UnknownIssuer,
    /// Past `exp`.
    Expired,
    /// Before `nbf`, or issued in the future.
    NotYetValid,
    /// The license is on the revocation list.
    Revoked,
    /// The license was consumed by another declaration, here or elsewhere.
    LicenseAlreadyUsed,
    /// Exporter, consignee or end user differ from the license.
    PartyMismatch,
    /// The destination differs from the license.
    DestinationMismatch,
    /// The license names another shipment.
    ShipmentRefMismatch,
    /// A controlled item has no matching license line.
    GoodsNotCovered,
    /// More mass than the license allows.
    QuantityExceedsLicense,
    /// A party is on the denied-party list.
    DeniedParty,
    /// The goods are banned outright for the destination.
    BannedDestination,
    /// Controlled goods and no license.
    LicenseMissing,
    /// Goods under a controlled heading without an element breakdown.
    Unclassifiable,
    /// The policy is older than its allowed age.
    PolicyStale,
    /// The clock is behind the ledger's newest decision.
    ClockBehindLedger,
    /// The clock disagrees with the hub's signed time beyond the allowed skew.
    ClockUntrusted,
    /// A party's name is close to a denied party's without being the same:
    /// an officer decides (the detail carries the score and the list entry).
    PossibleDeniedParty,
    /// A party's id is of a kind with a check digit (a Chinese unified
    /// social credit code) and fails it: mistyped or made up; an officer decides.
    InvalidId,
    /// An officer inspected a held shipment and refused it.
    RefusedByOfficer,
    /// An officer inspected a held shipment and seized it.
    Seized,
}

impl ReasonCode {
    /// The wire name (`bad_signature`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ReasonCode::Malformed => "malformed",
            ReasonCode::DeclarationConflict => "declaration_conflict",
            ReasonCode::BadSignature => "bad_signature",
            ReasonCode::UnknownIssuer => "unknown_issuer",
            ReasonCode::Expired => "expired",
            ReasonCode::NotYetValid => "not_yet_valid",
            ReasonCode::Revoked => "revoked",
            ReasonCode::LicenseAlreadyUsed => "license_already_used",
            ReasonCode::PartyMismatch => "party_mismatch",
            ReasonCode::DestinationMismatch => "destination_mismatch",
            ReasonCode::ShipmentRefMismatch => "shipment_ref_mismatch",
            ReasonCode::GoodsNotCovered => "goods_not_covered",
            ReasonCode::QuantityExceedsLicense => "quantity_exceeds_license",
            ReasonCode::DeniedParty => "denied_party",
            ReasonCode::BannedDestination => "banned_destination",
            ReasonCode::LicenseMissing => "license_missing",
            ReasonCode::Unclassifiable => "unclassifiable",
            ReasonCode::PolicyStale => "policy_stale",
            ReasonCode::ClockBehindLedger => "clock_behind_ledger",
            ReasonCode::ClockUntrusted => "clock_untrusted",
            ReasonCode::PossibleDeniedParty => "possible_denied_party",
            ReasonCode::InvalidId => "invalid_id",
            ReasonCode::RefusedByOfficer => "refused_by_officer",
            ReasonCode::Seized => "seized",
        }
    }

    /// Reasons that put a shipment on hold rather than rejecting it.
    pub fn is_hold(self) -> bool {
        matches!(
            self,
            ReasonCode::Unclassifiable
                | ReasonCode::PolicyStale
                | ReasonCode::ClockBehindLedger
                | ReasonCode::ClockUntrusted
                | ReasonCode::PossibleDeniedParty
                | ReasonCode::InvalidId
        )
    }

    /// Reasons anti-smuggling officers are alerted to: every rejection but
    /// an unreadable payload and an officer's refusal after inspection.
    pub fn is_suspicious(self) -> bool {
        !self.is_hold() && !matches!(self, ReasonCode::Malformed | ReasonCode::RefusedByOfficer)
    }

    /// Every reason code, for lists of texts that must name each.
    pub const ALL: [ReasonCode; 24] = [
        ReasonCode::Malformed,
        ReasonCode::DeclarationConflict,
        ReasonCode::BadSignature,
        ReasonCode::UnknownIssuer,
        ReasonCode::Expired,
        ReasonCode::NotYetValid,
        ReasonCode::Revoked,
        ReasonCode::LicenseAlreadyUsed,
        ReasonCode::PartyMismatch,
        ReasonCode::DestinationMismatch,
        ReasonCode::ShipmentRefMismatch,
        ReasonCode::GoodsNotCovered,
        ReasonCode::QuantityExceedsLicense,
        ReasonCode::DeniedParty,
        ReasonCode::BannedDestination,
        ReasonCode::LicenseMissing,
        ReasonCode::Unclassifiable,
        ReasonCode::PolicyStale,
        ReasonCode::ClockBehindLedger,
        ReasonCode::ClockUntrusted,
        ReasonCode::PossibleDeniedParty,
        ReasonCode::InvalidId,
        ReasonCode::RefusedByOfficer,
        ReasonCode::Seized,
    ];
}

/// Where and when a license was used before.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreviousUse {
    /// The checkpoint that consumed it.
    pub checkpoint: String,
    /// The declaration that consumed it.
    pub declaration_id: String,
    /// When, RFC 3339 UTC.
    pub at: String,
}

/// One reason for a verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reason {
    /// Machine-readable code.
    pub code: ReasonCode,
    /// Human-readable detail.
    pub detail: String,
    /// For `license_already_used`: the earlier use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_use: Option<PreviousUse>,
    /// For `possible_denied_party`: the two names side by side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_match: Option<Box<NameMatch>>,
}

/// A declared party's name beside the list entry it resembles, word by
/// word, for the officer who decides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NameMatch {
    /// `exporter`, `consignee` or `end_user`.
    pub role: String,
    /// The name as declared.
    pub declared: String,
    /// The entry's name as listed.
    pub listed: String,
    /// The entry's id (empty when the list gives none).
    pub entry_id: String,
    /// The list it comes from.
    pub source: String,
    /// The score, 0–1.
    pub score: f64,
    /// The two names' words as compared, each marked.
    pub words: crate::screening::Explained,
}

impl Reason {
    /// A reason with a detail and no evidence; the detail is cut to
    /// [`crate::throttle::DETAIL_MAX`] characters (it may echo the input).
    pub fn new(code: ReasonCode, detail: impl Into<String>) -> Reason {
        let detail = detail.into();
        Reason {
            code,
            detail: if detail.len() > crate::throttle::DETAIL_MAX {
                crate::throttle::bounded_detail(&detail)
            } else {
                detail
            },
            previous_use: None,
            name_match: None,
        }
    }
}

/// The verdict on one declaration, as published and stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// The declaration's id, or null when none could be read.
    pub declaration_id: Option<String>,
    /// The outcome.
    pub verdict: VerdictKind,
    /// Why; empty for a plain `cleared` or `not_required`.
    pub reasons: Vec<Reason>,
    /// The verified license's id, or null.
    pub license_id: Option<String>,
    /// The deciding checkpoint.
    pub checkpoint: String,
    /// RFC 3339 UTC.
    pub decided_at: String,
    /// Version of the policy the decision used.
    #[serde(default)]
    pub policy_version: Option<u64>,
    /// The declared exporter's id, normalised, for investigators' queries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exporter: Option<String>,
    /// The declared end user's id, normalised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_user: Option<String>,
    /// Set when an officer resolved a hold: this verdict replaces it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<Resolution>,
}

/// What an officer found when inspecting a held shipment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldOutcome {
    /// Let it pass: its license is consumed exactly as by a clearance.
    Release,
    /// Turned back.
    Refuse,
    /// Seized.
    Seize,
}

impl HoldOutcome {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            HoldOutcome::Release => "release",
            HoldOutcome::Refuse => "refuse",
            HoldOutcome::Seize => "seize",
        }
    }
}

/// An officer's resolution of a hold, carried by the verdict that replaces it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resolution {
    /// What the officer decided.
    pub outcome: HoldOutcome,
    /// The officer's id.
    pub officer: String,
    /// Their note.
    pub note: String,
    /// When the shipment was put on hold, RFC 3339 UTC.
    pub held_at: String,
}

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// A rejection that suggests smuggling: reuse, forgery, mismatch, denied party, ban.
    SuspiciousVerdict,
    /// A payload with no readable declaration id.
    UnreadablePayload,
    /// One license consumed at two checkpoints.
    DoubleUse,
    /// The hub refused a consumption record: unknown checkpoint or bad signature.
    RefusedRecord,
    /// The ledger cannot commit (disk full, read-only, I/O error):
    /// declarations wait unacknowledged until it can.
    LedgerFault,
    /// A log's signed heads contradict each other: a checkpoint that lost or
    /// rewrote its history, or a hub that forked its log.
    LogInconsistent,
    /// One checkpoint's key signed two histories (two heads that cannot
    /// both hold, or two records under one number): its key is used
    /// elsewhere, or its ledger was rolled back. Both are kept and count.
    LogEquivocation,
}

impl AlertKind {
    /// The name used on the wire and in the ledger.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::SuspiciousVerdict => "suspicious_verdict",
            AlertKind::UnreadablePayload => "unreadable_payload",
            AlertKind::DoubleUse => "double_use",
            AlertKind::RefusedRecord => "refused_record",
            AlertKind::LedgerFault => "ledger_fault",
            AlertKind::LogInconsistent => "log_inconsistent",
            AlertKind::LogEquivocation => "log_equivocation",
        }
    }
}

/// An alert for anti-smuggling officers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// What it is about.
    pub kind: AlertKind,
    /// The checkpoint that raised it.
    pub checkpoint: String,
    /// RFC 3339 UTC.
    pub raised_at: String,
    /// The declaration concerned, if known.
    pub declaration_id: Option<String>,
    /// The license concerned, if known.
    pub license_id: Option<String>,
    /// The reasons of the verdict that raised it.
    #[serde(default)]
    pub reasons: Vec<Reason>,
    /// SHA-256 (hex) of the payload, for unreadable payloads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_sha256: Option<String>,
    /// A stable id for alerts that several parties raise about the same
    /// facts (a double use), so each is stored and shown once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_id: Option<String>,
    /// The consumption records with their proofs: the evidence, for `double_use`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub records: Vec<crate::record::Evidence>,
    /// The signed tree heads that contradict each other, for `log_inconsistent`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub heads: Vec<String>,
    /// What was wrong, for `refused_record`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// For `log_equivocation`: the checkpoint whose key signed both histories.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
    /// For `log_equivocation` between a head and a later one: the later
    /// log's root at the earlier head's size, and the consistency proof.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fork: Option<crate::sync::equivocation::Fork>,
}

impl Alert {
    /// The alert a verdict raises, if any of its reasons is suspicious.
    pub fn for_verdict(v: &Verdict) -> Option<Alert> {
        let reasons: Vec<Reason> = v
            .reasons
            .iter()
            .filter(|r| r.code.is_suspicious())
            .cloned()
            .collect();
        (!reasons.is_empty()).then(|| Alert {
            kind: AlertKind::SuspiciousVerdict,
            checkpoint: v.checkpoint.clone(),
            raised_at: v.decided_at.clone(),
            declaration_id: v.declaration_id.clone(),
            license_id: v.license_id.clone(),
            reasons,
            payload_sha256: None,
            alert_id: None,
            records: Vec::new(),
            signer: None,
            fork: None,
            heads: Vec::new(),
            detail: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_kind_names_are_the_serialized_ones() {
        for k in [
            AlertKind::SuspiciousVerdict,
            AlertKind::UnreadablePayload,
            AlertKind::DoubleUse,
            AlertKind::RefusedRecord,
            AlertKind::LedgerFault,
            AlertKind::LogInconsistent,
        ] {
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
    }
}
