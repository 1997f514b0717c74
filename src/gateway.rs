//! Starting and stopping a whole gateway: store, actor tree, MQTT and HTTP listeners.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use edge_gateway_actors::health::Health;
use edge_gateway_actors::metrics::Metrics;
use edge_gateway_actors::slot::ActorSlot;
use edge_gateway_actors::storage::{SharedDb, StorageMsg, Store};
use edge_gateway_actors::supervisor::{SupervisionConfig, Supervisor, SupervisorMsg};
use ntex_mqtt::{MqttServer, v3, v5};
use ntex_service::cfg::SharedCfg;
use prometheus_client::registry::Registry;
use ractor::{Actor, ActorRef};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::auth::Authority;
use crate::config::Config;
use crate::http::{self, LocalApi};
use crate::mqtt::{self, Ingress};
use crate::sinks;
use crate::tls::acceptor::{Gate, RotatingTls};
use crate::tls::server::DeviceTls;
use crate::tree::{self, TreeInputs};
use edge_gateway_actors::rotation::{Reloadable, RotationMsg};

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
    /// The current sessions supervisor.
    pub sessions: ActorSlot<SupervisorMsg>,
    /// The current cert-rotation actor.
    pub rotation: ActorSlot<RotationMsg>,
    root_done: JoinHandle<()>,
    mqtt_server: ntex_server::Server<ntex_server::net::Connection>,
    http_stop: watch::Sender<bool>,
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

/// Read the supervision file named in the config, or the embedded default.
pub fn load_supervision(config: &Config) -> Result<SupervisionConfig, Vec<String>> {
    match &config.supervision_file {
        None => Ok(SupervisionConfig::default_config()),
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| vec![format!("{}: {e}", path.display())])?;
            SupervisionConfig::parse(&text)
        }
    }
}

/// Load every file the config names (TLS sets, ACL, passwords) without starting anything;
/// each problem names its config key and file. `check-config` and `run` report them as a bad
/// configuration (exit 2).
pub fn preflight(config: &Config) -> Vec<String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut problems = Vec::new();
    if let Some(t) = &config.tls {
        problems.extend(t.files.load().err().map(|e| e.to_string()));
    }
    problems.extend(Authority::load(&config.auth, Metrics::new()).err());
    for s in &config.sinks {
        if let crate::config::SinkKind::Http { tls: Some(files), .. } = &s.kind {
            problems.extend(crate::tls::client::CloudTls::load(&s.name, files).err().map(|e| e.to_string()));
        }
    }
    problems
}

impl Gateway {
    /// Start everything; must run inside a multi-thread tokio runtime.
    pub async fn start(config: Config, supervision: SupervisionConfig) -> anyhow::Result<Gateway> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        install_panic_hook();
        std::fs::create_dir_all(&config.data_dir).with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
        let sink_names = config.sinks.iter().map(|s| s.name.clone()).collect();
        let metrics = Metrics::new();
        let health = Health::default();
        let store = open_store(&config.store_path(), sink_names, &metrics, &health)?;
        let gateway_id = store.gateway_id(config.gateway_id.as_deref())?;
        let mut registry = Registry::default();
        metrics.register(&mut registry, env!("CARGO_PKG_VERSION"));
        let tracer = crate::telemetry::init(&config.tracing, &metrics)?;
        let logger = crate::otlp_logs::init(&config.tracing, &metrics)?;
        let mut built = Vec::new();
        let mut reloadables: Vec<Arc<dyn Reloadable>> = Vec::new();
        for s in &config.sinks {
            let (sink, cloud_tls) = sinks::build(&gateway_id, s).map_err(anyhow::Error::msg)?;
            reloadables.extend(cloud_tls.map(|c| c as Arc<dyn Reloadable>));
            built.push((s.clone(), sink));
        }
        let device_tls = match &config.tls {
            Some(t) => Some(DeviceTls::load(&t.files).map_err(|e| anyhow::anyhow!("device TLS: {e}"))?),
            None => None,
        };
        reloadables.extend(device_tls.clone().map(|t| t as Arc<dyn Reloadable>));
        let authority = Authority::load(&config.auth, metrics.clone()).map_err(anyhow::Error::msg)?;
        reloadables.extend(authority.reloadables());
        let next_seq = store.stats()?.next_seq;
        let inputs = TreeInputs {
            store: store.clone(),
            gateway_id: gateway_id.clone(),
            storage_policy: config.storage.clone(),
            sinks: built,
            metrics: metrics.clone(),
            health: health.clone(),
            committed: Arc::new(watch::channel(next_seq).0),
            storage: Default::default(),
            sessions: Default::default(),
            reloadables,
            rotation_policy: config.rotation.clone(),
            rotation: Default::default(),
            liveness: Default::default(),
            devices_db: open_devices_db(&config.devices_path())?,
            devices_policy: config.devices.clone(),
            devices: Default::default(),
            live_sessions: Default::default(),
        };
        let (root, root_done) = Supervisor::spawn(None, Supervisor, tree::root_args(&supervision, &inputs))
            .await
            .context("cannot start the supervision tree")?;

        let http_listener =
            http::bind(config.http_listen).await.with_context(|| format!("http.listen: cannot bind {}", config.http_listen))?;
        let http_addr = http_listener.local_addr()?;
        let (http_stop, http_stop_rx) = watch::channel(false);
        // Stops with the listeners: a forwarder stopped by a shutdown is not a stall.
        let watchdog = edge_gateway_actors::liveness::watchdog(
            inputs.liveness.clone(),
            health.clone(),
            metrics.clone(),
            Duration::from_secs(1),
            http_stop.subscribe(),
        );
        tokio::spawn(watchdog);
        tokio::spawn(http::serve(
            http_listener,
            LocalApi {
                registry: Arc::new(registry),
                health: health.clone(),
                store: store.clone(),
                devices: inputs.devices.clone(),
                liveness: inputs.liveness.clone(),
                certificates: inputs.reloadables.clone(),
                started: std::time::Instant::now(),
                quarantine_marker: quarantine_marker(&config.store_path()),
            },
            http_stop_rx,
        ));

        let admin_addr = match &config.admin {
            Some(a) => Some(start_admin(a, &inputs, &root, health.clone(), metrics.clone(), http_stop.subscribe()).await?),
            None => None,
        };
        let ingress = Ingress {
            storage: inputs.storage.clone(),
            sessions: inputs.sessions.clone(),
            metrics: metrics.clone(),
            session_policy: supervision.session,
            authority,
            tls: false,
            device_tls: device_tls.clone(),
            devices: inputs.devices.clone(),
            live_sessions: inputs.live_sessions.clone(),
        };
        let listeners = bind_listeners(&config)?;
        let (mqtt_addr, tls_addr) = (listeners.main_addr(), listeners.tls.as_ref().map(|(_, a)| *a));
        let mqtt_server = start_mqtt(&config, ingress, listeners, device_tls)?;
        health.set_listeners_bound(true);
        if !config.mqtt.plain || !ingress_is_anonymous(&config) {
            tracing::info!(plain = config.mqtt.plain, tls = tls_addr.is_some(), "Devices must authenticate.");
        } else {
            tracing::warn!(%mqtt_addr, "The plain listener accepts anonymous devices (auth.plain = \"anonymous\"): lab use only.");
        }
        tracing::info!(%mqtt_addr, ?tls_addr, %http_addr, gateway_id = %gateway_id, "Gateway started.");
        let (storage, sessions, rotation) = (inputs.storage.clone(), inputs.sessions.clone(), inputs.rotation.clone());
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
            storage,
            sessions,
            rotation,
            root_done,
            mqtt_server,
            http_stop,
            _tracer: tracer,
            _logger: logger,
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
        tracing::info!("Gateway stopped.");
    }

    async fn stop_listeners(&self) {
        self.health.set_listeners_bound(false);
        // Graceful: ntex waits for the in-flight handlers, whose commits complete first.
        let _ = tokio::time::timeout(Duration::from_secs(30), self.mqtt_server.stop(true)).await;
        let _ = self.http_stop.send(true);
    }
}

/// Device status lives in its own file: a store problem never hides behind it, and it never
/// contends with the message store's single writer.
///
/// A status file that cannot be opened (damaged, or from a newer version) is moved aside and a
/// fresh one started: device status must never keep messages from flowing.
/// Panics are counted in `gateway_panics_total` and logged as JSON; the task that panicked is
/// dropped and the gateway goes on. On the MQTT I/O threads, where a peer's bytes can trigger a
/// panic in a dependency again and again, the log line is throttled and the default report
/// (stderr) skipped; elsewhere the default report follows. Installed once per process.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    static THROTTLE: crate::throttle::Throttle = crate::throttle::Throttle::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            edge_gateway_actors::metrics::PANICS.inc();
            let thread = std::thread::current().name().unwrap_or("unnamed").to_string();
            let io_thread = thread.starts_with("mqtt:worker");
            if io_thread && !THROTTLE.allow() {
                return;
            }
            let location = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
            let message = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(%thread, %location, panic = %message, "Panic caught; the task that panicked is dropped.");
            if !io_thread {
                previous(info);
            }
        }));
    });
}

fn open_devices_db(path: &Path) -> anyhow::Result<SharedDb> {
    match redb::Database::create(path) {
        Ok(db) => Ok(SharedDb::new(db, path)),
        Err(e) => {
            let aside = path.with_extension(format!("redb.unreadable-{}", edge_gateway_actors::storage::now_ms()));
            tracing::error!(file = %path.display(), moved_to = %aside.display(), error = %e, "Device status file unreadable; moved aside, starting a fresh one.");
            std::fs::rename(path, &aside).with_context(|| format!("cannot move {} aside", path.display()))?;
            let db = redb::Database::create(path).with_context(|| format!("cannot create the device status file {}", path.display()))?;
            Ok(SharedDb::new(db, path))
        }
    }
}

/// Open the store. A damaged file is never deleted and never blocks the gateway: it is moved
/// aside (quarantined), a fresh store starts, an ERROR is logged, a metric counts it and
/// readiness reports degraded until an operator acknowledges (after `store salvage`). Other
/// failures (the file locked by another process, a newer format, disk errors) stop the start.
fn open_store(path: &Path, sinks: Vec<String>, metrics: &Metrics, health: &Health) -> anyhow::Result<Store> {
    let err = match Store::open(path, sinks.clone()) {
        Ok(store) => {
            note_quarantine(path, health);
            return Ok(store);
        }
        Err(e) => e,
    };
    if !err.is_corruption() {
        return Err(anyhow::Error::new(err).context(format!("cannot open the store at {}", path.display())));
    }
    let aside = path.with_extension(format!("redb.quarantine-{}", edge_gateway_actors::storage::now_ms()));
    // The quarantine is recorded before the file moves: a start that fails in between must not
    // leave a fresh store behind with nothing saying where the old one went.
    let marker = quarantine_marker(path);
    let mut listed = match std::fs::read_to_string(&marker) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(anyhow::anyhow!("cannot read {}: {e}", marker.display())),
    };
    listed.push_str(&format!("{}\n", aside.display()));
    write_synced(&marker, listed.as_bytes()).with_context(|| format!("cannot record the quarantine in {}", marker.display()))?;
    std::fs::rename(path, &aside)
        .with_context(|| format!("the store at {} is damaged ({err}) and cannot be moved aside", path.display()))?;
    tracing::error!(
        store = %path.display(),
        moved_to = %aside.display(),
        error = %err,
        "Store damaged: moved aside (nothing deleted) and a fresh store started. Salvage with `edge-gateway store salvage`."
    );
    metrics.store_quarantines.inc();
    let store = Store::open(path, sinks).with_context(|| format!("cannot create a fresh store at {}", path.display()))?;
    note_quarantine(path, health);
    Ok(store)
}

/// Replace `path` with `bytes` durably: a temporary file, fsync, rename, fsync of the directory.
fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// The file that lists quarantined stores not yet acknowledged (`gateway.redb.quarantined`).
pub fn quarantine_marker(store: &Path) -> std::path::PathBuf {
    store.with_extension("redb.quarantined")
}

/// Readiness stays degraded while the marker lists quarantined stores (or cannot be read).
fn note_quarantine(store: &Path, health: &Health) {
    let marker = quarantine_marker(store);
    match std::fs::read_to_string(&marker) {
        Ok(listed) => {
            let files: Vec<&str> = listed.lines().filter(|l| !l.trim().is_empty()).collect();
            if !files.is_empty() {
                health.set_quarantined(Some(files.join(", ")));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::error!(file = %marker.display(), error = %e, "Cannot read the quarantine record; reporting degraded until acknowledged.");
            health.set_quarantined(Some(format!("{} (unreadable: {e})", marker.display())));
        }
    }
}

async fn start_admin(
    config: &crate::admin::AdminConfig,
    inputs: &TreeInputs,
    root: &ActorRef<SupervisorMsg>,
    health: Health,
    metrics: Metrics,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<SocketAddr> {
    let listener =
        tokio::net::TcpListener::bind(config.listen).await.with_context(|| format!("--admin-listen: cannot bind {}", config.listen))?;
    let addr = listener.local_addr()?;
    let admin = crate::admin::Admin {
        token: config.token.as_str().into(),
        health,
        root: root.clone(),
        storage: inputs.storage.clone(),
        sessions: inputs.sessions.clone(),
        metrics,
    };
    tokio::spawn(crate::admin::serve(listener, admin, stop));
    tracing::warn!(%addr, "Chaos admin API enabled: actors can be killed and faults injected from this host.");
    Ok(addr)
}

fn ingress_is_anonymous(config: &Config) -> bool {
    config.auth.plain == crate::config::PlainAuth::Anonymous
}

/// The bound device listeners.
struct Listeners {
    /// Plain TCP (lab).
    plain: Option<(std::net::TcpListener, SocketAddr)>,
    /// TLS.
    tls: Option<(std::net::TcpListener, SocketAddr)>,
}

impl Listeners {
    fn main_addr(&self) -> SocketAddr {
        self.plain.as_ref().or(self.tls.as_ref()).map(|(_, a)| *a).unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)))
    }
}

fn bind_listeners(config: &Config) -> anyhow::Result<Listeners> {
    let bind = |addr: SocketAddr, key: &str| -> anyhow::Result<(std::net::TcpListener, SocketAddr)> {
        let l = std::net::TcpListener::bind(addr).with_context(|| format!("{key}: cannot bind {addr}"))?;
        let a = l.local_addr()?;
        Ok((l, a))
    };
    let plain = if config.mqtt.plain { Some(bind(config.mqtt.listen, "mqtt.listen")?) } else { None };
    let tls = match &config.tls {
        Some(t) => Some(bind(t.listen, "tls.listen")?),
        None => None,
    };
    Ok(Listeners { plain, tls })
}

/// The MQTT application (v3.1.1 and v5 on one port) for one listener.
macro_rules! mqtt_app {
    ($ingress:expr) => {{
        let (i3, i5) = ($ingress.clone(), $ingress.clone());
        MqttServer::new()
            .v3(v3::MqttServer::new(async |s: &v3::Session<mqtt::Conn>, p| mqtt::publish_v3(s, p).await)
                .middleware(crate::strict::RejectUnexpected)
                .protocol(async |s: &v3::Session<mqtt::Conn>, m| mqtt::protocol_v3(s, m).await)
                .control(async |s: &v3::Session<mqtt::Conn>, c| mqtt::control_v3(s, c).await)
                .build(move |c| mqtt::connect_v3(i3.clone(), c)))
            .v5(v5::MqttServer::new(async |s: &v5::Session<mqtt::Conn>, p| mqtt::publish_v5(s, p).await)
                .middleware(crate::strict::RejectUnexpected)
                .protocol(async |s: &v5::Session<mqtt::Conn>, m| mqtt::protocol_v5(s, m).await)
                .control(async |s: &v5::Session<mqtt::Conn>, c| mqtt::control_v5(s, c).await)
                .build(move |c| mqtt::connect_v5(i5.clone(), c)))
    }};
}

/// Run ntex on its own thread with the bound listeners; returns the server handle.
fn start_mqtt(
    config: &Config,
    ingress: Ingress,
    listeners: Listeners,
    device_tls: Option<Arc<DeviceTls>>,
) -> anyhow::Result<ntex_server::Server<ntex_server::net::Connection>> {
    let mqtt_cfg = ntex_mqtt::MqttServiceConfig::new()
        .set_max_qos(ntex_mqtt::QoS::AtLeastOnce)
        .set_max_size(config.mqtt.max_packet_size)
        .set_max_receive(config.mqtt.max_inflight)
        .set_max_receive_size(0)
        // A QoS 0 publish followed at once by DISCONNECT (`mosquitto_pub -q 0`) reaches ntex
        // after the sink is closed; without this it is dropped unseen. QoS 1 stays unhandled
        // then: its PUBACK cannot go out, the client resends it, and storing both would put
        // two keys on one message.
        .set_handle_qos_after_disconnect(Some(ntex_mqtt::QoS::AtMostOnce))
        .set_connect_timeout(ntex_util::time::Seconds(config.mqtt.connect_timeout.as_secs() as u16))
        .set_handshake_timeout(ntex_util::time::Seconds(config.mqtt.connect_timeout.as_secs() as u16));
    let handshake = config.tls.as_ref().map(|t| t.handshake_timeout.as_secs() as u16).unwrap_or(10);
    let tls_cfg = ntex_tls::TlsConfig::new().set_handshake_timeout(ntex_util::time::Seconds(handshake));
    // A half-read packet must keep arriving (512 bytes per period, at most 30 periods):
    // keep-alive does not run while ntex waits for the rest of a frame.
    let partial = config.mqtt.partial_packet_timeout.as_secs().clamp(1, 3600) as u16;
    let io_cfg = ntex_io::IoConfig::new().set_frame_read_rate(
        ntex_util::time::Seconds(partial),
        ntex_util::time::Seconds(partial.saturating_mul(30)),
        512,
    );
    let gate = Gate::new(config.mqtt.max_connections, config.mqtt.max_new_connections_per_source, ingress.metrics.clone());
    let workers = config.mqtt.workers;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new().name("mqtt-io".into()).spawn(move || {
        let result = ntex_rt::System::new("mqtt", ntex_net::DefaultRuntime).block_on(async move {
            let cfg = SharedCfg::new("mqtt").add(mqtt_cfg).add(tls_cfg).add(io_cfg).build();
            let server = build_server(workers, cfg, listeners, ingress, gate, device_tls).map(|b| b.run());
            match server {
                Ok(server) => {
                    let _ = tx.send(Ok(server.clone()));
                    let _ = server.await;
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            }
        });
        tracing::debug!(?result, "MQTT runtime stopped.");
    })?;
    let server = rx.recv().context("the MQTT thread died")??;
    Ok(server)
}

fn build_server(
    workers: usize,
    cfg: SharedCfg,
    listeners: Listeners,
    ingress: Ingress,
    gate: Gate,
    device_tls: Option<Arc<DeviceTls>>,
) -> std::io::Result<ntex_server::net::ServerBuilder> {
    use ntex_service::Service as _;
    let mut builder = ntex_server::net::build()
        .workers(workers)
        .disable_signals()
        // A graceful stop waits this long for open connections; their in-flight
        // publishes commit in milliseconds, idle devices just get disconnected.
        .shutdown_timeout(ntex_util::time::Millis(3_000));
    if let Some((listener, _)) = listeners.plain {
        let (ingress, gate) = (ingress.clone(), gate.clone());
        builder = builder.listen("mqtt", listener, cfg.clone(), async move |_| {
            gate.on("plain").map_err(|e| ntex_mqtt::MqttError::Service(mqtt::IngressError::io(e))).and_then(mqtt_app!(ingress))
        })?;
    }
    if let (Some((listener, _)), Some(tls)) = (listeners.tls, device_tls) {
        let ingress = Ingress { tls: true, ..ingress };
        builder = builder.listen("mqtts", listener, cfg, async move |_| {
            let handshake = RotatingTls { tls: tls.clone(), gate: gate.clone() };
            gate.on("tls")
                .and_then(handshake)
                .map_err(|e| ntex_mqtt::MqttError::Service(mqtt::IngressError::io(e)))
                .and_then(mqtt_app!(ingress))
        })?;
    }
    Ok(builder)
}
