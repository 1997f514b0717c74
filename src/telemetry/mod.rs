//! What the gateway tells the outside about itself, besides metrics (`crate::api`).
//!
//! - [`traces`]: OpenTelemetry spans (receive, store commit, forward) exported over OTLP/gRPC.
//! - [`logs`]: log lines exported as OTLP log records (`tracing.export_logs`).
//! - [`export`]: the bounded export queue both of them use; export never slows ingest.
//! - [`traceparent`]: the W3C `traceparent` text form.
//! - [`panics`]: the panic hook (count, log, go on).

pub mod export;
pub mod logs;
pub mod panics;
pub mod traceparent;
pub mod traces;

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The OTLP span exporter could not be built (`tracing.otlp_endpoint`).
    #[error("tracing.otlp_endpoint: {0}")]
    Traces(opentelemetry_otlp::ExporterBuildError),
    /// The OTLP log exporter could not be built (`tracing.export_logs`).
    #[error("tracing.export_logs: {0}")]
    Logs(opentelemetry_otlp::ExporterBuildError),
}
