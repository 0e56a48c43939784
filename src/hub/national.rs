//! The national view for anti-smuggling teams, served by the hub: double
//! uses with their evidence (checked again as the page is drawn), a
//! license's story across posts, where controlled goods went (by end user,
//! destination and HS heading over time), the checkpoints' state, and CSV
//! of each. Sign-in as at the posts' desks ([`crate::signin`]), from the
//! hub's `[national]` table.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use html_escape::{encode_double_quoted_attribute as attr, encode_text as esc};

use super::http::App;
use super::store::{FlowBy, FlowRow};
use crate::clock::to_rfc3339;
use crate::signin::cookie;
use crate::verdict::Alert;

/// Most double uses and flow rows a page shows (CSV has them all up to the store's limit).
const PAGE_ROWS: u32 = 200;

/// Who is signed in, as the sign-in layer found them (empty when the view is open).
#[derive(Clone)]
pub(super) struct Investigator(pub(super) String);

/// The layer in front of the view and the API: the request goes on with
/// the signed-in investigator, or the browser goes to sign in.
pub(super) async fn require_sign_in(
    State(app): State<App>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let who = match &app.signin {
        None => String::new(),
        Some(s) => match s.session(cookie(request.headers())) {
            Some(session) => session.officer,
            None => return Redirect::to("/signin").into_response(),
        },
    };
    request.extensions_mut().insert(Investigator(who));
    next.run(request).await
}

/// The view's query: a flow dimension and a time range, a license.
#[derive(serde::Deserialize, Default)]
pub(super) struct ViewQuery {
    by: Option<String>,
    since: Option<String>,
    until: Option<String>,
    license: Option<String>,
}

impl ViewQuery {
    fn by(&self) -> (FlowBy, &str) {
        let by = self.by.as_deref().unwrap_or("end_user");
        (FlowBy::parse(by).unwrap_or(FlowBy::EndUser), by)
    }

    fn range(&self) -> Result<(i64, i64), String> {
        Ok((
            super::http::time_arg(&self.since, 0)?,
            super::http::time_arg(&self.until, i64::MAX)?,
        ))
    }
}

/// A double use's evidence, checked against the policy in force.
fn checked(app: &App, a: &Alert) -> Result<(), String> {
    let registry = app.in_force.current().registry.clone();
    crate::sync::verify::proven_double_use(a, &registry, app.clock.now()).map(|_| ())
}

/// The keys that signed two histories, each with its evidence checked.
fn equivocations_html(app: &App, ui: &crate::ui::Ui, alerts: &[Alert]) -> String {
    let registry = app.in_force.current().registry.clone();
    let mut html = String::new();
    for a in alerts {
        let verdict = match crate::sync::equivocation::verify(a, &registry, "hub", app.clock.now())
        {
            Ok(_) => format!(
                "<span class=\"ok\">{}</span>",
                esc(&ui.t("national.equivocation_verified"))
            ),
            Err(why) => format!(
                "<span class=\"bad\">{}</span>",
                esc(&ui.t_with("national.unverified", &[("why", &why)]))
            ),
        };
        let signer = a.signer.as_deref().unwrap_or("");
        let evidence: String = a
            .heads
            .iter()
            .map(|h| format!("<pre>{}</pre>", esc(h)))
            .chain(a.records.iter().map(|r| {
                format!(
                    "<p><b>{}</b> #{} {}</p><pre>{}</pre>",
                    esc(&r.checkpoint),
                    r.seq,
                    esc(&r.declaration_id),
                    esc(&r.proven.head)
                )
            }))
            .collect();
        let _ = write!(
            html,
            "<li class=\"case\" data-signer=\"{sa}\">{what}<br>{detail}<br>{verdict}<details><summary>{ev}</summary>{evidence}</details></li>",
            sa = attr(signer),
            what = esc(&ui.t_with(
                "national.equivocation_of",
                &[("post", signer), ("at", &ui.time(&a.raised_at))]
            )),
            detail = esc(a.detail.as_deref().unwrap_or("")),
            ev = esc(&ui.t("national.evidence")),
        );
    }
    html
}

/// `/national`: the double uses, the checkpoints, the flows, a license's story.
pub(super) async fn page(
    State(app): State<App>,
    axum::Extension(Investigator(who)): axum::Extension<Investigator>,
    headers: HeaderMap,
    Query(q): Query<ViewQuery>,
) -> Response {
    let (since, until) = match q.range() {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, e).into_response(),
    };
    let (by, by_name) = q.by();
    let now = app.clock.now();
    let ui = ui(&app, &headers);
    let mut store = app.store.lock().await;
    let cases = store
        .alerts(Some("double_use"), 0, i64::MAX, PAGE_ROWS)
        .await;
    let equivocations = store
        .alerts(Some("log_equivocation"), 0, i64::MAX, PAGE_ROWS)
        .await
        .unwrap_or_default();
    let checkpoints = store.checkpoints(now).await;
    let flows = store.flows(by, since, until).await;
    let story = match q.license.as_deref().filter(|l| !l.trim().is_empty()) {
        Some(l) => Some((l.trim().to_owned(), store.license(l.trim()).await)),
        None => None,
    };
    drop(store);
    let (cases, checkpoints, flows) = match (cases, checkpoints, flows) {
        (Ok(a), Ok(c), Ok(f)) => (a, c, f),
        (Err(e), ..) | (_, Err(e), _) | (.., Err(e)) => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the store fails: {e}"),
            )
                .into_response();
        }
    };
    let mut cases_html = String::new();
    for a in &cases {
        let verdict = match checked(&app, a) {
            Ok(()) => format!(
                "<span class=\"ok\">{}</span>",
                esc(&ui.t("national.verified"))
            ),
            Err(why) => format!(
                "<span class=\"bad\">{}</span>",
                esc(&ui.t_with("national.unverified", &[("why", &why)]))
            ),
        };
        let uses: String = a
            .records
            .iter()
            .map(|r| {
                format!(
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>#{}</td></tr>",
                    esc(&r.checkpoint),
                    esc(&r.declaration_id),
                    esc(&r.consumed_at),
                    r.seq
                )
            })
            .collect();
        let proofs: String = a
            .records
            .iter()
            .map(|r| {
                format!(
                    "<p><b>{}</b> leaf {} of its log<br><code>{}</code><br>proof: <code>{}</code></p><pre>{}</pre>",
                    esc(&r.checkpoint),
                    r.proven.index,
                    esc(&hex::encode(&r.proven.leaf)),
                    esc(&r.proven.proof.iter().map(|h| hex::encode(h.0)).collect::<Vec<_>>().join(" ")),
                    esc(&r.proven.head)
                )
            })
            .collect();
        let lic = a.license_id.as_deref().unwrap_or("");
        let _ = write!(
            cases_html,
            "<li class=\"case\" data-license=\"{la}\"><b><a href=\"/national?license={lu}\">{l}</a></b> {used}\
             <table><tr><th>{post}</th><th>{declaration}</th><th>{consumed}</th><th>{record}</th></tr>{uses}</table>{verdict}\
             <details><summary>{evidence}</summary>{proofs}</details></li>",
            used = esc(&ui.t_with(
                "national.used_times",
                &[
                    ("n", &a.records.len().to_string()),
                    ("at", &ui.time(&a.raised_at))
                ]
            )),
            post = esc(&ui.t("national.post")),
            declaration = esc(&ui.t("national.declaration")),
            consumed = esc(&ui.t("national.consumed")),
            record = esc(&ui.t("national.record")),
            evidence = esc(&ui.t("national.evidence")),
            la = attr(lic),
            lu = attr(&crate::http::percent_encoded(lic)),
            l = esc(lic),
        );
    }
    let cps: String = checkpoints
        .iter()
        .map(|c| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&c.checkpoint),
                esc(&c
                    .last_seen
                    .as_deref()
                    .map(|t| ui.time(t))
                    .unwrap_or_else(|| ui.t("national.never"))),
                c.silent_secs
                    .map(crate::telemetry::human)
                    .unwrap_or_default(),
                c.contiguous,
                c.head_size.map(|s| s.to_string()).unwrap_or_default()
            )
        })
        .collect();
    let flow_rows: String = flows
        .iter()
        .take(PAGE_ROWS as usize)
        .map(|f| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td></tr>",
                esc(&f.day),
                esc(&f.key),
                f.records,
                f.net_kg
            )
        })
        .collect();
    let story_html = match story {
        None => String::new(),
        Some((l, Err(e))) => format!(
            "<section id=\"story\"><h2>{} {}</h2><p class=\"bad\">{}</p></section>",
            esc(&ui.t("desk.license")),
            esc(&l),
            esc(&e.to_string())
        ),
        Some((l, Ok(uses))) if uses.is_empty() => format!(
            "<section id=\"story\"><h2>{} {}</h2><p>{}</p></section>",
            esc(&ui.t("desk.license")),
            esc(&l),
            esc(&ui.t("national.not_consumed"))
        ),
        Some((l, Ok(uses))) => {
            let rows: String = uses
                .iter()
                .map(|u| {
                    format!(
                        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                        esc(&ui.time(&u.consumed_at)),
                        esc(&u.checkpoint),
                        esc(&u.declaration_id),
                        esc(&u.exporter),
                        esc(&u.end_user),
                        esc(&u.destination),
                        u.g
                    )
                })
                .collect();
            format!(
                "<section id=\"story\"><h2>{} {}{}</h2><table><tr>{}</tr>{rows}</table></section>",
                esc(&ui.t("desk.license")),
                esc(&l),
                if uses.len() > 1 {
                    esc(&ui.t("national.more_than_once")).into_owned()
                } else {
                    String::new()
                },
                [
                    "national.consumed",
                    "national.post",
                    "national.declaration",
                    "national.exporter",
                    "national.end_user",
                    "national.destination",
                    "national.national_no"
                ]
                .iter()
                .map(|k| format!("<th>{}</th>", esc(&ui.t(k))))
                .collect::<String>()
            )
        }
    };
    let qs = format!(
        "by={}&since={}&until={}",
        crate::http::percent_encoded(by_name),
        crate::http::percent_encoded(q.since.as_deref().unwrap_or("")),
        crate::http::percent_encoded(q.until.as_deref().unwrap_or(""))
    );
    let options: String = [
        ("end_user", "national.by_end_user"),
        ("destination", "national.by_destination"),
        ("hs", "national.by_hs"),
    ]
    .iter()
    .map(|(v, label)| {
        format!(
            "<option value=\"{v}\"{}>{}</option>",
            if *v == by_name { " selected" } else { "" },
            esc(&ui.t(label))
        )
    })
    .collect();
    let body = ui
        .localize(PAGE)
        .replace(
            "{who}",
            &esc(if who.is_empty() {
                "(open on loopback)"
            } else {
                &who
            }),
        )
        .replace("{story}", &story_html)
        .replace("{cases}", &cases_html)
        .replace("{checkpoints}", &cps)
        .replace("{options}", &options)
        .replace("{since}", &attr(q.since.as_deref().unwrap_or("")))
        .replace("{until}", &attr(q.until.as_deref().unwrap_or("")))
        .replace("{flows}", &flow_rows)
        .replace("{flows_csv}", &attr(&format!("/national/flows.csv?{qs}")))
        .replace(
            "{as_of}",
            &esc(&ui.t_with("national.as_of", &[("now", &ui.time(&to_rfc3339(now)))])),
        )
        // Last: what it holds came from outside and is never read for placeholders.
        .replace(
            "{equivocations}",
            &equivocations_html(&app, &ui, &equivocations),
        );
    Html(body).into_response()
}

/// `/national/flows.csv`: the flows of the page's query.
pub(super) async fn flows_csv(State(app): State<App>, Query(q): Query<ViewQuery>) -> Response {
    let (since, until) = match q.range() {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, e).into_response(),
    };
    let (by, by_name) = q.by();
    match app.store.lock().await.flows(by, since, until).await {
        Ok(rows) => csv_response(
            &format!("flows-by-{by_name}.csv"),
            &["day", by_name, "licenses", "net_kg"],
            rows.iter().map(|f: &FlowRow| {
                vec![
                    f.day.clone(),
                    f.key.clone(),
                    f.records.to_string(),
                    format!("{:.3}", f.net_kg),
                ]
            }),
        ),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the store fails: {e}"),
        )
            .into_response(),
    }
}

/// `/national/cases.csv`: one row per use in each double use, with whether its evidence verified.
pub(super) async fn cases_csv(State(app): State<App>) -> Response {
    let cases = match app
        .store
        .lock()
        .await
        .alerts(Some("double_use"), 0, i64::MAX, 1000)
        .await
    {
        Ok(a) => a,
        Err(e) => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the store fails: {e}"),
            )
                .into_response();
        }
    };
    let mut rows = Vec::new();
    for a in &cases {
        let verified = checked(&app, a).is_ok();
        for r in &a.records {
            rows.push(vec![
                a.license_id.clone().unwrap_or_default(),
                a.raised_at.clone(),
                r.checkpoint.clone(),
                r.declaration_id.clone(),
                r.consumed_at.clone(),
                r.seq.to_string(),
                verified.to_string(),
            ]);
        }
    }
    csv_response(
        "double-uses.csv",
        &[
            "license_id",
            "raised_at",
            "checkpoint",
            "declaration_id",
            "consumed_at",
            "seq",
            "evidence_verified",
        ],
        rows.into_iter(),
    )
}

fn csv_response(
    name: &str,
    header_row: &[&str],
    rows: impl Iterator<Item = Vec<String>>,
) -> Response {
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record(header_row);
    for r in rows {
        let _ = w.write_record(&r);
    }
    let body = w.into_inner().unwrap_or_default();
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        body,
    )
        .into_response()
}

/// The sign-in form.
pub(super) async fn sign_in_form(State(app): State<App>, headers: HeaderMap) -> Html<String> {
    let ui = ui(&app, &headers);
    Html(crate::signin::sign_in_page(
        &ui.t("national.title"),
        false,
        &ui,
    ))
}

/// The page's language (the investigator's choice, else the browser's) in the hub's time zone.
fn ui(app: &App, headers: &HeaderMap) -> crate::ui::Ui {
    crate::ui::Ui::for_headers(headers, &app.tz)
}

#[derive(serde::Deserialize)]
pub(super) struct Choose {
    to: String,
}

/// `/lang?to=zh-CN`: keeps the investigator's choice of language.
pub(super) async fn choose_language(headers: HeaderMap, Query(q): Query<Choose>) -> Response {
    crate::ui::choose(&headers, &q.to)
}

#[derive(serde::Deserialize)]
pub(super) struct SignInForm {
    officer: String,
    password: String,
}

/// Signs an investigator in.
pub(super) async fn sign_in(
    State(app): State<App>,
    headers: HeaderMap,
    axum::extract::Form(f): axum::extract::Form<SignInForm>,
) -> Response {
    match &app.signin {
        Some(s) => {
            let ui = ui(&app, &headers);
            crate::signin::answer_sign_in(
                Arc::clone(s),
                (f.officer, f.password),
                &ui.t("national.title"),
                &ui,
                app.secure,
                "/national",
            )
            .await
        }
        None => Redirect::to("/national").into_response(),
    }
}

/// Signs out.
pub(super) async fn sign_out(State(app): State<App>, headers: HeaderMap) -> Response {
    crate::signin::answer_sign_out(app.signin.as_deref(), &headers)
}

const PAGE: &str = include_str!("national.html");
