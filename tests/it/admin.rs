//! The chaos admin API: off unless asked for, loopback only, token required, and it does what
//! chaos scripts need (tree, kill/stop, storage faults) and nothing else.

use std::time::Duration;

use edge_gateway::config::AdminConfig;
use edge_gateway::config::Config;
use edge_gateway_actors::supervisor::SupervisionConfig;

use crate::harness::{self, Extra};
use crate::ingest::IngestServer;
use crate::util::OutputWithin;
use crate::util::{self, eventually, poll_until};

const TOKEN: &str = "chaos-token-0123456789";

async fn call(addr: std::net::SocketAddr, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    harness::install_crypto();
    let client = reqwest::Client::new();
    let mut req = client.request(method.parse().unwrap(), format!("http://{addr}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("admin request");
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

async fn sample(gw: &edge_gateway::Gateway, series: &str) -> f64 {
    harness::sample(&harness::http_get(gw.http_addr, "/metrics").await.1, series)
}

#[test]
fn the_admin_api_binds_only_to_loopback_with_a_real_token() {
    assert!(AdminConfig::new("0.0.0.0:9881".parse().unwrap(), TOKEN.into()).is_err());
    assert!(AdminConfig::new("127.0.0.1:9881".parse().unwrap(), "short".into()).is_err());
    assert!(AdminConfig::new("127.0.0.1:9881".parse().unwrap(), TOKEN.into()).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_kills_actors_and_injects_faults_for_the_token_holder_only() {
    let dir = util::temp_dir();
    let ingest = IngestServer::start().await;
    let text = harness::config_text(&dir.path().join("data"), &ingest.url(), "127.0.0.1:0", "127.0.0.1:0", &Extra::default());
    let mut config = Config::parse(&text, Vec::new()).unwrap();
    // Off unless asked for.
    let plain = edge_gateway::Gateway::start(config.clone(), SupervisionConfig::default_config()).await.unwrap();
    assert!(plain.admin_addr.is_none());
    plain.stop().await;
    config.admin = Some(AdminConfig::new("127.0.0.1:0".parse().unwrap(), TOKEN.into()).unwrap());
    let gw = edge_gateway::Gateway::start(config, SupervisionConfig::default_config()).await.unwrap();
    let admin = gw.admin_addr.expect("admin API bound");

    assert_eq!(call(admin, "GET", "/admin/tree", None).await.0, 401);
    assert_eq!(call(admin, "GET", "/admin/tree", Some("chaos-token-wrong-000000")).await.0, 401);
    assert_eq!(call(admin, "GET", "/metrics", Some(TOKEN)).await.0, 404, "nothing else is served");
    assert_eq!(call(admin, "GET", "/metrics", None).await.0, 401, "without the token not even a 404");
    assert_eq!(call(admin, "GET", "/admin/actors/root/storage/kill", Some(TOKEN)).await.0, 405);
    let (status, tree) = call(admin, "GET", "/admin/tree", Some(TOKEN)).await;
    assert_eq!(status, 200);
    let tree: serde_json::Value = serde_json::from_str(&tree).unwrap();
    for path in ["root/storage", "root/forwarders", "root/forwarders/forwarder:cloud", "root/sessions", "root/rotation", "root/devices"] {
        assert_eq!(tree["children"][path]["running"], true, "{path} in {tree}");
    }

    let (status, _) = call(admin, "POST", "/admin/actors/root/storage/kill", Some(TOKEN)).await;
    assert_eq!(status, 200);
    let restarts = "gateway_actor_restarts_total{supervisor=\"root\",child=\"storage\"}";
    eventually("killed storage was not restarted", Duration::from_secs(10), async || sample(&gw, restarts).await >= 1.0).await;
    assert_eq!(call(admin, "POST", "/admin/actors/root/nonexistent/kill", Some(TOKEN)).await.0, 404);

    // Let the restarted storage come up, then fail its next commit: no PUBACK for it.
    let health = gw.health.clone();
    poll_until("ready again", Duration::from_secs(10), || health.readiness().is_ok()).await;
    assert_eq!(call(admin, "POST", "/admin/storage/faults?n=1", Some(TOKEN)).await.0, 200);
    assert_eq!(call(admin, "POST", "/admin/storage/faults?n=0", Some(TOKEN)).await.0, 400);
    assert_eq!(call(admin, "POST", "/admin/storage/faults?n=x", Some(TOKEN)).await.0, 400);
    assert_eq!(call(admin, "POST", "/admin/storage/faults", Some(TOKEN)).await.0, 400);
    let port = gw.mqtt_addr.port().to_string();
    let out = util::mosquitto_pub(&[
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-q",
        "1",
        "-V",
        "mqttv5",
        "-i",
        "dev-1",
        "-t",
        "devices/dev-1/t",
        "-m",
        "x",
    ])
    .await;
    let text = util::text(&out);
    assert!(text.contains("failed"), "the injected fault refused the publish: {text}");
    assert_eq!(sample(&gw, "gateway_storage_commit_failures_total").await, 1.0);
    assert_eq!(sample(&gw, "gateway_admin_actions_total{action=\"kill\"}").await, 1.0);
    assert_eq!(sample(&gw, "gateway_admin_actions_total{action=\"storage_faults\"}").await, 1.0);

    // One session: the tree counts it, ending "any" closes its connection, then none is left.
    let any = "/admin/actors/root/sessions/any/kill";
    let mut dev = crate::raw::Raw::connect(gw.mqtt_addr, "dev-2", false).await;
    // The sessions actor hears of a connection from its I/O thread's letters, which leave up to
    // `outbox::HOLD` after the CONNACK (nothing waits for them), so the count follows shortly.
    eventually("the tree counts the one session", Duration::from_secs(5), async || {
        let (_, tree) = call(admin, "GET", "/admin/tree", Some(TOKEN)).await;
        serde_json::from_str::<serde_json::Value>(&tree).unwrap()["sessions"] == 1
    })
    .await;
    assert_eq!(call(admin, "POST", any, Some(TOKEN)).await.0, 200);
    dev.expect_closed(Duration::from_secs(5)).await;
    assert_eq!(call(admin, "POST", any, Some(TOKEN)).await.0, 404, "no session left to end");
    assert_eq!(sample(&gw, "gateway_mqtt_connections_closed_total{reason=\"session_ended\"}").await, 1.0);
    gw.stop().await;
}

#[test]
fn a_non_loopback_admin_address_is_a_usage_error() {
    let dir = util::temp_dir();
    let token = dir.path().join("token");
    std::fs::write(&token, TOKEN).unwrap();
    let out = std::process::Command::new(harness::binary())
        .args(["run", "--admin-listen", "0.0.0.0:9881", "--admin-token-file"])
        .arg(&token)
        .output_within()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("not a loopback address"), "{stderr}");
    let out = std::process::Command::new(harness::binary()).args(["run", "--admin-listen", "127.0.0.1:9881"]).output_within().unwrap();
    assert_eq!(out.status.code(), Some(2), "the token file is required: {}", String::from_utf8_lossy(&out.stderr));
}
