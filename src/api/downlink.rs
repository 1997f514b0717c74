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
use edge_gateway_actors::storage::AppendError;

use super::local::Api;
use crate::routing::Message;
use crate::routing::inject::{self, InjectError};

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
    let message = Message { topic: p.topic.as_str().into(), payload: payload.into(), qos: p.qos, retain: p.retain, ..Default::default() };
    match inject::publish(&api.router, &api.storage, &identity, message).await {
        Ok(a) => Json(serde_json::json!({"key": a.key, "seq": a.seq})).into_response(),
        Err(e @ InjectError::NotAuthorized { .. }) => (StatusCode::FORBIDDEN, format!("{e}\n")).into_response(),
        Err(e @ (InjectError::Store(AppendError::QuotaExceeded | AppendError::RetainedFull) | InjectError::ArchiveFull(_))) => {
            (StatusCode::INSUFFICIENT_STORAGE, format!("{e}\n")).into_response()
        }
        // It may still commit: a retry may store it twice (under another key).
        Err(e) => unavailable(&e.to_string()),
    }
}

fn unavailable(why: &str) -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response()
}
