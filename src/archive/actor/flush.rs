//! Closing the open files (see `files.rs` for the order that makes it crash-safe), and the
//! recovery that finishes or undoes what a crash interrupted.

use edge_gateway_actors::metrics::ClassLabels;

use super::ArchiveState;
use crate::archive::audit::{self, AuditLine};
use crate::archive::files::{self, Recovered, tmp_of};
use crate::archive::manifest::{self, FileEntry, Manifest, Op};
use crate::archive::{ArchiveError, columns};

impl ArchiveState {
    /// Close every open file: write each as `.tmp`, fsync it and its folder, record them all in
    /// the manifest, rename them to their final names; the manifest lock is held throughout, so
    /// a reader never sees an entry whose file is not yet renamed.
    pub(super) fn flush(&mut self) -> Result<(), ArchiveError> {
        let dir = self.args.config.dir.clone();
        let lock = manifest::lock(&dir)?;
        let m = Manifest::read(&dir)?;
        if std::mem::take(&mut self.recover) {
            let recovered = files::recover(&dir, &m)?;
            self.after_recovery(&lock, recovered)?;
        }
        let mut taken: Vec<String> = Vec::new();
        let mut adds = Vec::new();
        // The rows move into the writer; on a failure before the manifest records them they
        // are read from the store again.
        let open = std::mem::take(&mut self.open);
        let result = (|| {
            for ((i, hour), rows) in open {
                let class = &self.args.classes.get(i).name;
                let name = files::next_name(&m, &taken, class, hour);
                taken.push(name.clone());
                let path = dir.join(&name);
                let folder = path.parent().unwrap_or(&dir).to_path_buf();
                files::create_dirs(&dir, &folder)?;
                let tmp = tmp_of(&path);
                let file = std::fs::File::create(&tmp).map_err(|e| ArchiveError::io(&tmp, e))?;
                let count = rows.len() as u64;
                let first_ms = rows.iter().map(|r| r.received_at_ms).min().unwrap_or(0);
                let last_ms = rows.iter().map(|r| r.received_at_ms).max().unwrap_or(0);
                columns::write(&file, rows)?;
                file.sync_all().map_err(|e| ArchiveError::io(&tmp, e))?;
                // The `.tmp`'s name is durable before the manifest counts on it.
                files::sync_dir(&folder)?;
                let bytes = file.metadata().map_err(|e| ArchiveError::io(&tmp, e))?.len();
                adds.push(FileEntry {
                    path: name,
                    class: class.clone(),
                    sha256: crate::sha256::file(&tmp).map_err(|e| ArchiveError::io(&tmp, e))?,
                    bytes,
                    rows: count,
                    first_ms,
                    last_ms,
                    through_seq: self.next,
                });
            }
            crash_point(CrashPoint::BeforeManifest);
            manifest::append(&dir, &lock, adds.iter().cloned().map(Op::Add).collect(), (self.args.clock)())
        })();
        if let Err(e) = result {
            for name in &taken {
                let _ = std::fs::remove_file(tmp_of(&dir.join(name)));
            }
            (self.open_bytes, self.opened_at, self.next) = (0, None, self.acked);
            return Err(e);
        }
        // Recorded: from here on a failure is finished by `recover`, never written again.
        (self.open_bytes, self.opened_at) = (0, None);
        self.args.metrics.archive.last_flush.set((self.args.clock)() as i64 / 1000);
        crash_point(CrashPoint::BeforeRename);
        for f in &adds {
            let path = dir.join(&f.path);
            if let Err(e) = std::fs::rename(tmp_of(&path), &path)
                .map_err(|e| ArchiveError::io(&path, e))
                .and_then(|()| files::sync_dir(path.parent().unwrap_or(&dir)))
            {
                self.recover = true;
                return Err(e);
            }
            let labels = ClassLabels { class: f.class.clone() };
            self.args.metrics.archive.messages.get_or_create(&labels).inc_by(f.rows);
            self.args.metrics.archive.bytes.get_or_create(&labels).inc_by(f.bytes);
            tracing::info!(file = %f.path, rows = f.rows, bytes = f.bytes, sha256 = %f.sha256, "Archive file closed.");
        }
        drop(lock);
        crash_point(CrashPoint::BeforeCursor);
        Ok(())
    }

    /// Log what recovery did; a recorded file that is gone (a crash lost it) is recorded as
    /// lost, in the manifest and the audit log, and its messages are read again from the
    /// store's cursor (the archive may then hold some of that flush's messages twice, under
    /// their keys: never none).
    pub(super) fn after_recovery(&mut self, lock: &manifest::Lock, recovered: Recovered) -> Result<(), ArchiveError> {
        let dir = self.args.config.dir.clone();
        for done in &recovered.done {
            tracing::warn!(dir = %dir.display(), %done, "Archive recovered after an interrupted flush or deletion.");
        }
        if recovered.lost.is_empty() {
            return Ok(());
        }
        let now = (self.args.clock)();
        let detail = "recorded, then gone after a crash; its messages are archived again from the store";
        let lines: Vec<AuditLine<'_>> = recovered
            .lost
            .iter()
            .map(|f| AuditLine {
                at_ms: now,
                action: "lost",
                class: &f.class,
                path: Some(&f.path),
                reason: None,
                detail,
                by: "archive actor",
            })
            .collect();
        audit::append(&dir, &lines)?;
        let ops = recovered
            .lost
            .iter()
            .map(|f| Op::Delete { path: f.path.clone(), class: f.class.clone(), reason: "lost".into(), detail: detail.into() })
            .collect();
        manifest::append(&dir, lock, ops, now)?;
        for f in &recovered.lost {
            tracing::error!(file = %f.path, cursor = self.acked, "An archive file the manifest recorded is gone; archiving its messages again from the store.");
        }
        self.next = self.acked;
        Ok(())
    }
}

/// Where a flush can be cut short by `EDGE_GATEWAY_ARCHIVE_CRASH` (the crash tests).
#[derive(Clone, Copy, PartialEq, Eq)]
#[allow(clippy::enum_variant_names)] // each names the step the crash comes before
enum CrashPoint {
    /// The `.tmp` files are written and fsync'ed, the manifest does not know them.
    BeforeManifest,
    /// The manifest records them, they are not renamed.
    BeforeRename,
    /// They are in place, the archive's cursor has not moved.
    BeforeCursor,
}

impl CrashPoint {
    fn as_str(self) -> &'static str {
        match self {
            CrashPoint::BeforeManifest => "before_manifest",
            CrashPoint::BeforeRename => "before_rename",
            CrashPoint::BeforeCursor => "before_cursor",
        }
    }
}

/// Fault injection for the crash tests (`tests/it/archive_crash.rs`), read like the power-cut
/// harness's `EDGE_GATEWAY_UNSAFE_NO_FSYNC`: with `EDGE_GATEWAY_ARCHIVE_CRASH=<point>` the
/// process aborts there, as a power cut or a SIGKILL would stop it. Never set it in production.
fn crash_point(point: CrashPoint) {
    if std::env::var("EDGE_GATEWAY_ARCHIVE_CRASH").is_ok_and(|p| p == point.as_str()) {
        eprintln!("EDGE_GATEWAY_ARCHIVE_CRASH={}: aborting in the middle of an archive flush", point.as_str());
        std::process::abort();
    }
}
