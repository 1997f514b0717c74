//! The chaos scripts (chaos/), shortened: each starts the real binary with its own deduping
//! ingestion server and paho-mqtt devices, breaks something under load, and must end with a
//! passing verdict. The JSON verdict is checked here too, so a script that measured nothing
//! (no messages acknowledged, no kill done) cannot pass.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness;
use crate::util;

/// Longest a shortened scenario may run before it is killed and the test fails.
const SCRIPT_DEADLINE: Duration = Duration::from_secs(240);

use crate::util::python;

/// Runs `chaos/<script> ARGS` against this build's binary; returns the verdict JSON, which
/// must pass with nothing lost and no message twice.
async fn run(script: &str, args: &[&str]) -> Value {
    let (code, verdict, output) = run_script(script, args, SCRIPT_DEADLINE).await;
    assert_eq!(code, Some(0), "{script} verdict failed:\n{output}");
    assert_eq!(verdict["pass"], Value::Bool(true), "{verdict:#}");
    assert_eq!(verdict["lost"], 0, "{verdict:#}");
    assert_eq!(verdict["duplicates"], 0, "{verdict:#}");
    verdict
}

/// Runs `chaos/<script> ARGS`; its exit code, its verdict JSON and its output.
async fn run_script(script: &str, args: &[&str], deadline: Duration) -> (Option<i32>, Value, String) {
    let dir = util::temp_dir();
    let json = dir.path().join("verdict.json");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("chaos").join(script);
    let log = std::fs::File::create(dir.path().join("script.log")).unwrap();
    let mut child = Command::new(python())
        .arg(&path)
        .args(args)
        .args(["--seed", "7", "--quiet", "--gateway-bin"])
        .arg(harness::binary())
        .arg("--work-dir")
        .arg(dir.path().join("work"))
        .arg("--json-out")
        .arg(&json)
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", path.display()));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let output = std::fs::read_to_string(dir.path().join("script.log")).unwrap_or_default();
            panic!("{script} still running after {deadline:?}:\n{output}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let output = std::fs::read_to_string(dir.path().join("script.log")).unwrap_or_default();
    println!("{script} {args:?} ({:.1} s):\n{output}", started.elapsed().as_secs_f64());
    let verdict = match std::fs::read_to_string(&json) {
        Ok(text) => serde_json::from_str(&text).expect("verdict parses"),
        Err(e) => panic!("{script}: no verdict JSON ({e}), exit {:?}:\n{output}", status.code()),
    };
    (status.code(), verdict, output)
}

fn int(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("{key} missing in {v:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_kill_actors_short() {
    let v = run(
        "kill-actors",
        &["--duration", "8", "--kills", "12", "--kill-rate", "2", "--p99-bar-ms", "5000", "--rate", "150", "--devices", "3"],
    )
    .await;
    assert!(int(&v, "acked") > 300, "{v:#}");
    assert!(int(&v, "kills") >= 8 && int(&v, "restarts") >= 5, "{v:#}");
    assert_eq!(v["gateway_alive"], Value::Bool(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_kill_process_short() {
    kill_process_short("redb").await;
}

/// With two persistent subscribers of the gateway's own broker attached, everything at QoS 2:
/// every acknowledged message reaches both, none twice, across the kills (issue 14).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_kill_process_short_qos2_subscribers() {
    let args = "--duration 12 --kills 4 --recover-bar-ms 15000 --rate 150 --devices 3 --subscribers 2 --qos 2";
    let v = run("kill-process", &args.split(' ').collect::<Vec<_>>()).await;
    assert!(int(&v, "acked") > 300, "{v:#}");
    assert!(int(&v, "kills") >= 2, "{v:#}");
    assert_eq!((int(&v, "subscribers"), int(&v, "qos")), (2, 2), "{v:#}");
    assert_eq!((int(&v, "sub_missing"), int(&v, "sub_duplicates")), (0, 0), "{v:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_kill_process_short_sqlite() {
    kill_process_short("sqlite").await;
}

async fn kill_process_short(backend: &str) {
    // Restart time is a pass bar of the full run (docs/RELIABILITY.md); here, on a debug build
    // sharing 2 cores with other tests, only that every restart comes back at all.
    let args = ["--duration", "14", "--kills", "4", "--recover-bar-ms", "15000", "--rate", "150", "--devices", "3", "--backend", backend];
    let v = run("kill-process", &args).await;
    assert!(int(&v, "acked") > 300, "{v:#}");
    assert!(int(&v, "kills") >= 2, "{v:#}");
    assert_eq!(int(&v, "not_ready"), 0, "{v:#}");
}

/// The same with NATS JetStream as the cloud: every acknowledged message in the stream once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_kill_process_short_nats() {
    let args = ["--duration", "10", "--kills", "3", "--recover-bar-ms", "15000", "--rate", "150", "--devices", "3", "--sink", "nats"];
    let v = run("kill-process", &args).await;
    assert!(int(&v, "acked") > 300, "{v:#}");
    assert_eq!(int(&v, "not_ready"), 0, "{v:#}");
}

/// The same with the MQTT bridge into a mosquitto, read by a persistent MQTT 5 subscriber.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_kill_process_short_mqtt() {
    let args = ["--duration", "10", "--kills", "3", "--recover-bar-ms", "15000", "--rate", "150", "--devices", "3", "--sink", "mqtt"];
    let v = run("kill-process", &args).await;
    assert!(int(&v, "acked") > 300, "{v:#}");
    assert_eq!(int(&v, "not_ready"), 0, "{v:#}");
}

/// nats-server killed for 3 s and started again on the same store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_cloud_outage_short_nats() {
    let v =
        run("cloud-outage", &["--duration", "8", "--outage", "3", "--mode", "down", "--rate", "150", "--devices", "3", "--sink", "nats"])
            .await;
    assert!(int(&v, "acked") > 300, "{v:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_cloud_outage_short() {
    let v = run("cloud-outage", &["--duration", "8", "--outage", "3", "--mode", "down", "--rate", "150", "--devices", "3"]).await;
    assert!(int(&v, "acked") > 300, "{v:#}");
    assert_eq!(int(&v, "order_violations"), 0, "{v:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_disk_faults_short() {
    let v =
        run("disk-faults", &["--fault", "eio", "--fault-secs", "2", "--faults", "1", "--duration", "6", "--rate", "150", "--devices", "3"])
            .await;
    assert!(int(&v, "acked") > 200, "{v:#}");
    assert_eq!(v["recover_ms"]["count"], 1, "{v:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_corrupt_store_short() {
    corrupt_store_short("redb").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_corrupt_store_short_sqlite() {
    corrupt_store_short("sqlite").await;
}

async fn corrupt_store_short(backend: &str) {
    let v = run("corrupt-store", &["--damage", "header", "--duration", "3", "--rate", "150", "--devices", "3", "--backend", backend]).await;
    // The header is gone, every record is still in the file: salvage finds them all (and the
    // ones committed whose PUBACK the SIGKILL cut off).
    assert!(int(&v, "acked") > 200, "{v:#}");
    assert!(int(&v, "salvaged") >= int(&v, "acked"), "{v:#}");
    assert_eq!(int(&v, "lost_to_corruption"), 0, "{v:#}");
    assert_eq!(v["readyz_before_acknowledge"], 503, "{v:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_churn_short() {
    let v = run("churn", &["--devices", "30", "--cycles", "3", "--storms", "1", "--per-connect", "3", "--rate", "300", "--duration", "30"])
        .await;
    assert!(int(&v, "acked") >= 200, "{v:#}");
}

/// The power-cut harness, shortened (one test: one qemu at a time on the 2 cores): the gateway
/// (this debug build, stripped) in a qemu guest built from Debian packages.
///
/// 1. Its power cut once under load; after the boot that follows (`e2fsck -p`, the gateway
///    again) every acknowledged message must reach the cloud, none twice.
/// 2. Real I/O errors: dm-flakey under the data file system fails every write and flush after
///    6 s while devices publish; `/readyz` must answer 503 from then on with no PUBACK, and
///    after a power cut and a boot without the fault every acknowledged message must reach the
///    cloud (a failed writeback must not have been acknowledged, nor lost once it was).
///
/// The full runs (100 cuts per engine, the no-fsync control that must lose messages) are in
/// docs/RELIABILITY.md.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_power_cut_short() {
    let args = ["--cuts", "1", "--up-min", "2", "--up-max", "3", "--rate", "40", "--devices", "2", "--ready-timeout", "150"];
    let v = run("power-cut", &args).await;
    assert_eq!(int(&v, "cuts"), 1, "{v:#}");
    assert_eq!(int(&v, "boots"), 2, "{v:#}");
    assert_eq!(int(&v, "not_ready"), 0, "{v:#}");
    assert!(int(&v, "acked") >= 20, "{v:#}");

    let args = ["--flakey", "6:3", "--flakey-secs", "15", "--rate", "40", "--devices", "2", "--ready-timeout", "150"];
    let v = run("power-cut", &args).await;
    assert!(int(&v, "not_ready_episodes") >= 1, "{v:#}");
    assert!(int(&v, "acked") >= 20, "{v:#}");
    assert_eq!(int(&v, "boots"), 2, "{v:#}");
}
