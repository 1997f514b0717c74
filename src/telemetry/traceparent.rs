//! The W3C `traceparent` text form, used on MQTT user properties, on HTTP headers and (as
//! [`TraceCtx`] bytes) in the store.

use edge_gateway_actors::record::TraceCtx;

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
