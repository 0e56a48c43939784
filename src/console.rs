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

/// One verdict as a list item.
pub fn verdict_row(v: &Verdict) -> String {
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
    format!(
        "<li class=\"verdict {kind}\" data-declaration=\"{id_attr}\"><time>{at}</time><span class=\"badge\">{kind_text}</span> \
         <b class=\"decl\">{id}</b> <span class=\"lic\">{lic}</span> {reasons}</li>",
        kind = v.verdict.as_str(),
        kind_text = esc(&v.verdict.as_str().replace('_', " ")),
        id_attr =
            html_escape::encode_double_quoted_attribute(v.declaration_id.as_deref().unwrap_or("")),
        id = esc(v.declaration_id.as_deref().unwrap_or("(no id)")),
        lic = esc(v.license_id.as_deref().unwrap_or("no license")),
        reasons = reasons.join(" "),
        at = esc(v.decided_at.get(11..19).unwrap_or(&v.decided_at)),
    )
}

/// One alert as a list item.
pub fn alert_row(a: &Alert) -> String {
    let mut what: Vec<String> = a.reasons.iter().map(|r| r.detail.clone()).collect();
    if let Some(d) = &a.detail {
        what.push(d.clone());
    }
    format!(
        "<li class=\"alert\"><time>{at}</time><span class=\"badge\">{kind}</span> <b>{decl}</b> {lic} <span class=\"what\">{what}</span></li>",
        kind = esc(&a.kind.as_str().replace('_', " ")),
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
    let rows: Vec<String> = verdicts.iter().map(|v| verdict_row(v)).collect();
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
