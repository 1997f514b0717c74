//! The disk's own commit latency, for `bench/ingest.sh --open-loop`: what a durable PUBACK
//! cannot be faster than.
//!
//! Overwrites one 4 KB block of a 64 KB file in `--dir` and `fdatasync`s it, every
//! `--interval-ms` for `--secs`, and prints one JSON line with the `fdatasync` times:
//!
//! ```text
//! {"fsyncs":9000,"p50_ms":0.210,"p99_ms":1.110,"p999_ms":16.240,"max_ms":1138.900,"over_10ms":21}
//! ```
//!
//! The file's blocks are written and synced once before the clock starts, so every timed
//! `fdatasync` flushes data only (no block allocation, no journal commit of its own): the
//! cheapest commit the file system offers. The file is removed at the end. Exit code 0, 1 on an
//! I/O error, 2 for bad usage.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const USAGE: &str = "usage: diskprobe --dir DIR [--secs N] [--interval-ms N]
defaults: --secs 10 --interval-ms 1";

const BLOCK: usize = 4096;
const BLOCKS: u64 = 16;

fn main() -> ExitCode {
    let (dir, secs, interval) = match parse(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("diskprobe: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let path = std::path::Path::new(&dir).join(format!("diskprobe-{}.tmp", std::process::id()));
    let result = probe(&path, Duration::from_secs(secs), Duration::from_millis(interval));
    let _ = std::fs::remove_file(&path);
    match result {
        Ok(mut times) => {
            println!("{}", report(&mut times));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("diskprobe: {}: {e}", path.display());
            ExitCode::FAILURE
        }
    }
}

/// `fdatasync` times in ms, one per overwrite.
fn probe(path: &std::path::Path, length: Duration, interval: Duration) -> std::io::Result<Vec<f64>> {
    let file = OpenOptions::new().create(true).truncate(true).read(true).write(true).open(path)?;
    file.write_all_at(&vec![0u8; BLOCK * BLOCKS as usize], 0)?;
    file.sync_all()?;
    let block = vec![0x5au8; BLOCK];
    let (started, mut times) = (Instant::now(), Vec::new());
    while started.elapsed() < length {
        file.write_all_at(&block, (times.len() as u64 % BLOCKS) * BLOCK as u64)?;
        let t = Instant::now();
        file.sync_data()?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        std::thread::sleep(interval);
    }
    Ok(times)
}

/// The JSON line: nearest-rank percentiles, as loadgen reports them.
fn report(times: &mut [f64]) -> String {
    times.sort_by(f64::total_cmp);
    let rank = |q: f64| times.get(((q * times.len() as f64).ceil() as usize).saturating_sub(1)).copied().unwrap_or(0.0);
    format!(
        "{{\"fsyncs\":{},\"p50_ms\":{:.3},\"p99_ms\":{:.3},\"p999_ms\":{:.3},\"max_ms\":{:.3},\"over_10ms\":{}}}",
        times.len(),
        rank(0.5),
        rank(0.99),
        rank(0.999),
        times.last().copied().unwrap_or(0.0),
        times.iter().filter(|t| **t > 10.0).count()
    )
}

/// `(dir, secs, interval_ms)`; `Ok(None)` for `--help`.
fn parse(mut raw: impl Iterator<Item = String>) -> Result<Option<(String, u64, u64)>, String> {
    let (mut dir, mut secs, mut interval) = (None, 10, 1);
    while let Some(flag) = raw.next() {
        if flag == "-h" || flag == "--help" {
            return Ok(None);
        }
        let value = raw.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || value.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| format!("{flag}: not a positive integer: {value}"));
        match flag.as_str() {
            "--dir" => dir = Some(value.clone()),
            "--secs" => secs = number()?,
            "--interval-ms" => interval = number()?,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(Some((dir.ok_or("--dir is required")?, secs, interval)))
}
