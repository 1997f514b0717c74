//! Step 6 of the start: the HTTP API, the forwarder watchdog and (when enabled) the chaos admin
//! API. All three stop when the listeners stop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use edge_gateway_actors::supervisor::SupervisorMsg;
use edge_gateway_actors::supervisor::tree::TreeInputs;
use prometheus_client::registry::Registry;
use ractor::ActorRef;
use tokio::sync::watch;

use super::{GatewayError, quarantine_marker};
use crate::api::ApiError;
use crate::api::admin::Admin;
use crate::api::bearer::{self, Token};
use crate::api::https::HttpTls;
use crate::api::local::LocalApi;
use crate::api::serve;
use crate::config::{AdminConfig, Config};

/// Bind `http.listen`, serve the local API and start the watchdog; returns the bound address.
pub(super) async fn start_api(
    config: &Config,
    inputs: &TreeInputs,
    tls: Option<Arc<HttpTls>>,
    schemas: Arc<crate::schema::Schemas>,
    router: Arc<crate::routing::Router>,
    archive: Option<crate::archive::Classes>,
    stop: &watch::Sender<bool>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), GatewayError> {
    let token = bearer::load_or_create(config.http.token_file.as_deref(), &config.data_dir)?;
    let bind_err = |source| GatewayError::Bind { key: "http.listen", addr: config.http.listen, source };
    let listener = tokio::net::TcpListener::bind(config.http.listen).await.map_err(bind_err)?;
    let addr = listener.local_addr().map_err(bind_err)?;
    let mut registry = Registry::default();
    inputs.metrics.register(&mut registry, env!("CARGO_PKG_VERSION"));
    // Stops with the listeners: a forwarder stopped by a shutdown is not a stall.
    let watchdog = edge_gateway_actors::liveness::watchdog(
        inputs.liveness.clone(),
        inputs.health.clone(),
        inputs.metrics.clone(),
        Duration::from_secs(1),
        stop.subscribe(),
    );
    tokio::spawn(watchdog);
    let api = LocalApi {
        registry: Arc::new(registry),
        health: inputs.health.clone(),
        store: inputs.store.clone(),
        devices: inputs.devices.clone(),
        liveness: inputs.liveness.clone(),
        certificates: inputs.reloadables.clone(),
        started: std::time::Instant::now(),
        quarantine_marker: quarantine_marker(&config.store_path()),
        storage_policy: config.storage.clone(),
        schemas,
        router,
        storage: inputs.storage.clone(),
        api_identity: config.broker.api_identity.clone(),
        max_packet_size: config.mqtt.max_packet_size as usize,
        data_dir: config.data_dir.clone(),
        metrics: inputs.metrics.clone(),
        archive: config.archive.clone().zip(archive),
    };
    let app = crate::api::local::router(api, token, config.http.auth);
    let task = tokio::spawn(serve::serve(listener, app, tls, stop.subscribe()));
    Ok((addr, task))
}

/// Bind `--admin-listen` and serve the chaos admin API; returns the bound address.
pub(super) async fn start_admin(
    config: &AdminConfig,
    inputs: &TreeInputs,
    root: &ActorRef<SupervisorMsg>,
    stop: watch::Receiver<bool>,
) -> Result<SocketAddr, GatewayError> {
    let bind_err = |source| GatewayError::Bind { key: "--admin-listen", addr: config.listen, source };
    let listener = tokio::net::TcpListener::bind(config.listen).await.map_err(bind_err)?;
    let addr = listener.local_addr().map_err(bind_err)?;
    let admin = Admin {
        token: Token::new(&config.token).ok_or(ApiError::Token { path: "--admin-token-file".into(), reason: "too short".into() })?,
        health: inputs.health.clone(),
        root: root.clone(),
        storage: inputs.storage.clone(),
        sessions: inputs.sessions.clone(),
        metrics: inputs.metrics.clone(),
    };
    tokio::spawn(serve::serve(listener, crate::api::admin::router(admin), None, stop));
    tracing::warn!(%addr, "Chaos admin API enabled: actors can be killed and faults injected from this host.");
    Ok(addr)
}
