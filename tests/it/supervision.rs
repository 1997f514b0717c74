//! The supervision tree under fire: killed actors restart per supervision.toml, nothing
//! acknowledged is lost, and exceeding the root's intensity ends the gateway.

use std::time::Duration;

use edge_gateway::Exit;
use edge_gateway_actors::session::{SessionsMsg, Which};
use edge_gateway_actors::supervisor::{SupervisionConfig, spec::DEFAULT_SUPERVISION_TOML};

use crate::harness::{self, Extra, http_get, sample};
use crate::ingest::IngestServer;
use crate::raw::{Raw, resilient_device};
use crate::util::{self, poll_until};

fn restarts(scrape: &str, supervisor: &str, child: &str) -> f64 {
    sample(scrape, &format!("gateway_actor_restarts_total{{supervisor=\"{supervisor}\",child=\"{child}\"}}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_storage_forwarder_and_sessions_under_load_loses_no_acknowledged_message() {
    let dir = util::temp_dir();
    let ingest = IngestServer::start().await;
    let gw = harness::start(dir.path(), &ingest.url(), &Extra::default()).await;
    let addr = gw.mqtt_addr;
    let devices: Vec<String> = (0..4).map(|i| format!("chaos-{i}")).collect();
    let mut tasks = Vec::new();
    for d in &devices {
        let d = d.clone();
        let payloads: Vec<String> = (0..1500).map(|i| format!("{d}-{i}")).collect();
        tasks.push(tokio::spawn(async move {
            let topic = format!("devices/{d}/t");
            resilient_device(addr, &d, &topic, payloads, 20, Duration::from_secs(120)).await
        }));
    }
    let health = gw.health.clone();
    let m = gw.metrics.clone();
    let progressed = |n: u64| {
        let m = m.clone();
        move || m.commits.get() >= n
    };
    poll_until("load under way", Duration::from_secs(20), progressed(20)).await;
    health.actor("root/storage").expect("storage running").kill();
    poll_until("storage restarted", Duration::from_secs(10), || health.actor("root/storage").is_some()).await;
    let c = m.commits.get();
    poll_until("commits continue", Duration::from_secs(20), progressed(c + 20)).await;
    health.actor("root/forwarders/forwarder:cloud").expect("forwarder running").kill();
    poll_until("forwarder restarted", Duration::from_secs(10), || health.actor("root/forwarders/forwarder:cloud").is_some()).await;
    // End every session: each connection closes, each device reconnects and resends.
    let sessions = gw.sessions.get().expect("sessions actor");
    let ended = sessions.call(|r| SessionsMsg::End(Which::All, r), Some(Duration::from_secs(5))).await.expect("call").expect("answered");
    for t in tasks {
        let acked = t.await.expect("device task");
        assert_eq!(acked.len(), 1500);
    }
    let expected: Vec<String> = devices.iter().flat_map(|d| (0..1500).map(move |i| format!("{d}-{i}"))).collect();
    let missing = || {
        let got: std::collections::HashSet<Vec<u8>> = ingest.accepted().iter().map(|m| m.payload_bytes()).collect();
        expected.iter().filter(|p| !got.contains(p.as_bytes())).cloned().collect::<Vec<_>>()
    };
    let waited = tokio::time::timeout(Duration::from_secs(60), async {
        while !missing().is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let lost = missing();
    assert!(waited.is_ok() && lost.is_empty(), "{} acknowledged messages never arrived, e.g. {:?}", lost.len(), &lost[..lost.len().min(5)]);
    let (_, scrape) = http_get(gw.http_addr, "/metrics").await;
    assert!(restarts(&scrape, "root", "storage") >= 1.0, "storage restart counted");
    assert!(restarts(&scrape, "root/forwarders", "forwarder:cloud") >= 1.0, "forwarder restart counted");
    assert!(
        sample(&scrape, "gateway_actor_exits_total{supervisor=\"root\",child=\"storage\",reason=\"killed\"}") >= 1.0,
        "the exit reason is exported: {scrape}"
    );
    assert!(ended > 0, "sessions were open");
    assert!(
        sample(&scrape, "gateway_mqtt_connections_closed_total{reason=\"session_ended\"}") >= 1.0,
        "killed sessions closed their connections"
    );
    let (status, _) = http_get(gw.http_addr, "/readyz").await;
    assert_eq!(status, 200, "ready again after the restarts");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_connection_with_the_same_client_id_takes_over() {
    let dir = util::temp_dir();
    let ingest = IngestServer::start().await;
    let gw = harness::start(dir.path(), &ingest.url(), &Extra::default()).await;
    let mut old = Raw::connect(gw.mqtt_addr, "twin", false).await;
    let mut new = Raw::connect(gw.mqtt_addr, "twin", true).await;
    old.expect_closed(Duration::from_secs(5)).await;
    new.publish("devices/twin/t", b"from the new one", 1).await;
    assert_eq!(new.expect_puback(1).await, 0);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exceeding_the_root_intensity_stops_the_gateway() {
    let dir = util::temp_dir();
    let ingest = IngestServer::start().await;
    let text = DEFAULT_SUPERVISION_TOML.replacen("intensity = 5", "intensity = 2", 1);
    let sup = SupervisionConfig::parse(&text).unwrap();
    assert_eq!(sup.root.intensity, 2);
    let gw = harness::start_with(dir.path(), &ingest.url(), &Extra::default(), sup).await;
    let health = gw.health.clone();
    let metrics = gw.metrics.clone();
    let killer = async {
        for i in 0..3 {
            poll_until("storage up", Duration::from_secs(10), || health.actor("root/storage").is_some()).await;
            let old = health.actor("root/storage").unwrap();
            old.kill();
            if i < 2 {
                let replaced = || health.actor("root/storage").is_some_and(|c| c.get_id() != old.get_id());
                poll_until("storage replaced", Duration::from_secs(10), replaced).await;
            }
        }
    };
    let run = tokio::time::timeout(Duration::from_secs(30), gw.run_until(std::future::pending()));
    let (exit, ()) = tokio::join!(run, killer);
    assert_eq!(exit.expect("the gateway exits by itself"), Exit::RootFailed);
    assert_eq!(
        metrics.supervisor_escalations.get_or_create(&edge_gateway_actors::metrics::SupervisorLabels { supervisor: "root".into() }).get(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_forwarders_supervisor_escalates_to_the_root_which_restarts_it() {
    let dir = util::temp_dir();
    let ingest = IngestServer::start().await;
    let text = DEFAULT_SUPERVISION_TOML.replacen("intensity = 10", "intensity = 1", 1);
    let sup = SupervisionConfig::parse(&text).unwrap();
    let gw = harness::start_with(dir.path(), &ingest.url(), &Extra::default(), sup).await;
    let health = gw.health.clone();
    let fwd = "root/forwarders/forwarder:cloud";
    for _ in 0..2 {
        poll_until("forwarder up", Duration::from_secs(10), || health.actor(fwd).is_some()).await;
        let old = health.actor(fwd).unwrap();
        old.kill();
        poll_until("forwarder replaced", Duration::from_secs(10), || health.actor(fwd).is_some_and(|c| c.get_id() != old.get_id())).await;
    }
    let (_, scrape) = http_get(gw.http_addr, "/metrics").await;
    assert_eq!(restarts(&scrape, "root", "forwarders"), 1.0);
    assert_eq!(sample(&scrape, "gateway_supervisor_escalations_total{supervisor=\"root/forwarders\"}"), 1.0);
    crate::pipeline::mosquitto_publish_to(gw.mqtt_addr, "after-escalation", 10, false).await;
    poll_until("messages still flow", Duration::from_secs(20), || ingest.unique_keys() >= 10).await;
    gw.stop().await;
}
