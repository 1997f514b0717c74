//! Schema governance with real clients against the example registry (examples/schemas): every
//! action on both protocol versions, the record's subject and version at the HTTP sink, the
//! rejected table through the API and the CLI, hot reload (good and bad), and the CLI's exit
//! codes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{self, Extra, http_get, sample};
use crate::ingest::IngestServer;
use crate::util::OutputWithin;
use crate::util::{self, eventually, poll_until, python};

const DRAIN: Duration = Duration::from_secs(20);

/// A realistic ~200-byte telemetry payload, valid under both example versions.
fn reading(device: &str, temp: f64) -> String {
    json!({"device": device, "ts": 1_764_600_000_123u64, "temp": temp, "hum": 48.2, "status": "ok"}).to_string()
}

/// Valid under version 2 only (`pressure` is new in 2; version 1 has additionalProperties false).
fn reading_v2(device: &str) -> String {
    json!({"device": device, "ts": 1_764_600_000_123u64, "temp": 20.5, "pressure": 1013.25, "status": "ok"}).to_string()
}

/// A copy of examples/schemas in `dir`.
fn example_registry(dir: &Path) -> PathBuf {
    let to = dir.join("schemas");
    copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/schemas"), &to);
    to
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() { copy_dir(&entry.path(), &target) } else { std::fs::copy(entry.path(), target).map(|_| ()).unwrap() }
    }
}

fn extra(registry: &Path) -> Extra {
    Extra {
        schemas: format!("dir = \"{}\"\nrejected_max = 100", registry.display()),
        tls: "check_interval_secs = 1\nreload_debounce_ms = 100".into(),
        ..Default::default()
    }
}

/// mosquitto_pub, QoS `qos`, MQTT `version` ("mqttv311" / "mqttv5"), with extra arguments;
/// (exit code, stdout and stderr).
async fn mosquitto_pub(
    gw: &edge_gateway::Gateway,
    version: &str,
    qos: &str,
    client: &str,
    topic: &str,
    payload: &str,
    extra: &[&str],
) -> (i32, String) {
    let port = gw.mqtt_addr.port().to_string();
    let mut args = vec!["-h", "127.0.0.1", "-p", &port, "-V", version, "-q", qos, "-i", client, "-t", topic, "-m", payload, "-d"];
    args.extend(extra);
    let out = util::mosquitto("mosquitto_pub", &args).await;
    (out.status.code().unwrap_or(-1), util::text(&out))
}

/// One MQTT 5 QoS 1 publish with paho-mqtt; the PUBACK's reason code and reason string.
fn paho_publish(gw: &edge_gateway::Gateway, topic: &str, payload: &str, schema_tag: Option<&str>) -> (u8, Option<String>) {
    const SCRIPT: &str = r#"
import json, sys, time
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
port, topic, payload, tag = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
done = {}
def on_publish(client, userdata, mid, reason_code, properties):
    done["rc"] = reason_code.value
    done["reason"] = getattr(properties, "ReasonString", None) if properties is not None else None
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="paho-1", protocol=mqtt.MQTTv5)
c.on_publish = on_publish
c.connect("127.0.0.1", port)
c.loop_start()
props = Properties(PacketTypes.PUBLISH)
if tag:
    props.UserProperty = ("schema", tag)
c.publish(topic, payload, qos=1, properties=props)
deadline = time.time() + 10
while "rc" not in done and time.time() < deadline:
    time.sleep(0.01)
c.disconnect()
c.loop_stop()
print(json.dumps(done))
"#;
    let out = Command::new(python())
        .args(["-c", SCRIPT, &gw.mqtt_addr.port().to_string(), topic, payload, schema_tag.unwrap_or("")])
        .output_within()
        .unwrap_or_else(|e| panic!("run {} (scripts/test.sh installs paho-mqtt): {e}", python()));
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(text.trim()).unwrap_or_else(|_| panic!("paho: {text} {}", String::from_utf8_lossy(&out.stderr)));
    let rc = v["rc"].as_u64().unwrap_or_else(|| panic!("no PUBACK within 10 s: {v}")) as u8;
    (rc, v["reason"].as_str().map(str::to_string))
}

async fn rejected(gw: &edge_gateway::Gateway) -> Vec<Value> {
    let (status, body) = http_get(gw.http_addr, "/api/rejected?limit=1000").await;
    assert_eq!(status, 200, "{body}");
    let page: Value = serde_json::from_str(&body).unwrap();
    page["messages"].as_array().unwrap().clone()
}

fn at_cloud(ingest: &IngestServer, device: &str) -> Vec<crate::ingest::Msg> {
    ingest.accepted().into_iter().filter(|m| m.device == device).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_action_on_both_protocol_versions_and_the_record_carries_subject_and_version() {
    let dir = util::temp_dir();
    let registry = example_registry(dir.path());
    // One more binding: the version named in the MQTT 5 content type.
    let mut bindings = std::fs::read_to_string(registry.join("bindings.toml")).unwrap();
    bindings.push_str("\n[[binding]]\ntopics = [\"typed/+\"]\nsubject = \"telemetry\"\ntag = \"content_type\"\non_invalid = \"refuse\"\n");
    std::fs::write(registry.join("bindings.toml"), bindings).unwrap();
    let ingest = IngestServer::start().await;
    let gw = harness::start(&dir.path().join("data"), &ingest.url(), &extra(&registry)).await;

    // Valid, MQTT 5, version named in a user property: stored and forwarded with its version.
    let v5_ok = mosquitto_pub(
        &gw,
        "mqttv5",
        "1",
        "ok5",
        "devices/ok5/telemetry",
        &reading("ok5", 21.5),
        &["-D", "publish", "user-property", "schema", "telemetry/1"],
    )
    .await;
    assert_eq!(v5_ok.0, 0, "{}", v5_ok.1);
    // Valid, MQTT 3.1.1, version in the topic.
    let v3_ok = mosquitto_pub(&gw, "mqttv311", "1", "ok3", "devices/ok3/v/2", &reading_v2("ok3"), &[]).await;
    assert_eq!(v3_ok.0, 0, "{}", v3_ok.1);
    poll_until("both valid messages at the cloud", DRAIN, || ingest.accepted().len() >= 2).await;
    let ok5 = &at_cloud(&ingest, "ok5")[0];
    assert_eq!(ok5.schema, Some(json!({"subject": "telemetry", "version": 1, "valid": true})), "{ok5:?}");
    assert_eq!(at_cloud(&ingest, "ok3")[0].schema.as_ref().unwrap()["version"], 2);

    // Refuse, MQTT 5 QoS 1 (paho): PUBACK 0x99 with the failing path; nothing stored.
    let (rc, reason) = paho_publish(&gw, "devices/paho-1/telemetry", &reading_v2("paho-1"), Some("telemetry/1"));
    assert_eq!(rc, 0x99, "payload format invalid");
    let reason = reason.expect("a reason string");
    assert!(reason.starts_with("schema telemetry/1: /") && reason.contains("pressure"), "{reason}");
    let (rc, reason) = paho_publish(&gw, "devices/paho-1/telemetry", "{\"temp\": ", None);
    assert_eq!((rc, reason.as_deref()), (0x99, Some("schema telemetry/2: /: payload is not JSON")));
    let (rc, _) = paho_publish(&gw, "devices/paho-1/telemetry", &reading("paho-1", 1.0), Some("telemetry/7"));
    assert_eq!(rc, 0x99, "a version the subject does not have");
    let (rc, _) = paho_publish(&gw, "devices/paho-1/telemetry", &reading("paho-1", 2.0), Some("telemetry/2"));
    assert_eq!(rc, 0, "the same client's valid message goes through");
    // The same refusal seen by mosquitto_pub (it reports the reason code in its debug output).
    let refused5 = mosquitto_pub(&gw, "mqttv5", "1", "bad5", "devices/bad5/telemetry", "{\"temp\": \"hot\"}", &[]).await;
    assert!(refused5.1.contains("RC:153") || refused5.1.to_lowercase().contains("payload format invalid"), "{}", refused5.1);

    // Refuse where the protocol cannot refuse one message: MQTT 3.1.1 QoS 1, and MQTT 5 QoS 0:
    // acknowledged as usual and kept apart, never forwarded.
    let v3_bad = mosquitto_pub(&gw, "mqttv311", "1", "bad3", "devices/bad3/v/1", &reading_v2("bad3"), &[]).await;
    assert_eq!(v3_bad.0, 0, "3.1.1 gets its PUBACK: {}", v3_bad.1);
    let q0_bad = mosquitto_pub(&gw, "mqttv5", "0", "bad0", "devices/bad0/telemetry", "not json", &[]).await;
    assert_eq!(q0_bad.0, 0, "{}", q0_bad.1);
    // keep_apart, both versions.
    for (client, version) in [("old3", "mqttv311"), ("old5", "mqttv5")] {
        let out = mosquitto_pub(&gw, version, "1", client, &format!("legacy/{client}/telemetry"), &reading_v2(client), &[]).await;
        assert_eq!(out.0, 0, "{}", out.1);
    }
    // tag, both versions: forwarded with valid = false and the errors.
    for (client, version) in [("lab3", "mqttv311"), ("lab5", "mqttv5")] {
        let out = mosquitto_pub(&gw, version, "1", client, &format!("lab/{client}"), "{\"device\": 5}", &[]).await;
        assert_eq!(out.0, 0, "{}", out.1);
    }
    poll_until("the tagged messages at the cloud", DRAIN, || ingest.accepted().iter().filter(|m| m.device.starts_with("lab")).count() >= 2)
        .await;
    for client in ["lab3", "lab5"] {
        let m = &at_cloud(&ingest, client)[0];
        let schema = m.schema.as_ref().expect("schema");
        assert_eq!(
            (schema["subject"].as_str(), schema["version"].as_u64(), schema["valid"].as_bool()),
            (Some("telemetry"), Some(2), Some(false))
        );
        let errors: Vec<&str> = schema["errors"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
        assert!(errors.iter().any(|e| e.starts_with("/device: ")) && errors.iter().any(|e| e.contains("\"ts\"")), "{errors:?}");
    }

    // The rejected table: exactly the kept-apart ones, with their errors; none reached the cloud.
    // (QoS 0 has no PUBACK to wait for: its commit may come a moment later.)
    eventually("4 messages kept apart", DRAIN, async || rejected(&gw).await.len() >= 4).await;
    let kept = rejected(&gw).await;
    let mut devices: Vec<&str> = kept.iter().filter_map(|m| m["message"]["device"].as_str()).collect();
    // (bad0's QoS 0 commit may come after the others: compared as a set.)
    devices.sort();
    assert_eq!(devices, ["bad0", "bad3", "old3", "old5"], "{kept:?}");
    for m in &kept {
        assert_eq!(m["message"]["schema"]["valid"], false);
        assert!(m["message"]["schema"]["errors"][0].as_str().unwrap().starts_with('/'), "{m}");
    }
    let old3 = kept.iter().find(|m| m["message"]["device"] == "old3").unwrap();
    assert_eq!(old3["message"]["schema"]["version"], 1, "the legacy binding is pinned to version 1");
    for device in ["bad3", "bad0", "old3", "old5", "bad5"] {
        assert!(at_cloud(&ingest, device).is_empty(), "{device} must not be forwarded");
    }
    assert_eq!(at_cloud(&ingest, "paho-1").len(), 1, "only paho's valid message");

    // The CLI lists the same messages.
    let out = Command::new(harness::binary())
        .args(["schema", "rejected", "--url", &format!("http://{}", gw.http_addr)])
        .output_within()
        .expect("edge-gateway schema rejected");
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{listed} {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(listed.lines().count(), 4, "{listed}");
    assert!(listed.lines().any(|l| l.contains("legacy/old3/telemetry\ttelemetry/1\t/")), "{listed}");

    // Metrics: checks by version and result, failures by reason and action, the table's size.
    let (_, m) = http_get(gw.http_addr, "/metrics").await;
    let v = |labels: &str| sample(&m, &format!("gateway_schema_validations_total{{{labels}}}"));
    assert_eq!(v("subject=\"telemetry\",version=\"1\",result=\"valid\""), 1.0, "{m}");
    assert_eq!(v("subject=\"telemetry\",version=\"2\",result=\"valid\""), 2.0, "ok3 and paho's valid one: {m}");
    assert_eq!(v("subject=\"telemetry\",version=\"unknown\",result=\"invalid\""), 1.0, "{m}");
    let f = |labels: &str| sample(&m, &format!("gateway_schema_failures_total{{subject=\"telemetry\",{labels}}}"));
    assert_eq!(f("reason=\"schema\",action=\"refused\""), 2.0, "paho and mosquitto_pub v5: {m}");
    assert_eq!(f("reason=\"not_json\",action=\"refused\""), 1.0, "{m}");
    assert_eq!(f("reason=\"unknown_version\",action=\"refused\""), 1.0, "{m}");
    assert_eq!(f("reason=\"schema\",action=\"kept_apart\""), 3.0, "bad3, old3, old5: {m}");
    assert_eq!(f("reason=\"not_json\",action=\"kept_apart\""), 1.0, "bad0 (QoS 0): {m}");
    assert_eq!(f("reason=\"schema\",action=\"tagged\""), 2.0, "{m}");
    assert_eq!(sample(&m, "gateway_schema_rejected_messages"), 4.0, "{m}");
    let (_, schemas) = http_get(gw.http_addr, "/api/schemas").await;
    let schemas: Value = serde_json::from_str(&schemas).unwrap();
    assert_eq!(schemas["subjects"]["telemetry"]["versions"], json!([1, 2]));
    assert_eq!(schemas["bindings"].as_array().unwrap().len(), 5);

    // The version named in the content type: version 1 refuses `pressure`, version 2 takes it.
    let ct = |v: &str| format!("application/json; schema=telemetry/{v}");
    let (v1, v2) = (ct("1"), ct("2"));
    let typed1 =
        mosquitto_pub(&gw, "mqttv5", "1", "typed1", "typed/typed1", &reading_v2("typed1"), &["-D", "publish", "content-type", &v1]).await;
    assert!(typed1.1.contains("RC:153") || typed1.1.to_lowercase().contains("payload format invalid"), "{}", typed1.1);
    let typed2 =
        mosquitto_pub(&gw, "mqttv5", "1", "typed2", "typed/typed2", &reading_v2("typed2"), &["-D", "publish", "content-type", &v2]).await;
    assert_eq!(typed2.0, 0, "{}", typed2.1);
    poll_until("the typed message at the cloud", DRAIN, || !at_cloud(&ingest, "typed2").is_empty()).await;
    let typed = &at_cloud(&ingest, "typed2")[0];
    assert_eq!((typed.schema.as_ref().unwrap()["version"].as_u64(), typed.content_type.as_deref()), (Some(2), Some(v2.as_str())));
    assert!(at_cloud(&ingest, "typed1").is_empty());
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_registry_change_is_picked_up_and_a_bad_one_is_refused_with_the_old_kept() {
    let dir = util::temp_dir();
    let registry = example_registry(dir.path());
    std::fs::remove_file(registry.join("telemetry/2.json")).unwrap();
    let ingest = IngestServer::start().await;
    let gw = harness::start(&dir.path().join("data"), &ingest.url(), &extra(&registry)).await;
    let (rc, _) = paho_publish(&gw, "devices/d/telemetry", &reading_v2("d"), None);
    assert_eq!(rc, 0x99, "only version 1 so far: `pressure` is unknown");

    // A compatible version 2 arrives: the latest is now 2 and the payload passes.
    std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/schemas/telemetry/2.json"), registry.join("telemetry/2.json"))
        .unwrap();
    let reloaded = "gateway_reloads_total{target=\"schemas\",result=\"ok\"}";
    eventually("the registry reloaded", DRAIN, async || sample(&http_get(gw.http_addr, "/metrics").await.1, reloaded) >= 1.0).await;
    let (rc, _) = paho_publish(&gw, "devices/d/telemetry", &reading_v2("d"), None);
    assert_eq!(rc, 0, "version 2 accepts it");

    // Version 1 edited in place (it is in use): refused, though the folder alone would load.
    let v1 = registry.join("telemetry/1.json");
    let original = std::fs::read_to_string(&v1).unwrap();
    std::fs::write(&v1, original.replace("\"maximum\": 150", "\"maximum\": 120")).unwrap();
    let refused = "gateway_reloads_total{target=\"schemas\",result=\"rejected\"}";
    eventually("the edit refused", DRAIN, async || sample(&http_get(gw.http_addr, "/metrics").await.1, refused) >= 1.0).await;
    std::fs::write(&v1, original).unwrap();
    eventually("the original back", DRAIN, async || sample(&http_get(gw.http_addr, "/metrics").await.1, reloaded) >= 2.0).await;

    // An incompatible version 3 (temp no longer a number, a new required field) and a broken
    // binding: refused with every problem named; version 2 stays in use.
    let v3 = r#"{"type":"object","properties":{"device":{"type":"string"},"ts":{"type":"integer"},"temp":{"type":"string"}},"required":["device","ts","temp","site"]}"#;
    std::fs::write(registry.join("telemetry/3.json"), v3).unwrap();
    let mut bindings = std::fs::read_to_string(registry.join("bindings.toml")).unwrap();
    bindings.push_str("\n[[binding]]\ntopics = [\"x/#\"]\nsubject = \"telemetry\"\non_invalid = \"drop\"\n");
    let before = sample(&http_get(gw.http_addr, "/metrics").await.1, refused);
    std::fs::write(registry.join("bindings.toml"), bindings).unwrap();
    eventually("the bad registry refused", DRAIN, async || sample(&http_get(gw.http_addr, "/metrics").await.1, refused) > before).await;
    let (_, schemas) = http_get(gw.http_addr, "/api/schemas").await;
    assert_eq!(serde_json::from_str::<Value>(&schemas).unwrap()["subjects"]["telemetry"]["versions"], json!([1, 2]), "{schemas}");
    let (rc, _) = paho_publish(&gw, "devices/d/telemetry", &reading_v2("d"), None);
    assert_eq!(rc, 0, "still checked against version 2");

    // The CLI names the same problems for the folder on disk.
    let out = Command::new(harness::binary()).args(["schema", "check-registry"]).arg(&registry).output_within().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("telemetry/3.json: breaks BACKWARD") && err.contains("/properties/temp") && err.contains("site"), "{err}");
    assert!(err.contains("binding[4].on_invalid"), "the broken binding too: {err}");
    std::fs::remove_file(registry.join("telemetry/3.json")).unwrap();
    let bindings = std::fs::read_to_string(registry.join("bindings.toml")).unwrap();
    std::fs::write(registry.join("bindings.toml"), bindings.split("\n[[binding]]\ntopics = [\"x/#\"]").next().unwrap()).unwrap();
    let out = Command::new(harness::binary()).args(["schema", "check-registry"]).arg(&registry).output_within().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 subject(s), 2 version(s), 4 binding(s)"));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_check_cli_exits_0_compatible_1_incompatible_2_bad_input_and_a_bad_registry_stops_the_start() {
    let dir = util::temp_dir();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/schemas/telemetry");
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let narrowed = write("narrowed.json", r#"{"type":"object","properties":{"temp":{"type":"integer"}},"required":["temp","site"]}"#);
    let wide = write("wide.json", r#"{"type":"object","properties":{"temp":{"type":"number"}}}"#);
    let one_of = write("oneof.json", r#"{"oneOf":[{"type":"string"},{"type":"number"}]}"#);
    let not_json = write("broken.json", "{\"type\": ");
    let not_schema = write("notschema.json", "{\"type\": 5}");
    let run = |args: &[&std::ffi::OsStr]| {
        let out = Command::new(harness::binary()).arg("schema").arg("check").args(args).output_within().unwrap();
        (out.status.code(), util::text(&out))
    };
    let os = |p: &Path| p.as_os_str().to_owned();
    let (v1, v2) = (examples.join("1.json"), examples.join("2.json"));
    assert_eq!(run(&[&os(&v1), &os(&v2)]).0, Some(0), "the example's 2 is BACKWARD compatible with 1");
    let (code, out) = run(&["--mode".as_ref(), "FORWARD".as_ref(), &os(&v1), &os(&v2)]);
    assert_eq!(code, Some(1), "2 accepts fields 1 refuses: not FORWARD: {out}");
    let (code, out) = run(&[&os(&wide), &os(&narrowed)]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("/properties/temp") && out.contains("type_narrowed") && out.contains("required_added"),
        "every incompatibility: {out}"
    );
    assert_eq!(run(&["--mode".as_ref(), "FORWARD".as_ref(), &os(&wide), &os(&narrowed)]).0, Some(0));
    assert_eq!(run(&["--mode".as_ref(), "NONE".as_ref(), &os(&wide), &os(&narrowed)]).0, Some(0));
    let (code, out) = run(&[&os(&wide), &os(&one_of)]);
    assert_eq!(code, Some(1), "outside the subset is refused, not guessed: {out}");
    assert!(out.contains("oneOf"), "{out}");
    for bad in [&not_json, &not_schema] {
        let (code, out) = run(&[&os(&wide), &os(bad)]);
        assert_eq!(code, Some(2), "{out}");
    }
    assert_eq!(run(&["--mode".as_ref(), "SIDEWAYS".as_ref(), &os(&wide), &os(&wide)]).0, Some(2));

    // A registry that does not load stops the start, every problem named.
    let registry = example_registry(dir.path());
    std::fs::write(registry.join("telemetry/3.json"), "{\"type\":\"string\"}").unwrap();
    std::fs::write(registry.join("bindings.toml"), "[[binding]]\ntopics = [\"a/#\"]\nsubject = \"nope\"\non_invalid = \"refuse\"\n")
        .unwrap();
    let text = harness::config_text(&dir.path().join("data"), "http://127.0.0.1:9/", "127.0.0.1:0", "127.0.0.1:0", &extra(&registry));
    let config = edge_gateway::config::Config::parse(&text, Vec::new()).unwrap();
    let err = edge_gateway::Gateway::start(config, edge_gateway_actors::supervisor::SupervisionConfig::default_config())
        .await
        .err()
        .expect("refused");
    let err = err.to_string();
    assert!(
        err.contains("schemas.dir") && err.contains("telemetry/3.json: breaks BACKWARD") && err.contains("no subject \"nope\""),
        "{err}"
    );
    let config_file = write("gateway.toml", &text);
    let out = Command::new(harness::binary()).arg("check-config").arg(&config_file).output_within().unwrap();
    assert_eq!(out.status.code(), Some(2), "check-config names the registry's problems too");
    assert!(String::from_utf8_lossy(&out.stderr).contains("telemetry/3.json"), "{}", String::from_utf8_lossy(&out.stderr));
}
