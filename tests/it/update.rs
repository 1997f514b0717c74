//! Signed self-update with rollback, end to end, with keys and signatures made by the real
//! `minisign` tool: a gateway runs from its own installed copy; bundles that are tampered with,
//! signed by another key, older, or of another store format are refused and change nothing; a
//! new binary that exits at once is rolled back (the previous binary is back under its path and
//! running, the rollback shows on `/api/health` and in `gateway_update_phase`); a good bundle
//! is switched to in the same process tree and committed. No acknowledged message is lost.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::{self, Extra, http_get, sample};
use crate::ingest::IngestServer;
use crate::raw::Raw;
use crate::util::{self, Killed, eventually, free_port, poll_until};

/// `minisign -G -W`: a password-less key pair in `dir`; the public key's base64 line.
fn keypair(dir: &Path, name: &str) -> (PathBuf, String) {
    let (public, secret) = (dir.join(format!("{name}.pub")), dir.join(format!("{name}.key")));
    let ok = Command::new("minisign")
        .args(["-G", "-W", "-p"])
        .arg(&public)
        .arg("-s")
        .arg(&secret)
        .stdout(Stdio::null())
        .status()
        .expect("minisign (scripts/test.sh installs it)");
    assert!(ok.success(), "minisign -G");
    let line = std::fs::read_to_string(&public).unwrap().lines().nth(1).unwrap().to_string();
    (secret, line)
}

/// A bundle: `binary` copied to `dir/name`, signed by `key` with `comment`.
fn bundle(dir: &Path, name: &str, binary: &Path, key: &Path, comment: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::copy(binary, &path).unwrap();
    let ok = Command::new("minisign")
        .args(["-S", "-s"])
        .arg(key)
        .arg("-m")
        .arg(&path)
        .args(["-t", comment])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success(), "minisign -S");
    path
}

/// `edge-gateway update ARGS`: exit code, stdout + stderr.
async fn update(args: &[&str], config: &Path, install: &Path) -> (i32, String) {
    let mut cmd = std::process::Command::new(harness::binary());
    cmd.arg("update").args(args).arg("--config").arg(config);
    if args[0] == "apply" {
        cmd.arg("--install").arg(install);
    }
    let out = util::bounded_output(&mut cmd, util::RUN_LIMIT).await.expect("run edge-gateway update");
    (out.status.code().unwrap_or(-1), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// Publish `n` QoS 1 messages with a fresh connection; their payloads (each PUBACKed).
async fn publish(mqtt: SocketAddr, tag: &str, n: usize) -> Vec<String> {
    let mut dev = Raw::connect(mqtt, &format!("up-{tag}"), false).await;
    let mut sent = Vec::new();
    for i in 0..n {
        let payload = format!("{tag}-{i}");
        dev.publish("devices/up/t", payload.as_bytes(), (i + 1) as u16).await;
        assert_eq!(dev.expect_puback((i + 1) as u16).await, 0, "PUBACK for {payload}");
        sent.push(payload);
    }
    sent
}

async fn health(http: SocketAddr) -> serde_json::Value {
    serde_json::from_str(&http_get(http, "/api/health").await.1).expect("health JSON")
}

fn sha(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundles_are_verified_a_failing_version_rolls_back_and_a_good_one_is_committed_without_losing_a_message() {
    let dir = util::temp_dir();
    let d = dir.path();
    let bin = d.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    // The gateway runs from its own installed copy (stripped: the debug binary is ~500 MB).
    let install = bin.join("edge-gateway");
    let ok = Command::new("strip").arg("-o").arg(&install).arg(harness::binary()).status().expect("strip");
    assert!(ok.success());
    let original = sha(&install);
    let (key, public) = keypair(d, "release");
    let (other_key, _) = keypair(d, "other");

    let ingest = IngestServer::start().await;
    let (mqtt, http) = (SocketAddr::from(([127, 0, 0, 1], free_port())), SocketAddr::from(([127, 0, 0, 1], free_port())));
    let config = format!(
        "[update]\npublic_keys = [\"{public}\"]\ndeadline_secs = 30\nprobation_secs = 2\n{}",
        harness::config_text(&d.join("data"), &ingest.url(), &mqtt.to_string(), &http.to_string(), &Extra::default())
    );
    let config_path = d.join("gateway.toml");
    std::fs::write(&config_path, config).unwrap();
    let log = std::fs::File::create(d.join("gateway.log")).unwrap();
    let child = Command::new(&install)
        .args(["run", "--config"])
        .arg(&config_path)
        .env("RUST_LOG", "info")
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("start the installed gateway");
    let mut child = Killed(child);
    harness::install_crypto();
    let ready = || async { reqwest::get(format!("http://{http}/readyz")).await.is_ok_and(|r| r.status() == 200) };
    eventually("the gateway is ready", Duration::from_secs(30), async || ready().await).await;
    let mut acked = publish(mqtt, "before", 20).await;

    let running = env!("CARGO_PKG_VERSION");
    let newer = "edge-gateway 99.0.0 store=1 records=1-4";
    let refused = [
        (
            "tampered",
            {
                let b = bundle(d, "tampered", &install, &key, newer);
                let mut bytes = std::fs::read(&b).unwrap();
                let at = bytes.len() / 2;
                bytes[at] ^= 0x01;
                std::fs::write(&b, bytes).unwrap();
                b
            },
            "does not match",
        ),
        ("other key", bundle(d, "other-key", &install, &other_key, newer), "not in update.public_keys"),
        ("same version", bundle(d, "same", &install, &key, &format!("edge-gateway {running} store=1 records=1-4")), "not newer"),
        ("downgrade", bundle(d, "older", &install, &key, "edge-gateway 0.0.1 store=1 records=1-4"), "not newer"),
        ("store layout", bundle(d, "layout", &install, &key, "edge-gateway 99.0.0 store=2 records=1-4"), "store formats"),
        (
            "record format",
            bundle(d, "records", &install, &key, "edge-gateway 99.0.0 store=1 records=1-9"),
            "could not read after a rollback",
        ),
    ];
    for (what, b, says) in &refused {
        let b = b.to_str().unwrap();
        for verb in ["verify", "apply"] {
            let (code, out) = update(&[verb, b], &config_path, &install).await;
            assert_eq!(code, 1, "{what}: `update {verb}` must refuse: {out}");
            assert!(out.contains(says), "{what}: `update {verb}` says why ({says:?}): {out}");
        }
        assert_eq!(sha(&install), original, "{what}: the installed binary is unchanged");
    }
    assert!(ready().await, "the gateway went on through the refusals");

    // A signed "new version" that exits at once: rolled back.
    let stub = d.join("stub.sh");
    std::fs::write(&stub, "#!/bin/sh\necho 'broken release' >&2\nexit 1\n").unwrap();
    let broken = bundle(d, "broken", &stub, &key, "edge-gateway 98.0.0 store=1 records=1-4");
    let (code, out) = update(&["apply", broken.to_str().unwrap()], &config_path, &install).await;
    assert_eq!(code, 3, "a new binary that exits at once is rolled back: {out}");
    assert!(out.contains("rolled back") && out.contains("before it started"), "{out}");
    assert_eq!(sha(&install), original, "the installed binary was never replaced");
    assert!(!bin.join("edge-gateway.new").exists(), "the staged binary is removed");
    eventually("the previous version is ready again", Duration::from_secs(30), async || ready().await).await;
    let h = health(http).await;
    assert_eq!(h["update"]["phase"], "rolled_back", "{h}");
    assert_eq!(h["update"]["to"], "98.0.0");
    let scrape = http_get(http, "/metrics").await.1;
    assert_eq!(sample(&scrape, "gateway_update_phase{phase=\"rolled_back\"}"), 1.0);
    assert_eq!(sample(&scrape, "gateway_update_phase{phase=\"committed\"}"), 0.0);
    assert!(child.0.try_wait().unwrap().is_none(), "the same process tree goes on");
    acked.extend(publish(mqtt, "after-rollback", 20).await);

    // A good bundle (this build, signed as a newer release): switched to and committed.
    let pid_before = std::fs::read_to_string(d.join("data/gateway.pid")).unwrap();
    let good = bundle(d, "good", &install, &key, newer);
    let (code, out) = update(&["apply", good.to_str().unwrap()], &config_path, &install).await;
    assert_eq!(code, 0, "the good update is committed: {out}");
    assert!(out.contains("updated to 99.0.0"), "{out}");
    assert_eq!(sha(&install), sha(&good), "committed: the new binary is in place");
    assert!(sha(&bin.join("edge-gateway.prev")) == original, "the previous binary is kept beside it");
    assert!(!bin.join("edge-gateway.new").exists(), "nothing left staged");
    let h = health(http).await;
    assert_eq!(h["update"]["phase"], "committed", "{h}");
    assert_eq!(h["update"]["from"], running);
    let pid_after = std::fs::read_to_string(d.join("data/gateway.pid")).unwrap();
    assert_ne!(pid_before, pid_after, "a new process runs the gateway");
    let scrape = http_get(http, "/metrics").await.1;
    assert_eq!(sample(&scrape, "gateway_update_phase{phase=\"committed\"}"), 1.0);
    acked.extend(publish(mqtt, "after-update", 20).await);

    // Every acknowledged message reached the cloud.
    let missing = || {
        let got: std::collections::HashSet<String> =
            ingest.accepted().iter().map(|m| String::from_utf8_lossy(&m.payload_bytes()).into_owned()).collect();
        acked.iter().filter(|p| !got.contains(*p)).count()
    };
    poll_until("every acknowledged message at the cloud", Duration::from_secs(30), || missing() == 0).await;

    // SIGTERM to the process systemd would know (the switch) stops the new gateway, cleanly.
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
    let status = crate::util::within(Duration::from_secs(60), async || child.0.try_wait().unwrap())
        .await
        .expect("the gateway stopped after SIGTERM");
    assert!(status.success(), "a clean stop: {status}");
}
