//! The sweep: retention (deletions past `max_keep_days` and for the quota, usage gauges, full
//! flags) and the upload of closed files, in a task of its own so that a slow or failing
//! upload never holds the archive back.

use edge_gateway_actors::metrics::{ArchiveDeletion, ClassLabels, DeletionLabels};

use super::ArchiveState;
use crate::archive::manifest::{Manifest, Op};
use crate::archive::{ArchiveError, retention};
use crate::config::{ClassConfig, OnFull};

impl ArchiveState {
    /// Retention, then start an upload run unless one is still going.
    pub(super) async fn sweep(&mut self) {
        if let Err(e) = tokio::task::block_in_place(|| self.apply_retention()) {
            tracing::error!(error = %e, "Archive retention sweep failed; trying again at the next sweep.");
        }
        if self.uploading.as_ref().is_none_or(|t| t.is_finished()) {
            let (uploader, dir, metrics) = (self.uploader.clone(), self.args.config.dir.clone(), self.args.metrics.clone());
            self.uploading = Some(tokio::spawn(async move {
                if let Err(e) = uploader.run(&dir, &metrics).await {
                    tracing::warn!(error = %e, "Archive upload failed; retrying at the next sweep.");
                }
            }));
        }
    }

    /// Deletions by `archive delete` (another process) since the last sweep, into the metrics.
    fn count_operator_deletions(&mut self, m: &Manifest) {
        for e in m.entries.iter().filter(|e| e.n > self.seen) {
            if let Op::Delete { class, reason, .. } = &e.op
                && reason == ArchiveDeletion::Operator.as_str()
            {
                let labels = DeletionLabels { class: class.clone(), reason: ArchiveDeletion::Operator };
                self.args.metrics.archive.deletions.get_or_create(&labels).inc();
            }
        }
        self.seen = m.entries.last().map_or(self.seen, |e| e.n);
    }

    fn apply_retention(&mut self) -> Result<(), ArchiveError> {
        let dir = self.args.config.dir.clone();
        let m = Manifest::read(&dir)?;
        self.count_operator_deletions(&m);
        let live = m.live();
        let pinned = self.uploader.not_uploaded(&dir, &live);
        let now = (self.args.clock)();
        let all: Vec<ClassConfig> = (0..self.args.classes.len()).map(|i| self.args.classes.get(i).clone()).collect();
        let mut failed = None;
        for (i, class) in all.iter().enumerate() {
            let held = retention::hold_of(&dir, class).is_some();
            let (deletions, usage) = retention::plan(class, &live, held, &pinned, now as i64);
            // One class's failure (a hold set meanwhile, a read-only file) does not keep the
            // others' usage and full flags stale.
            if let Err(e) = retention::delete(&dir, &all, &deletions, "archive actor", now) {
                failed = Some(e);
                continue;
            }
            let a = &self.args.metrics.archive;
            for d in &deletions {
                tracing::info!(file = %d.file.path, reason = %d.reason, detail = %d.detail, "Archive file deleted.");
                a.deletions.get_or_create(&DeletionLabels { class: class.name.clone(), reason: d.reason }).inc();
            }
            let labels = ClassLabels { class: class.name.clone() };
            a.files.get_or_create(&labels).set(usage.files as i64);
            a.stored_bytes.get_or_create(&labels).set(usage.bytes as i64);
            a.oldest_file.get_or_create(&labels).set(usage.oldest_ms / 1000);
            a.newest_file.get_or_create(&labels).set(usage.newest_ms / 1000);
            a.full.get_or_create(&labels).set(i64::from(usage.full));
            if self.args.classes.set_full(i, usage.full) {
                let (name, bytes, quota) = (&class.name, usage.bytes, class.quota_bytes);
                match (usage.full, class.on_full) {
                    (true, OnFull::RefuseIngest) => {
                        tracing::error!(class = %name, bytes, quota, "Archive class at its quota: publishes to its topics are refused until files leave the window (or the quota is raised).")
                    }
                    (true, OnFull::StopArchiving) => {
                        tracing::error!(class = %name, bytes, quota, "Archive class at its quota: its messages are no longer archived (forwarded as before).")
                    }
                    (false, _) => tracing::info!(class = %name, bytes, quota, "Archive class below its quota again."),
                }
            }
        }
        failed.map_or(Ok(()), Err)
    }
}
