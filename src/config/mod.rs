//! The gateway's TOML configuration: raw serde structs, then a validated [`Config`].
//!
//! Every problem is collected and named by its dotted key (`sinks[0].url: ...`). Per-host values
//! can be overridden from the environment (see [`ENV_OVERRIDES`]) before validation.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use edge_gateway_actors::devices::DevicesPolicy;
use edge_gateway_actors::rotation::RotationPolicy;
use edge_gateway_actors::storage::{BackendKind, StoragePolicy};
use serde::Deserialize;

mod admin;
mod archive;
mod broker;
mod http;
mod sinks;
mod storage;
#[cfg(test)]
mod tests;
mod traces;
mod trust;
mod update;

pub use admin::AdminConfig;
pub use archive::{ArchiveConfig, ClassConfig, OnFull, S3Target, UploadTarget};
pub use broker::BrokerConfig;
pub use http::{HttpAuth, HttpConfig};
pub use sinks::{ClientTlsFiles, SinkConfig, SinkKind};
use storage::{RawSchemas, RawStorage};
pub use traces::TracingConfig;
pub use update::UpdateConfig;

pub use trust::{AuthConfig, ClientAuth, IdentityField, MinVersion, PlainAuth, ServerTlsFiles, TlsListenerConfig};

/// The configuration used when no file is given.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("default.toml");

/// Environment variables that override config values, for documentation and `--help`.
pub const ENV_OVERRIDES: &str =
    "EDGE_GATEWAY_MQTT_LISTEN, EDGE_GATEWAY_HTTP_LISTEN, EDGE_GATEWAY_DATA_DIR, EDGE_GATEWAY_STORAGE_BACKEND, EDGE_GATEWAY_SINK_<NAME>_URL";

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Prefix of idempotency keys; `None` = the id stored in the data dir (random on first start).
    pub gateway_id: Option<String>,
    /// Where the store (`gateway.redb` or `gateway.sqlite`) lives.
    pub data_dir: PathBuf,
    /// A supervision.toml to use instead of the embedded one.
    pub supervision_file: Option<PathBuf>,
    /// Which log lines are written (tracing's `EnvFilter` syntax); `RUST_LOG` overrides it.
    /// Applied again on SIGHUP.
    pub log_filter: String,
    /// `EDGE_GATEWAY_*` variables in the environment that are none of [`ENV_OVERRIDES`] (a typo,
    /// or a sink name that is not configured): ignored, and reported so a typo does not go
    /// unnoticed.
    pub ignored_env: Vec<String>,
    /// Device-facing MQTT listener.
    pub mqtt: MqttConfig,
    /// Local HTTP API (metrics, health, the JSON API): address, token, TLS.
    pub http: HttpConfig,
    /// Quota, TTL and batching of the store.
    pub storage: StoragePolicy,
    /// The engine that holds the store and the device file (`storage.backend`).
    pub backend: BackendKind,
    /// Where stored messages go; each gets a forwarder.
    pub sinks: Vec<SinkConfig>,
    /// The device-facing TLS listener, if enabled.
    pub tls: Option<TlsListenerConfig>,
    /// Watching, warning about and renewing certificates.
    pub rotation: RotationPolicy,
    /// Device identity, passwords and ACLs.
    pub auth: AuthConfig,
    /// Device health tracking.
    pub devices: DevicesPolicy,
    /// OpenTelemetry traces.
    pub tracing: TracingConfig,
    /// The schema registry folder (`schemas.dir`); `None`: payloads are not checked.
    pub schemas_dir: Option<PathBuf>,
    /// Local routing: subscriber queues, the downlink's identity (retained bounds are in `storage`).
    pub broker: BrokerConfig,
    /// Self-update: signing keys, deadline and probation.
    pub update: UpdateConfig,
    /// The retention tier (`archive.enabled`): Parquet files by class, kept and uploaded.
    pub archive: Option<ArchiveConfig>,
    /// The chaos admin API; only from CLI flags (`run --admin-listen`), never from the file.
    pub admin: Option<AdminConfig>,
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
    /// MQTT I/O threads (`mqtt:worker:N`): each accepts on the listeners and runs the
    /// connections it accepted.
    pub workers: usize,
}

/// The name of the archive's cursor in the store (next to the sinks' cursors).
pub const ARCHIVE_CURSOR: &str = "archive";

/// Every problem found in a configuration.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  {}", .0.join("\n  "))]
pub struct ConfigError(pub Vec<String>);

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawConfig {
    gateway: RawGateway,
    mqtt: RawMqtt,
    http: http::RawHttp,
    storage: RawStorage,
    sinks: Option<Vec<sinks::RawSink>>,
    tls: trust::RawTls,
    auth: trust::RawAuth,
    devices: RawDevices,
    tracing: traces::RawTracing,
    schemas: RawSchemas,
    broker: broker::RawBroker,
    update: update::RawUpdate,
    archive: archive::RawArchive,
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
    log_filter: String,
}

impl Default for RawGateway {
    fn default() -> Self {
        Self { id: None, data_dir: "./data".into(), supervision_file: None, log_filter: DEFAULT_LOG_FILTER.into() }
    }
}

/// Which log lines are written unless `gateway.log_filter` or `RUST_LOG` says otherwise.
pub const DEFAULT_LOG_FILTER: &str = "info,ntex_service=warn,ntex_io=warn";

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
        let ignored = apply_env(&mut raw, env);
        let mut config = raw.validate()?;
        config.ignored_env = ignored;
        Ok(config)
    }

    /// The device status file inside the data dir (`devices.redb` or `devices.sqlite`).
    pub fn devices_path(&self) -> PathBuf {
        self.data_dir.join(format!("devices.{}", self.backend))
    }

    /// The store file inside the data dir (`gateway.redb` or `gateway.sqlite`).
    pub fn store_path(&self) -> PathBuf {
        self.store_path_of(self.backend)
    }

    /// Where engine `kind` keeps the store in this data dir.
    pub fn store_path_of(&self, kind: BackendKind) -> PathBuf {
        self.data_dir.join(format!("gateway.{}", kind))
    }
}

/// Apply the overrides; returns the `EDGE_GATEWAY_*` variables that matched none.
fn apply_env(raw: &mut RawConfig, env: impl IntoIterator<Item = (String, String)>) -> Vec<String> {
    let mut ignored = Vec::new();
    for (key, value) in env {
        match key.as_str() {
            "EDGE_GATEWAY_MQTT_LISTEN" => raw.mqtt.listen = value,
            "EDGE_GATEWAY_HTTP_LISTEN" => raw.http.listen = value,
            "EDGE_GATEWAY_DATA_DIR" => raw.gateway.data_dir = value,
            "EDGE_GATEWAY_STORAGE_BACKEND" => raw.storage.backend = value,
            // Read by the store itself (the power-cut harness's negative control), not a setting.
            "EDGE_GATEWAY_UNSAFE_NO_FSYNC" => {}
            // Read by the archive (its crash tests' fault injection), not a setting.
            "EDGE_GATEWAY_ARCHIVE_CRASH" => {}
            _ => {
                let sink = key.strip_prefix("EDGE_GATEWAY_SINK_").and_then(|k| k.strip_suffix("_URL"));
                let mut applied = false;
                for s in raw.sinks.iter_mut().flatten() {
                    if sink.is_some_and(|name| s.name.to_uppercase().replace('-', "_") == name) {
                        s.url = Some(value.clone());
                        applied = true;
                    }
                }
                if !applied && key.starts_with("EDGE_GATEWAY_") {
                    ignored.push(key);
                }
            }
        }
    }
    ignored.sort();
    ignored
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
        if let Err(err) = tracing_subscriber::EnvFilter::try_new(&self.gateway.log_filter) {
            e.push(format!("gateway.log_filter: {err}"));
        }
        let http = self.http.validate(e);
        let mut storage = self.storage.validate(e);
        let schemas_dir = self.schemas.validate(self.mqtt.max_packet_size, &mut storage, e);
        let broker = self.broker.validate(self.mqtt.max_packet_size, &mut storage, e);
        let update = self.update.validate(e);
        let backend = self.storage.backend(e);
        if storage.quota_bytes < u64::from(self.mqtt.max_packet_size) {
            e.push(format!("storage.quota_bytes: must be at least mqtt.max_packet_size ({})", self.mqtt.max_packet_size));
        }
        let sinks = sinks::validate_sinks(self.sinks.unwrap_or_default(), e);
        let archive = self.archive.validate(Path::new(&self.gateway.data_dir), e);
        if archive.is_some() && sinks.iter().any(|s| s.name == ARCHIVE_CURSOR) {
            e.push(format!("sinks: the name \"{ARCHIVE_CURSOR}\" is the archive's cursor while archive.enabled = true"));
        }
        let (tls, rotation) = self.tls.validate(e);
        let mut auth = self.auth.validate(mqtt.plain, tls.as_ref(), e);
        auth.downlink_identity = broker.api_identity.clone();
        if self.devices.silent_after_secs == 0 {
            e.push("devices.silent_after_secs: must be > 0".into());
        }
        if !(1..=3600).contains(&self.devices.persist_every_secs) {
            e.push("devices.persist_every_secs: must be between 1 and 3600".into());
        }
        let devices = DevicesPolicy {
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
                log_filter: self.gateway.log_filter,
                ignored_env: Vec::new(),
                mqtt,
                http,
                storage,
                backend,
                sinks,
                tls,
                rotation,
                auth,
                devices,
                tracing,
                schemas_dir,
                broker,
                update,
                archive,
                admin: None,
            })
        } else {
            Err(ConfigError(errors))
        }
    }
}
