//! The archive cut short at each step of closing its files (`EDGE_GATEWAY_ARCHIVE_CRASH`: the
//! process aborts there, as a power cut would stop it): after a restart every acknowledged
//! message is in the archive exactly once, no `.tmp` is left, and the manifest verifies.
//! Before the manifest names the files: they are removed and written again from the store;
//! after it: renamed ("rolled forward"); after the renames, before the cursor moved: the
//! manifest's `through_seq` keeps them from being archived twice.

use std::net::SocketAddr;
use std::time::Duration;

use crate::archive::{archive_section, cli, publish_lines, pyarrow_rows};
use crate::harness::{self, Extra, Process};
use crate::ingest::IngestServer;
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
    let lines: Vec<String> = (0..50).map(|i| format!("reading {i}")).collect();
    publish_lines(mqtt.port(), "dev-c", "devices/dev-c/t", &[], &lines);
    // The first flush (max_file_age_secs = 1) aborts the process.
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
    let all_in = util::within(Duration::from_secs(20), async || {
        let rows = pyarrow_rows(&dir.path().join("data/archive"));
        (rows.len() >= 50).then_some(rows)
    })
    .await;
    let rows = all_in.unwrap_or_else(|| panic!("{point}: not every message archived after the restart"));
    // Once the archive's cursor is past every message, a duplicate would be in a file by now.
    let caught_up = async || {
        let scrape = harness::http_get(http, "/metrics").await.1;
        harness::sample(&scrape, "gateway_archive_lag_messages") == 0.0
    };
    util::eventually("the archive's cursor past every message", Duration::from_secs(20), caught_up).await;
    let rows = if rows.len() == 50 { pyarrow_rows(&dir.path().join("data/archive")) } else { rows };
    let mut keys: Vec<&str> = rows.iter().map(|r| r["key"].as_str().unwrap()).collect();
    keys.sort();
    keys.dedup();
    assert_eq!((rows.len(), keys.len()), (50, 50), "{point}: every acknowledged message once");
    assert_eq!(walk_tmp(&dir.path().join("data/archive")), 0, "{point}: no .tmp left");
    let out = cli(&config, &["verify"], &[]);
    assert!(out.status.success(), "{point}: {}", util::text(&out));
    assert_eq!(gw.terminate(), Some(0));
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
