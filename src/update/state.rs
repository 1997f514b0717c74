//! `data_dir/update/state.json`: the one record of the last update (written atomically by the
//! CLI and by the switch), `data_dir/update/lock` (held by `update apply` while it runs), and
//! `data_dir/gateway.pid` (the running gateway's pid and release, written once it started).
//!
//! `update apply` runs as root and the gateway as its service user: every file and folder here
//! is given to the data dir's owner, and a symlink in their place is refused.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use edge_gateway_actors::metrics::UpdatePhase;
use serde::{Deserialize, Serialize};

use super::UpdateError;
use super::release::Release;

/// Where an update stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Staged and verified; the gateway is switching to it.
    Trying,
    /// The new version started; its probation runs.
    Started,
    /// The new version ran through its probation.
    Committed,
    /// The new version did not start in time, or exited during its probation (or a stop came
    /// during the switch): the previous one runs again.
    RolledBack,
}

impl Phase {
    /// Its metric label.
    pub fn label(self) -> UpdatePhase {
        match self {
            Phase::Trying => UpdatePhase::Trying,
            Phase::Started => UpdatePhase::Started,
            Phase::Committed => UpdatePhase::Committed,
            Phase::RolledBack => UpdatePhase::RolledBack,
        }
    }

    /// Still on its way (a switch may be running).
    pub fn in_progress(self) -> bool {
        matches!(self, Phase::Trying | Phase::Started)
    }
}

/// The last update.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UpdateState {
    /// Where it stands.
    pub phase: Phase,
    /// The version it replaces.
    pub from: String,
    /// The version it installs.
    pub to: String,
    /// Where the gateway's binary is installed.
    pub install: PathBuf,
    /// The verified new binary (`PATH.new`), renamed over `install` once committed.
    pub staged: PathBuf,
    /// SHA-256 of the new binary, hex.
    pub sha256: String,
    /// Why it was rolled back.
    #[serde(default)]
    pub reason: Option<String>,
    /// When this phase began (Unix ms).
    pub at_ms: u64,
}

/// `data_dir/update/state.json`.
pub fn state_path(data_dir: &Path) -> PathBuf {
    data_dir.join("update").join("state.json")
}

/// `data_dir/gateway.pid`.
pub fn pid_path(data_dir: &Path) -> PathBuf {
    data_dir.join("gateway.pid")
}

/// The last update, if any (an unreadable file is reported as `Err`).
pub fn read(data_dir: &Path) -> Result<Option<UpdateState>, UpdateError> {
    let path = state_path(data_dir);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| UpdateError::State { path: path.display().to_string(), reason: e.to_string() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(UpdateError::read(&path, e)),
    }
}

/// `data_dir/update/`, created for the data dir's owner (not a symlink).
fn update_dir(data_dir: &Path) -> std::io::Result<PathBuf> {
    let dir = data_dir.join("update");
    match std::fs::symlink_metadata(&dir) {
        Ok(m) if m.file_type().is_symlink() || !m.is_dir() => {
            return Err(std::io::Error::other(format!("{} is not a directory (a symlink?): refused", dir.display())));
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir(&dir)?;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750))?;
        }
        Err(e) => return Err(e),
    }
    crate::atomic_file::give_to_owner(data_dir, &dir)?;
    Ok(dir)
}

impl UpdateState {
    /// Write it (atomically, fsync'ed, readable by the gateway's user), with `phase` from now on.
    pub fn write(&mut self, data_dir: &Path, phase: Phase, reason: Option<String>) -> std::io::Result<()> {
        self.phase = phase;
        self.reason = reason;
        self.at_ms = edge_gateway_actors::storage::now_ms();
        update_dir(data_dir)?;
        let path = state_path(data_dir);
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        crate::atomic_file::write(&path, &json, Some(0o640))?;
        crate::atomic_file::give_to_owner(data_dir, &path)
    }
}

/// An exclusive lock on `data_dir/update/lock`, held while `update apply` runs: a second one
/// is refused at once.
pub struct ApplyLock(#[allow(dead_code)] std::fs::File);

/// Take the lock; `Err` names who holds it or what failed.
pub fn lock(data_dir: &Path) -> Result<ApplyLock, UpdateError> {
    use std::os::fd::AsRawFd as _;
    let dir = update_dir(data_dir).map_err(|e| UpdateError::Apply(format!("{}: {e}", data_dir.join("update").display())))?;
    let path = dir.join("lock");
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(|e| UpdateError::read(&path, e))?;
    let _ = crate::atomic_file::give_to_owner(data_dir, &path);
    // SAFETY: flock(2) on a descriptor this function owns.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(UpdateError::Locked(path.display().to_string()));
    }
    Ok(ApplyLock(file))
}

/// Record this process as the running gateway (after it started): its pid and what it is.
pub fn write_pid(data_dir: &Path) -> std::io::Result<()> {
    let text = format!("{}\n{}\n", std::process::id(), Release::running().describe());
    crate::atomic_file::write(&pid_path(data_dir), text.as_bytes(), Some(0o644))
}

/// The pid of the running gateway, from its file (`None`: no file or not a number).
pub fn read_pid(data_dir: &Path) -> Option<i32> {
    std::fs::read_to_string(pid_path(data_dir)).ok()?.lines().next()?.trim().parse().ok()
}

/// What the running gateway is, from its pid file (`None`: no file, or an older one).
pub fn read_running_release(data_dir: &Path) -> Option<Release> {
    let text = std::fs::read_to_string(pid_path(data_dir)).ok()?;
    Release::parse(text.lines().nth(1)?).ok()
}

/// Remove the pid file if it still names this process.
pub fn remove_pid(data_dir: &Path) {
    if read_pid(data_dir) == Some(std::process::id() as i32) {
        let _ = std::fs::remove_file(pid_path(data_dir));
    }
}
