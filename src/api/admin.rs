//! The chaos admin API: off by default, enabled only by `run --admin-listen ADDR` with a token,
//! bound to loopback, for chaos scripts and recovery drills. Nothing else is served on it.
//!
//! Every request needs `Authorization: Bearer <token>` (`bearer.rs`, compared in constant time
//! with `subtle`); anything else is 401, unknown paths 404, other methods 405. Each action is logged at WARN and counted
//! in `gateway_admin_actions_total{action}`.
//!
//! ```text
//! GET  /admin/tree                      the supervision tree: path -> running, permanent, restarts;
//!                                       plus the number of open sessions
//! POST /admin/actors/{path}/kill        kill an actor (its supervisor restarts it per policy):
//!                                       root/storage, root/forwarders, root/forwarders/forwarder:<sink>,
//!                                       root/sessions, root/rotation, root/devices, root (the root
//!                                       supervisor: the process exits 1), root/sessions/any (end one
//!                                       session: its connection closes; a session is an entry of
//!                                       the sessions actor, so kill and stop do the same)
//! POST /admin/actors/{path}/stop        the same, as a graceful stop
//! POST /admin/storage/faults?n=N        the next N storage commits fail (1..=10000)
//! POST /admin/io/stall?ms=N             block the next MQTT I/O thread to beat for N ms
//!                                       (1..=120000): a wedged thread, for the watchdog
//! ```

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use edge_gateway_actors::health::Health;
use edge_gateway_actors::metrics::{AdminAction, AdminLabels, Metrics};
use edge_gateway_actors::session::{SessionsMsg, Which};
use edge_gateway_actors::slot::ActorSlot;
use edge_gateway_actors::storage::StorageMsg;
use edge_gateway_actors::supervisor::SupervisorMsg;
use ractor::{ActorCell, ActorRef, RpcReplyPort};

use super::bearer::{self, Token};

/// What the admin API acts on.
#[derive(Clone)]
pub struct Admin {
    /// The bearer token.
    pub token: Token,
    /// Tracked children (paths, cells, restart counts).
    pub health: Health,
    /// The root supervisor.
    pub root: ActorRef<SupervisorMsg>,
    /// The storage actor (fault injection).
    pub storage: ActorSlot<StorageMsg>,
    /// The sessions actor (its entries are the sessions).
    pub sessions: ActorSlot<SessionsMsg>,
    /// Counters.
    pub metrics: Metrics,
}

/// Every route behind the token check (unknown paths too: without the token nothing is 404).
pub fn router(admin: Admin) -> Router {
    let token = admin.token.clone();
    Router::new()
        .route("/admin/tree", get(tree))
        .route("/admin/storage/faults", post(faults))
        .route("/admin/io/stall", post(stall_io))
        .route("/admin/actors/{*action}", post(act))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not an admin endpoint\n") })
        .layer(middleware::from_fn_with_state(token, bearer::require))
        .with_state(Arc::new(admin))
}

type Adm = State<Arc<Admin>>;

/// How long the admin API waits for the sessions actor.
const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

async fn tree(State(admin): Adm) -> Response {
    let children = super::tree_json::supervision_json(&admin.health);
    let sessions = admin.ask_sessions(SessionsMsg::Count).await.unwrap_or(0);
    Json(serde_json::json!({"root": {"running": true}, "children": children, "sessions": sessions})).into_response()
}

/// `?n=N`: how many commits fail.
#[derive(serde::Deserialize)]
struct Faults {
    n: u32,
}

async fn faults(State(admin): Adm, q: Result<Query<Faults>, axum::extract::rejection::QueryRejection>) -> Response {
    let Some(n) = q.ok().map(|Query(f)| f.n).filter(|n| (1..=10_000).contains(n)) else {
        return (StatusCode::BAD_REQUEST, "need ?n=1..10000\n").into_response();
    };
    let Some(storage) = admin.storage.get() else { return storage_down() };
    if storage.send_message(StorageMsg::InjectFaults(n)).is_err() {
        return storage_down();
    }
    admin.count(AdminAction::StorageFaults);
    tracing::warn!(commits = n, "Admin: the next storage commits will fail.");
    format!("the next {n} commits fail\n").into_response()
}

#[derive(serde::Deserialize)]
struct Stall {
    ms: u64,
}

async fn stall_io(State(admin): Adm, q: Result<Query<Stall>, axum::extract::rejection::QueryRejection>) -> Response {
    let Some(ms) = q.ok().map(|Query(s)| s.ms).filter(|ms| (1..=120_000).contains(ms)) else {
        return (StatusCode::BAD_REQUEST, "need ?ms=1..120000\n").into_response();
    };
    admin.health.stall_io(ms);
    admin.count(AdminAction::StallIo);
    tracing::warn!(ms, "Admin: the next MQTT I/O thread to beat blocks.");
    format!("the next MQTT I/O thread to beat blocks for {ms} ms\n").into_response()
}

fn storage_down() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, "storage actor is restarting\n").into_response()
}

/// `/admin/actors/{path}/kill` or `/stop`.
async fn act(State(admin): Adm, Path(rest): Path<String>) -> Response {
    let (target, action) = match rest.rsplit_once('/') {
        Some((t, "kill")) => (t, AdminAction::Kill),
        Some((t, "stop")) => (t, AdminAction::Stop),
        _ => return (StatusCode::NOT_FOUND, "use /admin/actors/{path}/kill or /stop\n").into_response(),
    };
    if target == "root/sessions/any" {
        return admin.end_any_session(action).await;
    }
    let Some(cell) = admin.find(target) else { return (StatusCode::NOT_FOUND, format!("no running actor at {target}\n")).into_response() };
    if action == AdminAction::Kill {
        cell.kill();
    } else {
        cell.stop(Some("admin".into()));
    }
    admin.count(action);
    tracing::warn!(actor = target, %action, "Admin: actor {action}ed.");
    format!("{action} sent to {target}\n").into_response()
}

impl Admin {
    fn find(&self, target: &str) -> Option<ActorCell> {
        match target {
            "root" => Some(self.root.get_cell()),
            path => self.health.actor(path),
        }
    }

    /// `root/sessions/any`: end one session; its connection closes.
    async fn end_any_session(&self, action: AdminAction) -> Response {
        match self.ask_sessions(|r| SessionsMsg::End(Which::Any, r)).await {
            Some(n) if n > 0 => {
                self.count(action);
                tracing::warn!(actor = "root/sessions/any", %action, "Admin: one session ended; its connection closes.");
                format!("{action} sent to root/sessions/any\n").into_response()
            }
            Some(_) => (StatusCode::NOT_FOUND, "no running actor at root/sessions/any (no open session)\n").into_response(),
            None => (StatusCode::NOT_FOUND, "no running actor at root/sessions/any (the sessions actor is restarting)\n").into_response(),
        }
    }

    /// Ask the sessions actor; `None` when it is down or did not answer.
    async fn ask_sessions<T: Send + 'static>(&self, msg: impl FnOnce(RpcReplyPort<T>) -> SessionsMsg) -> Option<T> {
        let reply = self.sessions.get()?.call(msg, Some(CALL_TIMEOUT)).await.ok()?;
        reply.success_or(()).ok()
    }

    fn count(&self, action: AdminAction) {
        self.metrics.admin_actions.get_or_create(&AdminLabels { action }).inc();
    }
}
