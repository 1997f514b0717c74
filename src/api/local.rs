//! The local HTTP endpoint (hyper 1): `/metrics`, `/healthz`, `/readyz`, `/api/dead-letters`,
//! `/api/devices`, `/api/devices/{identity}`, `/api/health`.

use std::convert::Infallible;
use std::sync::Arc;

use edge_gateway_actors::health::Health;
use edge_gateway_actors::storage::Store;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;

use edge_gateway_actors::devices::DevicesMsg;
use ractor::rpc::CallResult;

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
}

/// Serve on `listener` until `stop` turns true.
pub async fn serve(listener: TcpListener, api: LocalApi, mut stop: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => return,
        };
        let (stream, _) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "HTTP accept failed.");
                continue;
            }
        };
        let api = api.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let api = api.clone();
                async move { Ok::<_, Infallible>(api.route(&req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
            let _ = conn.await;
        });
    }
}

impl LocalApi {
    async fn route(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        if req.method() == Method::POST && req.uri().path() == "/api/store/acknowledge" {
            return match self.health.quarantined() {
                Some(to) => match std::fs::remove_file(&self.quarantine_marker) {
                    Ok(()) => {
                        self.health.set_quarantined(None);
                        tracing::warn!(quarantined = %to, "Operator acknowledged the quarantined store.");
                        text(StatusCode::OK, format!("acknowledged: {to}\n"))
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        self.health.set_quarantined(None);
                        text(StatusCode::OK, format!("acknowledged: {to}\n"))
                    }
                    Err(e) => text(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("cannot remove {}: {e}; still degraded\n", self.quarantine_marker.display()),
                    ),
                },
                None => text(StatusCode::OK, "nothing to acknowledge\n".into()),
            };
        }
        if req.method() != Method::GET {
            return text(StatusCode::METHOD_NOT_ALLOWED, "only GET (and POST /api/store/acknowledge)\n".into());
        }
        match req.uri().path() {
            "/metrics" => self.metrics(wants_openmetrics(req)),
            "/healthz" => text(StatusCode::OK, "ok\n".into()),
            "/readyz" => match self.health.readiness() {
                Ok(()) => text(StatusCode::OK, "ready\n".into()),
                Err(problems) => text(StatusCode::SERVICE_UNAVAILABLE, format!("not ready:\n{}\n", problems.join("\n"))),
            },
            "/api/dead-letters" => {
                let (api, limit) = (self.clone(), query_limit(req.uri().query()));
                // Reading and decoding up to 10,000 records: off the async threads.
                tokio::task::spawn_blocking(move || api.dead_letters(limit))
                    .await
                    .unwrap_or_else(|e| text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")))
            }
            "/api/devices" => self.devices_list().await,
            "/api/health" => {
                let api = self.clone();
                tokio::task::spawn_blocking(move || api.gateway_health())
                    .await
                    .unwrap_or_else(|e| text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")))
            }
            path => match path.strip_prefix("/api/devices/") {
                Some(id) if !id.is_empty() => self.device(&percent_decode(id)).await,
                _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
            },
        }
    }

    /// OpenMetrics when the scraper asks for it (Prometheus does), else the classic text format
    /// (what `promtool check metrics` and curl users read).
    fn metrics(&self, openmetrics: bool) -> Response<Full<Bytes>> {
        let mut buf = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut buf, &self.registry) {
            return text(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot encode metrics: {e}\n"));
        }
        let (body, content_type) = if openmetrics {
            (buf, "application/openmetrics-text; version=1.0.0; charset=utf-8")
        } else {
            (super::openmetrics::to_text_format(&buf), "text/plain; version=0.0.4; charset=utf-8")
        };
        let mut resp = Response::new(Full::new(Bytes::from(body)));
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static(content_type));
        resp
    }
}

impl LocalApi {
    /// Dead letters as JSON: `[{"sink":..,"reason":..,"message":{..as sent to the cloud..}}]`.
    fn dead_letters(&self, limit: usize) -> Response<Full<Bytes>> {
        let letters = match self.store.dead_letters(limit) {
            Ok(l) => l,
            Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot read dead letters: {e}\n")),
        };
        let body: Vec<serde_json::Value> = letters
            .iter()
            .map(|d| serde_json::json!({"sink": d.sink, "reason": d.reason, "message": WireMessage::new(&d.record)}))
            .collect();
        let mut resp = Response::new(Full::new(Bytes::from(serde_json::Value::Array(body).to_string())));
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
        resp
    }
}

impl LocalApi {
    /// Every known device with its state: `[{"identity":..,"state":"online"|"silent"|"offline",..}]`.
    async fn devices_list(&self) -> Response<Full<Bytes>> {
        let Some(actor) = self.devices.get() else {
            return text(StatusCode::SERVICE_UNAVAILABLE, "device health actor is restarting\n".into());
        };
        match actor.call(DevicesMsg::List, Some(std::time::Duration::from_secs(5))).await {
            Ok(CallResult::Success(list)) => json(StatusCode::OK, serde_json::to_value(list).unwrap_or_default()),
            _ => text(StatusCode::SERVICE_UNAVAILABLE, "device health actor did not answer\n".into()),
        }
    }

    /// One device, or 404.
    async fn device(&self, id: &str) -> Response<Full<Bytes>> {
        let Some(actor) = self.devices.get() else {
            return text(StatusCode::SERVICE_UNAVAILABLE, "device health actor is restarting\n".into());
        };
        let id = id.to_string();
        match actor.call(|reply| DevicesMsg::Get(id, reply), Some(std::time::Duration::from_secs(5))).await {
            Ok(CallResult::Success(Some(d))) => json(StatusCode::OK, serde_json::to_value(d).unwrap_or_default()),
            Ok(CallResult::Success(None)) => text(StatusCode::NOT_FOUND, "no such device\n".into()),
            _ => text(StatusCode::SERVICE_UNAVAILABLE, "device health actor did not answer\n".into()),
        }
    }

    /// The gateway itself: uptime, readiness, backlog, supervision tree, forwarders, certificates.
    fn gateway_health(&self) -> Response<Full<Bytes>> {
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
        let body = serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_s": self.started.elapsed().as_secs_f64(),
            "ready": self.health.readiness().err().unwrap_or_default(),
            "backlog": backlog,
            "supervision": children,
            "forwarders_idle_s": self.liveness.idle_secs(),
            "certificates": certificates,
        });
        json(StatusCode::OK, body)
    }
}

/// `%xx` escapes in a path segment (identities may contain characters a URL must escape).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn json(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    resp
}

/// `?limit=N` (default 100, at most 10,000).
fn query_limit(query: Option<&str>) -> usize {
    let limit = query.into_iter().flat_map(|q| q.split('&')).find_map(|kv| kv.strip_prefix("limit=")?.parse::<usize>().ok());
    limit.unwrap_or(100).min(10_000)
}

fn wants_openmetrics(req: &Request<Incoming>) -> bool {
    req.headers().get_all(hyper::header::ACCEPT).iter().any(|v| v.to_str().is_ok_and(|v| v.contains("application/openmetrics-text")))
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}
