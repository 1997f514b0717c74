//! MQTT ingress: ntex-mqtt v3.1.1 and v5 handlers wired to the session and storage actors.
//!
//! Per connection: CONNECT starts a session actor under the `sessions` supervisor (taking over an
//! older connection with the same client id) and arms a closer, so that the end of the session
//! actor closes the connection. Per PUBLISH: validate, append to the store, and answer only after
//! the commit: v3 gets its PUBACK (or the connection is closed), v5 gets a PUBACK reason code.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use edge_gateway_actors::devices::DevicesMsg;
use edge_gateway_actors::metrics::Metrics;
use edge_gateway_actors::record::{NewRecord, TraceCtx};
use edge_gateway_actors::session::{SessionActor, SessionArgs, SessionMsg};
use edge_gateway_actors::slot::ActorSlot;
use edge_gateway_actors::storage::{AppendError, Appended, StorageMsg, now_ms};
use edge_gateway_actors::supervisor::{ChildPolicy, ChildSpec, SupervisorMsg, start_fn};
use ntex_mqtt::{Control, Reason, v3, v5};
use prometheus_client::metrics::counter::Counter;
use ractor::{Actor, ActorRef, rpc::CallResult};
use tokio::sync::oneshot;

use crate::acl::{Decision, Who};
use crate::auth::{Authority, Credentials, Refusal};

/// How long a handler waits for an actor before giving up (no PUBACK then).
const ACTOR_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything the MQTT handlers need; cloned into every ntex worker.
#[derive(Clone)]
pub struct Ingress {
    /// The storage actor (replaced on restart).
    pub storage: ActorSlot<StorageMsg>,
    /// The sessions supervisor (replaced on restart).
    pub sessions: ActorSlot<SupervisorMsg>,
    /// Counters.
    pub metrics: Metrics,
    /// Restart type and shutdown budget of every session.
    pub session_policy: ChildPolicy,
    /// Identities and ACLs.
    pub authority: Authority,
    /// This listener is the TLS one.
    pub tls: bool,
    /// The device-facing TLS set (CRLs in use), for re-checking connected devices.
    pub device_tls: Option<std::sync::Arc<crate::tls::server::DeviceTls>>,
    /// The device health actor (replaced on restart).
    pub devices: ActorSlot<edge_gateway_actors::devices::DevicesMsg>,
    /// Open sessions per identity (what a restarted device health actor starts from).
    pub live_sessions: edge_gateway_actors::devices::LiveSessions,
}

/// An error from a handler: it closes the connection (v3) or is logged (v5).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct IngressError(String);

impl IngressError {
    /// A refused or failed socket before MQTT (limits, TLS handshake).
    pub fn io(e: std::io::Error) -> Self {
        IngressError(format!("connection: {e}"))
    }
}

impl From<()> for IngressError {
    fn from(_: ()) -> Self {
        IngressError("()".into())
    }
}

impl TryFrom<IngressError> for v5::PublishAck {
    type Error = IngressError;
    fn try_from(err: IngressError) -> Result<Self, Self::Error> {
        Err(err)
    }
}

/// Per-connection state held by ntex; dropping it ends the session actor.
#[derive(Clone)]
pub struct Conn(Rc<ConnInner>);

/// The shared part of [`Conn`].
pub struct ConnInner {
    /// MQTT client id.
    client_id: String,
    /// Who the device is (certificate, username, or the client id on a lab listener).
    identity: String,
    /// Its client certificate, re-checked at each publish (revocation, expiry).
    cert: Option<crate::tls::server::PeerCertInfo>,
    /// The connection's session actor.
    session: ActorRef<SessionMsg>,
    /// Set when the connection ends by itself, so the closer does not count it as forced.
    ended: Rc<Cell<bool>>,
    /// Handlers' access to the actors.
    ingress: Ingress,
    /// What accepted messages are counted into (shared with detached QoS 0 appends).
    tally: Rc<Tally>,
}

/// Per-connection counting of accepted messages. Detached QoS 0 appends hold this, not the
/// connection, so a closing connection is never kept alive by a slow commit.
pub struct Tally {
    /// `gateway_ingress_messages_total{protocol=<this connection's>, qos="0"|"1"}`, looked up
    /// once per connection instead of once per message.
    accepted_by_qos: [Counter; 2],
    /// Payload bytes of accepted publishes.
    bytes: Counter,
    /// Messages accepted since the last report to the device health actor, and when that was.
    unreported: Cell<(u64, std::time::Instant)>,
    /// QoS 0 appends sent and not yet committed.
    qos0_pending: Cell<usize>,
    /// The connection has closed: a late commit reports itself.
    closed: Cell<bool>,
    /// Whose messages these are.
    identity: String,
    /// The device health actor.
    devices: ActorSlot<DevicesMsg>,
}

/// QoS 0 appends a connection may have uncommitted before its handler waits for the store
/// (so a device flooding QoS 0 gets backpressure, like QoS 1 through the in-flight window).
const QOS0_DETACHED_MAX: usize = 64;

impl Tally {
    fn accepted(&self, qos: u8, size: u64) {
        self.accepted_by_qos[usize::from(qos.min(1))].inc();
        self.bytes.inc_by(size);
        let (n, since) = self.unreported.get();
        self.unreported.set((n + 1, since));
        self.report_seen(self.closed.get());
    }

    /// Tell the device health actor about accepted messages: at most once a second per
    /// connection (and at the end), not once per message. A failed send keeps the count.
    fn report_seen(&self, last: bool) {
        let (n, since) = self.unreported.get();
        if n == 0 || (!last && since.elapsed() < std::time::Duration::from_secs(1)) {
            return;
        }
        let Some(devices) = self.devices.get() else { return };
        if devices.send_message(DevicesMsg::Seen { identity: self.identity.clone(), count: n }).is_ok() {
            self.unreported.set((0, std::time::Instant::now()));
        }
    }
}

impl Drop for ConnInner {
    fn drop(&mut self) {
        self.tally.closed.set(true);
        self.tally.report_seen(true);
        self.ingress.live_sessions.closed(&self.identity);
        if let Some(devices) = self.ingress.devices.get() {
            let _ = devices.send_message(DevicesMsg::Disconnected { identity: self.identity.clone() });
        }
        self.ended.set(true);
        self.session.stop(None);
        self.ingress.metrics.connections.dec();
        tracing::debug!(client_id = %self.client_id, "Connection closed.");
    }
}

impl Ingress {
    /// Start the session actor and arm the closer; `close` closes the connection.
    async fn open_session(
        &self,
        client_id: &str,
        identity: String,
        cert: Option<crate::tls::server::PeerCertInfo>,
        protocol: &'static str,
        close: impl FnOnce() + 'static,
    ) -> Result<Conn, String> {
        let sessions = self.sessions.get().ok_or("sessions supervisor is down")?;
        let (closer, closed) = oneshot::channel();
        let closer = std::sync::Mutex::new(Some(closer));
        let id = client_id.to_string();
        let spec = ChildSpec {
            name: "session".into(),
            restart: self.session_policy.restart,
            shutdown: self.session_policy.shutdown,
            start: start_fn(move |sup| {
                // A StartFn may be called again on restart; sessions are temporary and never
                // restarted, so the first call takes the closer and a later one gets a dead one.
                let args = SessionArgs {
                    client_id: id.clone(),
                    protocol,
                    closer: closer.lock().unwrap_or_else(|e| e.into_inner()).take().unwrap_or_else(|| oneshot::channel().0),
                };
                async move { Ok(SessionActor::spawn_linked(None, SessionActor, args, sup).await?.0.get_cell()) }
            }),
        };
        let key = Some(client_id.to_string());
        let call = sessions.call(|reply| SupervisorMsg::StartChild { spec, key, reply }, None);
        let cell = match ntex_util::time::timeout(ACTOR_CALL_TIMEOUT, call).await {
            Ok(Ok(CallResult::Success(Ok(cell)))) => cell,
            Ok(Ok(CallResult::Success(Err(e)))) => return Err(e),
            other => return Err(format!("sessions supervisor did not answer: {}", describe(&other))),
        };
        let ended = Rc::new(Cell::new(false));
        let (ended2, metrics, cid) = (ended.clone(), self.metrics.clone(), client_id.to_string());
        ntex_rt::spawn(async move {
            let _ = closed.await;
            if !ended2.get() {
                tracing::info!(client_id = %cid, "Session actor ended; closing its connection.");
                metrics.connections_closed.get_or_create(&[("reason", "session_ended".to_string())]).inc();
                close();
            }
        });
        self.metrics.connections.inc();
        self.metrics.connections_opened.inc();
        let accepted_by_qos = ["0", "1"]
            .map(|q| self.metrics.ingress_messages.get_or_create(&[("protocol", protocol.to_string()), ("qos", q.to_string())]).clone());
        self.live_sessions.opened(&identity);
        if let Some(devices) = self.devices.get() {
            let msg = DevicesMsg::Connected { identity: identity.clone(), client_id: client_id.to_string(), protocol };
            let _ = devices.send_message(msg);
        }
        // The first message of a connection is reported at once.
        let since = std::time::Instant::now().checked_sub(std::time::Duration::from_secs(1)).unwrap_or_else(std::time::Instant::now);
        let tally = Rc::new(Tally {
            accepted_by_qos,
            bytes: self.metrics.ingress_bytes.clone(),
            unreported: Cell::new((0, since)),
            qos0_pending: Cell::new(0),
            closed: Cell::new(false),
            identity: identity.clone(),
            devices: self.devices.clone(),
        });
        let inner =
            ConnInner { client_id: client_id.to_string(), identity, cert, session: cell.into(), ended, ingress: self.clone(), tally };
        Ok(Conn(Rc::new(inner)))
    }

    /// Hand one message to the storage actor now; the future resolves after its commit.
    fn enqueue(&self, rec: NewRecord) -> Result<impl std::future::Future<Output = Result<Appended, AppendError>> + 'static, AppendError> {
        let storage = self.storage.get().ok_or_else(|| AppendError::CommitFailed("storage actor is down".into()))?;
        let (tx, rx) = ractor::concurrency::oneshot();
        storage
            .send_message(StorageMsg::Append(rec, tx.into()))
            .map_err(|e| AppendError::CommitFailed(format!("storage actor unreachable: {e}")))?;
        Ok(async move {
            match ntex_util::time::timeout(ACTOR_CALL_TIMEOUT, rx).await {
                Ok(Ok(result)) => result,
                Ok(Err(_)) => Err(AppendError::CommitFailed("storage dropped the request".into())),
                Err(()) => Err(AppendError::CommitFailed("storage did not answer: timed out".into())),
            }
        })
    }

    /// Append one message; `Ok` only after it is committed.
    async fn append(&self, rec: NewRecord) -> Result<Appended, AppendError> {
        let storage = self.storage.get().ok_or_else(|| AppendError::CommitFailed("storage actor is down".into()))?;
        let call = storage.call(|reply| StorageMsg::Append(rec, reply), None);
        match ntex_util::time::timeout(ACTOR_CALL_TIMEOUT, call).await {
            Ok(Ok(CallResult::Success(result))) => result,
            other => Err(AppendError::CommitFailed(format!("storage did not answer: {}", describe(&other)))),
        }
    }
}

impl Ingress {
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
                        reason = r.as_str(),
                        "Connection refused at CONNECT (more this second are only counted)."
                    );
                }
                Err(r)
            }
        }
    }
}

/// WARN lines a device can trigger at will: one per second each, the rest only counted.
static CONNECT_REFUSALS: crate::throttle::Throttle = crate::throttle::Throttle::new();
static ACL_REFUSALS: crate::throttle::Throttle = crate::throttle::Throttle::new();

/// At most 128 characters of device-chosen text in a log line (logged with `?`, so control
/// characters are escaped and cannot forge lines).
fn clip(s: &str) -> &str {
    s.char_indices().nth(128).map_or(s, |(i, _)| &s[..i])
}

fn peer_cert(io: &ntex_io::IoRef) -> Option<crate::tls::server::PeerCertInfo> {
    io.query::<ntex_tls::rustls::PeerCert<'static>>().as_ref().and_then(|c| crate::tls::server::PeerCertInfo::of(c.0.as_ref()))
}

impl ConnInner {
    /// `Err` when the device's certificate was revoked or expired since it connected.
    fn still_trusted(&self) -> Result<(), IngressError> {
        let (Some(cert), Some(tls)) = (&self.cert, &self.ingress.device_tls) else { return Ok(()) };
        let Some(reason) = tls.recheck(cert, (now_ms() / 1000) as i64) else { return Ok(()) };
        self.ingress.metrics.auth_failures.get_or_create(&[("reason", reason.to_string())]).inc();
        tracing::warn!(identity = %self.identity, client_id = %self.client_id, reason, "Certificate no longer valid; closing the session.");
        Err(IngressError(format!("certificate of {} no longer valid: {reason}", self.identity)))
    }

    fn who(&self) -> Who<'_> {
        Who { identity: &self.identity, client_id: &self.client_id }
    }

    /// The ACL's decision on a publish; refusals are logged with identity, topic and the
    /// message's trace ids.
    fn may_publish(&self, topic: &str, trace: Option<&TraceCtx>) -> bool {
        match self.ingress.authority.may_publish(&self.who(), topic) {
            Decision::Allow => true,
            Decision::Deny(reason) => {
                if ACL_REFUSALS.allow() {
                    let topic = clip(topic);
                    let (trace_id, span_id) = edge_gateway_actors::spans::log_ids(trace);
                    tracing::warn!(identity = %self.identity, client_id = %self.client_id, ?topic, reason = reason.as_str(), trace_id, span_id, "Publish refused by the ACL (more this second are only counted).");
                }
                false
            }
        }
    }

    /// The ACL's decision on a subscription; refusals are logged with identity and filter.
    fn may_subscribe(&self, filter: &str) -> bool {
        match self.ingress.authority.may_subscribe(&self.who(), filter) {
            Decision::Allow => true,
            Decision::Deny(reason) => {
                if ACL_REFUSALS.allow() {
                    let filter = clip(filter);
                    tracing::warn!(identity = %self.identity, client_id = %self.client_id, ?filter, reason = reason.as_str(), "Subscribe refused by the ACL (more this second are only counted).");
                }
                false
            }
        }
    }
}

fn describe<T, E: std::fmt::Display>(r: &Result<Result<CallResult<T>, E>, ()>) -> String {
    match r {
        Err(()) => "timed out".into(),
        Ok(Err(e)) => e.to_string(),
        Ok(Ok(CallResult::Timeout)) => "timed out".into(),
        Ok(Ok(CallResult::SenderError)) => "dropped the request".into(),
        Ok(Ok(CallResult::Success(_))) => "answered".into(),
    }
}

/// A PUBLISH topic name must be non-empty and free of wildcards.
fn valid_topic(topic: &str) -> bool {
    !topic.is_empty() && !topic.contains(['+', '#', '\0'])
}

fn rejected(metrics: &Metrics, client_id: &str, reason: &'static str, detail: &str) {
    rejected_traced(metrics, client_id, reason, detail, None);
}

/// A refused publish, logged with the message's trace and span ids when it is traced.
fn rejected_traced(metrics: &Metrics, client_id: &str, reason: &'static str, detail: &str, trace: Option<&TraceCtx>) {
    metrics.reject(reason);
    if PUBLISH_REFUSALS.allow() {
        let detail = clip(detail);
        let (trace_id, span_id) = edge_gateway_actors::spans::log_ids(trace);
        tracing::warn!(%client_id, reason, ?detail, trace_id, span_id, "Publish refused (more this second are only counted).");
    }
}

static PUBLISH_REFUSALS: crate::throttle::Throttle = crate::throttle::Throttle::new();

// ---------------------------------------------------------------------------------------------
// MQTT 3.1.1

pub(crate) async fn connect_v3(ingress: Ingress, c: v3::Connect) -> Result<v3::ConnectAck<Conn>, IngressError> {
    use v3::codec::ConnectAckReason as R;
    let pkt = c.packet();
    let mut client_id = pkt.client_id.to_string();
    if client_id.is_empty() {
        if !pkt.clean_session {
            ingress.metrics.reject("empty_client_id");
            tracing::warn!("CONNECT with an empty client id and clean session 0 refused.");
            return Ok(c.identifier_rejected());
        }
        if !ingress.tls && ingress.authority.anonymous_plain() {
            client_id = generated_client_id();
        }
    }
    let (username, password) = (pkt.username.as_deref(), pkt.password.as_deref());
    let (client_id, identity) = match ingress.authenticate(c.io(), &client_id, username, password).await {
        Ok(ids) => ids,
        Err(Refusal::ClientIdMismatch) => return Ok(c.identifier_rejected()),
        Err(Refusal::BadPassword | Refusal::NoCredentials) => return Ok(c.failed(R::BadUserNameOrPassword)),
        Err(_) => return Ok(c.failed(R::NotAuthorized)),
    };
    let sink = c.sink();
    let cert = peer_cert(c.io());
    match ingress.open_session(&client_id, identity, cert, "v3", move || sink.close()).await {
        Ok(conn) => {
            tracing::debug!(%client_id, "v3 connection accepted.");
            Ok(c.ack(conn, false))
        }
        Err(e) => {
            tracing::error!(%client_id, error = %e, "Cannot start a session; refusing the connection.");
            Ok(c.service_unavailable())
        }
    }
}

pub(crate) async fn publish_v3(conn: &v3::Session<Conn>, p: v3::Publish) -> Result<(), IngressError> {
    let c = &conn.0;
    let m = &c.ingress.metrics;
    let topic = p.publish_topic().to_string();
    if !valid_topic(&topic) {
        rejected(m, &c.client_id, "invalid_topic", &topic);
        return Err(IngressError(format!("invalid topic {topic:?}")));
    }
    c.still_trusted()?;
    // MQTT 3.1.1 has no user properties: the gateway starts the trace (if sampled). The span
    // covers authorization too.
    let (span, trace) = crate::telemetry::receive_span(None, &topic, &c.identity, "v3");
    if !c.may_publish(&topic, trace.as_ref()) {
        crate::telemetry::end_receive(span, Some("not authorized"));
        // MQTT 3.1.1 has no negative PUBACK: closing is the only refusal the client sees.
        return Err(IngressError(format!("publish to {topic:?} not authorized")));
    }
    let payload = p.read_all().await.map_err(|e| IngressError(format!("payload: {e:?}")))?;
    let qos = u8::from(p.qos());
    let rec = NewRecord {
        device: c.identity.clone(),
        topic,
        qos,
        payload: payload.to_vec(),
        received_at_ms: now_ms(),
        trace,
        ..Default::default()
    };
    let size = rec.payload.len() as u64;
    if qos == 0 {
        let stored = store_qos0(c, rec, size).await;
        crate::telemetry::end_receive(span, stored.as_ref().err().map(|e| e.to_string()).as_deref());
        return stored.map_err(|e| IngressError(e.to_string()));
    }
    let result = c.ingress.append(rec).await;
    crate::telemetry::end_receive(span, result.as_ref().err().map(|e| e.to_string()).as_deref());
    match result {
        Ok(_) => {
            c.tally.accepted(qos, size);
            Ok(())
        }
        Err(e) => {
            let reason = if e == AppendError::QuotaExceeded { "quota" } else { "store_error" };
            rejected_traced(m, &c.client_id, reason, &e.to_string(), trace.as_ref());
            Err(IngressError(e.to_string()))
        }
    }
}

/// A QoS 0 publish needs no answer, and ntex drops the handler of one that arrives together
/// with the client's DISCONNECT: so the append is sent to the storage actor now (keeping the
/// connection's order) and, while few are pending, its outcome is counted by a task of its own;
/// past [`QOS0_DETACHED_MAX`] pending, the handler waits for it (backpressure).
async fn store_qos0(c: &ConnInner, rec: NewRecord, size: u64) -> Result<(), AppendError> {
    let pending = match c.ingress.enqueue(rec) {
        Ok(p) => p,
        Err(e) => {
            rejected(&c.ingress.metrics, &c.client_id, "store_error", &e.to_string());
            return Err(e);
        }
    };
    let tally = c.tally.clone();
    tally.qos0_pending.set(tally.qos0_pending.get() + 1);
    let (metrics, client_id) = (c.ingress.metrics.clone(), c.client_id.clone());
    let outcome = async move {
        let result = pending.await;
        tally.qos0_pending.set(tally.qos0_pending.get().saturating_sub(1));
        match &result {
            Ok(_) => tally.accepted(0, size),
            Err(e) => {
                let reason = if *e == AppendError::QuotaExceeded { "quota" } else { "store_error" };
                rejected(&metrics, &client_id, reason, &e.to_string());
            }
        }
        result.map(|_| ())
    };
    if c.tally.qos0_pending.get() <= QOS0_DETACHED_MAX {
        ntex_rt::spawn(outcome);
        Ok(())
    } else {
        outcome.await
    }
}

pub(crate) async fn control_v3(conn: &v3::Session<Conn>, ctl: Control<IngressError>) -> Result<Option<v3::codec::Encoded>, IngressError> {
    count_stop(&conn.0, &ctl);
    Ok(None)
}

// ---------------------------------------------------------------------------------------------
// MQTT 5

pub(crate) async fn connect_v5(ingress: Ingress, c: v5::Connect) -> Result<v5::ConnectAck<Conn>, IngressError> {
    use v5::codec::ConnectAckReason as R;
    let pkt = c.packet();
    let mut client_id = pkt.client_id.to_string();
    let assigned = client_id.is_empty();
    if assigned && !ingress.tls && ingress.authority.anonymous_plain() {
        client_id = generated_client_id();
    }
    let (username, password) = (pkt.username.as_deref(), pkt.password.as_deref());
    let (client_id, identity) = match ingress.authenticate(c.io(), &client_id, username, password).await {
        Ok(ids) => ids,
        Err(Refusal::ClientIdMismatch) => return Ok(c.failed(R::ClientIdentifierNotValid)),
        Err(Refusal::BadPassword | Refusal::NoCredentials) => return Ok(c.failed(R::BadUserNameOrPassword)),
        Err(_) => return Ok(c.failed(R::NotAuthorized)),
    };
    let sink = c.sink();
    let cert = peer_cert(c.io());
    match ingress.open_session(&client_id, identity, cert, "v5", move || sink.close()).await {
        Ok(conn) => {
            tracing::debug!(%client_id, "v5 connection accepted.");
            let ack = c.ack(conn);
            Ok(if assigned { ack.with(|a| a.assigned_client_id = Some(client_id.into())) } else { ack })
        }
        Err(e) => {
            tracing::error!(%client_id, error = %e, "Cannot start a session; refusing the connection.");
            Ok(c.failed(v5::codec::ConnectAckReason::ServerUnavailable))
        }
    }
}

pub(crate) async fn publish_v5(conn: &v5::Session<Conn>, p: v5::Publish) -> Result<v5::PublishAck, IngressError> {
    use v5::codec::PublishAckReason as R;
    let c = &conn.0;
    let m = &c.ingress.metrics;
    let topic = p.publish_topic().to_string();
    if !valid_topic(&topic) {
        rejected(m, &c.client_id, "invalid_topic", &topic);
        return Ok(p.ack().reason_code(R::TopicNameInvalid));
    }
    if let Err(e) = c.still_trusted() {
        // Closes the connection: the session must not continue on a revoked certificate.
        conn.sink().close_with_reason(v5::codec::Disconnect::new(v5::codec::DisconnectReasonCode::NotAuthorized));
        return Err(e);
    }
    let device_trace = p
        .packet()
        .properties
        .user_properties
        .iter()
        .find(|(k, _)| &**k == "traceparent")
        .and_then(|(_, v)| crate::telemetry::parse_traceparent(v));
    let (span, trace) = crate::telemetry::receive_span(device_trace, &topic, &c.identity, "v5");
    if !c.may_publish(&topic, trace.as_ref()) {
        crate::telemetry::end_receive(span, Some("not authorized"));
        return Ok(p.ack().reason_code(R::NotAuthorized));
    }
    let payload = p.read_all().await.map_err(|e| IngressError(format!("payload: {e:?}")))?;
    let props = &p.packet().properties;
    let qos = u8::from(p.qos());
    let rec = NewRecord {
        device: c.identity.clone(),
        topic,
        qos,
        payload: payload.to_vec(),
        content_type: props.content_type.as_ref().map(|s| s.to_string()),
        user_properties: props.user_properties.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        received_at_ms: now_ms(),
        trace,
    };
    let size = rec.payload.len() as u64;
    if qos == 0 {
        // No PUBACK for QoS 0: a refusal is counted and logged only.
        let stored = store_qos0(c, rec, size).await;
        crate::telemetry::end_receive(span, stored.err().map(|e| e.to_string()).as_deref());
        return Ok(p.ack());
    }
    let result = c.ingress.append(rec).await;
    crate::telemetry::end_receive(span, result.as_ref().err().map(|e| e.to_string()).as_deref());
    match result {
        Ok(_) => {
            c.tally.accepted(qos, size);
            Ok(p.ack())
        }
        Err(AppendError::QuotaExceeded) => {
            rejected_traced(m, &c.client_id, "quota", "storage quota exceeded", trace.as_ref());
            Ok(p.ack().reason_code(R::QuotaExceeded))
        }
        Err(e) => {
            rejected_traced(m, &c.client_id, "store_error", &e.to_string(), trace.as_ref());
            Ok(p.ack().reason_code(R::UnspecifiedError))
        }
    }
}

pub(crate) async fn control_v5(conn: &v5::Session<Conn>, ctl: Control<IngressError>) -> Result<Option<v5::codec::Encoded>, IngressError> {
    count_stop(&conn.0, &ctl);
    Ok(None)
}

/// Count and log why a connection's dispatcher stops (protocol errors, handler errors).
fn count_stop(c: &ConnInner, ctl: &Control<IngressError>) {
    let Control::Stop(reason) = ctl else { return };
    let (label, detail) = match reason {
        Reason::PeerGone(_) => return,
        Reason::Error(e) => ("handler_error", e.get_ref().to_string()),
        Reason::Protocol(p) => {
            let detail = format!("{}", p.get_ref());
            (classify_protocol_error(&format!("{:?} {detail}", p.get_ref())), detail)
        }
    };
    c.ingress.metrics.connections_closed.get_or_create(&[("reason", label.to_string())]).inc();
    if label != "handler_error" {
        c.ingress.metrics.reject(label);
    }
    tracing::warn!(client_id = %c.client_id, reason = label, %detail, "Closing connection.");
}

fn classify_protocol_error(text: &str) -> &'static str {
    if text.contains("3.3.2-2") || text.contains("wildcard") || text.contains("3.3.4-7") {
        "invalid_topic"
    } else if text.contains("MaxSizeExceeded") {
        "oversize"
    } else if text.contains("3.2.2-11") || text.contains("QoS") {
        "qos_unsupported"
    } else if text.contains("KeepAlive") {
        "keepalive_timeout"
    } else if text.contains("UnexpectedPacket") || text.contains("Unexpected") || text.contains("UnsupportedPacketType") {
        "unexpected_packet"
    } else {
        "protocol_error"
    }
}

fn generated_client_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("auto-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

// ---------------------------------------------------------------------------------------------
// Protocol messages other than PUBLISH. Subscriptions are checked against the ACL per topic: a
// refused one gets a SUBACK failure without closing the connection. The gateway does not yet
// deliver anything to subscribers (no downlink): a granted subscription receives nothing.

pub(crate) async fn protocol_v3(conn: &v3::Session<Conn>, msg: v3::ProtocolMessage) -> Result<v3::ProtocolMessageAck, IngressError> {
    Ok(match msg {
        v3::ProtocolMessage::Subscribe(mut s) => {
            for mut topic in s.iter_mut() {
                if conn.0.may_subscribe(topic.topic()) {
                    topic.confirm(granted(topic.qos()));
                } else {
                    topic.fail();
                }
            }
            s.ack()
        }
        v3::ProtocolMessage::Unsubscribe(u) => u.ack(),
        v3::ProtocolMessage::Ping(p) => p.ack(),
        v3::ProtocolMessage::Disconnect(d) => d.ack(),
        v3::ProtocolMessage::PublishRelease(r) => r.ack(),
    })
}

pub(crate) async fn protocol_v5(conn: &v5::Session<Conn>, msg: v5::ProtocolMessage) -> Result<v5::ProtocolMessageAck, IngressError> {
    Ok(match msg {
        v5::ProtocolMessage::Subscribe(mut s) => {
            for mut topic in s.iter_mut() {
                if conn.0.may_subscribe(topic.topic()) {
                    topic.confirm(granted(topic.options().qos));
                } else {
                    topic.fail(v5::codec::SubscribeAckReason::NotAuthorized);
                }
            }
            s.ack()
        }
        v5::ProtocolMessage::Unsubscribe(u) => u.ack(),
        v5::ProtocolMessage::Ping(p) => p.ack(),
        v5::ProtocolMessage::Disconnect(d) => d.ack(),
        v5::ProtocolMessage::PublishRelease(r) => r.ack(),
        auth @ v5::ProtocolMessage::Auth(_) => {
            auth.disconnect_with(v5::codec::Disconnect::new(v5::codec::DisconnectReasonCode::BadAuthenticationMethod))
        }
    })
}

/// QoS 2 subscriptions are granted at QoS 1 (the gateway's maximum).
fn granted(requested: ntex_mqtt::QoS) -> ntex_mqtt::QoS {
    if requested == ntex_mqtt::QoS::AtMostOnce { requested } else { ntex_mqtt::QoS::AtLeastOnce }
}
