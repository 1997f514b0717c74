//! The gateway's TOML configuration: raw serde structs, then a validated [`Config`].
//!
//! Every problem is collected and named by its dotted key (`sinks[0].url: ...`). Per-host values
//! can be overridden from the environment (see [`ENV_OVERRIDES`]) before validation.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use edge_gateway_actors::backoff::Backoff;
use edge_gateway_actors::storage::{Overflow, StoragePolicy};
use serde::Deserialize;

mod trust;

pub use trust::{AuthConfig, PlainAuth, RotationConfig, TlsListenerConfig};

/// The configuration used when no file is given.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("default.toml");

/// Environment variables that override config values, for documentation and `--help`.
pub const ENV_OVERRIDES: &str = "EDGE_GATEWAY_MQTT_LISTEN, EDGE_GATEWAY_HTTP_LISTEN, EDGE_GATEWAY_DATA_DIR, EDGE_GATEWAY_SINK_<NAME>_URL";

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Prefix of idempotency keys; `None` = the id stored in the data dir (random on first start).
    pub gateway_id: Option<String>,
    /// Where `gateway.redb` lives.
    pub data_dir: PathBuf,
    /// A supervision.toml to use instead of the embedded one.
    pub supervision_file: Option<PathBuf>,
    /// Device-facing MQTT listener.
    pub mqtt: MqttConfig,
    /// Local HTTP endpoint (metrics, health).
    pub http_listen: SocketAddr,
    /// Quota, TTL and batching of the store.
    pub storage: StoragePolicy,
    /// Where stored messages go; each gets a forwarder.
    pub sinks: Vec<SinkConfig>,
    /// The device-facing TLS listener, if enabled.
    pub tls: Option<TlsListenerConfig>,
    /// Watching, warning about and renewing certificates.
    pub rotation: RotationConfig,
    /// Device identity, passwords and ACLs.
    pub auth: AuthConfig,
    /// Device health tracking.
    pub devices: DevicesConfig,
    /// OpenTelemetry traces.
    pub tracing: crate::telemetry::TracingConfig,
    /// The chaos admin API; only from CLI flags (`run --admin-listen`), never from the file.
    pub admin: Option<crate::admin::AdminConfig>,
}

/// Device health tracking.
#[derive(Debug, Clone)]
pub struct DevicesConfig {
    /// A connected device quiet this long is `silent`.
    pub silent_after: Duration,
    /// Changed device records are written this often.
    pub persist_every: Duration,
}

/// The MQTT listener's settings.
#[derive(Debug, Clone)]
pub struct MqttConfig {
    /// Run the plain-TCP listener (lab use; off in production).
    pub plain: bool,
    /// Address of the plain-TCP listener (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Most open device connections over both listeners (0: no limit).
    pub max_connections: usize,
    /// Most new connections per second from one source address (0: no limit).
    pub max_new_connections_per_source: u32,
    /// Largest accepted packet, in bytes.
    pub max_packet_size: u32,
    /// Time allowed between accepting a socket and its CONNECT.
    pub connect_timeout: Duration,
    /// A packet that has started arriving must make progress (512 bytes) within this time, or
    /// the connection is closed (slow-sender / truncated-packet protection; keep-alive does not
    /// apply while a packet is half read).
    pub partial_packet_timeout: Duration,
    /// QoS1 publishes in flight per connection.
    pub max_inflight: u16,
    /// ntex I/O threads.
    pub workers: usize,
}

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
    /// Accept and forget (benchmarks only).
    Discard,
}

/// Every problem found in a configuration.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  {}", .0.join("\n  "))]
pub struct ConfigError(pub Vec<String>);

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawConfig {
    gateway: RawGateway,
    mqtt: RawMqtt,
    http: RawHttp,
    storage: RawStorage,
    sinks: Option<Vec<RawSink>>,
    tls: trust::RawTls,
    auth: trust::RawAuth,
    devices: RawDevices,
    tracing: RawTracing,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawTracing {
    otlp_endpoint: String,
    sample_ratio: f64,
    queue_size: usize,
    service_name: String,
    export_logs: bool,
}

impl Default for RawTracing {
    fn default() -> Self {
        Self { otlp_endpoint: String::new(), sample_ratio: 0.01, queue_size: 4096, service_name: "edge-gateway".into(), export_logs: false }
    }
}

impl RawTracing {
    fn validate(&self, e: &mut Vec<String>) -> crate::telemetry::TracingConfig {
        let endpoint = self.otlp_endpoint.trim();
        if !endpoint.is_empty() && !endpoint.starts_with("http://") {
            e.push(format!(
                "tracing.otlp_endpoint: \"{endpoint}\" must be an http:// URL (OTLP/gRPC without TLS, e.g. a local collector at http://127.0.0.1:4317)"
            ));
        }
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            e.push("tracing.sample_ratio: must be between 0 and 1".into());
        }
        if !(1..=1_000_000).contains(&self.queue_size) {
            e.push("tracing.queue_size: must be between 1 and 1000000".into());
        }
        if self.export_logs && endpoint.is_empty() {
            e.push("tracing.export_logs: needs tracing.otlp_endpoint (logs go to the same collector)".into());
        }
        crate::telemetry::TracingConfig {
            export_logs: self.export_logs,
            otlp_endpoint: (!endpoint.is_empty()).then(|| endpoint.to_string()),
            sample_ratio: self.sample_ratio,
            queue_size: self.queue_size,
            service_name: self.service_name.clone(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawDevices {
    silent_after_secs: u64,
    persist_every_secs: u64,
}

impl Default for RawDevices {
    fn default() -> Self {
        Self { silent_after_secs: 600, persist_every_secs: 5 }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawGateway {
    id: Option<String>,
    data_dir: String,
    supervision_file: Option<String>,
}

impl Default for RawGateway {
    fn default() -> Self {
        Self { id: None, data_dir: "./data".into(), supervision_file: None }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawMqtt {
    plain: bool,
    listen: String,
    max_connections: usize,
    max_new_connections_per_source: u32,
    max_packet_size: u32,
    connect_timeout_secs: u64,
    partial_packet_timeout_secs: u64,
    max_inflight: u16,
    workers: usize,
}

impl Default for RawMqtt {
    fn default() -> Self {
        Self {
            plain: true,
            listen: "127.0.0.1:1883".into(),
            max_connections: 10_000,
            max_new_connections_per_source: 200,
            max_packet_size: 1 << 20,
            connect_timeout_secs: 10,
            partial_packet_timeout_secs: 10,
            max_inflight: 64,
            workers: 1,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawHttp {
    listen: String,
}

impl Default for RawHttp {
    fn default() -> Self {
        Self { listen: "127.0.0.1:9880".into() }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawStorage {
    quota_messages: u64,
    quota_bytes: u64,
    overflow: String,
    ttl_secs: u64,
    max_batch: usize,
    group_commit: bool,
}

impl Default for RawStorage {
    fn default() -> Self {
        Self {
            quota_messages: 1_000_000,
            quota_bytes: 1 << 30,
            overflow: "reject".into(),
            ttl_secs: 0,
            max_batch: 4096,
            group_commit: true,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSink {
    name: String,
    kind: String,
    url: Option<String>,
    path: Option<String>,
    timeout_ms: Option<u64>,
    tls_cert: Option<String>,
    tls_key: Option<String>,
    tls_ca: Option<String>,
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

impl Config {
    /// The embedded default, with environment overrides applied.
    pub fn embedded_default() -> Result<Self, ConfigError> {
        Self::parse(DEFAULT_CONFIG_TOML, std::env::vars())
    }

    /// Read `path`, apply overrides from the process environment, validate.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError(vec![format!("{}: {e}", path.display())]))?;
        Self::parse(&text, std::env::vars())
    }

    /// Parse `text`, apply the overrides found in `env`, validate.
    pub fn parse(text: &str, env: impl IntoIterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        let mut raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError(vec![edge_gateway_actors::tomlkey::describe(text, &e)]))?;
        apply_env(&mut raw, env);
        raw.validate()
    }

    /// The device status file inside the data dir.
    pub fn devices_path(&self) -> PathBuf {
        self.data_dir.join("devices.redb")
    }

    /// The redb file inside the data dir.
    pub fn store_path(&self) -> PathBuf {
        self.data_dir.join("gateway.redb")
    }
}

fn apply_env(raw: &mut RawConfig, env: impl IntoIterator<Item = (String, String)>) {
    for (key, value) in env {
        match key.as_str() {
            "EDGE_GATEWAY_MQTT_LISTEN" => raw.mqtt.listen = value,
            "EDGE_GATEWAY_HTTP_LISTEN" => raw.http.listen = value,
            "EDGE_GATEWAY_DATA_DIR" => raw.gateway.data_dir = value,
            _ => {
                let Some(name) = key.strip_prefix("EDGE_GATEWAY_SINK_").and_then(|k| k.strip_suffix("_URL")) else { continue };
                for sink in raw.sinks.iter_mut().flatten() {
                    if sink.name.to_uppercase().replace('-', "_") == name {
                        sink.url = Some(value.clone());
                    }
                }
            }
        }
    }
}

fn addr(key: &str, value: &str, errors: &mut Vec<String>) -> SocketAddr {
    value.parse().unwrap_or_else(|_| {
        errors.push(format!("{key}: \"{value}\" is not an IP:port address"));
        SocketAddr::from(([127, 0, 0, 1], 0))
    })
}

impl RawConfig {
    fn validate(self) -> Result<Config, ConfigError> {
        let mut errors = Vec::new();
        let e = &mut errors;
        if self.gateway.id.as_deref().is_some_and(|id| id.is_empty() || id.len() > 64 || id.contains(char::is_whitespace)) {
            e.push("gateway.id: must be 1-64 characters without whitespace".into());
        }
        if self.gateway.data_dir.is_empty() {
            e.push("gateway.data_dir: must not be empty".into());
        }
        let mqtt = MqttConfig {
            plain: self.mqtt.plain,
            listen: addr("mqtt.listen", &self.mqtt.listen, e),
            max_connections: self.mqtt.max_connections,
            max_new_connections_per_source: self.mqtt.max_new_connections_per_source,
            max_packet_size: self.mqtt.max_packet_size,
            connect_timeout: Duration::from_secs(self.mqtt.connect_timeout_secs),
            partial_packet_timeout: Duration::from_secs(self.mqtt.partial_packet_timeout_secs),
            max_inflight: self.mqtt.max_inflight,
            workers: self.mqtt.workers,
        };
        if !(64..=268_435_455).contains(&self.mqtt.max_packet_size) {
            e.push("mqtt.max_packet_size: must be between 64 and 268435455".into());
        }
        if !(1..=3600).contains(&self.mqtt.partial_packet_timeout_secs) {
            e.push("mqtt.partial_packet_timeout_secs: must be between 1 and 3600".into());
        }
        if !(1..=3600).contains(&self.mqtt.connect_timeout_secs) {
            e.push("mqtt.connect_timeout_secs: must be between 1 and 3600".into());
        }
        if self.mqtt.max_inflight == 0 {
            e.push("mqtt.max_inflight: must be > 0".into());
        }
        if !(1..=64).contains(&self.mqtt.workers) {
            e.push("mqtt.workers: must be between 1 and 64".into());
        }
        let http_listen = addr("http.listen", &self.http.listen, e);
        let storage = self.storage.validate(e);
        if storage.quota_bytes < u64::from(self.mqtt.max_packet_size) {
            e.push(format!("storage.quota_bytes: must be at least mqtt.max_packet_size ({})", self.mqtt.max_packet_size));
        }
        let sinks = validate_sinks(self.sinks.unwrap_or_default(), e);
        let (tls, rotation) = self.tls.validate(e);
        let auth = self.auth.validate(mqtt.plain, tls.as_ref(), e);
        if self.devices.silent_after_secs == 0 {
            e.push("devices.silent_after_secs: must be > 0".into());
        }
        if !(1..=3600).contains(&self.devices.persist_every_secs) {
            e.push("devices.persist_every_secs: must be between 1 and 3600".into());
        }
        let devices = DevicesConfig {
            silent_after: Duration::from_secs(self.devices.silent_after_secs),
            persist_every: Duration::from_secs(self.devices.persist_every_secs),
        };
        let tracing = self.tracing.validate(e);
        if !mqtt.plain && tls.is_none() {
            e.push("mqtt.plain: no listener: enable the plain listener or tls.enabled".into());
        }
        if mqtt.plain && tls.as_ref().is_some_and(|t| t.listen == mqtt.listen && t.listen.port() != 0) {
            e.push("tls.listen: the same address as mqtt.listen".into());
        }
        if errors.is_empty() {
            Ok(Config {
                gateway_id: self.gateway.id,
                data_dir: PathBuf::from(self.gateway.data_dir),
                supervision_file: self.gateway.supervision_file.map(PathBuf::from),
                mqtt,
                http_listen,
                storage,
                sinks,
                tls,
                rotation,
                auth,
                devices,
                tracing,
                admin: None,
            })
        } else {
            Err(ConfigError(errors))
        }
    }
}

impl RawStorage {
    fn validate(&self, e: &mut Vec<String>) -> StoragePolicy {
        if self.quota_messages == 0 {
            e.push("storage.quota_messages: must be > 0".into());
        }
        if self.quota_bytes < 1024 {
            e.push("storage.quota_bytes: must be >= 1024".into());
        }
        if self.max_batch == 0 || self.max_batch > 65_536 {
            e.push("storage.max_batch: must be between 1 and 65536".into());
        }
        let overflow = match self.overflow.as_str() {
            "reject" => Overflow::Reject,
            "drop_oldest" => Overflow::DropOldest,
            other => {
                e.push(format!("storage.overflow: \"{other}\" is not one of \"reject\", \"drop_oldest\""));
                Overflow::Reject
            }
        };
        StoragePolicy {
            quota_messages: self.quota_messages,
            quota_bytes: self.quota_bytes,
            overflow,
            ttl: (self.ttl_secs > 0).then(|| Duration::from_secs(self.ttl_secs)),
            max_batch: self.max_batch,
            group_commit: self.group_commit,
        }
    }
}

fn validate_sinks(raw: Vec<RawSink>, e: &mut Vec<String>) -> Vec<SinkConfig> {
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
            SinkKind::Http { timeout, .. } => timeout.as_millis() as u64,
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
            e.push(format!("{key}.tls_ca: TLS settings need an https:// url"));
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
            unused("path", s.path.is_some(), e);
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
            unused("tls_ca", s.tls_ca.is_some(), e);
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
        "discard" => {
            unused("url", s.url.is_some(), e);
            unused("path", s.path.is_some(), e);
            SinkKind::Discard
        }
        other => {
            e.push(format!("{key}.kind: \"{other}\" is not one of \"http\", \"file\", \"discard\""));
            SinkKind::Discard
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Vec::new())
    }

    #[test]
    fn the_embedded_default_is_valid_and_local() {
        let c = parse(DEFAULT_CONFIG_TOML).unwrap();
        assert_eq!(c.mqtt.listen, "127.0.0.1:1883".parse().unwrap());
        assert!(c.http_listen.ip().is_loopback());
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert!(matches!(c.sinks[0].kind, SinkKind::File { .. }));
    }

    #[test]
    fn every_error_is_named_by_its_dotted_key() {
        let text = r#"
            [mqtt]
            listen = "nowhere"
            max_inflight = 0
            [storage]
            overflow = "sometimes"
            [[sinks]]
            name = "cloud"
            kind = "http"
            url = "ftp://x"
            [[sinks]]
            name = "cloud"
            kind = "file"
        "#;
        let errors = parse(text).unwrap_err().0;
        for expected in ["mqtt.listen", "mqtt.max_inflight", "storage.overflow", "sinks[0].url", "sinks[1].name", "sinks[1].path"] {
            assert!(errors.iter().any(|e| e.starts_with(expected)), "{expected} missing in {errors:?}");
        }
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let errors = parse("[mqtt]\nlisten_port = 1\n").unwrap_err().0;
        assert!(errors[0].contains("listen_port"), "{errors:?}");
    }

    #[test]
    fn the_environment_overrides_per_host_values() {
        let text = "[auth]\nplain = \"anonymous\"\n[[sinks]]\nname = \"cloud-eu\"\nkind = \"http\"\nurl = \"http://a\"\n";
        let env = [
            ("EDGE_GATEWAY_MQTT_LISTEN", "127.0.0.2:1884"),
            ("EDGE_GATEWAY_DATA_DIR", "/var/lib/gw"),
            ("EDGE_GATEWAY_SINK_CLOUD_EU_URL", "https://b"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let c = Config::parse(text, env).unwrap();
        assert_eq!(c.mqtt.listen, "127.0.0.2:1884".parse().unwrap());
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/gw"));
        assert!(matches!(&c.sinks[0].kind, SinkKind::Http { url, .. } if url == "https://b"));
    }

    #[test]
    fn devices_must_authenticate_unless_the_lab_setup_is_chosen() {
        let text = "[[sinks]]\nname = \"a\"\nkind = \"discard\"\n";
        let errors = parse(text).unwrap_err().0;
        assert!(errors.iter().any(|e| e.starts_with("auth.password_file: required")), "{errors:?}");
        let c = parse(&format!("[auth]\npassword_file = \"pw\"\n{text}")).unwrap();
        assert_eq!(c.auth.plain, PlainAuth::Password);
        assert!(c.tls.is_none());
    }

    #[test]
    fn tls_and_auth_problems_are_named_by_key() {
        let text = r#"
            [mqtt]
            plain = false
            [auth]
            identity = "serial"
            [tls]
            enabled = true
            min_version = "1.0"
            client_auth = "sometimes"
            cert = ""
            renew_before_days = 10
            [[sinks]]
            name = "cloud"
            kind = "http"
            url = "https://x"
            tls_cert = "c.pem"
        "#;
        let errors = parse(text).unwrap_err().0;
        for expected in
            ["auth.identity", "tls.min_version", "tls.client_auth", "tls.cert", "tls.renew_command", "sinks[0].tls_key", "sinks[0].tls_ca"]
        {
            assert!(errors.iter().any(|e| e.starts_with(expected)), "{expected} missing in {errors:?}");
        }
    }

    #[test]
    fn a_production_setup_has_only_the_tls_listener() {
        let text = r#"
            [mqtt]
            plain = false
            [tls]
            enabled = true
            listen = "0.0.0.0:8883"
            crl = ["crl.pem"]
            [[sinks]]
            name = "cloud"
            kind = "http"
            url = "https://x"
            tls_ca = "ca.pem"
            tls_cert = "c.pem"
            tls_key = "c.key"
        "#;
        let c = parse(text).unwrap();
        let tls = c.tls.unwrap();
        assert_eq!(tls.files.crl, vec![PathBuf::from("crl.pem")]);
        assert!(!c.mqtt.plain);
        assert!(matches!(&c.sinks[0].kind, SinkKind::Http { tls: Some(t), .. } if t.cert.is_some()));
    }

    #[test]
    fn an_anonymous_plain_listener_next_to_tls_is_refused() {
        let text = "[auth]\nplain = \"anonymous\"\n[tls]\nenabled = true\n[[sinks]]\nname = \"a\"\nkind = \"discard\"\n";
        let errors = parse(text).unwrap_err().0;
        assert!(errors.iter().any(|e| e.starts_with("auth.plain: \"anonymous\" next to tls.enabled")), "{errors:?}");
    }
}
