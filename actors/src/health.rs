//! What `/readyz` reads: storage writability, bound listeners, the state of every child, and
//! a heartbeat of each MQTT I/O thread (a thread that stopped running its tasks is not ready).
//!
//! Supervisors write child states here as children start and exit; the storage actor records
//! whether its last commit succeeded. Flags are atomics; the child table, the live cells and the
//! quarantine note each sit behind a lock of their own, so a reader sees each of them whole.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use ractor::ActorCell;

/// Shared health state; cheap to clone.
#[derive(Clone, Default)]
pub struct Health {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// False once a commit failed, true again after the next successful one.
    storage_writable: AtomicBool,
    /// True once every configured listener is bound.
    listeners_bound: AtomicBool,
    /// Child path (`root/storage`) -> state. Temporary children are not tracked.
    children: Mutex<BTreeMap<String, ChildHealth>>,
    /// Child path -> the running actor, for introspection and fault injection.
    cells: Mutex<BTreeMap<String, ActorCell>>,
    /// A damaged store was moved aside at start (where to); degraded until acknowledged.
    quarantined: Mutex<Option<String>>,
    /// Each MQTT I/O thread's last heartbeat (ms on [`mono_ms`]'s clock), while it runs.
    io_beats: Mutex<Vec<Arc<AtomicU64>>>,
    /// Chaos: the next heartbeat blocks its thread for this many ms (0: none).
    io_stall_ms: AtomicU64,
}

/// An I/O thread whose heartbeat is older than this is wedged (it beats every second).
pub const IO_BEAT_LATE: Duration = Duration::from_secs(5);

/// Milliseconds on a monotonic clock that starts with the process.
pub fn mono_ms() -> u64 {
    static START: LazyLock<Instant> = LazyLock::new(Instant::now);
    START.elapsed().as_millis() as u64
}

/// One I/O thread's heartbeat; removed from the readiness checks when dropped (the thread's
/// runtime ended).
pub struct IoBeat {
    health: Health,
    cell: Arc<AtomicU64>,
}

impl IoBeat {
    /// The thread is running: record it now; returns a stall to perform (chaos), in ms.
    pub fn beat(&self) -> u64 {
        self.cell.store(mono_ms(), Ordering::Relaxed);
        self.health.inner.io_stall_ms.swap(0, Ordering::Relaxed)
    }
}

impl Drop for IoBeat {
    fn drop(&mut self) {
        let mut beats = self.health.inner.io_beats.lock().unwrap_or_else(|e| e.into_inner());
        beats.retain(|c| !Arc::ptr_eq(c, &self.cell));
    }
}

/// The last known state of one supervised child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChildHealth {
    /// Whether the child is up right now.
    pub running: bool,
    /// Whether readiness requires it (restart type `permanent`).
    pub permanent: bool,
    /// Restarts since the gateway started.
    pub restarts: u64,
}

impl Health {
    /// Record the outcome of the latest commit attempt.
    pub fn set_storage_writable(&self, ok: bool) {
        self.inner.storage_writable.store(ok, Ordering::Relaxed);
    }

    /// Record that the listeners are (or are no longer) bound.
    pub fn set_listeners_bound(&self, ok: bool) {
        self.inner.listeners_bound.store(ok, Ordering::Relaxed);
    }

    /// Record a child's state; `restarted` adds one to its restart count.
    pub fn set_child(&self, path: &str, cell: Option<ActorCell>, permanent: bool, restarted: bool) {
        let running = cell.is_some();
        {
            let mut cells = self.inner.cells.lock().unwrap_or_else(|e| e.into_inner());
            match cell {
                Some(cell) => cells.insert(path.to_string(), cell),
                None => cells.remove(path),
            };
        }
        let mut children = self.inner.children.lock().unwrap_or_else(|e| e.into_inner());
        let entry = children.entry(path.to_string()).or_insert(ChildHealth { running, permanent, restarts: 0 });
        entry.running = running;
        entry.permanent = permanent;
        entry.restarts += u64::from(restarted);
    }

    /// Forget a child and everything under it (its supervisor stopped for good).
    pub fn remove_subtree(&self, path: &str) {
        let prefix = format!("{path}/");
        let mut children = self.inner.children.lock().unwrap_or_else(|e| e.into_inner());
        children.retain(|k, _| k != path && !k.starts_with(&prefix));
        let mut cells = self.inner.cells.lock().unwrap_or_else(|e| e.into_inner());
        cells.retain(|k, _| k != path && !k.starts_with(&prefix));
    }

    /// The running actor at `path` (`root/forwarders/forwarder:cloud`), if it is up.
    pub fn actor(&self, path: &str) -> Option<ActorCell> {
        self.inner.cells.lock().unwrap_or_else(|e| e.into_inner()).get(path).cloned()
    }

    /// A snapshot of every tracked child.
    pub fn children(&self) -> BTreeMap<String, ChildHealth> {
        self.inner.children.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A damaged store was moved to `to` and a fresh one started.
    pub fn set_quarantined(&self, to: Option<String>) {
        *self.inner.quarantined.lock().unwrap_or_else(|e| e.into_inner()) = to;
    }

    /// Where a quarantined store was moved, until an operator acknowledges it.
    pub fn quarantined(&self) -> Option<String> {
        self.inner.quarantined.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Register an I/O thread's heartbeat (beating from now).
    pub fn io_thread(&self) -> IoBeat {
        let cell = Arc::new(AtomicU64::new(mono_ms()));
        self.inner.io_beats.lock().unwrap_or_else(|e| e.into_inner()).push(cell.clone());
        IoBeat { health: self.clone(), cell }
    }

    /// Chaos: block the next I/O thread that beats for `ms`.
    pub fn stall_io(&self, ms: u64) {
        self.inner.io_stall_ms.store(ms, Ordering::Relaxed);
    }

    /// `Ok` when ready, otherwise every reason why not.
    pub fn readiness(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if let Some(to) = self.quarantined() {
            problems.push(format!(
                "the store was damaged and moved to {to}; a fresh store is in use; salvage with `edge-gateway store salvage`, then acknowledge with POST /api/store/acknowledge"
            ));
        }
        if !self.inner.storage_writable.load(Ordering::Relaxed) {
            problems.push("storage is not writable".to_string());
        }
        if !self.inner.listeners_bound.load(Ordering::Relaxed) {
            problems.push("listeners are not bound".to_string());
        }
        for (path, child) in self.children() {
            if child.permanent && !child.running {
                problems.push(format!("{path} is not running"));
            }
        }
        let now = mono_ms();
        for beat in self.inner.io_beats.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let age = now.saturating_sub(beat.load(Ordering::Relaxed));
            if age > IO_BEAT_LATE.as_millis() as u64 {
                problems.push(format!("an MQTT I/O thread has not run its tasks for {:.1} s", age as f64 / 1000.0));
            }
        }
        if problems.is_empty() { Ok(()) } else { Err(problems) }
    }
}
