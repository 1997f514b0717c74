//! Idle-connection load for `bench/idle.sh`: opens `--connections` MQTT 3.1.1 connections one
//! after another (CONNECT, wait for a CONNACK that accepts it), keeps every one open and idle,
//! and prints one JSON line:
//!
//! ```text
//! {"connections":10000,"elapsed_s":2.345,"per_s":4264.4,"connect_us_p50":212.3,"connect_us_p99":480.1}
//! ```
//!
//! (`connect_us_*`: the time from the TCP connect to the CONNACK of one connection, median and
//! 99th percentile: the median is the rate without the host's stalls, which move `per_s` by
//! 10-15 % from run to run on a shared machine.)
//!
//! then waits, still holding them, until a line arrives on stdin (or stdin closes), so the
//! caller can measure the server meanwhile. Exit code 1 if a connection is refused or fails.

use std::io::{BufRead, Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const USAGE: &str = "usage: idle [--addr HOST:PORT] [--connections N] [--keep-alive SECS] [--clean true|false]
defaults: --addr 127.0.0.1:1883 --connections 10000 --keep-alive 600 --clean true
--clean false: each connection asks for a persistent session (MQTT 3.1.1 clean session 0)";

fn main() -> ExitCode {
    let mut addr = "127.0.0.1:1883".to_string();
    let mut connections = 10_000usize;
    let mut keep_alive = 600u16;
    let mut clean = true;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next();
        let parsed = match (flag.as_str(), value) {
            ("--addr", Some(v)) => {
                addr = v;
                Ok(())
            }
            ("--connections", Some(v)) => v.parse().map(|n| connections = n).map_err(|e| e.to_string()),
            ("--keep-alive", Some(v)) => v.parse().map(|n| keep_alive = n).map_err(|e| e.to_string()),
            ("--clean", Some(v)) => v.parse().map(|b| clean = b).map_err(|e| e.to_string()),
            _ => Err(format!("unknown or incomplete option {flag}")),
        };
        if let Err(e) = parsed {
            eprintln!("idle: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    }
    let started = Instant::now();
    let mut open = Vec::with_capacity(connections);
    let mut took = Vec::with_capacity(connections);
    for i in 0..connections {
        let began = Instant::now();
        match connect(&addr, &format!("idle-{}-{i}", std::process::id()), keep_alive, clean) {
            Ok(stream) => {
                took.push(began.elapsed());
                open.push(stream);
            }
            Err(e) => {
                eprintln!("idle: connection {i}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    took.sort_unstable();
    let (p50, p99) = (micros(&took, 0.50), micros(&took, 0.99));
    println!(
        "{{\"connections\":{connections},\"elapsed_s\":{elapsed:.3},\"per_s\":{:.1},\"connect_us_p50\":{p50:.1},\"connect_us_p99\":{p99:.1}}}",
        connections as f64 / elapsed
    );
    let _ = std::io::stdout().flush();
    let _ = std::io::stdin().lock().read_line(&mut String::new());
    drop(open);
    ExitCode::SUCCESS
}

/// The `q` quantile of the sorted `took`, in microseconds (0 when there is none).
fn micros(took: &[Duration], q: f64) -> f64 {
    let Some(last) = took.len().checked_sub(1) else { return 0.0 };
    took[(last as f64 * q).round() as usize].as_secs_f64() * 1e6
}

/// One MQTT 3.1.1 CONNECT (no credentials) and its CONNACK.
fn connect(addr: &str, client_id: &str, keep_alive: u16, clean: bool) -> Result<TcpStream, String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect to {addr}: {e}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
    let id = client_id.as_bytes();
    // Variable header: protocol name "MQTT", level 4, flags (clean session or none), keep-alive.
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, if clean { 0x02 } else { 0 }];
    body.extend_from_slice(&keep_alive.to_be_bytes());
    body.extend_from_slice(&(id.len() as u16).to_be_bytes());
    body.extend_from_slice(id);
    let mut packet = vec![0x10];
    let mut len = body.len();
    loop {
        let byte = (len % 128) as u8;
        len /= 128;
        packet.push(if len > 0 { byte | 0x80 } else { byte });
        if len == 0 {
            break;
        }
    }
    packet.extend_from_slice(&body);
    stream.write_all(&packet).map_err(|e| format!("send CONNECT: {e}"))?;
    let mut connack = [0u8; 4];
    stream.read_exact(&mut connack).map_err(|e| format!("read CONNACK: {e}"))?;
    if connack[0] != 0x20 || connack[3] != 0 {
        return Err(format!("refused: CONNACK {connack:02x?}"));
    }
    Ok(stream)
}
