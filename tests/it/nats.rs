//! The NATS JetStream sink against a real `nats-server -js` (Debian's package): every message
//! acknowledged to a device is in the stream exactly once after SIGKILLs of the gateway and a
//! restart of nats-server mid-stream (JetStream drops resends by `Nats-Msg-Id`), read back with a
//! JetStream consumer; credentials in the URL; mTLS with the gateway's client certificate.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use async_nats::jetstream;
use futures_util::StreamExt;

use crate::harness::{self, Extra, Process};
use crate::ingest::IngestServer;
use crate::trust::TestPki;
use crate::util::{self, Killed, free_port, poll_until, within};

/// A `nats-server` with JetStream, its store in a folder of the test (so a restart keeps it).
struct NatsServer {
    process: Option<Killed>,
    port: u16,
    args: Vec<String>,
}

impl NatsServer {
    async fn start(dir: &Path, extra: &[String]) -> NatsServer {
        let port = free_port();
        let store = dir.join("jetstream");
        let mut args: Vec<String> = ["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"].iter().map(|s| s.to_string()).collect();
        args.push(store.display().to_string());
        args.extend(extra.iter().cloned());
        let mut server = NatsServer { process: None, port, args };
        server.run().await;
        server
    }

    async fn run(&mut self) {
        let child = Command::new(nats_server()).args(&self.args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("nats-server");
        self.process = Some(Killed(child));
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        poll_until("nats-server listening", Duration::from_secs(15), || std::net::TcpStream::connect(addr).is_ok()).await;
    }

    /// SIGKILL, and start it again on the same port and store.
    async fn restart(&mut self) {
        self.process = None;
        self.run().await;
    }
}

/// Debian installs it in /usr/sbin, which is not on every PATH.
fn nats_server() -> PathBuf {
    let sbin = PathBuf::from("/usr/sbin/nats-server");
    if sbin.exists() { sbin } else { util::require("nats-server") }
}

fn nats_sink(url: &str, more: &str) -> String {
    format!(
        "\n[[sinks]]\nname = \"js\"\nkind = \"nats\"\nurl = \"{url}\"\nsubject_prefix = \"edge.site1\"\nstream = \"EDGE\"\ntimeout_ms = 2000\nbackoff_initial_ms = 20\nbackoff_max_ms = 300\n{more}\n"
    )
}

/// Every message of stream `EDGE`: (Nats-Msg-Id, Mqtt-Topic, subject, payload).
async fn read_stream(client: async_nats::Client, expected: usize) -> Vec<(String, String, String, String)> {
    let js = jetstream::new(client);
    let stream = js.get_stream("EDGE").await.expect("stream EDGE");
    let consumer =
        stream.create_consumer(jetstream::consumer::pull::Config { durable_name: None, ..Default::default() }).await.expect("consumer");
    let mut out = Vec::new();
    let mut messages = consumer.fetch().max_messages(expected + 100).expires(Duration::from_secs(2)).messages().await.expect("fetch");
    while let Some(Ok(m)) = messages.next().await {
        let header = |name: &str| m.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.to_string()).unwrap_or_default();
        out.push((header("Nats-Msg-Id"), header("Mqtt-Topic"), m.subject.to_string(), String::from_utf8_lossy(&m.payload).into_owned()));
    }
    out
}

async fn stream_count(client: &async_nats::Client) -> u64 {
    let js = jetstream::new(client.clone());
    match js.get_stream("EDGE").await {
        Ok(mut s) => s.info().await.map(|i| i.state.messages).unwrap_or(0),
        Err(_) => 0,
    }
}

async fn publish(port: u16, i: usize) -> bool {
    let port = port.to_string();
    let payload = i.to_string();
    let out =
        util::mosquitto_pub(&["-h", "127.0.0.1", "-p", &port, "-i", "dev-1", "-q", "1", "-t", "devices/dev-1/temp", "-m", &payload]).await;
    out.status.success()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_message_is_in_the_stream_once_after_gateway_kills_and_a_nats_restart() {
    let dir = util::temp_dir();
    let creds = ["--user", "edge", "--pass", "s3cret"].map(String::from);
    let mut nats = NatsServer::start(dir.path(), &creds).await;
    let ingest = IngestServer::start().await;
    let (mqtt, http) = (SocketAddr::from(([127, 0, 0, 1], free_port())), SocketAddr::from(([127, 0, 0, 1], free_port())));
    let extra = Extra { sink: nats_sink(&format!("nats://edge:s3cret@127.0.0.1:{}", nats.port), ""), ..Default::default() };
    let config = harness::config_text(&dir.path().join("data"), &ingest.url(), &mqtt.to_string(), &http.to_string(), &extra);
    let mut gw = Process::start(dir.path(), &config, mqtt, http).await;
    let mut acked = Vec::new();
    for i in 0..240 {
        if i == 80 || i == 160 {
            // SIGKILL while batches may be in flight: resent after the restart, same keys.
            gw.kill9();
            gw = Process::start(dir.path(), &config, mqtt, http).await;
        }
        if i == 120 {
            nats.restart().await;
        }
        if publish(mqtt.port(), i).await {
            acked.push(i.to_string());
        }
    }
    assert!(acked.len() >= 230, "publishes acknowledged: {}", acked.len());
    let client = async_nats::ConnectOptions::new()
        .user_and_password("edge".into(), "s3cret".into())
        .connect(format!("127.0.0.1:{}", nats.port))
        .await
        .expect("connect to nats-server");
    let all_in = within(Duration::from_secs(30), async || (stream_count(&client).await >= acked.len() as u64).then_some(())).await;
    if all_in.is_none() {
        let log = std::fs::read_to_string(&gw.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(10).collect();
        panic!("stream holds {} of {} messages; gateway log (newest first): {tail:#?}", stream_count(&client).await, acked.len());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stored = read_stream(client, acked.len()).await;
    let mut payloads: Vec<String> = stored.iter().map(|(_, _, _, p)| p.clone()).collect();
    payloads.sort_by_key(|p| p.parse::<usize>().unwrap_or(usize::MAX));
    let mut keys: Vec<&String> = stored.iter().map(|(k, ..)| k).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), stored.len(), "no key twice in the stream");
    for a in &acked {
        assert_eq!(payloads.iter().filter(|p| *p == a).count(), 1, "message {a} once in the stream: {payloads:?}");
    }
    let (_, topic, subject, _) = &stored[0];
    assert_eq!((topic.as_str(), subject.as_str()), ("devices/dev-1/temp", "edge.site1.devices.dev-1.temp"));
    assert_eq!(gw.terminate(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nats_sink_speaks_mtls_with_the_gateways_client_certificate() {
    let dir = util::temp_dir();
    let pki = TestPki::new(dir.path());
    let p = |name: &str| pki.path(name).display().to_string();
    let tls = ["--tls", "--tlscert", &p("server.pem"), "--tlskey", &p("server.key"), "--tlsverify", "--tlscacert", &p("ca.pem")]
        .map(String::from);
    let nats = NatsServer::start(dir.path(), &tls).await;
    let ingest = IngestServer::start().await;
    let more = format!("tls_ca = \"{}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"", p("ca.pem"), p("dev-a.pem"), p("dev-a.key"));
    let extra = Extra { sink: nats_sink(&format!("tls://localhost:{}", nats.port), &more), ..Default::default() };
    let gw = harness::start(&dir.path().join("data"), &ingest.url(), &extra).await;
    util::publish_one(gw.mqtt_addr, "over mTLS").await;
    harness::install_crypto();
    let client = async_nats::ConnectOptions::new()
        .add_root_certificates(pki.path("ca.pem"))
        .add_client_certificate(pki.path("dev-b.pem"), pki.path("dev-b.key"))
        .require_tls(true)
        .connect(format!("tls://localhost:{}", nats.port))
        .await
        .expect("the test's own mTLS connection");
    let arrived = within(Duration::from_secs(15), async || (stream_count(&client).await == 1).then_some(())).await;
    assert!(arrived.is_some(), "the message reached JetStream over mTLS");
    let stored = read_stream(client, 1).await;
    assert_eq!(stored[0].3, "over mTLS");
    gw.stop().await;
}
