//! CONNECT: who the device is, and the session that stands for its connection.
//!
//! The session is an entry of the `sessions` actor (taking over an older connection with the
//! same client id), and a closer is armed so that the end of the entry closes the connection.

use edge_gateway_actors::metrics::{AuthFailure, AuthLabels, IngressLabels, IngressReason};
use std::cell::Cell;
use std::rc::Rc;

use edge_gateway_actors::devices::DevicesMsg;
use edge_gateway_actors::session::SessionsMsg;

use super::conn::{Conn, ConnInner, Tally, peer_cert};
use super::deliver::Outbound;
use super::{Ingress, IngressError, Protocol, clip};
use super::{closer, outbox};
use crate::routing::Message;
use crate::routing::sessions::SessionRequest;
use crate::throttle::Throttle;
use crate::trust::acl::Who;
use crate::trust::auth::{Credentials, Refusal};
use crate::trust::tls::server::PeerCertInfo;

/// How a CONNECT ended; the v3 and v5 adapters turn it into their CONNACK.
pub(super) enum Admission {
    /// Authenticated and its session started: the connection, the client id it has (the
    /// one it sent, the identity when it sent none, or a generated one on the lab listener),
    /// and whether it resumed a stored session (CONNACK session present).
    Accepted { conn: Conn, client_id: String, present: bool },
    /// Refused (counted and logged already).
    Refused(Refusal),
    /// Authenticated, but no session could be started (the sessions actor is down).
    Unavailable,
}

/// A connection's will (MQTT 3.1.1 and 5).
pub(crate) struct Will {
    /// What is published.
    pub message: Message,
    /// MQTT 5 will delay interval, in seconds (0: at once).
    pub delay_secs: u32,
    /// MQTT 5 message expiry interval of the will, counted from when it is published.
    pub expiry_secs: Option<u32>,
}

impl Will {
    /// The message to publish now, its expiry running from now.
    pub(super) fn published(self) -> Message {
        let expires_at = self.expiry_secs.map(|s| std::time::Instant::now() + std::time::Duration::from_secs(u64::from(s)));
        Message { expires_at, ..self.message }
    }
}

/// What a CONNECT asks for, as both protocol versions carry it.
pub(super) struct Hello<'a> {
    /// The client id it sent (maybe empty).
    pub client_id: &'a str,
    /// Its username, if any.
    pub username: Option<&'a str>,
    /// Its password, if any.
    pub password: Option<&'a [u8]>,
    /// Its will: published if the connection ends without a DISCONNECT.
    pub will: Option<Will>,
    /// Clean start and session expiry.
    pub session: SessionRequest,
}

impl Ingress {
    /// The one CONNECT path of both protocol versions: a client id for an anonymous lab device
    /// that sent none, authentication, the will's topic against the ACL, then the session
    /// entry. `close` closes the connection.
    pub(super) async fn admit(
        &self,
        io: &ntex_io::IoRef,
        hello: Hello<'_>,
        protocol: Protocol,
        outbound: Outbound,
        close: impl FnOnce() + 'static,
    ) -> Admission {
        let client_id = if hello.client_id.is_empty() && !self.tls && self.authority.anonymous_plain() {
            generated_client_id()
        } else {
            hello.client_id.to_string()
        };
        let (client_id, identity) = match self.authenticate(io, &client_id, hello.username, hello.password).await {
            Ok(ids) => ids,
            Err(r) => return Admission::Refused(r),
        };
        if let Some(will) = &hello.will {
            let who = Who { identity: &identity, client_id: &client_id };
            if !self.authority.may_publish(&who, &will.message.topic).is_allowed() {
                self.metrics.auth_failures.get_or_create(&AuthLabels { reason: AuthFailure::WillNotAuthorized }).inc();
                tracing::warn!(%identity, %client_id, topic = ?clip(&will.message.topic), "Connection refused: its will topic is outside the ACL.");
                return Admission::Refused(Refusal::WillNotAuthorized);
            }
        }
        let opened = match self.open_session(&client_id, identity, peer_cert(io), protocol, (outbound, hello.will), close) {
            Ok(conn) => self.resume(&conn, hello.session).await.map(|present| (conn, present)),
            Err(e) => Err(e),
        };
        match opened {
            Ok((conn, present)) => {
                tracing::debug!(%client_id, protocol = protocol.as_str(), present, "Connection accepted.");
                Admission::Accepted { conn, client_id, present }
            }
            Err(e) => {
                tracing::error!(%client_id, error = %e, "Cannot start a session; refusing the connection.");
                Admission::Unavailable
            }
        }
    }

    /// Resume, create or discard the connection's persistent session, committed before the
    /// CONNACK; whether a stored session was resumed. The connection's writer is made ready
    /// (started by [`ConnInner::start_writer`] with the CONNACK).
    async fn resume(&self, conn: &Conn, req: SessionRequest) -> Result<bool, IngressError> {
        let c = &conn.0;
        let mqtt5 = matches!(c.outbound, Outbound::V5(..));
        let mut made = None;
        let queue = || {
            let (tx, rx) = self.router.queue();
            made = Some((tx.clone(), rx));
            tx
        };
        let Some(opened) = self.router.open(&c.who(), (c.conn_id, mqtt5), req, queue) else {
            self.metrics.reject(IngressReason::SessionsFull);
            return Err(IngressError::NoSession("persistent sessions full (broker.max_sessions)".into()));
        };
        for change in opened.changes {
            c.commit_session(change).await?;
        }
        // A persistent session's queue is in its entry already; a clean session's is made by
        // its first SUBSCRIBE ([`ConnInner::queue`]).
        if let Some((tx, rx)) = made {
            *c.queue.borrow_mut() = Some(tx);
            *c.pending_writer.borrow_mut() = Some((rx, opened.replay));
        }
        Ok(opened.present)
    }

    /// Enter the session and arm the closer; `close` closes the connection.
    fn open_session(
        &self,
        client_id: &str,
        identity: String,
        cert: Option<PeerCertInfo>,
        protocol: Protocol,
        (outbound, will): (Outbound, Option<Will>),
        close: impl FnOnce() + 'static,
    ) -> Result<Conn, IngressError> {
        let sessions = self.sessions.get().ok_or_else(|| IngressError::NoSession("sessions actor is down".into()))?;
        let conn_id = self.router.connection_id();
        let superseded = Rc::new(Cell::new(false));
        // The close stays armed as long as the connection: it holds the shared handles by
        // pointer (`Ingress`), not a copy of the metric families.
        // Runs only while the connection is open: its end disarms it.
        let (superseded2, ingress, cid) = (superseded.clone(), self.clone(), client_id.to_string());
        let closer = closer::arm(conn_id, move || {
            superseded2.set(true);
            tracing::info!(client_id = %cid, "Session ended; closing its connection.");
            ingress.metrics.connections_closed.get_or_create(&IngressLabels { reason: IngressReason::SessionEnded }).inc();
            close();
        });
        // Not awaited, and sent with this thread's other letters (at most `outbox::HOLD` later):
        // if the actor ends before it takes the entry, the closer is dropped with the message
        // and the connection closes (the device reconnects).
        let open = SessionsMsg::Open { client_id: client_id.to_string(), conn: conn_id, closer: Box::new(closer) };
        outbox::to_sessions(&sessions, open);
        self.metrics.connections.inc();
        self.metrics.connections_opened.inc();
        let accepted_by_qos = self.accepted_by_qos(protocol);
        self.live_sessions.opened(&identity);
        let connected = DevicesMsg::Connected { identity: identity.clone(), client_id: client_id.to_string(), protocol: protocol.as_str() };
        outbox::to_devices(&self.devices, connected);
        // The first message of a connection is reported at once.
        let since = std::time::Instant::now().checked_sub(std::time::Duration::from_secs(1)).unwrap_or_else(std::time::Instant::now);
        let tally = Rc::new(Tally {
            accepted_by_qos,
            bytes: self.metrics.ingress_bytes.clone(),
            unreported: Cell::new((0, since)),
            qos0_pending: Cell::new(0),
            closed: Cell::new(false),
            identity,
            devices: self.devices.clone(),
        });
        let inner = ConnInner {
            client_id: client_id.to_string(),
            cert,
            sessions,
            superseded,
            ingress: self.clone(),
            tally,
            conn_id,
            outbound,
            queue: std::cell::RefCell::new(None),
            pending_writer: std::cell::RefCell::new(None),
            will: std::cell::RefCell::new(will.map(Box::new)),
        };
        Ok(Conn(Rc::new(inner)))
    }

    /// The identity of a connecting device and the client id it will have (the identity when
    /// the device sent none).
    async fn authenticate(
        &self,
        io: &ntex_io::IoRef,
        client_id: &str,
        username: Option<&str>,
        password: Option<&[u8]>,
    ) -> Result<(String, String), Refusal> {
        let peer = io.query::<ntex_tls::rustls::PeerCert<'static>>();
        let creds = Credentials { cert: peer.as_ref().map(|c| c.0.as_ref()), tls: self.tls, client_id, username, password };
        match self.authority.authenticate(&creds).await {
            Ok(identity) => {
                let cid = if client_id.is_empty() { identity.clone() } else { client_id.to_string() };
                Ok((cid, identity))
            }
            Err(r) => {
                if CONNECT_REFUSALS.allow() {
                    let (client_id, username) = (clip(client_id), username.map(clip));
                    tracing::warn!(
                        ?client_id,
                        ?username,
                        tls = self.tls,
                        reason = %AuthFailure::from(r),
                        "Connection refused at CONNECT (more this second are only counted)."
                    );
                }
                Err(r)
            }
        }
    }
}

/// Refused CONNECTs a device can trigger at will: one WARN line per second, the rest counted.
static CONNECT_REFUSALS: Throttle = Throttle::new();

/// A client id for an anonymous lab device that sent none.
fn generated_client_id() -> String {
    use std::sync::LazyLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    // Read once: `process::id` is a system call.
    static PID: LazyLock<u32> = LazyLock::new(std::process::id);
    format!("auto-{}-{}", *PID, NEXT.fetch_add(1, Ordering::Relaxed))
}
