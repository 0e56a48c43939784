//! The decision engine: declaration, token, policy, ledger facts and the
//! time in; verdict out. Pure: no I/O, no clock, no randomness.

use std::collections::BTreeSet;

use crate::clock::{UnixTime, to_rfc3339};
use crate::declaration::{Item, ParsedDeclaration};
use crate::elements::{canonical_symbol, hs_digits};
use crate::policy::{Policy, normalize_country, normalize_id};
use crate::token::{Party, TokenError, VerifiedToken};
use crate::verdict::{Alert, NameMatch, PreviousUse, Reason, ReasonCode, Verdict, VerdictKind};

/// Masses are compared with this tolerance (kg) so that float sums of exact figures do not trip.
const MASS_EPSILON_KG: f64 = 1e-6;

/// Who decides, and when.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// This checkpoint's id.
    pub checkpoint: &'a str,
    /// The current time.
    pub now: UnixTime,
    /// What the hub's signed time says of the clock that read `now`.
    pub clock: crate::clock_trust::ClockStatus,
}

/// A recorded consumption of a license, here or at another checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct LicenseUse {
    /// The checkpoint that consumed it.
    pub checkpoint: String,
    /// The declaration that consumed it.
    pub declaration_id: String,
    /// When.
    pub at: UnixTime,
}

/// The verdict a declaration id already has, and the content it was given for.
#[derive(Debug, Clone, PartialEq)]
pub struct PriorDecision {
    /// Content hash of the declaration that was decided.
    pub content_hash: [u8; 32],
    /// The verdict it got.
    pub verdict: Verdict,
}

/// What the ledger knows that bears on one declaration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LedgerFacts {
    /// The standing verdict for this declaration id, if any.
    pub prior: Option<PriorDecision>,
    /// Every known consumption of the token's license.
    pub uses: Vec<LicenseUse>,
    /// The time of the newest decision in the ledger.
    pub newest_decision_at: Option<UnixTime>,
}

/// What to consume when a verdict is `cleared`.
#[derive(Debug, Clone, PartialEq)]
pub struct Consumption {
    /// The license id.
    pub license_id: String,
    /// SHA-256 of the token's COSE bytes.
    pub token_sha256: [u8; 32],
    /// Exporter id, normalised.
    pub exporter: String,
    /// Consignee id, normalised.
    pub consignee: String,
    /// End user id, normalised.
    pub end_user: String,
    /// Destination country, normalised (as declared when it is not a country code).
    pub destination: String,
    /// The goods declared: HS code digits, element symbols, net mass.
    pub goods: Vec<crate::record::Goods>,
}

/// The engine's answer.
// Design: a decision is built once and moved into the ledger; boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// The same declaration was decided before: its stored verdict, nothing to write.
    Repeat(Verdict),
    /// A new verdict to record, with the license to consume and the alert to raise.
    New {
        /// The verdict.
        verdict: Verdict,
        /// Set only for `cleared`.
        consume: Option<Consumption>,
        /// Set when a reason is suspicious.
        alert: Option<Alert>,
        /// True when this verdict becomes the declaration id's standing verdict.
        claims_declaration_id: bool,
    },
}

impl Decision {
    /// The verdict, new or repeated.
    pub fn verdict(&self) -> &Verdict {
        match self {
            Decision::Repeat(v) | Decision::New { verdict: v, .. } => v,
        }
    }
}

/// True when the HS code `code` falls under the heading `prefix` (digits).
pub fn hs_prefix_matches(prefix: &str, code: &str) -> bool {
    hs_digits(code).is_some_and(|d| d.starts_with(prefix))
}

/// A `rejected`/`malformed` verdict for a payload that is not a readable declaration.
pub fn malformed(
    declaration_id: Option<String>,
    detail: &str,
    policy_version: u64,
    ctx: &Context,
) -> Decision {
    Decision::New {
        verdict: Verdict {
            declaration_id,
            verdict: VerdictKind::Rejected,
            reasons: vec![Reason::new(ReasonCode::Malformed, detail)],
            license_id: None,
            checkpoint: ctx.checkpoint.to_owned(),
            decided_at: to_rfc3339(ctx.now),
            policy_version: Some(policy_version),
            exporter: None,
            end_user: None,
            resolution: None,
        },
        consume: None,
        alert: None,
        // A malformed declaration does not claim its id: a corrected one may follow.
        claims_declaration_id: false,
    }
}

/// Decides one declaration. `token` is `None` when the declaration carries no license.
pub fn decide(
    decl: &ParsedDeclaration,
    token: Option<&Result<VerifiedToken, TokenError>>,
    policy: &Policy,
    facts: &LedgerFacts,
    ctx: &Context,
) -> Decision {
    decide_inner(decl, token, policy, facts, ctx, false)
}

/// Decides a held declaration an officer has inspected and releases: every
/// check but the holds, whose doubts the inspection settled. Goods held as
/// unclassifiable count as controlled when a license came with them, so the
/// license is checked and consumed. The standing hold is not a prior
/// decision here; the caller has checked it is a hold.
pub fn decide_release(
    decl: &ParsedDeclaration,
    token: Option<&Result<VerifiedToken, TokenError>>,
    policy: &Policy,
    facts: &LedgerFacts,
    ctx: &Context,
) -> Decision {
    let facts = LedgerFacts {
        prior: None,
        ..facts.clone()
    };
    decide_inner(decl, token, policy, &facts, ctx, true)
}

fn decide_inner(
    decl: &ParsedDeclaration,
    token: Option<&Result<VerifiedToken, TokenError>>,
    policy: &Policy,
    facts: &LedgerFacts,
    ctx: &Context,
    inspected: bool,
) -> Decision {
    let d = &decl.declaration;
    let verified = match token {
        Some(Ok(t)) => Some(t),
        _ => None,
    };
    let mut verdict = Verdict {
        declaration_id: Some(d.declaration_id.clone()),
        verdict: VerdictKind::Rejected,
        reasons: Vec::new(),
        license_id: verified.map(|t| t.license.license_id.clone()),
        checkpoint: ctx.checkpoint.to_owned(),
        decided_at: to_rfc3339(ctx.now),
        policy_version: Some(policy.version),
        exporter: Some(crate::policy::normalize_id(&d.exporter.id)),
        end_user: Some(crate::policy::normalize_id(&d.end_user.id)),
        resolution: None,
    };

    if let Some(prior) = &facts.prior {
        // Verdicts stored before licenses were canonical hashed the text as carried.
        if prior.content_hash == decl.content_hash
            || decl.content_hash_as_carried() == Some(prior.content_hash)
        {
            return Decision::Repeat(prior.verdict.clone());
        }
        verdict.reasons.push(Reason::new(
            ReasonCode::DeclarationConflict,
            format!(
                "declaration {} was already decided {} at {} with different content; the first verdict stands",
                d.declaration_id,
                prior.verdict.verdict.as_str(),
                prior.verdict.decided_at
            ),
        ));
        return finish(verdict, None, false);
    }

    let reasons = &mut verdict.reasons;
    let controlled = classify(&d.items, policy, reasons);
    check_denied_parties(decl, policy, reasons);
    check_ids(decl, reasons);
    check_bans(d, policy, reasons);
    // Design: an officer's release settles the holds' doubts, never a rejection.
    let unclassified = reasons.iter().any(|r| r.code == ReasonCode::Unclassifiable);
    if inspected {
        reasons.retain(|r| !r.code.is_hold());
    }
    let needs_license = !controlled.is_empty() || (inspected && unclassified && token.is_some());

    let mut consume = None;
    if needs_license {
        match token {
            None => reasons.push(Reason::new(
                ReasonCode::LicenseMissing,
                format!("{} controlled item(s) and no license", controlled.len()),
            )),
            Some(Err(e)) => reasons.push(token_reason(e)),
            Some(Ok(t)) => {
                check_validity(t, policy, facts, ctx, reasons);
                check_terms(d, &controlled, t, policy, reasons);
                consume = Some(Consumption {
                    license_id: t.license.license_id.clone(),
                    token_sha256: t.sha256,
                    exporter: normalize_id(&d.exporter.id),
                    consignee: normalize_id(&d.consignee.id),
                    end_user: normalize_id(&d.end_user.id),
                    destination: normalize_country(&d.destination)
                        .unwrap_or_else(|| d.destination.clone()),
                    goods: d
                        .items
                        .iter()
                        .map(|i| crate::record::Goods {
                            hs_code: crate::elements::hs_digits(&i.hs_code)
                                .unwrap_or_else(|| i.hs_code.clone()),
                            elements: i
                                .elements
                                .iter()
                                .map(|e| {
                                    crate::elements::canonical_symbol(e)
                                        .map(str::to_owned)
                                        .unwrap_or_else(|| e.clone())
                                })
                                .collect(),
                            net_kg: i.net_kg,
                        })
                        .collect(),
                });
            }
        }
    }

    let rejected = reasons.iter().any(|r| !r.code.is_hold());
    if !rejected && !controlled.is_empty() && !inspected {
        // Holds that only matter when the agent is about to clear.
        if ctx.now > policy.issued_at.saturating_add(policy.max_age) {
            reasons.push(Reason::new(
                ReasonCode::PolicyStale,
                format!(
                    "policy version {} was issued {}, older than its allowed age of {} s",
                    policy.version,
                    to_rfc3339(policy.issued_at),
                    policy.max_age
                ),
            ));
        }
        if let Some(why) = ctx.clock.describe() {
            reasons.push(Reason::new(
                ReasonCode::ClockUntrusted,
                format!("{why}; decisions dated by it cannot clear"),
            ));
        }
        // Design: a clock the hub's time vouches for outranks the ledger's
        // newest decision, which a clock once far ahead may have dated.
        if let Some(newest) = facts.newest_decision_at
            && ctx.clock != crate::clock_trust::ClockStatus::Trusted
            && ctx.now.saturating_add(policy.clock_skew) < newest
        {
            reasons.push(Reason::new(
                ReasonCode::ClockBehindLedger,
                format!(
                    "the clock reads {} but the ledger holds a decision from {}",
                    to_rfc3339(ctx.now),
                    to_rfc3339(newest)
                ),
            ));
        }
    }

    verdict.verdict = if verdict.reasons.iter().any(|r| !r.code.is_hold()) {
        VerdictKind::Rejected
    } else if !verdict.reasons.is_empty() {
        VerdictKind::Hold
    } else if !needs_license {
        VerdictKind::NotRequired
    } else {
        VerdictKind::Cleared
    };
    if let Some(c) = &consume
        && let Some(bytes) = record_too_large(c, &d.declaration_id)
    {
        // Design: bounds are enforced where data is admitted. A record the
        // hub would refuse as too large must never be made: the license
        // would be consumed here and unknown everywhere else.
        verdict.reasons.push(Reason::new(
            ReasonCode::Malformed,
            format!(
                "{} item lines make a consumption record of {bytes} bytes, more than the {} one record may hold; declare fewer lines per shipment",
                d.items.len(),
                crate::sync::protocol::LEAF_MAX
            ),
        ));
        verdict.verdict = VerdictKind::Rejected;
    }
    if verdict.verdict != VerdictKind::Cleared {
        consume = None;
    }
    if verdict.verdict == VerdictKind::NotRequired {
        // A license sent with uncontrolled goods is neither checked nor consumed.
        verdict.license_id = None;
    }
    finish(verdict, consume, true)
}

/// The size of the consumption record `c` would make (with the largest
/// checkpoint id, number and time), if it is over the bound any part accepts.
pub fn record_too_large(c: &Consumption, declaration_id: &str) -> Option<usize> {
    let max = crate::sync::protocol::LEAF_MAX;
    // A cheap bound first: every real declaration is far under it.
    let rough: usize = 512
        + declaration_id.len()
        + c.license_id.len()
        + c.exporter.len()
        + c.consignee.len()
        + c.end_user.len()
        + c.destination.len()
        + c.goods
            .iter()
            .map(|g| 48 + g.hs_code.len() + g.elements.iter().map(|e| e.len() + 2).sum::<usize>())
            .sum::<usize>();
    if rough <= max {
        return None;
    }
    let leaf = crate::record::ConsumptionRecord {
        kind: crate::record::KIND_CONSUMPTION.to_owned(),
        checkpoint: "x".repeat(crate::config::CHECKPOINT_ID_MAX),
        seq: u64::MAX,
        license_id: c.license_id.clone(),
        declaration_id: declaration_id.to_owned(),
        consumed_at: i64::MAX,
        token_sha256: c.token_sha256,
        declaration_sha256: [0; 32],
        exporter: c.exporter.clone(),
        consignee: c.consignee.clone(),
        end_user: c.end_user.clone(),
        destination: c.destination.clone(),
        goods: c.goods.clone(),
    }
    .to_leaf();
    (leaf.len() > max).then_some(leaf.len())
}

fn finish(verdict: Verdict, consume: Option<Consumption>, claims: bool) -> Decision {
    Decision::New {
        alert: Alert::for_verdict(&verdict),
        verdict,
        consume,
        claims_declaration_id: claims,
    }
}

fn token_reason(e: &TokenError) -> Reason {
    let code = match e {
        TokenError::Malformed(_) => ReasonCode::Malformed,
        TokenError::UnknownIssuer(_) => ReasonCode::UnknownIssuer,
        TokenError::BadSignature(_) => ReasonCode::BadSignature,
    };
    Reason::new(code, format!("license token: {e}"))
}

/// A controlled item: its index and its controlled elements.
struct Controlled {
    index: usize,
    elements: BTreeSet<&'static str>,
}

/// Finds the controlled items; adds `unclassifiable` for controlled headings with no element list.
fn classify(items: &[Item], policy: &Policy, reasons: &mut Vec<Reason>) -> Vec<Controlled> {
    let mut out = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let elements: BTreeSet<&'static str> = item
            .elements
            .iter()
            .filter_map(|e| canonical_symbol(e))
            .filter(|e| policy.controlled_elements.contains(*e))
            .collect();
        if !elements.is_empty() {
            out.push(Controlled { index, elements });
        } else if item.elements.is_empty()
            && let Some(h) = policy
                .controlled_hs
                .iter()
                .find(|h| hs_prefix_matches(h, &item.hs_code))
        {
            reasons.push(Reason::new(
                ReasonCode::Unclassifiable,
                format!(
                    "items[{index}] (HS {}) falls under controlled heading {h} but declares no elements",
                    item.hs_code
                ),
            ));
        }
    }
    out
}

fn parties(p: [&Party; 3]) -> [(&'static str, &Party); 3] {
    [("exporter", p[0]), ("consignee", p[1]), ("end_user", p[2])]
}

/// A party's id of a kind with a published check digit that fails it:
/// mistyped, or made up to look like a registered firm's.
fn check_ids(decl: &ParsedDeclaration, reasons: &mut Vec<Reason>) {
    let d = &decl.declaration;
    for ((role, party), (id, _)) in parties([&d.exporter, &d.consignee, &d.end_user])
        .into_iter()
        .zip(&decl.screening)
    {
        if crate::screening::uscc_checks(id) == Some(false) {
            reasons.push(Reason::new(
                ReasonCode::InvalidId,
                format!(
                    "{role} {} has the id {}, shaped as a Chinese unified social credit code (GB 32100-2015) but failing its check digit: mistyped or made up; an officer decides",
                    party.name, party.id
                ),
            ));
        }
    }
}

/// The most words of each name a hold's side-by-side carries: a name
/// longer than that is a flood, not a firm.
const NAME_MATCH_WORDS: usize = 32;

fn check_denied_parties(decl: &ParsedDeclaration, policy: &Policy, reasons: &mut Vec<Reason>) {
    let d = &decl.declaration;
    for ((role, party), (id, name)) in parties([&d.exporter, &d.consignee, &d.end_user])
        .into_iter()
        .zip(&decl.screening)
    {
        let Some((closeness, hit)) = policy.screen_index.screen(id, name, &policy.denied_parties)
        else {
            continue;
        };
        let source = if hit.source.is_empty() {
            String::new()
        } else {
            format!(" ({})", hit.source)
        };
        reasons.push(match closeness {
            crate::screening::Closeness::Possible(score) => {
                let words = policy
                    .screen_index
                    .explain(name, hit, &policy.denied_parties)
                    .map(|e| e.bounded(NAME_MATCH_WORDS))
                    .unwrap_or_default();
                let why = Some(words.summary())
                    .filter(|s| !s.is_empty())
                    .map(|s| format!(" ({s})"))
                    .unwrap_or_default();
                let mut reason = Reason::new(
                    ReasonCode::PossibleDeniedParty,
                    format!(
                        "{role} {} ({}) resembles {} on the denied-party list{source}: score {score:.2}{why}; an officer decides",
                        party.name, party.id, hit.display_name
                    ),
                );
                reason.name_match = Some(Box::new(NameMatch {
                    role: role.to_owned(),
                    declared: crate::throttle::bounded_detail(&party.name),
                    listed: hit.display_name.clone(),
                    entry_id: hit.id.clone(),
                    source: hit.source.clone(),
                    score: (score * 100.0).round() / 100.0,
                    words,
                }));
                reason
            }
            _ => Reason::new(
                ReasonCode::DeniedParty,
                format!(
                    "{role} {} ({}) is on the denied-party list as {}{source}",
                    party.name, party.id, hit.display_name
                ),
            ),
        });
    }
}

fn check_bans(d: &crate::declaration::Declaration, policy: &Policy, reasons: &mut Vec<Reason>) {
    let Some(dest) = normalize_country(&d.destination) else {
        return;
    };
    for ban in policy
        .bans
        .iter()
        .filter(|b| b.destinations.contains(&dest))
    {
        for (n, item) in d.items.iter().enumerate() {
            let element_hit = item
                .elements
                .iter()
                .filter_map(|e| canonical_symbol(e))
                .find(|e| ban.elements.contains(*e));
            let hs_hit = ban
                .hs_codes
                .iter()
                .find(|h| hs_prefix_matches(h, &item.hs_code));
            if element_hit.is_some() || hs_hit.is_some() {
                let what = element_hit
                    .map(|e| format!("element {e}"))
                    .or_else(|| hs_hit.map(|h| format!("HS {h}")))
                    .unwrap_or_default();
                reasons.push(Reason::new(
                    ReasonCode::BannedDestination,
                    format!(
                        "items[{n}]: {what} may not be exported to {dest}: {}",
                        ban.note
                    ),
                ));
            }
        }
    }
}

/// Checks the token's own validity: issuer window, dates, revocation, earlier use.
fn check_validity(
    t: &VerifiedToken,
    policy: &Policy,
    facts: &LedgerFacts,
    ctx: &Context,
    reasons: &mut Vec<Reason>,
) {
    let lic = &t.license;
    let skew = policy.clock_skew;
    match policy.issuer(t.kid.as_bytes()) {
        Some(issuer) => {
            let before = issuer.valid_from.is_some_and(|f| lic.issued_at < f - skew);
            let after = issuer.valid_until.is_some_and(|u| lic.issued_at > u + skew);
            if before || after {
                reasons.push(Reason::new(
                    ReasonCode::UnknownIssuer,
                    format!(
                        "issuer key `{}` is trusted from {} until {}; the token says it was issued {}",
                        issuer.kid,
                        issuer.valid_from.map_or("(always)".into(), to_rfc3339),
                        issuer.valid_until.map_or("(ever)".into(), to_rfc3339),
                        to_rfc3339(lic.issued_at)
                    ),
                ));
            }
        }
        // open() only verifies with keys from this policy; kept for safety.
        None => reasons.push(Reason::new(
            ReasonCode::UnknownIssuer,
            format!("issuer key `{}` is not in the policy", t.kid),
        )),
    }
    if lic.issued_at > ctx.now.saturating_add(skew) {
        reasons.push(Reason::new(
            ReasonCode::NotYetValid,
            format!(
                "license claims to be issued {}, in the future",
                to_rfc3339(lic.issued_at)
            ),
        ));
    }
    if let Some(nbf) = lic.not_before
        && ctx.now.saturating_add(skew) < nbf
    {
        reasons.push(Reason::new(
            ReasonCode::NotYetValid,
            format!("license is valid from {}", to_rfc3339(nbf)),
        ));
    }
    if ctx.now.saturating_sub(skew) >= lic.expires {
        reasons.push(Reason::new(
            ReasonCode::Expired,
            format!("license expired {}", to_rfc3339(lic.expires)),
        ));
    }
    if policy.revoked.contains(&lic.license_id) {
        reasons.push(Reason::new(
            ReasonCode::Revoked,
            format!("license {} is revoked", lic.license_id),
        ));
    }

    if let Some(used) = facts.uses.first() {
        reasons.push(Reason {
            code: ReasonCode::LicenseAlreadyUsed,
            detail: format!(
                "license {} was used at checkpoint {} for declaration {} at {}{}",
                lic.license_id,
                used.checkpoint,
                used.declaration_id,
                to_rfc3339(used.at),
                if facts.uses.len() > 1 {
                    format!(" (and {} more)", facts.uses.len() - 1)
                } else {
                    String::new()
                }
            ),
            previous_use: Some(PreviousUse {
                checkpoint: used.checkpoint.clone(),
                declaration_id: used.declaration_id.clone(),
                at: to_rfc3339(used.at),
            }),
            name_match: None,
        });
    }
}

/// Checks that the declaration matches the license's terms.
fn check_terms(
    d: &crate::declaration::Declaration,
    controlled: &[Controlled],
    t: &VerifiedToken,
    policy: &Policy,
    reasons: &mut Vec<Reason>,
) {
    let terms = &t.license.terms;
    for ((role, declared), (_, licensed)) in parties([&d.exporter, &d.consignee, &d.end_user])
        .into_iter()
        .zip(parties([
            &terms.exporter,
            &terms.consignee,
            &terms.end_user,
        ]))
    {
        let same_id = normalize_id(&declared.id) == normalize_id(&licensed.id);
        let same_country =
            normalize_country(&declared.country) == normalize_country(&licensed.country);
        if !same_id || !same_country {
            reasons.push(Reason::new(
                ReasonCode::PartyMismatch,
                format!(
                    "{role}: declared {} ({}, {}) but the license names {} ({}, {})",
                    declared.name,
                    declared.id,
                    declared.country,
                    licensed.name,
                    licensed.id,
                    licensed.country
                ),
            ));
        }
    }
    if normalize_country(&d.destination) != normalize_country(&terms.destination) {
        reasons.push(Reason::new(
            ReasonCode::DestinationMismatch,
            format!(
                "declared destination {} but the license is for {}",
                d.destination, terms.destination
            ),
        ));
    }
    if let Some(licensed_ref) = &terms.shipment_ref {
        let matches = d
            .shipment_ref
            .as_ref()
            .is_some_and(|r| normalize_id(r) == normalize_id(licensed_ref));
        if !matches {
            reasons.push(Reason::new(
                ReasonCode::ShipmentRefMismatch,
                format!(
                    "the license is for shipment {licensed_ref}, the declaration is for {}",
                    d.shipment_ref.as_deref().unwrap_or("(none)")
                ),
            ));
        }
    }

    // Design: masses are summed per license line, so a shipment split
    // into many small items cannot slip under the licensed mass.
    let mut carried = vec![0.0f64; terms.items.len()];
    for c in controlled {
        let item = &d.items[c.index];
        let line = terms.items.iter().position(|li| {
            let licensed: BTreeSet<&str> = li
                .elements
                .iter()
                .filter_map(|e| canonical_symbol(e))
                .filter(|e| policy.controlled_elements.contains(*e))
                .collect();
            hs_digits(&li.hs_code).is_some_and(|p| hs_prefix_matches(&p, &item.hs_code))
                && licensed == c.elements
        });
        match line {
            Some(l) => carried[l] += item.net_kg,
            None => reasons.push(Reason::new(
                ReasonCode::GoodsNotCovered,
                format!(
                    "items[{}] (HS {}, {}) is not covered by any line of the license",
                    c.index,
                    item.hs_code,
                    c.elements.iter().copied().collect::<Vec<_>>().join("+")
                ),
            )),
        }
    }
    for (l, (li, kg)) in terms.items.iter().zip(&carried).enumerate() {
        if *kg > li.max_net_kg + MASS_EPSILON_KG {
            reasons.push(Reason::new(
                ReasonCode::QuantityExceedsLicense,
                format!(
                    "license line {l} (HS {}) allows {} kg; the declaration carries {} kg",
                    li.hs_code, li.max_net_kg, kg
                ),
            ));
        }
    }
}

/// Checks a token without a declaration (`permitgate verify` with no
/// `--declaration`): `cleared` means a declaration matching its terms
/// would clear now.
pub fn assess_token(
    token: &Result<VerifiedToken, TokenError>,
    policy: &Policy,
    facts: &LedgerFacts,
    ctx: &Context,
) -> Verdict {
    let mut reasons = Vec::new();
    match token {
        Ok(t) => check_validity(t, policy, facts, ctx, &mut reasons),
        Err(e) => reasons.push(token_reason(e)),
    }
    Verdict {
        declaration_id: None,
        verdict: if reasons.is_empty() {
            VerdictKind::Cleared
        } else {
            VerdictKind::Rejected
        },
        reasons,
        license_id: token.as_ref().ok().map(|t| t.license.license_id.clone()),
        checkpoint: ctx.checkpoint.to_owned(),
        decided_at: to_rfc3339(ctx.now),
        policy_version: Some(policy.version),
        exporter: None,
        end_user: None,
        resolution: None,
    }
}

#[cfg(test)]
#[path = "decision_tests.rs"]
mod tests;
