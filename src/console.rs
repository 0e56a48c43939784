//! The gate console: the officer's read-only page, rendered on the server.
//!
//! Design: every row is rendered here, both for the first page and for
//! each live event, so the page's script only inserts HTML it is sent
//! (server-sent events) and the look lives in one place. No asset comes
//! from anywhere but this binary: a border post is often offline.

use html_escape::encode_text as esc;

use crate::clock::UnixTime;
use crate::telemetry::{Health, Telemetry, human};
use crate::verdict::{Alert, Verdict};

/// How long an alert stays at the top of the page as open.
pub const OPEN_ALERT_SECS: i64 = 24 * 3600;

/// One verdict as a list item; `twice` when a double use of its license is known.
pub fn verdict_row(v: &Verdict) -> String {
    verdict_row_marked(v, false)
}

fn verdict_row_marked(v: &Verdict, twice: bool) -> String {
    let reasons: Vec<String> = v
        .reasons
        .iter()
        .map(|r| {
            format!(
                "<span class=\"code\" title=\"{}\">{}</span>",
                html_escape::encode_double_quoted_attribute(&r.detail),
                esc(r.code.as_str())
            )
        })
        .collect();
    let resolved = v
        .resolution
        .as_ref()
        .map(|r| {
            format!(
                " <i class=\"resolved\">{} by officer {}</i>",
                esc(r.outcome.as_str()),
                esc(&r.officer)
            )
        })
        .unwrap_or_default();
    format!(
        "<li class=\"verdict {kind}{twice}\" data-declaration=\"{id_attr}\" data-license=\"{lic_attr}\"><time>{at}</time><span class=\"badge\">{kind_text}</span> \
         <b class=\"decl\">{id}</b> <span class=\"lic\">{lic}</span> {reasons}{resolved}<span class=\"twice-note\">license used twice: see the alert</span></li>",
        kind = v.verdict.as_str(),
        twice = if twice { " twice" } else { "" },
        kind_text = esc(&v.verdict.as_str().replace('_', " ")),
        id_attr =
            html_escape::encode_double_quoted_attribute(v.declaration_id.as_deref().unwrap_or("")),
        lic_attr =
            html_escape::encode_double_quoted_attribute(v.license_id.as_deref().unwrap_or("")),
        id = esc(v.declaration_id.as_deref().unwrap_or("(no id)")),
        lic = esc(v.license_id.as_deref().unwrap_or("no license")),
        reasons = reasons.join(" "),
        at = esc(v.decided_at.get(11..19).unwrap_or(&v.decided_at)),
    )
}

/// One alert as a list item. A double use lists both uses (post,
/// declaration, time) and says its evidence was verified: a post stores
/// one only after checking every record's signature and its proof in the
/// national log.
pub fn alert_row(a: &Alert) -> String {
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
                    "<li><b>{}</b> · declaration {} · {}</li>",
                    esc(&r.checkpoint),
                    esc(&r.declaration_id),
                    esc(&r.consumed_at)
                )
            })
            .collect();
        format!(
            "<ol class=\"uses\">{rows}</ol><span class=\"verified\">evidence verified: each use signed by its post and proven in the national log</span>"
        )
    } else {
        String::new()
    };
    format!(
        "<li class=\"alert {kind_class}\" data-license=\"{lic_attr}\"><time>{at}</time><span class=\"badge\">{kind}</span> <b>{decl}</b> {lic} <span class=\"what\">{what}</span>{uses}</li>",
        kind_class = a.kind.as_str(),
        kind = esc(&a.kind.as_str().replace('_', " ")),
        lic_attr =
            html_escape::encode_double_quoted_attribute(a.license_id.as_deref().unwrap_or("")),
        decl = esc(a.declaration_id.as_deref().unwrap_or("")),
        lic = esc(a.license_id.as_deref().unwrap_or("")),
        what = esc(&what.join("; ")),
        at = esc(a.raised_at.get(11..19).unwrap_or(&a.raised_at)),
    )
}

/// The status strip: health, connection, sync backlog, policy age.
pub fn strip(t: &Telemetry, now: UnixTime) -> String {
    let Health { state, reasons } = t.health(now);
    let (policy_age, outbox_age, waiting) = t.ages(now);
    let backlog = match (t.has_uplink(), outbox_age) {
        (false, _) => format!("no uplink: {waiting} consumption records kept here"),
        (true, Some(age)) => format!(
            "{waiting} records waiting for the hub, oldest {}",
            human(age)
        ),
        (true, None) => "all records synced".to_owned(),
    };
    let policy = match policy_age {
        Some(age) => format!("policy v{} ({} old)", t.policy_version(), human(age)),
        None => format!("policy v{}", t.policy_version()),
    };
    let why = if reasons.is_empty() {
        String::new()
    } else {
        format!(" — {}", esc(&reasons.join("; ")))
    };
    format!(
        "<span class=\"state {state}\">{state}</span>{why} <span>{backlog}</span> <span>{policy}</span>",
        backlog = esc(&backlog),
        policy = esc(&policy),
    )
}

/// The whole page, with the latest verdicts and the open alerts.
pub fn page(t: &Telemetry, checkpoint: &str, now: UnixTime) -> String {
    let (verdicts, alerts) = t.recent();
    let open: Vec<String> = alerts
        .iter()
        .filter(|a| {
            crate::clock::parse_rfc3339(&a.raised_at)
                .map(|at| now - at < OPEN_ALERT_SECS)
                .unwrap_or(true)
        })
        .map(|a| alert_row(a))
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
            )
        })
        .collect();
    PAGE.replace("{checkpoint}", &esc(checkpoint))
        .replace("{strip}", &strip(t, now))
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
        let row = verdict_row(&v);
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
        let page = page(&t, "post-a", 1_767_265_200);
        let card = page.split("<li class=\"verdict").nth(1).unwrap();
        assert!(card.starts_with(" cleared twice\""), "{card}");
        let alert = page.split("<li class=\"alert double_use\"").nth(1).unwrap();
        for what in [
            "post-a",
            "DA-1",
            "post-b",
            "DB-7",
            "2026-01-01T10:30:00Z",
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
        let page = page(&t, "lyg-port-01", 1_790_000_000);
        assert!(page.contains("lyg-port-01") && page.contains("D-7") && page.contains("failing"));
        assert!(!page.contains("{verdicts}"));
    }
}
