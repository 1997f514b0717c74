//! Replays of known broker CVE shapes that the malformed-input test does not already cover: a
//! Remaining Length larger than the data that follows, and a flood of sockets that never send
//! CONNECT (each closed within the CONNECT timeout, nothing else disturbed).

use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;

use crate::harness::{self, Extra, Process};
use crate::ingest::IngestServer;
use crate::raw::{Raw, varint};
use crate::util::{self, poll_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remaining_length_larger_than_the_data_stores_nothing_and_times_out() {
    let dir = util::temp_dir();
    let ingest = IngestServer::start().await;
    let gw = harness::start(&dir.path().join("data"), &ingest.url(), &Extra::default()).await;
    let mut bystander = Raw::connect(gw.mqtt_addr, "bystander", false).await;
    for v5 in [false, true] {
        // Found by this test: ntex runs no keep-alive while a frame is half read, so a
        // truncated packet held the connection forever; mqtt.partial_packet_timeout_secs (2 s in
        // the tests) now closes it.
        let mut raw = Raw::open(gw.mqtt_addr, v5).await;
        raw.send(&crate::raw::connect_packet(if v5 { "liar-5" } else { "liar-3" }, v5, true, 2)).await;
        assert!(matches!(raw.next(Duration::from_secs(10)).await, crate::raw::Event::Packet(0x20, _)), "CONNACK");
        // PUBLISH QoS1 claiming 10,000 bytes, then only 20 of them: the server must wait for
        // the rest without acknowledging anything, and close at the keep-alive/idle limits.
        let mut packet = vec![0x32];
        packet.extend(varint(10_000));
        packet.extend([0u8, 5, b'a', b'/', b'b', b'/', b'c', 0, 1]);
        packet.extend([b'x'; 11]);
        raw.send(&packet).await;
        let started = Instant::now();
        let seen = raw.expect_closed(Duration::from_secs(15)).await;
        assert!(seen.iter().all(|(first, _)| first >> 4 != 4), "no PUBACK for a truncated publish: {seen:?}");
        println!("v5={v5}: truncated publish closed after {:?}", started.elapsed());
    }
    bystander.publish("devices/bystander/t", b"still here", 7).await;
    assert_eq!(bystander.expect_puback(7).await, 0);
    poll_until("bystander forwarded", Duration::from_secs(10), || ingest.accepted().len() == 1).await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_sockets_that_never_send_connect_are_closed_within_the_connect_timeout() {
    const SOCKETS: usize = 10_000;
    let dir = util::temp_dir();
    let ingest = IngestServer::start().await;
    let (mqtt, http) = (util::free_port(), util::free_port());
    let mqtt_addr: std::net::SocketAddr = format!("127.0.0.1:{mqtt}").parse().unwrap();
    let http_addr: std::net::SocketAddr = format!("127.0.0.1:{http}").parse().unwrap();
    // A separate process: the gateway's and this test's 10,000 descriptors each stay under
    // the per-process limit. Limits off so every socket reaches the CONNECT timeout (2 s).
    let extra = Extra { mqtt: "max_connections = 20000\nmax_new_connections_per_source = 0", ..Default::default() };
    let config = harness::config_text(&dir.path().join("data"), &ingest.url(), &mqtt_addr.to_string(), &http_addr.to_string(), &extra);
    let mut p = Process::start(dir.path(), &config, mqtt_addr, http_addr).await;
    let started = Instant::now();
    let mut sockets = Vec::with_capacity(SOCKETS);
    for _ in 0..SOCKETS {
        match tokio::net::TcpStream::connect(mqtt_addr).await {
            Ok(s) => sockets.push(s),
            Err(e) => panic!("connect #{} failed: {e}", sockets.len()),
        }
    }
    let opened = started.elapsed();
    // A real device still gets in while they idle.
    let out =
        util::mosquitto_pub(&["-h", "127.0.0.1", "-p", &mqtt.to_string(), "-q", "1", "-i", "dev-1", "-t", "devices/dev-1/t", "-m", "x"])
            .await;
    assert!(out.status.success(), "a device was locked out by idle sockets: {out:?}");
    let mut closed = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    for mut s in sockets {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut byte = [0u8; 1];
        if let Ok(Ok(0)) = tokio::time::timeout(left, s.read(&mut byte)).await {
            closed += 1;
        }
    }
    let all_closed = started.elapsed();
    println!("{SOCKETS} idle sockets opened in {opened:?}; {closed} closed by the gateway after {all_closed:?}");
    assert_eq!(closed, SOCKETS, "every idle socket is closed by the gateway");
    assert!(all_closed < opened + Duration::from_secs(2 + 10), "closed within the 2 s CONNECT timeout (plus slack): {all_closed:?}");
    poll_until("the device's message forwarded", Duration::from_secs(10), || ingest.accepted().len() == 1).await;
    assert_eq!(p.terminate(), Some(0));
}
