//! MQTT ingress: from the socket to the storage actor's commit, and the answer to the device.
//!
//! ```text
//! socket ─ gate.rs ─ (trust::tls::acceptor) ─ ntex-mqtt ─ strict.rs ─ v3.rs / v5.rs
//!                                                                  │
//!   session.rs: CONNECT → identity (trust::auth) → session entry   │
//!   publish.rs: topic, certificate, ACL, trace, schema, append ◀───┘
//!   batcher.rs: this thread's appends → StorageMsg::AppendBatch → commit → PUBACKs
//! ```
//!
//! - [`listen`]: binds the listeners and runs ntex-mqtt on its own thread.
//! - `stream.rs`: an accepted socket under ntex-io, read and written by one task.
//! - [`gate`]: connection limits before any TLS or MQTT work.
//! - [`fd_table`]: the descriptor table, grown at start so that no `accept4` waits for it.
//! - [`strict`]: packets a client must never send close the connection.
//! - [`session`]: CONNECT: authenticate, enter the session in the sessions actor, arm the closer.
//! - `closer.rs`: a session's end closes its connection (one task per I/O thread).
//! - [`conn`]: per-connection state; its end ends the session.
//! - `outbox.rs`: what an I/O thread tells the sessions and device health actors, sent together
//!   (at most 2 ms late) instead of one wake-up of their runtime per CONNECT.
//! - `gather.rs`: the per-thread queue that `batcher` and `outbox.rs` gather into.
//! - [`publish`]: the one publish path both protocol versions share.
//! - [`batcher`]: one I/O thread's appends, handed to the storage actor once per event-loop turn.
//! - [`deliver`]: writing the messages routed to a subscriber (`crate::routing`) to its connection
//!   (with `aliases.rs`: MQTT 5 topic aliases towards the client; `replay.rs`: a persistent
//!   session's queued deliveries; `exchanges.rs`: their QoS 2 exchanges, several at once;
//!   `window.rs`: the writer's deliveries in flight, their acknowledgements and its drop counts).
//! - [`v3`], [`v5`]: thin adapters from ntex-mqtt's packets to that path and back.
//! - [`protocol`]: subscriptions, pings and why a connection stopped.
//!
//! Per PUBLISH: validate, append to the store, and answer only after the commit: v3 gets its
//! PUBACK (or the connection is closed), v5 gets a PUBACK reason code.

pub mod accept;
pub mod aliases;
pub mod batcher;
mod closer;
pub mod conn;
pub mod deliver;
mod exchanges;
pub mod fd_table;
pub mod gate;
mod gather;
mod heartbeat;
pub mod listen;
mod outbox;
pub mod protocol;
pub mod publish;
pub mod replay;
pub mod session;
mod stream;
pub mod strict;
pub mod v3;
pub mod v5;
mod window;

use edge_gateway_actors::metrics::AuthFailure;
use std::time::Duration;

use edge_gateway_actors::devices::{DevicesMsg, LiveSessions};
use edge_gateway_actors::metrics::{Metrics, ProtocolQos};
use edge_gateway_actors::session::SessionsMsg;
use edge_gateway_actors::slot::ActorSlot;
use edge_gateway_actors::storage::{SessionChange, SessionOp, StorageMsg};
use prometheus_client::metrics::counter::Counter;

use crate::trust::auth::Authority;
use crate::trust::tls::server::DeviceTls;

pub use conn::Conn;

/// How long a handler waits for an actor before giving up (no PUBACK then).
const ACTOR_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything the MQTT handlers need, shared: cloned into every ntex worker and held by every
/// connection (a pointer each, not a copy of the ~1.5 KB of handles).
#[derive(Clone)]
pub struct Ingress(std::sync::Arc<Shared>);

struct Shared {
    parts: IngressParts,
    /// `gateway_ingress_messages_total` by protocol (v3, v5) and QoS, resolved once instead of
    /// three label look-ups per CONNECT.
    accepted: [[Counter; 3]; 2],
}

impl Ingress {
    /// Share `parts`.
    pub fn new(parts: IngressParts) -> Self {
        let accepted = [Protocol::V3, Protocol::V5]
            .map(|protocol| [0u8, 1, 2].map(|qos| parts.metrics.ingress_messages.get_or_create(&ProtocolQos { protocol, qos }).clone()));
        Self(std::sync::Arc::new(Shared { parts, accepted }))
    }

    /// The accepted-message counters of a connection over `protocol`, by QoS.
    pub(crate) fn accepted_by_qos(&self, protocol: Protocol) -> [Counter; 3] {
        let i = match protocol {
            Protocol::V3 => 0,
            Protocol::V5 => 1,
        };
        self.0.accepted[i].clone()
    }
}

impl std::ops::Deref for Ingress {
    type Target = IngressParts;

    fn deref(&self) -> &IngressParts {
        &self.0.parts
    }
}

/// What [`Ingress`] shares.
#[derive(Clone)]
pub struct IngressParts {
    /// The storage actor (replaced on restart).
    pub storage: ActorSlot<StorageMsg>,
    /// The sessions actor (replaced on restart).
    pub sessions: ActorSlot<SessionsMsg>,
    /// Counters.
    pub metrics: Metrics,
    /// Identities and ACLs.
    pub authority: Authority,
    /// This listener is the TLS one.
    pub tls: bool,
    /// The device-facing TLS set (CRLs in use), for re-checking connected devices.
    pub device_tls: Option<std::sync::Arc<DeviceTls>>,
    /// The device health actor (replaced on restart).
    pub devices: ActorSlot<DevicesMsg>,
    /// Open sessions per identity (what a restarted device health actor starts from).
    pub live_sessions: LiveSessions,
    /// Payload checks, when a schema registry is configured.
    pub schemas: Option<std::sync::Arc<crate::schema::Schemas>>,
    /// Local subscriptions and retained messages.
    pub router: std::sync::Arc<crate::routing::Router>,
    /// The store, read by the writers of persistent sessions (a handle that does not keep it
    /// open after the gateway stopped).
    pub store: edge_gateway_actors::storage::WeakStore,
}

impl Ingress {
    /// Commit a change of `client_id`'s persistent session: sent to the storage actor now, the
    /// future resolves once it is committed (an error when the store did not). Changes sent one
    /// after another are committed in that order (together when they meet in the mailbox).
    pub(crate) fn commit_session(&self, client_id: &str, change: SessionChange) -> impl Future<Output = Result<(), IngressError>> + use<> {
        let (tx, rx) = ractor::concurrency::oneshot();
        let sent = match self.storage.get() {
            None => Err(IngressError::NoSession("the storage actor is restarting".into())),
            Some(storage) => {
                let op = SessionOp { client_id: client_id.to_string(), change, reply: Some(tx.into()) };
                storage
                    .send_message(StorageMsg::Session(op))
                    .map_err(|e| IngressError::NoSession(format!("the storage actor did not answer: {e}")))
            }
        };
        async move {
            sent?;
            match ntex_util::time::timeout(ACTOR_CALL_TIMEOUT, rx).await {
                Ok(Ok(Ok(()))) => Ok(()),
                Ok(Ok(Err(e))) => Err(e.into()),
                Ok(Err(_)) => Err(IngressError::NoSession("the storage actor did not answer: dropped the request".into())),
                Err(()) => Err(IngressError::NoSession("the storage actor did not answer: timed out".into())),
            }
        }
    }
}

/// The MQTT protocol version of a connection (the `protocol` metric label and device status).
pub use edge_gateway_actors::metrics::Protocol;

/// An error from a handler: it closes the connection (v3) or is logged (v5).
#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    /// A refused or failed socket before MQTT (limits, TLS handshake).
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    /// The device's certificate was revoked or expired since it connected.
    #[error("certificate of {identity} no longer valid: {reason}")]
    Untrusted {
        /// The device.
        identity: String,
        /// Why (the `gateway_auth_failures_total` reason).
        reason: AuthFailure,
    },
    /// A PUBLISH topic with a wildcard, or empty (v3: the connection is closed).
    #[error("invalid topic {0:?}")]
    InvalidTopic(String),
    /// A PUBLISH the ACL refuses (v3 has no negative PUBACK: the connection is closed).
    #[error("publish to {0:?} not authorized")]
    NotAuthorized(String),
    /// The payload could not be read.
    #[error("payload: {0}")]
    Payload(String),
    /// The topic's archive class is at its quota (v3: no PUBACK, the connection is closed).
    #[error("archive class {0:?} is at its quota (archive.classes quota_bytes)")]
    ArchiveFull(String),
    /// The store refused or failed the append (v3: no PUBACK, the connection is closed).
    #[error(transparent)]
    Append(#[from] edge_gateway_actors::storage::AppendError),
    /// A session could not be entered (the connection is refused).
    #[error("cannot start a session: {0}")]
    NoSession(String),
    /// A packet ntex-mqtt decoded although it is malformed (the connection is closed).
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
    /// ntex-mqtt's unit error.
    #[error("()")]
    Unit,
}

impl From<()> for IngressError {
    fn from(_: ()) -> Self {
        IngressError::Unit
    }
}

impl TryFrom<IngressError> for ntex_mqtt::v5::PublishAck {
    type Error = IngressError;
    fn try_from(err: IngressError) -> Result<Self, Self::Error> {
        Err(err)
    }
}

/// At most 128 characters of device-chosen text in a log line (logged with `?`, so control
/// characters are escaped and cannot forge lines).
pub(crate) fn clip(s: &str) -> &str {
    s.char_indices().nth(128).map_or(s, |(i, _)| &s[..i])
}
