//! The local HTTP endpoint (axum): `/metrics`, `/healthz`, `/readyz`, `/api/dead-letters`,
//! `/api/rejected`, `/api/schemas`, `/api/devices`, `/api/devices/{identity}`, `/api/health`,
//! `POST /api/store/acknowledge`, `POST /api/publish` (the downlink, `downlink.rs`).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router, middleware};
use edge_gateway_actors::devices::DevicesMsg;
use edge_gateway_actors::health::Health;
use edge_gateway_actors::storage::Store;
use prometheus_client::registry::Registry;
use ractor::rpc::CallResult;

use super::bearer::{self, Token};
use crate::config::HttpAuth;
use crate::egress::WireMessage;

/// What the endpoint serves from.
#[derive(Clone)]
pub struct LocalApi {
    /// Every metric, encoded on each scrape.
    pub registry: Arc<Registry>,
    /// Readiness inputs.
    pub health: Health,
    /// The store, for read-only inspection (dead letters, backlog).
    pub store: Store,
    /// The device health actor.
    pub devices: edge_gateway_actors::slot::ActorSlot<DevicesMsg>,
    /// Forwarder progress.
    pub liveness: edge_gateway_actors::liveness::Liveness,
    /// Everything that holds certificates (for their expiry).
    pub certificates: Vec<Arc<dyn edge_gateway_actors::rotation::Reloadable>>,
    /// When the gateway started.
    pub started: std::time::Instant,
    /// The file listing quarantined stores; removed when an operator acknowledges them.
    pub quarantine_marker: std::path::PathBuf,
    /// Quota, overflow and TTL, shown in `/api/health` (two of them delete acknowledged messages).
    pub storage_policy: edge_gateway_actors::storage::StoragePolicy,
    /// The schema registry in use.
    pub schemas: Arc<crate::schema::Schemas>,
    /// Local subscriptions and retained messages (the downlink publishes through it).
    pub router: Arc<crate::routing::Router>,
    /// The storage actor (the downlink's messages are stored like a device's).
    pub storage: edge_gateway_actors::slot::ActorSlot<edge_gateway_actors::storage::StorageMsg>,
    /// The identity `POST /api/publish` publishes as.
    pub api_identity: String,
    /// `mqtt.max_packet_size`: the largest message the downlink takes.
    pub max_packet_size: usize,
    /// The data dir (its `update/state.json`: the last self-update).
    pub data_dir: std::path::PathBuf,
    /// Every metric (the update phase is read from its file at each scrape).
    pub metrics: edge_gateway_actors::metrics::Metrics,
    /// The archive's settings and classes, when it is on.
    pub archive: Option<(crate::config::ArchiveConfig, crate::archive::Classes)>,
}

/// Every route. Probes (`/healthz`, `/readyz`) are always open; `POST /api/store/acknowledge`
/// always needs the token; `/metrics` and `/api/*` need it with `http.auth = "all"`. Other
/// methods on a known path get 405, unknown paths 404.
pub fn router(api: LocalApi, token: Token, auth: HttpAuth) -> Router {
    let guard = || middleware::from_fn_with_state(token.clone(), bearer::require);
    let probes = Router::new().route("/healthz", get(|| async { "ok\n" })).route("/readyz", get(readyz));
    let mut reads = Router::new()
        .route("/metrics", get(metrics))
        .route("/api/dead-letters", get(dead_letters))
        .route("/api/rejected", get(rejected))
        .route("/api/schemas", get(|State(api): Api| async move { Json(api.schemas.describe()) }))
        .route("/api/devices", get(devices_list))
        .route("/api/devices/{identity}", get(device))
        .route("/api/health", get(gateway_health));
    if auth == HttpAuth::All {
        reads = reads.route_layer(guard());
    }
    let writes = Router::new()
        .route("/api/store/acknowledge", post(acknowledge))
        .route("/api/publish", post(super::downlink::publish))
        .route_layer(guard());
    probes.merge(reads).merge(writes).fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") }).with_state(Arc::new(api))
}

pub(super) type Api = State<Arc<LocalApi>>;

/// OpenMetrics when the scraper asks for it (Prometheus does), else the classic text format
/// (what `promtool check metrics` and curl users read).
async fn metrics(State(api): Api, headers: HeaderMap) -> Response {
    let phase = match crate::update::state::read(&api.data_dir) {
        Ok(state) => state.map(|s| s.phase.label()),
        Err(_) => Some(edge_gateway_actors::metrics::UpdatePhase::Unreadable),
    };
    for &p in edge_gateway_actors::metrics::UpdatePhase::ALL {
        api.metrics.update_phase.get_or_create(&edge_gateway_actors::metrics::UpdateLabels { phase: p }).set(i64::from(phase == Some(p)));
    }
    let mut buf = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut buf, &api.registry) {
        return (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot encode metrics: {e}\n")).into_response();
    }
    let openmetrics = headers.get_all(header::ACCEPT).iter().any(|v| v.to_str().is_ok_and(|v| v.contains("application/openmetrics-text")));
    let (body, content_type) = if openmetrics {
        (buf, "application/openmetrics-text; version=1.0.0; charset=utf-8")
    } else {
        (super::openmetrics::to_text_format(&buf), "text/plain; version=0.0.4; charset=utf-8")
    };
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn readyz(State(api): Api) -> Response {
    match api.health.readiness() {
        Ok(()) => "ready\n".into_response(),
        Err(problems) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready:\n{}\n", problems.join("\n"))).into_response(),
    }
}

/// The operator has seen the quarantined store: clear the marker and the degraded state.
async fn acknowledge(State(api): Api) -> Response {
    let Some(to) = api.health.quarantined() else { return "nothing to acknowledge\n".into_response() };
    match std::fs::remove_file(&api.quarantine_marker) {
        Ok(()) => {
            api.health.set_quarantined(None);
            tracing::warn!(quarantined = %to, "Operator acknowledged the quarantined store.");
            format!("acknowledged: {to}\n").into_response()
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            api.health.set_quarantined(None);
            format!("acknowledged: {to}\n").into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot remove {}: {e}; still degraded\n", api.quarantine_marker.display()))
            .into_response(),
    }
}

/// `?limit=N` on `/api/dead-letters` (default 100, at most 10,000).
#[derive(serde::Deserialize)]
struct Limit {
    limit: Option<usize>,
}

/// Dead letters as JSON: `[{"sink":..,"reason":..,"message":{..as sent to the cloud..}}]`.
async fn dead_letters(State(api): Api, Query(q): Query<Limit>) -> Response {
    let limit = q.limit.unwrap_or(100).min(10_000);
    // Reading and decoding up to 10,000 records: off the async threads.
    match tokio::task::spawn_blocking(move || api.store.dead_letters(limit)).await {
        Ok(Ok(letters)) => {
            let body: Vec<serde_json::Value> = letters
                .iter()
                .map(|d| serde_json::json!({"sink": d.sink, "reason": d.reason, "message": WireMessage::new(&d.record)}))
                .collect();
            Json(body).into_response()
        }
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot read dead letters: {e}\n")).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

/// `?from=S&limit=N` on `/api/rejected`.
#[derive(serde::Deserialize)]
struct Page {
    from: Option<u64>,
    limit: Option<usize>,
}

/// Messages kept apart (failed their schema, never forwarded), oldest first:
/// `{"messages": [{"id": S, "message": {..as a sink would get it, with "schema"..}}], "next": S}`
/// (`next`: the `from` of the following page, when there may be one).
async fn rejected(State(api): Api, Query(q): Query<Page>) -> Response {
    // Each record may be as large as a packet: at most 1,000 per page.
    let (from, limit) = (q.from.unwrap_or(0), q.limit.unwrap_or(100).clamp(1, 1_000));
    match tokio::task::spawn_blocking(move || api.store.rejected(from, limit)).await {
        Ok(Ok(records)) => {
            let next = (records.len() == limit).then(|| records.last().map(|r| r.seq + 1)).flatten();
            let messages: Vec<serde_json::Value> =
                records.iter().map(|r| serde_json::json!({"id": r.seq, "message": WireMessage::new(r)})).collect();
            Json(serde_json::json!({"messages": messages, "next": next})).into_response()
        }
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot read the rejected messages: {e}\n")).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

/// Every known device with its state: `[{"identity":..,"state":"online"|"silent"|"offline",..}]`.
async fn devices_list(State(api): Api) -> Response {
    let Some(actor) = api.devices.get() else { return restarting() };
    match actor.call(DevicesMsg::List, Some(ACTOR_TIMEOUT)).await {
        Ok(CallResult::Success(list)) => Json(list).into_response(),
        _ => no_answer(),
    }
}

/// One device (the identity percent-decoded from the path), or 404.
async fn device(State(api): Api, Path(identity): Path<String>) -> Response {
    let Some(actor) = api.devices.get() else { return restarting() };
    match actor.call(|reply| DevicesMsg::Get(identity, reply), Some(ACTOR_TIMEOUT)).await {
        Ok(CallResult::Success(Some(d))) => {
            // Its subscriptions: its connection's, or its persistent session's (also offline).
            let subscriptions: Vec<serde_json::Value> = api
                .router
                .subscriptions_of(&d.client_id)
                .into_iter()
                .map(|(filter, qos)| serde_json::json!({"filter": filter, "qos": qos}))
                .collect();
            let mut body = serde_json::to_value(&d).unwrap_or_default();
            body["subscriptions"] = subscriptions.into();
            if let Some((expiry_secs, connected)) = api.router.session_of(&d.client_id) {
                let (store, client_id) = (api.store.clone(), d.client_id.clone());
                let queued = tokio::task::spawn_blocking(move || store.queued_len(&client_id).ok()).await.ok().flatten();
                let expiry = (expiry_secs != u32::MAX).then_some(expiry_secs);
                body["session"] = serde_json::json!({"persistent": true, "connected": connected, "expiry_secs": expiry, "queued": queued});
            }
            Json(body).into_response()
        }
        Ok(CallResult::Success(None)) => (StatusCode::NOT_FOUND, "no such device\n").into_response(),
        _ => no_answer(),
    }
}

/// The gateway itself: uptime, readiness, backlog, supervision tree, forwarders, certificates.
async fn gateway_health(State(api): Api) -> Response {
    match tokio::task::spawn_blocking(move || api.gateway_health()).await {
        Ok(body) => Json(body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

/// How long a call to the device health actor may take.
const ACTOR_TIMEOUT: Duration = Duration::from_secs(5);

fn restarting() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, "device health actor is restarting\n").into_response()
}

fn no_answer() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, "device health actor did not answer\n").into_response()
}

impl LocalApi {
    /// The gateway itself: uptime, readiness, backlog, supervision tree, forwarders, certificates.
    fn gateway_health(&self) -> serde_json::Value {
        let now_ms = edge_gateway_actors::storage::now_ms();
        let backlog = self.store.stats().ok().map(|s| {
            let age = s.oldest_received_ms.map(|t| now_ms.saturating_sub(t) as f64 / 1000.0);
            serde_json::json!({"messages": s.messages, "bytes": s.bytes, "next_seq": s.next_seq, "oldest_age_s": age})
        });
        let children = super::tree_json::supervision_json(&self.health);
        let certificates: Vec<serde_json::Value> = self
            .certificates
            .iter()
            .flat_map(|t| t.expiry())
            .map(|c| serde_json::json!({"cert": c.label, "subject": c.subject, "not_after": c.not_after, "days_left": (c.not_after - (now_ms / 1000) as i64) as f64 / 86_400.0}))
            .collect();
        serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_s": self.started.elapsed().as_secs_f64(),
            "ready": self.health.readiness().err().unwrap_or_default(),
            "backlog": backlog,
            "storage_policy": {
                "quota_messages": self.storage_policy.quota_messages,
                "quota_bytes": self.storage_policy.quota_bytes,
                "overflow": self.storage_policy.overflow.as_str(),
                "ttl_secs": self.storage_policy.ttl.map(|t| t.as_secs()),
                "deletes_acknowledged_messages": self.storage_policy.overflow == edge_gateway_actors::storage::Overflow::DropOldest || self.storage_policy.ttl.is_some(),
            },
            "supervision": children,
            "forwarders_idle_s": self.liveness.idle_secs(),
            "certificates": certificates,
            "update": match crate::update::state::read(&self.data_dir) {
                Ok(state) => serde_json::to_value(state).unwrap_or_default(),
                Err(e) => serde_json::json!({"error": e.to_string()}),
            },
            "archive": self.archive.as_ref().map(|(config, classes)| crate::archive::status::health_json(config, classes, &self.metrics)),
        })
    }
}
