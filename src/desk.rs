//! The officers' desk on the gate console (sign-in in [`crate::signin`]): the officer's work —
//! a token checked at the desk, holds resolved, alerts worked. Every
//! action goes into the ledger's signed log with the officer's id.
//!
//! Design: sessions live in memory (a restart signs everyone out); the
//! session cookie is `HttpOnly` and `SameSite=Strict`, so another site's
//! page cannot make a signed-in browser act. Pages are rendered here, with
//! everything from outside escaped, and need no script.

use std::sync::{Arc, Mutex};

use html_escape::{encode_double_quoted_attribute as attr, encode_text as esc};

use crate::clock::{SharedClock, to_rfc3339};
use crate::config::{DeskConfig, Role};
use crate::decision::{Context, assess_token};
use crate::ledger::{AlertAction, AlertActionError, AlertState, Identity, Ledger};
use crate::policy::Policy;
pub use crate::signin::{COOKIE, Session, SignIn, sign_in_page};
use crate::ui::Ui;
use crate::verdict::HoldOutcome;

/// What the desk needs: accounts, sessions, the ledger and the policy in force.
pub struct Desk {
    /// Who may sign in, and who has.
    pub signin: Arc<SignIn>,
    ledger: Mutex<Ledger>,
    identity: Identity,
    policy: tokio::sync::watch::Receiver<Arc<Policy>>,
    clock: SharedClock,
}

impl Desk {
    /// A desk over a ledger handle of its own.
    pub fn new(
        config: DeskConfig,
        ledger: Ledger,
        identity: Identity,
        policy: tokio::sync::watch::Receiver<Arc<Policy>>,
        clock: SharedClock,
    ) -> Desk {
        Desk {
            signin: Arc::new(SignIn::new(config, clock.clone())),
            ledger: Mutex::new(ledger),
            identity,
            policy,
            clock,
        }
    }

    /// Checks a token typed or scanned at the desk: its terms and what the
    /// gate would decide, in plain words, consuming nothing.
    pub fn scan(&self, text: &str, ui: &Ui) -> String {
        let policy = self.policy.borrow().clone();
        let token = crate::token::open(text.trim().as_bytes(), |kid| policy.issuer_key(kid));
        let license_id = token.as_ref().ok().map(|t| t.license.license_id.clone());
        let facts = lock(&self.ledger)
            .facts("", license_id.as_deref())
            .unwrap_or_default();
        let ctx = Context {
            checkpoint: &self.identity.checkpoint,
            now: self.clock.now(),
            clock: crate::clock_trust::ClockStatus::Unknown,
        };
        let verdict = assess_token(&token, &policy, &facts, &ctx);
        let mut out = String::from("<section id=\"scan-result\">");
        if verdict.verdict.passes() {
            out.push_str(&format!("<p class=\"ok\">{}</p>", esc(&ui.t("desk.valid"))));
        } else {
            out.push_str(&format!(
                "<p class=\"bad\"><b>{}</b></p><ul>",
                esc(&ui.t("desk.invalid"))
            ));
            for r in &verdict.reasons {
                out.push_str(&format!(
                    "<li><span class=\"code\">{}</span> {} <span class=\"detail\">{}</span></li>",
                    esc(r.code.as_str()),
                    esc(&ui.reason(r.code)),
                    esc(&r.detail)
                ));
            }
            out.push_str("</ul>");
        }
        if let Ok(t) = &token {
            let l = &t.license;
            let party = |p: &crate::token::Party| format!("{} ({}, {})", p.name, p.id, p.country);
            out.push_str(&format!(
                "<dl><dt>{}</dt><dd class=\"lic-id\">{}</dd><dt>{}</dt><dd>{}</dd><dt>{}</dt><dd>{} – {}</dd>\
                 <dt>{}</dt><dd>{}</dd><dt>{}</dt><dd>{}</dd><dt>{}</dt><dd>{}</dd><dt>{}</dt><dd>{}</dd>",
                esc(&ui.t("desk.license")),
                esc(&l.license_id),
                esc(&ui.t("desk.issuer_key")),
                esc(&t.kid),
                esc(&ui.t("desk.valid_from_to")),
                esc(&ui.time(&to_rfc3339(l.not_before.unwrap_or(l.issued_at)))),
                esc(&ui.time(&to_rfc3339(l.expires))),
                esc(&ui.t("desk.exporter")),
                esc(&party(&l.terms.exporter)),
                esc(&ui.t("desk.consignee")),
                esc(&party(&l.terms.consignee)),
                esc(&ui.t("desk.end_user")),
                esc(&party(&l.terms.end_user)),
                esc(&ui.t("desk.destination")),
                esc(&l.terms.destination),
            ));
            for i in &l.terms.items {
                out.push_str(&format!(
                    "<dt>{}</dt><dd>HS {} · {} · {}</dd>",
                    esc(&ui.t("desk.goods")),
                    esc(&i.hs_code),
                    esc(&i.elements.join(", ")),
                    esc(&ui.t_with("desk.up_to", &[("kg", &i.max_net_kg.to_string())]))
                ));
            }
            out.push_str("</dl>");
        }
        out.push_str("</section>");
        out
    }

    /// Resolves a hold for a signed-in officer; the message to show.
    pub fn resolve(
        &self,
        s: &Session,
        declaration_id: &str,
        outcome: &str,
        note: &str,
        ui: &Ui,
    ) -> String {
        let outcome = match outcome {
            "release" => HoldOutcome::Release,
            "refuse" => HoldOutcome::Refuse,
            "seize" if s.role == Role::Supervisor => HoldOutcome::Seize,
            "seize" => return ui.t("desk.only_supervisor_seize"),
            _ => return ui.t("desk.choose_outcome"),
        };
        let policy = self.policy.borrow().clone();
        let request = crate::holds::Request {
            declaration_id: declaration_id.to_owned(),
            outcome,
            officer: s.officer.clone(),
            note: note.to_owned(),
        };
        let now = self.clock.now();
        match crate::holds::apply(
            &mut lock(&self.ledger),
            &policy,
            &self.identity,
            &request,
            now,
        ) {
            Ok(r) => {
                tracing::info!(officer = %s.officer, declaration_id, outcome = outcome.as_str(), "desk: hold resolved");
                ui.t_with(
                    "desk.resolved",
                    &[
                        ("id", declaration_id),
                        ("outcome", &ui.t(&format!("outcome.{}", outcome.as_str()))),
                        (
                            "verdict",
                            &ui.t(&format!("verdict.{}", r.verdict.verdict.as_str())),
                        ),
                    ],
                )
            }
            Err(e) => ui.t_with("desk.not_recorded", &[("why", &e.to_string())]),
        }
    }

    /// Works an alert for a signed-in officer; the message to show.
    pub fn work_alert(
        &self,
        s: &Session,
        id: i64,
        action: &str,
        note: &str,
        to: &str,
        ui: &Ui,
    ) -> String {
        let action = match action {
            "acknowledge" => AlertAction::Acknowledge,
            "assign" | "close" if s.role != Role::Supervisor => {
                return ui.t("desk.only_supervisor_close");
            }
            "assign" => AlertAction::Assign(to.to_owned()),
            "close" => AlertAction::Close,
            _ => return ui.t("desk.choose_action"),
        };
        let now = self.clock.now();
        match lock(&self.ledger).work_alert(&self.identity, id, &action, &s.officer, note, now) {
            Ok(row) => {
                tracing::info!(officer = %s.officer, alert = id, action = action.as_str(), "desk: alert worked");
                ui.t_with(
                    "desk.alert_now",
                    &[
                        ("id", &id.to_string()),
                        (
                            "state",
                            &ui.t(&format!("alert_state.{}", row.state.as_str())),
                        ),
                    ],
                )
            }
            Err(AlertActionError::Ledger(e)) => {
                ui.t_with("desk.not_recorded", &[("why", &e.to_string())])
            }
            Err(e) => ui.t_with("desk.not_recorded", &[("why", &e.to_string())]),
        }
    }

    /// The desk page: scan, holds, alerts.
    pub fn page(&self, s: &Session, message: &str, scan: &str, ui: &Ui) -> String {
        let ledger = lock(&self.ledger);
        let holds = ledger.open_holds(200).unwrap_or_default();
        let alerts = ledger.alert_rows(false, 200).unwrap_or_default();
        drop(ledger);
        let seize = if s.role == Role::Supervisor {
            format!(
                "<option value=\"seize\">{}</option>",
                esc(&ui.t("outcome.seize"))
            )
        } else {
            String::new()
        };
        let holds_html: String = holds
            .iter()
            .map(|v| {
                let id = v.declaration_id.as_deref().unwrap_or("");
                format!(
                    "<li class=\"verdict hold\" data-declaration=\"{a}\"><b>{id}</b> <span class=\"lic\">{lic}</span> {held}<div class=\"why\">{why}</div>\
                     <form method=\"post\" action=\"/desk/hold\"><input type=\"hidden\" name=\"declaration_id\" value=\"{a}\">\
                     <select name=\"outcome\"><option value=\"release\">{release}</option><option value=\"refuse\">{refuse}</option>{seize}</select>\
                     <input name=\"note\" required placeholder=\"{placeholder}\"> <button>{record}</button></form></li>",
                    release = esc(&ui.t("outcome.release")),
                    refuse = esc(&ui.t("outcome.refuse")),
                    placeholder = attr(&ui.t("desk.note_placeholder")),
                    record = esc(&ui.t("desk.record")),
                    a = attr(id),
                    id = esc(id),
                    lic = esc(&v.license_id.clone().unwrap_or_else(|| ui.t("console.no_license"))),
                    held = esc(&ui.t_with("desk.held", &[("at", &ui.time(&v.decided_at))])),
                    why = v.reasons.iter().map(|r| match &r.name_match {
                        Some(m) => format!("{} {}", esc(&ui.reason(r.code)), side_by_side(m, ui)),
                        None => format!("{} <span class=\"detail\">{}</span>", esc(&ui.reason(r.code)), esc(&r.detail)),
                    }).collect::<Vec<_>>().join("; "),
                )
            })
            .collect();
        let supervisor = s.role == Role::Supervisor;
        let alerts_html: String = alerts
            .iter()
            .map(|r| {
                let a = &r.alert;
                let what: Vec<String> = a.reasons.iter().map(|x| x.detail.clone()).chain(a.detail.clone()).collect();
                let ack = if r.state == AlertState::Open {
                    format!("<form method=\"post\" action=\"/desk/alert\"><input type=\"hidden\" name=\"alert_id\" value=\"{}\"><input type=\"hidden\" name=\"action\" value=\"acknowledge\"><button>{}</button></form>", r.id, esc(&ui.t("desk.acknowledge")))
                } else {
                    String::new()
                };
                let close = if supervisor {
                    format!("<form method=\"post\" action=\"/desk/alert\"><input type=\"hidden\" name=\"alert_id\" value=\"{}\"><input type=\"hidden\" name=\"action\" value=\"close\"><input name=\"note\" required placeholder=\"{}\"> <button>{}</button></form>", r.id, attr(&ui.t("desk.close_placeholder")), esc(&ui.t("desk.close")))
                } else {
                    String::new()
                };
                format!(
                    "<li class=\"alert {state}\" data-alert=\"{id}\"><span class=\"badge\">{kind}</span> <b>{decl}</b> {lic} <i>{state_text}{assignee}</i> <time>{at}</time><div class=\"what\">{what}</div>{ack}{close}</li>",
                    id = r.id,
                    state = r.state.as_str(),
                    state_text = esc(&ui.t(&format!("alert_state.{}", r.state.as_str()))),
                    kind = esc(&ui.t(&format!("alert.{}", a.kind.as_str()))),
                    decl = esc(a.declaration_id.as_deref().unwrap_or("")),
                    lic = esc(a.license_id.as_deref().unwrap_or("")),
                    assignee = r.assignee.as_deref().map(|x| format!(", {}", esc(&ui.t_with("desk.assigned_to", &[("who", x)])))).unwrap_or_default(),
                    at = esc(&ui.time(&a.raised_at)),
                    what = esc(&what.join("; ")),
                )
            })
            .collect();
        ui.localize(DESK_PAGE)
            .replace("{checkpoint}", &esc(&self.identity.checkpoint))
            .replace("{officer}", &esc(&s.officer))
            .replace(
                "{role}",
                &esc(&ui.t(match s.role {
                    Role::Officer => "role.officer",
                    Role::Supervisor => "role.supervisor",
                })),
            )
            .replace(
                "{message}",
                &if message.is_empty() {
                    String::new()
                } else {
                    format!("<p id=\"message\">{}</p>", esc(message))
                },
            )
            .replace("{scan}", scan)
            .replace("{holds}", &holds_html)
            .replace("{alerts}", &alerts_html)
    }
}

/// A held party's name beside the listed one, word by word: words met
/// through a likeness marked, words on one side only marked otherwise.
fn side_by_side(m: &crate::verdict::NameMatch, ui: &Ui) -> String {
    use crate::screening::explain::{Mark, Word};
    let words = |ws: &[Word]| -> String {
        ws.iter()
            .map(|w| match w.mark {
                Mark::Same => format!("<span class=\"w same\">{}</span>", esc(&w.text)),
                Mark::Alike => format!("<mark class=\"w alike\">{}</mark>", esc(&w.text)),
                Mark::Only => format!("<mark class=\"w only\">{}</mark>", esc(&w.text)),
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let role = ui.t(&format!("desk.{}", m.role));
    let listed = if m.entry_id.is_empty() {
        m.source.clone()
    } else {
        format!("{} · {}", m.source, m.entry_id)
    };
    format!(
        "<table class=\"names\"><caption>{score}</caption>\
         <tr><th>{declared_h}</th><th>{listed_h}</th></tr>\
         <tr class=\"as-written\"><td>{declared}</td><td>{listed_name}</td></tr>\
         <tr class=\"words\"><td>{dw}</td><td>{lw}</td></tr></table>\
         <div class=\"detail\">{legend}</div>",
        score = esc(&ui.t_with("desk.match_score", &[("score", &format!("{:.2}", m.score))])),
        declared_h = esc(&ui.t_with("desk.declared_as", &[("role", &role)])),
        listed_h = esc(&ui.t_with("desk.listed_on", &[("list", &listed)])),
        declared = esc(&m.declared),
        listed_name = esc(&m.listed),
        dw = words(&m.words.declared),
        lw = words(&m.words.listed),
        legend = ui.localize("<mark class=\"w alike\">{t:desk.mark_alike}</mark> <mark class=\"w only\">{t:desk.mark_only}</mark>"),
    )
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

const DESK_PAGE: &str = include_str!("desk.html");
