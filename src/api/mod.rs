//! The HTTP side a person or Prometheus talks to.
//!
//! - [`local`]: `/metrics`, `/healthz`, `/readyz` and the JSON API (health, devices, dead letters).
//! - [`admin`]: the chaos admin API, off by default.
//! - [`openmetrics`]: the classic text format for scrapers that do not ask for OpenMetrics.
//! - [`tree_json`]: the supervision tree as JSON, shared by `/api/health` and `/admin/tree`.

pub mod admin;
pub mod local;
pub mod openmetrics;
pub mod tree_json;
