//! The gateway under systemd's notify protocol, with a real unix datagram socket as
//! `NOTIFY_SOCKET`: `READY=1` once started, `WATCHDOG=1` pings while ready that stop while the
//! store cannot commit (so systemd would restart a gateway that cannot take messages), and
//! `STOPPING=1` on SIGTERM.

use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::harness::{self, Extra};
use crate::ingest::IngestServer;
use crate::util::{self, Killed, free_port, poll_until};

const TOKEN: &str = "notify-test-token-0123456789abcdef";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_hears_ready_then_watchdog_pings_that_stop_while_the_store_cannot_commit_then_stopping() {
    let dir = util::temp_dir();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind the notify socket");
    socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let heard: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
    let sink = heard.clone();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop = done.clone();
    let listener = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            if let Ok(n) = socket.recv(&mut buf) {
                sink.lock().unwrap().push((Instant::now(), String::from_utf8_lossy(&buf[..n]).into_owned()));
            }
        }
    });
    let ingest = IngestServer::start().await;
    let (mqtt, http, admin) =
        (SocketAddr::from(([127, 0, 0, 1], free_port())), SocketAddr::from(([127, 0, 0, 1], free_port())), free_port());
    let config = harness::config_text(&dir.path().join("data"), &ingest.url(), &mqtt.to_string(), &http.to_string(), &Extra::default());
    std::fs::write(dir.path().join("gateway.toml"), config).unwrap();
    std::fs::write(dir.path().join("admin.token"), TOKEN).unwrap();
    let log = std::fs::File::create(dir.path().join("gateway.log")).unwrap();
    let child = Command::new(harness::binary())
        .args(["run", "--config"])
        .arg(dir.path().join("gateway.toml"))
        .args(["--admin-listen", &format!("127.0.0.1:{admin}"), "--admin-token-file"])
        .arg(dir.path().join("admin.token"))
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "400000")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn edge-gateway");
    let pid = child.id();
    let _child = Killed(child);
    let lines = |what: &str| heard.lock().unwrap().iter().filter(|(_, l)| l.lines().any(|x| x == what)).count();
    poll_until("READY=1", Duration::from_secs(20), || lines("READY=1") == 1).await;
    harness::install_crypto();
    let ready = reqwest::get(format!("http://{http}/readyz")).await.expect("readyz").status();
    assert_eq!(ready, 200, "READY=1 came when the gateway was ready");
    poll_until("three watchdog pings", Duration::from_secs(10), || lines("WATCHDOG=1") >= 3).await;
    assert!(heard.lock().unwrap().iter().any(|(_, l)| l.contains("STATUS=") && l.contains("connections")), "STATUS with the counts");

    // Every commit fails from now on; one publish makes the store unwritable.
    let client = reqwest::Client::new();
    let injected = client.post(format!("http://127.0.0.1:{admin}/admin/storage/faults?n=10000")).bearer_auth(TOKEN).send().await.unwrap();
    assert!(injected.status().is_success(), "{injected:?}");
    let _ = util::mosquitto_pub(&[
        "-h",
        "127.0.0.1",
        "-p",
        &mqtt.port().to_string(),
        "-q",
        "1",
        "-i",
        "dev-1",
        "-t",
        "devices/dev-1/t",
        "-m",
        "x",
    ])
    .await;
    poll_until("/readyz 503", Duration::from_secs(10), || {
        std::process::Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", &format!("http://{http}/readyz")])
            .output()
            .is_ok_and(|o| o.stdout == b"503")
    })
    .await;
    let since = Instant::now() + Duration::from_millis(250); // a tick may already be on its way
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let late: Vec<String> =
        heard.lock().unwrap().iter().filter(|(t, l)| *t > since && l.contains("WATCHDOG=1")).map(|(_, l)| l.clone()).collect();
    assert!(late.is_empty(), "no watchdog ping while not ready: {late:?}");
    assert!(heard.lock().unwrap().iter().any(|(t, l)| *t > since && l.starts_with("STATUS=not ready")), "STATUS says why");

    let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    poll_until("STOPPING=1", Duration::from_secs(20), || lines("STOPPING=1") == 1).await;
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    listener.join().unwrap();
}

/// The unit file in the repository passes `systemd-analyze verify` (its ExecStart pointed at the
/// binary under test: verify checks that the executable exists).
#[test]
fn the_unit_file_passes_systemd_analyze_verify() {
    let dir = util::temp_dir();
    let unit = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/edge-gateway.service")).unwrap();
    assert!(unit.contains("Type=notify") && unit.contains("WatchdogSec="), "a notify unit with a watchdog");
    let unit = unit.replace("/usr/bin/edge-gateway", &harness::binary().display().to_string());
    let path = dir.path().join("edge-gateway.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new(util::require("systemd-analyze")).arg("verify").arg(&path).output().expect("systemd-analyze");
    assert!(out.status.success() && out.stderr.is_empty(), "{}", util::text(&out));
}

/// SIGHUP checks the whole file first (an invalid one changes nothing), reloads the files, and
/// names each other changed setting as needing a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_refuses_an_invalid_file_and_names_the_settings_that_need_a_restart() {
    let dir = util::temp_dir();
    let ingest = IngestServer::start().await;
    let (mqtt, http) = (SocketAddr::from(([127, 0, 0, 1], free_port())), SocketAddr::from(([127, 0, 0, 1], free_port())));
    let config = harness::config_text(&dir.path().join("data"), &ingest.url(), &mqtt.to_string(), &http.to_string(), &Extra::default());
    let mut gw = harness::Process::start(dir.path(), &config, mqtt, http).await;
    let path = dir.path().join("gateway.toml");
    let hup = |gw: &harness::Process| {
        let _ = Command::new("kill").args(["-HUP", &gw.child.id().to_string()]).status();
    };
    let log = |gw: &harness::Process| std::fs::read_to_string(&gw.log).unwrap_or_default();
    // Invalid: refused whole, the gateway goes on.
    std::fs::write(&path, config.replace("connect_timeout_secs = 2", "connect_timeout_secs = \"soon\"")).unwrap();
    hup(&gw);
    poll_until("the refusal", Duration::from_secs(10), || log(&gw).contains("the configuration is not valid; nothing applied")).await;
    assert!(log(&gw).contains("connect_timeout_secs"), "the problem is named: {}", log(&gw));
    // Valid, with a setting that cannot change while running.
    std::fs::write(&path, config.replace("connect_timeout_secs = 2", "connect_timeout_secs = 3")).unwrap();
    hup(&gw);
    poll_until("the restart warning", Duration::from_secs(10), || log(&gw).contains("need a restart")).await;
    assert!(log(&gw).contains("mqtt.connect_timeout_secs"), "{}", log(&gw));
    util::publish_one(mqtt, "still serving").await;
    assert_eq!(gw.terminate(), Some(0));
}
