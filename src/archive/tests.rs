//! Unit tests across the archive's modules: Parquet round trip and pushdown, retention plans.

use std::collections::{BTreeMap, HashSet};

use edge_gateway_actors::metrics::ArchiveDeletion;
use edge_gateway_actors::record::{Record, SchemaTag, TraceCtx};

use super::columns::{self, ArchivedRow, ROW_GROUP_ROWS, RowFilter};
use super::manifest::FileEntry;
use super::retention::{self, DAY_MS};
use crate::config::{ClassConfig, OnFull};

fn record(seq: u64, at: u64) -> Record {
    Record {
        seq,
        key: format!("gw:1:{seq}"),
        device: format!("d{}", seq % 3),
        topic: format!("devices/d{}/telemetry", seq % 3),
        qos: 1,
        payload: if seq.is_multiple_of(2) { format!("{{\"ts\":{at},\"v\":{seq}}}").into_bytes() } else { vec![0xff, 0, seq as u8] },
        content_type: (seq.is_multiple_of(5)).then(|| "application/json".into()),
        user_properties: if seq.is_multiple_of(4) { vec![("k".into(), "v,\"x\"".into())] } else { Vec::new() },
        received_at_ms: at,
        trace: (seq.is_multiple_of(7)).then_some(TraceCtx { trace_id: [0xab; 16], span_id: [1; 8], flags: 1 }),
        schema: (seq.is_multiple_of(6)).then(|| SchemaTag { subject: "telemetry".into(), version: 2, valid: true, errors: Vec::new() }),
        mqtt5: None,
    }
}

#[test]
fn rows_round_trip_through_parquet_and_time_ranges_skip_row_groups() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.parquet");
    let n = ROW_GROUP_ROWS as u64 * 2 + 10;
    let rows: Vec<ArchivedRow> = (1..=n).map(|s| ArchivedRow::from_record(record(s, 1_764_000_000_000 + s))).collect();
    assert_eq!(rows[1].device_time_ms, Some(1_764_000_000_002), "device time from the JSON ts");
    columns::write(&std::fs::File::create(&path).unwrap(), rows.clone()).unwrap();
    let mut back = Vec::new();
    let stats = columns::read(&path, &RowFilter::default(), &mut back).unwrap();
    assert_eq!(back, rows);
    assert_eq!((stats.groups_read, stats.groups_skipped), (3, 0));
    // The last row group only: the first two are skipped by their statistics.
    let from = 1_764_000_000_000 + ROW_GROUP_ROWS as i64 * 2 + 1;
    let mut tail = Vec::new();
    let stats = columns::read(&path, &RowFilter { from_ms: Some(from), ..Default::default() }, &mut tail).unwrap();
    assert_eq!((stats.groups_read, stats.groups_skipped), (1, 2));
    assert_eq!(tail.len(), 10);
    let topic = crate::routing::table::Subscription::new("devices/d1/#", 0, false, false, None).unwrap();
    let mut d1 = Vec::new();
    columns::read(&path, &RowFilter { topic: Some(topic), device: Some("d1".into()), ..Default::default() }, &mut d1).unwrap();
    assert_eq!(d1.len() as u64, (1..=n).filter(|s| s % 3 == 1).count() as u64);
}

fn class(min: u32, max: u32, quota: u64) -> ClassConfig {
    ClassConfig {
        name: "c".into(),
        topics: vec!["#".into()],
        min_keep_days: min,
        max_keep_days: max,
        legal_hold: false,
        quota_bytes: quota,
        on_full: OnFull::RefuseIngest,
    }
}

fn files(ages_days: &[i64], now: i64) -> BTreeMap<String, FileEntry> {
    ages_days
        .iter()
        .enumerate()
        .map(|(i, age)| {
            let path = format!("c/{i}.parquet");
            let last_ms = now - age * DAY_MS;
            let f = FileEntry {
                path: path.clone(),
                class: "c".into(),
                sha256: String::new(),
                bytes: 100,
                rows: 1,
                first_ms: last_ms,
                last_ms,
                through_seq: 1,
            };
            (path, f)
        })
        .collect()
}

#[test]
fn retention_deletes_past_max_keeps_the_window_and_holds_and_frees_quota_outside_the_window() {
    let now = 1_800_000_000_000 + 100 * DAY_MS;
    let live = files(&[40, 20, 5, 1], now);
    let none = HashSet::new();
    let (d, usage) = retention::plan(&class(10, 30, 0), &live, false, &none, now);
    assert_eq!(d.iter().map(|d| (d.file.path.as_str(), d.reason)).collect::<Vec<_>>(), vec![("c/0.parquet", ArchiveDeletion::MaxKeep)]);
    assert_eq!((usage.files, usage.bytes, usage.full), (3, 300, false));
    // Held: nothing.
    assert!(retention::plan(&class(10, 30, 0), &live, true, &none, now).0.is_empty());
    // Not uploaded yet: kept.
    let pinned: HashSet<String> = ["c/0.parquet".to_string()].into();
    assert!(retention::plan(&class(10, 30, 0), &live, false, &pinned, now).0.is_empty());
    // Quota 250: files outside the 10-day window go, oldest first, until under it; the window
    // stays even over the quota (full).
    let (d, usage) = retention::plan(&class(10, 0, 250), &live, false, &none, now);
    assert_eq!(
        d.iter().map(|d| (d.file.path.as_str(), d.reason)).collect::<Vec<_>>(),
        vec![("c/0.parquet", ArchiveDeletion::Quota), ("c/1.parquet", ArchiveDeletion::Quota)]
    );
    assert_eq!((usage.bytes, usage.full), (200, false));
    let (d, usage) = retention::plan(&class(30, 0, 150), &live, false, &none, now);
    assert_eq!(d.len(), 1, "only the 40-day file is outside a 30-day window");
    assert_eq!((usage.bytes, usage.full), (300, true));
}

#[test]
fn recovery_rolls_a_recorded_tmp_forward_removes_unrecorded_ones_and_reports_a_lost_file() {
    use super::files::{recover, tmp_of};
    use super::manifest::{self, Manifest, Op};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("c/2026-01-01")).unwrap();
    let entry = |name: &str, body: &[u8]| FileEntry {
        path: format!("c/2026-01-01/{name}"),
        class: "c".into(),
        sha256: crate::sha256::hex(body),
        bytes: body.len() as u64,
        rows: 1,
        first_ms: 0,
        last_ms: 0,
        through_seq: 9,
    };
    // Recorded with its .tmp (crash before the rename); recorded and gone; not recorded.
    std::fs::write(tmp_of(&d.join("c/2026-01-01/00-0.parquet")), b"rolled").unwrap();
    std::fs::write(tmp_of(&d.join("c/2026-01-01/00-2.parquet")), b"unrecorded").unwrap();
    let lock = manifest::lock(d).unwrap();
    manifest::append(d, &lock, vec![Op::Add(entry("00-0.parquet", b"rolled")), Op::Add(entry("00-1.parquet", b"gone"))], 1).unwrap();
    let r = recover(d, &Manifest::read(d).unwrap()).unwrap();
    assert_eq!(std::fs::read(d.join("c/2026-01-01/00-0.parquet")).unwrap(), b"rolled");
    assert!(!tmp_of(&d.join("c/2026-01-01/00-2.parquet")).exists(), "an unrecorded .tmp is removed");
    assert_eq!(r.lost.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(), vec!["c/2026-01-01/00-1.parquet"]);
    assert_eq!(r.done.len(), 2, "{:?}", r.done);
}

#[test]
fn files_of_an_unset_clock_are_never_aged_and_an_unreadable_hold_still_holds() {
    let now = 1_800_000_000_000i64; // 2027
    let old_clock = files(&[0], 400 * DAY_MS); // newest message in 1971
    let (d, _) = retention::plan(&class(1, 2, 0), &old_clock, false, &HashSet::new(), now);
    assert!(d.is_empty(), "a 1971 timestamp is an unset clock, not an old file");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("holds/c")).unwrap(); // a folder: reading it fails
    assert!(retention::hold_of(dir.path(), &class(1, 2, 0)).is_some());
}
