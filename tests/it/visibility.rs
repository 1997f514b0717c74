//! Visibility: progress-based liveness (a forwarder that forwards nothing while its sink is
//! reachable is restarted; an unreachable sink is an outage, not a stall) and latency metrics.

use std::time::Duration;

use crate::harness::{self, Extra};
use crate::ingest::{IngestServer, Mode};
use crate::util::{self, poll_until};

async fn sample(gw: &edge_gateway::Gateway, series: &str) -> f64 {
    harness::sample(&harness::http_get(gw.http_addr, "/metrics").await.1, series)
}

async fn publish(gw: &edge_gateway::Gateway, n: usize) {
    let port = gw.mqtt_addr.port().to_string();
    let out =
        util::mosquitto_pub(&["-h", "127.0.0.1", "-p", &port, "-q", "1", "-i", "dev-1", "-t", "devices/dev-1/t", "-m", &n.to_string()])
            .await;
    assert!(out.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_that_accepts_and_never_answers_gets_its_forwarder_restarted() {
    let dir = util::temp_dir();
    let ingest = IngestServer::start().await;
    ingest.set_mode(Mode::Stall);
    // The request timeout is far away: only the watchdog can notice.
    let extra = Extra { sink: "timeout_ms = 60000\nstuck_after_secs = 1".into(), ..Default::default() };
    let gw = harness::start(&dir.path().join("data"), &ingest.url(), &extra).await;
    publish(&gw, 1).await;
    let stalls = "gateway_forwarder_stalls_total{sink=\"cloud\"}";
    let restarts = "gateway_actor_restarts_total{supervisor=\"root/forwarders\",child=\"forwarder:cloud\"}";
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while sample(&gw, restarts).await < 1.0 {
        assert!(std::time::Instant::now() < deadline, "the stalled forwarder was never restarted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(sample(&gw, stalls).await >= 1.0);
    ingest.set_mode(Mode::Ok);
    poll_until("delivered by the new forwarder", Duration::from_secs(15), || !ingest.accepted().is_empty()).await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_sink_is_an_outage_not_a_stall() {
    let dir = util::temp_dir();
    let ingest = IngestServer::start().await;
    ingest.stop(); // connection refused
    let extra = Extra { sink: "stuck_after_secs = 1".into(), ..Default::default() };
    let gw = harness::start(&dir.path().join("data"), &ingest.url(), &extra).await;
    publish(&gw, 1).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(sample(&gw, "gateway_forwarder_stalls_total{sink=\"cloud\"}").await, 0.0);
    assert!(sample(&gw, "gateway_forward_errors_total{sink=\"cloud\",kind=\"connect\"}").await >= 1.0);
    ingest.restart().await;
    poll_until("delivered after the outage", Duration::from_secs(15), || ingest.accepted().len() == 1).await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_latency_is_measured_from_receipt_and_from_the_devices_own_timestamp() {
    let dir = util::temp_dir();
    let ingest = IngestServer::start().await;
    let gw = harness::start(&dir.path().join("data"), &ingest.url(), &Extra::default()).await;
    let port = gw.mqtt_addr.port().to_string();
    let ten_s_ago = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() - 10_000).to_string();
    let base = ["-h", "127.0.0.1", "-p", &port, "-q", "1", "-i", "dev-1", "-t", "devices/dev-1/t", "-V", "mqttv5"];
    let with_property = [&base[..], &["-D", "publish", "user-property", "ts", &ten_s_ago, "-m", "21.5"]].concat();
    let json = format!("{{\"ts\": {}, \"temp\": 21.6}}", ten_s_ago.parse::<u64>().unwrap() / 1000);
    let with_json = [&base[..], &["-m", &json]].concat();
    let without = [&base[..], &["-m", "21.7"]].concat();
    for args in [&with_property, &with_json, &without] {
        assert!(util::mosquitto_pub(args).await.status.success());
    }
    poll_until("3 delivered", Duration::from_secs(10), || ingest.accepted().len() == 3).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let scrape = harness::http_get(gw.http_addr, "/metrics").await.1;
    assert_eq!(harness::sample(&scrape, "gateway_end_to_end_latency_seconds_count{sink=\"cloud\"}"), 3.0, "{scrape}");
    assert_eq!(harness::sample(&scrape, "gateway_device_to_cloud_latency_seconds_count{sink=\"cloud\"}"), 2.0, "{scrape}");
    // Both device timestamps are ~10 s old (one in ms, one in s): the sum is about 20 s.
    let sum = harness::sample(&scrape, "gateway_device_to_cloud_latency_seconds_sum{sink=\"cloud\"}");
    assert!((19.0..40.0).contains(&sum), "device latency sum {sum}");
    assert!(harness::sample(&scrape, "gateway_end_to_end_latency_seconds_sum{sink=\"cloud\"}") < 10.0);
    gw.stop().await;
}
