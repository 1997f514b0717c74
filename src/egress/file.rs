//! The file sink: appends each message as one JSON line and fsyncs per batch.
//!
//! It is the embedded default's sink, so that `tail -f data/forwarded.jsonl` shows the flow
//! without a cloud. A resend after a crash appends the same keys again: dedupe by `key`.

use edge_gateway_actors::metrics::DeliveryKind;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use edge_gateway_actors::forwarder::{DeliveryError, Sink};
use edge_gateway_actors::record::Record;

use super::{EgressError, WireMessage};

/// Appends JSON lines to one file.
pub struct FileSink {
    /// The open file; the lock serialises writers (there is one forwarder per sink anyway).
    file: Arc<Mutex<File>>,
}

impl FileSink {
    /// Open (create) `path` for appending, creating its directory.
    pub fn open(path: &Path) -> Result<Self, EgressError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| EgressError::File { path: dir.to_path_buf(), source })?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| EgressError::File { path: path.to_path_buf(), source })?;
        Ok(Self { file: Arc::new(Mutex::new(file)) })
    }
}

#[async_trait]
impl Sink for FileSink {
    async fn deliver(&self, _batch_key: &str, batch: &[Record]) -> Result<(), DeliveryError> {
        let mut buf = Vec::with_capacity(batch.len() * 128);
        for r in batch {
            serde_json::to_writer(&mut buf, &WireMessage::new(r)).map_err(|e| DeliveryError::Rejected { detail: e.to_string() })?;
            buf.push(b'\n');
        }
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || {
            let mut f = file.lock().unwrap_or_else(|e| e.into_inner());
            f.write_all(&buf)?;
            f.sync_data()
        })
        .await
        .map_err(|e| DeliveryError::Transient { kind: DeliveryKind::Io, detail: e.to_string() })?
        .map_err(|e| DeliveryError::Transient { kind: DeliveryKind::Io, detail: e.to_string() })
    }
}
