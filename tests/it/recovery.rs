//! Disaster recovery of the store: a damaged file is quarantined (never deleted) and a fresh
//! store keeps the gateway running; `store salvage` brings the readable messages back with their
//! original idempotency keys.

use std::time::Duration;

use edge_gateway::config::Config;
use edge_gateway_actors::supervisor::SupervisionConfig;

use crate::harness::{self, Extra};
use crate::ingest::IngestServer;
use crate::util::OutputWithin;
use crate::util::{self, poll_until};

fn config(data: &std::path::Path, ingest: &IngestServer) -> (String, Config) {
    config_on(data, ingest, "redb")
}

/// A test config with `storage.backend = backend`.
fn config_on(data: &std::path::Path, ingest: &IngestServer, backend: &str) -> (String, Config) {
    let storage: &'static str = if backend == "sqlite" { "backend = \"sqlite\"" } else { "backend = \"redb\"" };
    let text = harness::config_text(data, &ingest.url(), "127.0.0.1:0", "127.0.0.1:0", &Extra { storage, ..Extra::default() });
    let config = Config::parse(&text, Vec::new()).unwrap();
    (text, config)
}

/// `edge-gateway store salvage FILE --config CONFIG`, run to the end.
fn salvage(file: &std::path::Path, config: &std::path::Path) -> std::process::Output {
    std::process::Command::new(harness::binary()).args(["store", "salvage"]).arg(file).arg("--config").arg(config).output_within().unwrap()
}

/// `POST /api/store/acknowledge` with the token the gateway made in its data dir.
async fn acknowledge(gw: &edge_gateway::Gateway, data: &std::path::Path) -> reqwest::Response {
    harness::install_crypto();
    let url = format!("http://{}/api/store/acknowledge", gw.http_addr);
    let refused = reqwest::Client::new().post(&url).send().await.unwrap();
    assert_eq!(refused.status().as_u16(), 401, "acknowledging needs the token");
    let token = std::fs::read_to_string(data.join("http.token")).expect("the gateway made its HTTP token");
    reqwest::Client::new().post(&url).bearer_auth(token.trim()).send().await.unwrap()
}

async fn publish(gw: &edge_gateway::Gateway, payload: &str) {
    util::publish_one(gw.mqtt_addr, payload).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_store_is_quarantined_and_the_gateway_runs_degraded_until_acknowledged() {
    damaged_store_is_quarantined("redb").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_sqlite_store_is_quarantined_and_the_gateway_runs_degraded_until_acknowledged() {
    damaged_store_is_quarantined("sqlite").await;
}

async fn damaged_store_is_quarantined(backend: &str) {
    let dir = util::temp_dir();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join(format!("gateway.{backend}")), vec![0xAB; 65_536]).unwrap(); // not a store at all
    let ingest = IngestServer::start().await;
    let (_, config) = config_on(&data, &ingest, backend);
    let gw = edge_gateway::Gateway::start(config, SupervisionConfig::default_config()).await.expect("starts on a fresh store");
    let moved: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!("gateway.{backend}.quarantine-")))
        .filter(|n| !n.ends_with("-wal") && !n.ends_with("-shm") && !n.ends_with(".open-guard"))
        .collect();
    assert_eq!(moved.len(), 1, "the damaged file is kept aside: {moved:?}");
    assert_eq!(std::fs::read(data.join(&moved[0])).unwrap(), vec![0xAB; 65_536], "and not touched");
    let (status, body) = harness::http_get(gw.http_addr, "/readyz").await;
    assert_eq!(status, 503, "degraded until acknowledged");
    assert!(body.contains(&moved[0]), "{body}");
    let scrape = harness::http_get(gw.http_addr, "/metrics").await.1;
    assert_eq!(harness::sample(&scrape, "gateway_storage_quarantines_total"), 1.0);

    publish(&gw, "on-the-fresh-store").await; // ingest goes on meanwhile
    poll_until("forwarded", Duration::from_secs(10), || ingest.accepted().len() == 1).await;
    harness::install_crypto();
    let ack = acknowledge(&gw, &data).await;
    assert_eq!(ack.status().as_u16(), 200);
    assert_eq!(harness::http_get(gw.http_addr, "/readyz").await.0, 200);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_salvage_brings_back_the_messages_of_a_set_aside_store_with_their_keys() {
    let dir = util::temp_dir();
    let data = dir.path().join("data");
    let ingest = IngestServer::start().await;
    ingest.stop(); // the cloud is down: the messages stay in the store
    let (text, config) = config(&data, &ingest);
    let gw = edge_gateway::Gateway::start(config.clone(), SupervisionConfig::default_config()).await.unwrap();
    let old_id = gw.gateway_id.clone();
    for i in 0..5 {
        publish(&gw, &format!("m{i}")).await;
    }
    // While the gateway runs, salvage refuses to touch its store.
    let cfg_file = dir.path().join("gateway.toml");
    std::fs::write(&cfg_file, &text).unwrap();
    std::fs::copy(data.join("gateway.redb"), dir.path().join("copy.redb")).unwrap_or_default();
    let busy = salvage(&dir.path().join("copy.redb"), &cfg_file);
    assert_eq!(busy.status.code(), Some(1), "{}", String::from_utf8_lossy(&busy.stderr));
    assert!(String::from_utf8_lossy(&busy.stderr).contains("stop it first"), "{}", String::from_utf8_lossy(&busy.stderr));
    gw.stop().await;

    // As if quarantined: the file is set aside, a new store takes its place.
    let aside = data.join("gateway.redb.quarantine-test");
    std::fs::rename(data.join("gateway.redb"), &aside).unwrap();
    let out = salvage(&aside, &cfg_file);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("imported 5 messages"), "{stdout}");

    ingest.restart().await;
    let gw = edge_gateway::Gateway::start(config, SupervisionConfig::default_config()).await.unwrap();
    poll_until("salvaged messages forwarded", Duration::from_secs(15), || ingest.accepted().len() == 5).await;
    let keys: Vec<String> = ingest.accepted().iter().map(|m| m.key.clone()).collect();
    let run = keys[0].strip_prefix(&format!("{old_id}:")).and_then(|k| k.split_once(':')).map(|(run, _)| run.to_string());
    let run = run.unwrap_or_else(|| panic!("key {} is not {old_id}:{{run}}:{{seq}}", keys[0]));
    assert_eq!(keys, (0..5).map(|i| format!("{old_id}:{run}:{i}")).collect::<Vec<_>>(), "original idempotency keys, in order");
    let payloads: Vec<String> = ingest.accepted().iter().map(|m| String::from_utf8_lossy(&m.payload_bytes()).into_owned()).collect();
    assert_eq!(payloads, ["m0", "m1", "m2", "m3", "m4"]);
    gw.stop().await;
}

/// An operator switches `storage.backend` while the old engine's store still holds messages:
/// the start is refused with the way out, and salvage moves the backlog into the new engine
/// with every key kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_the_backend_with_a_backlog_is_refused_and_salvage_moves_the_backlog() {
    let dir = util::temp_dir();
    let data = dir.path().join("data");
    let ingest = IngestServer::start().await;
    ingest.stop();
    let (_, on_redb) = config_on(&data, &ingest, "redb");
    let gw = edge_gateway::Gateway::start(on_redb, SupervisionConfig::default_config()).await.unwrap();
    let old_id = gw.gateway_id.clone();
    for i in 0..3 {
        publish(&gw, &format!("m{i}")).await;
    }
    gw.stop().await;

    let (text, on_sqlite) = config_on(&data, &ingest, "sqlite");
    let refused = edge_gateway::Gateway::start(on_sqlite.clone(), SupervisionConfig::default_config()).await.err().expect("refused");
    let error = format!("{refused:#}");
    assert!(error.contains("gateway.redb") && error.contains("storage.backend") && error.contains("salvage"), "{error}");

    let cfg_file = dir.path().join("gateway.toml");
    std::fs::write(&cfg_file, &text).unwrap();
    let aside = dir.path().join("old-gateway.redb");
    std::fs::rename(data.join("gateway.redb"), &aside).unwrap();
    let out = salvage(&aside, &cfg_file);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains("imported 3 messages") && stdout.contains("read through redb"), "{stdout}");

    ingest.restart().await;
    let gw = edge_gateway::Gateway::start(on_sqlite, SupervisionConfig::default_config()).await.unwrap();
    poll_until("the moved backlog forwarded", Duration::from_secs(15), || ingest.accepted().len() == 3).await;
    let payloads: Vec<String> = ingest.accepted().iter().map(|m| String::from_utf8_lossy(&m.payload_bytes()).into_owned()).collect();
    assert_eq!(payloads, ["m0", "m1", "m2"]);
    assert!(ingest.accepted().iter().all(|m| m.key.starts_with(&format!("{old_id}:"))), "keys kept");
    assert!(data.join("gateway.sqlite").exists() && !data.join("gateway.redb").exists());
    gw.stop().await;
}

/// The case that lost messages when keys were `{gateway id}:{seq}`: a store set aside, a fresh
/// one taking new messages from seq 0, then the old one salvaged into it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_messages_in_a_fresh_store_and_salvaged_ones_never_share_a_key() {
    let dir = util::temp_dir();
    let data = dir.path().join("data");
    let ingest = IngestServer::start().await;
    ingest.stop();
    let (text, config) = config(&data, &ingest);
    let cfg_file = dir.path().join("gateway.toml");
    std::fs::write(&cfg_file, &text).unwrap();
    let gw = edge_gateway::Gateway::start(config.clone(), SupervisionConfig::default_config()).await.unwrap();
    for i in 0..3 {
        publish(&gw, &format!("old{i}")).await;
    }
    gw.stop().await;
    let aside = data.join("gateway.redb.quarantine-test");
    std::fs::rename(data.join("gateway.redb"), &aside).unwrap();
    let gw = edge_gateway::Gateway::start(config.clone(), SupervisionConfig::default_config()).await.unwrap();
    for i in 0..2 {
        publish(&gw, &format!("new{i}")).await; // seqs 0 and 1 again
    }
    gw.stop().await;
    let out = salvage(&aside, &cfg_file);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    ingest.restart().await;
    let gw = edge_gateway::Gateway::start(config, SupervisionConfig::default_config()).await.unwrap();
    poll_until("every message forwarded", Duration::from_secs(15), || ingest.accepted().len() >= 5).await;
    let mut payloads: Vec<String> = ingest.accepted().iter().map(|m| String::from_utf8_lossy(&m.payload_bytes()).into_owned()).collect();
    payloads.sort();
    assert_eq!(payloads, ["new0", "new1", "old0", "old1", "old2"]);
    assert_eq!(
        ingest.unique_keys(),
        5,
        "a deduping cloud keeps all five: {:?}",
        ingest.accepted().iter().map(|m| &m.key).collect::<Vec<_>>()
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_redb_cannot_open_is_salvaged_from_its_bytes_and_the_quarantine_survives_a_restart() {
    let dir = util::temp_dir();
    let data = dir.path().join("data");
    let ingest = IngestServer::start().await;
    ingest.stop(); // the cloud is down: the messages stay in the store
    let (text, config) = config(&data, &ingest);
    let cfg_file = dir.path().join("gateway.toml");
    std::fs::write(&cfg_file, &text).unwrap();
    let gw = edge_gateway::Gateway::start(config.clone(), SupervisionConfig::default_config()).await.unwrap();
    let old_id = gw.gateway_id.clone();
    let mut dev = crate::raw::Raw::connect(gw.mqtt_addr, "dev-1", false).await;
    for i in 0..200u16 {
        dev.publish("devices/dev-1/t", format!("m{i}").as_bytes(), i + 1).await;
        assert_eq!(dev.expect_puback(i + 1).await, 0);
    }
    drop(dev);
    gw.stop().await;

    // Destroy redb's header: the file no longer opens, the records are still in it.
    let store = data.join("gateway.redb");
    let mut bytes = std::fs::read(&store).unwrap();
    bytes[..4096].fill(0x5A);
    std::fs::write(&store, &bytes).unwrap();

    let gw = edge_gateway::Gateway::start(config.clone(), SupervisionConfig::default_config()).await.expect("starts on a fresh store");
    assert_eq!(harness::http_get(gw.http_addr, "/readyz").await.0, 503);
    gw.stop().await;
    // Still degraded after a restart: the quarantine is on disk until acknowledged.
    let gw = edge_gateway::Gateway::start(config.clone(), SupervisionConfig::default_config()).await.unwrap();
    let (status, body) = harness::http_get(gw.http_addr, "/readyz").await;
    assert_eq!(status, 503, "the quarantine was forgotten by a restart: {body}");
    gw.stop().await;

    let aside = std::fs::read_dir(&data)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("gateway.redb.quarantine-"))
        .expect("quarantined file");
    let out = salvage(&aside, &cfg_file);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("imported 200 messages") && stdout.contains("raw scan"), "{stdout}");

    ingest.restart().await;
    let config_again = config.clone();
    let gw = edge_gateway::Gateway::start(config, SupervisionConfig::default_config()).await.unwrap();
    harness::install_crypto();
    let ack = acknowledge(&gw, &data).await;
    assert_eq!(ack.status().as_u16(), 200);
    assert_eq!(harness::http_get(gw.http_addr, "/readyz").await.0, 200);
    assert!(!data.join("gateway.redb.quarantined").exists(), "the acknowledgement removes the quarantine record");
    poll_until("salvaged messages forwarded", Duration::from_secs(20), || ingest.accepted().len() >= 200).await;
    let mut got: Vec<(String, String)> =
        ingest.accepted().iter().map(|m| (m.key.clone(), String::from_utf8_lossy(&m.payload_bytes()).into_owned())).collect();
    got.sort();
    got.dedup();
    let first = got.iter().find(|(_, p)| p == "m0").map(|(k, _)| k.clone()).unwrap_or_default();
    let run = first.strip_prefix(&format!("{old_id}:")).and_then(|k| k.split_once(':')).map(|(run, _)| run.to_string());
    let run = run.unwrap_or_else(|| panic!("key {first:?} is not {old_id}:{{run}}:{{seq}}"));
    let mut want: Vec<(String, String)> = (0..200).map(|i| (format!("{old_id}:{run}:{i}"), format!("m{i}"))).collect();
    want.sort();
    assert_eq!(got, want, "every message back, under its original key");
    gw.stop().await;
    let gw = edge_gateway::Gateway::start(config_again, SupervisionConfig::default_config()).await.unwrap();
    assert_eq!(harness::http_get(gw.http_addr, "/readyz").await.0, 200, "acknowledged for good");
    gw.stop().await;
}

/// Without `--config`, salvage imports only into the embedded default's store, and only a file
/// next to it: run from the wrong directory it refuses instead of filling a store no gateway reads.
#[test]
fn salvage_without_a_config_refuses_a_file_outside_the_default_data_dir() {
    let cwd = util::temp_dir();
    let elsewhere = util::temp_dir();
    let file = elsewhere.path().join("gateway.redb.quarantine-1");
    std::fs::write(&file, b"not a store").unwrap();
    let out = std::process::Command::new(harness::binary())
        .args(["store", "salvage"])
        .arg(&file)
        .current_dir(cwd.path())
        .output_within()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("--config") && stderr.contains("data dir"), "{stderr}");
    assert!(!cwd.path().join("data/gateway.redb").exists(), "no store was created");
}

/// Only a damaged file is quarantined. A store locked by a running gateway, or written in a
/// newer format, stops the start with an error, and the file stays where it is, untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_store_or_a_newer_format_stops_the_start_and_is_not_quarantined() {
    let dir = util::temp_dir();
    let data = dir.path().join("data");
    let ingest = IngestServer::start().await;
    let (_, config) = config(&data, &ingest);
    let running = edge_gateway::Gateway::start(config.clone(), SupervisionConfig::default_config()).await.unwrap();
    let second = edge_gateway::Gateway::start(config.clone(), SupervisionConfig::default_config()).await;
    let error = second.err().expect("a second gateway on the same store must not start").to_string();
    assert!(error.contains("gateway.redb"), "{error}");
    let aside = || std::fs::read_dir(&data).unwrap().filter_map(|e| e.ok()).any(|e| e.file_name().to_string_lossy().contains("quarantine"));
    assert!(!aside(), "a locked store was quarantined: {error}");
    publish(&running, "still-working").await;
    running.stop().await;

    // A newer format: the file is refused, not moved.
    let db = redb::Database::create(data.join("gateway.redb")).unwrap();
    let txn = db.begin_write().unwrap();
    txn.open_table(redb::TableDefinition::<&str, &str>::new("meta_str")).unwrap().insert("format", "99").unwrap();
    txn.commit().unwrap();
    drop(db);
    let newer = edge_gateway::Gateway::start(config, SupervisionConfig::default_config()).await;
    let error = newer.err().expect("a newer format must not start").to_string();
    assert!(error.contains("format"), "{error}");
    assert!(!aside(), "a newer-format store was quarantined: {error}");
    let db = redb::Database::create(data.join("gateway.redb")).unwrap();
    let txn = redb::ReadableDatabase::begin_read(&db).unwrap();
    let format =
        txn.open_table(redb::TableDefinition::<&str, &str>::new("meta_str")).unwrap().get("format").unwrap().map(|v| v.value().to_string());
    assert_eq!(format.as_deref(), Some("99"), "the store is still the newer one, not replaced");
}
