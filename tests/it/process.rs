//! The real binary: SIGKILL under load, SIGTERM, and the CLI's exit codes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use crate::harness::{self, Extra, Process, binary};
use crate::ingest::IngestServer;
use crate::raw::resilient_device;
use crate::util::{self, free_port, poll_until};

fn addrs() -> (SocketAddr, SocketAddr) {
    (SocketAddr::from(([127, 0, 0, 1], free_port())), SocketAddr::from(([127, 0, 0, 1], free_port())))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_load_loses_no_acknowledged_message() {
    let dir = util::temp_dir();
    let ingest = IngestServer::start().await;
    let (mqtt, http) = addrs();
    let config = harness::config_text(&dir.path().join("data"), &ingest.url(), &mqtt.to_string(), &http.to_string(), &Extra::default());
    let mut gw = Process::start(dir.path(), &config, mqtt, http).await;
    let devices: Vec<String> = (0..4).map(|i| format!("kill9-{i}")).collect();
    let per_device = 2500;
    let mut tasks = Vec::new();
    for d in &devices {
        let d = d.clone();
        let payloads: Vec<String> = (0..per_device).map(|i| format!("{d}-{i}")).collect();
        tasks.push(tokio::spawn(async move {
            resilient_device(mqtt, &d, &format!("devices/{d}/t"), payloads, 20, Duration::from_secs(180)).await
        }));
    }
    for (round, threshold) in [1500usize, 4000, 7000].into_iter().enumerate() {
        poll_until("load under way", Duration::from_secs(60), || ingest.unique_keys() >= threshold).await;
        gw.kill9();
        println!("SIGKILL {} at {} messages at the cloud", round + 1, ingest.unique_keys());
        gw = Process::start(dir.path(), &config, mqtt, http).await;
    }
    for t in tasks {
        assert_eq!(t.await.expect("device").len(), per_device);
    }
    let expected: Vec<String> = devices.iter().flat_map(|d| (0..per_device).map(move |i| format!("{d}-{i}"))).collect();
    let missing = || {
        let got: std::collections::HashSet<Vec<u8>> = ingest.accepted().iter().map(|m| m.payload_bytes()).collect();
        expected.iter().filter(|p| !got.contains(p.as_bytes())).count()
    };
    poll_until("every acknowledged message at the cloud", Duration::from_secs(60), || missing() == 0).await;
    // Duplicates at the cloud only where the key is the same: a key always carries one message.
    let mut by_key: HashMap<String, (String, Vec<u8>)> = HashMap::new();
    for m in ingest.accepted() {
        let entry = by_key.entry(m.key.clone()).or_insert_with(|| (m.device.clone(), m.payload_bytes()));
        assert_eq!(entry, &(m.device.clone(), m.payload_bytes()), "key {} carried two different messages", m.key);
    }
    println!("after 3 SIGKILLs: {} unique keys, {} cloud-side duplicates", ingest.unique_keys(), ingest.duplicates());
    assert_eq!(gw.terminate(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_flushes_and_exits_zero_and_the_backlog_survives_a_restart() {
    let dir = util::temp_dir();
    let ingest = IngestServer::start().await;
    ingest.stop();
    let (mqtt, http) = addrs();
    let config = harness::config_text(&dir.path().join("data"), &ingest.url(), &mqtt.to_string(), &http.to_string(), &Extra::default());
    let mut gw = Process::start(dir.path(), &config, mqtt, http).await;
    crate::pipeline::mosquitto_publish_to(mqtt, "term-1", 200, true).await;
    assert_eq!(gw.terminate(), Some(0), "graceful stop exits 0");
    ingest.restart().await;
    let mut gw = Process::start(dir.path(), &config, mqtt, http).await;
    poll_until("the stored backlog delivered after the restart", Duration::from_secs(30), || ingest.unique_keys() >= 200).await;
    assert_eq!(ingest.unique_keys(), 200);
    ingest.assert_per_device_order();
    assert_eq!(gw.terminate(), Some(0));
}

fn run_cli(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(binary()).args(args).output().expect("run edge-gateway");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout))
}

#[test]
fn a_bad_config_exits_2_and_names_every_key() {
    let dir = util::temp_dir();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[mqtt]\nlisten = \"not-an-address\"\n[storage]\nquota_messages = 0\n[[sinks]]\nname = \"x\"\nkind = \"http\"\nurl = \"nope\"\n",
    )
    .unwrap();
    let p = path.to_str().unwrap();
    for args in [vec!["check-config", p], vec!["run", "--config", p]] {
        let (code, text) = run_cli(&args);
        assert_eq!(code, Some(2), "{args:?}: {text}");
        for key in ["mqtt.listen", "storage.quota_messages", "sinks[0].url"] {
            assert!(text.contains(key), "{args:?} does not name {key}: {text}");
        }
    }
    std::fs::write(&path, "[mqtt]\nlisten = \"127.0.0.1:1\"\nbogus = 1\n").unwrap();
    let (code, text) = run_cli(&["check-config", p]);
    assert_eq!(code, Some(2));
    assert!(text.contains("bogus"), "{text}");
}

#[test]
fn a_bad_supervision_file_exits_2_and_names_the_key() {
    let dir = util::temp_dir();
    let path = dir.path().join("supervision.toml");
    let text = edge_gateway_actors::supervisor::spec::DEFAULT_SUPERVISION_TOML.replacen(
        "strategy = \"one_for_one\"",
        "strategy = \"one_for_none\"",
        1,
    );
    std::fs::write(&path, text).unwrap();
    let (code, out) = run_cli(&["check-config", "--supervision", path.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("one_for_none") && out.contains("strategy"), "{out}");
    let text = edge_gateway_actors::supervisor::spec::DEFAULT_SUPERVISION_TOML.replacen("period_secs = 10", "period_secs = 0", 1);
    std::fs::write(&path, text).unwrap();
    let (code, out) = run_cli(&["run", "--supervision", path.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("root.period_secs"), "{out}");
}

#[test]
fn the_embedded_default_config_checks_and_version_prints() {
    let (code, out) = run_cli(&["check-config"]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = run_cli(&["--version"]);
    assert_eq!(code, Some(0));
    assert!(out.contains(env!("CARGO_PKG_VERSION")), "{out}");
    let (code, _) = run_cli(&["no-such-command"]);
    assert_eq!(code, Some(2), "bad usage exits 2");
}
