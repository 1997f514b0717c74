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
use crate::util::OutputWithin;
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
    // One MQTT I/O thread, so that blocking it wedges the MQTT side.
    let extra = Extra { mqtt: "workers = 1", ..Default::default() };
    let config = harness::config_text(&dir.path().join("data"), &ingest.url(), &mqtt.to_string(), &http.to_string(), &extra);
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

    // The MQTT I/O thread blocks for 8 s (as a stuck handler would): not ready, no pings,
    // then ready and fed again once it runs.
    let client = reqwest::Client::new();
    let readyz = || async { reqwest::get(format!("http://{http}/readyz")).await.unwrap() };
    let stalled = client.post(format!("http://127.0.0.1:{admin}/admin/io/stall?ms=8000")).bearer_auth(TOKEN).send().await.unwrap();
    assert!(stalled.status().is_success(), "{stalled:?}");
    crate::util::eventually("/readyz 503 naming the I/O thread", Duration::from_secs(10), async || {
        let r = readyz().await;
        r.status() == 503 && r.text().await.unwrap().contains("I/O thread")
    })
    .await;
    let since = Instant::now() + Duration::from_millis(250);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(
        !heard.lock().unwrap().iter().any(|(t, l)| *t > since && l.contains("WATCHDOG=1")),
        "no watchdog ping while an I/O thread is wedged"
    );
    crate::util::eventually("ready again after the stall", Duration::from_secs(15), async || readyz().await.status() == 200).await;
    let resumed = Instant::now();
    poll_until("pings again", Duration::from_secs(5), || {
        heard.lock().unwrap().iter().any(|(t, l)| *t > resumed && l.contains("WATCHDOG=1"))
    })
    .await;

    // Every commit fails from now on; one publish makes the store unwritable.
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
            .output_within()
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
    let out = Command::new(util::require("systemd-analyze")).arg("verify").arg(&path).output_within().expect("systemd-analyze");
    assert!(out.status.success() && out.stderr.is_empty(), "{}", util::text(&out));
}

/// SIGHUP checks the whole file first (an invalid one changes nothing), reloads the files,
/// applies the sink's new URL and batch size and a new log filter to the running gateway, and
/// names each other changed setting as needing a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_refuses_an_invalid_file_and_names_the_settings_that_need_a_restart() {
    let dir = util::temp_dir();
    let ingest = IngestServer::start().await;
    let (mqtt, http) = (SocketAddr::from(([127, 0, 0, 1], free_port())), SocketAddr::from(([127, 0, 0, 1], free_port())));
    let config = harness::config_text(&dir.path().join("data"), &ingest.url(), &mqtt.to_string(), &http.to_string(), &Extra::default());
    // Without RUST_LOG: gateway.log_filter decides (and a SIGHUP changes it).
    let mut gw = harness::Process::start_with_env(&[("RUST_LOG", String::new())], dir.path(), &config, mqtt, http).await;
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
    poll_until("the first message at the first cloud", Duration::from_secs(20), || ingest.accepted().len() == 1).await;
    // Live: the sink moves to another cloud with one message per batch, the log filter goes
    // to warnings (the INFO line of the next SIGHUP is no longer written); a sink added at
    // the same time needs a restart.
    let second = IngestServer::start().await;
    let live = config
        .replace(&ingest.url(), &second.url())
        .replace("backoff_initial_ms = 20", "backoff_initial_ms = 20\nbatch_max_messages = 1")
        .replace("[gateway]", "[gateway]\nlog_filter = \"warn\"");
    let live = format!("{live}\n[[sinks]]\nname = \"extra\"\nkind = \"file\"\npath = \"{}\"\n", dir.path().join("extra.jsonl").display());
    std::fs::write(&path, &live).unwrap();
    hup(&gw);
    // The WARN naming what needs a restart is the reload's last line: wait for it.
    poll_until("the sink applied and the restart WARN", Duration::from_secs(10), || {
        let l = log(&gw);
        l.contains("sinks.cloud (destination)") && l.matches("need a restart").count() >= 2
    })
    .await;
    let l = log(&gw);
    assert!(l.contains("sinks.cloud (batching, backoff)") && l.contains("gateway.log_filter applied"), "{l}");
    assert!(l.contains("sinks.extra (a new sink)"), "a new sink needs a restart: {l}");
    assert!(!l.contains("\"gateway.log_filter\""), "the log filter is not named as needing a restart: {l}");
    // The new cloud answers 503 while three messages wait: they go as three batches of one.
    second.set_mode(crate::ingest::Mode::Fail(503));
    for i in 0..3 {
        util::publish_one(mqtt, &format!("after reload {i}")).await;
    }
    poll_until("a refused attempt at the new cloud", Duration::from_secs(20), || second.requests() > 0).await;
    second.set_mode(crate::ingest::Mode::Ok);
    poll_until("three messages at the new cloud", Duration::from_secs(20), || second.accepted().len() == 3).await;
    assert_eq!(second.batch_keys().len(), 3, "one message per batch");
    assert_eq!(ingest.accepted().len(), 1, "nothing more at the old cloud");
    std::fs::write(&path, &live).unwrap();
    let before = log(&gw).matches("SIGHUP: checking the configuration.").count();
    hup(&gw);
    // Its WARN is the third: the connect timeout, the live change, this one.
    poll_until("the WARN of the next SIGHUP", Duration::from_secs(10), || log(&gw).matches("need a restart").count() >= 3).await;
    assert_eq!(log(&gw).matches("SIGHUP: checking the configuration.").count(), before, "INFO lines are filtered out now");
    assert_eq!(gw.terminate(), Some(0));
}
