//! The hub's HTTP listener: `/metrics` (Prometheus), `/healthz`, and a
//! read-only JSON API for the national view: a license's story across
//! posts, checkpoints and their state, alerts with their evidence, and
//! flows of consumed licenses by end user, destination and HS heading.
//!
//! Design: it reads through its own handle on the store (a second SQLite
//! connection, or the PostgreSQL pool), never the handle the hub writes
//! with. It has no sign-in yet: keep it on loopback or behind a proxy that
//! authenticates.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde::Deserialize;
use tokio::sync::Mutex;

use super::store::Store;
use super::store::view::FlowBy;
use crate::clock::{UnixTime, parse_rfc3339};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Kind {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Checkpoint {
    checkpoint: String,
}

/// What the hub tells its operators, updated by the hub loop.
pub struct HubTelemetry {
    registry: Registry,
    stored: Counter,
    refused: Family<Reason, Counter>,
    alerts: Family<Kind, Counter>,
    store_seconds: Histogram,
    pending: Gauge,
    connected: Gauge,
    contiguous: Family<Checkpoint, Gauge>,
    silent: Family<Checkpoint, Gauge>,
    log_size: Gauge,
    broker_up: AtomicBool,
    /// Unix seconds since the store has failed (0: it works).
    store_failing_since: AtomicI64,
    /// Refusals of every reason, summed.
    refused_total: AtomicU64,
    equivocations: Family<Checkpoint, Counter>,
    backfill_ignored: Family<Reason, Counter>,
    publish_refused: Family<Reason, Counter>,
}

impl HubTelemetry {
    /// Fresh telemetry.
    pub fn new() -> Arc<HubTelemetry> {
        let mut registry = Registry::with_prefix("permitgate_hub");
        let stored = Counter::default();
        registry.register(
            "records_stored",
            "Records appended to the national log",
            stored.clone(),
        );
        let refused = Family::<Reason, Counter>::default();
        registry.register(
            "refused",
            "Records and requests refused (forged, unknown signer, not included, unreadable)",
            refused.clone(),
        );
        let alerts = Family::<Kind, Counter>::default();
        registry.register("alerts", "Alerts raised, by kind", alerts.clone());
        let equivocations = Family::<Checkpoint, Counter>::default();
        registry.register(
            "equivocations",
            "Proofs that a checkpoint's key signed two histories (log_equivocation alerts), by checkpoint",
            equivocations.clone(),
        );
        let backfill_ignored = Family::<Reason, Counter>::default();
        registry.register(
            "backfill_ignored",
            "Backfill requests not answered: repeated (a replay or a duplicate) or over the rate per checkpoint key",
            backfill_ignored.clone(),
        );
        let publish_refused = Family::<Reason, Counter>::default();
        registry.register(
            "publish_refused",
            "Publications the broker refused (its PUBACK reason)",
            publish_refused.clone(),
        );
        let store_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register(
            "store_seconds",
            "Time to handle one message, store included",
            store_seconds.clone(),
        );
        let g = |registry: &mut Registry, name: &str, help: &str| {
            let g = Gauge::default();
            registry.register(name, help, g.clone());
            g
        };
        let pending = g(
            &mut registry,
            "pending_messages",
            "Messages received and not yet stored",
        );
        let connected = g(
            &mut registry,
            "broker_connected",
            "1 while connected to the national broker",
        );
        let log_size = g(
            &mut registry,
            "national_log_size",
            "Entries in the national log",
        );
        let contiguous = Family::<Checkpoint, Gauge>::default();
        registry.register(
            "checkpoint_contiguous",
            "The hub holds every record of the checkpoint up to this number",
            contiguous.clone(),
        );
        let silent = Family::<Checkpoint, Gauge>::default();
        registry.register(
            "checkpoint_silent_seconds",
            "Seconds since the hub last stored records of the checkpoint",
            silent.clone(),
        );
        Arc::new(HubTelemetry {
            registry,
            stored,
            refused,
            alerts,
            store_seconds,
            pending,
            connected,
            contiguous,
            silent,
            log_size,
            broker_up: AtomicBool::new(false),
            store_failing_since: AtomicI64::new(0),
            refused_total: AtomicU64::new(0),
            equivocations,
            backfill_ignored,
            publish_refused,
        })
    }

    /// Records appended.
    pub fn stored(&self, n: u64) {
        self.stored.inc_by(n);
    }

    /// Something refused.
    pub fn refused(&self, reason: &str) {
        self.refused
            .get_or_create(&Reason {
                reason: reason.to_owned(),
            })
            .inc();
        self.refused_total.fetch_add(1, Ordering::Relaxed);
    }

    /// Records and requests refused so far, whatever the reason.
    pub fn refused_total(&self) -> u64 {
        self.refused_total.load(Ordering::Relaxed)
    }

    /// A proof that `checkpoint`'s key signed two histories.
    pub fn equivocation(&self, checkpoint: &str) {
        self.equivocations
            .get_or_create(&Checkpoint {
                checkpoint: checkpoint.to_owned(),
            })
            .inc();
    }

    /// A backfill request not answered, and why (`repeated`, `rate`).
    pub fn backfill_ignored(&self, reason: &str) {
        self.backfill_ignored
            .get_or_create(&Reason {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// A publication the broker refused, with its reason.
    pub fn publish_refused(&self, reason: &str) {
        self.publish_refused
            .get_or_create(&Reason {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// An alert raised.
    pub fn alerted(&self, kind: &str) {
        self.alerts
            .get_or_create(&Kind {
                kind: kind.to_owned(),
            })
            .inc();
    }

    /// One message handled, in `secs`.
    pub fn handled(&self, secs: f64, pending: usize) {
        self.store_seconds.observe(secs);
        self.pending.set(pending as i64);
    }

    /// The broker connection went up or down.
    pub fn broker(&self, up: bool) {
        self.broker_up.store(up, Ordering::Relaxed);
        self.connected.set(i64::from(up));
    }

    /// The store failed (`Some(now)`), or works again.
    pub fn store_failing(&self, since: Option<UnixTime>) {
        self.store_failing_since
            .store(since.unwrap_or(0), Ordering::Relaxed);
    }
}

#[derive(Clone)]
pub(super) struct App {
    telemetry: Arc<HubTelemetry>,
    pub(super) store: Arc<Mutex<Store>>,
    pub(super) clock: crate::clock::SharedClock,
    /// Who may sign in to the national view and the API; `None`: open (on loopback).
    pub(super) signin: Option<Arc<crate::signin::SignIn>>,
    /// The policy in force: its registry checks the evidence shown.
    pub(super) in_force: Arc<crate::in_force::PolicyInForce>,
    /// Served over HTTPS: the session cookie is `Secure`.
    pub(super) secure: bool,
    /// The time zone the pages show times in.
    pub(super) tz: jiff::tz::TimeZone,
}

/// What the hub's listener serves from.
pub struct Sources {
    /// The hub's telemetry.
    pub telemetry: Arc<HubTelemetry>,
    /// A store handle of its own, for reading.
    pub reader: Store,
    /// Where the time is read.
    pub clock: crate::clock::SharedClock,
    /// Who may sign in (`[national]`).
    pub signin: Option<Arc<crate::signin::SignIn>>,
    /// The policy in force.
    pub in_force: Arc<crate::in_force::PolicyInForce>,
}

/// Binds the configured address now (a taken port stops start-up) and serves in the background.
pub async fn start(
    config: &crate::config::HttpConfig,
    from: Sources,
) -> Result<tokio::task::JoinHandle<()>, crate::http::HttpError> {
    let Sources {
        telemetry,
        reader,
        clock,
        signin,
        in_force,
    } = from;
    let (addr, tls, tz) = (config.listen, config.tls.clone(), config.tz.clone());
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| crate::http::HttpError { addr, source })?;
    let local = listener.local_addr().unwrap_or(addr);
    tracing::info!(listen = %local, "hub http: /metrics, /healthz, /api/…");
    let state = App {
        telemetry,
        store: Arc::new(Mutex::new(reader)),
        clock,
        signin,
        in_force,
        secure: tls.is_some(),
        tz,
    };
    // Design: one sign-in check in front of everything that shows records,
    // rather than one in each handler.
    let signed_in = Router::new()
        .route("/api/licenses/{id}", get(license))
        .route("/api/checkpoints", get(checkpoints))
        .route("/api/alerts", get(alerts))
        .route("/api/flows", get(flows))
        .route("/national", get(super::national::page))
        .route("/national/flows.csv", get(super::national::flows_csv))
        .route("/national/cases.csv", get(super::national::cases_csv))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            super::national::require_sign_in,
        ));
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route(
            "/signin",
            get(super::national::sign_in_form).post(super::national::sign_in),
        )
        .route("/signout", axum::routing::post(super::national::sign_out))
        .route("/lang", get(super::national::choose_language))
        .merge(signed_in)
        .with_state(state);
    Ok(crate::https::serve(listener, tls, app, "hub http"))
}

fn json(code: StatusCode, body: serde_json::Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn store_error(e: super::store::StoreError) -> Response {
    json(
        StatusCode::SERVICE_UNAVAILABLE,
        serde_json::json!({"error": e.to_string()}),
    )
}

async fn metrics(State(app): State<App>) -> Response {
    let now = app.clock.now();
    let mut store = app.store.lock().await;
    if let Ok(cps) = store.checkpoints(now).await {
        for c in cps {
            let label = Checkpoint {
                checkpoint: c.checkpoint.clone(),
            };
            app.telemetry
                .contiguous
                .get_or_create(&label)
                .set(c.contiguous as i64);
            app.telemetry
                .silent
                .get_or_create(&label)
                .set(c.silent_secs.unwrap_or(0));
        }
    }
    if let Ok(size) = store.head().await {
        app.telemetry.log_size.set(size as i64);
    }
    drop(store);
    let mut out = String::new();
    let _ = prometheus_client::encoding::text::encode(&mut out, &app.telemetry.registry);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        out,
    )
        .into_response()
}

/// `ready`, `degraded` (200) or `failing` (503), with reasons in words.
async fn healthz(State(app): State<App>) -> Response {
    let now = app.clock.now();
    let mut failing = Vec::new();
    if let Err(e) = app.store.lock().await.writable().await {
        failing.push(format!("store not writable: {}", e.message));
    }
    let since = app.telemetry.store_failing_since.load(Ordering::Relaxed);
    if since > 0 {
        failing.push(format!("storing records fails for {} s", now - since));
    }
    let mut degraded = Vec::new();
    if !app.telemetry.broker_up.load(Ordering::Relaxed) {
        degraded.push("not connected to the national broker".to_owned());
    }
    let state = if !failing.is_empty() {
        "failing"
    } else if !degraded.is_empty() {
        "degraded"
    } else {
        "ready"
    };
    failing.extend(degraded);
    let code = if state == "failing" {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    json(
        code,
        serde_json::json!({"state": state, "reasons": failing}),
    )
}

async fn license(State(app): State<App>, Path(id): Path<String>) -> Response {
    let mut store = app.store.lock().await;
    let records = match store.license(&id).await {
        Ok(r) => r,
        Err(e) => return store_error(e),
    };
    let alerts = match store.alerts(None, 0, i64::MAX, 1000).await {
        Ok(a) => a
            .into_iter()
            .filter(|a| a.license_id.as_deref() == Some(id.as_str()))
            .collect::<Vec<_>>(),
        Err(e) => return store_error(e),
    };
    let double_use = records.len() > 1;
    json(
        StatusCode::OK,
        serde_json::json!({
            "license_id": id,
            "uses": records,
            "double_use": double_use,
            "alerts": alerts,
        }),
    )
}

async fn checkpoints(State(app): State<App>) -> Response {
    match app.store.lock().await.checkpoints(app.clock.now()).await {
        Ok(c) => json(StatusCode::OK, serde_json::json!({"checkpoints": c})),
        Err(e) => store_error(e),
    }
}

#[derive(Deserialize)]
struct Range {
    kind: Option<String>,
    by: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<u32>,
}

/// An RFC 3339 time or a date (`2026-11-01`, its midnight UTC); the error in words.
pub(super) fn time_arg(v: &Option<String>, default: UnixTime) -> Result<UnixTime, String> {
    match v {
        None => Ok(default),
        Some(t) if t.len() == 10 => parse_rfc3339(&format!("{t}T00:00:00Z")),
        Some(t) => parse_rfc3339(t),
    }
}

fn bad_request(why: String) -> Response {
    json(StatusCode::BAD_REQUEST, serde_json::json!({"error": why}))
}

async fn alerts(State(app): State<App>, Query(q): Query<Range>) -> Response {
    let (since, until) = match (time_arg(&q.since, 0), time_arg(&q.until, i64::MAX)) {
        (Ok(s), Ok(u)) => (s, u),
        (Err(e), _) | (_, Err(e)) => return bad_request(e),
    };
    let limit = q.limit.unwrap_or(100).min(1000);
    match app
        .store
        .lock()
        .await
        .alerts(q.kind.as_deref(), since, until, limit)
        .await
    {
        Ok(a) => json(StatusCode::OK, serde_json::json!({"alerts": a})),
        Err(e) => store_error(e),
    }
}

async fn flows(State(app): State<App>, Query(q): Query<Range>) -> Response {
    let Some(by) = q.by.as_deref().and_then(FlowBy::parse) else {
        return json(
            StatusCode::BAD_REQUEST,
            serde_json::json!({"error": "`by` must be end_user, destination or hs"}),
        );
    };
    let (since, until) = match (time_arg(&q.since, 0), time_arg(&q.until, i64::MAX)) {
        (Ok(s), Ok(u)) => (s, u),
        (Err(e), _) | (_, Err(e)) => return bad_request(e),
    };
    match app.store.lock().await.flows(by, since, until).await {
        Ok(rows) => json(
            StatusCode::OK,
            serde_json::json!({"by": q.by, "flows": rows}),
        ),
        Err(e) => store_error(e),
    }
}
