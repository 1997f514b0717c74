//! Retention as it must hold for years, proved under a wall clock shifted by libfaketime (the
//! gateway process and the CLI alike): deletion past `max_keep_days` with an audit line, the
//! compliance window an operator can only cross with `--force` and a reason, a legal hold that
//! stops everything until it is released. And the S3 upload to a real S3-compatible server
//! (moto): an outage and a SIGKILL mid-upload end with every file in the bucket exactly once,
//! checked, and every acknowledged message in the archive exactly once.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::archive::{archive_section, cli, publish_lines, pyarrow_rows};
use crate::harness::{self, Extra, Process, sample};
use crate::ingest::IngestServer;
use crate::util::OutputWithin;
use crate::util::{self, Killed, eventually, free_port, poll_until};

fn shifted(offset: &str) -> Vec<(&'static str, String)> {
    vec![("LD_PRELOAD", util::libfaketime()), ("FAKETIME", offset.to_string()), ("FAKETIME_DONT_FAKE_MONOTONIC", "1".to_string())]
}

fn listed(config: &Path, env: &[(&str, String)]) -> Vec<String> {
    let out = cli(config, &["list"], env);
    assert!(out.status.success(), "{}", util::text(&out));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| l.split('\t').next().unwrap().to_string()).collect()
}

fn addrs() -> (SocketAddr, SocketAddr) {
    (SocketAddr::from(([127, 0, 0, 1], free_port())), SocketAddr::from(([127, 0, 0, 1], free_port())))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_past_max_keep_and_never_inside_the_window_or_under_a_hold() {
    let dir = util::temp_dir();
    let ingest = IngestServer::start().await;
    let classes = "[[archive.classes]]\nname = \"short\"\ntopics = [\"devices/+/short\"]\nmin_keep_days = 10\nmax_keep_days = 30\n\
                   [[archive.classes]]\nname = \"long\"\ntopics = [\"devices/+/long\"]\nmin_keep_days = 60\nmax_keep_days = 90\n\
                   [[archive.classes]]\nname = \"held\"\ntopics = [\"devices/+/held\"]\nmin_keep_days = 1\nmax_keep_days = 5\n";
    let extra = Extra { sink: archive_section(classes), ..Default::default() };
    let (mqtt, http) = addrs();
    let text = harness::config_text(&dir.path().join("data"), &ingest.url(), &mqtt.to_string(), &http.to_string(), &extra);
    let config = dir.path().join("gateway.toml");
    let mut gw = Process::start(dir.path(), &text, mqtt, http).await;
    for class in ["short", "long", "held"] {
        publish_lines(mqtt.port(), "dev-r", &format!("devices/dev-r/{class}"), &[], &[format!("{class} reading")]);
    }
    eventually("three files", Duration::from_secs(20), async || listed(&config, &[]).len() == 3).await;
    let out = cli(&config, &["hold", "--class", "held", "--reason", "case 42"], &[]);
    assert!(out.status.success(), "{}", util::text(&out));
    assert_eq!(gw.terminate(), Some(0));

    // 40 days later: past short's 30 days; inside long's 60-day window; held is held.
    let later = shifted("+40d");
    let mut gw = Process::start_with_env(&later, dir.path(), &text, mqtt, http).await;
    eventually("short deleted", Duration::from_secs(20), async || listed(&config, &later).iter().all(|p| !p.starts_with("short/"))).await;
    let files = listed(&config, &later);
    assert!(files.iter().any(|p| p.starts_with("long/")) && files.iter().any(|p| p.starts_with("held/")), "{files:?}");
    let out = cli(&config, &["delete", "--class", "long", "--before", "2200-01-01", "--reason", "cleanup"], &later);
    assert_eq!(out.status.code(), Some(1), "{}", util::text(&out));
    assert!(util::text(&out).contains("inside the compliance window"), "{}", util::text(&out));
    let out = cli(&config, &["delete", "--class", "held", "--before", "2200-01-01", "--reason", "cleanup", "--force"], &later);
    assert_eq!(out.status.code(), Some(1), "{}", util::text(&out));
    assert!(util::text(&out).contains("legal hold"), "{}", util::text(&out));
    let out = cli(&config, &["delete", "--class", "long", "--before", "2200-01-01", "--reason", "court order 7", "--force"], &later);
    assert!(out.status.success(), "{}", util::text(&out));
    assert!(listed(&config, &later).iter().all(|p| !p.starts_with("long/")));
    // Released: the next sweep deletes it (5 days).
    let out = cli(&config, &["release", "--class", "held", "--reason", "case closed"], &later);
    assert!(out.status.success(), "{}", util::text(&out));
    eventually("held deleted after release", Duration::from_secs(20), async || listed(&config, &later).is_empty()).await;
    let scrape = harness::http_get(http, "/metrics").await.1;
    for (class, reason) in [("short", "max_keep"), ("held", "max_keep"), ("long", "operator")] {
        let series = format!("gateway_archive_deletions_total{{class=\"{class}\",reason=\"{reason}\"}}");
        assert_eq!(sample(&scrape, &series), 1.0, "{series}: {scrape}");
    }
    assert_eq!(gw.terminate(), Some(0));

    // Every deletion and hold is in the audit log, and the manifest still verifies.
    let audit = std::fs::read_to_string(dir.path().join("data/archive/audit.jsonl")).unwrap();
    let lines: Vec<Value> = audit.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let actions: Vec<(&str, &str, &str)> =
        lines.iter().map(|l| (l["action"].as_str().unwrap(), l["class"].as_str().unwrap(), l["reason"].as_str().unwrap_or(""))).collect();
    assert_eq!(
        actions,
        vec![
            ("hold", "held", ""),
            ("delete", "short", "max_keep"),
            ("delete", "long", "operator"),
            ("release", "held", ""),
            ("delete", "held", "max_keep")
        ]
    );
    assert!(
        lines[2]["by"].as_str().unwrap().ends_with("--force") && lines[2]["detail"].as_str().unwrap().contains("court order 7"),
        "{audit}"
    );
    let out = cli(&config, &["verify"], &later);
    assert!(out.status.success(), "{}", util::text(&out));
}

/// moto's S3 server on a free port, with bucket `archive` (it keeps objects in memory).
async fn moto(dir: &Path) -> (Killed, u16) {
    let port = free_port();
    let bin = Path::new(&util::python()).with_file_name("moto_server");
    let child = Command::new(&bin)
        .args(["-p", &port.to_string()])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto_server");
    let moto = Killed(child);
    util::poll_until("moto listening", Duration::from_secs(30), || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()).await;
    let out = s3_script(port, "s3.create_bucket(Bucket='archive')");
    assert!(out.is_empty(), "{out}");
    (moto, port)
}

/// Run Python with `s3` (boto3 against moto) defined; its stdout.
fn s3_script(port: u16, body: &str) -> String {
    let script = format!(
        "import boto3, hashlib, json\ns3 = boto3.client('s3', endpoint_url='http://127.0.0.1:{port}', aws_access_key_id='edge', aws_secret_access_key='x', region_name='us-east-1')\n{body}\n"
    );
    let out = Command::new(util::python()).args(["-c", &script]).output_within().expect("python with boto3");
    assert!(out.status.success(), "boto3: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_upload_resumes_after_an_outage_and_a_kill_with_every_file_once_and_checked() {
    let dir = util::temp_dir();
    let (moto, port) = moto(dir.path()).await;
    let secret = dir.path().join("s3.secret");
    std::fs::write(&secret, "x\n").unwrap();
    let ingest = IngestServer::start().await;
    let more = format!(
        "max_file_bytes = 2048\n[[archive.classes]]\nname = \"all\"\ntopics = [\"devices/#\"]\nmin_keep_days = 1\n\
         [archive.upload]\nkind = \"s3\"\nendpoint = \"http://127.0.0.1:{port}\"\nbucket = \"archive\"\nprefix = \"site-a/\"\n\
         access_key_id = \"edge\"\nsecret_key_file = \"{}\"\ntimeout_ms = 1000\n",
        secret.display()
    );
    let extra = Extra { sink: archive_section(&more), ..Default::default() };
    let (mqtt, http) = addrs();
    let text = harness::config_text(&dir.path().join("data"), &ingest.url(), &mqtt.to_string(), &http.to_string(), &extra);
    let mut gw = Process::start(dir.path(), &text, mqtt, http).await;
    let batch =
        |from: usize| -> Vec<String> { (from..from + 100).map(|i| format!("{{\"i\":{i},\"pad\":\"{}\"}}", "x".repeat(100))).collect() };
    publish_lines(mqtt.port(), "dev-s", "devices/dev-s/t", &[], &batch(0));
    // An outage: moto stops answering, uploads time out and are retried ...
    let pid = moto.0.id().to_string();
    Command::new("kill").args(["-STOP", &pid]).status().unwrap();
    publish_lines(mqtt.port(), "dev-s", "devices/dev-s/t", &[], &batch(100));
    let failed = || std::fs::read_to_string(&gw.log).unwrap_or_default().contains("Archive upload failed");
    poll_until("an upload timed out during the outage", Duration::from_secs(20), failed).await;
    tokio::time::sleep(Duration::from_secs(1)).await; // its retry is likely hanging now
    // ... and the gateway is SIGKILLed while an upload hangs on it (and files may be closing).
    gw.kill9();
    Command::new("kill").args(["-CONT", &pid]).status().unwrap();
    let mut gw = Process::start(dir.path(), &text, mqtt, http).await;
    publish_lines(mqtt.port(), "dev-s", "devices/dev-s/t", &[], &batch(200));
    let local = dir.path().join("data/archive");
    let manifest = local.join("manifest.jsonl");
    let listing = || {
        s3_script(
            port,
            "for o in s3.list_objects_v2(Bucket='archive').get('Contents', []):\n    b = s3.get_object(Bucket='archive', Key=o['Key'])['Body'].read()\n    print(o['Key'], hashlib.sha256(b).hexdigest())",
        )
    };
    let expected = || -> Vec<String> {
        let m = edge_gateway::archive::manifest::Manifest::read(&local).unwrap();
        let mut want: Vec<String> = m.live().values().map(|f| format!("site-a/{} {}", f.path, f.sha256)).collect();
        want.push(format!("site-a/manifest.jsonl {}", edge_gateway::sha256::file(&manifest).unwrap()));
        want.sort();
        want
    };
    let uploaded = util::within(Duration::from_secs(40), async || {
        let mut got: Vec<String> = listing().lines().map(str::to_string).collect();
        got.sort();
        (got == expected() && got.len() > 10).then_some(got)
    })
    .await;
    assert!(uploaded.is_some(), "bucket {:?} != local {:?}", listing(), expected());
    let scrape = harness::http_get(http, "/metrics").await.1;
    assert_eq!(sample(&scrape, "gateway_archive_upload_pending_bytes"), 0.0, "{scrape}");
    assert_eq!(gw.terminate(), Some(0));
    let log = std::fs::read_to_string(dir.path().join("gateway.log")).unwrap();
    assert!(log.contains("Archive upload failed"), "the outage was seen: {log}");
    // Exactly once in the archive despite the kill: 300 acknowledged, 300 rows, 300 keys.
    let rows = pyarrow_rows(&local);
    let mut keys: Vec<&str> = rows.iter().map(|r| r["key"].as_str().unwrap()).collect();
    keys.sort();
    keys.dedup();
    assert_eq!((rows.len(), keys.len()), (300, 300));
    let out = cli(&dir.path().join("gateway.toml"), &["verify"], &[]);
    assert!(out.status.success(), "{}", util::text(&out));
}
