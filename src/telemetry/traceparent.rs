//! The W3C `traceparent` text form, used on MQTT user properties, on HTTP headers and (as
//! [`TraceCtx`] bytes) in the store. Parsing and formatting are OpenTelemetry's
//! `TraceContextPropagator`; only the stored form ([`TraceCtx`]: trace id, span id, flags) is ours.

use edge_gateway_actors::record::TraceCtx;
use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry_sdk::propagation::TraceContextPropagator;

const TRACEPARENT: &str = "traceparent";

/// Parse a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`); `None` if malformed or all-zero.
pub fn parse_traceparent(s: &str) -> Option<TraceCtx> {
    let cx = TraceContextPropagator::new().extract(&OneHeader(s.trim()));
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| TraceCtx {
        trace_id: sc.trace_id().to_bytes(),
        span_id: sc.span_id().to_bytes(),
        flags: sc.trace_flags().to_u8(),
    })
}

/// The `traceparent` text of a context.
pub fn format_traceparent(t: &TraceCtx) -> String {
    let sc = SpanContext::new(
        TraceId::from_bytes(t.trace_id),
        SpanId::from_bytes(t.span_id),
        TraceFlags::new(t.flags),
        true,
        TraceState::default(),
    );
    let mut header = OneHeader::default();
    TraceContextPropagator::new().inject_context(&Context::new().with_remote_span_context(sc), &mut header);
    header.0.to_string()
}

/// A carrier holding just the `traceparent` value (a user property or one HTTP header).
#[derive(Default)]
struct OneHeader<S = String>(S);

impl Extractor for OneHeader<&str> {
    fn get(&self, key: &str) -> Option<&str> {
        (key == TRACEPARENT).then_some(self.0)
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT]
    }
}

impl Injector for OneHeader {
    fn set(&mut self, key: &str, value: String) {
        if key == TRACEPARENT {
            self.0 = value;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_garbage_is_refused() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let ctx = parse_traceparent(tp).unwrap();
        assert_eq!(ctx.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736u128.to_be_bytes());
        assert_eq!(ctx.span_id, 0x00f067aa0ba902b7u64.to_be_bytes());
        assert_eq!(ctx.flags, 1);
        assert_eq!(format_traceparent(&ctx), tp);
        assert_eq!(parse_traceparent(" 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00 ").unwrap().flags, 0);
        for bad in [
            "",
            "00-0000-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "xx",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad}");
        }
    }
}
