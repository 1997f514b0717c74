//! `store salvage`: every record that can still be read from a damaged (quarantined) store
//! file, through redb when it opens, else by scanning its raw bytes; and their import into a
//! store, keeping their keys.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable};

use super::store::{BACKLOG_BYTES, MESSAGES, META, NEXT_SEQ, Store, StoreError};
use crate::record::Record;

/// What `store salvage` could read from a quarantined file.
#[derive(Debug, Default)]
pub struct Salvaged {
    /// Encoded records (each still carries its original idempotency key), in seq order.
    pub values: Vec<Vec<u8>>,
    /// Rows that could not be read or decoded (redb read only).
    pub skipped: usize,
    /// How they were found: `"redb"` (the file still opens) or `"raw scan"` (it does not: the
    /// records were found in its bytes).
    pub method: &'static str,
    /// Why redb could not open the file, when it was scanned instead.
    pub open_error: Option<String>,
}

/// Receive times a record found by a raw scan must lie between (2017 .. 2100, in ms).
const PLAUSIBLE_RECEIVED_MS: std::ops::RangeInclusive<u64> = 1_500_000_000_000..=4_102_444_800_000;

impl Store {
    /// Read every record that can still be read from a (quarantined) store file: through redb
    /// when it opens, else by scanning its bytes for encoded records (see [`scan_records`]).
    /// The file itself is not modified: redb repairs on open, so it opens a copy
    /// (`<file>.salvage-copy`, removed afterwards; needs that much free space).
    pub fn salvage(path: &Path) -> Result<Salvaged, StoreError> {
        let copy = path.with_extension("salvage-copy");
        std::fs::copy(path, &copy).map_err(|e| StoreError::Io(format!("cannot copy {} to {}: {e}", path.display(), copy.display())))?;
        let result = Self::salvage_in_place(&copy);
        let _ = std::fs::remove_file(&copy);
        result
    }

    fn salvage_in_place(path: &Path) -> Result<Salvaged, StoreError> {
        match Database::open(path) {
            Ok(db) => {
                let txn = db.begin_read()?;
                let table = txn.open_table(MESSAGES)?;
                let mut out = Salvaged { method: "redb", ..Salvaged::default() };
                for row in table.iter()? {
                    match row {
                        Ok((seq, v)) if Record::decode(seq.value(), v.value()).is_ok() => out.values.push(v.value().to_vec()),
                        _ => out.skipped += 1,
                    }
                }
                Ok(out)
            }
            Err(e) => {
                // Only a damaged file is scanned: one that is locked, of another version or
                // unreadable is an error to fix, not a reason to resurrect stale page copies.
                let open_error = e.to_string();
                let err = StoreError::Open { path: path.display().to_string(), source: e };
                if !err.is_corruption() {
                    return Err(err);
                }
                let bytes = std::fs::read(path).map_err(|io| StoreError::Io(format!("cannot read {}: {io}", path.display())))?;
                Ok(Salvaged { values: scan_records(&bytes), skipped: 0, method: "raw scan", open_error: Some(open_error) })
            }
        }
    }

    /// Append already-encoded records (from [`Store::salvage`]) after the current ones, keeping
    /// their idempotency keys (so the cloud drops the ones it already has). Only while no
    /// gateway runs on this store: it writes outside the storage actor.
    pub fn import(&self, values: &[Vec<u8>]) -> Result<u64, StoreError> {
        let db = self.db()?;
        let txn = db.begin_write()?;
        {
            let mut messages = txn.open_table(MESSAGES)?;
            let mut meta = txn.open_table(META)?;
            let mut next = meta.get(NEXT_SEQ)?.map(|v| v.value()).unwrap_or(0);
            let mut bytes = meta.get(BACKLOG_BYTES)?.map(|v| v.value()).unwrap_or(0);
            for v in values {
                messages.insert(next, v.as_slice())?;
                next += 1;
                bytes += v.len() as u64;
            }
            meta.insert(NEXT_SEQ, next)?;
            meta.insert(BACKLOG_BYTES, bytes)?;
        }
        txn.commit()?;
        Ok(values.len() as u64)
    }
}

/// Records found in the raw bytes of a store file that redb can no longer open, in key order,
/// one per idempotency key.
///
/// A record is recognised by its header (version 1 or 2, a receive time between 2017 and
/// 2100, QoS 0 or 1, a key ending in `:<seq>`) and must then decode completely. redb writes
/// copy-on-write, so a scan also finds older copies of pages, including records that were
/// already delivered and deleted: they come back with their original keys, so the cloud drops
/// them as duplicates. The record format has no checksum of its own: a payload damaged inside
/// an otherwise intact record is not detected.
pub fn scan_records(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut found: std::collections::BTreeMap<(String, u64), Vec<u8>> = std::collections::BTreeMap::new();
    let mut i = 0;
    while i + 12 <= bytes.len() {
        if let Some((prefix, seq)) = plausible_header(&bytes[i..]) {
            if let Ok((_, used)) = Record::decode_prefix(seq, &bytes[i..]) {
                found.entry((prefix, seq)).or_insert_with(|| bytes[i..i + used].to_vec());
                i += used;
                continue;
            }
        }
        i += 1;
    }
    found.into_values().collect()
}

/// The key's gateway id and seq when `b` starts like an encoded record.
fn plausible_header(b: &[u8]) -> Option<(String, u64)> {
    if b[0] != 1 && b[0] != 2 {
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
