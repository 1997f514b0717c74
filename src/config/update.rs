//! `[update]`: who may sign a self-update, and how long a new version gets to prove itself.

use std::time::Duration;

use serde::Deserialize;

use crate::update::minisign::PublicKey;

/// Self-update settings.
#[derive(Debug, Clone)]
pub struct UpdateConfig {
    /// Keys a bundle may be signed with (none: every bundle is refused).
    pub public_keys: Vec<PublicKey>,
    /// How long the new version may take to start (store open, listeners bound) before the
    /// previous one is started again.
    pub deadline: Duration,
    /// After it started, an exit with an error within this time also rolls back.
    pub probation: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawUpdate {
    public_keys: Vec<String>,
    deadline_secs: u64,
    probation_secs: u64,
}

impl Default for RawUpdate {
    fn default() -> Self {
        Self { public_keys: Vec::new(), deadline_secs: 60, probation_secs: 30 }
    }
}

impl RawUpdate {
    pub(super) fn validate(&self, e: &mut Vec<String>) -> UpdateConfig {
        let public_keys = self
            .public_keys
            .iter()
            .enumerate()
            .filter_map(|(i, k)| PublicKey::parse(k).map_err(|err| e.push(format!("update.public_keys[{i}]: {err}"))).ok())
            .collect();
        if !(1..=3600).contains(&self.deadline_secs) {
            e.push("update.deadline_secs: must be between 1 and 3600".into());
        }
        if self.probation_secs > 3600 {
            e.push("update.probation_secs: must be at most 3600".into());
        }
        UpdateConfig { public_keys, deadline: Duration::from_secs(self.deadline_secs), probation: Duration::from_secs(self.probation_secs) }
    }
}
