//! The gateway as a local broker, with real clients (mosquitto_sub / mosquitto_pub on both
//! protocol versions, paho-mqtt for MQTT 5 options): routing with wildcards, `$` topics and
//! overlapping filters (the same case run against a real mosquitto, which must give the same
//! output), retained messages across a SIGKILL, the ACL at SUBSCRIBE and at delivery, MQTT 5
//! subscription options, shared subscriptions and the downlink.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::harness::{self, Extra, Process, http_get, sample};
use crate::ingest::IngestServer;
use crate::util::OutputWithin;
use crate::util::{self, Killed, Mosquitto, eventually, free_port, poll_until, python, within};

const WAIT: Duration = Duration::from_secs(15);

/// An ACL letting every identity publish and subscribe anywhere.
pub(crate) const OPEN_ACL: &str = "[[allow]]\nidentities = [\"*\"]\npublish = [\"#\", \"$app/#\"]\nsubscribe = [\"#\", \"$app/#\"]\n";

pub(crate) fn extra(dir: &Path, acl: &str, broker: &str) -> Extra {
    let path = dir.join("acl.toml");
    std::fs::write(&path, acl).unwrap();
    Extra {
        auth: format!("plain = \"anonymous\"\nacl_file = \"{}\"", path.display()),
        tls: "check_interval_secs = 1\nreload_debounce_ms = 100".into(),
        broker: broker.into(),
        ..Default::default()
    }
}

/// A running `mosquitto_sub -d`: its output lines, collected by a thread.
pub(crate) struct Sub {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Sub {
    /// Subscribe at `port` with `args` (filters, -C, -V, ...); returns once the SUBACK came.
    pub(crate) async fn start(port: u16, args: &[&str]) -> Sub {
        // Line-buffered (coreutils' stdbuf): mosquitto_sub buffers a pipe, and the SUBACK line
        // must arrive before anything is published.
        let mut child = Command::new(util::require("stdbuf"))
            .arg("-oL")
            .arg(util::require("mosquitto_sub"))
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-d", "-W", "20"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto_sub");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (out, sink) = (child.stdout.take().unwrap(), lines.clone());
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let sub = Sub { child, lines };
        poll_until("mosquitto_sub got its SUBACK", WAIT, || sub.all().iter().any(|l| l.starts_with("Subscribed"))).await;
        sub
    }

    pub(crate) fn all(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// The messages (not mosquitto_sub's debug lines).
    pub(crate) fn messages(&self) -> Vec<String> {
        self.all().into_iter().filter(|l| !l.starts_with("Client ") && !l.starts_with("Subscribed")).collect()
    }

    /// The QoS each filter was granted (128: refused).
    fn granted(&self) -> String {
        self.all()
            .into_iter()
            .find_map(|l| l.split_once("): ").filter(|_| l.starts_with("Subscribed")).map(|(_, g)| g.to_string()))
            .unwrap_or_default()
    }

    /// Wait for mosquitto_sub to exit (after its -C count), bounded.
    async fn done(mut self) -> Vec<String> {
        let exited = within(WAIT, async || self.child.try_wait().ok().flatten()).await;
        assert!(exited.is_some(), "mosquitto_sub did not get its messages: {:?}", self.all());
        // The reader thread may still hold the last line for a moment.
        let n = self.messages().len();
        let _ = within(Duration::from_millis(500), async || (self.messages().len() > n).then_some(())).await;
        self.messages()
    }
}

impl Drop for Sub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) async fn publish(port: u16, args: &[&str]) -> String {
    let port = port.to_string();
    let mut all = vec!["-h", "127.0.0.1", "-p", &port, "-d"];
    all.extend(args);
    let out = util::mosquitto_pub(&all).await;
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The routing case, run as is against any broker at `port`: what one subscriber with three
/// overlapping filters receives of four publishes.
async fn routing_case(port: u16, version: &str, count: usize) -> Vec<String> {
    let count = count.to_string();
    let filters = ["-t", "sensors/#", "-t", "sensors/+/temp", "-t", "#"];
    let sub = Sub::start(port, &[&["-V", version, "-i", "s1", "-q", "1", "-v", "-C", &count][..], &filters].concat()).await;
    publish(port, &["-V", version, "-i", "p1", "-q", "1", "-t", "sensors/a/temp", "-m", "t1"]).await;
    publish(port, &["-V", version, "-i", "p1", "-q", "1", "-t", "$app/x", "-m", "not for #"]).await;
    publish(port, &["-V", version, "-i", "p1", "-q", "0", "-t", "other/x", "-m", "o1"]).await;
    publish(port, &["-V", version, "-i", "p1", "-q", "1", "-t", "end", "-m", "e"]).await;
    sub.done().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_matches_mosquitto_for_wildcards_dollar_topics_and_overlapping_filters() {
    let dir = util::temp_dir();
    let ingest = IngestServer::start().await;
    let gw = harness::start(&dir.path().join("data"), &ingest.url(), &extra(dir.path(), OPEN_ACL, "")).await;
    let mosquitto = Mosquitto::start(dir.path()).await;
    // Overlapping filters: 3.1.1 gets one copy; MQTT 5 one per matching subscription.
    let t1 = "sensors/a/temp t1";
    let v3: &[&str] = &[t1, "other/x o1", "end e"];
    let v5: &[&str] = &[t1, t1, t1, "other/x o1", "end e"];
    for (version, expected) in [("mqttv311", v3), ("mqttv5", v5)] {
        let ours = routing_case(gw.mqtt_addr.port(), version, expected.len()).await;
        let theirs = routing_case(mosquitto.port, version, expected.len()).await;
        assert_eq!(theirs, expected, "mosquitto, {version}");
        assert_eq!(ours, theirs, "the gateway routes as mosquitto does, {version}");
    }
    // Everything published was stored for the sinks too.
    poll_until("8 messages at the cloud", WAIT, || ingest.unique_keys() >= 8).await;

    // A filter the ACL refuses is refused in the SUBACK (v5 0x87, v3 0x80), the others granted.
    let port = gw.mqtt_addr.port();
    let reloaded = "gateway_reloads_total{target=\"acl\",result=\"ok\"}";
    let before = sample(&http_get(gw.http_addr, "/metrics").await.1, reloaded);
    std::fs::write(dir.path().join("acl.toml"), format!("{OPEN_ACL}\n[[deny]]\nidentities = [\"*\"]\nsubscribe = [\"secret/#\"]\n"))
        .unwrap();
    eventually("the ACL reloaded", WAIT, async || sample(&http_get(gw.http_addr, "/metrics").await.1, reloaded) > before).await;
    let sub = Sub::start(port, &["-V", "mqttv5", "-i", "s2", "-v", "-t", "secret/#", "-t", "open/#"]).await;
    assert_eq!(sub.granted(), "135, 0", "secret/# refused, open/# granted");
    let sub = Sub::start(port, &["-V", "mqttv311", "-i", "s3", "-v", "-t", "secret/#", "-t", "open/#"]).await;
    assert_eq!(sub.granted(), "128, 0", "secret/# refused, open/# granted");
    drop(sub);
    let (_, m) = http_get(gw.http_addr, "/metrics").await;
    assert!(sample(&m, "gateway_deliveries_total{qos=\"1\"}") >= 4.0, "{m}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_messages_survive_a_sigkill_reach_new_subscribers_and_an_empty_one_clears() {
    let dir = util::temp_dir();
    let ingest = IngestServer::start().await;
    let (mqtt, http) = (SocketAddr::from(([127, 0, 0, 1], free_port())), SocketAddr::from(([127, 0, 0, 1], free_port())));
    let extra = extra(dir.path(), OPEN_ACL, "retained_max = 2");
    let config = harness::config_text(&dir.path().join("data"), &ingest.url(), &mqtt.to_string(), &http.to_string(), &extra);
    let mut gw = Process::start(dir.path(), &config, mqtt, http).await;
    let port = mqtt.port();
    publish(port, &["-i", "p1", "-q", "1", "-r", "-t", "status/a", "-m", "r1"]).await;
    publish(port, &["-i", "p1", "-q", "1", "-r", "-t", "status/b", "-m", "r2", "-V", "mqttv5"]).await;
    // A third retained topic is over broker.retained_max: refused (v5 0x97), not stored.
    let full = publish(port, &["-i", "p1", "-q", "1", "-r", "-t", "status/c", "-m", "r3", "-V", "mqttv5"]).await;
    assert!(full.contains("RC:151") || full.to_lowercase().contains("quota"), "{full}");
    // Replacing one that exists is fine.
    publish(port, &["-i", "p1", "-q", "1", "-r", "-t", "status/b", "-m", "r2b"]).await;
    gw.kill9();
    let mut gw = Process::start(dir.path(), &config, mqtt, http).await;

    let got = Sub::start(port, &["-i", "s1", "-t", "status/#", "-C", "2", "-F", "%r %t %p"]).await.done().await;
    let mut got = got;
    got.sort();
    assert_eq!(got, ["1 status/a r1", "1 status/b r2b"], "retained, after a SIGKILL, with the retain flag");
    // An empty retained publish clears: a new subscriber gets status/b only.
    publish(port, &["-i", "p1", "-q", "1", "-r", "-n", "-t", "status/a"]).await;
    let got = Sub::start(port, &["-i", "s3", "-t", "status/#", "-C", "1", "-v"]).await.done().await;
    assert_eq!(got, ["status/b r2b"]);
    let (_, m) = http_get(http, "/metrics").await;
    assert_eq!(sample(&m, "gateway_retained_messages"), 1.0, "{m}");
    assert_eq!(sample(&m, "gateway_ingress_rejected_total{reason=\"retained_full\"}"), 0.0, "counted by the first process, not this one");
    assert_eq!(gw.terminate(), Some(0));
}

/// A retained MQTT 5 message keeps its expiry, response topic and correlation data across a
/// SIGKILL: the one whose expiry ran out while the gateway was down is not delivered, the other
/// comes with what is left of its interval and its properties (before: both came back, without
/// expiry or properties).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retained_messages_expiry_and_properties_outlive_a_sigkill() {
    let dir = util::temp_dir();
    let ingest = IngestServer::start().await;
    let (mqtt, http) = (SocketAddr::from(([127, 0, 0, 1], free_port())), SocketAddr::from(([127, 0, 0, 1], free_port())));
    let extra = extra(dir.path(), OPEN_ACL, "");
    let config = harness::config_text(&dir.path().join("data"), &ingest.url(), &mqtt.to_string(), &http.to_string(), &extra);
    let mut gw = Process::start(dir.path(), &config, mqtt, http).await;
    let port = mqtt.port();
    let v5 = ["-V", "mqttv5", "-i", "p1", "-q", "1", "-r"];
    publish(port, &[&v5[..], &["-t", "exp/short", "-m", "soon gone", "-D", "publish", "message-expiry-interval", "2"]].concat()).await;
    // Its expiry runs from when the gateway received it, before this point.
    let started = std::time::Instant::now();
    let props = ["-D", "publish", "message-expiry-interval", "600", "-D", "publish", "response-topic", "replies/x"];
    let more = ["-D", "publish", "correlation-data", "c0ffee"];
    publish(port, &[&v5[..], &["-t", "exp/long", "-m", "stays"], &props[..], &more[..]].concat()).await;
    gw.kill9();
    let mut gw = Process::start(dir.path(), &config, mqtt, http).await;
    tokio::time::sleep(Duration::from_millis(2_600).saturating_sub(started.elapsed())).await;
    let got = Sub::start(port, &["-V", "mqttv5", "-i", "s1", "-t", "exp/#", "-W", "3", "-F", "%t %p %E %R %D"]).await.done().await;
    assert_eq!(got.len(), 1, "the expired one is not delivered after the restart: {got:?}");
    let parts: Vec<&str> = got[0].split(' ').collect();
    assert_eq!((parts[0], parts[1], parts[3], parts[4]), ("exp/long", "stays", "replies/x", "c0ffee"), "{got:?}");
    let left: u64 = parts[2].parse().unwrap_or(0);
    assert!((590..600).contains(&left), "what is left of its expiry: {got:?}");
    assert_eq!(gw.terminate(), Some(0));
}

/// An MQTT 5 will's message expiry runs from when the will is published: a live subscriber gets
/// it with its interval, and the retained will is gone for a subscriber that comes after it ran
/// out (before: not applied, the retained will stayed for ever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wills_expiry_runs_from_its_publication() {
    let dir = util::temp_dir();
    let ingest = IngestServer::start().await;
    let gw = harness::start(&dir.path().join("data"), &ingest.url(), &extra(dir.path(), OPEN_ACL, "")).await;
    let port = gw.mqtt_addr.port();
    let watcher = Sub::start(port, &["-V", "mqttv5", "-i", "watcher", "-q", "1", "-t", "wills/#", "-C", "1", "-F", "%t %p %E"]).await;
    let will = ["--will-topic", "wills/dx", "--will-payload", "gone", "--will-qos", "1", "--will-retain"];
    let expiry = ["-D", "will", "message-expiry-interval", "2"];
    let dying = Sub::start(port, &[&["-V", "mqttv5", "-i", "dx", "-t", "nothing/here"][..], &will, &expiry].concat()).await;
    drop(dying); // SIGKILL: no DISCONNECT
    assert_eq!(watcher.done().await, ["wills/dx gone 2"], "with its expiry interval");
    // The will was published (its expiry started) before the watcher got it.
    let published = std::time::Instant::now();
    tokio::time::sleep(Duration::from_millis(2_500).saturating_sub(published.elapsed())).await;
    let late = Sub::start(port, &["-V", "mqttv5", "-i", "late", "-t", "wills/#", "-W", "2", "-v"]).await.done().await;
    assert!(late.is_empty(), "the retained will expired: {late:?}");
    gw.stop().await;
}

/// MQTT 5 options with paho: no-local, retain-as-published with a subscription identifier, a
/// shared group of two, retain handling 2 (d) and 0 (e); prints what each client received as
/// JSON.
const PAHO_OPTIONS: &str = r#"
import json, sys, time
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions
port = int(sys.argv[1])
got = {"a": [], "b": [], "c": [], "d": [], "e": []}
def client(name):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
    def on_message(cl, userdata, m):
        ids = getattr(m.properties, "SubscriptionIdentifier", []) if m.properties is not None else []
        got[name].append([m.topic, m.payload.decode(), int(m.retain), ids])
    c.on_message = on_message
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c
subacks = []
a, b, c = client("a"), client("b"), client("c")
for x in (a, b, c):
    x.on_subscribe = lambda cl, userdata, mid, codes, props: subacks.append(mid)
props = Properties(PacketTypes.SUBSCRIBE)
props.SubscriptionIdentifier = 7
r = [a.subscribe([("opt/nl", SubscribeOptions(qos=1, noLocal=True))]),
     a.subscribe([("opt/rap", SubscribeOptions(qos=1, retainAsPublished=True))], properties=props),
     b.subscribe([("opt/rap", SubscribeOptions(qos=1))]),
     b.subscribe([("$share/g/shared/#", SubscribeOptions(qos=1))]),
     c.subscribe([("$share/g/shared/#", SubscribeOptions(qos=1))])]
deadline = time.time() + 10
while len(subacks) < 5 and time.time() < deadline:
    time.sleep(0.02)
a.publish("opt/nl", "own", qos=1).wait_for_publish(5)
c.publish("opt/nl", "other", qos=1).wait_for_publish(5)
c.publish("opt/rap", "kept", qos=1, retain=True).wait_for_publish(5)
for i in range(4):
    a.publish("shared/t", "s%d" % i, qos=1).wait_for_publish(5)
deadline = time.time() + 10
while time.time() < deadline and (len(got["a"]) < 2 or len(got["b"]) + len(got["c"]) < 5):
    time.sleep(0.05)
d, e = client("d"), client("e")
d.on_subscribe = lambda cl, userdata, mid, codes, props: subacks.append(mid)
d.subscribe([("opt/rap", SubscribeOptions(qos=1, retainHandling=2))])
e.subscribe([("opt/rap", SubscribeOptions(qos=1, retainHandling=0))])
deadline = time.time() + 10
while time.time() < deadline and (len(got["e"]) < 1 or len(subacks) < 6):
    time.sleep(0.05)
time.sleep(0.3)
for x in (a, b, c, d, e):
    x.disconnect(); x.loop_stop()
print(json.dumps(got))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_no_local_retain_as_published_subscription_ids_and_shared_groups() {
    let dir = util::temp_dir();
    let ingest = IngestServer::start().await;
    let gw = harness::start(&dir.path().join("data"), &ingest.url(), &extra(dir.path(), OPEN_ACL, "")).await;
    let out =
        Command::new(python()).args(["-c", PAHO_OPTIONS, &gw.mqtt_addr.port().to_string()]).output_within().expect("python with paho-mqtt");
    let text = String::from_utf8_lossy(&out.stdout);
    let got: Value = serde_json::from_str(text.trim()).unwrap_or_else(|_| panic!("{text} {}", String::from_utf8_lossy(&out.stderr)));
    // a: not its own message (no-local), the other's; the retained one keeps its flag with id 7.
    assert_eq!(got["a"], serde_json::json!([["opt/nl", "other", 0, []], ["opt/rap", "kept", 1, [7]]]), "{got}");
    // b (no retain-as-published): the live retained message comes with the flag cleared.
    let b: Vec<&Value> = got["b"].as_array().unwrap().iter().filter(|m| m[0] == "opt/rap").collect();
    assert_eq!(b, [&serde_json::json!(["opt/rap", "kept", 0, []])], "{got}");
    // The shared group: every message once, spread over b and c.
    let mut shared: Vec<String> = ["b", "c"]
        .iter()
        .flat_map(|k| {
            got[*k]
                .as_array()
                .unwrap()
                .iter()
                .filter(|m| m[0] == "shared/t")
                .map(|m| m[1].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    shared.sort();
    assert_eq!(shared, ["s0", "s1", "s2", "s3"], "{got}");
    let in_b = got["b"].as_array().unwrap().iter().filter(|m| m[0] == "shared/t").count();
    assert!((1..=3).contains(&in_b), "both members get some: {got}");
    // Retain handling: 0 sends the retained message at subscribe (flag set), 2 does not.
    assert_eq!(got["e"], serde_json::json!([["opt/rap", "kept", 1, []]]), "{got}");
    assert_eq!(got["d"], serde_json::json!([]), "{got}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_acl_is_checked_again_at_delivery_so_a_reload_applies_to_existing_subscriptions() {
    let dir = util::temp_dir();
    let ingest = IngestServer::start().await;
    let gw = harness::start(&dir.path().join("data"), &ingest.url(), &extra(dir.path(), OPEN_ACL, "")).await;
    let port = gw.mqtt_addr.port();
    let sub = Sub::start(port, &["-i", "watcher", "-q", "1", "-v", "-t", "plant/#"]).await;
    publish(port, &["-i", "p1", "-q", "1", "-t", "plant/a", "-m", "before"]).await;
    poll_until("the first message delivered", WAIT, || sub.messages() == ["plant/a before"]).await;
    // The device view lists what its connection is subscribed to.
    let (_, device) = http_get(gw.http_addr, "/api/devices/watcher").await;
    let device: Value = serde_json::from_str(&device).unwrap();
    assert_eq!(device["subscriptions"], serde_json::json!([{"filter": "plant/#", "qos": 1}]), "{device}");
    // The watcher loses plant/# in the ACL; its subscription stays, deliveries stop.
    let acl = format!("{OPEN_ACL}\n[[deny]]\nidentities = [\"watcher\"]\nsubscribe = [\"plant/#\"]\n");
    let reloaded = "gateway_reloads_total{target=\"acl\",result=\"ok\"}";
    let before = sample(&http_get(gw.http_addr, "/metrics").await.1, reloaded);
    std::fs::write(dir.path().join("acl.toml"), acl).unwrap();
    eventually("the ACL reloaded", WAIT, async || sample(&http_get(gw.http_addr, "/metrics").await.1, reloaded) > before).await;
    publish(port, &["-i", "p1", "-q", "1", "-t", "plant/a", "-m", "after"]).await;
    let dropped = "gateway_deliveries_dropped_total{reason=\"not_authorized\"}";
    eventually("the delivery refused", WAIT, async || sample(&http_get(gw.http_addr, "/metrics").await.1, dropped) >= 1.0).await;
    assert_eq!(sub.messages(), ["plant/a before"], "nothing after the reload");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_downlink_needs_the_token_and_the_acl_and_reaches_subscribers_and_the_sinks() {
    let dir = util::temp_dir();
    let ingest = IngestServer::start().await;
    let acl =
        "[[allow]]\nidentities = [\"*\"]\nsubscribe = [\"site/#\"]\n\n[[allow]]\nidentities = [\"cloud\"]\npublish = [\"site/cmd/#\"]\n";
    let gw = harness::start(&dir.path().join("data"), &ingest.url(), &extra(dir.path(), acl, "api_identity = \"cloud\"")).await;
    let sub = Sub::start(gw.mqtt_addr.port(), &["-V", "mqttv5", "-i", "valve-7", "-q", "1", "-v", "-t", "site/cmd/#", "-C", "1"]).await;
    let token = std::fs::read_to_string(dir.path().join("data/http.token")).unwrap();
    let post = async |auth: Option<&str>, body: Value| {
        harness::install_crypto();
        let mut req = reqwest::Client::new().post(format!("http://{}/api/publish", gw.http_addr)).json(&body);
        if let Some(t) = auth {
            req = req.bearer_auth(t.trim());
        }
        let resp = req.send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    };
    let open = serde_json::json!({"topic": "site/cmd/valve-7", "payload": "open", "qos": 1});
    assert_eq!(post(None, open.clone()).await.0, 401, "the token is always needed");
    let (status, body) = post(Some(&token), serde_json::json!({"topic": "site/other", "payload": "x"})).await;
    assert_eq!(status, 403, "outside the ACL of `cloud`: {body}");
    assert_eq!(post(Some(&token), serde_json::json!({"topic": "site/#", "payload": "x"})).await.0, 400, "a wildcard");
    let (status, body) = post(Some(&token), open).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(sub.done().await, ["site/cmd/valve-7 open"]);
    poll_until("the downlink message at the cloud too", WAIT, || ingest.accepted().iter().any(|m| m.device == "cloud")).await;
    gw.stop().await;
}

/// README, "Local broker": the gateway on its embedded default, a display subscribed to its own
/// namespace, a command through the downlink; the same commands as the README.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_subscribe_and_downlink_example_works_on_the_embedded_default() {
    let dir = util::temp_dir();
    let (mqtt, http) = (free_port(), free_port());
    let gateway = Command::new(harness::binary())
        .arg("run")
        .current_dir(dir.path())
        .env("EDGE_GATEWAY_MQTT_LISTEN", format!("127.0.0.1:{mqtt}"))
        .env("EDGE_GATEWAY_HTTP_LISTEN", format!("127.0.0.1:{http}"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("edge-gateway run");
    let _gateway = Killed(gateway);
    let http = SocketAddr::from(([127, 0, 0, 1], http));
    poll_until("the HTTP API listening", WAIT, || std::net::TcpStream::connect(http).is_ok()).await;
    eventually("ready", WAIT, async || http_get(http, "/readyz").await.0 == 200).await;
    let sub = Sub::start(mqtt, &["-i", "display-1", "-t", "devices/display-1/#", "-v", "-C", "1"]).await;
    let token = std::fs::read_to_string(dir.path().join("data/http.token")).unwrap();
    let curl = Command::new(util::require("curl"))
        .args(["-s", "-X", "POST", "-H", &format!("Authorization: Bearer {}", token.trim()), "-H", "content-type: application/json"])
        .args(["-d", r#"{"topic":"devices/display-1/cmd/brightness","payload":"40","qos":1}"#])
        .arg(format!("http://{http}/api/publish"))
        .output_within()
        .expect("curl");
    assert!(String::from_utf8_lossy(&curl.stdout).contains("\"key\""), "{curl:?}");
    assert_eq!(sub.done().await, ["devices/display-1/cmd/brightness 40"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_will_is_published_when_a_connection_ends_without_disconnect_and_only_then() {
    let dir = util::temp_dir();
    let ingest = IngestServer::start().await;
    let acl = format!("{OPEN_ACL}\n[[deny]]\nidentities = [\"*\"]\npublish = [\"forbidden/#\"]\n");
    let gw = harness::start(&dir.path().join("data"), &ingest.url(), &extra(dir.path(), &acl, "")).await;
    let port = gw.mqtt_addr.port();
    let watcher = Sub::start(port, &["-i", "watcher", "-q", "1", "-v", "-t", "wills/#", "-C", "3"]).await;
    // Killed (no DISCONNECT), MQTT 3.1.1 then 5: each will is published. Between them a clean
    // DISCONNECT (mosquitto_sub -C 1 after its message), whose will must not come.
    for (client, version) in [("d3", "mqttv311"), ("d5", "mqttv5")] {
        let will = ["--will-topic", &format!("wills/{client}"), "--will-payload", &format!("gone {client}"), "--will-qos", "1"];
        let dying = Sub::start(port, &[&["-V", version, "-i", client, "-t", "nothing/here"][..], &will].concat()).await;
        drop(dying); // SIGKILL
        let n = watcher.messages().len();
        poll_until("the will delivered", WAIT, || watcher.messages().len() > n).await;
        if client == "d3" {
            let clean =
                Sub::start(port, &["-i", "c1", "-t", "clean/x", "-C", "1", "--will-topic", "wills/clean", "--will-payload", "never"]).await;
            publish(port, &["-i", "p1", "-q", "1", "-t", "clean/x", "-m", "bye"]).await;
            assert_eq!(clean.done().await, ["bye"]);
        }
    }
    publish(port, &["-i", "p1", "-q", "1", "-t", "wills/end", "-m", "end"]).await;
    assert_eq!(watcher.done().await, ["wills/d3 gone d3", "wills/d5 gone d5", "wills/end end"]);
    // The wills were stored for the sinks too, under the devices' identities.
    poll_until("the wills at the cloud", WAIT, || ingest.accepted().iter().filter(|m| m.topic.starts_with("wills/d")).count() == 2).await;
    // A will topic outside the ACL refuses the connection (v5 CONNACK 0x87).
    let port_s = port.to_string();
    let refused = util::mosquitto(
        "mosquitto_sub",
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &port_s,
            "-V",
            "mqttv5",
            "-i",
            "rogue",
            "-t",
            "x",
            "-W",
            "5",
            "--will-topic",
            "forbidden/x",
            "--will-payload",
            "x",
        ],
    )
    .await;
    let text = util::text(&refused);
    assert!(!refused.status.success() && text.to_lowercase().contains("not authorized"), "{text}");
    let (_, m) = http_get(gw.http_addr, "/metrics").await;
    assert_eq!(sample(&m, "gateway_auth_failures_total{reason=\"will_not_authorized\"}"), 1.0, "{m}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos_2_both_ways_on_both_protocol_versions_stores_and_delivers_once() {
    let dir = util::temp_dir();
    let ingest = IngestServer::start().await;
    let gw = harness::start(&dir.path().join("data"), &ingest.url(), &extra(dir.path(), OPEN_ACL, "")).await;
    let port = gw.mqtt_addr.port();
    let sub3 = Sub::start(port, &["-V", "mqttv311", "-i", "s3", "-q", "2", "-t", "q2/#", "-C", "4", "-F", "%q %t %p"]).await;
    let sub5 = Sub::start(port, &["-V", "mqttv5", "-i", "s5", "-q", "1", "-t", "q2/#", "-C", "4", "-F", "%q %t %p"]).await;
    for (i, version) in ["mqttv311", "mqttv5", "mqttv311", "mqttv5"].iter().enumerate() {
        let out = publish(port, &["-V", version, "-i", "p2", "-q", "2", "-t", &format!("q2/{i}"), "-m", &format!("m{i}")]).await;
        assert!(out.contains("received PUBREC") && out.contains("received PUBCOMP"), "the whole QoS 2 exchange: {out}");
    }
    let expected = |q: u8| (0..4).map(|i| format!("{q} q2/{i} m{i}")).collect::<Vec<_>>();
    assert_eq!(sub3.done().await, expected(2), "a QoS 2 subscription gets QoS 2");
    assert_eq!(sub5.done().await, expected(1), "a QoS 1 subscription gets QoS 1");
    poll_until("4 messages at the cloud", WAIT, || ingest.unique_keys() >= 4).await;
    assert_eq!(ingest.unique_keys(), 4, "stored once each");
    let (_, m) = http_get(gw.http_addr, "/metrics").await;
    assert_eq!(sample(&m, "gateway_ingress_messages_total{protocol=\"v5\",qos=\"2\"}"), 2.0, "{m}");
    assert_eq!(sample(&m, "gateway_deliveries_total{qos=\"2\"}"), 4.0, "{m}");
    gw.stop().await;
}

/// MQTT 5 topic aliases from a publisher and message expiry, with paho; prints what the
/// subscribers got as JSON.
const PAHO_ALIAS_EXPIRY: &str = r#"
import json, sys, time
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
port = int(sys.argv[1])
got = {"a": [], "c": []}
def client(name):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
    def on_message(cl, userdata, m):
        exp = getattr(m.properties, "MessageExpiryInterval", None) if m.properties is not None else None
        got.setdefault(name, []).append([m.topic, m.payload.decode(), int(m.retain), exp])
    c.on_message = on_message
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c
a, b = client("a"), client("b")
subscribed = []
a.on_subscribe = lambda cl, userdata, mid, codes, props: subscribed.append(mid)
a.subscribe([("alias/#", 1), ("exp/#", 1)])
deadline = time.time() + 10
while not subscribed and time.time() < deadline:
    time.sleep(0.02)
alias = Properties(PacketTypes.PUBLISH); alias.TopicAlias = 1
b.publish("alias/x", "first", qos=1, properties=alias).wait_for_publish(5)
b.publish("", "second", qos=1, properties=alias).wait_for_publish(5)
soon = Properties(PacketTypes.PUBLISH); soon.MessageExpiryInterval = 1
b.publish("exp/short", "gone soon", qos=1, retain=True, properties=soon).wait_for_publish(5)
later = Properties(PacketTypes.PUBLISH); later.MessageExpiryInterval = 60
b.publish("exp/long", "stays", qos=1, retain=True, properties=later).wait_for_publish(5)
deadline = time.time() + 10
while time.time() < deadline and len(got["a"]) < 4:
    time.sleep(0.05)
time.sleep(2.2)
c = client("c")
c.subscribe([("exp/#", 1)])
deadline = time.time() + 10
while time.time() < deadline and len(got["c"]) < 1:
    time.sleep(0.05)
time.sleep(0.5)
for x in (a, b, c):
    x.disconnect(); x.loop_stop()
print(json.dumps(got))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_topic_aliases_from_a_publisher_and_message_expiry() {
    let dir = util::temp_dir();
    let ingest = IngestServer::start().await;
    let gw = harness::start(&dir.path().join("data"), &ingest.url(), &extra(dir.path(), OPEN_ACL, "")).await;
    let out = Command::new(python())
        .args(["-c", PAHO_ALIAS_EXPIRY, &gw.mqtt_addr.port().to_string()])
        .output_within()
        .expect("python with paho-mqtt");
    let text = String::from_utf8_lossy(&out.stdout);
    let got: Value = serde_json::from_str(text.trim()).unwrap_or_else(|_| panic!("{text} {}", String::from_utf8_lossy(&out.stderr)));
    let a = got["a"].as_array().unwrap();
    assert_eq!(a[0], serde_json::json!(["alias/x", "first", 0, null]), "{got}");
    assert_eq!(a[1], serde_json::json!(["alias/x", "second", 0, null]), "the alias resolved to its topic: {got}");
    // Live deliveries carry what is left of the expiry interval.
    assert_eq!(a[2][0], "exp/short");
    assert!(a[3][0] == "exp/long" && (59..=60).contains(&a[3][3].as_u64().unwrap()), "{got}");
    // A subscriber that comes 2 s later gets the retained message that has not expired only.
    let c = got["c"].as_array().unwrap();
    assert_eq!(c.len(), 1, "{got}");
    assert!(c[0][0] == "exp/long" && c[0][1] == "stays" && c[0][2] == 1 && c[0][3].as_u64().unwrap() <= 58, "{got}");
    // Every publish was stored for the sinks under its real topic.
    poll_until("4 at the cloud", WAIT, || ingest.unique_keys() >= 4).await;
    assert!(ingest.accepted().iter().filter(|m| m.topic == "alias/x").count() == 2);
    gw.stop().await;
}

/// MQTT 5 topic aliases towards subscribers: paho does not resolve aliases it receives, so it
/// shows what was sent: a subscriber that allows 1 alias gets the first topic in full with
/// alias 1, then alias 1 and an empty topic; a second topic in full without an alias (past its
/// maximum). A subscriber that allows none gets every topic in full.
const PAHO_ALIASES_OUT: &str = r#"
import json, sys, time
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
port = int(sys.argv[1])
got = {}
def client(name, max_alias):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
    def on_message(cl, userdata, m):
        alias = getattr(m.properties, "TopicAlias", None) if m.properties is not None else None
        got.setdefault(name, []).append([m.topic, m.payload.decode(), alias])
    c.on_message = on_message
    subscribed = []
    c.on_subscribe = lambda cl, userdata, mid, codes, props: subscribed.append(mid)
    p = Properties(PacketTypes.CONNECT)
    if max_alias:
        p.TopicAliasMaximum = max_alias
    c.connect("127.0.0.1", port, properties=p)
    c.loop_start()
    c.subscribe([("al/#", 1)])
    deadline = time.time() + 10
    while not subscribed and time.time() < deadline:
        time.sleep(0.02)
    return c
a, n, pub = client("a", 1), client("n", 0), client("pub", 0)
for topic, payload in (("al/x", "1"), ("al/x", "2"), ("al/y", "3"), ("al/x", "4")):
    pub.publish(topic, payload, qos=1).wait_for_publish(5)
deadline = time.time() + 10
while time.time() < deadline and (len(got.get("a", [])) < 4 or len(got.get("n", [])) < 4):
    time.sleep(0.05)
for x in (a, n, pub):
    x.disconnect(); x.loop_stop()
print(json.dumps(got))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_topic_aliases_towards_a_subscriber_within_its_maximum() {
    let dir = util::temp_dir();
    let ingest = IngestServer::start().await;
    let gw = harness::start(&dir.path().join("data"), &ingest.url(), &extra(dir.path(), OPEN_ACL, "")).await;
    let out = Command::new(python())
        .args(["-c", PAHO_ALIASES_OUT, &gw.mqtt_addr.port().to_string()])
        .output_within()
        .expect("python with paho-mqtt");
    let text = String::from_utf8_lossy(&out.stdout);
    let got: Value = serde_json::from_str(text.trim()).unwrap_or_else(|_| panic!("{text} {}", String::from_utf8_lossy(&out.stderr)));
    let expected = serde_json::json!([["al/x", "1", 1], ["", "2", 1], ["al/y", "3", null], ["", "4", 1]]);
    assert_eq!(got["a"], expected, "alias 1 given with al/x, then used; al/y past the maximum: {got}");
    let plain = serde_json::json!([["al/x", "1", null], ["al/x", "2", null], ["al/y", "3", null], ["al/x", "4", null]]);
    assert_eq!(got["n"], plain, "no aliases for a client that takes none: {got}");
    gw.stop().await;
}

/// An MQTT 5 client asking for a session that outlives its connection gets it back: session
/// present on the second connect (clean start 0), and no expiry in the CONNACK (the interval
/// asked for is granted as it is; `tests/it/sessions.rs` has the rest).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_asking_for_a_lasting_session_gets_it_back() {
    const SCRIPT: &str = r#"
import json, sys, time
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
seen = {}
def on_connect(c, userdata, flags, reason_code, properties):
    seen["present"] = bool(flags.session_present)
    seen["expiry"] = getattr(properties, "SessionExpiryInterval", None)
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="lasting", protocol=mqtt.MQTTv5)
c.on_connect = on_connect
props = Properties(PacketTypes.CONNECT); props.SessionExpiryInterval = 3600
for attempt in range(2):
    c.connect("127.0.0.1", int(sys.argv[1]), clean_start=(attempt == 0), properties=props)
    c.loop_start()
    deadline = time.time() + 5
    while "present" not in seen and time.time() < deadline:
        time.sleep(0.02)
    c.disconnect(); c.loop_stop()
    if attempt == 1:
        print(json.dumps(seen))
    seen.clear()
"#;
    let dir = util::temp_dir();
    let ingest = IngestServer::start().await;
    let gw = harness::start(&dir.path().join("data"), &ingest.url(), &extra(dir.path(), OPEN_ACL, "")).await;
    let out = Command::new(python()).args(["-c", SCRIPT, &gw.mqtt_addr.port().to_string()]).output_within().expect("python with paho-mqtt");
    let text = String::from_utf8_lossy(&out.stdout);
    let seen: Value = serde_json::from_str(text.trim()).unwrap_or_else(|_| panic!("{text} {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(seen, serde_json::json!({"present": true, "expiry": null}), "the second connect, clean start 0");
    gw.stop().await;
}

/// A burst of QoS 2 publishes to a QoS 2 subscriber (exchanges that would overlap), and a
/// refused MQTT 5 QoS 2 publish, which closes the connection with its reason instead of an
/// error PUBREC that would keep its packet id taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_qos_2_arrives_once_each_and_a_refused_one_closes_with_its_reason() {
    const BURST: &str = r#"
import sys, time
import paho.mqtt.client as mqtt
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="burst", protocol=mqtt.MQTTv5)
c.connect("127.0.0.1", int(sys.argv[1]))
c.loop_start()
infos = [c.publish("burst/t", "m%02d" % i, qos=2) for i in range(30)]
for info in infos:
    info.wait_for_publish(10)
c.disconnect(); c.loop_stop()
print("published", sum(1 for i in infos if i.is_published()))
"#;
    let dir = util::temp_dir();
    let ingest = IngestServer::start().await;
    let acl = format!("{OPEN_ACL}\n[[deny]]\nidentities = [\"*\"]\npublish = [\"forbidden/#\"]\n");
    let gw = harness::start(&dir.path().join("data"), &ingest.url(), &extra(dir.path(), &acl, "")).await;
    let port = gw.mqtt_addr.port();
    let sub = Sub::start(port, &["-V", "mqttv5", "-i", "s2", "-q", "2", "-t", "burst/#", "-C", "30", "-F", "%q %p"]).await;
    let out = Command::new(python()).args(["-c", BURST, &port.to_string()]).output_within().expect("python with paho-mqtt");
    assert!(String::from_utf8_lossy(&out.stdout).contains("published 30"), "{out:?}");
    let expected: Vec<String> = (0..30).map(|i| format!("2 m{i:02}")).collect();
    assert_eq!(sub.done().await, expected, "every one once, in order, at QoS 2");
    // Refused (ACL), MQTT 5 QoS 2: DISCONNECT 0x87; the next connection publishes fine.
    let refused = util::mosquitto_pub(&[
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-V",
        "mqttv5",
        "-q",
        "2",
        "-i",
        "q2r",
        "-t",
        "forbidden/x",
        "-m",
        "x",
        "-d",
    ])
    .await;
    let text = util::text(&refused);
    assert!(!text.contains("received PUBREC"), "no error PUBREC: {text}");
    assert!(text.contains("DISCONNECT") || text.to_lowercase().contains("not authorized"), "{text}");
    publish(port, &["-V", "mqttv5", "-q", "2", "-i", "q2r", "-t", "burst/after", "-m", "ok"]).await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_mqtt_client_may_take_the_downlink_identity() {
    let dir = util::temp_dir();
    let ingest = IngestServer::start().await;
    let gw = harness::start(&dir.path().join("data"), &ingest.url(), &extra(dir.path(), OPEN_ACL, "")).await;
    let port = gw.mqtt_addr.port().to_string();
    // On the lab listener the client id is the identity: `api` is the downlink's.
    let out = util::mosquitto_pub(&[
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-V",
        "mqttv5",
        "-q",
        "1",
        "-i",
        "api",
        "-t",
        "devices/x/cmd/open",
        "-m",
        "x",
    ])
    .await;
    let text = util::text(&out);
    assert!(!out.status.success() && text.to_lowercase().contains("not authorized"), "{text}");
    let (_, m) = http_get(gw.http_addr, "/metrics").await;
    assert_eq!(sample(&m, "gateway_auth_failures_total{reason=\"bad_identity\"}"), 1.0, "{m}");
    gw.stop().await;
}

/// A connection taken over by a newer one with the same client id has its will dropped, not
/// published: the new connection's retained "online" must not be overwritten by the old
/// connection's "offline" (MQTT 5 3.1.2.5; 3.1.1 lists no will for a takeover).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_over_connection_does_not_publish_its_will() {
    const OLD: &str = r#"
import sys, time
import paho.mqtt.client as mqtt
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="tk", protocol=mqtt.MQTTv311, reconnect_on_failure=False)
c.will_set("status/tk", "offline", qos=1, retain=True)
c.connect("127.0.0.1", int(sys.argv[1]))
c.loop_start()
print("connected", flush=True)
time.sleep(20)
"#;
    let dir = util::temp_dir();
    let ingest = IngestServer::start().await;
    let gw = harness::start(&dir.path().join("data"), &ingest.url(), &extra(dir.path(), OPEN_ACL, "")).await;
    let port = gw.mqtt_addr.port();
    let watcher = Sub::start(port, &["-i", "watcher", "-q", "1", "-v", "-t", "status/#"]).await;
    let mut old =
        Command::new(python()).args(["-c", OLD, &port.to_string()]).stdout(Stdio::piped()).spawn().expect("python with paho-mqtt");
    let mut line = String::new();
    std::io::BufReader::new(old.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "connected");
    let _old = Killed(old);
    // The same client id again: takes the session over and says it is online.
    publish(port, &["-i", "tk", "-q", "1", "-r", "-t", "status/tk", "-m", "online"]).await;
    poll_until("online seen", WAIT, || watcher.messages().contains(&"status/tk online".to_string())).await;
    publish(port, &["-i", "p1", "-q", "1", "-t", "status/end", "-m", "end"]).await;
    poll_until("the end marker", WAIT, || watcher.messages().contains(&"status/end end".to_string())).await;
    assert_eq!(watcher.messages(), ["status/tk online", "status/end end"], "no will from the taken-over connection");
    let got = Sub::start(port, &["-i", "late", "-t", "status/tk", "-C", "1", "-v"]).await.done().await;
    assert_eq!(got, ["status/tk online"], "the retained state is the new connection's");
    gw.stop().await;
}
