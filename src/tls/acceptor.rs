//! The ntex services in front of the MQTT server on each listener.
//!
//! ```text
//! plain:  socket ─ Gate ─────────────── MQTT (v3.1.1 / v5)
//! tls:    socket ─ Gate ─ RotatingTls ─ MQTT
//! ```
//!
//! [`Gate`] refuses a socket before any TLS or MQTT work when the gateway already holds
//! `max_connections` or the source address opened too many connections in the last second.
//! [`RotatingTls`] runs the handshake with the `ServerConfig` current at that moment, so a
//! reload applies to the next handshake and never to an established session. Every refusal and
//! every failed handshake is counted by reason; WARN logs are limited to one per second.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use edge_gateway_actors::metrics::Metrics;
use ntex_io::types::PeerAddr;
use ntex_io::{Filter, Io, Layer};
use ntex_service::cfg::{Cfg, Configuration};
use ntex_service::{Ctx, Service};
use ntex_tls::TlsConfig;
use ntex_tls::rustls::TlsServerFilter;

use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use super::server::{ClientAuth, DeviceTls};

/// Connection limits shared by both listeners.
#[derive(Clone)]
pub struct Gate(Arc<GateInner>);

struct GateInner {
    /// Most open connections (0: no limit).
    max_connections: usize,
    /// New connections per second per source address (0: no limit).
    per_source: u32,
    /// Open sockets that passed the gate.
    open: AtomicUsize,
    /// Token buckets by source address.
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
    /// Counters.
    metrics: Metrics,
    /// Second of the last WARN (log throttle).
    last_warn: AtomicU64,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Gate {
    /// A gate with these limits.
    pub fn new(max_connections: usize, per_source: u32, metrics: Metrics) -> Gate {
        let inner = GateInner {
            max_connections,
            per_source,
            open: AtomicUsize::new(0),
            buckets: Mutex::new(HashMap::new()),
            metrics,
            last_warn: AtomicU64::new(0),
        };
        Gate(Arc::new(inner))
    }

    /// The same limits, with `listener` as the metric label.
    pub fn on(&self, listener: &'static str) -> ListenerGate {
        ListenerGate { gate: self.clone(), listener }
    }

    fn admit(&self, peer: Option<IpAddr>) -> Result<(), &'static str> {
        let g = &self.0;
        if g.max_connections > 0 && g.open.load(Ordering::Relaxed) >= g.max_connections {
            return Err("max_connections");
        }
        // (`call` reserves the slot with a compare-and-swap; this early check only spares the
        // token bucket.)
        if let (Some(ip), true) = (peer, g.per_source > 0) {
            let mut buckets = g.buckets.lock().unwrap_or_else(|e| e.into_inner());
            if buckets.len() > 100_000 {
                buckets.retain(|_, b| b.at.elapsed().as_secs() < 2);
            }
            let rate = f64::from(g.per_source);
            let b = buckets.entry(ip).or_insert(Bucket { tokens: rate, at: Instant::now() });
            b.tokens = (b.tokens + b.at.elapsed().as_secs_f64() * rate).min(rate);
            b.at = Instant::now();
            if b.tokens < 1.0 {
                return Err("rate_limited");
            }
            b.tokens -= 1.0;
        }
        Ok(())
    }

    /// WARN at most once per second (refusal storms must not flood the journal).
    pub(crate) fn warn_allowed(&self) -> bool {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        self.0.last_warn.swap(now, Ordering::Relaxed) != now
    }
}

/// The gate as an ntex service on one listener.
pub struct ListenerGate {
    gate: Gate,
    listener: &'static str,
}

impl<F: Filter, St> Service<St, Io<F>> for ListenerGate {
    type Res = Io<F>;
    type Error = io::Error;

    async fn call(&self, io: Io<F>, _: Ctx<'_, Self, St>) -> Result<Io<F>, io::Error> {
        let peer = io.query::<PeerAddr>().as_ref().map(|p| p.0.ip());
        if let Err(reason) = self.gate.admit(peer) {
            self.gate
                .0
                .metrics
                .connections_refused
                .get_or_create(&[("listener", self.listener.to_string()), ("reason", reason.to_string())])
                .inc();
            if self.gate.warn_allowed() {
                tracing::warn!(
                    listener = self.listener,
                    ?peer,
                    reason,
                    "Connection refused (further refusals this second are only counted)."
                );
            }
            io.close();
            return Err(io::Error::other(reason));
        }
        let inner = self.gate.0.clone();
        let max = inner.max_connections;
        let reserved = inner.open.fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| (max == 0 || n < max).then_some(n + 1));
        if reserved.is_err() {
            inner
                .metrics
                .connections_refused
                .get_or_create(&[("listener", self.listener.to_string()), ("reason", "max_connections".to_string())])
                .inc();
            io.close();
            return Err(io::Error::other("max_connections"));
        }
        let closed = io.on_disconnect();
        ntex_rt::spawn(async move {
            closed.await;
            inner.open.fetch_sub(1, Ordering::Relaxed);
        });
        Ok(io)
    }
}

/// TLS handshakes with the current device-facing set.
pub struct RotatingTls {
    /// The material, replaced by the rotation actor.
    pub tls: Arc<DeviceTls>,
    /// Counters and the log throttle.
    pub gate: Gate,
}

impl<F: Filter, St> Service<St, Io<F>> for RotatingTls {
    type Res = Io<Layer<TlsServerFilter, F>>;
    type Error = io::Error;

    async fn call(&self, io: Io<F>, _: Ctx<'_, Self, St>) -> Result<Self::Res, io::Error> {
        let peer = io.query::<PeerAddr>().as_ref().map(|p| p.0);
        let cfg: Cfg<TlsConfig> = io.cfg().ctx().get();
        let metrics = &self.gate.0.metrics;
        let result = match TlsServerFilter::create(io, self.tls.config(), cfg.handshake_timeout()).await {
            Ok(io)
                if self.tls.client_auth() == ClientAuth::Required
                    && io.query::<ntex_tls::rustls::PeerCert<'static>>().as_ref().is_none() =>
            {
                io.close();
                Err(("no_client_cert", io::Error::other("no client certificate")))
            }
            Ok(io) => Ok(io),
            // A timeout never reached the verifier: it takes no reason from the queue.
            Err(e) if e.kind() == io::ErrorKind::TimedOut => Err(("handshake_timeout", e)),
            Err(e) => Err((CERT_FAILURES.with(|q| q.borrow_mut().pop_front()).unwrap_or_else(|| classify_handshake_error(&e)), e)),
        };
        match result {
            Ok(io) => {
                metrics.tls_handshakes.inc();
                Ok(io)
            }
            Err((reason, e)) => {
                metrics.tls_handshake_failures.get_or_create(&[("reason", reason.to_string())]).inc();
                if self.gate.warn_allowed() {
                    tracing::warn!(?peer, reason, error = %e, "TLS handshake failed (further failures this second are only counted).");
                }
                Err(e)
            }
        }
    }
}

/// A bounded label for a failed handshake.
pub fn classify_handshake_error(e: &io::Error) -> &'static str {
    if e.kind() == io::ErrorKind::TimedOut {
        return "handshake_timeout";
    }
    let text = format!("{e} {e:?}");
    let has = |s: &str| text.contains(s);
    if has("Expired") {
        "cert_expired"
    } else if has("NotValidYet") {
        "cert_not_yet_valid"
    } else if has("Revoked") {
        "cert_revoked"
    } else if has("UnknownIssuer") || has("BadSignature") {
        "cert_unknown_issuer"
    } else if has("NoCertificatesPresented") || has("no certificates") {
        "no_client_cert"
    } else if has("InvalidCertificate") || has("invalid peer certificate") {
        "cert_invalid"
    } else if has("PeerIncompatible") || has("ProtocolVersion") || has("NoCipherSuitesInCommon") || has("incompatible") {
        "protocol_incompatible"
    } else {
        // Protocol version or cipher suite mismatch, a peer that hung up mid-handshake: ntex
        // does not hand rustls' error to the acceptor, so these share one label.
        "handshake_failed"
    }
}

thread_local! {
    /// Client-certificate refusals on this ntex worker thread, oldest first: the verifier runs
    /// inside the handshake on the same thread, and each refusal fails exactly one handshake,
    /// which takes one reason from here.
    static CERT_FAILURES: std::cell::RefCell<std::collections::VecDeque<&'static str>> = Default::default();
}

/// Delegates to webpki and remembers why a client certificate was refused.
#[derive(Debug)]
pub struct CountingVerifier(pub Arc<dyn ClientCertVerifier>);

impl ClientCertVerifier for CountingVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false // enforced by RotatingTls after the handshake, so the refusal can be counted
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end: &CertificateDer<'_>,
        chain: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.0.verify_client_cert(end, chain, now).inspect_err(|e| {
            let reason = classify_handshake_error(&io::Error::other(format!("{e:?}")));
            CERT_FAILURES.with(|q| {
                let mut q = q.borrow_mut();
                // Bounded: a reason whose handshake future was dropped (worker shutdown) is
                // never taken; the oldest goes first.
                if q.len() >= 1024 {
                    q.pop_front();
                }
                q.push_back(reason);
            });
        })
    }

    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(m, c, d)
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(m, c, d)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
