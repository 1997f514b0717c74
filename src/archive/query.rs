//! Reading the archive back, read-only (safe while the gateway runs): the files of a time
//! range from the manifest, their rows through the time-range pushdown in [`columns::read`].

use std::path::Path;

use super::ArchiveError;
use super::columns::{self, ArchivedRow, ReadStats, RowFilter};
use super::manifest::{FileEntry, Manifest};

/// The files kept now, oldest first (read under the shared lock: every file listed was
/// complete then).
pub fn list(dir: &Path) -> Result<Vec<FileEntry>, ArchiveError> {
    let _shared = super::manifest::lock_shared(dir)?;
    let mut files: Vec<FileEntry> = Manifest::read(dir)?.live().into_values().collect();
    files.sort_by(|a, b| (a.first_ms, &a.path).cmp(&(b.first_ms, &b.path)));
    Ok(files)
}

/// What a query read.
#[derive(Debug, Default, Clone, Copy)]
pub struct QueryStats {
    /// Files opened.
    pub files_read: usize,
    /// Files skipped by their manifest time range.
    pub files_skipped: usize,
    /// Row groups read and skipped inside the files opened.
    pub groups: ReadStats,
    /// Files deleted by retention between the listing and their reading.
    pub files_gone: usize,
}

/// The rows `filter` keeps, ordered by receive time (then seq).
pub fn query(dir: &Path, filter: &RowFilter) -> Result<(Vec<ArchivedRow>, QueryStats), ArchiveError> {
    let mut rows = Vec::new();
    let mut stats = QueryStats::default();
    for f in list(dir)? {
        let outside = filter.from_ms.is_some_and(|from| f.last_ms < from) || filter.to_ms.is_some_and(|to| f.first_ms >= to);
        if outside {
            stats.files_skipped += 1;
            continue;
        }
        let path = dir.join(&f.path);
        if !path.exists() {
            stats.files_gone += 1;
            continue;
        }
        let s = match columns::read(&path, filter, &mut rows) {
            Ok(s) => s,
            Err(_) if !path.exists() => {
                stats.files_gone += 1;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        stats.files_read += 1;
        stats.groups.groups_read += s.groups_read;
        stats.groups.groups_skipped += s.groups_skipped;
    }
    rows.sort_by_key(|r| (r.received_at_ms, r.seq));
    Ok((rows, stats))
}
