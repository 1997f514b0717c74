//! The chaos admin API: off by default, enabled only by `run --admin-listen ADDR` with a token,
//! bound to loopback, for chaos scripts and recovery drills. Nothing else is served on it.
//!
//! Every request needs `Authorization: Bearer <token>` (compared in constant time); anything
//! else is 401, unknown paths 404, other methods 405. Each action is logged at WARN and counted
//! in `gateway_admin_actions_total{action}`.
//!
//! ```text
//! GET  /admin/tree                      the supervision tree: path -> running, permanent, restarts;
//!                                       plus the number of open sessions
//! POST /admin/actors/{path}/kill        kill an actor (its supervisor restarts it per policy):
//!                                       root/storage, root/forwarders, root/forwarders/forwarder:<sink>,
//!                                       root/sessions, root/rotation, root/devices, root (the root
//!                                       supervisor: the process exits 1), root/sessions/any (one session)
//! POST /admin/actors/{path}/stop        the same, as a graceful stop
//! POST /admin/storage/faults?n=N        the next N storage commits fail (1..=10000)
//! ```

use edge_gateway_actors::metrics::{AdminAction, AdminLabels};
use std::convert::Infallible;
use std::sync::Arc;

use edge_gateway_actors::health::Health;
use edge_gateway_actors::metrics::Metrics;
use edge_gateway_actors::slot::ActorSlot;
use edge_gateway_actors::storage::StorageMsg;
use edge_gateway_actors::supervisor::SupervisorMsg;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use ractor::{ActorCell, ActorRef};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// What the admin API acts on.
#[derive(Clone)]
pub struct Admin {
    /// The bearer token.
    pub token: Arc<str>,
    /// Tracked children (paths, cells, restart counts).
    pub health: Health,
    /// The root supervisor.
    pub root: ActorRef<SupervisorMsg>,
    /// The storage actor (fault injection).
    pub storage: ActorSlot<StorageMsg>,
    /// The sessions supervisor (its children are the sessions).
    pub sessions: ActorSlot<SupervisorMsg>,
    /// Counters.
    pub metrics: Metrics,
}

/// Serve on `listener` until `stop` turns true.
pub async fn serve(listener: TcpListener, admin: Admin, mut stop: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => return,
        };
        let Ok((stream, _)) = accepted else { continue };
        let admin = admin.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let admin = admin.clone();
                async move { Ok::<_, Infallible>(admin.route(&req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(stream), svc).await;
        });
    }
}

impl Admin {
    async fn route(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        if !self.authorized(req) {
            return reply(StatusCode::UNAUTHORIZED, "missing or wrong bearer token\n".into());
        }
        let path = req.uri().path();
        match (req.method(), path) {
            (&Method::GET, "/admin/tree") => self.tree(),
            (&Method::POST, "/admin/storage/faults") => self.faults(req.uri().query()),
            (&Method::POST, p) if p.starts_with("/admin/actors/") => self.act(p),
            (_, "/admin/tree" | "/admin/storage/faults") => reply(StatusCode::METHOD_NOT_ALLOWED, "wrong method\n".into()),
            (_, p) if p.starts_with("/admin/actors/") => reply(StatusCode::METHOD_NOT_ALLOWED, "use POST\n".into()),
            _ => reply(StatusCode::NOT_FOUND, "not an admin endpoint\n".into()),
        }
    }

    fn authorized(&self, req: &Request<Incoming>) -> bool {
        let given = req.headers().get(hyper::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        given.is_some_and(|g| constant_time_eq(g.as_bytes(), self.token.as_bytes()))
    }

    fn tree(&self) -> Response<Full<Bytes>> {
        let children = super::tree_json::supervision_json(&self.health);
        let sessions = self.sessions.get().map(|s| s.get_cell().get_children().len()).unwrap_or(0);
        let body = serde_json::json!({"root": {"running": true}, "children": children, "sessions": sessions});
        let mut resp = reply(StatusCode::OK, body.to_string());
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
        resp
    }

    fn faults(&self, query: Option<&str>) -> Response<Full<Bytes>> {
        let n = query.into_iter().flat_map(|q| q.split('&')).find_map(|kv| kv.strip_prefix("n=")?.parse::<u32>().ok());
        let Some(n) = n.filter(|n| (1..=10_000).contains(n)) else {
            return reply(StatusCode::BAD_REQUEST, "need ?n=1..10000\n".into());
        };
        let Some(storage) = self.storage.get() else {
            return reply(StatusCode::SERVICE_UNAVAILABLE, "storage actor is restarting\n".into());
        };
        if storage.send_message(StorageMsg::InjectFaults(n)).is_err() {
            return reply(StatusCode::SERVICE_UNAVAILABLE, "storage actor is restarting\n".into());
        }
        self.count(AdminAction::StorageFaults);
        tracing::warn!(commits = n, "Admin: the next storage commits will fail.");
        reply(StatusCode::OK, format!("the next {n} commits fail\n"))
    }

    /// `/admin/actors/{path}/kill` or `/stop`.
    fn act(&self, p: &str) -> Response<Full<Bytes>> {
        let rest = &p["/admin/actors/".len()..];
        let (target, action) = match rest.rsplit_once('/') {
            Some((t, "kill")) => (t, AdminAction::Kill),
            Some((t, "stop")) => (t, AdminAction::Stop),
            _ => return reply(StatusCode::NOT_FOUND, "use /admin/actors/{path}/kill or /stop\n".into()),
        };
        let Some(cell) = self.find(target) else { return reply(StatusCode::NOT_FOUND, format!("no running actor at {target}\n")) };
        if action == AdminAction::Kill {
            cell.kill();
        } else {
            cell.stop(Some("admin".into()));
        }
        self.count(action);
        tracing::warn!(actor = target, %action, "Admin: actor {action}ed.");
        reply(StatusCode::OK, format!("{action} sent to {target}\n"))
    }

    fn find(&self, target: &str) -> Option<ActorCell> {
        match target {
            "root" => Some(self.root.get_cell()),
            "root/sessions/any" => self.sessions.get()?.get_cell().get_children().into_iter().next(),
            path => self.health.actor(path),
        }
    }

    fn count(&self, action: AdminAction) {
        self.metrics.admin_actions.get_or_create(&AdminLabels { action }).inc();
    }
}

/// Equal without an early exit on the first difference (the length is not secret).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn reply(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp
}
