//! The HTTP sink: POSTs JSON batches with an `Idempotency-Key` header.

use std::time::Duration;

use async_trait::async_trait;
use edge_gateway_actors::forwarder::{DeliveryError, Sink};
use edge_gateway_actors::record::Record;

use super::WireBatch;

/// POSTs batches to one ingestion URL.
pub struct HttpSink {
    /// For log lines.
    name: String,
    /// Goes into every body so the cloud knows the sender.
    gateway_id: String,
    /// The ingestion endpoint.
    url: String,
    /// Pooled connections (hyper underneath).
    client: reqwest::Client,
}

impl HttpSink {
    /// A sink posting to `url`, giving up on a request after `timeout`; with `tls`, HTTPS uses
    /// that rustls config (the gateway's client certificate and the configured CA).
    pub fn new(name: &str, gateway_id: &str, url: &str, timeout: Duration, tls: Option<rustls::ClientConfig>) -> Result<Self, String> {
        let mut builder = reqwest::Client::builder();
        if let Some(tls) = tls {
            builder = builder.tls_backend_preconfigured(tls);
        }
        let client = builder
            // A redirect would resend the batch somewhere the config does not name.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("edge-gateway/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("sink '{name}': cannot build HTTP client: {e}"))?;
        Ok(Self { name: name.to_string(), gateway_id: gateway_id.to_string(), url: url.to_string(), client })
    }
}

#[async_trait]
impl Sink for HttpSink {
    async fn deliver(&self, batch_key: &str, batch: &[Record]) -> Result<(), DeliveryError> {
        let body = serde_json::to_vec(&WireBatch::new(&self.gateway_id, batch_key, batch))
            .map_err(|e| DeliveryError::Rejected { detail: format!("cannot encode batch: {e}") })?;
        let response = self
            .client
            .post(&self.url)
            .header("Idempotency-Key", batch_key)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| classify_error(&self.name, &e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let text: String = response.text().await.unwrap_or_default().chars().take(200).collect();
        let detail = format!("HTTP {status}: {text}");
        Err(match status.as_u16() {
            429 => DeliveryError::Transient { kind: "http_429", detail },
            408 => DeliveryError::Transient { kind: "timeout", detail },
            // Not about the messages: a credential or the URL is wrong. Dead-lettering would
            // empty the whole backlog into the dead-letter table; wait for an operator instead.
            401 | 403 | 407 => DeliveryError::Transient { kind: "http_auth", detail },
            404 => DeliveryError::Transient { kind: "http_not_found", detail },
            400..=499 => DeliveryError::Rejected { detail },
            500..=599 => DeliveryError::Transient { kind: "http_5xx", detail },
            _ => DeliveryError::Transient { kind: "http_other", detail },
        })
    }
}

fn classify_error(sink: &str, e: &reqwest::Error) -> DeliveryError {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "io"
    };
    DeliveryError::Transient { kind, detail: format!("sink '{sink}': {e}") }
}
