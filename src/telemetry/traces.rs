//! OpenTelemetry traces: the OTLP/gRPC exporter behind a bounded queue, and the W3C
//! `traceparent` text form used on MQTT user properties, in the store and on HTTP headers.
//!
//! Export never slows ingest: ending a span only tries to put it on a bounded channel
//! (`tracing.queue_size`); a full queue drops the span and counts it in
//! `gateway_trace_spans_dropped_total`. One task drains the queue in batches to the collector;
//! a collector that is down costs failed export calls on that task, nothing on the data path.
//! Without `tracing.otlp_endpoint` no provider is installed and every span is a no-op.

use std::time::Duration;

use edge_gateway_actors::metrics::Metrics;
use edge_gateway_actors::record::TraceCtx;

use super::TelemetryError;
use super::export::{ExportQueue, drain};
use crate::config::TracingConfig;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter, SpanProcessor};
use tokio::sync::mpsc;

/// Install the global tracer provider; must run inside the tokio runtime (tonic spawns on it).
/// Returns the provider so that shutdown can flush it.
pub fn init(config: &TracingConfig, metrics: &Metrics) -> Result<Option<opentelemetry_sdk::trace::SdkTracerProvider>, TelemetryError> {
    use opentelemetry_otlp::WithExportConfig;
    let Some(endpoint) = &config.otlp_endpoint else { return Ok(None) };
    let resource = opentelemetry_sdk::Resource::builder().with_service_name(config.service_name.clone()).build();
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint.clone())
        .with_timeout(Duration::from_secs(5))
        .build()
        .map_err(TelemetryError::Traces)?;
    exporter.set_resource(&resource);
    let processor = BoundedProcessor::start(exporter, config.queue_size, metrics.clone());
    // Root spans are only started for messages `receive_span` already chose (by ratio), so the
    // SDK keeps every root and follows the parent otherwise.
    SAMPLE_RATIO.store(config.sample_ratio.to_bits(), std::sync::atomic::Ordering::Relaxed);
    let sampler = opentelemetry_sdk::trace::Sampler::ParentBased(Box::new(opentelemetry_sdk::trace::Sampler::AlwaysOn));
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(sampler)
        .with_resource(resource)
        .build();
    opentelemetry::global::set_tracer_provider(provider.clone());
    edge_gateway_actors::spans::enable();
    tracing::info!(%endpoint, ratio = config.sample_ratio, "Exporting traces over OTLP/gRPC.");
    Ok(Some(provider))
}

/// `tracing.sample_ratio` as f64 bits.
static SAMPLE_RATIO: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Hands ended spans to the export task through the bounded queue; never blocks.
#[derive(Debug)]
struct BoundedProcessor(ExportQueue<SpanData>);

impl BoundedProcessor {
    fn start(exporter: impl SpanExporter + 'static, capacity: usize, metrics: Metrics) -> Self {
        let (queue, rx) = ExportQueue::new(capacity, metrics.trace_spans_dropped.clone());
        tokio::spawn(export_loop(exporter, rx, metrics));
        BoundedProcessor(queue)
    }
}

impl SpanProcessor for BoundedProcessor {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &opentelemetry::Context) {}

    fn on_end(&self, span: SpanData) {
        self.0.push(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

async fn export_loop(exporter: impl SpanExporter, rx: mpsc::Receiver<SpanData>, metrics: Metrics) {
    let exporter = std::sync::Arc::new(exporter);
    let export = |batch: Vec<SpanData>| {
        let exporter = exporter.clone();
        async move { exporter.export(batch).await }
    };
    drain(rx, 512, export, metrics.trace_spans_exported.clone(), metrics.trace_spans_dropped.clone(), "spans").await;
}

/// The receive span of one publish: continues the device's `traceparent` (MQTT 5 user property)
/// or starts a trace (sampled by `tracing.sample_ratio`). What is stored with the message: this
/// span's context when sampled, else the device's context (so the cloud still gets it).
pub fn receive_span(
    device_parent: Option<TraceCtx>,
    topic: &str,
    identity: &str,
    protocol: &'static str,
) -> (Option<opentelemetry::global::BoxedSpan>, Option<TraceCtx>) {
    use opentelemetry::trace::{Span, SpanKind, TraceContextExt, Tracer};
    if !edge_gateway_actors::spans::enabled() {
        return (None, device_parent);
    }
    // Decide before building anything: an unsampled message costs a branch, not a span.
    let sampled = match &device_parent {
        Some(p) => p.sampled(),
        None => rand::random::<f64>() < f64::from_bits(SAMPLE_RATIO.load(std::sync::atomic::Ordering::Relaxed)),
    };
    if !sampled {
        return (None, device_parent);
    }
    let tracer = edge_gateway_actors::spans::tracer();
    let cx = match &device_parent {
        Some(p) => opentelemetry::Context::new().with_remote_span_context(edge_gateway_actors::spans::span_context(p)),
        None => opentelemetry::Context::new(),
    };
    let attributes = vec![
        opentelemetry::KeyValue::new("messaging.system", "mqtt"),
        opentelemetry::KeyValue::new("messaging.destination.name", topic.to_string()),
        opentelemetry::KeyValue::new("gateway.device", identity.to_string()),
        opentelemetry::KeyValue::new("gateway.protocol", protocol),
    ];
    let span = tracer.span_builder("mqtt publish").with_kind(SpanKind::Server).with_attributes(attributes).start_with_context(tracer, &cx);
    let own = edge_gateway_actors::spans::trace_ctx(span.span_context()).filter(|t| t.sampled());
    (Some(span), own.or(device_parent))
}

/// End a receive span with the outcome of the append.
pub fn end_receive(span: Option<opentelemetry::global::BoxedSpan>, error: Option<&str>) {
    use opentelemetry::trace::{Span, Status};
    if let Some(mut span) = span {
        span.set_status(match error {
            None => Status::Ok,
            Some(e) => Status::error(e.to_string()),
        });
        span.end();
    }
}
