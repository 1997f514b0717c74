//! `archive/audit.jsonl`: an append-only JSON-lines log of every deletion and every legal hold
//! set or released, with who and why; fsync'ed before the action it records takes effect.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::Path;

use serde::Serialize;

use super::ArchiveError;

/// The file name inside the archive dir.
pub const FILE: &str = "audit.jsonl";

/// One audit record.
#[derive(Debug, Clone, Serialize)]
pub struct AuditLine<'a> {
    /// When (ms since the Unix epoch).
    pub at_ms: u64,
    /// `delete`, `hold` or `release`.
    pub action: &'a str,
    /// The class.
    pub class: &'a str,
    /// The file, for a deletion.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<&'a str>,
    /// `max_keep`, `quota`, `operator` (deletions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    /// The age, the quota, or the operator's words.
    pub detail: &'a str,
    /// `archive actor`, or the operator's user and `--force` when given.
    pub by: &'a str,
}

/// Append `lines` and fsync.
pub fn append(dir: &Path, lines: &[AuditLine<'_>]) -> Result<(), ArchiveError> {
    let path = dir.join(FILE);
    let mut text = String::new();
    for line in lines {
        text.push_str(&serde_json::to_string(line).map_err(|e| ArchiveError::Manifest(e.to_string()))?);
        text.push('\n');
    }
    let created = !path.exists();
    let mut file = OpenOptions::new().create(true).append(true).open(&path).map_err(|e| ArchiveError::io(&path, e))?;
    file.write_all(text.as_bytes()).and_then(|()| file.sync_all()).map_err(|e| ArchiveError::io(&path, e))?;
    if created {
        let _ = crate::atomic_file::give_to_owner(dir, &path);
        super::files::sync_dir(dir)?;
    }
    Ok(())
}
