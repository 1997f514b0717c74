//! Telemetry schema governance (docs/SCHEMAS.md): a registry of versioned JSON Schemas on disk,
//! bindings of topics to subjects, payload checks before the PUBACK, and Confluent-style
//! compatibility checks between versions, at load and from the CLI.
//!
//! - [`registry`]: the folder: subjects, versions (compiled once), compatibility at load.
//! - [`binding`]: `bindings.toml`: topic filters to a subject, version policy, tag, action.
//! - [`tag`]: where a device names its payload's version.
//! - [`check`]: one payload against its binding, as a [`check::Verdict`].
//! - [`compat`]: the compatibility modes on a documented subset of JSON Schema.
//! - [`live`]: the registry in use, hot-reloaded; counts and logs the checks.

pub mod binding;
pub mod check;
pub mod compat;
pub mod live;
pub mod registry;
pub mod tag;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use live::{Checked, Schemas};

/// Every problem found in a registry folder, each led by the file it is in.
#[derive(Debug, thiserror::Error)]
#[error("invalid schema registry {}:\n  {}", dir.display(), problems.join("\n  "))]
pub struct RegistryError {
    /// The folder.
    pub dir: PathBuf,
    /// One line per problem.
    pub problems: Vec<String>,
}
