//! Malformed and invalid input: each case gets the MQTT 5 reason code or a v3.1.1 disconnect,
//! is counted, and leaves the gateway and every other connection untouched.

use std::time::Duration;

use crate::harness::{self, Extra, http_get, sample};
use crate::ingest::IngestServer;
use crate::raw::{Event, Raw, connect_packet, publish_packet};
use crate::util;

const T: Duration = Duration::from_secs(5);

fn rejected(scrape: &str, reason: &str) -> f64 {
    sample(scrape, &format!("gateway_ingress_rejected_total{{reason=\"{reason}\"}}"))
}

/// A v5 DISCONNECT from the server carrying `reason`, then the close.
async fn expect_v5_disconnect(raw: &mut Raw, reason: u8) {
    let seen = raw.expect_closed(T).await;
    assert!(seen.iter().any(|(f, b)| *f == 0xE0 && b.first() == Some(&reason)), "expected DISCONNECT 0x{reason:02x}, saw {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_invalid_input_is_refused_and_counted_while_others_continue() {
    let dir = util::temp_dir();
    let ingest = IngestServer::start().await;
    let extra = Extra { mqtt: "max_packet_size = 1024", ..Default::default() };
    let gw = harness::start(dir.path(), &ingest.url(), &extra).await;
    let addr = gw.mqtt_addr;
    let mut bystander = Raw::connect(addr, "bystander", true).await;
    let mut cases = 0;

    // v5 PUBLISH with a wildcard topic is malformed [MQTT-3.3.2-2]: DISCONNECT 0x82, no PUBACK.
    let mut c = Raw::connect(addr, "wild-v5", true).await;
    c.publish("devices/+/x", b"w", 1).await;
    expect_v5_disconnect(&mut c, 0x82).await;
    cases += 1;

    // v5 PUBLISH with an empty topic and no topic alias: PUBACK 0x90 (topic name invalid); the
    // connection stays usable.
    let mut c = Raw::connect(addr, "empty-v5", true).await;
    c.publish("", b"e", 1).await;
    assert_eq!(c.expect_puback(1).await, 0x90);
    c.publish("devices/empty-v5/t", b"ok", 2).await;
    assert_eq!(c.expect_puback(2).await, 0);
    cases += 1;

    // v3 PUBLISH with a wildcard or an empty topic: disconnect, no PUBACK.
    for topic in ["devices/#", ""] {
        let mut c = Raw::connect(addr, "wild-v3", false).await;
        c.publish(topic, b"w", 1).await;
        let seen = c.expect_closed(T).await;
        assert!(seen.iter().all(|(f, _)| *f != 0x40), "no PUBACK for topic {topic:?}: {seen:?}");
        cases += 1;
    }

    // Oversize packet: v5 DISCONNECT 0x95 (packet too large), v3 disconnect.
    let big = vec![b'x'; 2000];
    let mut c = Raw::connect(addr, "big-v5", true).await;
    c.publish("devices/big/x", &big, 1).await;
    expect_v5_disconnect(&mut c, 0x95).await;
    let mut c = Raw::connect(addr, "big-v3", false).await;
    c.publish("devices/big/x", &big, 1).await;
    c.expect_closed(T).await;
    cases += 2;

    // QoS 3 does not exist: a malformed packet closes the connection, nothing is acknowledged.
    for v5 in [true, false] {
        let mut c = Raw::connect(addr, "qos3", v5).await;
        c.send(&publish_packet("devices/q/x", b"3", 3, 1, v5)).await;
        let seen = c.expect_closed(T).await;
        assert!(seen.iter().all(|(f, _)| *f != 0x40 && *f != 0x50), "no PUBACK or PUBREC: {seen:?}");
        cases += 1;
    }

    // A second CONNECT on a connection.
    for v5 in [true, false] {
        let mut c = Raw::connect(addr, "twice", v5).await;
        c.send(&connect_packet("twice", v5, true, 60)).await;
        c.expect_closed(T).await;
        cases += 1;
    }

    // A PUBLISH whose topic is longer than its packet: a 256-byte topic (allowed by the ACL) in
    // a packet of 22 bytes. ntex-mqtt 9.0.0 wraps the payload size to nearly 4 GiB here and
    // would collect everything after it as the payload, whatever `max_packet_size` says: the
    // connection must close before it took 32 MiB.
    for v5 in [true, false] {
        let mut bad = vec![0x30, 22, 0x01, 0x00];
        bad.extend_from_slice(b"devices/short-topic/");
        bad.resize(4 + 256, b'a');
        bad.push(0); // v5: no properties
        let mut c = Raw::connect(addr, "short-topic", v5).await;
        c.send(&bad).await;
        let chunk = vec![b'p'; 64 * 1024];
        let mut taken = 0;
        while taken < 32 << 20 && c.try_send(&chunk, T).await {
            taken += chunk.len();
        }
        assert!(taken < 32 << 20, "v5={v5}: the gateway took {taken} bytes of one 22-byte PUBLISH");
        c.expect_closed(T).await;
        cases += 1;
    }

    // First packet not CONNECT; a client sending CONNACK.
    for first in [publish_packet("devices/a/b", b"x", 1, 1, false), vec![0x20, 0x02, 0x00, 0x00]] {
        let mut c = Raw::open(addr, false).await;
        c.send(&first).await;
        let seen = c.expect_closed(T).await;
        assert!(seen.iter().all(|(f, _)| *f != 0x20 && *f != 0x40), "nothing acknowledged: {seen:?}");
        cases += 1;
    }

    // Empty client id with clean session 0 (v3) [MQTT-3.1.3-8]: never accepted. ntex-mqtt's
    // decoder closes the connection before our CONNECT handler sees it (no CONNACK 2).
    let mut c = Raw::open(addr, false).await;
    c.send(&connect_packet("", false, false, 60)).await;
    match c.next(T).await {
        Event::Packet(0x20, body) => assert_eq!(body[1], 2, "CONNACK {body:?}"),
        Event::Closed => {}
        other => panic!("expected CONNACK 2 or a close, got {other:?}"),
    }
    cases += 1;

    // A socket that never sends CONNECT is closed after connect_timeout_secs (2 s here).
    let mut c = Raw::open(addr, false).await;
    let started = std::time::Instant::now();
    c.expect_closed(Duration::from_secs(6)).await;
    assert!(started.elapsed() >= Duration::from_millis(1500), "closed too early: {:?}", started.elapsed());
    cases += 1;

    // Keep-alive is enforced: 1 s announced, no PINGREQ, closed after 1.5 s.
    let mut c = Raw::open(addr, false).await;
    c.send(&connect_packet("sleepy", false, true, 1)).await;
    assert!(matches!(c.next(T).await, Event::Packet(0x20, _)), "CONNACK");
    let started = std::time::Instant::now();
    c.expect_closed(Duration::from_secs(6)).await;
    assert!(started.elapsed() >= Duration::from_millis(1000), "closed too early: {:?}", started.elapsed());
    cases += 1;

    // The bystander was never disturbed, and the gateway is still ready.
    bystander.publish("devices/bystander/x", b"still here", 7).await;
    assert_eq!(bystander.expect_puback(7).await, 0);
    let (status, _) = http_get(gw.http_addr, "/readyz").await;
    assert_eq!(status, 200);
    let (_, scrape) = http_get(gw.http_addr, "/metrics").await;
    assert!(rejected(&scrape, "invalid_topic") >= 3.0, "invalid_topic counted");
    assert!(rejected(&scrape, "oversize") >= 2.0, "oversize counted");
    assert!(rejected(&scrape, "unexpected_packet") >= 2.0, "second CONNECT counted");
    assert!(rejected(&scrape, "protocol_error") >= 2.0, "short topics counted");
    println!("malformed-input cases checked: {cases}");
    gw.stop().await;
}
