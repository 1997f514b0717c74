//! Routing load generator for `bench/routing.sh`: publishers and subscribers on one broker,
//! publish-to-delivery latency measured by the subscribers.
//!
//! Modes (`--mode`):
//! - `fan-in`: `--clients` publishers, each on its own topic, one subscriber of all of them;
//! - `fan-out`: one publisher, `--clients` subscribers of its topic;
//! - `pairs`: `--clients` publisher/subscriber pairs, each on its own topic.
//!
//! Every publisher sends `--messages` messages at `--qos` 1 or 2 (subscriptions at the same
//! QoS; with `--persistent` the subscribers hold lasting sessions, clean session 0); each payload
//! starts with its send time (microseconds since the Unix epoch). With `--backlog` (implies
//! `--persistent`) the subscribers disconnect after their SUBACK and come back once every
//! publish was acknowledged: `msg_per_s` is then the drain of their queued messages, from the
//! reconnect to the last one. Without `--rate` a publisher
//! sends as fast as its PUBACKs allow (100 in flight); with `--rate R` the publishers together
//! send R messages a second on a fixed schedule (open loop) and each payload carries its
//! *scheduled* time, so a broker that falls behind shows it as latency. The run ends when every
//! subscriber got every message it should (or at `--timeout`); one JSON line on stdout:
//! `{"mode", "clients", "delivered", "elapsed_s", "msg_per_s" (deliveries per second),
//! "latency_p50_ms", "latency_p99_ms"}`.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, NetworkOptions, Packet, QoS};
use tokio::task::JoinSet;

const USAGE: &str = "usage: fanout --mode fan-in|fan-out|pairs [--addr HOST:PORT] [--clients N] [--messages N] \
[--payload BYTES] [--rate MSG_PER_S] [--qos 1|2] [--persistent] [--backlog] [--timeout SECS]\ndefaults: --addr 127.0.0.1:1883 --clients 8 --messages 2000 --payload 64 --qos 1 --timeout 120 (no --rate: as fast as PUBACKs come; no --persistent: clean sessions)";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    FanIn,
    FanOut,
    Pairs,
}

struct Args {
    host: String,
    port: u16,
    mode: Mode,
    clients: usize,
    messages: usize,
    payload: usize,
    /// Messages a second, all publishers together (open loop); `None`: as fast as acknowledged.
    rate: Option<f64>,
    /// QoS of the publishes and the subscriptions.
    qos: QoS,
    /// Subscribers in lasting sessions (clean session 0).
    persistent: bool,
    /// Subscribers away while the messages are published (their drain is measured).
    backlog: bool,
    timeout: Duration,
}

#[tokio::main]
async fn main() {
    let args = match parse(std::env::args().skip(1)) {
        Ok(a) => Arc::new(a),
        Err(e) => {
            eprintln!("fanout: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    match tokio::time::timeout(args.timeout, run(args.clone())).await {
        Ok(Ok(line)) => println!("{line}"),
        Ok(Err(e)) => {
            eprintln!("fanout: {e}");
            std::process::exit(1);
        }
        Err(_) => {
            eprintln!("fanout: timed out after {:?}", args.timeout);
            std::process::exit(1);
        }
    }
}

fn parse(mut raw: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut a = Args {
        host: "127.0.0.1".into(),
        port: 1883,
        mode: Mode::FanIn,
        clients: 8,
        messages: 2000,
        payload: 64,
        rate: None,
        qos: QoS::AtLeastOnce,
        persistent: false,
        backlog: false,
        timeout: Duration::from_secs(120),
    };
    let mut mode = None;
    while let Some(flag) = raw.next() {
        if flag == "--persistent" || flag == "--backlog" {
            a.persistent = true;
            a.backlog |= flag == "--backlog";
            continue;
        }
        let value = raw.next().ok_or_else(|| format!("{flag}: missing value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value:?}: {e}");
        match flag.as_str() {
            "--addr" => {
                let (h, p) = value.rsplit_once(':').ok_or("--addr: HOST:PORT")?;
                a.host = h.to_string();
                a.port = p.parse().map_err(|e| bad(&e))?;
            }
            "--mode" => {
                mode = Some(match value.as_str() {
                    "fan-in" => Mode::FanIn,
                    "fan-out" => Mode::FanOut,
                    "pairs" => Mode::Pairs,
                    _ => return Err(bad(&"fan-in, fan-out or pairs")),
                })
            }
            "--clients" => a.clients = value.parse().map_err(|e| bad(&e))?,
            "--messages" => a.messages = value.parse().map_err(|e| bad(&e))?,
            "--payload" => a.payload = value.parse::<usize>().map_err(|e| bad(&e))?.max(8),
            "--rate" => a.rate = Some(value.parse::<f64>().map_err(|e| bad(&e))?).filter(|r| *r > 0.0),
            "--qos" => {
                a.qos = match value.as_str() {
                    "1" => QoS::AtLeastOnce,
                    "2" => QoS::ExactlyOnce,
                    _ => return Err(bad(&"1 or 2")),
                }
            }
            "--timeout" => a.timeout = Duration::from_secs(value.parse().map_err(|e| bad(&e))?),
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    a.mode = mode.ok_or("--mode is required")?;
    if a.clients == 0 || a.messages == 0 {
        return Err("--clients and --messages must be > 0".into());
    }
    Ok(a)
}

/// (publisher topics, subscriber filters and how many messages each subscriber expects)
fn plan(a: &Args) -> (Vec<String>, Vec<(String, usize)>) {
    let topic = |i: usize| format!("bench/route/{i}");
    match a.mode {
        Mode::FanIn => ((0..a.clients).map(topic).collect(), vec![("bench/route/+".into(), a.clients * a.messages)]),
        Mode::FanOut => (vec![topic(0)], (0..a.clients).map(|_| (topic(0), a.messages)).collect()),
        Mode::Pairs => ((0..a.clients).map(topic).collect(), (0..a.clients).map(|i| (topic(i), a.messages)).collect()),
    }
}

async fn run(a: Arc<Args>) -> Result<String, String> {
    let (topics, filters) = plan(&a);
    let mut subscribers = JoinSet::new();
    let mut away = Vec::new();
    for (i, (filter, expect)) in filters.into_iter().enumerate() {
        let id = format!("fanout-sub-{}-{i}", std::process::id());
        let (client, mut events) = connect(&a, &id, !a.persistent).await?;
        client.subscribe(filter.clone(), a.qos).await.map_err(|e| e.to_string())?;
        loop {
            match events.poll().await.map_err(|e| format!("subscriber {i}: {e}"))? {
                Event::Incoming(Packet::SubAck(_)) => break,
                _ => continue,
            }
        }
        if a.backlog {
            // Gone until the publishers are done; the session keeps the subscription.
            client.disconnect().await.map_err(|e| e.to_string())?;
            while let Ok(event) = events.poll().await {
                if let Event::Outgoing(rumqttc::Outgoing::Disconnect) = event {
                    break;
                }
            }
            away.push((id, expect));
        } else {
            subscribers.spawn(receive(client, events, expect));
        }
    }
    // Each publisher's interval in open loop (connected first, so all start together).
    let every = a.rate.map(|r| Duration::from_secs_f64(topics.len() as f64 / r));
    let mut connected = Vec::new();
    for (i, topic) in topics.into_iter().enumerate() {
        connected.push((connect(&a, &format!("fanout-pub-{}-{i}", std::process::id()), true).await?, topic));
    }
    let mut start = Instant::now();
    let mut publishers = JoinSet::new();
    for ((client, events), topic) in connected {
        publishers.spawn(send(client, events, topic, a.messages, a.payload, a.qos, every));
    }
    while let Some(done) = publishers.join_next().await {
        done.map_err(|e| e.to_string())??;
    }
    if a.backlog {
        start = Instant::now();
        for (id, expect) in away {
            let (client, events) = connect(&a, &id, false).await?;
            subscribers.spawn(receive(client, events, expect));
        }
    }
    let mut latencies = Vec::new();
    while let Some(done) = subscribers.join_next().await {
        latencies.extend(done.map_err(|e| e.to_string())??);
    }
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort_by(|x, y| x.total_cmp(y));
    let pct =
        |p: f64| latencies.get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1))).copied().unwrap_or(0.0);
    Ok(format!(
        "{{\"mode\":\"{:?}\",\"qos\":{},\"persistent\":{},\"backlog\":{},\"clients\":{},\"rate\":{:.0},\"delivered\":{},\"elapsed_s\":{elapsed:.3},\"msg_per_s\":{:.1},\"latency_p50_ms\":{:.3},\"latency_p99_ms\":{:.3}}}",
        a.mode,
        a.qos as u8,
        a.persistent,
        a.backlog,
        a.clients,
        a.rate.unwrap_or(0.0),
        latencies.len(),
        latencies.len() as f64 / elapsed,
        pct(0.50),
        pct(0.99)
    ))
}

async fn connect(a: &Args, id: &str, clean: bool) -> Result<(AsyncClient, EventLoop), String> {
    let mut options = MqttOptions::new(id, a.host.clone(), a.port);
    options.set_clean_session(clean).set_keep_alive(Duration::from_secs(30)).set_inflight(100).set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut events) = AsyncClient::new(options, 1000);
    let mut network = NetworkOptions::new();
    network.set_tcp_nodelay(true);
    events.set_network_options(network);
    loop {
        match events.poll().await.map_err(|e| format!("{id}: connect: {e}"))? {
            Event::Incoming(Packet::ConnAck(_)) => return Ok((client, events)),
            _ => continue,
        }
    }
}

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// Publish `n` messages at `qos`, each starting with its send time (with `every`: one per
/// interval on a fixed schedule, stamped with its scheduled time); returns once all are acked
/// (QoS 2: completed).
async fn send(
    client: AsyncClient,
    mut events: EventLoop,
    topic: String,
    n: usize,
    size: usize,
    qos: QoS,
    every: Option<Duration>,
) -> Result<(), String> {
    let publisher = tokio::spawn(async move {
        let (t0, wall0) = (tokio::time::Instant::now(), now_us());
        for k in 0..n {
            let stamp = match every {
                Some(every) => {
                    let due = every.mul_f64(k as f64);
                    tokio::time::sleep_until(t0 + due).await;
                    wall0 + due.as_micros() as u64
                }
                None => now_us(),
            };
            let mut payload = stamp.to_le_bytes().to_vec();
            payload.resize(size, b'x');
            client.publish(topic.clone(), qos, false, payload).await.map_err(|e| e.to_string())?;
        }
        Ok::<_, String>(client)
    });
    let mut acked = 0;
    while acked < n {
        if let Event::Incoming(Packet::PubAck(_) | Packet::PubComp(_)) = events.poll().await.map_err(|e| format!("publisher: {e}"))? {
            acked += 1;
        }
    }
    let client = publisher.await.map_err(|e| e.to_string())??;
    let _ = client.disconnect().await;
    Ok(())
}

/// Receive `expect` messages; their latencies in ms.
async fn receive(client: AsyncClient, mut events: EventLoop, expect: usize) -> Result<Vec<f64>, String> {
    let mut latencies = Vec::with_capacity(expect);
    while latencies.len() < expect {
        if let Event::Incoming(Packet::Publish(p)) = events.poll().await.map_err(|e| format!("subscriber: {e}"))? {
            let sent = p.payload.get(..8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes).unwrap_or(0);
            latencies.push(now_us().saturating_sub(sent) as f64 / 1000.0);
        }
    }
    let _ = client.disconnect().await;
    Ok(latencies)
}
