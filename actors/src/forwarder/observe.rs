//! What a forwarder tells the outside about a delivery: end-to-end and device-to-cloud latency
//! histograms, and the `forward` spans of the sampled messages in a batch.

use super::DeliveryError;
use super::device_timestamp_ms;
use crate::metrics::{Metrics, SinkLabels};
use crate::record::Record;

/// End-to-end latency of a delivered batch: from the gateway's receive time, and from the
/// device's own timestamp when the message carries one (user property `ts`, or a top-level
/// `"ts"` number in a JSON payload; unix milliseconds, or seconds when below 10^11).
pub(super) fn observe_latency(metrics: &Metrics, sink: &str, batch: &[Record]) {
    let now = crate::storage::now_ms();
    let labels = SinkLabels { sink: sink.to_string() };
    let e2e = metrics.e2e_latency.get_or_create(&labels);
    let device = metrics.device_latency.get_or_create(&labels);
    for r in batch {
        e2e.observe(now.saturating_sub(r.received_at_ms) as f64 / 1000.0);
        // Implausible device clocks (unset: 1970 + uptime; or far ahead) would wreck the
        // histogram: only timestamps within 30 days before to 1 day after ours count.
        if let Some(ts) = device_timestamp_ms(r).filter(|&ts| ts + 30 * 86_400_000 >= now && ts <= now + 86_400_000) {
            device.observe(now.saturating_sub(ts) as f64 / 1000.0);
        }
    }
}

/// The `forward` spans of one delivery attempt: one per sampled message (a child of its receive
/// span; the message then carries the forward span's context to the sink, whose request span
/// is its child) and a batch span linking them.
pub(super) struct ForwardSpans {
    spans: Vec<opentelemetry::global::BoxedSpan>,
    links: Vec<crate::record::TraceCtx>,
    start: std::time::SystemTime,
    sink: String,
}

pub(super) fn forward_spans(sink: &str, batch: &mut [Record]) -> ForwardSpans {
    use opentelemetry::KeyValue;
    let mut out = ForwardSpans { spans: Vec::new(), links: Vec::new(), start: std::time::SystemTime::now(), sink: sink.to_string() };
    if !crate::spans::enabled() {
        return out;
    }
    for r in batch.iter_mut() {
        let Some(trace) = r.trace.filter(|t| t.sampled()) else { continue };
        let attributes = vec![KeyValue::new("gateway.sink", sink.to_string()), KeyValue::new("messaging.message.id", r.key.clone())];
        let span = crate::spans::start_child("forward", &trace, opentelemetry::trace::SpanKind::Producer, attributes);
        use opentelemetry::trace::Span;
        r.trace = crate::spans::trace_ctx(span.span_context()).or(Some(trace));
        out.links.push(trace);
        out.spans.push(span);
    }
    out
}

impl ForwardSpans {
    pub(super) fn end(self, result: &Result<(), DeliveryError>) {
        use opentelemetry::trace::{Span, Status};
        let status = match result {
            Ok(()) => Status::Ok,
            Err(DeliveryError::Transient { kind, .. }) => Status::error(kind.as_str()),
            Err(DeliveryError::Rejected { .. }) => Status::error("rejected"),
        };
        for mut span in self.spans {
            span.set_status(status.clone());
            span.end();
        }
        if !self.links.is_empty() {
            let attributes = vec![
                opentelemetry::KeyValue::new("gateway.sink", self.sink),
                opentelemetry::KeyValue::new("gateway.batch_size", self.links.len() as i64),
            ];
            crate::spans::record_linked("forward batch", &self.links, self.start, attributes);
        }
    }
}
