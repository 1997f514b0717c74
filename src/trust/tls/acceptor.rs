//! The TLS handshake in front of the MQTT server on the TLS listener (after the connection
//! [gate](crate::ingress::gate)).
//!
//! [`RotatingTls`] runs the handshake with the `ServerConfig` current at that moment, so a
//! reload applies to the next handshake and never to an established session. Every failed
//! handshake is counted by reason; WARN lines are limited to one per second.

use edge_gateway_actors::metrics::{TlsFailure, TlsLabels};
use std::io;
use std::sync::Arc;

use edge_gateway_actors::metrics::Metrics;
use ntex_io::types::PeerAddr;
use ntex_io::{Filter, Io, Layer};
use ntex_service::cfg::{Cfg, Configuration};
use ntex_service::{Ctx, Service};
use ntex_tls::TlsConfig;
use ntex_tls::rustls::TlsServerFilter;

use super::server::DeviceTls;
use super::verifier::{classify_handshake_error, take_cert_failure};
use crate::config::ClientAuth;
use crate::throttle::Throttle;

/// TLS handshakes with the current device-facing set.
pub struct RotatingTls {
    /// The material, replaced by the rotation actor.
    pub tls: Arc<DeviceTls>,
    /// Counters.
    pub metrics: Metrics,
}

impl<F: Filter, St> Service<St, Io<F>> for RotatingTls {
    type Res = Io<Layer<TlsServerFilter, F>>;
    type Error = io::Error;

    async fn call(&self, io: Io<F>, _: Ctx<'_, Self, St>) -> Result<Self::Res, io::Error> {
        let peer = io.query::<PeerAddr>().as_ref().map(|p| p.0);
        let cfg: Cfg<TlsConfig> = io.cfg().ctx().get();
        let metrics = &self.metrics;
        let result = match TlsServerFilter::create(io, self.tls.config(), cfg.handshake_timeout()).await {
            Ok(io)
                if self.tls.client_auth() == ClientAuth::Required
                    && io.query::<ntex_tls::rustls::PeerCert<'static>>().as_ref().is_none() =>
            {
                io.close();
                Err((TlsFailure::NoClientCert, io::Error::other("no client certificate")))
            }
            Ok(io) => Ok(io),
            // A timeout never reached the verifier: it takes no reason from the queue.
            Err(e) if e.kind() == io::ErrorKind::TimedOut => Err((TlsFailure::HandshakeTimeout, e)),
            Err(e) => Err((take_cert_failure().unwrap_or_else(|| classify_handshake_error(&e)), e)),
        };
        match result {
            Ok(io) => {
                metrics.tls_handshakes.inc();
                Ok(io)
            }
            Err((reason, e)) => {
                metrics.tls_handshake_failures.get_or_create(&TlsLabels { reason }).inc();
                if HANDSHAKE_FAILURES.allow() {
                    tracing::warn!(?peer, %reason, error = %e, "TLS handshake failed (further failures this second are only counted).");
                }
                Err(e)
            }
        }
    }
}

/// WARN lines for failed handshakes: one per second, the rest only counted.
static HANDSHAKE_FAILURES: Throttle = Throttle::new();
