//! Log export over OTLP (`tracing.export_logs`): every log line that passes `RUST_LOG` also goes
//! to the trace collector as an OTLP log record, with its fields as attributes (so a message's
//! `trace_id` / `span_id` fields are there too).
//!
//! Like span export it never blocks the code that logs: a record is only put on a bounded
//! channel (`tracing.queue_size`); a full queue drops it and counts it in
//! `gateway_log_records_dropped_total`. One task sends them in batches.
//!
//! The subscriber is installed at process start, before the config is read, with
//! [`OtlpLogLayer`] in it; the layer forwards nothing until [`init`] has built the exporter.
//! Events of the export path itself (tonic, h2, hyper, tower, opentelemetry, this module) are
//! never exported: a failing collector must not produce log records about itself forever.

use std::sync::OnceLock;
use std::time::Duration;

use edge_gateway_actors::metrics::Metrics;
use opentelemetry::InstrumentationScope;
use opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{LogBatch, LogExporter, LogProcessor, SdkLogRecord, SdkLogger, SdkLoggerProvider};
use tokio::sync::mpsc;
use tracing::Subscriber;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use super::TelemetryError;
use super::export::{ExportQueue, drain};
use crate::config::TracingConfig;

/// Targets whose events are never exported: the export path's own, and `log`-crate records
/// bridged into tracing (their target is "log"; libraries such as rustls log that way).
const NOT_EXPORTED: &[&str] =
    &["tonic", "h2", "hyper", "tower", "opentelemetry", "edge_gateway::telemetry::export", "edge_gateway::telemetry::logs", "log"];

/// Records sent per export call at most.
const BATCH: usize = 512;

static BRIDGE: OnceLock<OpenTelemetryTracingBridge<SdkLoggerProvider, SdkLogger>> = OnceLock::new();

/// The subscriber layer that hands events to the OTLP bridge once [`init`] installed it.
pub struct OtlpLogLayer;

impl<S> tracing_subscriber::Layer<S> for OtlpLogLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        let Some(bridge) = BRIDGE.get() else { return };
        let target = event.metadata().target();
        if NOT_EXPORTED.iter().any(|t| target.starts_with(t)) {
            return;
        }
        tracing_subscriber::Layer::<S>::on_event(bridge, event, ctx);
    }
}

/// Build the OTLP log exporter and start forwarding log lines to it; must run inside the tokio
/// runtime. Returns the provider (kept alive by the gateway). Does nothing unless
/// `tracing.export_logs` is set. A process installs it once; a second call keeps the first.
pub fn init(config: &TracingConfig, metrics: &Metrics) -> Result<Option<SdkLoggerProvider>, TelemetryError> {
    use opentelemetry_otlp::WithExportConfig;
    let (true, Some(endpoint)) = (config.export_logs, &config.otlp_endpoint) else { return Ok(None) };
    let resource = opentelemetry_sdk::Resource::builder().with_service_name(config.service_name.clone()).build();
    let mut exporter = opentelemetry_otlp::LogExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint.clone())
        .with_timeout(Duration::from_secs(5))
        .build()
        .map_err(TelemetryError::Logs)?;
    exporter.set_resource(&resource);
    let (queue, rx) = ExportQueue::new(config.queue_size, metrics.log_records_dropped.clone());
    // The export task runs with telemetry suppressed: whatever its gRPC stack logs is not
    // turned into log records (the SDK honours the flag), on top of the target list above.
    let suppressed = opentelemetry::Context::current().with_telemetry_suppressed();
    tokio::spawn(opentelemetry::context::FutureExt::with_context(export_loop(exporter, rx, metrics.clone()), suppressed));
    let processor = BoundedLogProcessor(queue);
    let provider = SdkLoggerProvider::builder().with_log_processor(processor).with_resource(resource).build();
    let _ = BRIDGE.set(OpenTelemetryTracingBridge::new(&provider));
    tracing::info!(%endpoint, "Exporting log records over OTLP/gRPC.");
    Ok(Some(provider))
}

/// Hands records to the export task through the bounded queue; never blocks.
#[derive(Debug)]
struct BoundedLogProcessor(ExportQueue<(SdkLogRecord, InstrumentationScope)>);

impl LogProcessor for BoundedLogProcessor {
    fn emit(&self, record: &mut SdkLogRecord, scope: &InstrumentationScope) {
        self.0.push((record.clone(), scope.clone()));
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

async fn export_loop(exporter: impl LogExporter, rx: mpsc::Receiver<(SdkLogRecord, InstrumentationScope)>, metrics: Metrics) {
    let exporter = std::sync::Arc::new(exporter);
    let export = |batch: Vec<(SdkLogRecord, InstrumentationScope)>| {
        let exporter = exporter.clone();
        async move {
            let refs: Vec<(&SdkLogRecord, &InstrumentationScope)> = batch.iter().map(|(r, s)| (r, s)).collect();
            exporter.export(LogBatch::new(&refs)).await
        }
    };
    drain(rx, BATCH, export, metrics.log_records_exported.clone(), metrics.log_records_dropped.clone(), "log records").await;
}
