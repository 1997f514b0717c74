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
        mqtt5: Some(Mqtt5Props {
            expires_at_ms: Some(1_700_000_060_000),
            response_topic: Some("replies/dev-1".into()),
            correlation_data: Some(vec![0, 1, 2]),
        }),
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
    assert_eq!(rec.mqtt5, new.mqtt5);
}

#[test]
fn a_version_3_record_from_an_older_gateway_still_decodes() {
    let new = NewRecord { mqtt5: None, ..sample() };
    let mut bytes = new.encode("gw:9");
    bytes[0] = 3;
    bytes.pop(); // version 3 has no MQTT 5 section
    let rec = Record::decode(9, &bytes).unwrap();
    assert_eq!((rec.payload, rec.schema, rec.mqtt5), (new.payload, new.schema, None));
}

#[test]
fn a_version_2_record_from_an_older_gateway_still_decodes() {
    let new = NewRecord { schema: None, mqtt5: None, ..sample() };
    let mut bytes = new.encode("gw:8");
    bytes[0] = 2;
    bytes.truncate(bytes.len() - 2); // version 2 has no schema section, nor an MQTT 5 one
    let rec = Record::decode(8, &bytes).unwrap();
    assert_eq!((rec.payload, rec.trace, rec.schema), (new.payload, new.trace, None));
}

#[test]
fn a_version_1_record_from_an_older_gateway_still_decodes() {
    let new = NewRecord { trace: None, schema: None, mqtt5: None, ..sample() };
    let mut bytes = new.encode("gw:7");
    bytes[0] = 1;
    bytes.truncate(bytes.len() - 3); // version 1 has no trace section, nor a schema or MQTT 5 one
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
        let mqtt5 = prop::option::of((
            prop::option::of(1u64..),
            prop::option::of(text),
            prop::option::of(prop::collection::vec(any::<u8>(), 0..64)),
        ))
        .prop_map(|m| {
            m.map(|(expires_at_ms, response_topic, correlation_data)| Mqtt5Props { expires_at_ms, response_topic, correlation_data })
        });
        (
            (text, text, 0u8..=1, prop::collection::vec(any::<u8>(), 0..512)),
            (prop::option::of(text), prop::collection::vec((text, text), 0..4), any::<u64>(), trace, schema, mqtt5),
        )
            .prop_map(|((device, topic, qos, payload), (content_type, user_properties, received_at_ms, trace, schema, mqtt5))| {
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
                    mqtt5,
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
                    mqtt5: decoded.mqtt5,
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
