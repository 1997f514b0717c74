//! `data_dir/update/state.json`: the one record of the last update (written atomically by the
//! CLI and by the switch), and `data_dir/gateway.pid`, written once the gateway has started.

use std::path::{Path, PathBuf};

use edge_gateway_actors::metrics::UpdatePhase;
use serde::{Deserialize, Serialize};

/// Where an update stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Installed; the gateway is switching to it, or has not yet been asked to.
    Trying,
    /// The new version started and is running.
    Committed,
    /// The new version did not become ready (or exited during its probation): the previous
    /// binary runs again.
    RolledBack,
}

impl Phase {
    /// Its metric label.
    pub fn label(self) -> UpdatePhase {
        match self {
            Phase::Trying => UpdatePhase::Trying,
            Phase::Committed => UpdatePhase::Committed,
            Phase::RolledBack => UpdatePhase::RolledBack,
        }
    }
}

/// The last update.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UpdateState {
    /// Where it stands.
    pub phase: Phase,
    /// The version it replaced.
    pub from: String,
    /// The version it installed.
    pub to: String,
    /// Where the new binary is installed (the previous one is beside it, `.prev`).
    pub install: PathBuf,
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
pub fn read(data_dir: &Path) -> Result<Option<UpdateState>, String> {
    let path = state_path(data_dir);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

impl UpdateState {
    /// Write it (atomically, fsync'ed), with `phase` from now on.
    pub fn write(&mut self, data_dir: &Path, phase: Phase, reason: Option<String>) -> std::io::Result<()> {
        self.phase = phase;
        self.reason = reason;
        self.at_ms = edge_gateway_actors::storage::now_ms();
        let path = state_path(data_dir);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        crate::atomic_file::write(&path, &json, None)
    }
}

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    use std::io::Read as _;
    let mut f = std::fs::File::open(path)?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    Ok(ctx.finish().as_ref().iter().map(|b| format!("{b:02x}")).collect())
}

/// Record this process as the running gateway (after it started).
pub fn write_pid(data_dir: &Path) -> std::io::Result<()> {
    crate::atomic_file::write(&pid_path(data_dir), format!("{}\n", std::process::id()).as_bytes(), None)
}

/// The pid of the running gateway, from its file (`None`: no file or not a number).
pub fn read_pid(data_dir: &Path) -> Option<i32> {
    std::fs::read_to_string(pid_path(data_dir)).ok()?.trim().parse().ok()
}

/// Remove the pid file if it still names this process.
pub fn remove_pid(data_dir: &Path) {
    if read_pid(data_dir) == Some(std::process::id() as i32) {
        let _ = std::fs::remove_file(pid_path(data_dir));
    }
}
