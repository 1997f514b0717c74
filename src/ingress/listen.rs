//! The device listeners: bound by the gateway's start, then served by ntex-mqtt on the MQTT I/O
//! threads (v3.1.1 and v5 on each port, plain and TLS; accepting in `accept.rs`).

use edge_gateway_actors::metrics::Listener;
use std::net::SocketAddr;
use std::sync::Arc;

use ntex_mqtt::{MqttServer, v3, v5};
use ntex_service::cfg::SharedCfg;

use super::accept::{self, AcceptError, Build, Conns, IoThreads, Serve};
use super::gate::Gate;
use super::{Conn, Ingress, IngressError, IngressParts};
use crate::config::Config;
use crate::trust::tls::acceptor::RotatingTls;
use crate::trust::tls::server::DeviceTls;

/// Why the device listeners could not start.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// A listener's address could not be bound (named by its config key).
    #[error("{key}: cannot bind {addr}: {source}")]
    Bind {
        /// `mqtt.listen` or `tls.listen`.
        key: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// An MQTT I/O thread could not start.
    #[error(transparent)]
    Start(#[from] AcceptError),
}

/// The bound device listeners.
pub struct Listeners {
    /// Plain TCP (lab).
    pub plain: Option<(std::net::TcpListener, SocketAddr)>,
    /// TLS.
    pub tls: Option<(std::net::TcpListener, SocketAddr)>,
}

impl Listeners {
    pub fn main_addr(&self) -> SocketAddr {
        self.plain.as_ref().or(self.tls.as_ref()).map(|(_, a)| *a).unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)))
    }
}

pub fn bind_listeners(config: &Config) -> Result<Listeners, ListenError> {
    let bind = |addr: SocketAddr, key: &'static str| -> Result<(std::net::TcpListener, SocketAddr), ListenError> {
        let bound = std::net::TcpListener::bind(addr).and_then(|l| l.local_addr().map(|a| (l, a)));
        bound.map_err(|source| ListenError::Bind { key, addr, source })
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
            .v3(v3::MqttServer::new(async |s: &v3::Session<Conn>, p| super::v3::publish(s, p).await)
                .middleware(super::strict::RejectUnexpected)
                .protocol(async |s: &v3::Session<Conn>, m| super::v3::protocol(s, m).await)
                .control(async |s: &v3::Session<Conn>, c| super::v3::control(s, c).await)
                .build(move |c| super::v3::connect(i3.clone(), c)))
            .v5(v5::MqttServer::new(async |s: &v5::Session<Conn>, p| super::v5::publish(s, p).await)
                .middleware(super::strict::RejectUnexpected)
                .protocol(async |s: &v5::Session<Conn>, m| super::v5::protocol(s, m).await)
                .control(async |s: &v5::Session<Conn>, c| super::v5::control(s, c).await)
                .build(move |c| super::v5::connect(i5.clone(), c)))
    }};
}

/// A socket the gate refused, or a failed TLS handshake, as the MQTT chain's error.
fn refused(e: std::io::Error) -> ntex_mqtt::MqttError<IngressError> {
    ntex_mqtt::MqttError::Service(IngressError::Io(e))
}

/// Start the MQTT I/O threads (`mqtt.workers`) on the bound listeners; returns once every
/// thread accepts.
pub fn start_mqtt(
    config: &Config,
    ingress: Ingress,
    listeners: Listeners,
    device_tls: Option<Arc<DeviceTls>>,
    health: edge_gateway_actors::health::Health,
) -> Result<IoThreads, ListenError> {
    let config = Arc::new(config.clone());
    let gate = Gate::new(config.mqtt.max_connections, config.mqtt.max_new_connections_per_source, ingress.metrics.clone());
    let plain = listeners.plain.map(|(l, _)| Arc::new(l));
    let tls = match (listeners.tls, device_tls) {
        (Some((l, _)), Some(material)) => {
            let ingress = Ingress::new(IngressParts { tls: true, ..(*ingress).clone() });
            Some((Arc::new(l), material, ingress))
        }
        _ => None,
    };
    let threads = config.mqtt.workers;
    let builds = (0..threads).map(|_| {
        let (config, gate, health, ingress, plain, tls) =
            (config.clone(), gate.clone(), health.clone(), ingress.clone(), plain.clone(), tls.clone());
        Box::new(move |conns: Conns| {
            super::heartbeat::start_on_this_thread(&health);
            let cfg = shared_cfg(&config);
            let mut serving: Vec<Serve> = Vec::new();
            if let Some(listener) = plain {
                let socket = accept::watch(&listener)?;
                let chain = gate.around(Listener::Plain, refused, mqtt_app!(ingress));
                serving.push(Box::pin(accept::serve(socket, cfg.clone(), chain, conns.clone(), threads)));
            }
            if let Some((listener, tls, ingress)) = tls {
                let socket = accept::watch(&listener)?;
                let handshake = RotatingTls { metrics: ingress.metrics.clone(), tls };
                let chain = ntex_service::service(handshake).map_err(refused).and_then(mqtt_app!(ingress));
                serving.push(Box::pin(accept::serve(socket, cfg, gate.around(Listener::Tls, refused, chain), conns, threads)));
            }
            Ok(serving)
        }) as Build
    });
    IoThreads::start(builds.collect(), &health).map_err(ListenError::Start)
}

/// The configuration of the ntex layers under a connection: MQTT limits and timeouts, the TLS
/// handshake's deadline, the read rate of a half-received packet.
fn shared_cfg(config: &Config) -> SharedCfg {
    let mqtt_cfg = ntex_mqtt::MqttServiceConfig::new()
        .set_max_qos(ntex_mqtt::QoS::ExactlyOnce)
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
    SharedCfg::new("mqtt").add(mqtt_cfg).add(tls_cfg).add(io_cfg).build()
}
