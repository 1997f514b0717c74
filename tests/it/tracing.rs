//! Traces: a real OTLP/gRPC receiver (opentelemetry-proto + grpcio, tests/peers/otlp_receiver.py)
//! gets the receive, commit and forward spans of a message in the device's own trace, the cloud
//! request carries `traceparent`, and a message forwarded after a restart still joins its trace.

use std::io::BufRead;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::harness::{self, Extra, Process};
use crate::ingest::IngestServer;
use crate::util::{self, poll_until, within};

/// The OTLP receiver as a child process; spans collected as JSON values.
struct Receiver {
    child: std::process::Child,
    spans: Arc<Mutex<Vec<serde_json::Value>>>,
    port: u16,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

use crate::util::python;

fn start_receiver() -> Receiver {
    let port = util::free_port();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/otlp_receiver.py");
    let mut child = std::process::Command::new(python())
        .arg(&script)
        .arg(port.to_string())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {} (scripts/test.sh installs python3 with opentelemetry-proto and grpcio): {e}", python()));
    let out = child.stdout.take().unwrap();
    let spans = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let sink = spans.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                eprintln!("otlp_receiver.py printed a line that is not JSON: {line}");
                continue;
            };
            if v.get("listening").is_some() {
                let _ = tx.send(());
            } else {
                sink.lock().unwrap().push(v);
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| panic!("the OTLP receiver did not start; is `{}` able to import grpc and opentelemetry.proto?", python()));
    Receiver { child, spans, port }
}

impl Receiver {
    fn in_trace(&self, trace_id: &str) -> Vec<serde_json::Value> {
        self.spans.lock().unwrap().iter().filter(|s| s["trace_id"] == trace_id).cloned().collect()
    }

    async fn wait_for(&self, trace_id: &str, name: &str) -> serde_json::Value {
        let found = within(Duration::from_secs(20), async || self.in_trace(trace_id).into_iter().find(|s| s["name"] == name)).await;
        found.unwrap_or_else(|| panic!("no `{name}` span in trace {trace_id}; got {:#?}", self.in_trace(trace_id)))
    }
}

/// Free loopback addresses for the MQTT listener and the HTTP endpoint of a gateway process.
fn loopback_ports() -> (std::net::SocketAddr, std::net::SocketAddr) {
    let addr = |port: u16| std::net::SocketAddr::from(([127, 0, 0, 1], port));
    (addr(util::free_port()), addr(util::free_port()))
}

/// The lab config with the default namespace and these lines under `[tracing]`.
fn traced_config(
    dir: &tempfile::TempDir,
    ingest: &IngestServer,
    mqtt: std::net::SocketAddr,
    http: std::net::SocketAddr,
    tracing: &str,
) -> String {
    let data = dir.path().join("data");
    harness::config_text(&data, &ingest.url(), &mqtt.to_string(), &http.to_string(), &lab_default_namespace())
        + &format!("\n[tracing]\n{tracing}\n")
}

/// The lab listener with the default namespace (no ACL file): devices/<client id>/... only.
fn lab_default_namespace() -> Extra {
    Extra { auth: "plain = \"anonymous\"".into(), ..Default::default() }
}

async fn publish_traced(p: &Process, trace_id: &str, span_id: &str, payload: &str) {
    let traceparent = format!("00-{trace_id}-{span_id}-01");
    let port = p.mqtt.port().to_string();
    let args = ["-h", "127.0.0.1", "-p", &port, "-V", "mqttv5", "-q", "1", "-i", "dev-t", "-t", "devices/dev-t/temp"];
    let out =
        util::mosquitto_pub(&[&args[..], &["-D", "publish", "user-property", "traceparent", &traceparent, "-m", payload]].concat()).await;
    assert!(out.status.success(), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_devices_trace_continues_through_the_store_to_the_cloud_also_across_a_restart() {
    let receiver = start_receiver();
    let dir = util::temp_dir();
    let ingest = IngestServer::start().await;
    let (mqtt_addr, http_addr) = loopback_ports();
    // Ratio 0: only the device's sampled traceparent is traced.
    let config = traced_config(
        &dir,
        &ingest,
        mqtt_addr,
        http_addr,
        &format!("otlp_endpoint = \"http://127.0.0.1:{}\"\nsample_ratio = 0.0\nexport_logs = true", receiver.port),
    );

    let (t1, s1) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let mut p = Process::start(dir.path(), &config, mqtt_addr, http_addr).await;
    publish_traced(&p, t1, s1, "21.5").await;
    let receive = receiver.wait_for(t1, "mqtt publish").await;
    assert_eq!(receive["parent_span_id"], s1, "the receive span continues the device's span");
    let commit = receiver.wait_for(t1, "store commit").await;
    let forward = receiver.wait_for(t1, "forward").await;
    let request = receiver.wait_for(t1, "http POST").await;
    assert_eq!(commit["parent_span_id"], receive["span_id"]);
    assert_eq!(forward["parent_span_id"], receive["span_id"]);
    assert_eq!(request["parent_span_id"], forward["span_id"]);
    let batch = receiver
        .spans
        .lock()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "store commit batch" && s["links"].as_array().is_some_and(|l| l.iter().any(|l| l["trace_id"] == t1)))
        .cloned();
    assert!(batch.is_some(), "the commit batch span links the message");
    poll_until("the cloud got it", Duration::from_secs(10), || ingest.accepted().len() == 1).await;
    let header = ingest.traceparents();
    assert_eq!(header.len(), 1);
    assert!(header[0].starts_with(&format!("00-{t1}-{}-", request["span_id"].as_str().unwrap())), "{header:?}");
    println!("trace {t1}: mqtt publish <- store commit, forward <- http POST; traceparent header {}", header[0]);

    // A refused publish: its WARN log line (JSON, the default) carries the message's trace id.
    let t3 = "11111111111111111111111111111111";
    let port = p.mqtt.port().to_string();
    let tp = format!("00-{t3}-2222222222222222-01");
    let args = ["-h", "127.0.0.1", "-p", &port, "-V", "mqttv5", "-q", "1", "-i", "dev-t", "-t", "devices/someone-else/x"];
    let _ = util::mosquitto_pub(&[&args[..], &["-D", "publish", "user-property", "traceparent", &tp, "-m", "x"]].concat()).await;
    let log = dir.path().join("gateway.log");
    poll_until("the refusal logged", Duration::from_secs(10), || {
        std::fs::read_to_string(&log).unwrap_or_default().contains("refused by the ACL")
    })
    .await;
    let line = std::fs::read_to_string(&log).unwrap().lines().find(|l| l.contains("refused by the ACL")).unwrap().to_string();
    let json: serde_json::Value = serde_json::from_str(&line).expect("JSON log line");
    assert_eq!(json["trace_id"], t3, "{line}");
    assert_eq!(json["span_id"].as_str().map(str::len), Some(16), "{line}");
    // The same line reached the collector as an OTLP log record (tracing.export_logs).
    let exported = async || {
        receiver
            .spans
            .lock()
            .unwrap()
            .iter()
            .any(|r| {
                r["log"].as_str().is_some_and(|b| b.contains("refused by the ACL"))
                    && r["attributes"]["trace_id"] == t3
                    && r["severity"] == "WARN"
            })
            .then_some(())
    };
    if within(Duration::from_secs(15), exported).await.is_none() {
        let logs: Vec<serde_json::Value> = receiver.spans.lock().unwrap().iter().filter(|r| r.get("log").is_some()).cloned().collect();
        let scrape = harness::http_get(p.http, "/metrics").await.1;
        let counters: Vec<&str> = scrape.lines().filter(|l| l.starts_with("gateway_log_records")).collect();
        panic!("no OTLP log record of the refusal; log records received: {logs:#?}; {counters:?}");
    }

    // Cloud down: the second message waits in the store across a gateway restart.
    let (t2, s2) = ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331");
    ingest.stop();
    publish_traced(&p, t2, s2, "21.6").await;
    let receive2 = receiver.wait_for(t2, "mqtt publish").await;
    receiver.wait_for(t2, "store commit").await;
    // The forwarder's failure lines name the batch's first message's trace (its forward span).
    poll_until("a forward failure logged with the message's trace id", Duration::from_secs(10), || {
        std::fs::read_to_string(&log).unwrap_or_default().lines().any(|l| {
            l.contains("Forward failed")
                && serde_json::from_str::<serde_json::Value>(l).is_ok_and(|j| j["trace_id"] == t2 && j["span_id"] != "")
        })
    })
    .await;
    assert_eq!(p.terminate(), Some(0));
    ingest.restart().await;
    let p2 = Process::start(dir.path(), &config, mqtt_addr, http_addr).await;
    poll_until("delivered after the restart", Duration::from_secs(20), || ingest.accepted().len() == 2).await;
    let delivered = receiver.in_trace(t2).into_iter().filter(|s| s["name"] == "forward").collect::<Vec<_>>();
    let forward2 = receiver.wait_for(t2, "forward").await;
    assert_eq!(
        forward2["parent_span_id"], receive2["span_id"],
        "the forward span after the restart joins the stored trace: {delivered:#?}"
    );
    assert!(ingest.traceparents().iter().any(|h| h.contains(t2)), "{:?}", ingest.traceparents());
    drop(p2);
}

/// The spans of one topic's messages (each message gets its own trace when started by ratio).
fn spans_named(receiver: &Receiver, name: &str, trace_ids: &[String]) -> Vec<serde_json::Value> {
    receiver.spans.lock().unwrap().iter().filter(|s| s["name"] == name && trace_ids.iter().any(|t| s["trace_id"] == *t)).cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn span_attributes_and_status_the_ratio_sampler_and_the_drop_path() {
    // OpenTelemetry status codes in OTLP: 0 unset, 1 ok, 2 error.
    const OK: i64 = 1;
    const ERROR: i64 = 2;
    let receiver = start_receiver();
    let dir = util::temp_dir();
    let ingest = IngestServer::start().await;
    let (mqtt_addr, http_addr) = loopback_ports();
    let mqtt = mqtt_addr.port();
    let base = |ratio: f64, endpoint: u16, queue: usize| {
        traced_config(
            &dir,
            &ingest,
            mqtt_addr,
            http_addr,
            &format!("otlp_endpoint = \"http://127.0.0.1:{endpoint}\"\nsample_ratio = {ratio}\nqueue_size = {queue}"),
        )
    };
    let publish = |payload: &'static str| async move {
        let port = mqtt.to_string();
        let out =
            util::mosquitto_pub(&["-h", "127.0.0.1", "-p", &port, "-q", "1", "-i", "dev-r", "-t", "devices/dev-r/t", "-m", payload]).await;
        assert!(out.status.success(), "{out:?}");
    };

    // Ratio 1: a message without traceparent starts a trace of its own. The cloud answers 503
    // first (a failed forward), then takes it.
    ingest.set_mode(crate::ingest::Mode::Fail(503));
    let mut p = Process::start(dir.path(), &base(1.0, receiver.port, 4096), mqtt_addr, http_addr).await;
    publish("sampled").await;
    let receive = within(Duration::from_secs(15), async || {
        let spans = receiver.spans.lock().unwrap();
        spans.iter().find(|s| s["name"] == "mqtt publish" && s["attributes"]["gateway.device"] == "dev-r").cloned()
    });
    let receive = receive.await.expect("no receive span for a message started by ratio 1");
    let trace = vec![receive["trace_id"].as_str().unwrap().to_string()];
    assert_eq!(receive["parent_span_id"], "", "a root span");
    assert_eq!(receive["attributes"]["messaging.system"], "mqtt");
    assert_eq!(receive["attributes"]["messaging.destination.name"], "devices/dev-r/t");
    assert_eq!(receive["attributes"]["gateway.protocol"], "v3");
    assert_eq!(receive["status"]["code"], OK, "{receive}");
    poll_until("a failed forward span", Duration::from_secs(15), || {
        spans_named(&receiver, "forward", &trace).iter().any(|s| s["status"]["code"] == ERROR && s["status"]["message"] == "http_5xx")
    })
    .await;
    let post = spans_named(&receiver, "http POST", &trace);
    assert!(post.iter().any(|s| s["attributes"]["http.response.status_code"] == 503), "{post:#?}");
    ingest.set_mode(crate::ingest::Mode::Ok);
    poll_until("delivered", Duration::from_secs(15), || ingest.accepted().len() == 1).await;
    let key = ingest.accepted()[0].key.clone();
    poll_until("an ok forward span", Duration::from_secs(15), || {
        spans_named(&receiver, "forward", &trace)
            .iter()
            .any(|s| s["status"]["code"] == OK && s["attributes"]["messaging.message.id"] == key.as_str())
    })
    .await;
    let commit = spans_named(&receiver, "store commit", &trace);
    assert_eq!(commit.len(), 1, "{commit:#?}");
    assert_eq!(commit[0]["attributes"]["messaging.message.id"], key.as_str());
    assert_eq!(p.terminate(), Some(0));

    // Ratio 0: without a traceparent nothing is traced.
    let before = receiver.spans.lock().unwrap().len();
    let mut p = Process::start(dir.path(), &base(0.0, receiver.port, 4096), mqtt_addr, http_addr).await;
    publish("unsampled").await;
    poll_until("delivered", Duration::from_secs(15), || ingest.accepted().len() == 2).await;
    tokio::time::sleep(Duration::from_millis(2500)).await; // two export periods
    let new: Vec<serde_json::Value> = receiver.spans.lock().unwrap()[before..].to_vec();
    assert!(new.is_empty(), "spans with sample_ratio 0 and no traceparent: {new:#?}");
    assert_eq!(p.terminate(), Some(0));

    // The collector is down and the queue holds one span: spans are dropped and counted,
    // every publish is still acknowledged and delivered.
    let down = util::free_port();
    let p = Process::start(dir.path(), &base(1.0, down, 1), mqtt_addr, http_addr).await;
    for payload in ["d1", "d2", "d3", "d4", "d5"] {
        publish(payload).await;
    }
    poll_until("delivered", Duration::from_secs(15), || ingest.accepted().len() == 7).await;
    let dropped = || async { harness::sample(&harness::http_get(p.http, "/metrics").await.1, "gateway_trace_spans_dropped_total") };
    if within(Duration::from_secs(20), async || (dropped().await >= 5.0).then_some(())).await.is_none() {
        panic!("spans not counted as dropped: {}", dropped().await);
    }
    println!("collector down, queue 1: {} spans dropped, 5/5 messages delivered", dropped().await);
}
