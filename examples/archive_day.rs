//! Writes one day of archive files the way the gateway does (24 hourly files of class `day`,
//! 2026-01-01, in a manifest), for `bench/archive.sh`'s query timing: how long `edge-gateway
//! archive query` takes for one hour out of the day.
//!
//! usage: archive_day --dir DIR [--per-hour N]   (default 100000 messages per hour)

use std::path::PathBuf;

use edge_gateway::archive::columns::{self, ArchivedRow};
use edge_gateway::archive::manifest::{self, FileEntry, Op};

const DAY_MS: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut dir, mut per_hour) = (None, 100_000u64);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--dir" => dir = Some(PathBuf::from(value)),
            "--per-hour" => per_hour = value.parse().expect("--per-hour N"),
            _ => panic!("unknown flag {flag}"),
        }
    }
    let dir = dir.expect("--dir DIR");
    let folder = dir.join("day/2026-01-01");
    std::fs::create_dir_all(&folder).expect("create the archive folder");
    let lock = manifest::lock(&dir).expect("manifest lock");
    let mut seq = 0u64;
    for hour in 0..24i64 {
        let start = DAY_MS + hour * 3_600_000;
        let rows: Vec<ArchivedRow> = (0..per_hour)
            .map(|i| {
                seq += 1;
                let at = start + (i as i64 * 3_600_000) / per_hour as i64;
                let device = format!("meter-{:04}", seq % 500);
                let payload = format!(
                    r#"{{"device":"{device}","ts":{at},"temp":{:.2},"hum":{:.1},"battery":3.71,"rssi":-{},"seq":{seq},"fw":"2.4.1","site":"plant-a/line-3","status":"ok"}}"#,
                    18.0 + (seq % 700) as f64 / 100.0,
                    40.0 + (seq % 200) as f64 / 10.0,
                    50 + seq % 40
                );
                ArchivedRow {
                    seq,
                    key: format!("gw-bench:1:{seq}"),
                    device: device.clone(),
                    topic: format!("devices/{device}/telemetry"),
                    qos: 1,
                    received_at_ms: at,
                    device_time_ms: Some(at),
                    payload: payload.into_bytes().into(),
                    content_type: None,
                    user_properties: None,
                    trace_id: None,
                    schema_subject: None,
                    schema_version: None,
                    schema_valid: None,
                }
            })
            .collect();
        let name = format!("day/2026-01-01/{hour:02}-0.parquet");
        let path = dir.join(&name);
        let file = std::fs::File::create(&path).expect("create");
        let last_ms = rows.last().map_or(start, |r| r.received_at_ms);
        columns::write(&file, rows).expect("write parquet");
        file.sync_all().expect("fsync");
        let entry = FileEntry {
            path: name,
            class: "day".into(),
            sha256: edge_gateway::sha256::file(&path).expect("hash"),
            bytes: file.metadata().expect("size").len(),
            rows: per_hour,
            first_ms: start,
            last_ms,
            through_seq: seq + 1,
        };
        manifest::append(&dir, &lock, vec![Op::Add(entry)], DAY_MS as u64).expect("manifest");
    }
    println!("{{\"files\":24,\"messages\":{seq}}}");
}
