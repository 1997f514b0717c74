//! How redb's errors become [`StoreError`]s: damage (quarantined), an I/O fault of the disk, or
//! an engine error.

use std::path::Path;

use crate::storage::store::StoreError;

/// How a failure to open the file is reported: damage (quarantine) or an operator's problem.
pub(super) fn open_error(path: &Path, e: ::redb::DatabaseError) -> StoreError {
    use ::redb::{DatabaseError, StorageError};
    let damaged = match &e {
        DatabaseError::Storage(StorageError::Corrupted(_)) => true,
        DatabaseError::Storage(StorageError::Io(io)) => {
            matches!(io.kind(), std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof)
        }
        _ => false,
    };
    StoreError::Open { path: path.display().to_string(), reason: e.to_string(), damaged }
}

/// An I/O error of the disk (or one redb latched from before), as opposed to bad content.
fn is_io(e: &::redb::StorageError) -> bool {
    matches!(e, ::redb::StorageError::Io(_) | ::redb::StorageError::PreviousIo)
}

fn classify(io: bool, message: String) -> StoreError {
    if io { StoreError::Io(message) } else { StoreError::Damaged(message) }
}

impl From<::redb::StorageError> for StoreError {
    fn from(e: ::redb::StorageError) -> Self {
        classify(is_io(&e), e.to_string())
    }
}

macro_rules! redb_from {
    ($($t:ident),*) => {$(
        impl From<::redb::$t> for StoreError {
            fn from(e: ::redb::$t) -> Self {
                let io = matches!(&e, ::redb::$t::Storage(s) if is_io(s));
                classify(io, e.to_string())
            }
        }
    )*};
}
redb_from!(TransactionError, TableError, CommitError);

impl From<::redb::SetDurabilityError> for StoreError {
    fn from(e: ::redb::SetDurabilityError) -> Self {
        StoreError::Engine(e.to_string())
    }
}
