//! The `[[sinks]]` array: where delivered messages go, and each forwarder's limits.

use std::path::PathBuf;
use std::time::Duration;

use edge_gateway_actors::backoff::Backoff;
use serde::Deserialize;

/// One sink and its forwarder's limits.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// Unique name: cursor key in the store, metric label.
    pub name: String,
    /// Where it delivers.
    pub kind: SinkKind,
    /// Most messages per batch.
    pub batch_max_messages: usize,
    /// About the most bytes per batch.
    pub batch_max_bytes: usize,
    /// Retry delays.
    pub backoff: Backoff,
    /// No progress this long with messages waiting and the sink reachable: restart the
    /// forwarder (zero: never).
    pub stuck_after: Duration,
}

/// The gateway's client identity and trusted CAs towards an HTTPS sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTlsFiles {
    /// PEM client certificate (chain) presented to the cloud (mTLS); with `key`.
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    pub key: Option<PathBuf>,
    /// PEM CAs that issue the cloud's server certificate (without any `tls_*` key a sink uses
    /// the system's trust store and no client certificate).
    pub ca: PathBuf,
}

/// The kinds of sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkKind {
    /// POST JSON batches to an ingestion API (over HTTPS with `tls`).
    Http { url: String, timeout: Duration, tls: Option<ClientTlsFiles> },
    /// Append JSON lines to a local file.
    File { path: PathBuf },
    /// Publish to an upstream MQTT 5 broker (`mqtt://host:port`, `mqtts://` over TLS, with
    /// `tls` files for mTLS or a private CA), topics under `topic_prefix`; `downlink` filters are
    /// subscribed upstream and delivered locally as `downlink_identity` (`None`:
    /// `broker.api_identity`).
    Mqtt {
        host: String,
        port: u16,
        /// `mqtts://`.
        secure: bool,
        /// From `mqtt://USER:PASSWORD@HOST:PORT`.
        username: Option<String>,
        password: Option<String>,
        tls: Option<ClientTlsFiles>,
        topic_prefix: String,
        /// Tried before `topic_prefix`: the first rule whose filter matches gives the topic.
        topic_rewrite: Vec<crate::egress::TopicRule>,
        timeout: Duration,
        downlink: Vec<String>,
        downlink_identity: Option<String>,
    },
    /// Publish to NATS JetStream (`nats://` or `tls://`), subjects under `subject_prefix`, into
    /// `stream` (created if missing) or whichever stream holds the subjects.
    Nats { url: String, subject_prefix: String, stream: Option<String>, timeout: Duration, tls: Option<ClientTlsFiles> },
    /// Accept and forget (benchmarks only).
    Discard,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSink {
    pub(super) name: String,
    kind: String,
    pub(super) url: Option<String>,
    path: Option<String>,
    timeout_ms: Option<u64>,
    tls_cert: Option<String>,
    tls_key: Option<String>,
    tls_ca: Option<String>,
    topic_prefix: Option<String>,
    topic_rewrite: Option<Vec<RawRewrite>>,
    subject_prefix: Option<String>,
    stream: Option<String>,
    downlink: Option<Vec<String>>,
    downlink_identity: Option<String>,
    #[serde(default = "d_batch_messages")]
    batch_max_messages: usize,
    #[serde(default = "d_batch_bytes")]
    batch_max_bytes: usize,
    #[serde(default = "d_backoff_initial")]
    backoff_initial_ms: u64,
    #[serde(default = "d_backoff_max")]
    backoff_max_ms: u64,
    #[serde(default = "d_stuck_after")]
    stuck_after_secs: u64,
}

/// One `topic_rewrite` entry of an MQTT sink.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRewrite {
    filter: String,
    to: String,
}

fn d_batch_messages() -> usize {
    500
}
fn d_batch_bytes() -> usize {
    1 << 20
}
fn d_backoff_initial() -> u64 {
    100
}
fn d_backoff_max() -> u64 {
    30_000
}
fn d_stuck_after() -> u64 {
    300
}
pub(super) fn validate_sinks(raw: Vec<RawSink>, e: &mut Vec<String>) -> Vec<SinkConfig> {
    if raw.is_empty() {
        e.push("sinks: at least one sink is required (messages would pile up forever)".into());
    }
    let mut out: Vec<SinkConfig> = Vec::new();
    let mut names = std::collections::HashSet::new();
    for (i, s) in raw.into_iter().enumerate() {
        let key = format!("sinks[{i}]");
        let before = e.len();
        if s.name.is_empty() || !s.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            e.push(format!("{key}.name: \"{}\" must be non-empty [A-Za-z0-9_-]", s.name));
        } else if !names.insert(s.name.clone()) {
            e.push(format!("{key}.name: \"{}\" is used twice", s.name));
        }
        let kind = sink_kind(&key, &s, e);
        if s.batch_max_messages == 0 || s.batch_max_messages > 10_000 {
            e.push(format!("{key}.batch_max_messages: must be between 1 and 10000"));
        }
        if s.batch_max_bytes < 1024 {
            e.push(format!("{key}.batch_max_bytes: must be >= 1024"));
        }
        let request_ms = match &kind {
            SinkKind::Http { timeout, .. } | SinkKind::Mqtt { timeout, .. } | SinkKind::Nats { timeout, .. } => timeout.as_millis() as u64,
            _ => 0,
        };
        if s.stuck_after_secs > 0 && s.stuck_after_secs.saturating_mul(1000) <= request_ms.saturating_add(s.backoff_max_ms) {
            e.push(format!(
                "{key}.stuck_after_secs: must be 0 (off) or longer than timeout_ms + backoff_max_ms ({} ms), or a slow but working sink would be restarted",
                request_ms + s.backoff_max_ms
            ));
        }
        if s.backoff_initial_ms == 0 || s.backoff_max_ms < s.backoff_initial_ms {
            e.push(format!("{key}.backoff_max_ms: must be >= backoff_initial_ms, which must be > 0"));
        }
        if e.len() == before {
            out.push(SinkConfig {
                name: s.name,
                kind,
                batch_max_messages: s.batch_max_messages,
                batch_max_bytes: s.batch_max_bytes,
                backoff: Backoff { initial: Duration::from_millis(s.backoff_initial_ms), max: Duration::from_millis(s.backoff_max_ms) },
                stuck_after: Duration::from_secs(s.stuck_after_secs),
            });
        }
    }
    out
}

fn client_tls(key: &str, s: &RawSink, https: bool, e: &mut Vec<String>) -> Option<ClientTlsFiles> {
    let path = |v: &Option<String>| v.as_ref().filter(|p| !p.is_empty()).map(PathBuf::from);
    let (cert, key_file, ca) = (path(&s.tls_cert), path(&s.tls_key), path(&s.tls_ca));
    if !https {
        if cert.is_some() || key_file.is_some() || ca.is_some() {
            let scheme = match s.kind.as_str() {
                "nats" => "tls://",
                "mqtt" => "mqtts://",
                _ => "https://",
            };
            e.push(format!("{key}.tls_ca: TLS settings need a {scheme} url"));
        }
        return None;
    }
    if cert.is_none() && key_file.is_none() && ca.is_none() {
        return None; // the system's trust store, no client certificate
    }
    if cert.is_some() != key_file.is_some() {
        e.push(format!("{key}.tls_key: tls_cert and tls_key go together"));
    }
    match ca {
        Some(ca) => Some(ClientTlsFiles { cert, key: key_file, ca }),
        None => {
            e.push(format!("{key}.tls_ca: required with tls_cert (the CA that issues the cloud's certificate)"));
            None
        }
    }
}

fn sink_kind(key: &str, s: &RawSink, e: &mut Vec<String>) -> SinkKind {
    let unused = |field: &str, present: bool, e: &mut Vec<String>| {
        if present {
            e.push(format!("{key}.{field}: not used by kind \"{}\"", s.kind));
        }
    };
    match s.kind.as_str() {
        "http" => {
            unused("downlink", s.downlink.is_some(), e);
            unused("path", s.path.is_some(), e);
            unused("topic_prefix", s.topic_prefix.is_some(), e);
            unused("topic_rewrite", s.topic_rewrite.is_some(), e);
            let url = s.url.clone().unwrap_or_default();
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                e.push(format!("{key}.url: \"{url}\" must be an http:// or https:// URL"));
            }
            let timeout_ms = s.timeout_ms.unwrap_or(10_000);
            if timeout_ms == 0 {
                e.push(format!("{key}.timeout_ms: must be > 0"));
            }
            let tls = client_tls(key, s, url.starts_with("https://"), e);
            SinkKind::Http { url, timeout: Duration::from_millis(timeout_ms), tls }
        }
        "file" => {
            unused("downlink", s.downlink.is_some(), e);
            unused("tls_ca", s.tls_ca.is_some(), e);
            unused("topic_prefix", s.topic_prefix.is_some(), e);
            unused("topic_rewrite", s.topic_rewrite.is_some(), e);
            unused("url", s.url.is_some(), e);
            unused("timeout_ms", s.timeout_ms.is_some(), e);
            match &s.path {
                Some(p) if !p.is_empty() => SinkKind::File { path: PathBuf::from(p) },
                _ => {
                    e.push(format!("{key}.path: required for kind \"file\""));
                    SinkKind::Discard
                }
            }
        }
        "mqtt" => {
            unused("path", s.path.is_some(), e);
            let url = s.url.clone().unwrap_or_default();
            let secure = url.starts_with("mqtts://");
            let rest = url.strip_prefix("mqtt://").or_else(|| url.strip_prefix("mqtts://"));
            let (credentials, address) = match rest.map(|r| r.rsplit_once('@')) {
                Some(Some((user, address))) => (Some(user), Some(address)),
                Some(None) => (None, rest),
                None => (None, None),
            };
            let (host, port) = match address.and_then(|a| a.rsplit_once(':')) {
                Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {
                    (host.to_string(), port.parse().unwrap_or(1883))
                }
                _ => {
                    e.push(format!(
                        "{key}.url: \"{}\" must be mqtt://HOST:PORT or mqtts://HOST:PORT (USER:PASSWORD@ before HOST)",
                        redact(&url)
                    ));
                    (String::new(), 0)
                }
            };
            let (username, password) = match credentials.map(|c| c.split_once(':').unwrap_or((c, ""))) {
                Some((user, password)) => (Some(user.to_string()), Some(password.to_string()).filter(|p| !p.is_empty())),
                None => (None, None),
            };
            let tls = client_tls(key, s, secure, e);
            let timeout_ms = s.timeout_ms.unwrap_or(10_000);
            if timeout_ms == 0 {
                e.push(format!("{key}.timeout_ms: must be > 0"));
            }
            let topic_prefix = s.topic_prefix.clone().unwrap_or_default();
            if topic_prefix.contains(['+', '#', '\0']) {
                e.push(format!("{key}.topic_prefix: \"{topic_prefix}\" must not hold wildcards"));
            }
            let mut topic_rewrite = Vec::new();
            for (i, r) in s.topic_rewrite.iter().flatten().enumerate() {
                match crate::egress::TopicRule::parse(&r.filter, &r.to) {
                    Ok(rule) => topic_rewrite.push(rule),
                    Err(err) => e.push(format!("{key}.topic_rewrite[{i}]: {err}")),
                }
            }
            let downlink = s.downlink.clone().unwrap_or_default();
            for f in &downlink {
                if crate::routing::table::Subscription::new(f, 1, false, false, None).is_err() || f.starts_with("$share/") {
                    e.push(format!("{key}.downlink: \"{f}\" is not a topic filter"));
                }
            }
            if s.downlink_identity.is_some() && downlink.is_empty() {
                e.push(format!("{key}.downlink_identity: only with downlink filters"));
            }
            let downlink_identity = s.downlink_identity.clone();
            SinkKind::Mqtt {
                host,
                port,
                secure,
                username,
                password,
                tls,
                topic_prefix,
                topic_rewrite,
                timeout: Duration::from_millis(timeout_ms),
                downlink,
                downlink_identity,
            }
        }
        "nats" => nats_kind(key, s, e),
        "discard" => {
            unused("url", s.url.is_some(), e);
            unused("path", s.path.is_some(), e);
            SinkKind::Discard
        }
        other => {
            e.push(format!("{key}.kind: \"{other}\" is not one of \"http\", \"mqtt\", \"nats\", \"file\", \"discard\""));
            SinkKind::Discard
        }
    }
}

/// `kind = "nats"`: a JetStream server at `nats://HOST:PORT` (`tls://` for TLS; credentials as
/// `nats://USER:PASSWORD@HOST:PORT`), subjects under `subject_prefix` (dot-separated tokens,
/// no wildcards), optionally a `stream` the sink creates if it is missing.
fn nats_kind(key: &str, s: &RawSink, e: &mut Vec<String>) -> SinkKind {
    for (field, present) in [
        ("path", s.path.is_some()),
        ("topic_prefix", s.topic_prefix.is_some()),
        ("topic_rewrite", s.topic_rewrite.is_some()),
        ("downlink", s.downlink.is_some()),
    ] {
        if present {
            e.push(format!("{key}.{field}: not used by kind \"nats\""));
        }
    }
    let url = s.url.clone().unwrap_or_default();
    let tls_url = url.starts_with("tls://");
    let host = url.strip_prefix("nats://").or_else(|| url.strip_prefix("tls://")).map(|rest| rest.rsplit('@').next().unwrap_or(rest));
    if !host.and_then(|h| h.rsplit_once(':')).is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0)) {
        e.push(format!("{key}.url: \"{}\" must be nats://HOST:PORT or tls://HOST:PORT", redact(&url)));
    }
    let timeout_ms = s.timeout_ms.unwrap_or(10_000);
    if timeout_ms == 0 {
        e.push(format!("{key}.timeout_ms: must be > 0"));
    }
    let subject_prefix = s.subject_prefix.clone().unwrap_or_default();
    if !subject_prefix.is_empty() && subject_prefix.split('.').any(|t| t.is_empty() || t.contains(['*', '>', ' ', '\t', '\r', '\n'])) {
        e.push(format!("{key}.subject_prefix: \"{subject_prefix}\" must be dot-separated NATS tokens, without wildcards or spaces"));
    }
    let stream = s.stream.clone().filter(|n| !n.is_empty());
    if stream.as_ref().is_some_and(|n| n.contains(['.', '*', '>', ' ', '/', '\\'])) {
        e.push(format!("{key}.stream: a JetStream stream name has no '.', '*', '>', '/', '\\' or spaces"));
    }
    let tls = client_tls(key, s, tls_url, e);
    SinkKind::Nats { url, subject_prefix, stream, timeout: Duration::from_millis(timeout_ms), tls }
}

/// A URL with its password hidden, for messages.
fn redact(url: &str) -> String {
    match url.split_once("://").and_then(|(scheme, rest)| rest.rsplit_once('@').map(|(_, host)| (scheme, host))) {
        Some((scheme, host)) => format!("{scheme}://***@{host}"),
        None => url.to_string(),
    }
}
