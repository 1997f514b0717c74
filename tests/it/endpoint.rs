//! The local HTTP endpoint and the storage quota as devices see it.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::{self, Extra, http_get, sample};
use crate::ingest::IngestServer;
use crate::raw::Raw;
use crate::util::{self, eventually, poll_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_scrape_passes_promtool_and_health_endpoints_answer() {
    let dir = util::temp_dir();
    let ingest = IngestServer::start().await;
    let gw = harness::start(dir.path(), &ingest.url(), &Extra::default()).await;
    crate::pipeline::mosquitto_publish_to(gw.mqtt_addr, "scrape-1", 20, true).await;
    poll_until("delivered", Duration::from_secs(20), || ingest.unique_keys() >= 20).await;
    // The sink's reply reaches the ingestion server's count before the gateway counts the batch
    // (after its store records the cursor), so the counter may lag the server by a moment.
    let forwarded = "gateway_forwarded_messages_total{sink=\"cloud\"}";
    let addr = gw.http_addr;
    eventually("20 forwarded counted", Duration::from_secs(10), async || sample(&http_get(addr, "/metrics").await.1, forwarded) >= 20.0)
        .await;
    let (status, scrape) = http_get(gw.http_addr, "/metrics").await;
    assert_eq!(status, 200);
    for name in [
        "gateway_ingress_messages_total",
        "gateway_ingress_bytes_total",
        "gateway_storage_commits_total",
        "gateway_storage_commit_batch_size_bucket",
        "gateway_storage_commit_duration_seconds_bucket",
        "gateway_puback_latency_seconds_bucket",
        "gateway_backlog_messages",
        "gateway_backlog_bytes",
        "gateway_backlog_oldest_age_seconds",
        "gateway_forwarded_messages_total",
        "gateway_dropped_messages_total",
        "gateway_build_info",
    ] {
        assert!(scrape.lines().any(|l| l.starts_with(name)), "{name} missing from the scrape");
    }
    assert_eq!(sample(&scrape, forwarded), 20.0);
    let promtool = util::require("promtool");
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(scrape.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(http_get(gw.http_addr, "/healthz").await.0, 200);
    assert_eq!(http_get(gw.http_addr, "/readyz").await.0, 200);
    assert_eq!(http_get(gw.http_addr, "/nope").await.0, 404);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_fails_while_a_permanent_child_is_down() {
    let dir = util::temp_dir();
    let ingest = IngestServer::start().await;
    // A slow restart keeps the storage actor down long enough to observe.
    let text = edge_gateway_actors::supervisor::spec::DEFAULT_SUPERVISION_TOML.replacen(
        "backoff_initial_ms = 10\nbackoff_max_ms = 1000",
        "backoff_initial_ms = 1500\nbackoff_max_ms = 1500",
        1,
    );
    let sup = edge_gateway_actors::supervisor::SupervisionConfig::parse(&text).unwrap();
    assert_eq!(sup.root.backoff.initial, Duration::from_millis(1500));
    let gw = harness::start_with(dir.path(), &ingest.url(), &Extra::default(), sup).await;
    gw.health.actor("root/storage").unwrap().kill();
    // `kill` only signals: readiness changes once the supervisor has seen the child end.
    let addr = gw.http_addr;
    let down = async || {
        let (status, body) = http_get(addr, "/readyz").await;
        (status == 503).then_some(body)
    };
    let body = util::within(Duration::from_secs(1), down).await.expect("/readyz never said 503 while root/storage was down");
    assert!(body.contains("root/storage is not running"), "{body}");
    let health = gw.health.clone();
    poll_until("storage back", Duration::from_secs(10), || health.readiness().is_ok()).await;
    assert_eq!(http_get(gw.http_addr, "/readyz").await.0, 200);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_quota_refuses_with_0x97_on_v5_and_no_puback_on_v3() {
    let dir = util::temp_dir();
    let ingest = IngestServer::start().await;
    ingest.stop(); // nothing drains
    let extra = Extra { storage: "quota_messages = 3", ..Default::default() };
    let gw = harness::start(dir.path(), &ingest.url(), &extra).await;
    let mut v5 = Raw::connect(gw.mqtt_addr, "quota-v5", true).await;
    for pkid in 1..=3 {
        v5.publish("devices/q/t", b"fits", pkid).await;
        assert_eq!(v5.expect_puback(pkid).await, 0);
    }
    v5.publish("devices/q/t", b"too many", 4).await;
    assert_eq!(v5.expect_puback(4).await, 0x97, "quota exceeded");
    let mut v3 = Raw::connect(gw.mqtt_addr, "quota-v3", false).await;
    v3.publish("devices/q/t", b"too many", 1).await;
    let seen = v3.expect_closed(Duration::from_secs(5)).await;
    assert!(seen.iter().all(|(f, _)| *f != 0x40), "no PUBACK on v3: {seen:?}");
    let (_, scrape) = http_get(gw.http_addr, "/metrics").await;
    assert_eq!(sample(&scrape, "gateway_ingress_rejected_total{reason=\"quota\"}"), 2.0);
    assert_eq!(sample(&scrape, "gateway_backlog_messages"), 3.0);
    // The cloud returns: the backlog drains and room is made again.
    ingest.restart().await;
    poll_until("backlog delivered", Duration::from_secs(20), || ingest.unique_keys() >= 3).await;
    let m = gw.metrics.clone();
    poll_until("backlog empty", Duration::from_secs(10), || m.backlog_messages.get() == 0).await;
    let mut again = Raw::connect(gw.mqtt_addr, "quota-v5b", true).await;
    again.publish("devices/q/t", b"room again", 1).await;
    assert_eq!(again.expect_puback(1).await, 0);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_content_type_and_user_properties_reach_the_cloud() {
    let dir = util::temp_dir();
    let ingest = IngestServer::start().await;
    let gw = harness::start(dir.path(), &ingest.url(), &Extra::default()).await;
    let port = gw.mqtt_addr.port().to_string();
    let out = util::mosquitto_pub(&[
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-V",
        "mqttv5",
        "-q",
        "1",
        "-i",
        "props-1",
        "-t",
        "devices/props-1/t",
        "-m",
        "{\"t\":1}",
        "-D",
        "publish",
        "content-type",
        "application/json",
        "-D",
        "publish",
        "user-property",
        "site",
        "north",
    ])
    .await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    poll_until("delivered", Duration::from_secs(20), || ingest.unique_keys() >= 1).await;
    let m = &ingest.accepted()[0];
    assert_eq!(m.content_type.as_deref(), Some("application/json"));
    assert_eq!(m.user_properties, [("site".to_string(), "north".to_string())]);
    assert_eq!(m.payload.as_deref(), Some("{\"t\":1}"));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_commit_sends_no_puback_and_readiness_says_so_until_it_recovers() {
    use edge_gateway_actors::storage::StorageMsg;
    let dir = util::temp_dir();
    let ingest = IngestServer::start().await;
    let gw = harness::start(dir.path(), &ingest.url(), &Extra::default()).await;
    let storage = gw.storage.get().expect("storage running");
    let mut v5 = Raw::connect(gw.mqtt_addr, "fault-v5", true).await;
    let mut v3 = Raw::connect(gw.mqtt_addr, "fault-v3", false).await;

    storage.cast(StorageMsg::InjectFaults(1)).unwrap();
    v5.publish("devices/f/t", b"lost", 1).await;
    assert_eq!(v5.expect_puback(1).await, 0x80, "v5: unspecified error");
    let (status, body) = http_get(gw.http_addr, "/readyz").await;
    assert_eq!(status, 503);
    assert!(body.contains("storage is not writable"), "{body}");

    storage.cast(StorageMsg::InjectFaults(1)).unwrap();
    v3.publish("devices/f/t", b"lost too", 1).await;
    let seen = v3.expect_closed(Duration::from_secs(5)).await;
    assert!(seen.iter().all(|(f, _)| *f != 0x40), "v3: no PUBACK: {seen:?}");

    v5.publish("devices/f/t", b"kept", 2).await;
    assert_eq!(v5.expect_puback(2).await, 0, "the next commit succeeds");
    assert_eq!(http_get(gw.http_addr, "/readyz").await.0, 200);
    poll_until("delivered", Duration::from_secs(20), || ingest.unique_keys() >= 1).await;
    let payloads: Vec<Vec<u8>> = ingest.accepted().iter().map(|m| m.payload_bytes()).collect();
    assert_eq!(payloads, [b"kept".to_vec()], "nothing from a failed commit reached the cloud");
    assert_eq!(gw.metrics.commit_failures.get(), 2);
    gw.stop().await;
}

/// Every metric in docs/METRICS.md, and every label value it lists that comes from code, is in
/// the first scrape of a fresh gateway (at 0 until something happens).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_scrape_shows_every_metric_and_label_value_of_the_catalogue() {
    let dir = util::temp_dir();
    let ingest = IngestServer::start().await;
    // With the example schema registry: its subjects' series exist from the start too.
    let registry = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/schemas");
    // And with an archive class: the archive's series too.
    let archive = crate::archive::archive_section("[[archive.classes]]\nname = \"all\"\ntopics = [\"#\"]\nmin_keep_days = 1\n");
    let extra = Extra { schemas: format!("dir = \"{registry}\""), sink: archive, ..Default::default() };
    let gw = harness::start(dir.path(), &ingest.url(), &extra).await;
    let (_, scrape) = http_get(gw.http_addr, "/metrics").await;
    gw.stop().await;
    let catalogue = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/METRICS.md")).unwrap();
    let samples: Vec<&str> = scrape.lines().filter(|l| !l.starts_with('#')).collect();
    let mut missing = Vec::new();
    let mut checked = 0;
    for row in catalogue.lines().filter(|l| l.starts_with("| `gateway_")) {
        let cells: Vec<&str> = row.split(" | ").collect();
        let name = cells[0].trim_start_matches("| ").trim_matches('`');
        // Present only with TLS or an HTTPS sink with client files, with a real time, never 0.
        if name == "gateway_certificate_expiry_timestamp_seconds" {
            continue;
        }
        let of_metric: Vec<&str> =
            samples.iter().copied().filter(|s| s.strip_prefix(name).is_some_and(|rest| rest.starts_with(['{', ' ', '_']))).collect();
        checked += 1;
        if of_metric.is_empty() {
            missing.push(name.to_string());
            continue;
        }
        // `label`: `v1`, `v2`; `other`: ... — values from config (sink, cert, target, paths) differ per setup.
        for part in cells.get(2).unwrap_or(&"").split(';') {
            let Some((names, values)) = part.split_once(':') else { continue };
            // `` `supervisor`, `child`: as for ... ``: several labels described together, from config.
            let names: Vec<&str> = names.split('`').skip(1).step_by(2).collect();
            let [label] = names[..] else { continue };
            if ["sink", "cert", "target", "supervisor", "child", "version", "subject"].contains(&label) {
                continue;
            }
            for value in values.split(',').filter_map(|v| v.trim().split('`').nth(1)) {
                let wanted = format!("{label}=\"{value}\"");
                if !of_metric.iter().any(|s| s.contains(&wanted)) {
                    missing.push(format!("{name}{{{wanted}}}"));
                }
            }
        }
    }
    assert!(checked >= 40, "only {checked} metrics found in docs/METRICS.md");
    assert!(missing.is_empty(), "in docs/METRICS.md but not in a fresh scrape: {missing:#?}");
    // The tree's children and the sink are known at start too.
    for series in [
        "gateway_actor_restarts_total{supervisor=\"root\",child=\"storage\"} 0",
        "gateway_actor_exits_total{supervisor=\"root/forwarders\",child=\"forwarder:cloud\",reason=\"failed\"} 0",
        "gateway_supervisor_escalations_total{supervisor=\"root/forwarders\"} 0",
        "gateway_forward_errors_total{sink=\"cloud\",kind=\"connect\"} 0",
        "gateway_reloads_total{target=\"acl\",result=\"rejected\"} 0",
    ] {
        assert!(samples.contains(&series), "{series} missing");
    }
}

/// `POST /api/store/acknowledge` needs the token the gateway made in its data dir; with
/// `http.auth = "all"` so do `/metrics` and `/api/*` (not the probes); with `http.tls_cert` the
/// API is HTTPS only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_api_needs_its_token_for_writes_and_with_auth_all_for_reads_over_https() {
    harness::install_crypto();
    let dir = util::temp_dir();
    let ingest = IngestServer::start().await;
    let data = dir.path().join("data");
    let gw = harness::start(&data, &ingest.url(), &Extra::default()).await;
    let http = reqwest::Client::new();
    let base = format!("http://{}", gw.http_addr);
    assert_eq!(http.get(format!("{base}/metrics")).send().await.unwrap().status(), 200, "reads are open by default");
    let ack = format!("{base}/api/store/acknowledge");
    assert_eq!(http.post(&ack).send().await.unwrap().status(), 401);
    assert_eq!(http.post(&ack).bearer_auth("0123456789abcdef-wrong").send().await.unwrap().status(), 401);
    let token = std::fs::read_to_string(data.join("http.token")).expect("token made at the first start");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(std::fs::metadata(data.join("http.token")).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(http.post(&ack).bearer_auth(token.trim()).send().await.unwrap().status(), 200);
    gw.stop().await;

    // Everything behind a configured token, over HTTPS.
    let pki = crate::trust::TestPki::new(dir.path());
    let token_file = dir.path().join("scrape.token");
    std::fs::write(&token_file, "scrape-token-0123456789\n").unwrap();
    let extra = Extra {
        http: format!(
            "auth = \"all\"\ntoken_file = \"{}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"",
            token_file.display(),
            pki.path("server.pem").display(),
            pki.path("server.key").display()
        ),
        tls: "check_interval_secs = 1\nreload_debounce_ms = 100".into(),
        ..Default::default()
    };
    let gw = harness::start(&dir.path().join("data2"), &ingest.url(), &extra).await;
    let ca = reqwest::Certificate::from_pem(&std::fs::read(pki.path("ca.pem")).unwrap()).unwrap();
    let https = reqwest::Client::builder().add_root_certificate(ca).build().unwrap();
    let base = format!("https://localhost:{}", gw.http_addr.port());
    for path in ["/metrics", "/api/devices", "/api/health", "/api/dead-letters"] {
        assert_eq!(https.get(format!("{base}{path}")).send().await.unwrap().status(), 401, "{path} without the token");
    }
    let scrape = https.get(format!("{base}/metrics")).bearer_auth("scrape-token-0123456789").send().await.unwrap();
    assert_eq!(scrape.status(), 200);
    assert!(scrape.text().await.unwrap().contains("gateway_build_info"));
    for probe in ["/healthz", "/readyz"] {
        assert_eq!(https.get(format!("{base}{probe}")).send().await.unwrap().status(), 200, "{probe} stays open for probes");
    }
    assert!(http.get(format!("http://{}/healthz", gw.http_addr)).send().await.is_err(), "no plain HTTP on the HTTPS port");

    // A renewed certificate is used from the next connection on, without a restart.
    let presented = async || {
        let (_, text) = crate::trust::s_client(gw.http_addr, &[]).await;
        let start = text.find("-----BEGIN CERTIFICATE-----").unwrap_or(0);
        text[start..text.find("-----END CERTIFICATE-----").unwrap_or(start)].to_string()
    };
    let old = presented().await;
    assert_eq!(old, crate::trust::pem_body(&pki.path("server.pem")), "the configured certificate is served");
    pki.server("server"); // new key and certificate, renamed into place
    let new = crate::trust::pem_body(&pki.path("server.pem"));
    assert_ne!(new, old);
    util::eventually("the renewed HTTPS certificate is served", Duration::from_secs(15), async || presented().await == new).await;
    let scrape = https.get(format!("{base}/metrics")).bearer_auth("scrape-token-0123456789").send().await.unwrap().text().await.unwrap();
    assert_eq!(sample(&scrape, "gateway_reloads_total{target=\"http_tls\",result=\"ok\"}"), 1.0, "{scrape}");
    assert!(sample(&scrape, "gateway_certificate_expiry_timestamp_seconds{cert=\"http\"}") > 0.0, "{scrape}");
    gw.stop().await;
}
