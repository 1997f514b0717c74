//! The manifest: `archive/manifest.jsonl`, one JSON line per closed file (`add`) and per
//! deleted file (`delete`), hash chained: each entry's `prev` is the SHA-256 of the previous
//! line's bytes (64 zeros for the first), and `n` counts from 1. A changed, removed, inserted
//! or reordered entry breaks the chain; a changed or removed file no longer matches its
//! entry's `sha256` (`archive verify`). Entries are appended under `manifest.lock` (flock), by
//! the archive actor and by the CLI, and fsync'ed before anything that depends on them.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::os::fd::AsRawFd as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::ArchiveError;

/// The file name of the manifest inside the archive dir.
pub const FILE: &str = "manifest.jsonl";

/// The `prev` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One manifest line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// 1, 2, 3, ... in file order.
    pub n: u64,
    /// SHA-256 (hex) of the previous line.
    pub prev: String,
    /// What happened.
    #[serde(flatten)]
    pub op: Op,
    /// When (ms since the Unix epoch, gateway clock).
    pub at_ms: u64,
}

/// What an entry records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// A closed file.
    Add(FileEntry),
    /// A deleted file.
    Delete {
        /// Its path, relative to the archive dir.
        path: String,
        /// Its class.
        class: String,
        /// `max_keep`, `quota` or `operator`.
        reason: String,
        /// For people: the age, the quota, or the operator's reason.
        detail: String,
    },
}

/// A closed archive file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Relative to the archive dir: `<class>/<yyyy-mm-dd>/<hh>-<n>.parquet`.
    pub path: String,
    /// Its retention class.
    pub class: String,
    /// SHA-256 of the file, hex.
    pub sha256: String,
    /// Its size.
    pub bytes: u64,
    /// Messages in it.
    pub rows: u64,
    /// Oldest and newest receive time in it (ms).
    pub first_ms: i64,
    /// The newest receive time: retention counts a file's age from it.
    pub last_ms: i64,
    /// Every stored message below this seq is archived (or not archived by choice): the
    /// archive's cursor may move here.
    pub through_seq: u64,
}

/// The manifest as read: entries in file order, the hash of its last line, and every break in
/// the chain found while reading.
#[derive(Debug, Default)]
pub struct Manifest {
    /// Entries that parsed.
    pub entries: Vec<Entry>,
    /// SHA-256 of the last line (what the next entry's `prev` is).
    pub head: String,
    /// What does not hold: unparsable lines, gaps in `n`, broken `prev` links.
    pub problems: Vec<String>,
}

impl Manifest {
    /// Read and check the manifest in `dir` (none yet: empty).
    pub fn read(dir: &Path) -> Result<Manifest, ArchiveError> {
        let path = dir.join(FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(ArchiveError::io(&path, e)),
        };
        let mut m = Manifest { head: GENESIS.into(), ..Manifest::default() };
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            match serde_json::from_str::<Entry>(line) {
                Ok(entry) => {
                    if entry.n != line_no as u64 {
                        m.problems.push(format!("manifest line {line_no}: entry n = {} (entries removed, inserted or reordered)", entry.n));
                    }
                    if entry.prev != m.head {
                        m.problems.push(format!("manifest line {line_no}: prev does not match the line before (the chain is broken)"));
                    }
                    m.entries.push(entry);
                }
                Err(e) => m.problems.push(format!("manifest line {line_no}: not an entry: {e}")),
            }
            m.head = crate::sha256::hex(line.as_bytes());
        }
        if !text.is_empty() && !text.ends_with('\n') {
            m.problems.push("manifest: the last line is incomplete".into());
        }
        Ok(m)
    }

    /// The files kept now (added and not deleted), by path.
    pub fn live(&self) -> BTreeMap<String, FileEntry> {
        let mut live = BTreeMap::new();
        for e in &self.entries {
            match &e.op {
                Op::Add(f) => {
                    live.insert(f.path.clone(), f.clone());
                }
                Op::Delete { path, .. } => {
                    live.remove(path);
                }
            }
        }
        live
    }

    /// Paths with a `delete` entry.
    pub fn deleted(&self) -> Vec<String> {
        self.entries.iter().filter_map(|e| if let Op::Delete { path, .. } = &e.op { Some(path.clone()) } else { None }).collect()
    }

    /// The highest `through_seq` recorded (0: none).
    pub fn through_seq(&self) -> u64 {
        self.entries.iter().filter_map(|e| if let Op::Add(f) = &e.op { Some(f.through_seq) } else { None }).max().unwrap_or(0)
    }

    /// Every path ever added (live or deleted): a new file never takes one of these names.
    pub fn all_paths(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().filter_map(|e| if let Op::Add(f) = &e.op { Some(f.path.as_str()) } else { None })
    }
}

/// A lock on the manifest (released on drop): writers hold it exclusively from their first
/// manifest read to their last rename or unlink; readers (verify, query) hold it shared while
/// they take their snapshot, so they never see an entry whose file is not yet renamed.
pub struct Lock(#[allow(dead_code)] File);

/// Take the exclusive lock of `dir` (waits for other holders).
pub fn lock(dir: &Path) -> Result<Lock, ArchiveError> {
    take(dir, libc::LOCK_EX)
}

/// Take the shared (reader's) lock of `dir` (waits for a writer).
pub fn lock_shared(dir: &Path) -> Result<Lock, ArchiveError> {
    take(dir, libc::LOCK_SH)
}

fn take(dir: &Path, how: i32) -> Result<Lock, ArchiveError> {
    let path = dir.join("manifest.lock");
    let file = OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(|e| ArchiveError::io(&path, e))?;
    let _ = crate::atomic_file::give_to_owner(dir, &path);
    // SAFETY: flock(2) on a descriptor this function owns.
    if unsafe { libc::flock(file.as_raw_fd(), how) } != 0 {
        return Err(ArchiveError::io(&path, std::io::Error::last_os_error()));
    }
    Ok(Lock(file))
}

/// Append one entry per op (the caller holds [`lock`]) and fsync; returns the entries written.
/// A last line without its newline (a write cut short) is removed first: nothing was built on
/// it. A write or fsync that fails is cut off again, so the manifest never keeps half an entry.
pub fn append(dir: &Path, _lock: &Lock, ops: Vec<Op>, at_ms: u64) -> Result<Vec<Entry>, ArchiveError> {
    let path = dir.join(FILE);
    let io = |e| ArchiveError::io(&path, e);
    let created = !path.exists();
    let mut file = OpenOptions::new().create(true).read(true).append(true).open(&path).map_err(io)?;
    let len = cut_fragment(&mut file).map_err(io)?;
    let (mut n, mut head) = match last_line(&mut file).map_err(io)? {
        Some(line) => {
            let n = serde_json::from_str::<Entry>(&line)
                .map(|e| e.n)
                .map_err(|e| ArchiveError::Manifest(format!("the last entry does not parse: {e}")))?;
            (n, crate::sha256::hex(line.as_bytes()))
        }
        None => (0, GENESIS.to_string()),
    };
    let mut text = String::new();
    let mut written = Vec::new();
    for op in ops {
        n += 1;
        let entry = Entry { n, prev: head, op, at_ms };
        let line = serde_json::to_string(&entry).map_err(|e| ArchiveError::Manifest(e.to_string()))?;
        head = crate::sha256::hex(line.as_bytes());
        text.push_str(&line);
        text.push('\n');
        written.push(entry);
    }
    if let Err(e) = file.write_all(text.as_bytes()).and_then(|()| file.sync_all()) {
        let _ = file.set_len(len).and_then(|()| file.sync_all());
        return Err(io(e));
    }
    if created {
        let _ = crate::atomic_file::give_to_owner(dir, &path);
        super::files::sync_dir(dir)?;
    }
    Ok(written)
}

/// Remove a last line without its newline (logged); the length after.
fn cut_fragment(file: &mut File) -> std::io::Result<u64> {
    let len = file.seek(SeekFrom::End(0))?;
    if len == 0 {
        return Ok(0);
    }
    let mut last = [0u8; 1];
    file.seek(SeekFrom::Start(len - 1))?;
    file.read_exact(&mut last)?;
    if last[0] == b'\n' {
        return Ok(len);
    }
    let keep = last_line_start(file, len)?;
    tracing::warn!(bytes = len - keep, "The archive manifest ended in a cut-off line (an interrupted write); removed.");
    file.set_len(keep)?;
    file.sync_all()?;
    Ok(keep)
}

/// Where the last line of a file of `len` bytes starts (after the last newline before its end).
fn last_line_start(file: &mut File, len: u64) -> std::io::Result<u64> {
    let mut tail = 4096u64;
    loop {
        let start = len.saturating_sub(tail);
        file.seek(SeekFrom::Start(start))?;
        let mut buf = vec![0u8; (len - start) as usize];
        file.read_exact(&mut buf)?;
        match buf.iter().rposition(|&b| b == b'\n') {
            Some(i) => return Ok(start + i as u64 + 1),
            None if start == 0 => return Ok(0),
            None => tail *= 4,
        }
    }
}

/// The last complete line of `file` (without its newline), if any.
fn last_line(file: &mut File) -> std::io::Result<Option<String>> {
    let len = file.seek(SeekFrom::End(0))?;
    let mut tail = 4096u64;
    loop {
        let start = len.saturating_sub(tail);
        file.seek(SeekFrom::Start(start))?;
        let mut buf = Vec::new();
        file.read_to_end(&mut buf)?;
        let body = buf.strip_suffix(b"\n").unwrap_or(&buf);
        if body.is_empty() {
            return Ok(None);
        }
        match body.iter().rposition(|&b| b == b'\n') {
            Some(i) => return Ok(Some(String::from_utf8_lossy(&body[i + 1..]).into_owned())),
            None if start == 0 => return Ok(Some(String::from_utf8_lossy(body).into_owned())),
            None => tail *= 4,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(path: &str) -> Op {
        Op::Add(FileEntry {
            path: path.into(),
            class: "c".into(),
            sha256: "00".into(),
            bytes: 1,
            rows: 1,
            first_ms: 1,
            last_ms: 2,
            through_seq: 7,
        })
    }

    #[test]
    fn a_cut_off_last_line_is_removed_before_the_next_append() {
        let dir = tempfile::tempdir().unwrap();
        let l = lock(dir.path()).unwrap();
        append(dir.path(), &l, vec![add("c/a")], 10).unwrap();
        let mut f = OpenOptions::new().append(true).open(dir.path().join(FILE)).unwrap();
        f.write_all(b"{\"n\":2,\"prev\":\"ab").unwrap();
        assert!(!Manifest::read(dir.path()).unwrap().problems.is_empty(), "the fragment is seen");
        append(dir.path(), &l, vec![add("c/b")], 11).unwrap();
        let m = Manifest::read(dir.path()).unwrap();
        assert!(m.problems.is_empty(), "{:?}", m.problems);
        assert_eq!(m.entries.iter().map(|e| e.n).collect::<Vec<_>>(), vec![1, 2]);
    }

    #[test]
    fn entries_chain_and_any_reordering_or_removal_breaks_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let l = lock(dir.path()).unwrap();
        append(dir.path(), &l, vec![add("c/a"), add("c/b")], 10).unwrap();
        let del = Op::Delete { path: "c/a".into(), class: "c".into(), reason: "max_keep".into(), detail: String::new() };
        append(dir.path(), &l, vec![del, add("c/c")], 11).unwrap();
        let m = Manifest::read(dir.path()).unwrap();
        assert!(m.problems.is_empty(), "{:?}", m.problems);
        assert_eq!(m.entries.iter().map(|e| e.n).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
        assert_eq!(m.live().keys().cloned().collect::<Vec<_>>(), vec!["c/b".to_string(), "c/c".to_string()]);
        assert_eq!(m.through_seq(), 7);

        let text = std::fs::read_to_string(dir.path().join(FILE)).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let swapped = format!("{}\n{}\n{}\n{}\n", lines[0], lines[2], lines[1], lines[3]);
        std::fs::write(dir.path().join(FILE), swapped).unwrap();
        assert!(!Manifest::read(dir.path()).unwrap().problems.is_empty(), "reordered entries are found");
        let removed = format!("{}\n{}\n{}\n", lines[0], lines[2], lines[3]);
        std::fs::write(dir.path().join(FILE), removed).unwrap();
        assert!(!Manifest::read(dir.path()).unwrap().problems.is_empty(), "a removed entry is found");
        let changed = text.replacen("\"rows\":1", "\"rows\":2", 1);
        std::fs::write(dir.path().join(FILE), changed).unwrap();
        assert!(!Manifest::read(dir.path()).unwrap().problems.is_empty(), "a changed entry is found");
    }
}
