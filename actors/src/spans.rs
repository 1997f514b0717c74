//! OpenTelemetry spans of the actors (commit, forward), against whatever tracer provider the
//! binary installed. When tracing is off ([`enabled`] is false) nothing is created at all.
//!
//! Each message carries the context of its receive span ([`TraceCtx`], stored with it): the
//! per-message `store commit` and `forward` spans are its children, so one trace shows a
//! message's way from the device through the store to the cloud, also across a restart. The
//! batch spans (`store commit batch`, `forward batch`) link every sampled message in the batch
//! (and sit in the first one's trace).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use opentelemetry::trace::{Link, SpanContext, SpanId, SpanKind, TraceContextExt, TraceFlags, TraceId, TraceState, Tracer};
use opentelemetry::{Context, KeyValue, global};

use crate::record::TraceCtx;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// The tracer, looked up once (the global lookup takes a lock and allocates).
static TRACER: std::sync::OnceLock<global::BoxedTracer> = std::sync::OnceLock::new();

/// Turn span creation on (the binary installed a provider).
pub fn enable() {
    TRACER.get_or_init(|| global::tracer("edge-gateway"));
    ENABLED.store(true, Ordering::Relaxed);
}

/// The gateway's tracer.
pub fn tracer() -> &'static global::BoxedTracer {
    TRACER.get_or_init(|| global::tracer("edge-gateway"))
}

/// Whether spans are created.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// A stored context as an OpenTelemetry (remote) span context.
pub fn span_context(t: &TraceCtx) -> SpanContext {
    SpanContext::new(TraceId::from_bytes(t.trace_id), SpanId::from_bytes(t.span_id), TraceFlags::new(t.flags), true, TraceState::default())
}

/// An OpenTelemetry span context in the stored form.
pub fn trace_ctx(c: &SpanContext) -> Option<TraceCtx> {
    c.is_valid().then(|| TraceCtx { trace_id: c.trace_id().to_bytes(), span_id: c.span_id().to_bytes(), flags: c.trace_flags().to_u8() })
}

/// A finished child span of `parent`, from `start` to now.
pub fn record_child(
    name: &'static str,
    parent: &TraceCtx,
    kind: SpanKind,
    start: SystemTime,
    attributes: Vec<KeyValue>,
) -> Option<TraceCtx> {
    use opentelemetry::trace::Span;
    let tracer = tracer();
    let cx = Context::new().with_remote_span_context(span_context(parent));
    let mut span =
        tracer.span_builder(name).with_kind(kind).with_start_time(start).with_attributes(attributes).start_with_context(tracer, &cx);
    let ctx = trace_ctx(span.span_context());
    span.end();
    ctx
}

/// A finished batch span from `start` to now, linking every context in `links` (non-empty).
/// Its parent is the first linked message: a root span would be subject to the ratio sampler
/// and lost exactly when only devices' own traces are sampled.
pub fn record_linked(name: &'static str, links: &[TraceCtx], start: SystemTime, attributes: Vec<KeyValue>) {
    use opentelemetry::trace::Span;
    let Some(first) = links.first() else { return };
    let tracer = tracer();
    let cx = Context::new().with_remote_span_context(span_context(first));
    let links = links.iter().map(|t| Link::with_context(span_context(t))).collect();
    let mut span =
        tracer.span_builder(name).with_start_time(start).with_links(links).with_attributes(attributes).start_with_context(tracer, &cx);
    span.end();
}

/// A started child span of `parent`; the caller ends it.
pub fn start_child(name: &'static str, parent: &TraceCtx, kind: SpanKind, attributes: Vec<KeyValue>) -> global::BoxedSpan {
    let tracer = tracer();
    let cx = Context::new().with_remote_span_context(span_context(parent));
    tracer.span_builder(name).with_kind(kind).with_attributes(attributes).start_with_context(tracer, &cx)
}

/// The `trace_id` and `span_id` fields of a log line about a message (empty when the message
/// carries no trace context), so a log line can be found from a trace and the other way round.
pub fn log_ids(trace: Option<&TraceCtx>) -> (String, String) {
    match trace {
        Some(t) => (format!("{:032x}", u128::from_be_bytes(t.trace_id)), format!("{:016x}", u64::from_be_bytes(t.span_id))),
        None => (String::new(), String::new()),
    }
}
