//! The `[tracing]` section: where OpenTelemetry traces (and optionally log records) go.

use serde::Deserialize;

/// Where and how much to trace.
#[derive(Debug, Clone)]
pub struct TracingConfig {
    /// OTLP/gRPC collector, e.g. `http://127.0.0.1:4317`; `None`: tracing off.
    pub otlp_endpoint: Option<String>,
    /// Share of messages without a sampled `traceparent` that start a trace (0..=1).
    pub sample_ratio: f64,
    /// Ended spans waiting for export; beyond it spans are dropped (and counted).
    pub queue_size: usize,
    /// `service.name` of the exported spans.
    pub service_name: String,
    /// Also export log lines as OTLP log records (see `crate::telemetry::logs`).
    pub export_logs: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawTracing {
    otlp_endpoint: String,
    sample_ratio: f64,
    queue_size: usize,
    service_name: String,
    export_logs: bool,
}

impl Default for RawTracing {
    fn default() -> Self {
        Self { otlp_endpoint: String::new(), sample_ratio: 0.01, queue_size: 4096, service_name: "edge-gateway".into(), export_logs: false }
    }
}

impl RawTracing {
    pub(super) fn validate(&self, e: &mut Vec<String>) -> TracingConfig {
        let endpoint = self.otlp_endpoint.trim();
        if !endpoint.is_empty() && !endpoint.starts_with("http://") {
            e.push(format!(
                "tracing.otlp_endpoint: \"{endpoint}\" must be an http:// URL (OTLP/gRPC without TLS, e.g. a local collector at http://127.0.0.1:4317)"
            ));
        }
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            e.push("tracing.sample_ratio: must be between 0 and 1".into());
        }
        if !(1..=1_000_000).contains(&self.queue_size) {
            e.push("tracing.queue_size: must be between 1 and 1000000".into());
        }
        if self.export_logs && endpoint.is_empty() {
            e.push("tracing.export_logs: needs tracing.otlp_endpoint (logs go to the same collector)".into());
        }
        TracingConfig {
            export_logs: self.export_logs,
            otlp_endpoint: (!endpoint.is_empty()).then(|| endpoint.to_string()),
            sample_ratio: self.sample_ratio,
            queue_size: self.queue_size,
            service_name: self.service_name.clone(),
        }
    }
}
