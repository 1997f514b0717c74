//! What `/readyz` reads: storage writability, bound listeners and the state of every child.
//!
//! Supervisors write child states here as children start and exit; the storage actor records
//! whether its last commit succeeded. Flags are atomics; the child table, the live cells and the
//! quarantine note each sit behind a lock of their own, so a reader sees each of them whole.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

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
        if problems.is_empty() { Ok(()) } else { Err(problems) }
    }
}
