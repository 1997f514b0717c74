//! The archive cut short at each step of closing its files (`EDGE_GATEWAY_ARCHIVE_CRASH`: the
//! process aborts there, as a power cut would stop it): after a restart every acknowledged
//! message is in the archive exactly once, no `.tmp` is left, and the manifest verifies.
//! Before the manifest names the files: they are removed and written again from the store;
//! after it: renamed ("rolled forward"); after the renames, before the cursor moved: the
//! manifest's `through_seq` keeps them from being archived twice.

use std::net::SocketAddr;
use std::time::Duration;

use crate::archive::{archive_section, cli, hex, pyarrow_rows};
use crate::harness::{self, Extra, Process};
use crate::ingest::IngestServer;
use crate::raw::{Event, Raw, publish_packet};
use crate::util::{self, free_port};

async fn crash_at(point: &str) {
    let dir = util::temp_dir();
    let ingest = IngestServer::start().await;
    let classes = "[[archive.classes]]\nname = \"all\"\ntopics = [\"devices/#\"]\nmin_keep_days = 1\n";
    let extra = Extra { sink: archive_section(classes), ..Default::default() };
    let (mqtt, http) = (SocketAddr::from(([127, 0, 0, 1], free_port())), SocketAddr::from(([127, 0, 0, 1], free_port())));
    let text = harness::config_text(&dir.path().join("data"), &ingest.url(), &mqtt.to_string(), &http.to_string(), &extra);
    let env = [("EDGE_GATEWAY_ARCHIVE_CRASH", point.to_string())];
    let mut gw = Process::start_with_env(&env, dir.path(), &text, mqtt, http).await;
    // The first flush (max_file_age_secs = 1) aborts the process, which on a slow host may be
    // before the last of these is sent: what counts is what was acknowledged.
    let acked = publish_until_closed(mqtt, 50).await;
    let died = util::within(Duration::from_secs(20), async || gw.child.try_wait().ok().flatten()).await;
    assert!(died.is_some_and(|s| !s.success()), "{point}: the gateway did not abort in its flush");
    let log = std::fs::read_to_string(&gw.log).unwrap();
    assert!(log.contains(&format!("EDGE_GATEWAY_ARCHIVE_CRASH={point}")), "{point}: {log}");
    let tmp_left = walk_tmp(&dir.path().join("data/archive"));
    match point {
        "before_manifest" | "before_rename" => assert!(tmp_left > 0, "{point}: the crash left its .tmp files"),
        _ => assert_eq!(tmp_left, 0, "{point}"),
    }
    let mut gw = Process::start(dir.path(), &text, mqtt, http).await;
    let config = dir.path().join("gateway.toml");
    let payloads = |rows: &[serde_json::Value]| -> Vec<String> {
        rows.iter().map(|r| String::from_utf8(hex(r["payload"].as_str().unwrap())).unwrap()).collect()
    };
    let all_in = util::within(Duration::from_secs(20), async || {
        let rows = pyarrow_rows(&dir.path().join("data/archive"));
        let got = payloads(&rows);
        acked.iter().all(|a| got.contains(a)).then_some(rows)
    })
    .await;
    all_in.unwrap_or_else(|| panic!("{point}: not every acknowledged message archived after the restart ({} acknowledged)", acked.len()));
    // Once the archive's cursor is past every message, a duplicate would be in a file by now.
    let caught_up = async || {
        let scrape = harness::http_get(http, "/metrics").await.1;
        harness::sample(&scrape, "gateway_archive_lag_messages") == 0.0
    };
    util::eventually("the archive's cursor past every message", Duration::from_secs(20), caught_up).await;
    let rows = pyarrow_rows(&dir.path().join("data/archive"));
    let mut keys: Vec<&str> = rows.iter().map(|r| r["key"].as_str().unwrap()).collect();
    keys.sort();
    keys.dedup();
    let mut got = payloads(&rows);
    got.sort();
    got.dedup();
    // Every acknowledged message once; one committed but not yet acknowledged at the abort may be there too.
    assert_eq!((keys.len(), got.len()), (rows.len(), rows.len()), "{point}: a message archived twice");
    assert!(acked.iter().all(|a| got.contains(a)) && rows.len() <= 50, "{point}: {} rows for {} acknowledged", rows.len(), acked.len());
    assert_eq!(walk_tmp(&dir.path().join("data/archive")), 0, "{point}: no .tmp left");
    let out = cli(&config, &["verify"], &[]);
    assert!(out.status.success(), "{point}: {}", util::text(&out));
    assert_eq!(gw.terminate(), Some(0));
}

/// QoS 1 publishes of "reading N" from `dev-c`, one at a time, until `n` are acknowledged or the
/// gateway goes away; the acknowledged payloads.
async fn publish_until_closed(mqtt: SocketAddr, n: u16) -> Vec<String> {
    let mut device = Raw::connect(mqtt, "dev-c", false).await;
    let mut acked = Vec::new();
    for pkid in 1..=n {
        let payload = format!("reading {}", pkid - 1);
        if !device.try_send(&publish_packet("devices/dev-c/t", payload.as_bytes(), 1, pkid, false), Duration::from_secs(5)).await {
            break;
        }
        match device.next(Duration::from_secs(10)).await {
            Event::Packet(0x40, body) if body[..2] == pkid.to_be_bytes() => acked.push(payload),
            Event::Closed => break,
            other => panic!("expected the PUBACK for {pkid}, got {other:?}"),
        }
    }
    acked
}

fn walk_tmp(dir: &std::path::Path) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "tmp") {
                n += 1;
            }
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_before_the_manifest_names_the_files_rewrites_them_from_the_store() {
    crash_at("before_manifest").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_the_manifest_before_the_renames_rolls_them_forward() {
    crash_at("before_rename").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_the_renames_before_the_cursor_moved_archives_nothing_twice() {
    crash_at("before_cursor").await;
}
