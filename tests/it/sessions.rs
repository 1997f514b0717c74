//! Persistent sessions with real clients: MQTT 3.1.1 clean session 0 (paho and mosquitto_sub)
//! and MQTT 5 session expiry (paho): subscriptions and QoS 1 messages kept for an offline
//! client, across a SIGKILL of the gateway on both store engines, redelivered in order with
//! `session present`; clean start discarding a session; expiry; the per-session bound; and a
//! subscriber that must get every message acknowledged to a publisher while the gateway is
//! killed under it.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::broker::{OPEN_ACL, Sub, extra, publish};
use crate::harness::{self, Process, http_get, sample};
use crate::ingest::IngestServer;
use crate::util::OutputWithin;
use crate::util::{self, free_port, python};

/// paho, MQTT 3.1.1 or 5: connect as `client` (clean session/start and expiry from argv),
/// optionally subscribe, collect messages for a while, print JSON with the session-present
/// flag and the messages (topic, payload, qos, dup).
const PAHO_SESSION: &str = r#"
import json, sys, time
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
port, client_id, version, clean, expiry, subscribe, want, wait = sys.argv[1:9]
v5 = version == "5"
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
                **({} if v5 else {"clean_session": clean == "1"}))
out = {"present": None, "got": [], "suback": None}
def on_connect(cl, userdata, flags, rc, props):
    out["present"] = -1 if rc.is_failure else int(flags.session_present)
    if subscribe != "-" and not rc.is_failure:
        cl.subscribe(subscribe, qos=1)
def on_subscribe(cl, userdata, mid, codes, props):
    out["suback"] = [int(getattr(x, "value", x)) for x in codes]
def on_message(cl, userdata, m):
    out["got"].append([m.topic, m.payload.decode(), m.qos, int(m.dup)])
c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
kw = {}
if v5:
    p = Properties(PacketTypes.CONNECT)
    p.SessionExpiryInterval = int(expiry)
    kw = {"clean_start": clean == "1", "properties": p}
c.connect("127.0.0.1", int(port), **kw)
c.loop_start()
deadline = time.time() + float(wait)
while time.time() < deadline and (len(out["got"]) < int(want) or out["present"] is None
                                  or (subscribe != "-" and out["suback"] is None)):
    time.sleep(0.02)
time.sleep(0.3)
c.disconnect()
c.loop_stop()
print(json.dumps(out))
"#;

/// What [`PAHO_SESSION`] saw.
struct Seen {
    present: i64,
    /// `topic payload` per message, in order.
    got: Vec<String>,
    /// The DUP flag per message.
    dups: Vec<i64>,
}

async fn paho(port: u16, client: &str, version: &str, clean: bool, expiry: u32, subscribe: &str, want: usize) -> Seen {
    let (port, expiry, want) = (port.to_string(), expiry.to_string(), want.to_string());
    let clean = if clean { "1" } else { "0" };
    let args = ["-c", PAHO_SESSION, &port, client, version, clean, &expiry, subscribe, &want, "8"];
    let out = util::bounded_output(Command::new(python()).args(args), util::RUN_LIMIT).await.expect("python with paho-mqtt");
    let text = util::text(&out);
    let v: Value = serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap_or_else(|_| panic!("{text}"));
    let got = v["got"].as_array().unwrap();
    Seen {
        present: v["present"].as_i64().unwrap_or(-1),
        got: got.iter().map(|m| format!("{} {}", m[0].as_str().unwrap(), m[1].as_str().unwrap())).collect(),
        dups: got.iter().map(|m| m[3].as_i64().unwrap()).collect(),
    }
}

fn addrs() -> (SocketAddr, SocketAddr) {
    (SocketAddr::from(([127, 0, 0, 1], free_port())), SocketAddr::from(([127, 0, 0, 1], free_port())))
}

async fn start(dir: &Path, backend: &str, broker: &str) -> (Process, String, IngestServer) {
    let ingest = IngestServer::start().await;
    let (mqtt, http) = addrs();
    let config =
        harness::config_text(&dir.join("data"), &ingest.url(), &mqtt.to_string(), &http.to_string(), &extra(dir, OPEN_ACL, broker));
    let env = [("EDGE_GATEWAY_STORAGE_BACKEND", backend.to_string())];
    (Process::start_with_env(&env, dir, &config, mqtt, http).await, config, ingest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_session_0_keeps_its_subscription_and_queue_across_a_sigkill_on_both_engines() {
    for backend in ["redb", "sqlite"] {
        let dir = util::temp_dir();
        let (mut gw, config, _ingest) = start(dir.path(), backend, "").await;
        let port = gw.mqtt.port();
        // Subscribe with clean session 0, then go away.
        let first = paho(port, "plc", "3", false, 0, "cmd/#", 0).await;
        assert_eq!(first.present, 0, "{backend}: a new session");
        for m in ["m1", "m2", "m3"] {
            publish(port, &["-i", "op", "-q", "1", "-t", "cmd/set", "-m", m]).await;
        }
        // QoS 0 for an offline client is not kept (as mosquitto by default).
        publish(port, &["-i", "op", "-q", "0", "-t", "cmd/set", "-m", "q0"]).await;
        let (_, m) = http_get(gw.http, "/metrics").await;
        assert_eq!(sample(&m, "gateway_session_queued_messages"), 3.0, "{backend}: {m}");
        // The device view shows the offline session and what waits for it.
        let (status, device) = http_get(gw.http, "/api/devices/plc").await;
        let device: Value = serde_json::from_str(&device).unwrap_or_else(|_| panic!("{status} {device}"));
        assert_eq!(
            device["session"],
            serde_json::json!({"persistent": true, "connected": false, "expiry_secs": null, "queued": 3}),
            "{device}"
        );
        assert_eq!(device["subscriptions"], serde_json::json!([{"filter": "cmd/#", "qos": 1}]), "{device}");
        gw.kill9();
        let mut gw =
            Process::start_with_env(&[("EDGE_GATEWAY_STORAGE_BACKEND", backend.to_string())], dir.path(), &config, gw.mqtt, gw.http).await;
        publish(port, &["-i", "op", "-q", "1", "-t", "cmd/set", "-m", "m4"]).await;
        publish(port, &["-i", "op", "-q", "1", "-t", "other/x", "-m", "not subscribed"]).await;
        // Back without subscribing: the stored subscription and queue are the session's.
        let back = paho(port, "plc", "3", false, 0, "-", 4).await;
        assert_eq!(back.present, 1, "{backend}: session present after a SIGKILL");
        assert_eq!(back.got, ["cmd/set m1", "cmd/set m2", "cmd/set m3", "cmd/set m4"], "{backend}: in order, once");
        // Queued before the restart: it may have been sent before, so DUP (MQTT 3.3.1.1 "might be").
        assert_eq!(back.dups, [1, 1, 1, 0], "{backend}");
        // Acknowledged: nothing left (the deletions join a later commit), and a clean session
        // discards the session.
        util::eventually("the acknowledged messages deleted", Duration::from_secs(10), async || {
            sample(&http_get(gw.http, "/metrics").await.1, "gateway_session_queued_messages") == 0.0
        })
        .await;
        let clean = paho(port, "plc", "3", true, 0, "-", 0).await;
        assert_eq!(clean.present, 0, "{backend}");
        publish(port, &["-i", "op", "-q", "1", "-t", "cmd/set", "-m", "m5"]).await;
        let after = paho(port, "plc", "3", false, 0, "-", 0).await;
        assert_eq!((after.present, after.got.len()), (0, 0), "{backend}: the clean session discarded it");
        assert_eq!(gw.terminate(), Some(0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_session_expiry_resumes_within_the_interval_and_forgets_after_it() {
    let dir = util::temp_dir();
    let (mut gw, _config, _ingest) = start(dir.path(), "redb", "").await;
    let port = gw.mqtt.port();
    let first = paho(port, "hmi", "5", true, 4, "line/#", 0).await;
    assert_eq!(first.present, 0);
    publish(port, &["-V", "mqttv5", "-i", "op", "-q", "1", "-t", "line/speed", "-m", "s1"]).await;
    let back = paho(port, "hmi", "5", false, 4, "-", 1).await;
    assert_eq!((back.present, back.got), (1, vec!["line/speed s1".to_string()]));
    // Offline past its 4 s (the sweep runs every 5 s): gone, with its subscription.
    tokio::time::sleep(Duration::from_secs(10)).await;
    publish(port, &["-V", "mqttv5", "-i", "op", "-q", "1", "-t", "line/speed", "-m", "s2"]).await;
    let later = paho(port, "hmi", "5", false, 0, "-", 0).await;
    assert_eq!((later.present, later.got.len()), (0, 0), "expired");
    // Session expiry 0: the session ends with the connection.
    let _ = paho(port, "ctl", "5", true, 0, "line/#", 0).await;
    publish(port, &["-V", "mqttv5", "-i", "op", "-q", "1", "-t", "line/speed", "-m", "s3"]).await;
    let gone = paho(port, "ctl", "5", false, 0, "-", 0).await;
    assert_eq!((gone.present, gone.got.len()), (0, 0));
    let (_, m) = http_get(gw.http, "/metrics").await;
    assert_eq!(sample(&m, "gateway_sessions_persistent"), 0.0, "{m}");
    assert_eq!(gw.terminate(), Some(0));
}

/// A session's expiry counts from its disconnect also across a restart: offline for 1 s, the
/// gateway stopped for 3 s, a 3 s session is gone when the client comes back at once (before:
/// the expiry started again with the gateway and the session was resumed). One that came back
/// within its interval is resumed, and its row no longer says it is offline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_expiry_counts_from_its_disconnect_across_a_restart() {
    let dir = util::temp_dir();
    let (gw, config, _ingest) = start(dir.path(), "redb", "").await;
    let (port, mqtt, http) = (gw.mqtt.port(), gw.mqtt, gw.http);
    let first = paho(port, "hmi", "5", true, 3, "line/#", 0).await;
    assert_eq!(first.present, 0);
    let _ = paho(port, "panel", "5", true, 30, "line/#", 0).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut gw = gw;
    assert_eq!(gw.terminate(), Some(0));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut gw = Process::start(dir.path(), &config, mqtt, http).await;
    let back = paho(port, "hmi", "5", false, 3, "-", 0).await;
    assert_eq!(back.present, 0, "offline for 4 s with a 3 s expiry: not resumed after the restart");
    let panel = paho(port, "panel", "5", false, 30, "-", 0).await;
    assert_eq!(panel.present, 1, "within its 30 s");
    assert_eq!(gw.terminate(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_queue_is_bounded_and_what_it_refuses_is_counted() {
    let dir = util::temp_dir();
    let (mut gw, _config, _ingest) = start(dir.path(), "redb", "session_max_queued = 3").await;
    let port = gw.mqtt.port();
    let _ = paho(port, "slow", "3", false, 0, "q/#", 0).await;
    for i in 1..=5 {
        publish(port, &["-i", "op", "-q", "1", "-t", "q/x", "-m", &format!("m{i}")]).await;
    }
    let back = paho(port, "slow", "3", false, 0, "-", 3).await;
    assert_eq!(back.got, ["q/x m1", "q/x m2", "q/x m3"], "the newest are refused, as mosquitto's max_queued_messages");
    let (_, m) = http_get(gw.http, "/metrics").await;
    assert_eq!(sample(&m, "gateway_deliveries_dropped_total{reason=\"session_full\"}"), 2.0, "{m}");
    // A mosquitto_sub that resumes the session (-c) gets what comes next, live.
    let sub = Sub::start(port, &["-i", "slow", "-c", "-q", "1", "-t", "q/#", "-v", "-C", "1"]).await;
    publish(port, &["-i", "op", "-q", "1", "-t", "q/x", "-m", "live"]).await;
    util::poll_until("the live message", Duration::from_secs(10), || sub.messages().iter().any(|l| l == "q/x live")).await;
    drop(sub);
    assert_eq!(gw.terminate(), Some(0));
}

/// A publisher (records what was PUBACKed, or PUBCOMPed at QoS 2) and a persistent subscriber
/// (clean session 0, subscribes only when the session is not present), both reconnecting, for
/// `secs`, at QoS `qos`; then the subscriber waits for every acknowledged message. Each
/// publish has its own payload, so a payload received twice is a duplicate. At QoS 2 the
/// publisher keeps its session too (exactly once holds within a session). Prints JSON.
const CHAOS_CLIENTS: &str = r#"
import json, sys, threading, time
import paho.mqtt.client as mqtt
port, secs, qos = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
acked, got, received, subscribed = [], set(), [], threading.Event()
def on_connect(cl, userdata, flags, rc, props):
    if not flags.session_present:
        cl.subscribe("chaos/#", qos=qos)
    else:
        subscribed.set()
sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="chaos-sub", clean_session=False)
sub.on_connect = on_connect
sub.on_subscribe = lambda *a: subscribed.set()
def on_message(cl, u, m):
    got.add(int(m.payload))
    received.append(int(m.payload))
sub.on_message = on_message
sub.reconnect_delay_set(0.05, 0.3)
sub.connect("127.0.0.1", port)
sub.loop_start()
subscribed.wait(10)
pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="chaos-pub", clean_session=qos < 2)
pub.reconnect_delay_set(0.05, 0.3)
pub.connect("127.0.0.1", port)
pub.loop_start()
i, end = 0, time.time() + secs
while time.time() < end:
    if not pub.is_connected():
        time.sleep(0.02)
        continue
    info = pub.publish("chaos/t", str(i), qos=qos)
    try:
        info.wait_for_publish(2)
    except Exception:
        pass
    if info.is_published():
        acked.append(i)
    i += 1
deadline = time.time() + 30
while time.time() < deadline and not set(acked) <= got:
    time.sleep(0.1)
for c in (sub, pub):
    c.disconnect(); c.loop_stop()
print(json.dumps({"acked": acked, "missing": sorted(set(acked) - got), "duplicates": len(received) - len(got)}))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_subscriber_gets_every_acknowledged_message_while_the_gateway_is_killed() {
    let v = chaos_clients(1).await;
    assert!(v["duplicates"].as_u64().is_some(), "QoS 1 may bring duplicates: {v}");
}

/// The same at QoS 2, end to end: the publisher's PUBLISH or PUBREL resent after a kill, and
/// the deliveries to the persistent subscriber resent after a kill, bring no duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_qos_2_subscriber_gets_every_message_exactly_once_while_the_gateway_is_killed() {
    let v = chaos_clients(2).await;
    assert_eq!(v["duplicates"], 0, "QoS 2 both ways: no duplicate ({} acked)", v["acked"].as_array().unwrap().len());
}

/// [`CHAOS_CLIENTS`] at `qos` while the gateway is SIGKILLed three times; every acknowledged
/// message reached the subscriber. What the clients printed.
async fn chaos_clients(qos: u8) -> Value {
    let dir = util::temp_dir();
    let (mut gw, config, _ingest) = start(dir.path(), "redb", "").await;
    let (mqtt, http) = (gw.mqtt, gw.http);
    let clients = Command::new(python()).args(["-c", CHAOS_CLIENTS, &mqtt.port().to_string(), "9", &qos.to_string()]).output_within();
    let clients = tokio::task::spawn_blocking(move || clients);
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(2000)).await;
        gw.kill9();
        gw = Process::start(dir.path(), &config, mqtt, http).await;
    }
    let out = clients.await.unwrap().expect("python with paho-mqtt");
    let text = util::text(&out);
    let v: Value = serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap_or_else(|_| panic!("{text}"));
    let acked = v["acked"].as_array().unwrap().len();
    assert!(acked > 50, "QoS {qos}: the publisher made progress across the kills: {acked}");
    assert_eq!(
        v["missing"],
        serde_json::json!([]),
        "QoS {qos}: every acknowledged message reached the persistent subscriber ({acked} acked)"
    );
    assert_eq!(gw.terminate(), Some(0));
    v
}

/// Three MQTT 5 clients with a will delay, each dropping its connection without DISCONNECT:
/// w1 (session kept 60 s, delay 2 s), w2 (the same, but back within the delay), w3 (session
/// ends with the connection, delay 2 s). Prints when each will arrived, in seconds after the
/// drop (`null`: not within 6 s).
const WILL_DELAY: &str = r#"
import json, sys, time
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
port = int(sys.argv[1])
arrived = {}
watch = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="watch", protocol=mqtt.MQTTv5)
watch.on_message = lambda cl, u, m: arrived.setdefault(m.topic.split("/")[1], time.time())
watch.connect("127.0.0.1", port)
watch.subscribe("will/#", qos=1)
watch.loop_start()
time.sleep(0.5)
def connect(name, expiry, clean=True):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
    wp = Properties(PacketTypes.WILLMESSAGE)
    wp.WillDelayInterval = 2
    c.will_set("will/" + name, "gone", qos=1, properties=wp)
    p = Properties(PacketTypes.CONNECT)
    p.SessionExpiryInterval = expiry
    c.connect("127.0.0.1", port, clean_start=clean, properties=p)
    c.loop_start()
    time.sleep(0.3)
    return c
def drop(c):
    c.loop_stop()
    c.socket().close()
    return time.time()
dropped = {}
for name, expiry in (("w1", 60), ("w2", 60), ("w3", 0)):
    dropped[name] = drop(connect(name, expiry))
back = connect("w2", 60, clean=False)
time.sleep(6)
back.disconnect(); back.loop_stop(); watch.loop_stop()
print(json.dumps({n: (round(arrived[n] - dropped[n], 2) if n in arrived else None) for n in dropped}))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_will_waits_for_its_delay_and_is_dropped_when_the_client_comes_back() {
    let dir = util::temp_dir();
    let (mut gw, _config, _ingest) = start(dir.path(), "redb", "").await;
    let out = util::bounded_output(Command::new(python()).args(["-c", WILL_DELAY, &gw.mqtt.port().to_string()]), util::RUN_LIMIT)
        .await
        .expect("python");
    let text = util::text(&out);
    let v: Value = serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap_or_else(|_| panic!("{text}"));
    let w1 = v["w1"].as_f64().unwrap_or_else(|| panic!("w1's will never came: {v}"));
    assert!((1.5..5.0).contains(&w1), "w1's will after its 2 s delay: {v}");
    assert!(v["w2"].is_null(), "w2 came back within the delay: no will ({v})");
    let w3 = v["w3"].as_f64().unwrap_or_else(|| panic!("w3's will never came: {v}"));
    assert!(w3 < 1.5, "w3's session ended with its connection, so its will goes at once: {v}");
    assert_eq!(gw.terminate(), Some(0));
}

/// MQTT 3.1.1, clean session 0: `a` unsubscribes its only filter and subscribes another (the
/// session stays persistent); `b` connects twice at once (the second takes the session over).
const UNSUBSCRIBE_AND_TAKEOVER: &str = r#"
import json, sys, time
import paho.mqtt.client as mqtt
port = int(sys.argv[1])
def client(name, present):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name, clean_session=False)
    c.on_connect = lambda cl, u, flags, rc, props: present.append(int(flags.session_present))
    acks = []
    c.on_subscribe = lambda *a: acks.append(1)
    c.on_unsubscribe = lambda *a: acks.append(1)
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c, acks
def wait(acks, n):
    deadline = time.time() + 5
    while len(acks) < n and time.time() < deadline:
        time.sleep(0.02)
present = []
a, acks = client("a", present)
wait(present, 1)
a.subscribe("first/#", qos=1); wait(acks, 1)
a.unsubscribe("first/#"); wait(acks, 2)
a.subscribe("second/#", qos=1); wait(acks, 3)
a.disconnect(); a.loop_stop()
b1, acks1 = client("b", present)
wait(present, 2)
b1.subscribe("third/#", qos=1); wait(acks1, 1)
b2, _ = client("b", present)
wait(present, 3)
time.sleep(0.5)
b1.loop_stop(); b2.disconnect(); b2.loop_stop()
print(json.dumps({"present": present}))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_stays_persistent_after_its_last_unsubscribe_and_a_takeover_keeps_it() {
    let dir = util::temp_dir();
    let (mut gw, _config, _ingest) = start(dir.path(), "redb", "").await;
    let port = gw.mqtt.port();
    let out = util::bounded_output(Command::new(python()).args(["-c", UNSUBSCRIBE_AND_TAKEOVER, &port.to_string()]), util::RUN_LIMIT)
        .await
        .expect("python");
    let text = util::text(&out);
    let v: Value = serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap_or_else(|_| panic!("{text}"));
    assert_eq!(v["present"], serde_json::json!([0, 0, 1]), "the second connection of b took its session over");
    publish(port, &["-i", "op", "-q", "1", "-t", "first/x", "-m", "unsubscribed"]).await;
    publish(port, &["-i", "op", "-q", "1", "-t", "second/x", "-m", "for a"]).await;
    publish(port, &["-i", "op", "-q", "1", "-t", "third/x", "-m", "for b"]).await;
    let a = paho(port, "a", "3", false, 0, "-", 1).await;
    assert_eq!((a.present, a.got), (1, vec!["second/x for a".to_string()]));
    let b = paho(port, "b", "3", false, 0, "-", 1).await;
    assert_eq!((b.present, b.got), (1, vec!["third/x for b".to_string()]));
    assert_eq!(gw.terminate(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_sessions_are_bounded_in_number_and_a_refused_one_is_counted() {
    let dir = util::temp_dir();
    let (mut gw, _config, _ingest) = start(dir.path(), "redb", "max_sessions = 1").await;
    let port = gw.mqtt.port();
    assert_eq!(paho(port, "one", "3", false, 0, "x/#", 0).await.present, 0);
    // A second persistent session is refused (CONNACK: server unavailable); a clean one is not.
    assert_eq!(paho(port, "two", "3", false, 0, "-", 0).await.present, -1, "no CONNACK accepted");
    assert_eq!(paho(port, "three", "3", true, 0, "-", 0).await.present, 0);
    // The first one resumes (it does not count twice).
    assert_eq!(paho(port, "one", "3", false, 0, "-", 0).await.present, 1);
    let (_, m) = http_get(gw.http, "/metrics").await;
    assert_eq!(sample(&m, "gateway_ingress_rejected_total{reason=\"sessions_full\"}"), 1.0, "{m}");
    assert_eq!(gw.terminate(), Some(0));
}
