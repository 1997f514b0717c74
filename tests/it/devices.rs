//! Device health: online, silent, offline via the API and the gauges; kept across a restart.

use std::time::Duration;

use edge_gateway::config::Config;
use edge_gateway_actors::supervisor::SupervisionConfig;

use crate::harness::{self, Extra};
use crate::ingest::IngestServer;
use crate::util::{self, eventually, poll_until, within};

async fn get_json(gw: &edge_gateway::Gateway, path: &str) -> (u16, serde_json::Value) {
    let (status, body) = harness::http_get(gw.http_addr, path).await;
    (status, serde_json::from_str(&body).unwrap_or(serde_json::Value::Null))
}

async fn state_of(gw: &edge_gateway::Gateway, id: &str) -> String {
    get_json(gw, &format!("/api/devices/{id}")).await.1["state"].as_str().unwrap_or("").to_string()
}

async fn gauge(gw: &edge_gateway::Gateway, state: &str) -> f64 {
    harness::sample(&harness::http_get(gw.http_addr, "/metrics").await.1, &format!("gateway_devices{{state=\"{state}\"}}"))
}

/// The gauges are refreshed once a second: wait for them.
async fn wait_gauge(gw: &edge_gateway::Gateway, state: &str, want: f64) {
    eventually(&format!("gateway_devices{{state={state}}} never became {want}"), Duration::from_secs(5), async || {
        gauge(gw, state).await == want
    })
    .await;
}

async fn wait_state(gw: &edge_gateway::Gateway, id: &str, want: &str) {
    if within(Duration::from_secs(10), async || (state_of(gw, id).await == want).then_some(())).await.is_none() {
        panic!("{id} never became {want}: {}", get_json(gw, &format!("/api/devices/{id}")).await.1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_go_online_silent_and_offline_and_their_status_survives_a_restart() {
    use tokio::io::AsyncWriteExt;
    let dir = util::temp_dir();
    let data = dir.path().join("data");
    let ingest = IngestServer::start().await;
    let extra = Extra { mqtt: "", ..Default::default() };
    let text = harness::config_text(&data, &ingest.url(), "127.0.0.1:0", "127.0.0.1:0", &extra)
        + "\n[devices]\nsilent_after_secs = 4\npersist_every_secs = 1\n";
    let config = Config::parse(&text, Vec::new()).unwrap();
    let gw = edge_gateway::Gateway::start(config.clone(), SupervisionConfig::default_config()).await.unwrap();
    assert_eq!(get_json(&gw, "/api/devices/meter-7").await.0, 404);

    let port = gw.mqtt_addr.port().to_string();
    let mut child = tokio::process::Command::new(util::require("mosquitto_pub"))
        .args(["-h", "127.0.0.1", "-p", &port, "-q", "1", "-l", "-i", "meter-7", "-t", "devices/meter-7/kwh"])
        .stdin(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"1\n2\n3\n").await.unwrap();
    wait_state(&gw, "meter-7", "online").await;
    wait_gauge(&gw, "online", 1.0).await;
    poll_until("3 messages forwarded", Duration::from_secs(10), || ingest.accepted().len() == 3).await;

    wait_state(&gw, "meter-7", "silent").await; // connected, quiet for more than 4 s
    wait_gauge(&gw, "silent", 1.0).await;
    stdin.write_all(b"4\n").await.unwrap();
    wait_state(&gw, "meter-7", "online").await;

    drop(stdin);
    let _ = tokio::time::timeout(util::RUN_LIMIT, child.wait()).await.expect("mosquitto_pub exits once its input ends");
    wait_state(&gw, "meter-7", "offline").await;
    let (_, d) = get_json(&gw, "/api/devices/meter-7").await;
    assert_eq!(d["messages"], 4, "{d}");
    assert_eq!(d["connects"], 1, "{d}");
    assert!(d["disconnected_at_ms"].as_u64().unwrap() >= d["connected_at_ms"].as_u64().unwrap(), "{d}");
    let (status, escaped) = get_json(&gw, "/api/devices/meter%2D7").await;
    assert_eq!((status, &escaped["identity"]), (200, &d["identity"]), "the identity is percent-decoded: {escaped}");
    wait_gauge(&gw, "offline", 1.0).await;
    let (_, list) = get_json(&gw, "/api/devices").await;
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    let (_, health) = get_json(&gw, "/api/health").await;
    assert!(health["uptime_s"].as_f64().is_some() && health["supervision"]["root/devices"]["running"] == true, "{health}");
    gw.stop().await; // the device health actor saves on stop

    let gw = edge_gateway::Gateway::start(config, SupervisionConfig::default_config()).await.unwrap();
    let (status, d) = get_json(&gw, "/api/devices/meter-7").await;
    assert_eq!(status, 200);
    assert_eq!((d["state"].as_str(), d["messages"].as_u64()), (Some("offline"), Some(4)), "{d}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_device_health_actor_still_knows_who_is_connected() {
    use tokio::io::AsyncWriteExt;
    let dir = util::temp_dir();
    let ingest = IngestServer::start().await;
    let gw = harness::start(&dir.path().join("data"), &ingest.url(), &Extra::default()).await;
    let port = gw.mqtt_addr.port().to_string();
    let mut child = tokio::process::Command::new(util::require("mosquitto_pub"))
        .args(["-h", "127.0.0.1", "-p", &port, "-q", "1", "-l", "-i", "meter-9", "-t", "devices/meter-9/kwh"])
        .stdin(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"1\n").await.unwrap();
    wait_state(&gw, "meter-9", "online").await;
    gw.health.actor("root/devices").expect("devices actor").kill();
    let restarts = "gateway_actor_restarts_total{supervisor=\"root\",child=\"devices\"}";
    eventually("devices actor not restarted", Duration::from_secs(10), async || {
        harness::sample(&harness::http_get(gw.http_addr, "/metrics").await.1, restarts) >= 1.0
    })
    .await;
    wait_state(&gw, "meter-9", "online").await;
    drop(stdin);
    let _ = tokio::time::timeout(util::RUN_LIMIT, child.wait()).await.expect("mosquitto_pub exits once its input ends");
    wait_state(&gw, "meter-9", "offline").await;
    gw.stop().await;
}
