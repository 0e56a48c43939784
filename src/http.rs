//! The operators' HTTP listener: `/metrics` (Prometheus), `/healthz`, and
//! the gate console at `/` with its live feed at `/events` (server-sent
//! events), and the officers' desk (`/signin`, `/desk`: see [`crate::desk`]).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::extract::{Form, Query};
use axum::http::HeaderMap;
use axum::http::{StatusCode, header};
use axum::response::Redirect;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::Stream;
use tokio::sync::broadcast::error::RecvError;

use crate::clock::SharedClock;
use crate::console;
use crate::desk::{self, Desk, Session};
use crate::telemetry::{ConsoleEvent, Telemetry};
use crate::ui::Ui;

/// The HTTP listener could not start.
#[derive(Debug, thiserror::Error)]
#[error("`http.listen` {addr}: {source}")]
pub struct HttpError {
    /// The configured address.
    pub addr: SocketAddr,
    /// Why it could not be bound.
    pub source: std::io::Error,
}

#[derive(Clone)]
struct App {
    telemetry: Arc<Telemetry>,
    checkpoint: Arc<str>,
    clock: SharedClock,
    /// The officers' desk; when set, the console needs a sign-in.
    desk: Option<Arc<Desk>>,
    /// Served over HTTPS: the session cookie is `Secure`.
    secure: bool,
    /// The post's time zone, for the pages.
    tz: jiff::tz::TimeZone,
    /// A read handle on the ledger: which alerts are still open.
    ledger: Option<Arc<std::sync::Mutex<crate::ledger::Ledger>>>,
}

/// How often the console's status strip is refreshed.
const STRIP_EVERY: Duration = Duration::from_secs(2);

/// What the listener serves from.
pub struct Sources {
    /// The daemon's telemetry: metrics, health, the live feed.
    pub telemetry: Arc<Telemetry>,
    /// This checkpoint's id.
    pub checkpoint: String,
    /// Where the time is read.
    pub clock: SharedClock,
    /// The officers' desk, when `[desk]` is set.
    pub desk: Option<Arc<Desk>>,
    /// A read handle on the ledger: which alerts are still open.
    pub ledger: Option<crate::ledger::Ledger>,
}

/// Binds the configured address now (so a taken port stops start-up) and serves in the background.
pub async fn start(
    config: &crate::config::HttpConfig,
    from: Sources,
) -> Result<tokio::task::JoinHandle<()>, HttpError> {
    let Sources {
        telemetry,
        checkpoint,
        clock,
        desk,
        ledger,
    } = from;
    let (addr, tls, tz) = (config.listen, config.tls.clone(), config.tz.clone());
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| HttpError { addr, source })?;
    let local = listener.local_addr().unwrap_or(addr);
    tracing::info!(listen = %local, "http: metrics at /metrics, health at /healthz, gate console at /");
    let app = Router::new()
        .route("/", get(page))
        .route("/events", get(events))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/signin", get(sign_in_form).post(sign_in))
        .route("/signout", post(sign_out))
        .route("/lang", get(choose_language))
        .route("/desk", get(desk_page))
        .route("/desk/scan", post(desk_scan))
        .route("/desk/hold", post(desk_hold))
        .route("/desk/alert", post(desk_alert))
        .with_state(App {
            telemetry,
            checkpoint: checkpoint.into(),
            clock,
            desk,
            secure: tls.is_some(),
            tz,
            ledger: ledger.map(|l| Arc::new(std::sync::Mutex::new(l))),
        });
    // No graceful shutdown: console streams never end by themselves; the
    // task is dropped with the daemon.
    Ok(crate::https::serve(listener, tls, app, "http"))
}

async fn page(State(app): State<App>, headers: HeaderMap) -> Response {
    if let Some(desk) = &app.desk
        && desk.signin.session(cookie(&headers)).is_none()
    {
        return Redirect::to("/signin").into_response();
    }
    let not_closed = match app.ledger.clone() {
        Some(l) => tokio::task::spawn_blocking(move || {
            let l = l.lock().unwrap_or_else(|p| p.into_inner());
            l.alert_rows(false, crate::telemetry::RECENT).ok()
        })
        .await
        .ok()
        .flatten()
        .map(|rows| rows.into_iter().map(|r| r.alert).collect()),
        None => None,
    };
    Html(console::page(
        &app.telemetry,
        &app.checkpoint,
        app.clock.now(),
        &ui(&app, &headers),
        not_closed,
    ))
    .into_response()
}

/// The page's language (the officer's choice, else the browser's) and the post's time zone.
fn ui(app: &App, headers: &HeaderMap) -> Ui {
    Ui::for_headers(headers, &app.tz)
}

#[derive(serde::Deserialize)]
struct Choose {
    to: String,
}

/// `/lang?to=zh-CN`: keeps the officer's choice of language, back to where they were.
async fn choose_language(headers: HeaderMap, Query(q): Query<Choose>) -> Response {
    crate::ui::choose(&headers, &q.to)
}

async fn metrics(State(app): State<App>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.telemetry.render_metrics(app.clock.now()),
    )
        .into_response()
}

/// `ready` and `degraded` answer 200 (the gate decides); `failing` 503.
async fn healthz(State(app): State<App>) -> Response {
    let h = app.telemetry.health(app.clock.now());
    let code = if h.state == crate::telemetry::HealthState::Failing {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let body = serde_json::json!({"state": h.state, "reasons": h.reasons});
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn events(State(app): State<App>, headers: HeaderMap) -> Response {
    if let Some(desk) = &app.desk
        && desk.signin.session(cookie(&headers)).is_none()
    {
        return (StatusCode::UNAUTHORIZED, "sign in first").into_response();
    }
    let ui = ui(&app, &headers);
    live(app, ui).into_response()
}

fn live(app: App, ui: Ui) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = app.telemetry.subscribe();
    let tick = tokio::time::interval(STRIP_EVERY);
    let stream = futures_util::stream::unfold(
        (rx, tick, app, ui),
        |(mut rx, mut tick, app, ui)| async move {
            let event = tokio::select! {
                r = rx.recv() => match r {
                    Ok(ConsoleEvent::Verdict(v)) => {
                        // The counts on the strip have changed: show them soon.
                        tick.reset_after(Duration::from_millis(250));
                        Event::default().event("verdict").data(console::verdict_row(&v, &ui))
                    }
                    Ok(ConsoleEvent::Alert(a)) => Event::default().event("alert").data(console::alert_row(&a, &ui)),
                    // A slow page missed some rows; the next ones still come.
                    Err(RecvError::Lagged(_)) => strip(&app, &ui),
                    Err(RecvError::Closed) => return None,
                },
                _ = tick.tick() => strip(&app, &ui),
            };
            Some((Ok(event), (rx, tick, app, ui)))
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::default())
}

fn strip(app: &App, ui: &Ui) -> Event {
    Event::default()
        .event("strip")
        .data(console::strip(&app.telemetry, app.clock.now(), ui))
}

use crate::signin::cookie;

/// The signed-in officer, or the answer that sends them to sign in.
fn officer(app: &App, headers: &HeaderMap) -> Result<(Arc<Desk>, Session), Box<Response>> {
    let Some(desk) = app.desk.clone() else {
        return Err(Box::new(
            (
                StatusCode::NOT_FOUND,
                "no officer accounts: add [desk] to the config",
            )
                .into_response(),
        ));
    };
    match desk.signin.session(cookie(headers)) {
        Some(s) => Ok((desk, s)),
        None => Err(Box::new(Redirect::to("/signin").into_response())),
    }
}

async fn sign_in_form(State(app): State<App>, headers: HeaderMap) -> Html<String> {
    Html(desk::sign_in_page(
        &app.checkpoint,
        false,
        &ui(&app, &headers),
    ))
}

#[derive(serde::Deserialize)]
struct SignIn {
    officer: String,
    password: String,
}

async fn sign_in(State(app): State<App>, headers: HeaderMap, Form(f): Form<SignIn>) -> Response {
    let Some(desk) = app.desk.clone() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let signin = desk.signin.clone();
    crate::signin::answer_sign_in(
        signin,
        (f.officer, f.password),
        &app.checkpoint,
        &ui(&app, &headers),
        app.secure,
        "/desk",
    )
    .await
}

async fn sign_out(State(app): State<App>, headers: HeaderMap) -> Response {
    crate::signin::answer_sign_out(app.desk.as_ref().map(|d| &*d.signin), &headers)
}

#[derive(serde::Deserialize, Default)]
struct Message {
    #[serde(default)]
    msg: String,
}

async fn desk_page(State(app): State<App>, headers: HeaderMap, q: Query<Message>) -> Response {
    let (desk, s) = match officer(&app, &headers) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let msg = q.0.msg;
    let ui = ui(&app, &headers);
    blocking(move || desk.page(&s, &msg, "", &ui)).await
}

#[derive(serde::Deserialize)]
struct Scan {
    text: String,
}

async fn desk_scan(State(app): State<App>, headers: HeaderMap, Form(f): Form<Scan>) -> Response {
    let (desk, s) = match officer(&app, &headers) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let ui = ui(&app, &headers);
    blocking(move || {
        let result = desk.scan(&f.text, &ui);
        desk.page(&s, "", &result, &ui)
    })
    .await
}

#[derive(serde::Deserialize)]
struct HoldForm {
    declaration_id: String,
    outcome: String,
    #[serde(default)]
    note: String,
}

async fn desk_hold(
    State(app): State<App>,
    headers: HeaderMap,
    Form(f): Form<HoldForm>,
) -> Response {
    act(&app, &headers, move |desk, s, ui| {
        desk.resolve(s, &f.declaration_id, &f.outcome, &f.note, ui)
    })
    .await
}

/// Runs an officer's action off the async threads (it writes the ledger),
/// then back to the desk saying what happened.
async fn act(
    app: &App,
    headers: &HeaderMap,
    action: impl FnOnce(&Desk, &Session, &Ui) -> String + Send + 'static,
) -> Response {
    let (desk, s) = match officer(app, headers) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let ui = ui(app, headers);
    let failed = ui.t_with("desk.not_recorded", &[("why", "the desk failed")]);
    let message = tokio::task::spawn_blocking(move || action(&desk, &s, &ui))
        .await
        .unwrap_or(failed);
    back_to_desk(&message)
}

#[derive(serde::Deserialize)]
struct AlertForm {
    alert_id: i64,
    action: String,
    #[serde(default)]
    note: String,
    #[serde(default)]
    to: String,
}

async fn desk_alert(
    State(app): State<App>,
    headers: HeaderMap,
    Form(f): Form<AlertForm>,
) -> Response {
    act(&app, &headers, move |desk, s, ui| {
        desk.work_alert(s, f.alert_id, &f.action, &f.note, &f.to, ui)
    })
    .await
}

/// After an action: the desk again, saying what happened (a reload does not repeat it).
fn back_to_desk(message: &str) -> Response {
    let q = percent_encoded(message);
    Redirect::to(&format!("/desk?msg={q}")).into_response()
}

/// Percent-encodes a query value.
pub(crate) fn percent_encoded(m: &str) -> String {
    form_urlencoded::byte_serialize(m.as_bytes()).collect()
}

/// Renders a page off the async threads (it reads the ledger).
async fn blocking(f: impl FnOnce() -> String + Send + 'static) -> Response {
    match tokio::task::spawn_blocking(f).await {
        Ok(page) => Html(page).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "the desk failed").into_response(),
    }
}
