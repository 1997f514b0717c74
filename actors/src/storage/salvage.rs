//! `store salvage`: every record that can still be read from a damaged (quarantined) store
//! file of either engine, through the engine when it opens, else by scanning its raw bytes; and
//! their import into a store (of either engine), keeping their keys.

use std::path::{Path, PathBuf};

use super::backend::{BackendKind, Meta, suffixed};
use super::store::{Store, StoreError};
use crate::record::Record;

/// What `store salvage` could read from a quarantined file.
#[derive(Debug, Default)]
pub struct Salvaged {
    /// Encoded records (each still carries its original idempotency key), in seq order.
    pub values: Vec<Vec<u8>>,
    /// Rows that could not be read or decoded (engine read only).
    pub skipped: usize,
    /// The engine that wrote the file.
    pub kind: BackendKind,
    /// How they were found: `"engine"` (the file still opens) or `"raw scan"` (it does not:
    /// the records were found in its bytes).
    pub method: &'static str,
    /// Why the engine could not open the file, when it was scanned instead.
    pub open_error: Option<String>,
}

/// Receive times a record found by a raw scan must lie between (2017 .. 2100, in ms).
const PLAUSIBLE_RECEIVED_MS: std::ops::RangeInclusive<u64> = 1_500_000_000_000..=4_102_444_800_000;

impl Store {
    /// Read every record that can still be read from a (quarantined) store file of either
    /// engine (told apart by [`BackendKind::detect`]): through the engine when it opens, else
    /// by scanning its bytes (and a SQLite file's log) for encoded records (see
    /// [`scan_records`]). The file itself is not modified: both engines repair on open, so a
    /// copy is opened (`<file>.salvage-copy`, and its `-wal`; removed afterwards; needs that
    /// much free space).
    pub fn salvage(path: &Path) -> Result<Salvaged, StoreError> {
        let kind = BackendKind::detect(path);
        let copy = path.with_extension("salvage-copy");
        // Left over from a salvage that was killed: a stale log next to the copy would be
        // replayed into it.
        for file in BackendKind::Sqlite.scratch_files(&copy) {
            let _ = std::fs::remove_file(file);
        }
        let pairs: Vec<(PathBuf, PathBuf)> = vec![(path.to_path_buf(), copy.clone()), (suffixed(path, "-wal"), suffixed(&copy, "-wal"))];
        for (from, to) in &pairs {
            if from == path || from.exists() {
                std::fs::copy(from, to).map_err(|e| StoreError::Io(format!("cannot copy {} to {}: {e}", from.display(), to.display())))?;
            }
        }
        let result = Self::salvage_in_place(kind, &copy);
        for file in BackendKind::Sqlite.scratch_files(&copy) {
            let _ = std::fs::remove_file(file);
        }
        result
    }

    fn salvage_in_place(kind: BackendKind, path: &Path) -> Result<Salvaged, StoreError> {
        let opened = kind.open(path);
        let mut out = Salvaged { kind, method: "engine", ..Salvaged::default() };
        match opened {
            Ok(backend) => {
                let read = backend.scan(0, &mut |seq, value| {
                    match Record::decode(seq, value) {
                        Ok(_) => out.values.push(value.to_vec()),
                        Err(_) => out.skipped += 1,
                    }
                    Ok(true)
                });
                if let Err(e) = read {
                    tracing::warn!(error = %e, read = out.values.len(), "Salvage: the engine stopped reading partway; keeping what it read.");
                    out.skipped += 1;
                }
                Ok(out)
            }
            // Only a damaged file is scanned: one that is locked, of another version or
            // unreadable is an error to fix, not a reason to resurrect stale page copies.
            Err(err) if !err.is_corruption() => Err(err),
            Err(err) => {
                let mut bytes = Vec::new();
                for file in kind.files(path) {
                    match std::fs::read(&file) {
                        Ok(b) => bytes.extend_from_slice(&b),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound && file != path => {}
                        Err(e) => return Err(StoreError::Io(format!("cannot read {}: {e}", file.display()))),
                    }
                }
                Ok(Salvaged { values: scan_records(&bytes), method: "raw scan", open_error: Some(err.to_string()), ..out })
            }
        }
    }

    /// Append already-encoded records (from [`Store::salvage`]) after the current ones, keeping
    /// their idempotency keys (so the cloud drops the ones it already has). Only while no
    /// gateway runs on this store: it writes outside the storage actor.
    pub fn import(&self, values: &[Vec<u8>]) -> Result<u64, StoreError> {
        self.backend()?.write(&mut |t| {
            let mut next = t.meta(Meta::NextSeq)?.unwrap_or(0);
            let mut bytes = t.meta(Meta::BacklogBytes)?.unwrap_or(0);
            for v in values {
                t.insert_message(next, v)?;
                next += 1;
                bytes += v.len() as u64;
            }
            t.set_meta(Meta::NextSeq, next)?;
            t.set_meta(Meta::BacklogBytes, bytes)
        })?;
        Ok(values.len() as u64)
    }
}

/// Records found in the raw bytes of a store file that its engine can no longer open, in key
/// order, one per idempotency key.
///
/// A record is recognised by its header (a known format version, a receive time between 2017 and
/// 2100, QoS 0 or 1, a key ending in `:<seq>`) and must then decode completely. redb writes
/// copy-on-write, so a scan also finds older copies of pages, including records that were
/// already delivered and deleted: they come back with their original keys, so the cloud drops
/// them as duplicates (SQLite's log and free pages hold such copies too). Records kept apart
/// for failing their schema carry no key and are not salvaged (they were never to be forwarded). A SQLite record larger
/// than about a page is split over overflow pages and is not found by the scan. The record format has no checksum of its own: a payload damaged inside
/// an otherwise intact record is not detected.
pub fn scan_records(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut found: std::collections::BTreeMap<(String, u64), Vec<u8>> = std::collections::BTreeMap::new();
    let mut i = 0;
    while i + 12 <= bytes.len() {
        if let Some((prefix, seq)) = plausible_header(&bytes[i..])
            && let Ok((_, used)) = Record::decode_prefix(seq, &bytes[i..])
        {
            found.entry((prefix, seq)).or_insert_with(|| bytes[i..i + used].to_vec());
            i += used;
            continue;
        }
        i += 1;
    }
    found.into_values().collect()
}

/// The key's gateway id and seq when `b` starts like an encoded record.
fn plausible_header(b: &[u8]) -> Option<(String, u64)> {
    if !(1..=crate::record::VERSION).contains(&b[0]) {
        return None;
    }
    let received = u64::from_le_bytes(b[1..9].try_into().ok()?);
    if !PLAUSIBLE_RECEIVED_MS.contains(&received) || b[9] > 1 {
        return None;
    }
    let len = u16::from_le_bytes([b[10], b[11]]) as usize;
    let key = std::str::from_utf8(b.get(12..12 + len)?).ok()?;
    let (prefix, seq) = key.rsplit_once(':')?;
    if prefix.is_empty() || seq.is_empty() || !seq.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some((prefix.to_string(), seq.parse().ok()?))
}
