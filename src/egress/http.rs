//! The HTTP sink: POSTs JSON batches with an `Idempotency-Key` header.

use edge_gateway_actors::metrics::DeliveryKind;
use std::time::Duration;

use async_trait::async_trait;
use edge_gateway_actors::forwarder::{DeliveryError, Sink};
use edge_gateway_actors::record::Record;

use super::{EgressError, WireBatch};

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
    pub fn new(name: &str, gateway_id: &str, url: &str, timeout: Duration, tls: Option<rustls::ClientConfig>) -> Result<Self, EgressError> {
        let mut builder = reqwest::Client::builder();
        match tls {
            Some(tls) => builder = builder.tls_backend_preconfigured(tls),
            // Plain HTTP never uses a CA (redirects are off): a system without a CA bundle (a
            // minimal image) must not fail to build the client.
            None if url.starts_with("http://") => builder = builder.tls_certs_only(Vec::new()),
            None => {}
        }
        let client = builder
            // A redirect would resend the batch somewhere the config does not name.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("edge-gateway/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| EgressError::HttpClient { sink: name.to_string(), source })?;
        Ok(Self { name: name.to_string(), gateway_id: gateway_id.to_string(), url: url.to_string(), client })
    }
}

#[async_trait]
impl Sink for HttpSink {
    async fn deliver(&self, batch_key: &str, batch: &[Record]) -> Result<(), DeliveryError> {
        let body = serde_json::to_vec(&WireBatch::new(&self.gateway_id, batch_key, batch))
            .map_err(|e| DeliveryError::Rejected { detail: format!("cannot encode batch: {e}") })?;
        // The request span continues the first traced message's forward span; its context goes
        // out as the `traceparent` header (each message also carries its own in the body).
        let mut span =
            batch.iter().find_map(|r| r.trace.filter(|t| t.sampled())).filter(|_| edge_gateway_actors::spans::enabled()).map(|t| {
                let attributes = vec![
                    opentelemetry::KeyValue::new("http.request.method", "POST"),
                    opentelemetry::KeyValue::new("gateway.sink", self.name.clone()),
                ];
                edge_gateway_actors::spans::start_child("http POST", &t, opentelemetry::trace::SpanKind::Client, attributes)
            });
        let header = match &span {
            Some(s) => edge_gateway_actors::spans::trace_ctx(opentelemetry::trace::Span::span_context(s)),
            None => batch.iter().find_map(|r| r.trace),
        };
        let mut request = self.client.post(&self.url).header("Idempotency-Key", batch_key).header("Content-Type", "application/json");
        if let Some(t) = header {
            request = request.header("traceparent", crate::telemetry::traceparent::format_traceparent(&t));
        }
        let sent = request.body(body).send().await;
        if let Some(s) = span.as_mut() {
            use opentelemetry::trace::Span;
            match &sent {
                Ok(r) => s.set_attribute(opentelemetry::KeyValue::new("http.response.status_code", i64::from(r.status().as_u16()))),
                Err(e) => s.set_status(opentelemetry::trace::Status::error(e.to_string())),
            }
            s.end();
        }
        let response = sent.map_err(|e| classify_error(&self.name, &e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let text: String = response.text().await.unwrap_or_default().chars().take(200).collect();
        let detail = format!("HTTP {status}: {text}");
        Err(match status.as_u16() {
            429 => DeliveryError::Transient { kind: DeliveryKind::Http429, detail },
            408 => DeliveryError::Transient { kind: DeliveryKind::Timeout, detail },
            // Not about the messages: a credential or the URL is wrong. Dead-lettering would
            // empty the whole backlog into the dead-letter table; wait for an operator instead.
            401 | 403 | 407 => DeliveryError::Transient { kind: DeliveryKind::HttpAuth, detail },
            404 => DeliveryError::Transient { kind: DeliveryKind::HttpNotFound, detail },
            400..=499 => DeliveryError::Rejected { detail },
            500..=599 => DeliveryError::Transient { kind: DeliveryKind::Http5xx, detail },
            _ => DeliveryError::Transient { kind: DeliveryKind::HttpOther, detail },
        })
    }
}

fn classify_error(sink: &str, e: &reqwest::Error) -> DeliveryError {
    let kind = if e.is_timeout() {
        DeliveryKind::Timeout
    } else if e.is_connect() {
        DeliveryKind::Connect
    } else {
        DeliveryKind::Io
    };
    DeliveryError::Transient { kind, detail: format!("sink '{sink}': {e}") }
}
