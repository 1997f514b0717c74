//! Bulk export: closed files, then the manifest, copied to a folder or put into an S3 bucket
//! under the same relative names (`<prefix><class>/<yyyy-mm-dd>/<hh>-<n>.parquet`,
//! `<prefix>manifest.jsonl`), each checked after the upload (the folder's copy is read back
//! and hashed; S3 is sent the SHA-256 and asked for it back). A name always holds the same
//! bytes, so an upload repeated after a kill or an outage overwrites an identical object: no
//! duplicates, and `upload/uploaded.jsonl` (fsync'ed after each check) says what is done.
//! Until a file is uploaded, retention keeps it.

mod s3;
mod sigv4;

use std::collections::{BTreeMap, HashSet};
use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use edge_gateway_actors::metrics::{Metrics, UploadLabels, UploadResult};

use super::ArchiveError;
use super::manifest::{FileEntry, Manifest};
use crate::config::{ArchiveConfig, UploadTarget};

/// Files uploaded per run (the actor goes back to archiving in between).
const PER_RUN: usize = 64;

/// Where closed files go.
pub enum Uploader {
    /// Nowhere.
    None,
    /// Into this folder.
    Dir(PathBuf),
    /// Into an S3-compatible bucket.
    S3(s3::Bucket),
}

impl Uploader {
    /// The uploader `config` asks for (reads the S3 secret).
    pub fn new(config: &ArchiveConfig) -> Result<Self, ArchiveError> {
        Ok(match &config.upload {
            UploadTarget::None => Uploader::None,
            UploadTarget::Dir(dir) => Uploader::Dir(dir.clone()),
            UploadTarget::S3(target) => Uploader::S3(s3::Bucket::new(target)?),
        })
    }

    /// Live files not uploaded yet (none without a target).
    pub fn not_uploaded(&self, dir: &Path, live: &BTreeMap<String, FileEntry>) -> HashSet<String> {
        if matches!(self, Uploader::None) {
            return HashSet::new();
        }
        let done = uploaded(dir);
        live.keys().filter(|p| !done.contains(*p)).cloned().collect()
    }

    /// Upload what is pending (at most [`PER_RUN`] files; one that fails does not hold the
    /// others back), then the manifest if it changed; the first failure is returned.
    pub async fn run(&self, dir: &Path, metrics: &Metrics) -> Result<(), ArchiveError> {
        if matches!(self, Uploader::None) {
            return Ok(());
        }
        let (m, done) = {
            let (dir, lock_dir) = (dir.to_path_buf(), dir.to_path_buf());
            tokio::task::spawn_blocking(move || -> Result<_, ArchiveError> {
                let _shared = super::manifest::lock_shared(&lock_dir)?;
                Ok((Manifest::read(&dir)?, uploaded(&dir)))
            })
            .await
            .map_err(|e| ArchiveError::Upload(e.to_string()))??
        };
        let live = m.live();
        let pending: Vec<&FileEntry> = live.values().filter(|f| !done.contains(&f.path)).collect();
        let a = &metrics.archive;
        a.upload_pending_bytes.set(pending.iter().map(|f| f.bytes).sum::<u64>() as i64);
        let mut first_failure = None;
        for f in pending.iter().take(PER_RUN) {
            let result = self.put(&f.path, &dir.join(&f.path), &f.sha256).await;
            count(metrics, &result);
            if let Err(e) = result {
                tracing::warn!(file = %f.path, error = %e, "Archive upload failed; retrying at the next sweep.");
                first_failure.get_or_insert(e);
                continue;
            }
            record_uploaded(dir, &f.path)?;
            a.upload_pending_bytes.dec_by(f.bytes as i64);
            tracing::info!(file = %f.path, bytes = f.bytes, "Archive file uploaded and checked.");
        }
        if let Some(e) = first_failure {
            return Err(e);
        }
        let head_file = dir.join("upload").join("manifest.head");
        if std::fs::read_to_string(&head_file).ok().as_deref() != Some(m.head.as_str()) && !m.entries.is_empty() {
            let manifest = dir.join(super::manifest::FILE);
            let sha = crate::sha256::file(&manifest).map_err(|e| ArchiveError::io(&manifest, e))?;
            let result = self.put(super::manifest::FILE, &manifest, &sha).await;
            count(metrics, &result);
            result?;
            crate::atomic_file::write(&head_file, m.head.as_bytes(), None).map_err(|e| ArchiveError::io(&head_file, e))?;
        }
        Ok(())
    }

    /// Upload `path` as `name` and check that the target holds `sha256`.
    async fn put(&self, name: &str, path: &Path, sha256: &str) -> Result<(), ArchiveError> {
        match self {
            Uploader::None => Ok(()),
            Uploader::Dir(target) => {
                let dest = target.join(name);
                let (src, dest2) = (path.to_path_buf(), dest.clone());
                let sha256 = sha256.to_string();
                let name = name.to_string();
                tokio::task::spawn_blocking(move || {
                    let bytes = std::fs::read(&src).map_err(|e| ArchiveError::io(&src, e))?;
                    if crate::sha256::hex(&bytes) != sha256 {
                        return Err(ArchiveError::Upload(format!("{name}: the local file does not match its manifest entry")));
                    }
                    super::files::create_dirs(dest2.parent().unwrap_or(&dest2), dest2.parent().unwrap_or(&dest2))?;
                    crate::atomic_file::write(&dest2, &bytes, None).map_err(|e| ArchiveError::io(&dest2, e))?;
                    match crate::sha256::file(&dest2) {
                        Ok(got) if got == crate::sha256::hex(&bytes) => Ok(()),
                        Ok(_) => Err(ArchiveError::Upload(format!("{}: the copy does not match", dest2.display()))),
                        Err(e) => Err(ArchiveError::io(&dest2, e)),
                    }
                })
                .await
                .map_err(|e| ArchiveError::Upload(e.to_string()))?
            }
            Uploader::S3(bucket) => {
                let src = path.to_path_buf();
                let (bytes, sha) = tokio::task::spawn_blocking(move || {
                    let bytes = std::fs::read(&src).map_err(|e| ArchiveError::io(&src, e))?;
                    let sha = crate::sha256::hex(&bytes);
                    Ok::<_, ArchiveError>((bytes, sha))
                })
                .await
                .map_err(|e| ArchiveError::Upload(e.to_string()))??;
                if sha != sha256 {
                    return Err(ArchiveError::Upload(format!("{name}: the local file does not match its manifest entry")));
                }
                bucket.put_checked(name, bytes, &sha).await
            }
        }
    }
}

fn count(metrics: &Metrics, result: &Result<(), ArchiveError>) {
    let result = if result.is_ok() { UploadResult::Ok } else { UploadResult::Failed };
    metrics.archive.uploads.get_or_create(&UploadLabels { result }).inc();
}

/// The paths in `upload/uploaded.jsonl`.
fn uploaded(dir: &Path) -> HashSet<String> {
    let text = std::fs::read_to_string(dir.join("upload").join("uploaded.jsonl")).unwrap_or_default();
    text.lines().filter_map(|l| serde_json::from_str::<String>(l).ok()).collect()
}

fn record_uploaded(dir: &Path, path: &str) -> Result<(), ArchiveError> {
    let folder = dir.join("upload");
    super::files::create_dirs(dir, &folder)?;
    let file = folder.join("uploaded.jsonl");
    let line = format!("{}\n", serde_json::Value::from(path));
    let mut f = OpenOptions::new().create(true).append(true).open(&file).map_err(|e| ArchiveError::io(&file, e))?;
    f.write_all(line.as_bytes()).and_then(|()| f.sync_all()).map_err(|e| ArchiveError::io(&file, e))
}
