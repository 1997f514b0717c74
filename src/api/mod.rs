//! The HTTP side a person or Prometheus talks to.
//!
//! - [`local`]: `/metrics`, `/healthz`, `/readyz` and the JSON API (health, devices, dead letters).
//! - [`admin`]: the chaos admin API, off by default.
//! - [`bearer`]: the token both check, and where the local API's token comes from.
//! - [`downlink`]: `POST /api/publish`, a message from the cloud to local subscribers.
//! - [`serve`]: the server loop both run on (plain, or HTTPS for the local API).
//! - [`https`]: the local API's certificate and key, reloaded when the files change.
//! - [`openmetrics`]: the classic text format for scrapers that do not ask for OpenMetrics.
//! - [`tree_json`]: the supervision tree as JSON, shared by `/api/health` and `/admin/tree`.

use std::path::PathBuf;

pub mod admin;
pub mod bearer;
pub mod downlink;
pub mod https;
pub mod local;
pub mod openmetrics;
pub mod serve;
pub mod tree_json;

/// Why the HTTP API cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The bearer token cannot be read, is too short, or cannot be created.
    #[error("HTTP API token {}: {reason}", path.display())]
    Token {
        /// The token file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// `http.tls_cert` / `http.tls_key` do not load.
    #[error("HTTP API TLS: {0}")]
    Tls(String),
}
