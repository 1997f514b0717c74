//! Visibility: progress-based liveness (a forwarder that forwards nothing while its sink is
//! reachable is restarted; an unreachable sink is an outage, not a stall) and latency metrics.

use std::time::Duration;

use crate::harness::{self, Extra};
use crate::ingest::{IngestServer, Mode};
use crate::util::OutputWithin;
use crate::util::{self, eventually, poll_until, within};

async fn sample(gw: &edge_gateway::Gateway, series: &str) -> f64 {
    harness::sample(&harness::http_get(gw.http_addr, "/metrics").await.1, series)
}

async fn publish(gw: &edge_gateway::Gateway, n: usize) {
    util::publish_one(gw.mqtt_addr, &n.to_string()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_that_accepts_and_never_answers_gets_its_forwarder_restarted() {
    let dir = util::temp_dir();
    let ingest = IngestServer::start().await;
    ingest.set_mode(Mode::Stall);
    // Every request times out (2 s) and is retried: timeouts are not progress; the watchdog
    // notices after stuck_after_secs (which must exceed timeout + backoff_max).
    let extra = Extra { sink: "stuck_after_secs = 3".into(), ..Default::default() };
    let gw = harness::start(&dir.path().join("data"), &ingest.url(), &extra).await;
    publish(&gw, 1).await;
    let stalls = "gateway_forwarder_stalls_total{sink=\"cloud\"}";
    let restarts = "gateway_actor_restarts_total{supervisor=\"root/forwarders\",child=\"forwarder:cloud\"}";
    eventually("the stalled forwarder was never restarted", Duration::from_secs(20), async || sample(&gw, restarts).await >= 1.0).await;
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
    let extra = Extra { sink: "stuck_after_secs = 3".into(), ..Default::default() };
    let gw = harness::start(&dir.path().join("data"), &ingest.url(), &extra).await;
    publish(&gw, 1).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
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
    // Observed after the cursor's commit, which follows the cloud's answer: poll.
    let observed = async || {
        let scrape = harness::http_get(gw.http_addr, "/metrics").await.1;
        (harness::sample(&scrape, "gateway_end_to_end_latency_seconds_count{sink=\"cloud\"}") >= 3.0).then_some(scrape)
    };
    let scrape = match within(Duration::from_secs(10), observed).await {
        Some(scrape) => scrape,
        None => harness::http_get(gw.http_addr, "/metrics").await.1, // the assertions below say what is missing
    };
    assert_eq!(harness::sample(&scrape, "gateway_end_to_end_latency_seconds_count{sink=\"cloud\"}"), 3.0, "{scrape}");
    assert_eq!(harness::sample(&scrape, "gateway_device_to_cloud_latency_seconds_count{sink=\"cloud\"}"), 2.0, "{scrape}");
    // Both device timestamps are ~10 s old (one in ms, one in s): the sum is about 20 s.
    let sum = harness::sample(&scrape, "gateway_device_to_cloud_latency_seconds_sum{sink=\"cloud\"}");
    assert!((19.0..40.0).contains(&sum), "device latency sum {sum}");
    assert!(harness::sample(&scrape, "gateway_end_to_end_latency_seconds_sum{sink=\"cloud\"}") < 10.0);
    gw.stop().await;
}

/// The repository's monitoring files.
fn monitoring(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("monitoring").join(path)
}

fn promtool(args: &[&str]) -> String {
    let out = std::process::Command::new(util::require("promtool")).args(args).output_within().expect("run promtool");
    let text = util::text(&out);
    assert!(out.status.success(), "promtool {args:?}: {text}");
    text
}

#[test]
fn the_alert_rules_pass_promtool_and_their_unit_tests() {
    let rules = monitoring("prometheus/alerts.yml");
    let text = promtool(&["check", "rules", rules.to_str().unwrap()]);
    assert!(text.contains("SUCCESS"), "{text}");
    let tests = monitoring("prometheus/alerts_test.yml");
    let text = promtool(&["test", "rules", tests.to_str().unwrap()]);
    assert!(text.contains("SUCCESS"), "{text}");
    let config = monitoring("prometheus/prometheus.yml");
    promtool(&["check", "config", config.to_str().unwrap()]);
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(monitoring("grafana/edge-gateway.json")).unwrap()).expect("dashboard JSON");
    assert!(dashboard["panels"].as_array().is_some_and(|p| p.len() > 10), "dashboard has its panels");
}

/// A real Prometheus on `config`, its TSDB under `dir`, its API on `addr`.
fn prometheus(config: &std::path::Path, dir: &std::path::Path, addr: std::net::SocketAddr) -> std::process::Child {
    std::process::Command::new(util::require("prometheus"))
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
        .arg(format!("--web.listen-address={addr}"))
        .arg("--log.level=warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start prometheus")
}

/// GET a Prometheus API path; the JSON body.
async fn prom_api(addr: std::net::SocketAddr, path: &str) -> serde_json::Value {
    let url = format!("http://{addr}{path}");
    match reqwest::get(&url).await {
        Ok(r) => r.json().await.unwrap_or(serde_json::Value::Null),
        Err(_) => serde_json::Value::Null,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_the_gateway_and_loads_the_alert_rules() {
    let dir = util::temp_dir();
    let ingest = IngestServer::start().await;
    let gw = harness::start(&dir.path().join("data"), &ingest.url(), &Extra::default()).await;
    publish(&gw, 1).await;
    let prom_addr: std::net::SocketAddr = format!("127.0.0.1:{}", util::free_port()).parse().unwrap();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [\"{}\"]\nscrape_configs:\n  - job_name: edge-gateway\n    static_configs:\n      - targets: [\"{}\"]\n",
        monitoring("prometheus/alerts.yml").display(),
        gw.http_addr
    );
    std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
    let mut prom = prometheus(&dir.path().join("prometheus.yml"), dir.path(), prom_addr);
    harness::install_crypto();
    let query = "/api/v1/query?query=sum(gateway_ingress_messages_total)";
    let scraped = async || {
        let v = prom_api(prom_addr, query).await;
        v["data"]["result"][0]["value"][1].as_str().and_then(|s| s.parse::<f64>().ok())
    };
    let Some(scraped) = within(Duration::from_secs(30), scraped).await else {
        let _ = prom.kill();
        panic!("Prometheus never scraped the gateway: {}", prom_api(prom_addr, query).await);
    };
    let up = prom_api(prom_addr, "/api/v1/query?query=up%7Bjob%3D%22edge-gateway%22%7D").await;
    // Every rule evaluates cleanly against the live series (health "ok" after its first round).
    let all_ok = |rules: &serde_json::Value| {
        let groups = rules["data"]["groups"].as_array().cloned().unwrap_or_default();
        let rules: Vec<serde_json::Value> = groups.iter().flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default()).collect();
        !rules.is_empty() && rules.iter().all(|r| r["health"] == "ok")
    };
    let evaluated = async || Some(prom_api(prom_addr, "/api/v1/rules").await).filter(all_ok);
    let rules = match within(Duration::from_secs(15), evaluated).await {
        Some(rules) => rules,
        None => prom_api(prom_addr, "/api/v1/rules").await, // the assertions below name the failing rule
    };
    let _ = prom.kill();
    let _ = prom.wait();
    assert_eq!(scraped, 1.0);
    assert_eq!(up["data"]["result"][0]["value"][1], "1", "{up}");
    let groups = rules["data"]["groups"].as_array().cloned().unwrap_or_default();
    assert!(groups.iter().any(|g| g["name"] == "edge-gateway"), "alert rules loaded: {rules}");
    assert!(all_ok(&rules), "{rules}");
    gw.stop().await;
}

/// monitoring/prometheus/prometheus-https.yml, with its paths and target pointed at a gateway
/// with `http.auth = "all"` and HTTPS: a real Prometheus scrapes it (`up` = 1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_over_https_with_the_token_as_in_the_example() {
    let dir = util::temp_dir();
    let ingest = IngestServer::start().await;
    let pki = crate::trust::TestPki::new(dir.path());
    let token = dir.path().join("http.token");
    std::fs::write(&token, "prometheus-scrape-token-42\n").unwrap();
    let http = format!(
        "auth = \"all\"\ntoken_file = \"{}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"",
        token.display(),
        pki.path("server.pem").display(),
        pki.path("server.key").display()
    );
    let gw = harness::start(&dir.path().join("data"), &ingest.url(), &Extra { http, ..Default::default() }).await;
    let example = std::fs::read_to_string(monitoring("prometheus/prometheus-https.yml")).unwrap();
    let config = example
        .replace("/etc/prometheus/edge-gateway.token", &token.display().to_string())
        .replace("/etc/prometheus/edge-gateway-ca.pem", &pki.path("ca.pem").display().to_string())
        .replace("gateway-1.site-a.example", "localhost")
        .replace("10.0.0.5:9880", &gw.http_addr.to_string())
        .replace("- alerts.yml", &format!("- {}", monitoring("prometheus/alerts.yml").display()))
        .replace("15s", "1s");
    let file = dir.path().join("prometheus.yml");
    std::fs::write(&file, config).unwrap();
    let checked = promtool(&["check", "config", file.to_str().unwrap()]);
    assert!(checked.contains("SUCCESS"), "{checked}");
    let prom_addr: std::net::SocketAddr = format!("127.0.0.1:{}", util::free_port()).parse().unwrap();
    let mut prom = prometheus(&file, dir.path(), prom_addr);
    harness::install_crypto();
    let query = "/api/v1/query?query=up%7Bjob%3D%22edge-gateway%22%7D";
    let up = async || prom_api(prom_addr, query).await["data"]["result"][0]["value"][1].as_str().map(str::to_string);
    let scraped = within(Duration::from_secs(30), async || up().await.filter(|v| v == "1")).await;
    let targets = prom_api(prom_addr, "/api/v1/targets").await;
    let _ = prom.kill();
    let _ = prom.wait();
    assert_eq!(scraped.as_deref(), Some("1"), "Prometheus could not scrape over HTTPS with the token: {targets}");
    gw.stop().await;
}
