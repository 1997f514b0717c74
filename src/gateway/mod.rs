//! Starting and stopping a whole gateway, in named steps:
//!
//! ```text
//! open_store ─ start_telemetry ─ build_sinks ─ load_trust ─ start_tree ─ start_api ─ start_listeners
//! ```
//!
//! [`Gateway::stop`] goes the other way: listeners close (in-flight publishes commit first),
//! then the supervision tree stops in reverse start order.

mod preflight;
mod services;
pub mod sinks;
mod store_open;

pub use preflight::{load_supervision, preflight};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use edge_gateway_actors::health::Health;
use edge_gateway_actors::metrics::Metrics;
use edge_gateway_actors::rotation::{Reloadable, RotationMsg};
use edge_gateway_actors::session::SessionsMsg;
use edge_gateway_actors::slot::ActorSlot;
use edge_gateway_actors::storage::{BackendKind, StorageMsg, Store};
use edge_gateway_actors::supervisor::tree::{self, SinkSpec, TreeInputs};
use edge_gateway_actors::supervisor::{SupervisionConfig, Supervisor, SupervisorMsg};
use ractor::{Actor, ActorRef};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use store_open::{OpenError, quarantine_marker};

use crate::api::https::HttpTls;
use crate::config::{Config, PlainAuth};
use crate::egress::EgressError;
use crate::ingress::listen::{self, ListenError};
use crate::ingress::{Ingress, IngressParts};
use crate::routing::Router;
use crate::routing::sessions::{Limits, Stored};
use crate::schema::{RegistryError, Schemas};
use crate::telemetry::TelemetryError;
use crate::trust::auth::{AuthError, Authority};
use crate::trust::tls::TlsError;
use crate::trust::tls::server::DeviceTls;

/// A running gateway.
pub struct Gateway {
    /// The plain-TCP listener (or the TLS one when the plain listener is off).
    pub mqtt_addr: SocketAddr,
    /// The TLS listener, if enabled.
    pub tls_addr: Option<SocketAddr>,
    /// The chaos admin API, if enabled.
    pub admin_addr: Option<SocketAddr>,
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    pub http_addr: SocketAddr,
    /// Prefix of this gateway's idempotency keys.
    pub gateway_id: String,
    /// Metric handles (tests read them directly).
    pub metrics: Metrics,
    /// Readiness state.
    pub health: Health,
    /// The open store (read-only use: inspection, tests).
    pub store: Store,
    /// The root of the supervision tree.
    pub root: ActorRef<SupervisorMsg>,
    /// The current storage actor.
    pub storage: ActorSlot<StorageMsg>,
    /// The current sessions actor.
    pub sessions: ActorSlot<SessionsMsg>,
    /// The current cert-rotation actor.
    pub rotation: ActorSlot<RotationMsg>,
    /// Every sink as configured now (SIGHUP replaces what it safely can).
    pub sinks: sinks::LiveSinks,
    /// Resolves when the root supervisor has stopped (or given up).
    root_done: JoinHandle<()>,
    /// The MQTT I/O threads, stopped first (accepting ends, the publishes in flight get their
    /// commit and PUBACK, then the connections close).
    mqtt_threads: crate::ingress::accept::IoThreads,
    /// Tells the HTTP API, the admin API and the watchdog to stop.
    http_stop: watch::Sender<bool>,
    /// The HTTP API's server: it holds the store (inspection), so a stop waits for it.
    http_task: JoinHandle<()>,
    /// The OTLP tracer provider, if tracing is on (kept for the life of the gateway).
    _tracer: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
    /// The OTLP logger provider, if log export is on.
    _logger: Option<opentelemetry_sdk::logs::SdkLoggerProvider>,
}

/// How a gateway ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Exit {
    /// Stopped on request (signal); everything was flushed.
    Graceful,
    /// The root supervisor exceeded its restart intensity.
    RootFailed,
}

/// Why a gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The data directory cannot be created.
    #[error("cannot create data dir {}: {source}", path.display())]
    DataDir {
        /// `data_dir`.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The store or the device status file cannot be opened (a damaged store is quarantined,
    /// not an error).
    #[error(transparent)]
    Store(#[from] OpenError),
    /// The OTLP exporters cannot be built.
    #[error(transparent)]
    Telemetry(#[from] TelemetryError),
    /// A sink cannot be built.
    #[error(transparent)]
    Sink(#[from] EgressError),
    /// The device TLS files do not load.
    #[error("device TLS: {0}")]
    DeviceTls(#[from] TlsError),
    /// The ACL or password file does not load.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The schema registry (`schemas.dir`) does not load.
    #[error("schemas.dir: {0}")]
    Schemas(#[from] RegistryError),
    /// The supervision tree did not start.
    #[error("cannot start the supervision tree: {0}")]
    Tree(#[from] ractor::SpawnErr),
    /// An HTTP listener (`http.listen`, `--admin-listen`) cannot be bound.
    #[error("{key}: cannot bind {addr}: {source}")]
    Bind {
        /// The config key or flag.
        key: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The MQTT listeners did not start.
    #[error(transparent)]
    Listen(#[from] ListenError),
    /// The HTTP API's token or TLS files do not load.
    #[error(transparent)]
    Api(#[from] crate::api::ApiError),
}

/// What the trust step loads: device TLS, identities and ACLs, and everything to keep rotated.
struct Trust {
    /// The device-facing TLS set, if TLS is on.
    device_tls: Option<Arc<DeviceTls>>,
    /// Identities, passwords, ACLs.
    authority: Authority,
    /// The schema registry (binds nothing without `schemas.dir`).
    schemas: Arc<Schemas>,
}

/// The OpenTelemetry providers, kept for the life of the gateway.
type Providers = (Option<opentelemetry_sdk::trace::SdkTracerProvider>, Option<opentelemetry_sdk::logs::SdkLoggerProvider>);

impl Gateway {
    /// Start everything; must run inside a multi-thread tokio runtime.
    pub async fn start(config: Config, supervision: SupervisionConfig) -> Result<Gateway, GatewayError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        crate::telemetry::panics::install_panic_hook();
        let (metrics, health) = (Metrics::new(), Health::default());
        metrics.zero_known_series(&config.sinks.iter().map(|s| s.name.clone()).collect::<Vec<_>>());
        let store = open_store(&config, &metrics, &health)?;
        let gateway_id = store.gateway_id(config.gateway_id.as_deref()).map_err(OpenError::from)?;
        let providers = start_telemetry(&config, &metrics)?;
        let mut reloadables = Vec::new();
        let (sinks, bridges, live_sinks) = sinks::build_sinks(&config, &gateway_id, &mut reloadables)?;
        let trust = load_trust(&config, &metrics, &mut reloadables)?;
        let http_tls = load_http_tls(&config, &mut reloadables)?;
        let stored = Stored {
            retained: store.retained().map_err(OpenError::from)?,
            sessions: store.sessions().map_err(OpenError::from)?,
            heads: store.queued_heads().map_err(OpenError::from)?,
        };
        let limits = Limits {
            max_queued: config.broker.max_queued,
            session_expiry_max_secs: config.broker.session_expiry_max_secs,
            max_sessions: config.broker.max_sessions,
        };
        let classes = config.archive.as_ref().map(|a| crate::archive::Classes::new(&a.classes));
        let router = Router::new(stored, trust.authority.clone(), metrics.clone(), limits, classes.clone());
        let mut inputs = tree_inputs(&config, &store, &gateway_id, sinks, reloadables, &metrics, &health)?;
        if let (Some(archive), Some(classes)) = (&config.archive, &classes) {
            inputs.consumers.push(crate::archive::actor::consumer(archive, classes, &inputs));
        }
        let (root, root_done) = Supervisor::spawn(None, Supervisor, tree::root_args(&supervision, &inputs)).await?;
        for bridge in &bridges {
            bridge.attach(router.clone(), inputs.storage.clone());
        }
        let (http_stop, _) = watch::channel(false);
        tokio::spawn(crate::routing::sessions::expire_sessions_every(router.clone(), inputs.storage.clone(), http_stop.subscribe()));
        let (http_addr, http_task) =
            services::start_api(&config, &inputs, http_tls, trust.schemas.clone(), router.clone(), classes.clone(), &http_stop).await?;
        let admin_addr = match &config.admin {
            Some(a) => Some(services::start_admin(a, &inputs, &root, http_stop.subscribe()).await?),
            None => None,
        };
        let (mqtt_threads, mqtt_addr, tls_addr) = start_listeners(&config, &inputs, trust, router)?;
        tracing::info!(%mqtt_addr, ?tls_addr, %http_addr, gateway_id = %gateway_id, "Gateway started.");
        warn_lossy_storage_policy(&config.storage);
        for key in &config.ignored_env {
            tracing::warn!(variable = %key, reads = crate::config::ENV_OVERRIDES, "An EDGE_GATEWAY_ variable the gateway does not read is set; ignored (a typo?).");
        }
        Ok(Gateway {
            mqtt_addr,
            tls_addr,
            admin_addr,
            http_addr,
            gateway_id,
            metrics,
            health,
            store,
            root,
            storage: inputs.storage,
            sessions: inputs.sessions,
            rotation: inputs.rotation,
            sinks: live_sinks,
            root_done,
            mqtt_threads,
            http_stop,
            http_task,
            _tracer: providers.0,
            _logger: providers.1,
        })
    }

    /// Run until `shutdown` resolves (then stop gracefully) or the root supervisor fails.
    pub async fn run_until(mut self, shutdown: impl std::future::Future<Output = ()>) -> Exit {
        tokio::select! {
            _ = shutdown => {
                self.stop().await;
                Exit::Graceful
            }
            _ = &mut self.root_done => {
                tracing::error!("The root supervisor gave up; exiting so that the service manager restarts the gateway.");
                self.stop_listeners().await;
                Exit::RootFailed
            }
        }
    }

    /// Stop accepting, let in-flight publishes commit, stop the tree in reverse order.
    pub async fn stop(mut self) {
        self.stop_listeners().await;
        let _ = self.root.call(SupervisorMsg::Shutdown, Some(Duration::from_secs(60))).await;
        let _ = tokio::time::timeout(Duration::from_secs(60), &mut self.root_done).await;
        // Its connections end with their requests; then nothing holds the store any more (a
        // gateway started again in this process can open it).
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut self.http_task).await;
        tracing::info!("Gateway stopped.");
    }

    async fn stop_listeners(&self) {
        self.health.set_listeners_bound(false);
        // Graceful: in-flight publishes commit within the grace period.
        let _ = tokio::time::timeout(Duration::from_secs(30), self.mqtt_threads.stop()).await;
        let _ = self.http_stop.send(true);
    }
}

/// Step 1: the data dir and the store (a damaged store is quarantined and a fresh one starts).
fn open_store(config: &Config, metrics: &Metrics, health: &Health) -> Result<Store, GatewayError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| GatewayError::DataDir { path: config.data_dir.clone(), source })?;
    let mut sink_names: Vec<String> = config.sinks.iter().map(|s| s.name.clone()).collect();
    // The archive's cursor holds records back like a sink's.
    sink_names.extend(config.archive.as_ref().map(|_| crate::config::ARCHIVE_CURSOR.to_string()));
    for other in BackendKind::ALL.into_iter().filter(|k| *k != config.backend) {
        store_open::refuse_other_backend(config.backend, &config.store_path_of(other), other)?;
    }
    let store = store_open::open_store(config.backend, &config.store_path(), sink_names, metrics, health)?;
    Ok(store)
}

/// Step 2: traces and log export (inside the runtime: tonic spawns onto it).
fn start_telemetry(config: &Config, metrics: &Metrics) -> Result<Providers, GatewayError> {
    let tracer = crate::telemetry::traces::init(&config.tracing, metrics)?;
    let logger = crate::telemetry::logs::init(&config.tracing, metrics)?;
    Ok((tracer, logger))
}

/// Step 4: device TLS, identities, ACLs and the schema registry; their files join the rotation.
fn load_trust(config: &Config, metrics: &Metrics, reloadables: &mut Vec<Arc<dyn Reloadable>>) -> Result<Trust, GatewayError> {
    let device_tls = match &config.tls {
        Some(t) => Some(DeviceTls::load(&t.files)?),
        None => None,
    };
    reloadables.extend(device_tls.clone().map(|t| t as Arc<dyn Reloadable>));
    let authority = Authority::load(&config.auth, metrics.clone())?;
    reloadables.extend(authority.reloadables());
    let schemas = Schemas::load(config.schemas_dir.as_deref(), metrics.clone())?;
    if schemas.enabled() {
        reloadables.push(schemas.clone());
    }
    Ok(Trust { device_tls, authority, schemas })
}

/// Step 4b: the local API's HTTPS set, if configured; its files join the rotation.
fn load_http_tls(config: &Config, reloadables: &mut Vec<Arc<dyn Reloadable>>) -> Result<Option<Arc<HttpTls>>, GatewayError> {
    let Some((cert, key)) = &config.http.tls else { return Ok(None) };
    let tls = HttpTls::load(cert.clone(), key.clone())?;
    reloadables.push(tls.clone());
    Ok(Some(tls))
}

/// Step 5: what the supervision tree's actors are built from.
fn tree_inputs(
    config: &Config,
    store: &Store,
    gateway_id: &str,
    sinks: Vec<SinkSpec>,
    reloadables: Vec<Arc<dyn Reloadable>>,
    metrics: &Metrics,
    health: &Health,
) -> Result<TreeInputs, GatewayError> {
    let next_seq = store.stats().map_err(OpenError::from)?.next_seq;
    Ok(TreeInputs {
        store: store.clone(),
        gateway_id: gateway_id.to_string(),
        storage_policy: config.storage.clone(),
        sinks,
        consumers: Vec::new(),
        metrics: metrics.clone(),
        health: health.clone(),
        committed: Arc::new(watch::channel(next_seq).0),
        storage: Default::default(),
        sessions: Default::default(),
        reloadables,
        rotation_policy: config.rotation.clone(),
        rotation: Default::default(),
        liveness: Default::default(),
        devices_db: store_open::open_devices_db(config.backend, &config.devices_path())?,
        devices_policy: config.devices.clone(),
        devices: Default::default(),
        live_sessions: Default::default(),
    })
}

/// Step 7: bind the device listeners and run ntex-mqtt; the gateway is ready after this.
fn start_listeners(
    config: &Config,
    inputs: &TreeInputs,
    trust: Trust,
    router: Arc<Router>,
) -> Result<(crate::ingress::accept::IoThreads, SocketAddr, Option<SocketAddr>), GatewayError> {
    let anonymous = config.mqtt.plain && config.auth.plain == PlainAuth::Anonymous;
    let ingress = Ingress::new(IngressParts {
        storage: inputs.storage.clone(),
        sessions: inputs.sessions.clone(),
        metrics: inputs.metrics.clone(),
        authority: trust.authority,
        tls: false,
        device_tls: trust.device_tls.clone(),
        devices: inputs.devices.clone(),
        live_sessions: inputs.live_sessions.clone(),
        schemas: trust.schemas.enabled().then(|| trust.schemas.clone()),
        router,
        store: inputs.store.downgrade(),
    });
    let listeners = listen::bind_listeners(config)?;
    let (mqtt_addr, tls_addr) = (listeners.main_addr(), listeners.tls.as_ref().map(|(_, a)| *a));
    let server = listen::start_mqtt(config, ingress, listeners, trust.device_tls, inputs.health.clone())?;
    inputs.health.set_listeners_bound(true);
    if anonymous {
        tracing::warn!(%mqtt_addr, "The plain listener accepts anonymous devices (auth.plain = \"anonymous\"): lab use only.");
    } else {
        tracing::info!(plain = config.mqtt.plain, tls = tls_addr.is_some(), "Devices must authenticate.");
    }
    Ok((server, mqtt_addr, tls_addr))
}

/// `overflow = "drop_oldest"` and `ttl_secs` delete messages that were acknowledged to their
/// devices: say at every start that such a policy is on.
fn warn_lossy_storage_policy(policy: &edge_gateway_actors::storage::StoragePolicy) {
    use edge_gateway_actors::storage::Overflow;
    if policy.overflow == Overflow::DropOldest {
        tracing::warn!(
            quota_bytes = policy.quota_bytes,
            quota_messages = policy.quota_messages,
            "storage.overflow = \"drop_oldest\": at the quota the oldest stored messages are deleted, although their devices got a PUBACK."
        );
    }
    if let Some(ttl) = policy.ttl {
        tracing::warn!(
            ttl_secs = ttl.as_secs(),
            "storage.ttl_secs is set: stored messages older than this are deleted, although their devices got a PUBACK."
        );
    }
}
