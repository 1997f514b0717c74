//! The real binary: SIGKILL under load, SIGTERM, and the CLI's exit codes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use crate::harness::{self, Extra, Process, binary};
use crate::ingest::IngestServer;
use crate::raw::resilient_device;
use crate::util::OutputWithin;
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
    let out = Command::new(binary()).args(args).output_within().expect("run edge-gateway");
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

/// A port another program holds: exit 1 at once, with one line that names the key, the
/// address and the system's reason (once).
#[test]
fn a_taken_port_exits_1_and_names_the_key_and_the_address() {
    let dir = util::temp_dir();
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = held.local_addr().unwrap();
    let (_, http) = addrs();
    let config =
        harness::config_text(&dir.path().join("data"), "http://127.0.0.1:9/x", &taken.to_string(), &http.to_string(), &Extra::default());
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, config).unwrap();
    let (code, text) = run_cli(&["run", "--config", path.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{text}");
    let line = text.lines().find(|l| l.contains("Cannot start")).unwrap_or_else(|| panic!("no start error: {text}"));
    assert!(line.contains(&format!("mqtt.listen: cannot bind {taken}")), "{line}");
    assert_eq!(line.matches("Address already in use").count(), 1, "{line}");
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

/// Keys never repeat for one gateway id: across a lost store, a store restored from a backup,
/// and a second gateway running a copied config (the issue that lost acknowledged messages at
/// a deduping cloud when keys were `{gateway id}:{seq}`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_stay_unique_across_a_lost_store_a_restored_backup_and_a_copied_config() {
    let dir = util::temp_dir();
    let ingest = IngestServer::start().await;
    let (mqtt, http) = addrs();
    let data = dir.path().join("data");
    let with_id = |data: &std::path::Path, mqtt: SocketAddr, http: SocketAddr| {
        harness::config_text(data, &ingest.url(), &mqtt.to_string(), &http.to_string(), &Extra::default()).replacen(
            "[gateway]\n",
            "[gateway]\nid = \"site-a-gw1\"\n",
            1,
        )
    };
    let config = with_id(&data, mqtt, http);
    let store = data.join("gateway.redb");
    let backup = dir.path().join("backup.redb");
    let mut sent = 0;
    let mut round = async |gw: &Process, what: &str| {
        for i in 0..2 {
            util::publish_one(gw.mqtt, &format!("{what}-{i}")).await;
        }
        sent += 2;
        let want = sent;
        poll_until(&format!("{what}: forwarded"), Duration::from_secs(15), || ingest.accepted().len() >= want).await;
    };

    let mut gw = Process::start(dir.path(), &config, mqtt, http).await;
    round(&gw, "first").await;
    assert_eq!(gw.terminate(), Some(0));
    std::fs::copy(&store, &backup).unwrap();
    let mut gw = Process::start(dir.path(), &config, mqtt, http).await;
    round(&gw, "after-backup").await;
    assert_eq!(gw.terminate(), Some(0));
    std::fs::copy(&backup, &store).unwrap(); // restored: its next seq was used already
    let mut gw = Process::start(dir.path(), &config, mqtt, http).await;
    round(&gw, "restored").await;
    assert_eq!(gw.terminate(), Some(0));
    std::fs::remove_file(&store).unwrap(); // lost: the next store starts at seq 0
    let gw = Process::start(dir.path(), &config, mqtt, http).await;
    round(&gw, "lost").await;
    // A second gateway with a copy of the config (its own data dir) at the same time.
    let twin_dir = util::temp_dir();
    let (twin_mqtt, twin_http) = addrs();
    let mut twin =
        Process::start(twin_dir.path(), &with_id(&twin_dir.path().join("data"), twin_mqtt, twin_http), twin_mqtt, twin_http).await;
    round(&twin, "twin").await;
    drop(gw);
    assert_eq!(twin.terminate(), Some(0));

    let keys: Vec<String> = ingest.accepted().iter().map(|m| m.key.clone()).collect();
    let payloads: std::collections::HashSet<Vec<u8>> = ingest.accepted().iter().map(|m| m.payload_bytes()).collect();
    assert_eq!(payloads.len(), 10, "every acknowledged message reached the cloud");
    assert!(keys.iter().all(|k| k.starts_with("site-a-gw1:")), "{keys:?}");
    assert_eq!(ingest.unique_keys(), 10, "a deduping cloud would drop acknowledged messages: {keys:?}");
}

/// `edge-gateway passwd` never rewrites a password file it cannot read or parse: that would
/// keep one user and lose all the others.
#[test]
fn passwd_leaves_an_unreadable_or_broken_password_file_alone() {
    let dir = util::temp_dir();
    let passwd = |file: &std::path::Path| {
        let mut child = Command::new(binary())
            .arg("passwd")
            .arg(file)
            .arg("meter-9")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        child.stdin.take().unwrap().write_all(b"s3cret\n").unwrap();
        child.wait_with_output().unwrap()
    };
    let cases: [(&str, &[u8]); 2] =
        [("not-utf8", b"meter-1:$7$101$\xff\xfe\n"), ("broken-line", b"meter-1:$7$101$c2FsdA==$aGFzaA==\nno colon on this line\n")];
    for (name, bytes) in cases {
        let file = dir.path().join(name);
        std::fs::write(&file, bytes).unwrap();
        let out = passwd(&file);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: {stderr}");
        assert!(stderr.contains("left unchanged"), "{name}: {stderr}");
        assert_eq!(std::fs::read(&file).unwrap(), bytes, "{name}: the file was rewritten");
    }
    let out = passwd(dir.path()); // a directory: cannot be read as a file
    assert!(!out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // A missing file is created; adding a second user keeps the first.
    let file = dir.path().join("new");
    assert!(passwd(&file).status.success());
    let first = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, first.replace("meter-9:", "meter-8:")).unwrap();
    assert!(passwd(&file).status.success());
    let both = std::fs::read_to_string(&file).unwrap();
    assert!(both.contains("meter-8:$7$") && both.contains("meter-9:$7$"), "{both}");
}

/// Policies that delete acknowledged messages are loud: a WARN at start, a WARN with the count
/// when they delete, and `/api/health` names them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_oldest_and_ttl_are_announced_at_start_and_every_drop_is_logged_with_its_count() {
    let dir = util::temp_dir();
    let ingest = IngestServer::start().await;
    ingest.stop(); // the cloud is down: messages stay in the store
    let (mqtt, http) = addrs();
    let extra = Extra { storage: "quota_messages = 3\noverflow = \"drop_oldest\"\nttl_secs = 3600", ..Default::default() };
    let config = harness::config_text(&dir.path().join("data"), &ingest.url(), &mqtt.to_string(), &http.to_string(), &extra);
    let mut gw = Process::start(dir.path(), &config, mqtt, http).await;
    for i in 0..5 {
        util::publish_one(mqtt, &format!("m{i}")).await;
    }
    let log = || std::fs::read_to_string(&gw.log).unwrap_or_default();
    assert!(log().contains("drop_oldest") && log().contains("storage.ttl_secs is set"), "start WARNs missing:\n{}", log());
    // The drops are logged at the storage actor's next tick with the count since the last line:
    // a tick between the two commits splits them over two lines.
    let drop_lines = || log().lines().filter(|l| l.contains("Deleted the oldest stored messages")).map(str::to_string).collect::<Vec<_>>();
    poll_until("both drops logged", Duration::from_secs(10), || drop_lines().iter().map(|l| logged_count(l, "dropped")).sum::<u64>() >= 2)
        .await;
    let lines = drop_lines();
    assert!(lines.iter().all(|l| l.contains("WARN")), "{lines:?}");
    assert_eq!(lines.iter().map(|l| logged_count(l, "dropped")).sum::<u64>(), 2, "{lines:?}");
    let (status, health) = harness::http_get(http, "/api/health").await;
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(status, 200);
    let policy = &health["storage_policy"];
    assert_eq!((policy["overflow"].as_str(), policy["ttl_secs"].as_u64()), (Some("drop_oldest"), Some(3600)), "{health}");
    assert_eq!(policy["deletes_acknowledged_messages"], true, "{health}");
    let scrape = harness::http_get(http, "/metrics").await.1;
    assert_eq!(harness::sample(&scrape, "gateway_dropped_messages_total{reason=\"quota\"}"), 2.0, "{scrape}");
    assert_eq!(gw.terminate(), Some(0));
}

/// The value of the field `key` in a log line, text (`key=2`) or JSON (`"key":2`); 0 if absent.
fn logged_count(line: &str, key: &str) -> u64 {
    [format!("{key}="), format!("\"{key}\":")]
        .iter()
        .find_map(|k| line.split_once(k.as_str()))
        .and_then(|(_, rest)| rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
        .unwrap_or(0)
}

/// CPU time (user + system) the process `pid` has used, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    // The fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Two MQTT I/O threads, each accepting on the listener itself; then the process runs out of
/// file descriptors (`prlimit`): the connections past the limit wait in the listen backlog, the
/// gateway says why and does not spin, and every one of them gets in once descriptors are free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_descriptor_limit_wait_and_get_in_once_descriptors_are_free() {
    let dir = util::temp_dir();
    let ingest = IngestServer::start().await;
    let (mqtt, http) = addrs();
    let extra = Extra { mqtt: "workers = 2\nmax_connections = 0\nmax_new_connections_per_source = 0", ..Default::default() };
    let config = harness::config_text(&dir.path().join("data"), &ingest.url(), &mqtt.to_string(), &http.to_string(), &extra);
    let mut gw = Process::start(dir.path(), &config, mqtt, http).await;
    let pid = gw.child.id();
    // Its descriptor table was grown at start for unlimited connections (src/ingress/fd_table.rs:
    // 65,536 slots, or the descriptor limit it inherited from this test), so that no accept
    // waits for the table to grow.
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit(2) writes into a valid rlimit.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) }, 0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let fd_size: u64 = status.lines().find_map(|l| l.strip_prefix("FDSize:")).unwrap().trim().parse().unwrap();
    assert!(fd_size >= limit.rlim_cur.min(65_536), "descriptor table of {fd_size} slots at start (limit {})", limit.rlim_cur);
    let mut first = Vec::new();
    for i in 0..20u16 {
        let mut device = crate::raw::Raw::connect(mqtt, &format!("fd-first-{i}"), i % 2 == 1).await;
        device.publish("fd/first", format!("first-{i}").as_bytes(), 1).await;
        assert_eq!(device.expect_puback(1).await, 0);
        first.push(device);
    }
    poll_until("the first 20 messages forwarded", Duration::from_secs(20), || ingest.unique_keys() >= 20).await;

    // The kernel gives the lowest free descriptor number below the limit: pick the limit that
    // leaves exactly 4 numbers free under it (the table may have gaps).
    let numbers: Vec<usize> =
        std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect();
    let limit = (0..).find(|l| l - numbers.iter().filter(|n| *n < l).count() == 4).unwrap();
    let set = Command::new("prlimit").args([format!("--pid={pid}"), format!("--nofile={limit}:{limit}")]).status();
    assert!(set.expect("run prlimit (util-linux)").success(), "prlimit");
    let mut waiting = Vec::new();
    for i in 0..12u16 {
        let mut device = crate::raw::Raw::open(mqtt, false).await;
        device.send(&crate::raw::connect_packet(&format!("fd-late-{i}"), false, true, 60)).await;
        waiting.push(device);
    }
    let ticks = cpu_ticks(pid);
    let mut answered = Vec::new();
    for device in &mut waiting {
        answered.push(matches!(device.next(Duration::from_millis(200)).await, crate::raw::Event::Packet(0x20, _)));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let spent = cpu_ticks(pid) - ticks;
    assert!(answered.contains(&false), "the descriptor limit ({limit}) held no connection back");
    // A loop retrying `accept` without pause keeps both I/O threads busy (up to ~8 s of CPU here).
    let hz = 100; // USER_HZ, the unit of /proc/PID/stat's times on Linux
    assert!(spent < hz, "the gateway used {spent} ticks of CPU in ~4.4 s while out of descriptors");
    let log = std::fs::read_to_string(&gw.log).unwrap();
    assert!(log.contains("Cannot accept an MQTT connection"), "the error is logged: {log}");

    drop(first);
    for (i, device) in waiting.iter_mut().enumerate() {
        if !answered[i] {
            let connack = device.next(Duration::from_secs(5)).await;
            assert!(
                matches!(connack, crate::raw::Event::Packet(0x20, _)),
                "device {i}: no CONNACK once descriptors were free: {connack:?}"
            );
        }
        device.publish("fd/late", format!("late-{i}").as_bytes(), 1).await;
        assert_eq!(device.expect_puback(1).await, 0, "device {i}");
    }
    poll_until("every message forwarded", Duration::from_secs(20), || ingest.unique_keys() >= 32).await;
    assert_eq!(gw.terminate(), Some(0), "both I/O threads stop");
}
