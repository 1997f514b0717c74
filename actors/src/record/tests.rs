//! Encoding and decoding of records: round trips, older versions, damage.

use super::*;

fn sample() -> NewRecord {
    NewRecord {
        device: "dev-1".into(),
        topic: "devices/dev-1/temp".into(),
        qos: 1,
        payload: b"{\"t\":21.5}".to_vec(),
        content_type: Some("application/json".into()),
        user_properties: vec![("traceparent".into(), "00-ab-cd-01".into())],
        received_at_ms: 1_700_000_000_123,
        trace: Some(TraceCtx { trace_id: [7; 16], span_id: [9; 8], flags: 1 }),
        schema: Some(SchemaTag { subject: "telemetry".into(), version: 3, valid: false, errors: vec!["/t: not a number".into()] }),
        kept_apart: false,
        retain: false,
        copies: Vec::new(),
    }
}

#[test]
fn a_record_decodes_to_what_was_encoded() {
    let new = sample();
    let rec = Record::decode(42, &new.encode("gw:42")).unwrap();
    assert_eq!(rec.seq, 42);
    assert_eq!(rec.key, "gw:42");
    assert_eq!(rec.device, new.device);
    assert_eq!(rec.topic, new.topic);
    assert_eq!(rec.payload, new.payload);
    assert_eq!(rec.content_type, new.content_type);
    assert_eq!(rec.user_properties, new.user_properties);
    assert_eq!(rec.received_at_ms, new.received_at_ms);
    assert_eq!(rec.trace, new.trace);
    assert_eq!(rec.schema, new.schema);
}

#[test]
fn a_version_2_record_from_an_older_gateway_still_decodes() {
    let new = NewRecord { schema: None, ..sample() };
    let mut bytes = new.encode("gw:8");
    bytes[0] = 2;
    bytes.pop(); // version 2 has no schema section
    let rec = Record::decode(8, &bytes).unwrap();
    assert_eq!((rec.payload, rec.trace, rec.schema), (new.payload, new.trace, None));
}

#[test]
fn a_version_1_record_from_an_older_gateway_still_decodes() {
    let new = NewRecord { trace: None, schema: None, ..sample() };
    let mut bytes = new.encode("gw:7");
    bytes[0] = 1;
    bytes.truncate(bytes.len() - 2); // version 1 has no trace section, nor a schema one
    let rec = Record::decode(7, &bytes).unwrap();
    assert_eq!((rec.payload, rec.trace), (new.payload, None));
}

#[test]
fn an_over_long_string_is_cut_on_a_character_boundary_and_still_decodes() {
    let error = "é".repeat(40_000); // 80,000 bytes
    let new = NewRecord { schema: Some(SchemaTag { errors: vec![error], ..Default::default() }), ..sample() };
    let rec = Record::decode(1, &new.encode("gw:1")).expect("decodes");
    let kept = &rec.schema.unwrap().errors[0];
    assert!(kept.len() <= 65_535 && kept.chars().all(|c| c == 'é'), "{} bytes", kept.len());
}

#[test]
fn a_truncated_record_is_an_error_not_a_panic() {
    let bytes = sample().encode("gw:1");
    for cut in 0..bytes.len() {
        assert!(Record::decode(1, &bytes[..cut]).is_err(), "cut at {cut}");
    }
}

#[test]
fn an_unknown_version_is_refused() {
    let mut bytes = sample().encode("gw:1");
    bytes[0] = 9;
    assert_eq!(Record::decode(1, &bytes), Err(DecodeError::UnknownVersion(9)));
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    fn record() -> impl Strategy<Value = NewRecord> {
        let text = "\\PC{0,40}";
        let trace = prop::option::of((any::<[u8; 16]>(), any::<[u8; 8]>(), any::<u8>()));
        let schema = prop::option::of((text, any::<u32>(), any::<bool>(), prop::collection::vec(text, 0..3)))
            .prop_map(|s| s.map(|(subject, version, valid, errors)| SchemaTag { subject, version, valid, errors }));
        (
            (text, text, 0u8..=1, prop::collection::vec(any::<u8>(), 0..512)),
            (prop::option::of(text), prop::collection::vec((text, text), 0..4), any::<u64>(), trace, schema),
        )
            .prop_map(|((device, topic, qos, payload), (content_type, user_properties, received_at_ms, trace, schema))| {
                NewRecord {
                    device,
                    topic,
                    qos,
                    payload,
                    content_type,
                    user_properties,
                    received_at_ms,
                    trace: trace.map(|(trace_id, span_id, flags)| TraceCtx { trace_id, span_id, flags }),
                    schema,
                    kept_apart: false,
                    retain: false,
                    copies: Vec::new(),
                }
            })
    }

    proptest! {
        #[test]
        fn every_record_decodes_to_what_was_encoded(rec in record(), seq in any::<u64>(), key in "[a-z0-9:-]{1,40}") {
            let decoded = Record::decode(seq, &rec.encode(&key)).expect("decodes");
            prop_assert_eq!(decoded.seq, seq);
            prop_assert_eq!(decoded.key, key);
            prop_assert_eq!(
                NewRecord {
                    device: decoded.device,
                    topic: decoded.topic,
                    qos: decoded.qos,
                    payload: decoded.payload,
                    content_type: decoded.content_type,
                    user_properties: decoded.user_properties,
                    received_at_ms: decoded.received_at_ms,
                    trace: decoded.trace,
                    schema: decoded.schema,
                    kept_apart: false,
                    retain: false,
                    copies: Vec::new(),
                },
                rec
            );
        }

        #[test]
        fn a_cut_record_is_refused_not_misread(rec in record(), cut in any::<prop::sample::Index>()) {
            let bytes = rec.encode("gw:1");
            let len = cut.index(bytes.len());
            prop_assert!(Record::decode(1, &bytes[..len]).is_err(), "a {len}-byte prefix of {} decoded", bytes.len());
        }

        #[test]
        fn arbitrary_bytes_never_panic_the_decoder(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = Record::decode(1, &bytes);
        }
    }
}
