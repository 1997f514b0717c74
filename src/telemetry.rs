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
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter, SpanProcessor};
use tokio::sync::mpsc;

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
    /// Also export log lines as OTLP log records (see `crate::otlp_logs`).
    pub export_logs: bool,
}

/// Install the global tracer provider; must run inside the tokio runtime (tonic spawns on it).
/// Returns the provider so that shutdown can flush it.
pub fn init(config: &TracingConfig, metrics: &Metrics) -> anyhow::Result<Option<opentelemetry_sdk::trace::SdkTracerProvider>> {
    use opentelemetry_otlp::WithExportConfig;
    let Some(endpoint) = &config.otlp_endpoint else { return Ok(None) };
    let resource = opentelemetry_sdk::Resource::builder().with_service_name(config.service_name.clone()).build();
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint.clone())
        .with_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| anyhow::anyhow!("tracing.otlp_endpoint: {e}"))?;
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

/// Hands ended spans to an export task through a bounded channel; never blocks.
#[derive(Debug)]
struct BoundedProcessor {
    /// Ended spans; `try_send` only.
    tx: mpsc::Sender<SpanData>,
    /// Dropped-span counter.
    dropped: prometheus_client::metrics::counter::Counter,
}

impl BoundedProcessor {
    fn start(exporter: impl SpanExporter + 'static, capacity: usize, metrics: Metrics) -> Self {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        tokio::spawn(export_loop(exporter, rx, metrics.clone()));
        BoundedProcessor { tx, dropped: metrics.trace_spans_dropped.clone() }
    }
}

impl SpanProcessor for BoundedProcessor {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &opentelemetry::Context) {}

    fn on_end(&self, span: SpanData) {
        if self.tx.try_send(span).is_err() {
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

/// Up to 512 spans or 1 s per export call; failures are counted and the spans let go.
/// Wait for the next item, then take more until `max` or until 1 s after the first arrived;
/// false once the channel is closed and empty. The batching of both OTLP export tasks.
pub(crate) async fn next_batch<T>(rx: &mut mpsc::Receiver<T>, batch: &mut Vec<T>, max: usize) -> bool {
    let Some(first) = rx.recv().await else { return false };
    batch.push(first);
    let deadline = tokio::time::sleep(Duration::from_secs(1));
    tokio::pin!(deadline);
    while batch.len() < max {
        tokio::select! {
            next = rx.recv() => match next {
                Some(item) => batch.push(item),
                None => break,
            },
            _ = &mut deadline => break,
        }
    }
    true
}

async fn export_loop(exporter: impl SpanExporter, mut rx: mpsc::Receiver<SpanData>, metrics: Metrics) {
    let mut batch = Vec::with_capacity(512);
    while next_batch(&mut rx, &mut batch, 512).await {
        let n = batch.len() as u64;
        match exporter.export(std::mem::take(&mut batch)).await {
            Ok(()) => {
                metrics.trace_spans_exported.inc_by(n);
            }
            Err(e) => {
                metrics.trace_spans_dropped.inc_by(n);
                tracing::debug!(error = %e, spans = n, "Trace export failed; spans dropped.");
            }
        }
    }
}

/// Parse a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`); `None` if malformed.
pub fn parse_traceparent(s: &str) -> Option<TraceCtx> {
    let mut parts = s.trim().split('-');
    let (version, trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version.len() != 2 || version == "ff" || trace.len() != 32 || span.len() != 16 || flags.len() != 2 {
        return None;
    }
    if version == "00" && parts.next().is_some() {
        return None;
    }
    let trace_id = u128::from_str_radix(trace, 16).ok()?.to_be_bytes();
    let span_id = u64::from_str_radix(span, 16).ok()?.to_be_bytes();
    let flags = u8::from_str_radix(flags, 16).ok()?;
    (trace_id != [0; 16] && span_id != [0; 8]).then_some(TraceCtx { trace_id, span_id, flags })
}

/// The `traceparent` text of a context.
pub fn format_traceparent(t: &TraceCtx) -> String {
    format!("00-{:032x}-{:016x}-{:02x}", u128::from_be_bytes(t.trace_id), u64::from_be_bytes(t.span_id), t.flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_garbage_is_refused() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let ctx = parse_traceparent(tp).unwrap();
        assert_eq!(format_traceparent(&ctx), tp);
        for bad in [
            "",
            "00-0000-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "xx",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad}");
        }
    }
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
