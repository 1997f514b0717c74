//! Noticing that a target's files changed: notify watches (the parent directory of each file,
//! folders recursively) and the fingerprints the periodic poll compares.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use notify::{EventKind, RecursiveMode, Watcher};
use ractor::ActorRef;

use super::{Reloadable, RotationMsg};

/// Watch the parent directory of every file (editors and `mv` replace files by rename) and
/// every folder, recursively.
pub(super) fn watch(myself: &ActorRef<RotationMsg>, targets: &[Arc<dyn Reloadable>]) -> Option<notify::RecommendedWatcher> {
    let me = myself.clone();
    let handler = move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        // Reading a certificate produces Access events; only content changes matter.
        if matches!(event.kind, EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_)) {
            for path in event.paths {
                let _ = me.send_message(RotationMsg::Changed(path));
            }
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "Cannot watch certificate files; polling only.");
            return None;
        }
    };
    let dirs: HashSet<PathBuf> = targets.iter().flat_map(|t| t.paths()).filter_map(|p| parent_dir(&p)).collect();
    let folders = targets.iter().flat_map(|t| t.folders()).map(|f| (f, RecursiveMode::Recursive));
    for (dir, mode) in dirs.into_iter().map(|d| (d, RecursiveMode::NonRecursive)).chain(folders) {
        if let Err(e) = watcher.watch(&dir, mode) {
            tracing::warn!(dir = %dir.display(), error = %e, "Cannot watch a directory; polling it only.");
        }
    }
    Some(watcher)
}

fn parent_dir(path: &Path) -> Option<PathBuf> {
    let parent = path.parent()?;
    Some(if parent.as_os_str().is_empty() { PathBuf::from(".") } else { parent.to_path_buf() })
}

/// A file's (mtime, length); for a folder, the latest mtime and the summed lengths and entry
/// count of everything below it (a few files: walked at each poll).
pub(super) fn fingerprint(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_dir() {
        return Some((meta.modified().ok()?, meta.len()));
    }
    let mut latest = meta.modified().ok()?;
    let mut sum = 0u64;
    for entry in std::fs::read_dir(path).ok()?.flatten() {
        if let Some((mtime, len)) = fingerprint(&entry.path()) {
            latest = latest.max(mtime);
            sum = sum.wrapping_add(len).wrapping_add(1 << 32);
        }
    }
    Some((latest, sum))
}

/// Whether `path` lies below `folder`.
pub(super) fn below(folder: &Path, path: &Path) -> bool {
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    abs(path).starts_with(abs(folder))
}

/// Same file, whichever way the path was spelled (events carry absolute paths).
pub(super) fn same_file(a: &Path, b: &Path) -> bool {
    a == b || (a.file_name() == b.file_name() && std::path::absolute(a).ok() == std::path::absolute(b).ok())
}
