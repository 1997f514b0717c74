//! The one publish path both protocol versions share: topic check, certificate re-check, ACL,
//! receive span, schema check, append to the store and (QoS 1) the wait for its commit. The v3 and v5
//! adapters only turn the [`Outcome`] into what their protocol can say.

use edge_gateway_actors::metrics::{IngressReason, Metrics, SchemaAction};
use edge_gateway_actors::record::{NewRecord, TraceCtx};
use edge_gateway_actors::storage::{AppendError, now_ms};

use super::batcher;
use super::conn::{ConnInner, QOS0_DETACHED_MAX};
use super::{IngressError, Protocol, clip};
use crate::routing::Message;
use crate::schema::Checked;
use crate::schema::tag::Carrier;
use crate::telemetry::traces::{end_receive, receive_span};
use crate::throttle::Throttle;

/// One PUBLISH as both protocol versions deliver it.
pub(super) struct Inbound {
    /// The topic name.
    pub topic: String,
    /// 0, 1 or 2.
    pub qos: u8,
    /// A sampled `traceparent` the device sent (MQTT 5 user property), if any.
    pub device_trace: Option<TraceCtx>,
    /// MQTT 5 content type.
    pub content_type: Option<String>,
    /// MQTT 5 user properties.
    pub user_properties: Vec<(String, String)>,
    /// The retain flag.
    pub retain: bool,
    /// MQTT 5 response topic (passed to subscribers).
    pub response_topic: Option<ntex_bytes::ByteString>,
    /// MQTT 5 correlation data (passed to subscribers).
    pub correlation_data: Option<ntex_bytes::Bytes>,
    /// MQTT 5 message expiry interval, in seconds.
    pub expiry_secs: Option<u32>,
    /// The payload length the packet declares (read before the payload).
    pub payload_size: u32,
}

/// The largest remaining length an MQTT packet can declare (MQTT 3.1.1 2.2.3, 5.0 2.1.4): a
/// larger payload size means the PUBLISH's header did not fit in its packet. ntex-mqtt 9.0.0
/// computes the payload size with an unchecked subtraction (`v3/codec/codec.rs` line 120,
/// `v5/codec/codec.rs` line 191), so such a packet declares a payload of nearly 4 GiB, which
/// `read_all` would collect whatever `mqtt.max_packet_size` says. Found by `tests/it/fuzz.rs`.
const MAX_REMAINING_LENGTH: u32 = 268_435_455;

/// What became of a publish.
#[derive(Debug)]
pub(super) enum Outcome {
    /// Stored: committed (QoS 1) or handed to the storage actor (QoS 0).
    Stored,
    /// Empty or wildcard topic (given back for the v3 error).
    InvalidTopic(String),
    /// The device's certificate was revoked or expired since it connected.
    Untrusted(IngressError),
    /// The ACL refused the topic (given back for the v3 error).
    NotAuthorized(String),
    /// The payload failed its schema under a binding that refuses (MQTT 5 QoS 1 only): the
    /// first error, for the PUBACK's reason string. Not stored.
    FormatInvalid(String),
    /// The store refused or failed it (quota, failed commit, storage down).
    Refused(AppendError),
    /// The topic's archive class is at its quota with `on_full = "refuse_ingest"`: its name.
    ArchiveFull(String),
}

/// Run one publish through the shared path; `payload` is read only once the publish is allowed.
pub(super) async fn publish<E: std::fmt::Debug>(
    c: &ConnInner,
    msg: Inbound,
    protocol: Protocol,
    payload: impl Future<Output = Result<ntex_bytes::Bytes, E>>,
) -> Result<Outcome, IngressError> {
    if msg.payload_size > MAX_REMAINING_LENGTH {
        return Err(IngressError::Malformed("a PUBLISH header longer than its packet"));
    }
    let m = &c.ingress.metrics;
    if !valid_topic(&msg.topic) {
        rejected(m, &c.client_id, IngressReason::InvalidTopic, &msg.topic, None);
        return Ok(Outcome::InvalidTopic(msg.topic));
    }
    if let Err(e) = c.still_trusted() {
        return Ok(Outcome::Untrusted(e));
    }
    // The receive span covers authorization too.
    let (span, trace) = receive_span(msg.device_trace, &msg.topic, c.identity(), protocol.as_str());
    if !c.may_publish(&msg.topic, trace.as_ref()) {
        end_receive(span, Some("not authorized"));
        return Ok(Outcome::NotAuthorized(msg.topic));
    }
    if let Some(class) = c.ingress.router.archive_refusing(&msg.topic) {
        rejected(m, &c.client_id, IngressReason::ArchiveFull, class, trace.as_ref());
        end_receive(span, Some("archive class full"));
        return Ok(Outcome::ArchiveFull(class.to_string()));
    }
    let payload = payload.await.map_err(|e| IngressError::Payload(format!("{e:?}")))?;
    let (schema, kept_apart) = match check_schema(c, &msg, protocol, &payload) {
        SchemaStep::Unchecked => (None, false),
        SchemaStep::Store(tag, kept_apart) => (Some(tag), kept_apart),
        SchemaStep::Refuse(first_error) => {
            end_receive(span, Some("payload format invalid"));
            return Ok(Outcome::FormatInvalid(first_error));
        }
    };
    // What local subscribers get (and the retained copy), built only when someone may want it.
    let router = &c.ingress.router;
    let mut plan = (!kept_apart && (msg.retain || router.has_subscribers()))
        .then(|| Message {
            topic: msg.topic.as_str().into(),
            payload: payload.clone(),
            qos: msg.qos,
            retain: msg.retain,
            content_type: msg.content_type.as_deref().map(Into::into),
            user_properties: msg.user_properties.iter().map(|(k, v)| (k.as_str().into(), v.as_str().into())).collect(),
            response_topic: msg.response_topic,
            correlation_data: msg.correlation_data,
            expires_at: msg.expiry_secs.map(|s| std::time::Instant::now() + std::time::Duration::from_secs(u64::from(s))),
        })
        .map(|message| router.plan(&c.client_id, message));
    let mqtt5 = match &plan {
        Some(p) if msg.retain => crate::routing::persist::retained_props(p.message()),
        _ => None,
    };
    let rec = NewRecord {
        mqtt5,
        device: c.identity().to_string(),
        topic: msg.topic,
        qos: msg.qos,
        payload: payload.to_vec(),
        content_type: msg.content_type,
        user_properties: msg.user_properties,
        received_at_ms: now_ms(),
        trace,
        schema,
        kept_apart,
        retain: msg.retain,
        copies: plan.as_mut().map(|p| p.take_copies()).unwrap_or_default(),
    };
    let size = rec.payload.len() as u64;
    // A retained QoS 0 publish waits for its commit too: the retained copy that subscribers get
    // must be the one the store kept (it may refuse it: retained_max).
    let result = if msg.qos == 0 && !msg.retain {
        store_qos0(c, rec, size).await
    } else {
        let result = batcher::append(&c.ingress.storage, rec).await.map(|_| ());
        match &result {
            Ok(()) => c.tally.accepted(msg.qos, size),
            Err(e) => rejected(m, &c.client_id, refusal_reason(e), &e.to_string(), trace.as_ref()),
        }
        result
    };
    end_receive(span, result.as_ref().err().map(|e| e.to_string()).as_deref());
    // QoS 1 and 2 (and retained QoS 0): after its commit; QoS 0: once handed to the store.
    if let (Ok(()), Some(plan)) = (&result, plan) {
        router.deliver(plan);
    }
    Ok(result.map_or_else(Outcome::Refused, |()| Outcome::Stored))
}

/// The will of a connection that ended without DISCONNECT (its topic was checked against the
/// ACL at CONNECT): stored like a publish of the device, then routed. Runs after the connection
/// is gone, on its I/O thread.
pub(super) fn publish_will(ingress: &super::Ingress, identity: &str, client_id: &str, will: Message) {
    let topic = will.topic.clone();
    let mut rec = NewRecord {
        device: identity.to_string(),
        topic: will.topic.to_string(),
        qos: will.qos,
        payload: will.payload.to_vec(),
        content_type: will.content_type.as_ref().map(|c| c.to_string()),
        user_properties: will.user_properties.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        received_at_ms: now_ms(),
        retain: will.retain,
        ..Default::default()
    };
    let mut plan = ingress.router.plan(client_id, will);
    rec.copies = plan.take_copies();
    let appended = batcher::append(&ingress.storage, rec);
    let (router, client_id, metrics) = (ingress.router.clone(), client_id.to_string(), ingress.metrics.clone());
    ntex_rt::spawn(async move {
        match appended.await {
            Ok(_) => {
                tracing::info!(%client_id, %topic, "Connection ended without DISCONNECT; its will is published.");
                router.deliver(plan);
            }
            Err(e) => rejected(&metrics, &client_id, refusal_reason(&e), &format!("will: {e}"), None),
        }
    });
}

/// What the schema check decided.
enum SchemaStep {
    /// No registry, or no binding for the topic.
    Unchecked,
    /// Store with this tag; `true`: in the rejected table.
    Store(edge_gateway_actors::record::SchemaTag, bool),
    /// Refuse (MQTT 5 QoS 1), with the first error.
    Refuse(String),
}

/// The payload against the schema registry, before anything is stored.
fn check_schema(c: &ConnInner, msg: &Inbound, protocol: Protocol, payload: &[u8]) -> SchemaStep {
    let Some(schemas) = &c.ingress.schemas else { return SchemaStep::Unchecked };
    let carrier = Carrier { topic: &msg.topic, content_type: msg.content_type.as_deref(), user_properties: &msg.user_properties };
    let can_refuse = protocol == Protocol::V5 && msg.qos == 1;
    match schemas.check(&c.who(), &carrier, payload, can_refuse) {
        None => SchemaStep::Unchecked,
        Some(Checked { verdict, action: Some(SchemaAction::Refused) }) => {
            SchemaStep::Refuse(format!("schema {}/{}: {}", verdict.tag.subject, verdict.tag.version, verdict.first_error()))
        }
        Some(Checked { verdict, action }) => SchemaStep::Store(verdict.tag, action == Some(SchemaAction::KeptApart)),
    }
}

/// A QoS 0 publish needs no answer, and ntex drops the handler of one that arrives together
/// with the client's DISCONNECT: so the append joins this thread's batch now (keeping the
/// connection's order) and, while few are pending, its outcome is counted by a task of its own;
/// past [`QOS0_DETACHED_MAX`] pending, the handler waits for it (backpressure).
pub(super) async fn store_qos0(c: &ConnInner, rec: NewRecord, size: u64) -> Result<(), AppendError> {
    let pending = batcher::append(&c.ingress.storage, rec);
    let tally = c.tally.clone();
    tally.qos0_pending.set(tally.qos0_pending.get() + 1);
    let (ingress, client_id) = (c.ingress.clone(), c.client_id.clone());
    let outcome = async move {
        let result = pending.await;
        tally.qos0_pending.set(tally.qos0_pending.get().saturating_sub(1));
        match &result {
            Ok(_) => tally.accepted(0, size),
            Err(e) => {
                rejected(&ingress.metrics, &client_id, refusal_reason(e), &e.to_string(), None);
            }
        }
        result.map(|_| ())
    };
    if c.tally.qos0_pending.get() <= QOS0_DETACHED_MAX {
        ntex_rt::spawn(outcome);
        Ok(())
    } else {
        outcome.await
    }
}

/// A PUBLISH topic name must be non-empty and free of wildcards.
fn valid_topic(topic: &str) -> bool {
    !topic.is_empty() && !topic.contains(['+', '#', '\0'])
}

/// The `gateway_ingress_rejected_total` reason for a refused append.
fn refusal_reason(e: &AppendError) -> IngressReason {
    match e {
        AppendError::QuotaExceeded => IngressReason::Quota,
        AppendError::RetainedFull => IngressReason::RetainedFull,
        AppendError::CommitFailed(_) => IngressReason::StoreError,
    }
}

/// A refused publish: counted, and logged (with the message's trace and span ids when it is
/// traced) at most once a second.
fn rejected(metrics: &Metrics, client_id: &str, reason: IngressReason, detail: &str, trace: Option<&TraceCtx>) {
    metrics.reject(reason);
    if PUBLISH_REFUSALS.allow() {
        let detail = clip(detail);
        let (trace_id, span_id) = edge_gateway_actors::spans::log_ids(trace);
        tracing::warn!(%client_id, %reason, ?detail, trace_id, span_id, "Publish refused (more this second are only counted).");
    }
}

/// Refused publishes a device can trigger at will: one WARN line per second.
static PUBLISH_REFUSALS: Throttle = Throttle::new();
