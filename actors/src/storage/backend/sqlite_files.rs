//! What is checked, and kept safe, before SQLite opens a store file.
//!
//! SQLite is forgiving in two ways that would lose acknowledged messages here:
//! - a write-ahead log whose header is damaged is silently ignored (treated as empty), so every
//!   commit still in the log disappears without an error;
//! - closing a connection deletes the log, also after an open that failed because the database
//!   file is damaged: the newest commits (often all of them: the log is only copied into the
//!   database every ~1,000 pages) are gone before the store can be quarantined and salvaged.
//!
//! So the headers of both files are checked by hand first (a bad one is reported as damage),
//! and while SQLite opens the file the log is kept under a second name (a hard link, or a copy
//! where the file system has none): if the open fails, the log is put back for quarantine and
//! salvage.

use std::path::{Path, PathBuf};

use super::suffixed;
use crate::storage::store::StoreError;

/// The first 16 bytes of every SQLite database file.
pub(super) const MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// Appended to the log's name for its second name while a store opens.
pub(super) const WAL_GUARD: &str = "-wal.open-guard";
/// Appended to the database's name for the file that holds the store's `flock` (not the
/// database itself: closing any descriptor of the database would drop SQLite's own POSIX
/// locks of this process).
pub(super) const LOCK: &str = ".lock";

/// The two magic numbers of a write-ahead log header (big- and little-endian checksums).
const WAL_MAGIC: [u32; 2] = [0x377f_0682, 0x377f_0683];
/// The only log format version there is.
const WAL_VERSION: u32 = 3_007_000;

/// Damage found in a header: the database's magic, or the log's magic, version or checksum.
pub(super) fn check_headers(db: &Path) -> Result<(), StoreError> {
    let damaged = |reason: String| StoreError::Open { path: db.display().to_string(), reason, damaged: true };
    let db_head = read_head(db, 16);
    if !db_head.is_empty() && db_head.len() == 16 && db_head != MAGIC {
        return Err(damaged("the database header is not SQLite's".into()));
    }
    if !db_head.is_empty() && db_head.len() < 16 {
        return Err(damaged("the database file is shorter than its header".into()));
    }
    let wal = suffixed(db, "-wal");
    // A log too short to hold one whole frame holds no commit (SQLite writes and syncs its
    // header before the first frame: a power cut can leave a torn header alone).
    let page_size = match db_head.len() {
        16 => page_size(db),
        _ => 512,
    };
    let wal_len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    if wal_len < 32 + 24 + page_size {
        return Ok(());
    }
    let head = read_head(&wal, 32);
    let word = |i: usize| u32::from_be_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
    if !WAL_MAGIC.contains(&word(0)) || word(4) != WAL_VERSION {
        return Err(damaged(format!("the header of {} is not a SQLite log's", wal.display())));
    }
    let (s0, s1) = wal_checksum(&head[..24], word(0) & 1 == 1);
    if (s0, s1) != (word(24), word(28)) {
        return Err(damaged(format!("the header checksum of {} does not match", wal.display())));
    }
    Ok(())
}

/// The database's page size from its header (bytes 16-17, big-endian, 1 meaning 65,536); the
/// smallest there is (512) when unreadable.
fn page_size(db: &Path) -> u64 {
    match read_head(db, 18).get(16..18) {
        Some([0, 1]) => 65_536,
        Some(&[hi, lo]) if u16::from_be_bytes([hi, lo]) >= 512 => u64::from(u16::from_be_bytes([hi, lo])),
        _ => 512,
    }
}

/// Up to `n` bytes from the start of `path` (none if it is missing or unreadable).
fn read_head(path: &Path, n: usize) -> Vec<u8> {
    use std::io::Read;
    let mut head = Vec::with_capacity(n);
    if let Ok(file) = std::fs::File::open(path) {
        let _ = file.take(n as u64).read_to_end(&mut head);
    }
    head
}

/// SQLite's log checksum over `data` (a multiple of 8 bytes), words read big-endian when
/// `big_endian`, as in `walChecksumBytes`.
fn wal_checksum(data: &[u8], big_endian: bool) -> (u32, u32) {
    let word = |b: &[u8]| {
        let b = [b[0], b[1], b[2], b[3]];
        if big_endian { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) }
    };
    let (mut s0, mut s1) = (0u32, 0u32);
    for pair in data.chunks_exact(8) {
        s0 = s0.wrapping_add(word(&pair[..4])).wrapping_add(s1);
        s1 = s1.wrapping_add(word(&pair[4..])).wrapping_add(s0);
    }
    (s0, s1)
}

/// The log kept under a second name while SQLite opens the database; put back by
/// [`WalGuard::restore`] (a failed open), dropped by [`WalGuard::release`].
pub(super) struct WalGuard {
    /// `<db>-wal`.
    wal: PathBuf,
    /// `<db>-wal.open-guard`, when a log existed.
    kept: Option<PathBuf>,
}

impl WalGuard {
    /// Link the log (if any) to `<db>-wal.open-guard`. A guard left by a crash in a previous
    /// open is resolved first: put back if the log is gone, else dropped.
    pub(super) fn keep(db: &Path) -> Result<Self, StoreError> {
        let wal = suffixed(db, "-wal");
        let kept = suffixed(db, WAL_GUARD);
        let io = |e: std::io::Error| StoreError::Open { path: db.display().to_string(), reason: e.to_string(), damaged: false };
        if kept.exists() {
            if wal.exists() { std::fs::remove_file(&kept) } else { std::fs::rename(&kept, &wal) }.map_err(io)?;
        }
        if !wal.exists() {
            return Ok(Self { wal, kept: None });
        }
        // A file system without hard links (vfat) gets a copy instead.
        std::fs::hard_link(&wal, &kept).or_else(|_| std::fs::copy(&wal, &kept).map(drop)).map_err(io)?;
        Ok(Self { wal, kept: Some(kept) })
    }

    /// The open succeeded: SQLite owns its log again.
    pub(super) fn release(mut self) {
        if let Some(kept) = self.kept.take() {
            let _ = std::fs::remove_file(kept);
        }
    }

    /// The open failed: the log goes back where it was, whatever SQLite did to its name.
    fn restore(&mut self) {
        let Some(kept) = self.kept.take() else { return };
        let result = if self.wal.exists() { std::fs::remove_file(&kept) } else { std::fs::rename(&kept, &self.wal) };
        if let Err(e) = result {
            tracing::error!(log = %self.wal.display(), kept = %kept.display(), error = %e, "Cannot put the store's log back after a failed open; it is kept under the second name.");
        }
    }
}

impl Drop for WalGuard {
    fn drop(&mut self) {
        self.restore();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_header_checksum_is_sqlites() {
        // A log the bundled SQLite wrote passes; one byte of its checkpoint sequence changed
        // (covered only by the header checksum) does not.
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("t.sqlite");
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0)).unwrap();
        conn.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);").unwrap();
        check_headers(&db).expect("a log SQLite wrote passes");
        let wal = suffixed(&db, "-wal");
        let mut bytes = std::fs::read(&wal).unwrap();
        bytes[12] ^= 0xFF;
        std::fs::write(&wal, &bytes).unwrap();
        assert!(check_headers(&db).unwrap_err().is_corruption());
        drop(conn);
    }

    #[test]
    fn a_torn_log_header_without_a_frame_is_not_damage() {
        // What a power cut can leave: SQLite synced the header of a new log, or began to, and
        // wrote no frame; nothing in it was committed.
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("t.sqlite");
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0)).unwrap();
        conn.execute_batch("CREATE TABLE t (x);").unwrap();
        drop(conn);
        std::fs::write(suffixed(&db, "-wal"), [0u8; 32]).unwrap();
        check_headers(&db).expect("a header alone holds no commit");
        std::fs::write(suffixed(&db, "-wal"), vec![0u8; 32 + 24 + 4096]).unwrap();
        assert!(check_headers(&db).unwrap_err().is_corruption(), "a frame's worth behind a bad header is damage");
    }
}
