//! `POST /api/publish`: the downlink. The cloud (or an operator) publishes to a local topic, with
//! the bearer token of the HTTP API, as the identity `broker.api_identity`, checked against the
//! ACL like a device. The message is stored like a device's (so the sinks see what was sent
//! locally, and a retained one survives a restart) and delivered to the matching local
//! subscriptions; the answer comes after the commit.
//!
//! ```json
//! {"topic": "site/valves/7/set", "payload": "open", "qos": 1, "retain": false}
//! ```
//!
//! `payload_base64` instead of `payload` for binary payloads.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use edge_gateway_actors::record::NewRecord;
use edge_gateway_actors::storage::{AppendError, StorageMsg, now_ms};
use ractor::rpc::CallResult;

use super::local::Api;
use crate::routing::Message;

/// The request body.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Publish {
    topic: String,
    payload: Option<String>,
    payload_base64: Option<String>,
    #[serde(default)]
    qos: u8,
    #[serde(default)]
    retain: bool,
}

/// How long the commit may take before the request is answered 503.
const COMMIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Store, then route; `200 {"key": ..}` after the commit.
pub async fn publish(State(api): Api, Json(p): Json<Publish>) -> Response {
    let bad = |why: &str| (StatusCode::BAD_REQUEST, format!("{why}\n")).into_response();
    if p.topic.is_empty() || p.topic.contains(['+', '#', '\0']) || p.topic.len() > 65_535 {
        return bad("topic: a topic name, without wildcards");
    }
    if p.qos > 1 {
        return bad("qos: 0 or 1");
    }
    let payload = match (p.payload, p.payload_base64) {
        (Some(text), None) => text.into_bytes(),
        (None, Some(b64)) => match base64::engine::general_purpose::STANDARD.decode(b64) {
            Ok(bytes) => bytes,
            Err(e) => return bad(&format!("payload_base64: {e}")),
        },
        (None, None) => Vec::new(),
        (Some(_), Some(_)) => return bad("payload and payload_base64: one or the other"),
    };
    // Every subscriber must be able to take it: no larger than an MQTT packet may be here.
    if payload.len() + p.topic.len() + 16 > api.max_packet_size {
        return (StatusCode::PAYLOAD_TOO_LARGE, format!("larger than mqtt.max_packet_size ({})\n", api.max_packet_size)).into_response();
    }
    let identity = api.api_identity.clone();
    if !api.router.may_publish(&identity, &p.topic) {
        return (StatusCode::FORBIDDEN, format!("{identity} may not publish to {:?} (ACL)\n", p.topic)).into_response();
    }
    let message =
        Message { topic: p.topic.as_str().into(), payload: payload.clone().into(), qos: p.qos, retain: p.retain, ..Default::default() };
    let mut plan = api.router.plan(&identity, message);
    let rec = NewRecord {
        device: identity.clone(),
        topic: p.topic,
        qos: p.qos,
        payload,
        received_at_ms: now_ms(),
        retain: p.retain,
        copies: plan.take_copies(),
        ..Default::default()
    };
    let Some(storage) = api.storage.get() else { return unavailable("the storage actor is restarting") };
    let appended = match storage.call(|reply| StorageMsg::AppendBatch(vec![rec], reply), Some(COMMIT_TIMEOUT)).await {
        Ok(CallResult::Success(mut results)) => results.pop().unwrap_or(Err(AppendError::CommitFailed("no result".into()))),
        // It may still commit: a retry may store it twice (under another key).
        Ok(_) | Err(_) => return unavailable("the storage actor did not answer in time; the message may have been stored"),
    };
    match appended {
        Ok(a) => {
            api.router.deliver(plan);
            Json(serde_json::json!({"key": a.key, "seq": a.seq})).into_response()
        }
        Err(e @ (AppendError::QuotaExceeded | AppendError::RetainedFull)) => {
            (StatusCode::INSUFFICIENT_STORAGE, format!("{e}\n")).into_response()
        }
        Err(e) => unavailable(&e.to_string()),
    }
}

fn unavailable(why: &str) -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response()
}
