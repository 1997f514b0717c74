//! Retention: which files a sweep deletes (past `max_keep_days`; past `min_keep_days` when the
//! class is over its quota), which classes are full, legal holds, and the one way a file is
//! deleted (manifest entry, audit line, then the unlink), shared by the actor and the CLI.
//!
//! Age is counted from a file's newest message. Nothing here deletes a file inside its class's
//! compliance window (`min_keep_days`) or of a class under a legal hold; only an operator's
//! `archive delete --force --reason` reaches inside the window, and never under a hold.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use edge_gateway_actors::metrics::ArchiveDeletion;
use serde::{Deserialize, Serialize};

use super::ArchiveError;
use super::audit::{self, AuditLine};
use super::files::sync_dir;
use super::manifest::{self, FileEntry, Op};
use crate::config::ClassConfig;

/// One day in ms.
pub const DAY_MS: i64 = 86_400_000;

/// A file to delete, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deletion {
    /// The file.
    pub file: FileEntry,
    /// Why (a metric label and the manifest's reason).
    pub reason: ArchiveDeletion,
    /// For people.
    pub detail: String,
}

/// What a class holds after a sweep's deletions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    /// Files kept.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Newest message time of the oldest and of the newest file (ms; 0: none).
    pub oldest_ms: i64,
    /// ...
    pub newest_ms: i64,
    /// At or over its quota.
    pub full: bool,
}

/// Receive times before this (2024-01-01) come from a clock that was not set (a box that booted
/// without a real-time clock and stamped messages near 1970): such a file's age is unknown, and
/// it is kept as if inside its window (only an operator deletes it).
pub const PLAUSIBLE_SINCE_MS: i64 = 1_704_067_200_000;

/// Whether `f` is inside the compliance window of `class` at `now_ms` (or its age is unknown).
pub fn in_window(class: &ClassConfig, f: &FileEntry, now_ms: i64) -> bool {
    f.last_ms < PLAUSIBLE_SINCE_MS || now_ms.saturating_sub(f.last_ms) < i64::from(class.min_keep_days) * DAY_MS
}

/// The deletions a sweep at `now_ms` makes in `class` (held: none; `pinned` files, not yet
/// uploaded, are kept like files inside the window), and the class's usage after them.
pub fn plan(
    class: &ClassConfig,
    live: &BTreeMap<String, FileEntry>,
    held: bool,
    pinned: &HashSet<String>,
    now_ms: i64,
) -> (Vec<Deletion>, Usage) {
    let mut files: Vec<&FileEntry> = live.values().filter(|f| f.class == class.name).collect();
    let keep = |f: &FileEntry| in_window(class, f, now_ms) || pinned.contains(&f.path);
    files.sort_by_key(|f| (f.last_ms, f.path.clone()));
    let mut out = Vec::new();
    if !held && class.max_keep_days > 0 {
        let max = i64::from(class.max_keep_days) * DAY_MS;
        files.retain(|f| {
            let expired = now_ms.saturating_sub(f.last_ms) >= max && !keep(f);
            if expired {
                let detail = format!(
                    "newest message {} days old; max_keep_days = {}",
                    now_ms.saturating_sub(f.last_ms) / DAY_MS,
                    class.max_keep_days
                );
                out.push(Deletion { file: (*f).clone(), reason: ArchiveDeletion::MaxKeep, detail });
            }
            !expired
        });
    }
    let mut bytes: u64 = files.iter().map(|f| f.bytes).sum();
    if !held && class.quota_bytes > 0 {
        let mut kept = Vec::new();
        for f in files {
            if bytes >= class.quota_bytes && !keep(f) {
                bytes -= f.bytes;
                let detail = format!("class at its quota of {} bytes; outside min_keep_days = {}", class.quota_bytes, class.min_keep_days);
                out.push(Deletion { file: f.clone(), reason: ArchiveDeletion::Quota, detail });
            } else {
                kept.push(f);
            }
        }
        files = kept;
    }
    let usage = Usage {
        files: files.len() as u64,
        bytes,
        oldest_ms: files.first().map_or(0, |f| f.last_ms),
        newest_ms: files.iter().map(|f| f.last_ms).max().unwrap_or(0),
        full: class.quota_bytes > 0 && bytes >= class.quota_bytes,
    };
    (out, usage)
}

/// A legal hold set with `archive hold` (`archive/holds/<class>`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Hold {
    /// Why (the case, the ticket).
    pub reason: String,
    /// Since when (ms).
    pub since_ms: u64,
    /// Who set it.
    pub by: String,
}

fn hold_path(dir: &Path, class: &str) -> PathBuf {
    dir.join("holds").join(class)
}

/// The hold on `class`: from the config (`legal_hold = true`) or set with `archive hold`. A hold
/// file that exists but cannot be read or parsed is still a hold: deleting less is the safe side.
pub fn hold_of(dir: &Path, class: &ClassConfig) -> Option<Hold> {
    let unreadable = |why: String| Hold { reason: format!("(hold file unreadable: {why})"), since_ms: 0, by: String::new() };
    match std::fs::read_to_string(hold_path(dir, &class.name)) {
        Ok(text) => return Some(serde_json::from_str(&text).unwrap_or_else(|e| unreadable(e.to_string()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Some(unreadable(e.to_string())),
    }
    class.legal_hold.then(|| Hold { reason: "legal_hold = true in the config".into(), since_ms: 0, by: "config".into() })
}

/// Set (`Some`) or release (`None`) the hold on `class`, audited first.
pub fn set_hold(dir: &Path, class: &str, hold: Option<&Hold>, release_reason: &str, by: &str, now_ms: u64) -> Result<(), ArchiveError> {
    let path = hold_path(dir, class);
    let (action, detail) = match hold {
        Some(h) => ("hold", h.reason.as_str()),
        None => ("release", release_reason),
    };
    // Under the manifest lock: a deletion in progress finishes first, the next one sees it.
    let _lock = manifest::lock(dir)?;
    audit::append(dir, &[AuditLine { at_ms: now_ms, action, class, path: None, reason: None, detail, by }])?;
    match hold {
        Some(h) => {
            let holds = dir.join("holds");
            super::files::create_dirs(dir, &holds)?;
            let _ = crate::atomic_file::give_to_owner(dir, &holds);
            let text = serde_json::to_vec(h).map_err(|e| ArchiveError::Manifest(e.to_string()))?;
            crate::atomic_file::write(&path, &text, Some(0o644)).map_err(|e| ArchiveError::io(&path, e))?;
            crate::atomic_file::give_to_owner(dir, &path).map_err(|e| ArchiveError::io(&path, e))
        }
        None => match std::fs::remove_file(&path) {
            Ok(()) => sync_dir(&dir.join("holds")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ArchiveError::io(&path, e)),
        },
    }
}

/// Delete `deletions`: under the manifest lock, refused if a class of them is held now; one
/// audit line each, then one manifest entry each (both fsync'ed), then the files. A crash
/// after the audit line leaves the file (deleted again, audited again, by the next sweep);
/// after the manifest entry, the next start finishes the unlink.
pub fn delete(dir: &Path, classes: &[ClassConfig], deletions: &[Deletion], by: &str, now_ms: u64) -> Result<(), ArchiveError> {
    if deletions.is_empty() {
        return Ok(());
    }
    let lock = manifest::lock(dir)?;
    for d in deletions {
        if let Some(h) = classes.iter().find(|c| c.name == d.file.class).and_then(|c| hold_of(dir, c)) {
            return Err(ArchiveError::Refused(format!("class {} is under legal hold ({}); nothing is deleted", d.file.class, h.reason)));
        }
    }
    let ops = deletions
        .iter()
        .map(|d| Op::Delete {
            path: d.file.path.clone(),
            class: d.file.class.clone(),
            reason: d.reason.as_str().into(),
            detail: d.detail.clone(),
        })
        .collect();
    let lines: Vec<AuditLine<'_>> = deletions
        .iter()
        .map(|d| AuditLine {
            at_ms: now_ms,
            action: "delete",
            class: &d.file.class,
            path: Some(&d.file.path),
            reason: Some(d.reason.as_str()),
            detail: &d.detail,
            by,
        })
        .collect();
    audit::append(dir, &lines)?;
    manifest::append(dir, &lock, ops, now_ms)?;
    for d in deletions {
        let path = dir.join(&d.file.path);
        match std::fs::remove_file(&path) {
            Ok(()) => sync_dir(path.parent().unwrap_or(dir))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ArchiveError::io(&path, e)),
        }
    }
    Ok(())
}
