//! Opening the gateway's two store files at start, with the configured engine: the message
//! store (a damaged one is quarantined, never deleted) and the device status file (an
//! unreadable one is moved aside). A store of the other engine left in the data dir stops the
//! start: its messages would otherwise be stranded.

use std::path::{Path, PathBuf};

use edge_gateway_actors::health::Health;
use edge_gateway_actors::metrics::Metrics;
use edge_gateway_actors::storage::backend::suffixed;
use edge_gateway_actors::storage::{BackendKind, SharedDb, Store, StoreError};

/// Why a store file could not be opened at start.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The store cannot be opened for a reason other than damage (locked by another process,
    /// a newer format, a disk error): the start stops and says why.
    #[error("cannot open the store at {}: {source}", path.display())]
    Store {
        /// The store file.
        path: PathBuf,
        /// The engine's error.
        source: StoreError,
    },
    /// The data dir holds a store of the other engine (`storage.backend` was changed).
    #[error(
        "{} holds a {found} store, but storage.backend = \"{configured}\": its undelivered messages would be stranded. \
         Set storage.backend = \"{found}\" again, or stop the gateway, move the file aside and import it with \
         `edge-gateway store salvage <file> --config <config>` after switching",
        other.display()
    )]
    OtherBackend {
        /// The other engine's store file.
        other: PathBuf,
        /// Its engine.
        found: BackendKind,
        /// The configured engine.
        configured: BackendKind,
    },
    /// A damaged store cannot be moved aside.
    #[error("the store at {} is damaged ({damage}) and cannot be moved aside: {source}", path.display())]
    Quarantine {
        /// The store file.
        path: PathBuf,
        /// What is wrong with it.
        damage: String,
        /// Why it cannot be moved.
        source: std::io::Error,
    },
    /// After a quarantine, a fresh store cannot be created.
    #[error("cannot create a fresh store at {}: {source}", path.display())]
    Fresh {
        /// The store file.
        path: PathBuf,
        /// Why.
        source: StoreError,
    },
    /// A file next to the store cannot be read or written.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The device status file cannot be created.
    #[error("cannot create the device status file {}: {source}", path.display())]
    Devices {
        /// `devices.redb` or `devices.sqlite`.
        path: PathBuf,
        /// The engine's error.
        source: StoreError,
    },
    /// The open store failed a first read or write (gateway id, backlog).
    #[error(transparent)]
    Read(#[from] StoreError),
}

/// Device status lives in its own file: a store problem never hides behind it, and it never
/// contends with the message store's single writer.
///
/// A status file that cannot be opened (damaged, or from a newer version) is moved aside and a
/// fresh one started: device status must never keep messages from flowing.
pub(super) fn open_devices_db(kind: BackendKind, path: &Path) -> Result<SharedDb, OpenError> {
    match SharedDb::open(kind, path) {
        Ok(db) => Ok(db),
        Err(e) => {
            let aside = format!("unreadable-{}", edge_gateway_actors::storage::now_ms());
            tracing::error!(file = %path.display(), moved_to = %sibling(path, &aside).display(), error = %e, "Device status file unreadable; moved aside, starting a fresh one.");
            move_aside(kind, path, &aside).map_err(|source| OpenError::Io {
                what: "cannot move aside",
                path: path.to_path_buf(),
                source,
            })?;
            SharedDb::open(kind, path).map_err(|source| OpenError::Devices { path: path.to_path_buf(), source })
        }
    }
}

/// `gateway.redb` + `quarantine-1` = `gateway.redb.quarantine-1`.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    suffixed(path, &format!(".{suffix}"))
}

/// Rename a store's files (SQLite: with its log and index) to `<file>.<suffix>`, keeping the
/// log next to its database (`gateway.sqlite.quarantine-1-wal`). The log goes first: a log
/// must never be left behind next to the fresh database that replaces this one (SQLite would
/// replay it into it).
fn move_aside(kind: BackendKind, path: &Path, suffix: &str) -> std::io::Result<()> {
    let aside = sibling(path, suffix);
    let mut moved = Vec::new();
    let companions = kind.files(path).into_iter().skip(1).map(|file| {
        let companion = file.to_string_lossy().strip_prefix(&*path.to_string_lossy()).map(str::to_string).unwrap_or_default();
        (file, suffixed(&aside, &companion))
    });
    for (from, to) in companions.chain(std::iter::once((path.to_path_buf(), aside.clone()))) {
        match std::fs::rename(&from, &to) {
            Ok(()) => moved.push((from, to)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && from != path => {}
            Err(e) => {
                // All or nothing: a database left without its log would run on stale pages.
                for (from, to) in moved.into_iter().rev() {
                    let _ = std::fs::rename(to, from);
                }
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Refuse to start next to a store of the other engine that still holds messages (the operator
/// switched `storage.backend` before it was drained). An empty one is only mentioned.
pub(super) fn refuse_other_backend(configured: BackendKind, other_store: &Path, other: BackendKind) -> Result<(), OpenError> {
    if !other_store.exists() {
        return Ok(());
    }
    let refuse = || OpenError::OtherBackend { other: other_store.to_path_buf(), found: other, configured };
    let store = Store::open(other, other_store, Vec::new()).map_err(|_| refuse())?;
    let stats = store.stats().map_err(|_| refuse())?;
    if stats.messages > 0 || !store.dead_letters(1).map_err(|_| refuse())?.is_empty() {
        return Err(refuse());
    }
    tracing::warn!(file = %other_store.display(), backend = %other, "An empty store of the other engine is in the data dir; it is not used.");
    Ok(())
}

/// Open the store. A damaged file is never deleted and never blocks the gateway: it is moved
/// aside (quarantined), a fresh store starts, an ERROR is logged, a metric counts it and
/// readiness reports degraded until an operator acknowledges (after `store salvage`). Other
/// failures (the file locked by another process, a newer format, disk errors) stop the start.
pub(super) fn open_store(
    kind: BackendKind,
    path: &Path,
    sinks: Vec<String>,
    metrics: &Metrics,
    health: &Health,
) -> Result<Store, OpenError> {
    let err = match Store::open(kind, path, sinks.clone()) {
        Ok(store) => {
            note_quarantine(path, health);
            return Ok(store);
        }
        Err(e) => e,
    };
    if !err.is_corruption() {
        return Err(OpenError::Store { path: path.to_path_buf(), source: err });
    }
    let suffix = format!("quarantine-{}", edge_gateway_actors::storage::now_ms());
    let aside = sibling(path, &suffix);
    // The quarantine is recorded before the file moves: a start that fails in between must not
    // leave a fresh store behind with nothing saying where the old one went.
    let marker = quarantine_marker(path);
    let mut listed = match std::fs::read_to_string(&marker) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => return Err(OpenError::Io { what: "cannot read", path: marker, source }),
    };
    listed.push_str(&format!("{}\n", aside.display()));
    crate::atomic_file::write(&marker, listed.as_bytes(), None).map_err(|source| OpenError::Io {
        what: "cannot record the quarantine in",
        path: marker.clone(),
        source,
    })?;
    move_aside(kind, path, &suffix).map_err(|source| OpenError::Quarantine {
        path: path.to_path_buf(),
        damage: err.to_string(),
        source,
    })?;
    tracing::error!(
        store = %path.display(),
        moved_to = %aside.display(),
        error = %err,
        "Store damaged: moved aside (nothing deleted) and a fresh store started. Salvage with `edge-gateway store salvage`."
    );
    metrics.store_quarantines.inc();
    let store = Store::open(kind, path, sinks).map_err(|source| OpenError::Fresh { path: path.to_path_buf(), source })?;
    note_quarantine(path, health);
    Ok(store)
}

/// The file that lists quarantined stores not yet acknowledged (`gateway.redb.quarantined`,
/// `gateway.sqlite.quarantined`).
pub fn quarantine_marker(store: &Path) -> PathBuf {
    sibling(store, "quarantined")
}

/// Readiness stays degraded while the marker lists quarantined stores (or cannot be read).
fn note_quarantine(store: &Path, health: &Health) {
    let marker = quarantine_marker(store);
    match std::fs::read_to_string(&marker) {
        Ok(listed) => {
            let files: Vec<&str> = listed.lines().filter(|l| !l.trim().is_empty()).collect();
            if !files.is_empty() {
                health.set_quarantined(Some(files.join(", ")));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::error!(file = %marker.display(), error = %e, "Cannot read the quarantine record; reporting degraded until acknowledged.");
            health.set_quarantined(Some(format!("{} (unreadable: {e})", marker.display())));
        }
    }
}
