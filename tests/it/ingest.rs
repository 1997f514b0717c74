//! A test ingestion server: the HTTP endpoint the gateway's forwarder POSTs batches to.
//!
//! It speaks the ingestion contract (`POST /ingest`, `Idempotency-Key` header, JSON batch body),
//! records what it accepted, and can misbehave on demand ([`Mode`]) or go away entirely
//! ([`IngestServer::stop`] / [`IngestServer::restart`], which really close and re-bind the
//! listening socket on the same port, and drop every open connection).
//!
//! A request that breaks the contract (unparsable body, missing or mismatched `Idempotency-Key`,
//! a message with neither or both of `payload`/`payload_base64`) is answered 400, printed on
//! stderr and counted in [`IngestServer::malformed`], so a test can assert it stayed at zero.
#![allow(dead_code)] // each test uses a different part of the API

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;
use std::time::{Duration, Instant};

use base64::Engine as _;
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

/// How the server answers the next requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Accept every well-formed batch with 200.
    Ok,
    /// Answer every request with this status (the batch is not recorded as accepted).
    Fail(u16),
    /// Accept the TCP connection, read the request, never answer.
    Stall,
    /// Answer 400 when any message's payload contains the string, else 200.
    RejectPayloadContaining(String),
}

/// One message of an ingestion batch, as the gateway sent it.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct Msg {
    pub key: String,
    pub seq: u64,
    pub device: String,
    pub topic: String,
    pub qos: u8,
    pub payload: Option<String>,
    pub payload_base64: Option<String>,
    pub received_at_ms: u64,
    pub content_type: Option<String>,
    pub user_properties: Vec<(String, String)>,
    /// The schema check, when a binding covered the topic.
    pub schema: Option<serde_json::Value>,
}

impl Msg {
    /// The payload bytes, whichever of `payload` / `payload_base64` carried them.
    pub fn payload_bytes(&self) -> Vec<u8> {
        match (&self.payload, &self.payload_base64) {
            (Some(text), _) => text.as_bytes().to_vec(),
            (None, Some(b64)) => base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap_or_else(|e| panic!("message {}: payload_base64 is not base64: {e}", self.key)),
            (None, None) => Vec::new(),
        }
    }
}

/// The request body of one POST.
#[derive(Debug, serde::Deserialize)]
struct Batch {
    gateway: String,
    batch_key: String,
    messages: Vec<Msg>,
}

/// Handle on a running test ingestion server; clones share the server, which shuts down when
/// the last clone is dropped.
#[derive(Clone)]
pub struct IngestServer {
    /// Shared with the accept and connection tasks; dropped last.
    inner: Arc<Inner>,
}

/// What the handle owns: the address and the tasks it must stop.
struct Inner {
    /// The address the server listens on, kept across stop/restart.
    addr: SocketAddr,
    /// What the tasks see: mode, records, listener, connection handles.
    shared: Arc<Shared>,
    /// The accept loop of the current listening period, if listening.
    accept_task: Mutex<Option<JoinHandle<()>>>,
}

/// State shared with the server tasks.
struct Shared {
    /// How to answer, switchable at any time by the test.
    mode: Mutex<Mode>,
    /// Everything recorded so far.
    log: Mutex<Log>,
    /// The listening socket; `None` while stopped. Taking it out closes the socket at once.
    listener: Mutex<Option<TcpListener>>,
    /// Open connections, aborted on stop so that a stopped server has no live socket at all.
    connections: Mutex<Vec<AbortHandle>>,
    /// HTTPS (one request per connection) when set.
    tls: Option<tokio_rustls::TlsAcceptor>,
}

/// What the server observed.
#[derive(Default)]
struct Log {
    /// POSTs received, whatever the outcome.
    requests: usize,
    /// Requests that broke the contract.
    malformed: usize,
    /// Messages of 2xx-answered requests, in arrival order.
    accepted: Vec<Msg>,
    /// `Idempotency-Key` of each 2xx-answered request, in arrival order.
    batch_keys: Vec<String>,
    /// Each request answered with [`Mode::Fail`]: its `Idempotency-Key` and message keys.
    failed: Vec<(String, Vec<String>)>,
    /// HTTPS: the subject CN of the client certificate of each connection, in order.
    client_cns: Vec<String>,
    /// The `traceparent` header of each 2xx-answered request that had one.
    traceparents: Vec<String>,
}

impl IngestServer {
    /// Binds 127.0.0.1 on a free port and serves on the current tokio runtime.
    pub async fn start() -> IngestServer {
        Self::start_with(None).await
    }

    /// Like [`IngestServer::start`], serving HTTPS with `tls` (one request per connection, so
    /// that every request shows the client certificate the gateway presents at that moment).
    pub async fn start_tls(tls: Arc<rustls::ServerConfig>) -> IngestServer {
        Self::start_with(Some(tokio_rustls::TlsAcceptor::from(tls))).await
    }

    async fn start_with(tls: Option<tokio_rustls::TlsAcceptor>) -> IngestServer {
        let listener =
            bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap_or_else(|e| panic!("ingest server: cannot bind 127.0.0.1:0: {e}"));
        let addr = listener.local_addr().expect("ingest server: local_addr");
        let shared = Arc::new(Shared {
            mode: Mutex::new(Mode::Ok),
            log: Mutex::new(Log::default()),
            listener: Mutex::new(Some(listener)),
            connections: Mutex::new(Vec::new()),
            tls,
        });
        let accept_task = Mutex::new(Some(tokio::spawn(accept_loop(shared.clone()))));
        IngestServer { inner: Arc::new(Inner { addr, shared, accept_task }) }
    }

    /// The ingestion URL, `http://127.0.0.1:PORT/ingest` (`https://localhost:PORT/ingest`).
    pub fn url(&self) -> String {
        match self.inner.shared.tls {
            None => format!("http://{}/ingest", self.inner.addr),
            Some(_) => format!("https://localhost:{}/ingest", self.inner.addr.port()),
        }
    }

    /// The `traceparent` headers of the accepted requests.
    pub fn traceparents(&self) -> Vec<String> {
        lock(&self.inner.shared.log).traceparents.clone()
    }

    /// HTTPS: the client certificate CN of every connection so far.
    pub fn client_cns(&self) -> Vec<String> {
        lock(&self.inner.shared.log).client_cns.clone()
    }

    /// The listening address (the same across stop/restart).
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    pub fn set_mode(&self, mode: Mode) {
        *lock(&self.inner.shared.mode) = mode;
    }

    /// POSTs received, any outcome.
    pub fn requests(&self) -> usize {
        self.log().requests
    }

    /// Requests answered 400 because they broke the ingestion contract.
    pub fn malformed(&self) -> usize {
        self.log().malformed
    }

    /// Every message of every 2xx-answered request, in arrival order, duplicates included.
    pub fn accepted(&self) -> Vec<Msg> {
        self.log().accepted.clone()
    }

    /// The `Idempotency-Key` of every 2xx-answered request, in arrival order.
    pub fn batch_keys(&self) -> Vec<String> {
        self.log().batch_keys.clone()
    }

    /// The `Idempotency-Key` and message keys of every request answered with [`Mode::Fail`].
    pub fn failed(&self) -> Vec<(String, Vec<String>)> {
        self.log().failed.clone()
    }

    /// Distinct message keys among the accepted messages.
    pub fn unique_keys(&self) -> usize {
        distinct_keys(&self.log().accepted)
    }

    /// Accepted messages whose key had already been accepted before.
    pub fn duplicates(&self) -> usize {
        let log = self.log();
        log.accepted.len() - distinct_keys(&log.accepted)
    }

    /// Panics unless, per device, the first occurrences of the accepted keys have increasing `seq`.
    pub fn assert_per_device_order(&self) {
        let log = self.log();
        let mut seen = HashSet::new();
        let mut last_seq: HashMap<&str, (u64, &str)> = HashMap::new();
        for msg in &log.accepted {
            if !seen.insert(msg.key.as_str()) {
                continue;
            }
            if let Some(&(prev, prev_key)) = last_seq.get(msg.device.as_str()) {
                assert!(
                    msg.seq > prev,
                    "device {:?}: message {} (seq {}) first arrived after {} (seq {})",
                    msg.device,
                    msg.key,
                    msg.seq,
                    prev_key,
                    prev
                );
            }
            last_seq.insert(&msg.device, (msg.seq, &msg.key));
        }
    }

    /// Stops listening: the socket is closed before this returns (a connect is refused), and
    /// every open connection is aborted. Records and mode are kept.
    pub fn stop(&self) {
        self.inner.shut_down();
    }

    /// Listens again on the same port (stopping first if still listening).
    pub async fn restart(&self) {
        self.stop();
        let listener = rebind(self.inner.addr).await;
        *lock(&self.inner.shared.listener) = Some(listener);
        let task = tokio::spawn(accept_loop(self.inner.shared.clone()));
        *lock(&self.inner.accept_task) = Some(task);
    }

    fn log(&self) -> MutexGuard<'_, Log> {
        lock(&self.inner.shared.log)
    }
}

impl Inner {
    /// Closes the listening socket, then stops the accept loop and every connection.
    fn shut_down(&self) {
        drop(lock(&self.shared.listener).take());
        if let Some(task) = lock(&self.accept_task).take() {
            task.abort();
        }
        for conn in lock(&self.shared.connections).drain(..) {
            conn.abort();
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// Locks, ignoring poisoning: a panicking test must not hide the records from its report.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A listening socket with SO_REUSEADDR, so the port can be re-bound while old connections
/// linger in TIME_WAIT.
fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Re-binds `addr`, retrying for up to 5 s (another socket may briefly hold the port).
async fn rebind(addr: SocketAddr) -> TcpListener {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match bind(addr) {
            Ok(listener) => return listener,
            Err(e) if Instant::now() >= deadline => {
                panic!("ingest server: cannot re-bind {addr} for 5 s: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Accepts until the listener is taken away (the task is aborted at the same time).
async fn accept_loop(shared: Arc<Shared>) {
    loop {
        let accepted = poll_fn(|cx| match lock(&shared.listener).as_ref() {
            None => Poll::Ready(None),
            Some(listener) => listener.poll_accept(cx).map(Some),
        })
        .await;
        match accepted {
            None => return,
            Some(Ok((stream, _))) => spawn_connection(&shared, stream),
            Some(Err(e)) => {
                eprintln!("ingest server: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

fn spawn_connection(shared: &Arc<Shared>, stream: TcpStream) {
    let task_shared = shared.clone();
    let task = tokio::spawn(async move {
        let service = hyper::service::service_fn({
            let shared = task_shared.clone();
            move |req| handle(shared.clone(), req)
        });
        let Some(tls) = task_shared.tls.clone() else {
            let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            // A client that goes away mid-request is normal here (timeouts, chaos).
            let _ = conn.await;
            return;
        };
        let Ok(stream) = tls.accept(stream).await else { return };
        let cn = stream.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|c| cn_of(c)).unwrap_or_default();
        lock(&task_shared.log).client_cns.push(cn);
        let conn = hyper::server::conn::http1::Builder::new().keep_alive(false).serve_connection(TokioIo::new(stream), service);
        let _ = conn.await;
    });
    let mut connections = lock(&shared.connections);
    connections.retain(|c| !c.is_finished());
    if lock(&shared.listener).is_none() {
        // `stop` ran while this connection was being accepted (multi-thread runtime).
        task.abort();
    }
    connections.push(task.abort_handle());
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() != Method::POST {
        return Ok(reply(StatusCode::METHOD_NOT_ALLOWED, "only POST"));
    }
    lock(&shared.log).requests += 1;
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => return Ok(reply(StatusCode::BAD_REQUEST, &format!("reading body: {e}"))),
    };
    let mode = lock(&shared.mode).clone();
    match mode {
        Mode::Stall => std::future::pending().await,
        Mode::Fail(status) => {
            if let Ok(batch) = parse(&parts, &body) {
                lock(&shared.log).failed.push((batch.batch_key, batch.messages.into_iter().map(|m| m.key).collect()));
            }
            Ok(reply(status_code(status), "failing on purpose"))
        }
        Mode::Ok | Mode::RejectPayloadContaining(_) => Ok(judge(&shared, &mode, &parts, &body)),
    }
}

/// Validates the batch against the contract and the mode; records it if accepted.
fn judge(shared: &Shared, mode: &Mode, parts: &hyper::http::request::Parts, body: &[u8]) -> Response<Full<Bytes>> {
    let batch = match parse(parts, body) {
        Ok(batch) => batch,
        Err(problem) => {
            eprintln!("ingest server: malformed request: {problem}");
            lock(&shared.log).malformed += 1;
            return reply(StatusCode::BAD_REQUEST, &problem);
        }
    };
    if let Mode::RejectPayloadContaining(needle) = mode {
        let needle = needle.as_bytes();
        let hit = batch.messages.iter().find(|m| contains(&m.payload_bytes(), needle));
        if let Some(msg) = hit {
            return reply(StatusCode::BAD_REQUEST, &format!("message {} rejected", msg.key));
        }
    }
    let count = batch.messages.len();
    let mut log = lock(&shared.log);
    if let Some(tp) = parts.headers.get("traceparent").and_then(|v| v.to_str().ok()) {
        log.traceparents.push(tp.to_string());
    }
    log.batch_keys.push(batch.batch_key);
    log.accepted.extend(batch.messages);
    drop(log);
    reply(StatusCode::OK, &format!("accepted {count} messages"))
}

/// Parses and checks one request; the error names the broken rule.
fn parse(parts: &hyper::http::request::Parts, body: &[u8]) -> Result<Batch, String> {
    if parts.uri.path() != "/ingest" {
        return Err(format!("path {:?} is not /ingest", parts.uri.path()));
    }
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !header("content-type").starts_with("application/json") {
        return Err(format!("Content-Type {:?} is not application/json", header("content-type")));
    }
    let key = header("idempotency-key");
    let batch: Batch = serde_json::from_slice(body).map_err(|e| format!("body: {e}"))?;
    if key.is_empty() || key != batch.batch_key {
        return Err(format!("Idempotency-Key {key:?} differs from batch_key {:?}", batch.batch_key));
    }
    if batch.gateway.is_empty() {
        return Err("gateway is empty".to_string());
    }
    for msg in &batch.messages {
        if msg.payload.is_some() == msg.payload_base64.is_some() {
            return Err(format!("message {}: exactly one of payload/payload_base64 needed", msg.key));
        }
    }
    Ok(batch)
}

fn distinct_keys(messages: &[Msg]) -> usize {
    messages.iter().map(|m| &m.key).collect::<HashSet<_>>().len()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

fn status_code(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or_else(|_| panic!("Mode::Fail({status}): not an HTTP status"))
}

fn reply(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "message": message }).to_string();
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}

#[cfg(test)]
mod tests;

/// The subject CN of a DER certificate ("" if none).
fn cn_of(der: &[u8]) -> String {
    use x509_parser::prelude::{FromDer, X509Certificate};
    X509Certificate::from_der(der)
        .ok()
        .and_then(|(_, c)| c.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()).map(str::to_string))
        .unwrap_or_default()
}
