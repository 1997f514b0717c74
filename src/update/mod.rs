//! Signed self-update with rollback.
//!
//! A **bundle** is a release binary and its minisign signature beside it (`BINARY.minisig`),
//! as `scripts/release.sh` writes them; the signature's trusted comment says what the binary
//! is (`edge-gateway 0.2.0 store=1 records=1-3`, from `edge-gateway update describe`), so the
//! version and the store formats are signed with the binary.
//!
//! - [`minisign`] and [`blake2b`]: verification against the keys in `update.public_keys`.
//! - [`release`]: the trusted comment, and whether a release may replace the running one
//!   (newer, and each of the two reads what the other writes, so a rollback is possible).
//! - [`state`]: `data_dir/update/state.json`, the one record of an update in progress or done,
//!   and `data_dir/gateway.pid`.
//!
//! `edge-gateway update apply` (`src/cli/update.rs`) stages the bundle as `PATH.new`, verifies
//! that copy, signals the gateway and waits; once the new version is committed it renames it
//! over `PATH` (the old one kept as `PATH.prev`), on a rollback it removes it. The gateway, on
//! SIGUSR2, stops gracefully and switches (`src/cli/switch.rs`): it starts the staged binary,
//! waits for it to start and through its probation, and becomes the previous version again if
//! it does not.

pub mod blake2b;
pub mod minisign;
pub mod release;
pub mod state;

use std::path::Path;

/// What can go wrong with an update, each naming its cause.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A configured public key is not a minisign key.
    #[error("public key: {0}")]
    Key(String),
    /// The `.minisig` file is not a minisign signature.
    #[error("signature file: {0}")]
    SignatureFile(String),
    /// Signed by a key that is not in `update.public_keys`.
    #[error("signed by key {0}, which is not in update.public_keys")]
    UnknownKey(String),
    /// The signature does not match the file or its trusted comment (tampered).
    #[error("the signature does not match: the bundle or its trusted comment was changed")]
    BadSignature,
    /// The trusted comment does not describe an edge-gateway release.
    #[error("not an edge-gateway release: {0}")]
    NotARelease(String),
    /// Not newer than the running version.
    #[error("the bundle is version {bundle}, not newer than the running {running}")]
    NotNewer {
        /// The bundle's version.
        bundle: String,
        /// This build's.
        running: String,
    },
    /// One of the two versions could not read the store the other writes.
    #[error("store formats: {0}")]
    Format(String),
    /// The update's state file cannot be parsed.
    #[error("{path}: {reason}")]
    State {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// Another `update apply` holds the lock.
    #[error("another `update apply` holds {0}")]
    Locked(String),
    /// Installing, signalling or waiting failed.
    #[error("{0}")]
    Apply(String),
}

impl UpdateError {
    pub(crate) fn read(path: &Path, source: std::io::Error) -> UpdateError {
        UpdateError::Read { path: path.display().to_string(), source }
    }
}

/// The signature file of a bundle binary: `BINARY.minisig`.
pub fn signature_path(binary: &Path) -> std::path::PathBuf {
    let mut name = binary.as_os_str().to_owned();
    name.push(".minisig");
    name.into()
}
