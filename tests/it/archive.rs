//! The archive (retention tier) as an operator sees it: Parquet files that pyarrow reads back
//! row by row, the CLI's query and export while the gateway runs, the folder upload, `archive
//! verify` catching a changed, a removed, a swapped and an added file and a reordered manifest,
//! and a class at its quota refusing ingest (or no longer archiving). Retention under a shifted
//! clock and the S3 upload are in `archive_retention.rs`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::harness::{self, Extra, http_get, sample};
use crate::ingest::IngestServer;
use crate::raw::Raw;
use crate::util::OutputWithin;
use crate::util::{self, eventually, poll_until};

/// `[archive]` with fast flushes and sweeps, then `more` (classes, upload).
pub fn archive_section(more: &str) -> String {
    format!("\n[archive]\nenabled = true\nmax_file_age_secs = 1\nsweep_every_secs = 1\n{more}\n")
}

/// `edge-gateway archive ARGS --config CONFIG`.
pub fn cli(config: &Path, args: &[&str], env: &[(&str, String)]) -> Output {
    Command::new(harness::binary())
        .arg("archive")
        .args(args)
        .arg("--config")
        .arg(config)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output_within()
        .expect("run edge-gateway archive")
}

/// Publish `lines` as one mosquitto_pub -l connection (QoS 1), with extra flags.
pub fn publish_lines(port: u16, client: &str, topic: &str, flags: &[&str], lines: &[String]) {
    let mut child = Command::new(util::require("mosquitto_pub"))
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-i", client, "-q", "1", "-t", topic, "-l"])
        .args(flags)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mosquitto_pub");
    let mut stdin = child.stdin.take().unwrap();
    for line in lines {
        writeln!(stdin, "{line}").unwrap();
    }
    drop(stdin);
    // Bounded: mosquitto_pub retries for ever against a gateway that went away.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("mosquitto_pub still running after 60 s: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "mosquitto_pub: {}", String::from_utf8_lossy(&out.stderr));
}

/// Every row of every Parquet file under `dir` (or the one file), read by pyarrow: JSON objects.
pub fn pyarrow_rows(path: &Path) -> Vec<Value> {
    let script = r#"
import glob, json, os, sys
import pyarrow.parquet as pq
p = sys.argv[1]
files = [p] if p.endswith('.parquet') else sorted(glob.glob(os.path.join(p, '*', '*', '*.parquet')))
for f in files:
    t = pq.read_table(f)
    for r in t.to_pylist():
        r['received_at'] = int(r['received_at'].timestamp() * 1000)
        r['device_time'] = None if r['device_time'] is None else int(r['device_time'].timestamp() * 1000)
        r['payload'] = r['payload'].hex()
        r['file'] = os.path.relpath(f, p) if f != p else f
        print(json.dumps(r))
"#;
    let out = Command::new(util::python()).args(["-c", script]).arg(path).output_within().expect("python with pyarrow");
    assert!(out.status.success(), "pyarrow: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn write_config(dir: &Path, extra: &Extra) -> PathBuf {
    let path = dir.join("gateway.toml");
    let text = harness::config_text(&dir.join("data"), "http://127.0.0.1:9/", "127.0.0.1:0", "127.0.0.1:0", extra);
    std::fs::write(&path, text).unwrap();
    path
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archived_messages_read_back_by_pyarrow_queried_exported_uploaded_and_verified() {
    let dir = util::temp_dir();
    let ingest = IngestServer::start().await;
    let export = dir.path().join("export");
    let classes = format!(
        "[[archive.classes]]\nname = \"alarms\"\ntopics = [\"devices/+/alarm\"]\nmin_keep_days = 1\n\
         [[archive.classes]]\nname = \"telemetry\"\ntopics = [\"devices/#\"]\nmin_keep_days = 1\n\
         [archive.upload]\nkind = \"dir\"\ndir = \"{}\"\n",
        export.display()
    );
    let extra = Extra { sink: archive_section(&classes), ..Default::default() };
    let config = write_config(dir.path(), &extra);
    let data = dir.path().join("data");
    let gw = harness::start(&data, &ingest.url(), &extra).await;
    let (port, before) = (gw.mqtt_addr.port(), edge_gateway_actors::storage::now_ms() as i64);
    let telemetry: Vec<String> = (0..60).map(|i| format!("{{\"ts\":{},\"t\":{i}}}", before + i)).collect();
    let v5 = ["-V", "5", "-D", "publish", "user-property", "site", "a,\"b\"", "-D", "publish", "content-type", "application/json"];
    publish_lines(port, "dev-a", "devices/dev-a/telemetry", &v5, &telemetry);
    let alarms: Vec<String> = (0..20).map(|i| format!("alarm {i}")).collect();
    publish_lines(port, "dev-b", "devices/dev-b/alarm", &[], &alarms);
    publish_lines(port, "dev-c", "other/x", &[], &["not archived".to_string()]);
    let m = gw.metrics.clone();
    let archived = |class: &str| m.archive.messages.get_or_create(&edge_gateway_actors::metrics::ClassLabels { class: class.into() }).get();
    eventually("every message archived", Duration::from_secs(30), async || archived("telemetry") == 60 && archived("alarms") == 20).await;
    eventually("the store let go of them", Duration::from_secs(20), async || m.backlog_messages.get() == 0).await;
    let after = edge_gateway_actors::storage::now_ms() as i64;

    // pyarrow, row by row.
    let rows = pyarrow_rows(&data.join("archive"));
    assert_eq!(rows.len(), 80, "no row for other/x, none twice");
    let mut keys: Vec<&str> = rows.iter().map(|r| r["key"].as_str().unwrap()).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 80);
    for r in &rows {
        let at = r["received_at"].as_i64().unwrap();
        assert!((before..=after).contains(&at), "{r}");
        assert_eq!(r["qos"], 1);
        let payload = String::from_utf8(hex(r["payload"].as_str().unwrap())).unwrap();
        if r["device"] == "dev-a" {
            assert_eq!(r["topic"], "devices/dev-a/telemetry");
            assert!(r["file"].as_str().unwrap().starts_with("telemetry/"), "{r}");
            let i = telemetry.iter().position(|t| *t == payload).expect("a published payload");
            assert_eq!(r["device_time"].as_i64(), Some(before + i as i64), "the device's ts");
            assert_eq!(r["content_type"], "application/json");
            assert_eq!(r["user_properties"], "[[\"site\",\"a,\\\"b\\\"\"]]");
        } else {
            assert_eq!((r["device"].as_str(), r["topic"].as_str()), (Some("dev-b"), Some("devices/dev-b/alarm")));
            assert!(r["file"].as_str().unwrap().starts_with("alarms/"), "{r}");
            assert!(alarms.contains(&payload), "{payload}");
            assert_eq!(r["user_properties"], Value::Null);
        }
    }

    // The CLI, while the gateway runs.
    let out = cli(&config, &["query"], &[]);
    assert!(out.status.success(), "{}", util::text(&out));
    assert_eq!(stdout(&out).lines().count(), 80);
    let out = cli(&config, &["query", "--device", "dev-b", "--format", "csv"], &[]);
    let csv = stdout(&out);
    assert_eq!(csv.lines().count(), 21, "{csv}");
    assert!(csv.lines().nth(1).unwrap().contains(",devices/dev-b/alarm,1,"), "{csv}");
    let out = cli(
        &config,
        &["query", "--topic", "devices/+/telemetry", "--from", &(before + 10).to_string(), "--to", &(after + 1).to_string()],
        &[],
    );
    let picked: Vec<Value> = stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(picked.iter().all(|r| r["device"] == "dev-a" && r["received_at_ms"].as_i64() >= Some(before + 10)), "{picked:?}");
    let future = (after + 3_600_000 * 5).to_string();
    let out = cli(&config, &["query", "--from", &future], &[]);
    assert_eq!(stdout(&out).lines().count(), 0);
    assert!(util::text(&out).contains("skipped by time"), "{}", util::text(&out));
    let exported = dir.path().join("out.parquet");
    let out = cli(&config, &["export", "--format", "parquet", "--out", exported.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", util::text(&out));
    assert_eq!(pyarrow_rows(&exported).len(), 80);

    // The folder upload: the same files and the manifest, byte for byte.
    let local = data.join("archive");
    eventually("uploaded", Duration::from_secs(20), async || {
        std::fs::read(export.join("manifest.jsonl")).ok() == std::fs::read(local.join("manifest.jsonl")).ok()
    })
    .await;
    for r in &rows {
        let f = r["file"].as_str().unwrap();
        assert_eq!(std::fs::read(export.join(f)).unwrap(), std::fs::read(local.join(f)).unwrap(), "{f}");
    }
    // The upload is counted after the uploader read the manifest back, a moment after the copy.
    let addr = gw.http_addr;
    let uploads_ok = "gateway_archive_uploads_total{result=\"ok\"}";
    eventually("3 uploads counted", Duration::from_secs(10), async || sample(&http_get(addr, "/metrics").await.1, uploads_ok) >= 3.0).await;
    let (_, scrape) = http_get(gw.http_addr, "/metrics").await;
    // The alarms may close in more than one file (a flush during the publishes, an hour boundary).
    let alarm_files =
        rows.iter().filter_map(|r| r["file"].as_str()).filter(|f| f.starts_with("alarms/")).collect::<std::collections::BTreeSet<_>>();
    assert_eq!(sample(&scrape, "gateway_archive_files{class=\"alarms\"}"), alarm_files.len() as f64, "{scrape}");

    // verify and query while files close: they read a consistent snapshot (the manifest lock).
    let more: Vec<String> = (0..400).map(|i| format!("{{\"more\":{i}}}")).collect();
    let publisher = std::thread::spawn(move || {
        for chunk in more.chunks(50) {
            publish_lines(port, "dev-a", "devices/dev-a/telemetry", &[], chunk);
            std::thread::sleep(Duration::from_millis(150));
        }
    });
    while !publisher.is_finished() {
        let out = cli(&config, &["verify"], &[]);
        assert!(out.status.success(), "verify while archiving: {}", util::text(&out));
        assert!(cli(&config, &["query", "--device", "dev-b"], &[]).status.success());
    }
    publisher.join().unwrap();
    eventually("the rest archived", Duration::from_secs(30), async || archived("telemetry") == 460).await;
    gw.stop().await;
    tamper_and_verify(&config, &local);
}

/// `archive verify` passes, then catches each kind of tampering (restored after each).
fn tamper_and_verify(config: &Path, local: &Path) {
    let out = cli(config, &["verify"], &[]);
    assert!(out.status.success(), "{}", util::text(&out));
    let head = stdout(&out).rsplit(' ').next().unwrap().trim().to_string();
    let files: Vec<PathBuf> = ["alarms", "telemetry"]
        .iter()
        .flat_map(|c| std::fs::read_dir(local.join(c)).unwrap().flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap()))
        .map(|e| e.unwrap().path())
        .collect();
    let (a, b) = (&files[0], &files[files.len() - 1]);
    let (orig_a, orig_b) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    let manifest = local.join("manifest.jsonl");
    let orig_manifest = std::fs::read_to_string(&manifest).unwrap();
    let name = |p: &Path| p.strip_prefix(local).unwrap().display().to_string();
    let expect = |what: &str, needles: &[String]| {
        let out = cli(config, &["verify"], &[]);
        let text = util::text(&out);
        assert_eq!(out.status.code(), Some(1), "{what}: {text}");
        for n in needles {
            assert!(text.contains(n.as_str()), "{what}: {n:?} not named in {text}");
        }
    };
    let mut changed = orig_a.clone();
    let mid = changed.len() / 2;
    changed[mid] ^= 0xff;
    std::fs::write(a, &changed).unwrap();
    expect("a changed file", &[format!("{}: SHA-256 differs", name(a))]);
    std::fs::write(a, &orig_a).unwrap();
    std::fs::remove_file(b).unwrap();
    expect("a removed file", &[format!("{}: missing", name(b))]);
    std::fs::write(b, &orig_b).unwrap();
    std::fs::write(a, &orig_b).unwrap();
    std::fs::write(b, &orig_a).unwrap();
    expect("swapped files", &[name(a), name(b)]);
    std::fs::write(a, &orig_a).unwrap();
    std::fs::write(b, &orig_b).unwrap();
    let mut lines: Vec<&str> = orig_manifest.lines().collect();
    lines.swap(0, 1);
    std::fs::write(&manifest, format!("{}\n", lines.join("\n"))).unwrap();
    expect("reordered manifest entries", &["chain is broken".to_string()]);
    std::fs::write(&manifest, &orig_manifest).unwrap();
    let added = a.with_file_name("99-0.parquet");
    std::fs::write(&added, &orig_a).unwrap();
    expect("an added file", &[format!("{}: not in the manifest", name(&added))]);
    std::fs::remove_file(&added).unwrap();
    // A manifest rewritten from scratch chains fine, but loses the head recorded before.
    let first_only = format!("{}\n", orig_manifest.lines().next().unwrap());
    std::fs::write(&manifest, first_only).unwrap();
    let out = cli(config, &["verify", "--head", &head], &[]);
    assert!(util::text(&out).contains("recorded earlier is not in this manifest"), "{}", util::text(&out));
    std::fs::write(&manifest, &orig_manifest).unwrap();
    let out = cli(config, &["verify", "--head", &head], &[]);
    assert!(out.status.success(), "restored: {}", util::text(&out));
}

pub fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_class_at_its_quota_refuses_ingest_or_stops_archiving_as_configured() {
    let dir = util::temp_dir();
    let ingest = IngestServer::start().await;
    let classes = "[[archive.classes]]\nname = \"capped\"\ntopics = [\"devices/+/capped\"]\nmin_keep_days = 1\nquota_bytes = 1\n\
                   [[archive.classes]]\nname = \"stopped\"\ntopics = [\"devices/+/stopped\"]\nmin_keep_days = 1\nquota_bytes = 1\non_full = \"stop_archiving\"\n";
    let extra = Extra { sink: archive_section(classes), ..Default::default() };
    let gw = harness::start(dir.path(), &ingest.url(), &extra).await;
    let mut v5 = Raw::connect(gw.mqtt_addr, "quota-a", true).await;
    v5.publish("devices/a/capped", b"first", 1).await;
    assert_eq!(v5.expect_puback(1).await, 0);
    v5.publish("devices/a/stopped", b"first", 2).await;
    assert_eq!(v5.expect_puback(2).await, 0);
    let m = gw.metrics.clone();
    let full = |class: &str| m.archive.full.get_or_create(&edge_gateway_actors::metrics::ClassLabels { class: class.into() }).get();
    eventually("both classes full", Duration::from_secs(20), async || full("capped") == 1 && full("stopped") == 1).await;
    // refuse_ingest: v5 gets 0x97, v3 loses the connection; nothing of it is stored.
    v5.publish("devices/a/capped", b"refused", 3).await;
    assert_eq!(v5.expect_puback(3).await, 0x97, "quota exceeded");
    let mut v3 = Raw::connect(gw.mqtt_addr, "quota-b", false).await;
    v3.publish("devices/b/capped", b"refused", 1).await;
    let seen = v3.expect_closed(Duration::from_secs(5)).await;
    assert!(seen.iter().all(|(f, _)| *f != 0x40), "no PUBACK on v3: {seen:?}");
    // stop_archiving: accepted and forwarded, not archived.
    v5.publish("devices/a/stopped", b"forwarded only", 4).await;
    assert_eq!(v5.expect_puback(4).await, 0);
    eventually("forwarded", Duration::from_secs(20), async || ingest.unique_keys() == 3).await;
    // The HTTP downlink is refused too (507), like a full store.
    harness::install_crypto();
    let token = std::fs::read_to_string(dir.path().join("http.token")).unwrap();
    let resp = reqwest::Client::new()
        .post(format!("http://{}/api/publish", gw.http_addr))
        .bearer_auth(token.trim())
        .json(&serde_json::json!({"topic": "devices/api/capped", "payload": "x", "qos": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 507, "{:?}", resp.text().await);
    // The archive actor reads the store on its own cursor: it skips the message when its poll
    // reaches it, which may be after the forwarder delivered it.
    let skipped = || m.archive.skipped.get_or_create(&edge_gateway_actors::metrics::ClassLabels { class: "stopped".into() }).get();
    poll_until("the stopped class's message skipped", Duration::from_secs(10), || skipped() >= 1).await;
    assert_eq!(skipped(), 1);
    let (_, scrape) = http_get(gw.http_addr, "/metrics").await;
    assert_eq!(sample(&scrape, "gateway_ingress_rejected_total{reason=\"archive_full\"}"), 2.0, "{scrape}");
    assert_eq!(sample(&scrape, "gateway_archive_messages_total{class=\"capped\"}"), 1.0, "{scrape}");
    let health: Value = serde_json::from_str(&http_get(gw.http_addr, "/api/health").await.1).unwrap();
    let classes = &health["archive"]["classes"];
    assert_eq!((classes[0]["name"].as_str(), classes[0]["refusing_ingest"].as_bool()), (Some("capped"), Some(true)), "{health}");
    assert_eq!((classes[1]["on_full"].as_str(), classes[1]["skipped_messages"].as_i64()), (Some("stop_archiving"), Some(1)), "{health}");
    gw.stop().await;
}
