//! Disk faults on the real binary: strace injects EIO into fsync and ENOSPC into writes of the
//! store file while devices publish. Nothing is acknowledged that was not committed, readiness
//! fails while the fault lasts, the process keeps running, and once the fault clears the store
//! is reopened and everything acknowledged reaches the cloud.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::harness::{self, Extra, Process};
use crate::ingest::IngestServer;
use crate::raw::Raw;
use crate::util::{self, eventually, free_port, poll_until};

/// strace attached to every thread of the gateway, failing one syscall family on one path.
struct Fault(Child);

impl Fault {
    fn inject(pid: u32, paths: &[std::path::PathBuf], syscalls: &str, inject: &[&str]) -> Fault {
        let strace = util::require("strace");
        let mut cmd = Command::new(strace);
        // The trace itself goes nowhere; stderr keeps only strace's own errors.
        cmd.args(["-f", "-qq", "-o", "/dev/null", "-p", &pid.to_string(), "-e", &format!("trace={syscalls}")]);
        for i in inject {
            cmd.args(["-e", &format!("inject={i}")]);
        }
        for path in paths {
            cmd.arg("-P").arg(path);
        }
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn strace");
        // strace that cannot attach (no ptrace permission) exits at once: say so, not later.
        std::thread::sleep(std::time::Duration::from_millis(300));
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            use std::io::Read as _;
            let _ = child.stderr.take().map(|mut e| e.read_to_string(&mut err));
            panic!("strace exited ({status}) instead of attaching: {err}");
        }
        Fault(child)
    }

    /// Detach strace (SIGTERM makes it let go of the tracees) and wait for it.
    fn clear(mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let _ = self.0.wait();
    }
}

impl Drop for Fault {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Publishes on one v5 connection; remembers what was acknowledged and what was refused.
struct Device {
    raw: Raw,
    mqtt: SocketAddr,
    next: u16,
    acked: Vec<String>,
    refused: usize,
}

impl Device {
    async fn new(mqtt: SocketAddr) -> Device {
        Device { raw: Raw::connect(mqtt, "disk-dev", true).await, mqtt, next: 1, acked: Vec::new(), refused: 0 }
    }

    /// One QoS1 publish; true when acknowledged with success.
    async fn publish(&mut self) -> bool {
        let pkid = self.next;
        self.next += 1;
        let payload = format!("disk-{pkid}");
        self.raw.publish("devices/disk-dev/t", payload.as_bytes(), pkid).await;
        match self.raw.next(Duration::from_secs(10)).await {
            crate::raw::Event::Packet(0x40, body) => {
                assert_eq!(&body[..2], &pkid.to_be_bytes(), "PUBACK for another packet id");
                let code = body.get(2).copied().unwrap_or(0);
                if code == 0 {
                    self.acked.push(payload);
                    return true;
                }
                self.refused += 1;
                false
            }
            crate::raw::Event::Closed => {
                // Refused by closing (as for v3): reconnect and go on.
                self.refused += 1;
                self.raw = Raw::connect(self.mqtt, "disk-dev", true).await;
                false
            }
            other => panic!("expected PUBACK for {pkid}, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsync_eio_and_write_enospc_are_refused_not_acknowledged_and_the_redb_store_recovers() {
    disk_faults_are_refused_and_recovered("redb").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsync_eio_and_write_enospc_are_refused_not_acknowledged_and_the_sqlite_store_recovers() {
    disk_faults_are_refused_and_recovered("sqlite").await;
}

async fn disk_faults_are_refused_and_recovered(backend: &'static str) {
    let dir = util::temp_dir();
    let ingest = IngestServer::start().await;
    let (mqtt, http) = (SocketAddr::from(([127, 0, 0, 1], free_port())), SocketAddr::from(([127, 0, 0, 1], free_port())));
    let data = dir.path().join("data");
    let storage = if backend == "sqlite" { "backend = \"sqlite\"" } else { "backend = \"redb\"" };
    let mut config =
        harness::config_text(&data, &ingest.url(), &mqtt.to_string(), &http.to_string(), &Extra { storage, ..Extra::default() });
    config.push_str("[devices]\npersist_every_secs = 1\n");
    let mut gw = Process::start(dir.path(), &config, mqtt, http).await;
    // SQLite commits (and fsyncs) its write-ahead log: the faults hit both of its files.
    let files = |name: &str| -> Vec<std::path::PathBuf> {
        let file = data.join(format!("{name}.{backend}"));
        if backend == "sqlite" { vec![file.clone(), data.join(format!("{name}.{backend}-wal"))] } else { vec![file] }
    };
    let (store, devices) = (files("gateway"), files("devices"));
    let mut dev = Device::new(mqtt).await;
    assert!(dev.publish().await, "healthy store acknowledges");

    // The second fault also hits the device status file, for longer than its save interval.
    let faults: [(&str, &str, &[&str], Vec<std::path::PathBuf>); 2] = [
        ("fsync EIO", "fdatasync,fsync", &["fdatasync:error=EIO", "fsync:error=EIO"], store.clone()),
        ("write ENOSPC", "pwrite64,write", &["pwrite64:error=ENOSPC", "write:error=ENOSPC"], [store.clone(), devices.clone()].concat()),
    ];
    for (name, syscalls, inject, paths) in faults {
        let fault = Fault::inject(gw.child.id(), &paths, syscalls, inject);
        // Until strace is attached publishes still succeed; then the first refusal comes.
        eventually(&format!("{name}: every publish still acknowledged"), Duration::from_secs(20), async || !(dev.publish().await)).await;
        let acked_before = dev.acked.len();
        for _ in 0..5 {
            assert!(!dev.publish().await, "{name}: acknowledged while the fault lasts");
        }
        assert_eq!(dev.acked.len(), acked_before);
        let (status, body) = harness::http_get(http, "/readyz").await;
        assert_eq!(status, 503, "{name}: ready while the store fails: {body}");
        assert!(body.contains("storage"), "{body}");
        assert!(gw.child.try_wait().unwrap().is_none(), "{name}: the gateway exited");
        if paths.len() > store.len() {
            drop(Raw::connect(mqtt, "fault-dev", true).await); // a change for the status file
            let log = dir.path().join("gateway.log");
            poll_until("a failed device status save", Duration::from_secs(10), || {
                std::fs::read_to_string(&log).unwrap_or_default().contains("Cannot save device status")
            })
            .await;
        }

        fault.clear();
        eventually(&format!("{name}: not ready again after the fault cleared"), Duration::from_secs(15), async || {
            harness::http_get(http, "/readyz").await.0 == 200
        })
        .await;
        assert!(dev.publish().await, "{name}: not acknowledged after recovery");
        println!("{name}: {} refused while the fault lasted, recovered", dev.refused);
    }

    let acked: Vec<String> = dev.acked.clone();
    let missing = || {
        let got: HashSet<Vec<u8>> = ingest.accepted().iter().map(|m| m.payload_bytes()).collect();
        acked.iter().filter(|p| !got.contains(p.as_bytes())).count()
    };
    poll_until("every acknowledged message at the cloud", Duration::from_secs(30), || missing() == 0).await;
    let scrape = harness::http_get(http, "/metrics").await.1;
    assert!(harness::sample(&scrape, "gateway_storage_reopens_total{result=\"ok\"}") >= 2.0, "one reopening per fault");
    assert!(harness::sample(&scrape, "gateway_storage_commit_failures_total") >= 2.0);

    // The device status file was reopened too: a device first seen now survives a restart.
    let mut late = Raw::connect(mqtt, "late-dev", true).await;
    late.publish("devices/late-dev/t", b"late", 1).await;
    assert_eq!(late.expect_puback(1).await, 0);
    drop(late);
    assert_eq!(gw.terminate(), Some(0));
    let gw = Process::start(dir.path(), &config, mqtt, http).await;
    let (status, body) = harness::http_get(gw.http, "/api/devices/late-dev").await;
    let log = std::fs::read_to_string(dir.path().join("gateway.log")).unwrap_or_default();
    let about: Vec<&str> = log.lines().filter(|l| l.contains("evice status")).collect();
    assert_eq!(status, 200, "device status written after the fault was lost: {body}; log: {about:#?}");
}
