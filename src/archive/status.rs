//! The archive in `/api/health`: per class its window, files, bytes, quota and whether it is
//! full (and what that does), its legal hold; the archive's lag and last flush.

use edge_gateway_actors::metrics::{ClassLabels, Metrics};
use serde_json::{Value, json};

use super::{Classes, retention};
use crate::config::ArchiveConfig;

/// The `archive` object of `/api/health`.
pub fn health_json(config: &ArchiveConfig, classes: &Classes, metrics: &Metrics) -> Value {
    let a = &metrics.archive;
    let per_class: Vec<Value> = (0..classes.len())
        .map(|i| {
            let c = classes.get(i);
            let l = ClassLabels { class: c.name.clone() };
            json!({
                "name": c.name,
                "min_keep_days": c.min_keep_days,
                "max_keep_days": c.max_keep_days,
                "files": a.files.get_or_create(&l).get(),
                "bytes": a.stored_bytes.get_or_create(&l).get(),
                "quota_bytes": c.quota_bytes,
                "full": classes.is_full(i),
                "on_full": c.on_full.as_str(),
                "refusing_ingest": classes.is_full(i) && c.on_full == crate::config::OnFull::RefuseIngest,
                "skipped_messages": a.skipped.get_or_create(&l).get(),
                "legal_hold": retention::hold_of(&config.dir, c).map(|h| h.reason),
            })
        })
        .collect();
    json!({
        "dir": config.dir.display().to_string(),
        "lag_messages": a.lag_messages.get(),
        "last_flush_unix_s": a.last_flush.get(),
        "upload_pending_bytes": a.upload_pending_bytes.get(),
        "classes": per_class,
    })
}
