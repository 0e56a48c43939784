//! The gate console: the officer's read-only page, rendered on the server.
//!
//! Design: every row is rendered here, both for the first page and for
//! each live event, so the page's script only inserts HTML it is sent
//! (server-sent events) and the look lives in one place. No asset comes
//! from anywhere but this binary: a border post is often offline.

use html_escape::encode_text as esc;

use crate::clock::UnixTime;
use crate::telemetry::{Health, Telemetry, human};
use crate::ui::Ui;
use crate::verdict::{Alert, Verdict};

/// How long an alert stays at the top of the page as open.
pub const OPEN_ALERT_SECS: i64 = 24 * 3600;

/// One verdict as a list item.
pub fn verdict_row(v: &Verdict, ui: &Ui) -> String {
    verdict_row_marked(v, false, ui)
}

/// One verdict; `twice` when a double use of its license is known.
fn verdict_row_marked(v: &Verdict, twice: bool, ui: &Ui) -> String {
    let reasons: Vec<String> = v
        .reasons
        .iter()
        .map(|r| {
            format!(
                "<span class=\"reason\" title=\"{}\"><span class=\"code\">{}</span> {}</span>",
                html_escape::encode_double_quoted_attribute(&r.detail),
                esc(r.code.as_str()),
                esc(&ui.reason(r.code))
            )
        })
        .collect();
    let resolved = v
        .resolution
        .as_ref()
        .map(|r| {
            let outcome = ui.t(&format!("outcome.{}", r.outcome.as_str()));
            format!(
                " <i class=\"resolved\">{}</i>",
                esc(&ui.t_with(
                    "console.resolved",
                    &[("outcome", &outcome), ("officer", &r.officer)]
                ))
            )
        })
        .unwrap_or_default();
    format!(
        "<li class=\"verdict {kind}{twice}\" data-declaration=\"{id_attr}\" data-license=\"{lic_attr}\"><time>{at}</time><span class=\"badge\">{kind_text}</span> \
         <b class=\"decl\">{id}</b> <span class=\"lic\">{lic}</span> {reasons}{resolved}<span class=\"twice-note\">{twice_note}</span></li>",
        kind = v.verdict.as_str(),
        twice = if twice { " twice" } else { "" },
        kind_text = esc(&ui.t(&format!("verdict.{}", v.verdict.as_str()))),
        twice_note = esc(&ui.t("console.twice")),
        id_attr =
            html_escape::encode_double_quoted_attribute(v.declaration_id.as_deref().unwrap_or("")),
        lic_attr =
            html_escape::encode_double_quoted_attribute(v.license_id.as_deref().unwrap_or("")),
        id = esc(&v
            .declaration_id
            .clone()
            .unwrap_or_else(|| ui.t("console.no_id"))),
        lic = esc(&v
            .license_id
            .clone()
            .unwrap_or_else(|| ui.t("console.no_license"))),
        reasons = reasons.join(" "),
        at = esc(&ui.clock(&v.decided_at)),
    )
}

/// One alert as a list item. A double use lists both uses (post,
/// declaration, time) and says its evidence was verified: a post stores
/// one only after checking every record's signature and its proof in the
/// national log.
pub fn alert_row(a: &Alert, ui: &Ui) -> String {
    let mut what: Vec<String> = a.reasons.iter().map(|r| r.detail.clone()).collect();
    if let Some(d) = &a.detail {
        what.push(d.clone());
    }
    let uses = if a.kind == crate::verdict::AlertKind::DoubleUse && !a.records.is_empty() {
        let rows: String = a
            .records
            .iter()
            .map(|r| {
                format!(
                    "<li><b>{}</b> · {} {} · {}</li>",
                    esc(&r.checkpoint),
                    esc(&ui.t("console.declaration")),
                    esc(&r.declaration_id),
                    esc(&ui.time(&r.consumed_at))
                )
            })
            .collect();
        format!(
            "<ol class=\"uses\">{rows}</ol><span class=\"verified\">{}</span>",
            esc(&ui.t("console.verified"))
        )
    } else {
        String::new()
    };
    format!(
        "<li class=\"alert {kind_class}\" data-license=\"{lic_attr}\"><time>{at}</time><span class=\"badge\">{kind}</span> <b>{decl}</b> {lic} <span class=\"what\">{what}</span>{uses}</li>",
        kind_class = a.kind.as_str(),
        kind = esc(&ui.t(&format!("alert.{}", a.kind.as_str()))),
        lic_attr =
            html_escape::encode_double_quoted_attribute(a.license_id.as_deref().unwrap_or("")),
        decl = esc(a.declaration_id.as_deref().unwrap_or("")),
        lic = esc(a.license_id.as_deref().unwrap_or("")),
        what = esc(&what.join("; ")),
        at = esc(&ui.clock(&a.raised_at)),
    )
}

/// The status strip: health, connection, sync backlog, policy age.
pub fn strip(t: &Telemetry, now: UnixTime, ui: &Ui) -> String {
    let Health { state, reasons } = t.health(now);
    let (policy_age, outbox_age, waiting) = t.ages(now);
    let n = waiting.to_string();
    let backlog = match (t.has_uplink(), outbox_age) {
        (false, _) => ui.t_with("strip.no_uplink", &[("n", &n)]),
        (true, Some(age)) => ui.t_with("strip.waiting", &[("n", &n), ("age", &human(age))]),
        (true, None) => ui.t("strip.synced"),
    };
    let v = t.policy_version().to_string();
    let policy = match policy_age {
        Some(age) => ui.t_with("strip.policy_age", &[("v", &v), ("age", &human(age))]),
        None => ui.t_with("strip.policy", &[("v", &v)]),
    };
    let why = if reasons.is_empty() {
        String::new()
    } else {
        format!(" — {}", esc(&reasons.join("; ")))
    };
    format!(
        "<span class=\"state {state}\">{state_text}</span>{why} <span>{backlog}</span> <span>{policy}</span>",
        state_text = esc(&ui.t(&format!("state.{state}"))),
        backlog = esc(&backlog),
        policy = esc(&policy),
    )
}

/// The whole page, with the latest verdicts and the open alerts: those
/// `not_closed` lists (the ledger's alerts no officer has closed), or when
/// it could not be read, the latest kept in memory.
pub fn page(
    t: &Telemetry,
    checkpoint: &str,
    now: UnixTime,
    ui: &Ui,
    not_closed: Option<Vec<Alert>>,
) -> String {
    let (verdicts, recent) = t.recent();
    let alerts: Vec<std::sync::Arc<Alert>> = match not_closed {
        Some(a) => a.into_iter().map(std::sync::Arc::new).collect(),
        None => recent,
    };
    let open: Vec<String> = alerts
        .iter()
        .filter(|a| {
            crate::clock::parse_rfc3339(&a.raised_at)
                .map(|at| now - at < OPEN_ALERT_SECS)
                .unwrap_or(true)
        })
        .map(|a| alert_row(a, ui))
        .collect();
    // A clearance whose license was also used elsewhere is not shown as a plain green card.
    let twice: std::collections::HashSet<&str> = alerts
        .iter()
        .filter(|a| a.kind == crate::verdict::AlertKind::DoubleUse)
        .filter_map(|a| a.license_id.as_deref())
        .collect();
    let rows: Vec<String> = verdicts
        .iter()
        .map(|v| {
            verdict_row_marked(
                v,
                v.license_id.as_deref().is_some_and(|l| twice.contains(l)),
                ui,
            )
        })
        .collect();
    ui.localize(PAGE)
        .replace("{checkpoint}", &esc(checkpoint))
        .replace("{strip}", &strip(t, now, ui))
        .replace("{alerts}", &open.join("\n"))
        .replace("{verdicts}", &rows.join("\n"))
}

const PAGE: &str = include_str!("console.html");

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn rows_escape_what_came_from_outside() {
        let v: Verdict = serde_json::from_value(serde_json::json!({
            "declaration_id": "<script>alert(1)</script>", "verdict": "rejected",
            "checkpoint": "c", "decided_at": "2026-01-01T10:11:12Z",
            "reasons": [{"code": "malformed", "detail": "\"><img src=x>"}]
        }))
        .unwrap();
        let row = verdict_row(&v, &Ui::english());
        assert!(!row.contains("<script>") && !row.contains("<img"), "{row}");
        assert!(
            row.contains("&lt;script&gt;") && row.contains("10:11:12"),
            "{row}"
        );
    }

    #[test]
    fn a_double_use_shows_both_uses_and_turns_the_clearance_red() {
        let t = Telemetry::new(std::path::Path::new("/nonexistent"), false, 1_790_000_000);
        let v: Verdict = serde_json::from_value(serde_json::json!({
            "declaration_id": "DA-1", "verdict": "cleared", "license_id": "LIC-9",
            "checkpoint": "post-a", "decided_at": "2026-01-01T10:11:12Z", "reasons": []
        }))
        .unwrap();
        let proven = serde_json::json!({"leaf": "00", "index": 0, "head": "", "proof": []});
        let a: Alert = serde_json::from_value(serde_json::json!({
            "kind": "double_use", "checkpoint": "post-a", "raised_at": "2026-01-01T12:00:00Z",
            "declaration_id": null, "license_id": "LIC-9",
            "records": [
                {"checkpoint": "post-a", "seq": 1, "declaration_id": "DA-1", "consumed_at": "2026-01-01T10:11:12Z", "proven": proven},
                {"checkpoint": "post-b", "seq": 4, "declaration_id": "DB-7", "consumed_at": "2026-01-01T10:30:00Z", "proven": proven}
            ]
        }))
        .unwrap();
        t.decided(Arc::new(v), None);
        t.alerted(Arc::new(a));
        let page = page(&t, "post-a", 1_767_265_200, &Ui::english(), None);
        let card = page.split("<li class=\"verdict").nth(1).unwrap();
        assert!(card.starts_with(" cleared twice\""), "{card}");
        let alert = page.split("<li class=\"alert double_use\"").nth(1).unwrap();
        for what in [
            "post-a",
            "DA-1",
            "post-b",
            "DB-7",
            "2026-01-01 10:30:00 UTC",
            "evidence verified",
        ] {
            assert!(alert.contains(what), "{what}: {alert}");
        }
    }

    #[test]
    fn the_page_lists_open_alerts_and_recent_verdicts() {
        let t = Telemetry::new(std::path::Path::new("/nonexistent"), false, 1_790_000_000);
        let v: Verdict = serde_json::from_value(serde_json::json!({
            "declaration_id": "D-7", "verdict": "cleared", "license_id": "L-7",
            "checkpoint": "c", "decided_at": "2026-01-01T10:11:12Z", "reasons": []
        }))
        .unwrap();
        t.decided(Arc::new(v), None);
        let page = page(&t, "lyg-port-01", 1_790_000_000, &Ui::english(), None);
        assert!(page.contains("lyg-port-01") && page.contains("D-7") && page.contains("failing"));
        assert!(!page.contains("{verdicts}"));
    }
}
