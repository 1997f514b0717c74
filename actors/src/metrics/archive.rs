//! The archive's metrics (the retention tier, `src/archive/` in the root crate): what it wrote,
//! what it keeps, what it deleted and uploaded, by retention class.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use std::fmt::{self, Write as _};

label_values! {
    /// Why an archive file was deleted (`gateway_archive_deletions_total`).
    pub enum ArchiveDeletion {
        /// Older than its class's `max_keep_days` (the archive actor).
        MaxKeep => "max_keep",
        /// Past `min_keep_days`, deleted to bring the class under its quota.
        Quota => "quota",
        /// By an operator (`edge-gateway archive delete`), with a logged reason.
        Operator => "operator",
    }
}

label_values! {
    /// How an upload of a closed file (or the manifest) ended.
    pub enum UploadResult {
        /// Stored and its checksum verified.
        Ok => "ok",
        /// Failed (retried with backoff).
        Failed => "failed",
    }
}

/// `{class}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ClassLabels {
    /// The retention class's name from the config.
    pub class: String,
}

/// `{class, reason}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct DeletionLabels {
    /// The retention class's name from the config.
    pub class: String,
    /// Why.
    pub reason: ArchiveDeletion,
}

/// `{result}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct UploadLabels {
    /// How it ended.
    pub result: UploadResult,
}

/// Handles to the archive's metrics.
#[derive(Clone, Default)]
pub struct ArchiveMetrics {
    /// Messages written into closed archive files.
    pub messages: Family<ClassLabels, Counter>,
    /// Bytes of closed archive files written.
    pub bytes: Family<ClassLabels, Counter>,
    /// Archive files kept now.
    pub files: Family<ClassLabels, Gauge>,
    /// Bytes of the archive files kept now (what the quota counts).
    pub stored_bytes: Family<ClassLabels, Gauge>,
    /// The class's quota (0: none).
    pub quota_bytes: Family<ClassLabels, Gauge>,
    /// 1 while the class is at its quota.
    pub full: Family<ClassLabels, Gauge>,
    /// Newest message time of the oldest file kept (unix seconds; 0: no file).
    pub oldest_file: Family<ClassLabels, Gauge>,
    /// Newest message time of the newest file kept (unix seconds; 0: no file).
    pub newest_file: Family<ClassLabels, Gauge>,
    /// Messages not archived because their class was full with `on_full = "stop_archiving"`.
    pub skipped: Family<ClassLabels, Counter>,
    /// Files deleted, by class and reason.
    pub deletions: Family<DeletionLabels, Counter>,
    /// Stored messages the archive has not yet written into a closed file.
    pub lag_messages: Gauge,
    /// When the archive last closed its files, or found nothing to close (unix seconds).
    pub last_flush: Gauge,
    /// Failed flushes (the files are written again from the store).
    pub flush_failures: Counter,
    /// Bytes of closed files not yet uploaded.
    pub upload_pending_bytes: Gauge,
    /// Uploads by result.
    pub uploads: Family<UploadLabels, Counter>,
}

impl ArchiveMetrics {
    /// Create the series of `classes` at 0, and the upload results.
    pub fn zero(&self, classes: &[String]) {
        for class in classes {
            let c = ClassLabels { class: class.clone() };
            let _ = (self.messages.get_or_create(&c), self.bytes.get_or_create(&c), self.files.get_or_create(&c));
            let _ = (self.stored_bytes.get_or_create(&c), self.full.get_or_create(&c), self.skipped.get_or_create(&c));
            let _ = (self.oldest_file.get_or_create(&c), self.newest_file.get_or_create(&c));
            for &reason in ArchiveDeletion::ALL {
                let _ = self.deletions.get_or_create(&DeletionLabels { class: class.clone(), reason });
            }
        }
        for &result in UploadResult::ALL {
            let _ = self.uploads.get_or_create(&UploadLabels { result });
        }
    }

    /// Register under `gateway_archive_`.
    pub(super) fn register(&self, r: &mut Registry) {
        let r = r.sub_registry_with_prefix("archive");
        r.register("messages", "Messages written into closed archive files, by class", self.messages.clone());
        r.register_with_unit("written", "Bytes of closed archive files written, by class", Unit::Bytes, self.bytes.clone());
        r.register("files", "Archive files kept, by class", self.files.clone());
        r.register_with_unit("stored", "Bytes of the archive files kept (what the quota counts)", Unit::Bytes, self.stored_bytes.clone());
        r.register_with_unit("quota", "The class's archive quota (0: none)", Unit::Bytes, self.quota_bytes.clone());
        r.register("full", "1 while the class is at its quota", self.full.clone());
        r.register_with_unit(
            "oldest_file_timestamp",
            "Newest message time in the oldest archive file kept (unix time; 0: none)",
            Unit::Seconds,
            self.oldest_file.clone(),
        );
        r.register_with_unit(
            "newest_file_timestamp",
            "Newest message time in the newest archive file kept (unix time; 0: none)",
            Unit::Seconds,
            self.newest_file.clone(),
        );
        r.register("skipped", "Messages not archived: class full with on_full = stop_archiving", self.skipped.clone());
        r.register("deletions", "Archive files deleted, by class and reason", self.deletions.clone());
        r.register("lag_messages", "Stored messages not yet in a closed archive file", self.lag_messages.clone());
        r.register_with_unit(
            "last_flush_timestamp",
            "When the archive last closed its open files (unix time)",
            Unit::Seconds,
            self.last_flush.clone(),
        );
        r.register("flush_failures", "Archive flushes that failed (written again from the store)", self.flush_failures.clone());
        r.register_with_unit(
            "upload_pending",
            "Bytes of closed archive files not yet uploaded",
            Unit::Bytes,
            self.upload_pending_bytes.clone(),
        );
        r.register("uploads", "Uploads of archive files and the manifest, by result", self.uploads.clone());
    }
}
