//! The operators' HTTP listener: `/metrics` (Prometheus), `/healthz`, and
//! the gate console at `/` with its live feed at `/events` (server-sent
//! events). Read-only: nothing here changes the daemon.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use futures_util::Stream;
use tokio::sync::broadcast::error::RecvError;

use crate::clock::SharedClock;
use crate::console;
use crate::telemetry::{ConsoleEvent, Telemetry};

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
}

/// How often the console's status strip is refreshed.
const STRIP_EVERY: Duration = Duration::from_secs(2);

/// Binds `addr` now (so a taken port stops start-up) and serves in the background.
pub async fn start(
    addr: SocketAddr,
    telemetry: Arc<Telemetry>,
    checkpoint: &str,
    clock: SharedClock,
) -> Result<tokio::task::JoinHandle<()>, HttpError> {
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
        .with_state(App {
            telemetry,
            checkpoint: checkpoint.into(),
            clock,
        });
    // No graceful shutdown: console streams never end by themselves; the
    // task is dropped with the daemon.
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "http: the listener failed");
        }
    }))
}

async fn page(State(app): State<App>) -> Html<String> {
    Html(console::page(
        &app.telemetry,
        &app.checkpoint,
        app.clock.now(),
    ))
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

async fn events(State(app): State<App>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = app.telemetry.subscribe();
    let tick = tokio::time::interval(STRIP_EVERY);
    let stream = futures_util::stream::unfold(
        (rx, tick, app),
        |(mut rx, mut tick, app)| async move {
            let event = tokio::select! {
                r = rx.recv() => match r {
                    Ok(ConsoleEvent::Verdict(v)) => {
                        // The counts on the strip have changed: show them soon.
                        tick.reset_after(Duration::from_millis(250));
                        Event::default().event("verdict").data(console::verdict_row(&v))
                    }
                    Ok(ConsoleEvent::Alert(a)) => Event::default().event("alert").data(console::alert_row(&a)),
                    // A slow page missed some rows; the next ones still come.
                    Err(RecvError::Lagged(_)) => strip(&app),
                    Err(RecvError::Closed) => return None,
                },
                _ = tick.tick() => strip(&app),
            };
            Some((Ok(event), (rx, tick, app)))
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::default())
}

fn strip(app: &App) -> Event {
    Event::default()
        .event("strip")
        .data(console::strip(&app.telemetry, app.clock.now()))
}
