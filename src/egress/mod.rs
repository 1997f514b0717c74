//! Sink implementations (the I/O side of the forwarders) and the JSON batch format they share.
//!
//! Batch body, for HTTP and (one message per line) for files:
//!
//! ```json
//! {"gateway":"gw-1","batch_key":"gw-1:5f0c2a9e4b7d1c38:10..gw-1:5f0c2a9e4b7d1c38:19","messages":[
//!   {"key":"gw-1:5f0c2a9e4b7d1c38:10","seq":10,"device":"dev-1","topic":"devices/dev-1/t","qos":1,
//!    "received_at_ms":1700000000000,"payload":"21.5","content_type":null,"user_properties":[]}]}
//! ```
//!
//! `payload` holds the payload when it is UTF-8; otherwise `payload_base64` holds it. A traced
//! message also has `traceparent` (W3C), so the cloud can continue the message's trace.

pub mod cloud_tls;
pub mod downlink;
mod file;
mod http;
mod mqtt;
mod nats;

use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;
use edge_gateway_actors::forwarder::{DeliveryError, Sink};
use edge_gateway_actors::record::Record;
use serde::Serialize;

pub use file::FileSink;
pub use http::HttpSink;
pub use mqtt::MqttSink;
pub use mqtt::topics::{Rule as TopicRule, TopicMap};
pub use nats::NatsSink;

use crate::config::{SinkConfig, SinkKind};
use crate::trust::tls::TlsError;
use cloud_tls::CloudTls;

/// Why a sink could not be built.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    /// The sink's TLS files do not load (named by their config keys).
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The HTTP client could not be built.
    #[error("sink '{sink}': cannot build HTTP client: {source}")]
    HttpClient {
        /// The sink's name.
        sink: String,
        /// reqwest's error.
        source: reqwest::Error,
    },
    /// The file sink's file or directory cannot be opened.
    #[error("{}: {source}", path.display())]
    File {
        /// The file or directory.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// A built sink; for a sink with its own TLS files, the material to keep rotated; for an MQTT
/// bridge with a downlink, the bridge (attached to the local broker once it runs).
pub struct Built {
    /// The sink.
    pub sink: Arc<dyn Sink>,
    /// Its TLS material, rotated.
    pub cloud_tls: Option<Arc<CloudTls>>,
    /// An MQTT bridge that subscribes upstream.
    pub bridge: Option<Arc<MqttSink>>,
}

/// Build the sink a config entry describes (`api_identity`: a bridge's downlink identity when
/// the sink names none).
pub fn build(gateway_id: &str, cfg: &SinkConfig, api_identity: &str) -> Result<Built, EgressError> {
    let (sink, cloud_tls): (Arc<dyn Sink>, _) = match &cfg.kind {
        SinkKind::Http { url, timeout, tls } => {
            let (cloud, client_config) = client_tls(&cfg.name, tls.as_ref())?;
            (Arc::new(HttpSink::new(&cfg.name, gateway_id, url, *timeout, client_config)?), cloud)
        }
        SinkKind::File { path } => (Arc::new(FileSink::open(path)?), None),
        SinkKind::Mqtt {
            host,
            port,
            secure,
            username,
            password,
            tls,
            topic_prefix,
            topic_rewrite,
            timeout,
            downlink,
            downlink_identity,
        } => {
            let (cloud, client_config) = match (secure, tls) {
                (false, _) => (None, None),
                (true, Some(_)) => client_tls(&cfg.name, tls.as_ref())?,
                (true, None) => (None, Some(system_trust(&cfg.name)?)),
            };
            let target = mqtt::BridgeTarget {
                host: host.clone(),
                port: *port,
                client_id: format!("{gateway_id}-{}", cfg.name),
                username: username.clone(),
                password: password.clone(),
                tls: client_config.map(Arc::new),
                session_secs: None,
            };
            let identity = downlink_identity.clone().unwrap_or_else(|| api_identity.to_string());
            let downlink = (!downlink.is_empty()).then(|| Arc::new(downlink::Downlink::new(downlink.clone(), identity)));
            let topics = TopicMap { prefix: topic_prefix.clone(), rules: topic_rewrite.clone() };
            let bridge = Arc::new(MqttSink::new(target, topics, *timeout, downlink.clone()));
            return Ok(Built { sink: bridge.clone(), cloud_tls: cloud, bridge: downlink.map(|_| bridge) });
        }
        SinkKind::Nats { url, subject_prefix, stream, timeout, tls } => {
            let (cloud, client_config) = client_tls(&cfg.name, tls.as_ref())?;
            let name = format!("{gateway_id}-{}", cfg.name);
            (Arc::new(NatsSink::new(url, &name, subject_prefix, stream.clone(), *timeout, client_config)), cloud)
        }
        SinkKind::Discard => (Arc::new(DiscardSink), None),
    };
    Ok(Built { sink, cloud_tls, bridge: None })
}

/// A sink's own TLS files (rotated) and the client config that always uses the current ones.
fn client_tls(
    sink: &str,
    files: Option<&crate::config::ClientTlsFiles>,
) -> Result<(Option<Arc<CloudTls>>, Option<rustls::ClientConfig>), EgressError> {
    let Some(files) = files else { return Ok((None, None)) };
    let cloud = CloudTls::load(sink, files)?;
    let config = cloud.client_config()?;
    Ok((Some(cloud), Some(config)))
}

/// A TLS client config that trusts the system's CA store (a sink without `tls_*` files).
fn system_trust(sink: &str) -> Result<rustls::ClientConfig, EgressError> {
    use rustls_platform_verifier::BuilderVerifierExt;
    let fail = |e: rustls::Error| EgressError::Tls(TlsError(format!("sink '{sink}': the system's trust store: {e}")));
    Ok(rustls::ClientConfig::builder_with_provider(crate::trust::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(fail)?
        .with_platform_verifier()
        .map_err(fail)?
        .with_no_client_auth())
}

/// One message as the cloud sees it.
#[derive(Serialize)]
pub struct WireMessage<'a> {
    key: &'a str,
    seq: u64,
    device: &'a str,
    topic: &'a str,
    qos: u8,
    received_at_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_base64: Option<String>,
    content_type: Option<&'a str>,
    user_properties: &'a [(String, String)],
    #[serde(skip_serializing_if = "Option::is_none")]
    traceparent: Option<String>,
    /// The schema the payload was checked against: `{"subject", "version", "valid", "errors"}`
    /// (`valid: false` only under a binding with `on_invalid = "tag"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    schema: Option<WireSchema<'a>>,
}

/// The schema check of a message, as sinks receive it.
#[derive(Serialize)]
pub struct WireSchema<'a> {
    subject: &'a str,
    version: u32,
    valid: bool,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    errors: &'a [String],
}

impl<'a> WireMessage<'a> {
    /// The wire form of a stored record.
    pub fn new(r: &'a Record) -> Self {
        let text = std::str::from_utf8(&r.payload).ok();
        Self {
            key: &r.key,
            seq: r.seq,
            device: &r.device,
            topic: &r.topic,
            qos: r.qos,
            received_at_ms: r.received_at_ms,
            payload: text,
            payload_base64: text.is_none().then(|| base64::engine::general_purpose::STANDARD.encode(&r.payload)),
            content_type: r.content_type.as_deref(),
            user_properties: &r.user_properties,
            traceparent: r.trace.as_ref().map(crate::telemetry::traceparent::format_traceparent),
            schema: r.schema.as_ref().map(|s| WireSchema { subject: &s.subject, version: s.version, valid: s.valid, errors: &s.errors }),
        }
    }
}

/// A whole batch as POSTed.
#[derive(Serialize)]
pub struct WireBatch<'a> {
    gateway: &'a str,
    batch_key: &'a str,
    messages: Vec<WireMessage<'a>>,
}

impl<'a> WireBatch<'a> {
    /// The wire form of a batch.
    pub fn new(gateway: &'a str, batch_key: &'a str, batch: &'a [Record]) -> Self {
        Self { gateway, batch_key, messages: batch.iter().map(WireMessage::new).collect() }
    }
}

/// Accepts everything and keeps nothing (benchmarks).
pub struct DiscardSink;

#[async_trait]
impl Sink for DiscardSink {
    async fn deliver(&self, _batch_key: &str, _batch: &[Record]) -> Result<(), DeliveryError> {
        Ok(())
    }
}
