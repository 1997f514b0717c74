//! MQTT QoS1 load generator for `bench/ingest.sh`.
//!
//! Connects `--clients` MQTT 3.1.1 clients (clean session, unique client ids), and once all are
//! connected, each publishes `--messages` QoS1 messages of `--payload` bytes to
//! `<topic-prefix>/<client index>`, keeping at most `--inflight` unacknowledged. It times each
//! message from the moment it is written to the socket (`Outgoing::Publish(pkid)`) to its
//! PUBACK (`Incoming::PubAck(pkid)`), and prints one JSON line:
//!
//! ```text
//! {"clients":8,"messages":16000,"elapsed_s":1.234,"msg_per_s":12966.0,"puback_p50_ms":0.512,"puback_p99_ms":3.100,"client_cpu_s":0.870}
//! ```
//!
//! `messages` is the total over all clients; `elapsed_s` runs from "all connected" to "last
//! PUBACK". Exit code 0 only if every PUBACK arrived before `--timeout`; 1 if not or if a
//! connection failed (no reconnect: a lost clean session would lose messages); 2 for bad usage.
//!
//! `--rate R` runs open loop: the clients together send R messages a second on a fixed schedule
//! (each client every `clients / R` seconds, the clients evenly out of phase), whether or not the
//! server keeps up, and each latency runs from the message's *scheduled* send time to its PUBACK,
//! so time spent waiting for a free in-flight slot or in a queue is counted, not hidden
//! (coordinated omission). The report then also has `"rate"`; `puback_p999_ms` is always there.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, NetworkOptions, Outgoing, Packet, QoS};
use tokio::task::JoinSet;

const USAGE: &str = "usage: loadgen [--addr HOST:PORT] [--clients N] [--messages N_PER_CLIENT] \
[--payload BYTES] [--inflight N] [--topic-prefix P] [--timeout SECS] [--rate MSG_PER_S] [--json]
defaults: --addr 127.0.0.1:1883 --clients 8 --messages 2000 --payload 64 --inflight 100 \
--topic-prefix bench --timeout 120, closed loop (no --rate)
--json: each payload is a ~200-byte JSON telemetry reading (valid under examples/schemas) instead of --payload bytes";

/// Validated command line.
struct Args {
    /// Broker host (name or IP).
    host: String,
    /// Broker port.
    port: u16,
    /// Concurrent MQTT connections.
    clients: usize,
    /// Messages published by each client.
    messages: usize,
    /// Payload size in bytes.
    payload: usize,
    /// Most unacknowledged publishes per client.
    inflight: u16,
    /// Topics are `<topic_prefix>/<client index>`.
    topic_prefix: String,
    /// Bound on the whole run, connects included.
    timeout: Duration,
    /// Open loop: messages per second over all clients; `None`: closed loop (as fast as acks allow).
    rate: Option<f64>,
    /// Payloads are JSON telemetry readings (for the schema-check benchmark).
    json: bool,
}

/// PUBACKs received so far by all clients, for the timeout message.
static ACKED: AtomicU64 = AtomicU64::new(0);

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Some(args)) => Arc::new(args),
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("loadgen: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let total = args.clients * args.messages;
    match tokio::time::timeout(args.timeout, run(args.clone())).await {
        Ok(Ok(report)) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            eprintln!("loadgen: {e}");
            ExitCode::FAILURE
        }
        Err(_) => {
            let acked = ACKED.load(Ordering::Relaxed);
            eprintln!("loadgen: timed out after {:?}: {acked} of {total} PUBACKs arrived", args.timeout);
            ExitCode::FAILURE
        }
    }
}

/// Parses `--flag value` pairs; `Ok(None)` means `--help`.
fn parse_args(mut raw: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut args = Args {
        host: "127.0.0.1".into(),
        port: 1883,
        clients: 8,
        messages: 2000,
        payload: 64,
        inflight: 100,
        topic_prefix: "bench".into(),
        timeout: Duration::from_secs(120),
        rate: None,
        json: false,
    };
    while let Some(flag) = raw.next() {
        if flag == "--help" || flag == "-h" {
            return Ok(None);
        }
        if flag == "--json" {
            args.json = true;
            continue;
        }
        let value = raw.next().ok_or_else(|| format!("{flag}: missing value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value:?}: {e}");
        match flag.as_str() {
            "--addr" => (args.host, args.port) = parse_addr(&value).map_err(|e| bad(&e))?,
            "--clients" => args.clients = value.parse().map_err(|e| bad(&e))?,
            "--messages" => args.messages = value.parse().map_err(|e| bad(&e))?,
            "--payload" => args.payload = value.parse().map_err(|e| bad(&e))?,
            "--inflight" => args.inflight = value.parse().map_err(|e| bad(&e))?,
            "--topic-prefix" => args.topic_prefix = value,
            "--timeout" => args.timeout = Duration::from_secs(value.parse().map_err(|e| bad(&e))?),
            "--rate" => args.rate = Some(value.parse::<f64>().map_err(|e| bad(&e))?).filter(|r| *r > 0.0),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if args.clients == 0 || args.messages == 0 || args.inflight == 0 {
        return Err("--clients, --messages and --inflight must be > 0".into());
    }
    Ok(Some(args))
}

fn parse_addr(value: &str) -> Result<(String, u16), String> {
    let (host, port) = value.rsplit_once(':').ok_or("expected HOST:PORT")?;
    let port = port.parse().map_err(|e| format!("port: {e}"))?;
    Ok((host.trim_matches(['[', ']']).to_string(), port))
}

/// Connects every client, then runs them all and builds the report line.
async fn run(args: Arc<Args>) -> Result<String, String> {
    let mut connecting = JoinSet::new();
    for index in 0..args.clients {
        connecting.spawn(connect(args.clone(), index));
    }
    let mut connected = Vec::with_capacity(args.clients);
    while let Some(joined) = connecting.join_next().await {
        connected.push(joined.map_err(|e| format!("connect task: {e}"))??);
    }
    let start = Instant::now();
    let mut running = JoinSet::new();
    for (index, client, eventloop) in connected {
        running.spawn(run_client(args.clone(), index, client, eventloop, start));
    }
    let progress = progress((args.clients * args.messages) as u64);
    let mut latencies_ms = Vec::with_capacity(args.clients * args.messages);
    while let Some(joined) = running.join_next().await {
        latencies_ms.extend(joined.map_err(|e| format!("client task: {e}"))??);
    }
    progress.abort();
    let elapsed = start.elapsed().as_secs_f64();
    Ok(report(&args, elapsed, latencies_ms))
}

/// A progress bar of the PUBACKs (on stderr, refreshed 10 times a second) when stdout is a
/// terminal; a task that does nothing otherwise.
fn progress(total: u64) -> tokio::task::JoinHandle<()> {
    if !std::io::stdout().is_terminal() {
        return tokio::spawn(async {});
    }
    let bar = indicatif::ProgressBar::new(total);
    let style = indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} PUBACKs, {per_sec}, eta {eta}")
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    tokio::spawn(async move {
        let _clear = ClearOnDrop(bar.clone());
        loop {
            bar.set_position(ACKED.load(Ordering::Relaxed));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// Removes the bar when the progress task ends (aborted when the run is over).
struct ClearOnDrop(indicatif::ProgressBar);

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

/// Opens one MQTT 3.1.1 clean session and waits for its CONNACK.
async fn connect(args: Arc<Args>, index: usize) -> Result<(usize, AsyncClient, EventLoop), String> {
    let id = format!("loadgen-{}-{index}", std::process::id());
    let mut options = MqttOptions::new(id, args.host.clone(), args.port);
    let packet_size = (args.payload + args.topic_prefix.len() + 64).max(10 * 1024);
    options
        .set_clean_session(true)
        .set_keep_alive(Duration::from_secs(30))
        .set_inflight(args.inflight)
        .set_max_packet_size(packet_size, packet_size);
    let (client, mut eventloop) = AsyncClient::new(options, usize::from(args.inflight));
    let mut network = NetworkOptions::new();
    network.set_tcp_nodelay(true);
    network.set_connection_timeout(10);
    eventloop.set_network_options(network);
    match eventloop.poll().await {
        Ok(Event::Incoming(Packet::ConnAck(_))) => Ok((index, client, eventloop)),
        Ok(other) => Err(format!("client {index}: expected CONNACK, got {other:?}")),
        Err(e) => Err(format!("client {index}: connect to {}:{}: {e}", args.host, args.port)),
    }
}

/// Publishes this client's messages and returns each one's PUBACK latency in milliseconds.
async fn run_client(
    args: Arc<Args>,
    index: usize,
    client: AsyncClient,
    mut eventloop: EventLoop,
    start: Instant,
) -> Result<Vec<f64>, String> {
    let topic = format!("{}/{index}", args.topic_prefix);
    // Open loop: this client's send times, in order; the event loop takes them as the publishes
    // go out (rumqttc sends them in the order they were queued).
    let schedule = Arc::new(std::sync::Mutex::new(std::collections::VecDeque::new()));
    let plan = args.rate.map(|rate| {
        let every = Duration::from_secs_f64(args.clients as f64 / rate);
        (start + Duration::from_secs_f64(index as f64 / rate), every)
    });
    let size = if args.json { None } else { Some(args.payload) };
    let publisher = tokio::spawn(publish_all(client.clone(), topic, args.messages, size, plan, schedule.clone()));
    // Send time per packet id; rumqttc hands out ids 1..=inflight.
    let mut sent: Vec<Option<Instant>> = vec![None; usize::from(args.inflight) + 1];
    let mut latencies = Vec::with_capacity(args.messages);
    while latencies.len() < args.messages {
        let event =
            eventloop.poll().await.map_err(|e| format!("client {index}: connection lost after {} PUBACKs: {e}", latencies.len()))?;
        match event {
            Event::Outgoing(Outgoing::Publish(pkid)) => {
                let scheduled = plan.and_then(|_| schedule.lock().unwrap_or_else(|e| e.into_inner()).pop_front());
                *slot(&mut sent, pkid, index)? = Some(scheduled.unwrap_or_else(Instant::now));
            }
            Event::Incoming(Packet::PubAck(ack)) => {
                let at = slot(&mut sent, ack.pkid, index)?.take();
                let at = at.ok_or_else(|| format!("client {index}: PUBACK for unused id {}", ack.pkid))?;
                latencies.push(at.elapsed().as_secs_f64() * 1e3);
                ACKED.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }
    publisher.await.map_err(|e| format!("client {index}: publisher: {e}"))??;
    disconnect(&client, &mut eventloop).await;
    Ok(latencies)
}

fn slot(sent: &mut [Option<Instant>], pkid: u16, index: usize) -> Result<&mut Option<Instant>, String> {
    sent.get_mut(usize::from(pkid)).ok_or_else(|| format!("client {index}: packet id {pkid} beyond --inflight"))
}

/// Queues `count` QoS1 publishes; the event loop's inflight window applies back-pressure. With a
/// `plan` (first send time, interval) each publish waits for its scheduled time, which goes into
/// `schedule` for the latency; a publish that is late goes at once.
async fn publish_all(
    client: AsyncClient,
    topic: String,
    count: usize,
    size: Option<usize>,
    plan: Option<(Instant, Duration)>,
    schedule: Arc<std::sync::Mutex<std::collections::VecDeque<Instant>>>,
) -> Result<(), String> {
    for seq in 0..count {
        if let Some((first, every)) = plan {
            let at = first + every * seq as u32;
            tokio::time::sleep_until(at.into()).await;
            schedule.lock().unwrap_or_else(|e| e.into_inner()).push_back(at);
        }
        let body = match size {
            Some(size) => payload(seq, size),
            None => reading(seq),
        };
        client.publish(topic.clone(), QoS::AtLeastOnce, false, body).await.map_err(|e| format!("publish to {topic}: {e}"))?;
    }
    Ok(())
}

/// A printable payload of exactly `size` bytes that starts with the sequence number.
fn payload(seq: usize, size: usize) -> Vec<u8> {
    let mut bytes = format!("{seq:08} ").into_bytes();
    bytes.resize(size, b'x');
    bytes
}

/// A JSON telemetry reading of about 200 bytes, valid under examples/schemas/telemetry/2.json,
/// its values varying with `seq`.
fn reading(seq: usize) -> Vec<u8> {
    format!(
        concat!(
            r#"{{"device":"meter-{:04}","ts":{},"temp":{:.2},"hum":{:.1},"pressure":{:.2},"#,
            r#""battery":3.71,"rssi":-{},"seq":{},"fw":"2.4.1","site":"plant-a/line-3","status":"ok"}}"#
        ),
        seq % 10_000,
        1_764_600_000_000u64 + seq as u64,
        18.0 + (seq % 700) as f64 / 100.0,
        40.0 + (seq % 200) as f64 / 10.0,
        1000.0 + (seq % 3000) as f64 / 100.0,
        50 + seq % 40,
        seq
    )
    .into_bytes()
}

/// Sends DISCONNECT so the broker sees a clean close; bounded, errors ignored.
async fn disconnect(client: &AsyncClient, eventloop: &mut EventLoop) {
    if client.disconnect().await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Ok(event) = eventloop.poll().await {
            if event == Event::Outgoing(Outgoing::Disconnect) {
                break;
            }
        }
    })
    .await;
}

fn report(args: &Args, elapsed_s: f64, mut latencies_ms: Vec<f64>) -> String {
    latencies_ms.sort_by(f64::total_cmp);
    let total = latencies_ms.len();
    let cpu = cpu_seconds().map_or_else(|| "null".to_string(), |s| format!("{s:.3}"));
    let rate = args.rate.map_or_else(String::new, |r| format!(",\"rate\":{r:.1}"));
    format!(
        "{{\"clients\":{},\"messages\":{total},\"elapsed_s\":{elapsed_s:.3},\"msg_per_s\":{:.1},\
         \"puback_p50_ms\":{:.3},\"puback_p99_ms\":{:.3},\"puback_p999_ms\":{:.3},\"client_cpu_s\":{cpu}{rate}}}",
        args.clients,
        total as f64 / elapsed_s,
        percentile(&latencies_ms, 50.0),
        percentile(&latencies_ms, 99.0),
        percentile(&latencies_ms, 99.9),
    )
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// User + system CPU time of this process, from `/proc/self/stat` (fields 14 and 15, in ticks).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may contain spaces; the fields after it start at field 3.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / clock_ticks_per_second())
}

fn clock_ticks_per_second() -> f64 {
    let out = std::process::Command::new("getconf").arg("CLK_TCK").output();
    let parsed = out.ok().and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok());
    parsed.unwrap_or(100.0)
}
