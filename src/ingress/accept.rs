//! The MQTT I/O threads ("mqtt:worker:N"). Each one accepts on the device listeners itself and
//! runs the connections it accepted, so a CONNECT is accepted, read and answered on one thread
//! (ntex-server, used before, accepted on a thread of its own and handed every socket to a
//! worker through a third: two wake-ups per connection; docs/BENCHMARKS.md, "Idle connections").
//!
//! With several I/O threads each one waits on its own copy (`dup`) of every listening socket;
//! the kernel wakes them all and one wins each `accept`. A stop closes those copies (no new
//! connection is accepted), lets the publishes already read be committed and answered (at most
//! [`GRACE`]), gives the connections [`SETTLE`] more, then drops them.

use std::cell::Cell;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use edge_gateway_actors::health::Health;
use ntex_io::Io;
use ntex_service::cfg::SharedCfg;
use ntex_service::{Pipeline, Service};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};

use super::batcher;
use super::gate::Gated;
use crate::throttle::Throttle;

/// How long a stop waits at most for the publishes already read to be committed and answered
/// (they take milliseconds; a device that goes on publishing is cut off at this point).
const GRACE: Duration = Duration::from_secs(3);

/// After those, how long the connections still open are given before they are closed.
const SETTLE: Duration = Duration::from_millis(100);

/// After an `accept` error that is not the peer's (no file descriptors left, say), the next try
/// waits this long, so a full descriptor table does not spin the thread.
const RETRY_AFTER: Duration = Duration::from_millis(500);

/// Sockets one thread takes per wake-up before it serves its connections again, when it is the
/// only I/O thread. With several, each takes one at a time, so that a burst of connections is
/// spread over the threads racing for it (ntex-server handed them out in turn).
const ACCEPT_BATCH: usize = 16;

/// Why an I/O thread could not start.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    /// A copy of a listening socket for one more thread, or its registration.
    #[error("cannot watch the listening socket {addr}: {source}")]
    Watch {
        /// The socket's address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The thread itself.
    #[error("cannot start an MQTT I/O thread: {0}")]
    Thread(std::io::Error),
    /// The thread ended before it said it was serving.
    #[error("an MQTT I/O thread died while starting")]
    ThreadDied,
}

/// The accept loop ([`serve`]) of one listener on one I/O thread.
pub type Serve = Pin<Box<dyn Future<Output = ()>>>;

/// What an I/O thread runs first, on that thread (ntex services are not `Send`): it builds each
/// listener's service chain and returns their accept loops.
pub type Build = Box<dyn FnOnce(Conns) -> Result<Vec<Serve>, AcceptError> + Send>;

/// The running I/O threads.
pub struct IoThreads {
    /// `true` tells every thread to stop.
    stop: watch::Sender<bool>,
    /// How many threads are still running.
    running: watch::Receiver<usize>,
}

impl IoThreads {
    /// Start one thread per `Build`; returns once each is accepting (or the first error).
    pub fn start(builds: Vec<Build>, health: &Health) -> Result<Self, AcceptError> {
        let count = builds.len();
        let (stop, stop_rx) = watch::channel(false);
        let (running_tx, running) = watch::channel(count);
        let running_tx = std::sync::Arc::new(running_tx);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let threads = IoThreads { stop, running };
        for (n, build) in builds.into_iter().enumerate() {
            let (stop, ready, ended, health) = (stop_rx.clone(), ready_tx.clone(), Ended(running_tx.clone()), health.clone());
            let spawned = std::thread::Builder::new().name(format!("mqtt:worker:{n}")).spawn(move || {
                let _ended = ended;
                let system = ntex_rt::System::new(&format!("mqtt:{n}"), ntex_net::DefaultRuntime);
                system.block_on(run(build, stop, ready, health));
                tracing::debug!(thread = n, "MQTT I/O thread stopped.");
            });
            // (An early return drops `threads`, which stops those already started.)
            spawned.map_err(AcceptError::Thread)?;
        }
        drop(ready_tx);
        // Each thread drops its sender once it has answered, so a thread that dies first ends
        // the wait.
        for _ in 0..count {
            ready_rx.recv().map_err(|_| AcceptError::ThreadDied)??;
        }
        Ok(threads)
    }

    /// Stop accepting, let the publishes in flight finish (at most [`GRACE`]), then close the
    /// connections; returns when every I/O thread has ended.
    pub async fn stop(&self) {
        self.stop_now();
        let mut running = self.running.clone();
        let _ = running.wait_for(|n| *n == 0).await;
    }

    fn stop_now(&self) {
        self.stop.send_replace(true);
    }
}

impl Drop for IoThreads {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// Counts a thread out when it ends, also by a panic.
struct Ended(std::sync::Arc<watch::Sender<usize>>);

impl Drop for Ended {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// One I/O thread: build the chains, say so, accept until told to stop, then the grace period.
async fn run(build: Build, mut stop: watch::Receiver<bool>, ready: std::sync::mpsc::Sender<Result<(), AcceptError>>, health: Health) {
    let conns = Conns::default();
    let serving = match build(conns.clone()) {
        Ok(serving) => serving,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    drop(ready);
    let mut tasks: Vec<_> = serving.into_iter().map(tokio::task::spawn_local).collect();
    let ended = poll_fn(|cx| match tasks.iter_mut().any(|t| Pin::new(t).poll(cx).is_ready()) {
        true => Poll::Ready(()),
        false => Poll::Pending,
    });
    let stopped = tokio::select! {
        _ = stop.wait_for(|stop| *stop) => true,
        () = ended => false,
    };
    if !stopped {
        // (A loop only ends on an error it logged, or a panic.) Not ready from now on, so that
        // systemd's watchdog restarts the gateway; the open connections go on meanwhile.
        tracing::error!("An MQTT I/O thread stopped accepting connections; the gateway is no longer ready.");
        health.set_listeners_bound(false);
        let _ = stop.wait_for(|stop| *stop).await;
    }
    for task in tasks.into_iter().filter(|t| !t.is_finished()) {
        task.abort();
        let _ = task.await;
    }
    // The publishes already read get their commit and their PUBACK; idle connections are not
    // waited for.
    let deadline = tokio::time::Instant::now() + GRACE;
    while batcher::in_flight() > 0 && conns.any_open() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Time for the last PUBACKs to be written out, and for the connections' writers to hand
    // their acknowledgements to the store.
    let _ = tokio::time::timeout(SETTLE, conns.none_open()).await;
    // Returning ends the thread's runtime, which drops the connections still open: what they
    // tell the actors goes at once from now on.
    super::outbox::close();
}

/// The connections open on one I/O thread.
#[derive(Clone, Default)]
pub struct Conns(Rc<ConnsInner>);

#[derive(Default)]
struct ConnsInner {
    open: Cell<usize>,
    none_open: Notify,
}

impl Conns {
    fn open(&self) -> ConnGuard {
        self.0.open.set(self.0.open.get() + 1);
        ConnGuard(self.clone())
    }

    fn any_open(&self) -> bool {
        self.0.open.get() > 0
    }

    async fn none_open(&self) {
        while self.0.open.get() > 0 {
            self.0.none_open.notified().await;
        }
    }
}

/// One open connection, counted until it ends.
struct ConnGuard(Conns);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let inner = &self.0.0;
        inner.open.set(inner.open.get() - 1);
        if inner.open.get() == 0 {
            inner.none_open.notify_waiters();
        }
    }
}

/// A listening socket made ready for one I/O thread: its own copy, non-blocking, registered
/// with this thread's reactor. Called on that thread.
pub fn watch(listener: &std::net::TcpListener) -> Result<TcpListener, AcceptError> {
    let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let watch = || {
        let own = listener.try_clone()?;
        own.set_nonblocking(true)?;
        TcpListener::from_std(own)
    };
    watch().map_err(|source| AcceptError::Watch { addr, source })
}

/// Accept on `listener` for ever, handing each socket to the listener's gated chain `service`
/// (through a pipeline, as ntex-server did) in a task of this thread.
///
/// tokio's `accept` takes the socket non-blocking (`accept4`) and marks it readable and
/// writable before the reactor has said so: its first read tries the socket at once, where the
/// CONNECT usually is by then, instead of waiting for a turn of the reactor (docs/BENCHMARKS.md,
/// "Idle connections", eighth step).
pub async fn serve<S, R, E>(listener: TcpListener, cfg: SharedCfg, service: Gated<S, E>, conns: Conns, threads: usize)
where
    Gated<S, E>: Service<SharedCfg, Io, Res = R, Error = E> + 'static,
    R: 'static,
    E: 'static,
{
    static THROTTLE: Throttle = Throttle::new();
    let pipeline = Pipeline::new(cfg.clone(), service);
    let batch = if threads > 1 { 1 } else { ACCEPT_BATCH };
    loop {
        // The first of a batch is waited for; the rest are taken while there are any, each once
        // the connections accepted before it have run up to their first wait. So a CONNECT
        // that came with its connection is answered before the next `accept` asks the kernel
        // for more (most often to hear `EAGAIN`; docs/BENCHMARKS.md, "Idle connections",
        // twelfth step).
        let mut first = Some(listener.accept().await);
        let mut taken = 0;
        while taken < batch {
            let accepted = match first.take() {
                Some(accepted) => accepted,
                None => {
                    run_queued().await;
                    match poll_fn(|cx| Poll::Ready(listener.poll_accept(cx))).await {
                        Poll::Ready(accepted) => accepted,
                        // Nothing more to accept: the next `accept` waits for a wake-up.
                        Poll::Pending => break,
                    }
                }
            };
            taken += 1;
            match accepted {
                Ok((socket, peer)) => match super::stream::io(socket, peer, cfg.clone()) {
                    Ok(io) => {
                        let guard = conns.open();
                        // Without the pipeline's own readiness check: the gate's call checks
                        // the chain below it before it calls it (`Ctx::call`), and the gate
                        // has no readiness of its own. That second walk of the chain was 7 %
                        // of the I/O thread's instructions per CONNECT (docs/BENCHMARKS.md,
                        // "Idle connections", eleventh step).
                        let call = pipeline.call_nowait(io);
                        ntex_rt::spawn(async move {
                            let _ = call.await;
                            drop(guard);
                        });
                    }
                    Err(e) => tracing::debug!(error = %e, "An accepted socket could not be set up; closed."),
                },
                // The peer gave up before we took it: the next one may be there.
                Err(e) if peer_gone(&e) => {}
                // Not the system's (no OS error code): the thread's reactor is gone.
                Err(e) if e.raw_os_error().is_none() => {
                    tracing::error!(error = %e, "The MQTT listener cannot be watched; it accepts no more connections.");
                    return;
                }
                Err(e) => {
                    if THROTTLE.allow() {
                        tracing::error!(error = %e, "Cannot accept an MQTT connection; trying again shortly.");
                    }
                    tokio::time::sleep(RETRY_AFTER).await;
                    break;
                }
            }
        }
        if taken == batch {
            // A full batch, and maybe more waiting: the reactor's turn (the connections' reads
            // and writes) before the next.
            tokio::task::yield_now().await;
        }
    }
}

/// Lets the tasks already queued on this thread (the connections just accepted) run before
/// this one goes on, without the turn of the reactor that tokio's `yield_now` waits for.
async fn run_queued() {
    let mut queued = false;
    poll_fn(|cx| {
        if std::mem::replace(&mut queued, true) {
            Poll::Ready(())
        } else {
            // On the thread's own task set, a wake-up puts the task at the back of its queue.
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await
}

/// An `accept` error that concerns only that one connection.
fn peer_gone(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted)
}
