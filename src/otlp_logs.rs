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

use crate::telemetry::TracingConfig;

/// Targets whose events are never exported: the export path's own, and `log`-crate records
/// bridged into tracing (their target is "log"; libraries such as rustls log that way).
const NOT_EXPORTED: &[&str] = &["tonic", "h2", "hyper", "tower", "opentelemetry", "edge_gateway::otlp_logs", "log"];

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
pub fn init(config: &TracingConfig, metrics: &Metrics) -> anyhow::Result<Option<SdkLoggerProvider>> {
    use opentelemetry_otlp::WithExportConfig;
    let (true, Some(endpoint)) = (config.export_logs, &config.otlp_endpoint) else { return Ok(None) };
    let resource = opentelemetry_sdk::Resource::builder().with_service_name(config.service_name.clone()).build();
    let mut exporter = opentelemetry_otlp::LogExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint.clone())
        .with_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| anyhow::anyhow!("tracing.export_logs: {e}"))?;
    exporter.set_resource(&resource);
    let (tx, rx) = mpsc::channel(config.queue_size.max(1));
    // The export task runs with telemetry suppressed: whatever its gRPC stack logs is not
    // turned into log records (the SDK honours the flag), on top of the target list above.
    let suppressed = opentelemetry::Context::current().with_telemetry_suppressed();
    tokio::spawn(opentelemetry::context::FutureExt::with_context(export_loop(exporter, rx, metrics.clone()), suppressed));
    let processor = BoundedLogProcessor { tx, dropped: metrics.log_records_dropped.clone() };
    let provider = SdkLoggerProvider::builder().with_log_processor(processor).with_resource(resource).build();
    let _ = BRIDGE.set(OpenTelemetryTracingBridge::new(&provider));
    tracing::info!(%endpoint, "Exporting log records over OTLP/gRPC.");
    Ok(Some(provider))
}

/// Hands records to the export task through a bounded channel; never blocks.
#[derive(Debug)]
struct BoundedLogProcessor {
    tx: mpsc::Sender<(SdkLogRecord, InstrumentationScope)>,
    dropped: prometheus_client::metrics::counter::Counter,
}

impl LogProcessor for BoundedLogProcessor {
    fn emit(&self, record: &mut SdkLogRecord, scope: &InstrumentationScope) {
        if self.tx.try_send((record.clone(), scope.clone())).is_err() {
            self.dropped.inc();
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

async fn export_loop(exporter: impl LogExporter, mut rx: mpsc::Receiver<(SdkLogRecord, InstrumentationScope)>, metrics: Metrics) {
    let mut batch = Vec::with_capacity(BATCH);
    while crate::telemetry::next_batch(&mut rx, &mut batch, BATCH).await {
        let n = batch.len() as u64;
        let refs: Vec<(&SdkLogRecord, &InstrumentationScope)> = batch.iter().map(|(r, s)| (r, s)).collect();
        match exporter.export(LogBatch::new(&refs)).await {
            Ok(()) => {
                metrics.log_records_exported.inc_by(n);
            }
            Err(e) => {
                metrics.log_records_dropped.inc_by(n);
                tracing::debug!(error = %e, records = n, "Log export failed; records dropped.");
            }
        }
        drop(refs);
        batch.clear();
    }
}
