//! The durable pipeline end to end: devices -> gateway -> ingestion server.

use edge_gateway_actors::metrics::{DeliveryKind, DeliveryLabels, SinkLabels};
use std::collections::HashMap;
use std::time::Duration;

use crate::harness::{self, Extra, http_get, sample};
use crate::ingest::{IngestServer, Mode};
use crate::util::{self, eventually, poll_until, within};

const DRAIN: Duration = Duration::from_secs(60);

/// For every device, the payloads that reached the cloud (first copy of each key), in order.
fn payloads_by_device(ingest: &IngestServer) -> HashMap<String, Vec<String>> {
    let mut seen = std::collections::HashSet::new();
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for m in ingest.accepted() {
        if seen.insert(m.key.clone()) {
            out.entry(m.device.clone()).or_default().push(String::from_utf8_lossy(&m.payload_bytes()).into_owned());
        }
    }
    out
}

fn assert_every_message_once_in_order(ingest: &IngestServer, clients: &[String], n: usize) {
    let by_device = payloads_by_device(ingest);
    for c in clients {
        let expected: Vec<String> = (0..n).map(|i| format!("{c}-{i}")).collect();
        assert_eq!(by_device.get(c), Some(&expected), "device {c}: messages missing, duplicated or out of order");
    }
    ingest.assert_per_device_order();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_clients_times_a_thousand_messages_arrive_once_in_device_order() {
    let dir = util::temp_dir();
    let ingest = IngestServer::start().await;
    let gw = harness::start(dir.path(), &ingest.url(), &Extra::default()).await;
    let clients: Vec<String> = (0..10).map(|i| format!("dev-{i}")).collect();
    let mut tasks = Vec::new();
    for (i, c) in clients.iter().enumerate() {
        let (c, addr) = (c.clone(), gw.mqtt_addr);
        tasks.push(tokio::spawn(async move {
            match i % 3 {
                0 => rumqttc_publish_to(addr, &c, 1000).await,
                1 => mosquitto_publish_to(addr, &c, 1000, false).await,
                _ => mosquitto_publish_to(addr, &c, 1000, true).await,
            }
        }));
    }
    for t in tasks {
        t.await.expect("publisher task");
    }
    poll_until("10,000 unique messages at the ingestion server", DRAIN, || ingest.unique_keys() >= 10_000).await;
    assert_eq!(ingest.unique_keys(), 10_000);
    assert_every_message_once_in_order(&ingest, &clients, 1000);
    assert_eq!(ingest.malformed(), 0);
    // The counter follows the store's cursor update, a moment after the server has the batch.
    let forwarded = "gateway_forwarded_messages_total{sink=\"cloud\"}";
    let addr = gw.http_addr;
    eventually("10,000 forwarded counted", Duration::from_secs(10), async || {
        sample(&http_get(addr, "/metrics").await.1, forwarded) >= 10_000.0
    })
    .await;
    let (_, scrape) = http_get(gw.http_addr, "/metrics").await;
    assert_eq!(sample(&scrape, forwarded), 10_000.0);
    let keys = ingest.batch_keys();
    assert!(
        !keys.is_empty() && keys.iter().all(|k| k.starts_with(&gw.gateway_id)),
        "Idempotency-Key headers: {:?}",
        &keys[..keys.len().min(3)]
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backlog_grows_while_the_cloud_is_down_and_drains_when_it_returns() {
    let dir = util::temp_dir();
    let ingest = IngestServer::start().await;
    ingest.stop();
    let gw = harness::start(dir.path(), &ingest.url(), &Extra::default()).await;
    let clients: Vec<String> = (0..4).map(|i| format!("out-{i}")).collect();
    let mut tasks = Vec::new();
    for c in &clients {
        let (c, addr) = (c.clone(), gw.mqtt_addr);
        tasks.push(tokio::spawn(async move { mosquitto_publish_to(addr, &c, 500, false).await }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (_, scrape) = http_get(gw.http_addr, "/metrics").await;
    assert_eq!(sample(&scrape, "gateway_backlog_messages"), 2000.0, "every acknowledged message is in the backlog");
    assert!(sample(&scrape, "gateway_forward_errors_total{sink=\"cloud\",kind=\"connect\"}") >= 1.0);
    assert_eq!(ingest.unique_keys(), 0);
    ingest.restart().await;
    poll_until("backlog drained to the cloud", DRAIN, || ingest.unique_keys() >= 2000).await;
    assert_every_message_once_in_order(&ingest, &clients, 500);
    let m = gw.metrics.clone();
    poll_until("backlog gauge back to 0", Duration::from_secs(10), || m.backlog_messages.get() == 0).await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_and_stalls_are_retried_until_accepted() {
    let dir = util::temp_dir();
    let ingest = IngestServer::start().await;
    ingest.set_mode(Mode::Fail(503));
    let gw = harness::start(dir.path(), &ingest.url(), &Extra::default()).await;
    mosquitto_publish_to(gw.mqtt_addr, "flaky-1", 50, true).await;
    poll_until("a few 503 answers", Duration::from_secs(10), || ingest.requests() >= 3).await;
    ingest.set_mode(Mode::Fail(401));
    let m = gw.metrics.clone();
    let auth = move || m.forward_errors.get_or_create(&DeliveryLabels { sink: "cloud".into(), kind: DeliveryKind::HttpAuth }).get();
    poll_until("401 answers retried", Duration::from_secs(10), || auth() >= 2).await;
    assert_eq!(gw.metrics.dead_letters.get_or_create(&SinkLabels { sink: "cloud".into() }).get(), 0, "a 401 dead-letters nothing");
    ingest.set_mode(Mode::Stall);
    let m = gw.metrics.clone();
    let timeouts = move || m.forward_errors.get_or_create(&DeliveryLabels { sink: "cloud".into(), kind: DeliveryKind::Timeout }).get();
    poll_until("a request timed out on the stalled endpoint", Duration::from_secs(20), || timeouts() >= 1).await;
    ingest.set_mode(Mode::Ok);
    poll_until("every message accepted", DRAIN, || ingest.unique_keys() >= 50).await;
    assert_every_message_once_in_order(&ingest, &["flaky-1".to_string()], 50);
    let http5xx = gw.metrics.forward_errors.get_or_create(&DeliveryLabels { sink: "cloud".into(), kind: DeliveryKind::Http5xx }).get();
    assert!(http5xx >= 3, "5xx answers counted: {http5xx}");
    gw.stop().await;
}

/// A retry resends exactly the batch it retries, under the same `Idempotency-Key`, even when
/// more messages were stored in the meantime; those come in a later request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_resends_the_same_batch_under_the_same_key() {
    let dir = util::temp_dir();
    let ingest = IngestServer::start().await;
    ingest.set_mode(Mode::Fail(503));
    let gw = harness::start(dir.path(), &ingest.url(), &Extra::default()).await;
    mosquitto_publish_to(gw.mqtt_addr, "retry-1", 3, true).await;
    poll_until("a 503 answer", Duration::from_secs(10), || !ingest.failed().is_empty()).await;
    mosquitto_publish_to(gw.mqtt_addr, "retry-2", 3, true).await; // stored while the batch is retried
    poll_until("retries after the new messages", Duration::from_secs(10), || ingest.failed().len() >= 4).await;
    ingest.set_mode(Mode::Ok);
    poll_until("every message accepted", DRAIN, || ingest.unique_keys() >= 6).await;

    let failed = ingest.failed();
    let (key, messages) = failed[0].clone();
    assert!(key.contains(".."), "{key}");
    assert!(failed.iter().all(|f| f == &failed[0]), "every attempt is the same batch: {failed:#?}");
    let batch_keys = ingest.batch_keys();
    assert_eq!(batch_keys[0], key, "the accepted attempt too: {batch_keys:?}");
    let accepted: Vec<String> = ingest.accepted().iter().map(|m| m.key.clone()).collect();
    assert_eq!(accepted[..messages.len()], messages[..], "the same messages, in the same order");
    assert!(batch_keys.len() >= 2, "the later messages come in a later request: {batch_keys:?}");
    assert_every_message_once_in_order(&ingest, &["retry-1".to_string(), "retry-2".to_string()], 3);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_message_is_dead_lettered_and_the_queue_moves_on() {
    let dir = util::temp_dir();
    let ingest = IngestServer::start().await;
    ingest.set_mode(Mode::RejectPayloadContaining("poison".into()));
    let gw = harness::start(dir.path(), &ingest.url(), &Extra::default()).await;
    mosquitto_publish_lines(gw.mqtt_addr, "dl-1", "ok-0\nok-1\npoison-2\nok-3\nok-4\n", false).await;
    poll_until("the four good messages accepted", DRAIN, || ingest.unique_keys() >= 4).await;
    let got: Vec<String> = payloads_by_device(&ingest).remove("dl-1").unwrap_or_default();
    assert_eq!(got, ["ok-0", "ok-1", "ok-3", "ok-4"]);
    let m = gw.metrics.clone();
    poll_until("dead letter counted", Duration::from_secs(10), || {
        m.dead_letters.get_or_create(&SinkLabels { sink: "cloud".into() }).get() == 1
    })
    .await;
    let dead = gw.store.dead_letters(100).unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].record.payload, b"poison-2");
    assert!(dead[0].reason.contains("400"), "reason: {}", dead[0].reason);
    let (status, body) = http_get(gw.http_addr, "/api/dead-letters").await;
    assert_eq!(status, 200);
    let listed: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(listed[0]["sink"], "cloud");
    assert_eq!(listed[0]["message"]["payload"], "poison-2");
    gw.stop().await;
}

/// Publish `n` QoS1 messages `"{client}-{i}"` with rumqttc; returns when every PUBACK arrived.
pub(crate) async fn rumqttc_publish_to(addr: std::net::SocketAddr, client: &str, n: usize) {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let mut opts = MqttOptions::new(client, addr.ip().to_string(), addr.port());
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_inflight(50);
    let (cli, mut events) = AsyncClient::new(opts, 100);
    let topic = format!("devices/{client}/telemetry");
    let payloads: Vec<String> = (0..n).map(|i| format!("{client}-{i}")).collect();
    let publisher = tokio::spawn(async move {
        for p in payloads {
            cli.publish(&topic, QoS::AtLeastOnce, false, p.into_bytes()).await.expect("queue publish");
        }
        cli
    });
    let mut acks = 0;
    while acks < n {
        match tokio::time::timeout(Duration::from_secs(30), events.poll()).await {
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => acks += 1,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("{client}: connection error after {acks} acks: {e}"),
            Err(_) => panic!("{client}: no event for 30 s after {acks} acks"),
        }
    }
    let _ = publisher.await;
}

/// `mosquitto_pub -l`: one QoS1 message per stdin line, `"{client}-{i}"`; waits for it to exit 0.
/// A forwarder's cursor move is committed with the next transaction, not one of its own. When
/// that transaction fails and nothing else comes, the idle forwarder finds the stored cursor
/// behind and commits it: the delivered messages leave the backlog (before: they stayed, in the
/// quota and the gauges, until the next delivery).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_move_lost_to_a_failed_commit_is_committed_again_when_the_forwarder_is_idle() {
    let dir = util::temp_dir();
    let ingest = IngestServer::start().await;
    ingest.stop(); // the messages stay in the store until the fault is armed
    let gw = harness::start(dir.path(), &ingest.url(), &Extra::default()).await;
    mosquitto_publish_to(gw.mqtt_addr, "lost-ack", 5, true).await;
    let m = gw.metrics.clone();
    assert_eq!(m.backlog_messages.get(), 5);
    // The next transaction fails: nothing else commits until the cursor move after the delivery.
    gw.storage.get().expect("storage actor").cast(edge_gateway_actors::storage::StorageMsg::InjectFaults(1)).unwrap();
    ingest.restart().await;
    poll_until("delivered", DRAIN, || ingest.unique_keys() >= 5).await;
    poll_until("the cursor move's transaction failed", Duration::from_secs(10), || m.commit_failures.get() == 1).await;
    poll_until("the delivered messages left the backlog", Duration::from_secs(10), || m.backlog_messages.get() == 0).await;
    assert_eq!(ingest.unique_keys(), 5);
    gw.stop().await;
}

pub(crate) async fn mosquitto_publish_to(addr: std::net::SocketAddr, client: &str, n: usize, v5: bool) {
    let lines: String = (0..n).map(|i| format!("{client}-{i}\n")).collect();
    mosquitto_publish_lines(addr, client, &lines, v5).await
}

/// `mosquitto_pub -l` to `devices/{client}/telemetry`: one QoS1 message per line of `lines`.
async fn mosquitto_publish_lines(addr: std::net::SocketAddr, client: &str, lines: &str, v5: bool) {
    let bin = util::require("mosquitto_pub");
    let mut child = tokio::process::Command::new(bin)
        .args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string(), "-q", "1", "-i", client, "-l"])
        .args(["-t", &format!("devices/{client}/telemetry")])
        .args(["-V", if v5 { "mqttv5" } else { "mqttv311" }])
        .stdin(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn mosquitto_pub");
    let mut stdin = child.stdin.take().unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stdin, lines.as_bytes()).await.unwrap();
    drop(stdin);
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait()).await.expect("mosquitto_pub finishes").unwrap();
    assert!(status.success(), "mosquitto_pub {client} failed: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qos0_publish_sent_together_with_disconnect_is_stored_and_counted() {
    // mosquitto_pub -q 0 writes CONNECT, PUBLISH and DISCONNECT back to back: ntex used to
    // drop such a publish unseen (found by the metric catalogue's review).
    let dir = util::temp_dir();
    let ingest = IngestServer::start().await;
    let gw = harness::start(&dir.path().join("data"), &ingest.url(), &Extra::default()).await;
    let port = gw.mqtt_addr.port().to_string();
    for (i, v) in ["mqttv311", "mqttv5"].iter().cycle().take(10).enumerate() {
        let m = format!("q0-{i}");
        let out =
            util::mosquitto_pub(&["-h", "127.0.0.1", "-p", &port, "-q", "0", "-V", v, "-i", "dev-1", "-t", "devices/dev-1/t", "-m", &m])
                .await;
        assert!(out.status.success());
    }
    poll_until("every QoS 0 message forwarded", Duration::from_secs(10), || ingest.accepted().len() == 10).await;
    // Counted by a task of its own after the commit: poll.
    let count = async || {
        let scrape = http_get(gw.http_addr, "/metrics").await.1;
        sample(&scrape, "gateway_ingress_messages_total{protocol=\"v3\",qos=\"0\"}")
            + sample(&scrape, "gateway_ingress_messages_total{protocol=\"v5\",qos=\"0\"}")
    };
    if within(Duration::from_secs(10), async || (count().await == 10.0).then_some(())).await.is_none() {
        panic!("counted {} of 10 QoS 0 messages", count().await);
    }
    gw.stop().await;
}
