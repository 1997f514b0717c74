//! The NATS JetStream sink (`kind = "nats"`): stored messages published to JetStream, the
//! whole batch in flight at once; the forwarder's cursor moves only after JetStream
//! acknowledged every message of the batch (its PubAck: the message is in a stream).
//!
//! Each message is published with `Nats-Msg-Id` = its idempotency key, so the stream drops a
//! resend of it within the stream's duplicate window (2 minutes by default; a PubAck then says
//! `duplicate`), plus the headers `Mqtt-Topic` (the original topic), `Device`, `Content-Type`
//! and, when traced, `traceparent`. The subject is `subject_prefix` + the topic with `/` as
//! `.` (an empty level becomes `_`, as do `.`, `*`, `>` and whitespace inside a level: NATS
//! tokens cannot hold them; `Mqtt-Topic` keeps the exact topic). With `stream` set, the sink
//! creates that stream (subjects `<subject_prefix>.>`) if it does not exist.
//!
//! The client reconnects by itself; a batch that fails (timeout, no stream, connection lost)
//! is resent whole, under the same keys. A message larger than the server's `max_payload` is
//! refused for good (dead-lettered); everything else is retried.

use std::time::Duration;

use async_nats::jetstream::context::{Context, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_trait::async_trait;
use edge_gateway_actors::forwarder::{DeliveryError, Sink};
use edge_gateway_actors::metrics::DeliveryKind;
use edge_gateway_actors::record::Record;
use tokio::sync::Mutex;

/// A sink to one JetStream server (or cluster).
pub struct NatsSink {
    url: String,
    client_name: String,
    subject_prefix: String,
    stream: Option<String>,
    timeout: Duration,
    tls: Option<rustls::ClientConfig>,
    /// The JetStream context of the open client, between batches.
    context: Mutex<Option<Context>>,
}

impl NatsSink {
    /// A sink publishing to `url` as `client_name`; nothing is connected until the first batch.
    pub fn new(
        url: &str,
        client_name: &str,
        subject_prefix: &str,
        stream: Option<String>,
        timeout: Duration,
        tls: Option<rustls::ClientConfig>,
    ) -> Self {
        Self {
            url: url.to_string(),
            client_name: client_name.to_string(),
            subject_prefix: subject_prefix.to_string(),
            stream,
            timeout,
            tls,
            context: Mutex::new(None),
        }
    }

    async fn connect(&self) -> Result<Context, DeliveryError> {
        let mut options = async_nats::ConnectOptions::new()
            .name(&self.client_name)
            .connection_timeout(self.timeout)
            .reconnect_delay_callback(reconnect_delay);
        if let Some(tls) = &self.tls {
            options = options.tls_client_config(tls.clone()).require_tls(true);
        } else if self.url.starts_with("tls://") {
            options = options.require_tls(true);
        }
        let (address, credentials) = split_credentials(&self.url);
        options = match credentials {
            Some(Credentials::UserPassword(user, password)) => options.user_and_password(user, password),
            Some(Credentials::Token(token)) => options.token(token),
            None => options,
        };
        let client = options.connect(address.as_str()).await.map_err(|e| transient(DeliveryKind::Connect, e))?;
        let mut context = async_nats::jetstream::new(client);
        context.set_timeout(self.timeout);
        if let Some(name) = &self.stream {
            let subjects = vec![if self.subject_prefix.is_empty() { ">".to_string() } else { format!("{}.>", self.subject_prefix) }];
            let config = async_nats::jetstream::stream::Config { name: name.clone(), subjects, ..Default::default() };
            context.get_or_create_stream(config).await.map_err(|e| transient(DeliveryKind::Connect, format!("stream {name}: {e}")))?;
        }
        Ok(context)
    }

    /// Publish the batch and wait for every PubAck.
    async fn attempt(&self, context: &mut Option<Context>, batch: &[Record]) -> Result<(), DeliveryError> {
        if context.is_none() {
            *context = Some(self.connect().await?);
        }
        let Some(js) = context.as_ref() else { return Err(transient(DeliveryKind::Connect, "no connection")) };
        let mut acks = Vec::with_capacity(batch.len());
        for r in batch {
            let ack = js.send_publish(subject(&self.subject_prefix, &r.topic), message(r)).await.map_err(publish_error)?;
            acks.push(ack);
        }
        let mut duplicates = 0usize;
        for ack in acks {
            duplicates += usize::from(ack.await.map_err(publish_error)?.duplicate);
        }
        if duplicates > 0 {
            tracing::debug!(duplicates, "JetStream dropped resent messages as duplicates (same Nats-Msg-Id).");
        }
        Ok(())
    }
}

/// One record as a JetStream message: payload, its key as `Nats-Msg-Id`, and headers.
fn message(r: &Record) -> PublishMessage {
    let mut m = PublishMessage::build()
        .payload(r.payload.clone().into())
        .message_id(&r.key)
        .header("Mqtt-Topic", header_value(&r.topic))
        .header("Device", header_value(&r.device));
    if let Some(ct) = &r.content_type {
        m = m.header("Content-Type", header_value(ct));
    }
    if let Some(t) = &r.trace {
        m = m.header("traceparent", crate::telemetry::traceparent::format_traceparent(t));
    }
    m
}

/// `prefix` + the topic as NATS tokens (`/` → `.`; an empty level, `.`, `*`, `>` and whitespace
/// → `_`).
pub fn subject(prefix: &str, topic: &str) -> String {
    let mapped: Vec<String> = topic
        .split('/')
        .map(|level| {
            if level.is_empty() {
                "_".to_string()
            } else {
                level.chars().map(|c| if matches!(c, '.' | '*' | '>') || c.is_whitespace() { '_' } else { c }).collect()
            }
        })
        .collect();
    let mapped = mapped.join(".");
    if prefix.is_empty() { mapped } else { format!("{prefix}.{mapped}") }
}

/// The client's wait before its `attempts`th reconnection: 50 ms doubling up to 1 s, with
/// jitter (half to all of it). The client's default grows to 4 s, which after an outage of the
/// server delays the drain of the backlog by as much; the jitter spreads a fleet's reconnects.
fn reconnect_delay(attempts: usize) -> Duration {
    if attempts <= 1 {
        return Duration::ZERO;
    }
    let cap = 50u64.saturating_mul(1 << (attempts - 2).min(5)).min(1000);
    Duration::from_millis(rand::random_range(cap / 2..=cap))
}

/// Credentials given in the URL.
#[derive(Debug, PartialEq, Eq)]
enum Credentials {
    /// `nats://USER:PASSWORD@HOST:PORT`.
    UserPassword(String, String),
    /// `nats://TOKEN@HOST:PORT`.
    Token(String),
}

/// The URL without its credentials, and the credentials (the client is given them as options:
/// it does not read them from the URL).
fn split_credentials(url: &str) -> (String, Option<Credentials>) {
    let Some((scheme, rest)) = url.split_once("://") else { return (url.to_string(), None) };
    let Some((userinfo, host)) = rest.rsplit_once('@') else { return (url.to_string(), None) };
    let credentials = match userinfo.split_once(':') {
        Some((user, password)) => Credentials::UserPassword(user.to_string(), password.to_string()),
        None => Credentials::Token(userinfo.to_string()),
    };
    (format!("{scheme}://{host}"), Some(credentials))
}

/// A header value without the line breaks that would end the header (MQTT topics may hold them).
fn header_value(s: &str) -> String {
    s.replace('\r', "%0D").replace('\n', "%0A")
}

fn publish_error(e: async_nats::jetstream::context::PublishError) -> DeliveryError {
    match e.kind() {
        PublishErrorKind::MaxPayloadExceeded => DeliveryError::Rejected { detail: format!("JetStream refused a message: {e}") },
        PublishErrorKind::TimedOut => transient(DeliveryKind::Timeout, e),
        PublishErrorKind::StreamNotFound => {
            transient(DeliveryKind::Io, format!("{e} (create a stream for these subjects, or set the sink's stream)"))
        }
        _ => transient(DeliveryKind::Io, e),
    }
}

fn transient(kind: DeliveryKind, detail: impl std::fmt::Display) -> DeliveryError {
    DeliveryError::Transient { kind, detail: detail.to_string() }
}

#[async_trait]
impl Sink for NatsSink {
    async fn deliver(&self, _batch_key: &str, batch: &[Record]) -> Result<(), DeliveryError> {
        let mut context = self.context.lock().await;
        let result = match tokio::time::timeout(self.timeout, self.attempt(&mut context, batch)).await {
            Ok(result) => result,
            Err(_) => Err(transient(DeliveryKind::Timeout, format!("no PubAck for the whole batch within {:?}", self.timeout))),
        };
        if matches!(result, Err(DeliveryError::Transient { kind: DeliveryKind::Connect, .. })) {
            // A connection that never came up is tried afresh; an open client reconnects itself.
            *context = None;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_become_subjects_that_nats_accepts() {
        assert_eq!(subject("edge.site1", "devices/dev-1/temp"), "edge.site1.devices.dev-1.temp");
        assert_eq!(subject("", "a//b/"), "a._.b._");
        assert_eq!(subject("p", "v1.2/x y/*/>"), "p.v1_2.x_y._._");
        assert_eq!(header_value("a\r\nb"), "a%0D%0Ab");
    }

    #[test]
    fn reconnects_wait_at_most_a_second() {
        assert_eq!(reconnect_delay(1), Duration::ZERO);
        assert!((25..=50).contains(&reconnect_delay(2).as_millis()));
        assert!((500..=1000).contains(&reconnect_delay(40).as_millis()));
    }

    #[test]
    fn credentials_come_out_of_the_url() {
        let up = Credentials::UserPassword("edge".into(), "p:w@x".into());
        assert_eq!(split_credentials("nats://edge:p:w@x@h:4222"), ("nats://h:4222".into(), Some(up)));
        assert_eq!(split_credentials("tls://tok@h:1"), ("tls://h:1".into(), Some(Credentials::Token("tok".into()))));
        assert_eq!(split_credentials("nats://h:4222"), ("nats://h:4222".into(), None));
    }
}
