//! The MQTT bridge sink against a real upstream mosquitto: every stored message arrives under
//! the topic prefix with its key, device and payload; an upstream that goes away mid-stream
//! gets everything that was stored meanwhile once it is back (the gateway restarted in between
//! too), nothing lost, duplicates only under the same key.

use std::collections::HashMap;
use std::time::Duration;

use crate::broker::Sub;
use crate::harness::{self, Extra};
use crate::ingest::IngestServer;
use crate::util::{self, Mosquitto, free_port, poll_until};

const WAIT: Duration = Duration::from_secs(30);

/// `topic payload idempotency-key:K device:D` lines to (payload -> keys seen).
fn keys_by_payload(lines: &[String]) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for line in lines {
        let mut parts = line.split(' ');
        let (_topic, payload) = (parts.next().unwrap_or(""), parts.next().unwrap_or("").to_string());
        let key = parts.find_map(|p| p.strip_prefix("idempotency-key:")).unwrap_or("").to_string();
        out.entry(payload).or_default().push(key);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bridge_delivers_every_message_with_its_key_also_across_an_upstream_restart() {
    let dir = util::temp_dir();
    let upstream_dir = dir.path().join("upstream");
    std::fs::create_dir_all(&upstream_dir).unwrap();
    let port = free_port();
    let upstream = Mosquitto::start_at(&upstream_dir, port).await;
    let cloud = ["-V", "mqttv5", "-i", "cloud", "-q", "1", "-t", "site-a/#", "-F", "%t %p %P"];
    let watcher = Sub::start(port, &cloud).await;
    let ingest = IngestServer::start().await;
    let sink = format!(
        "\n[[sinks]]\nname = \"upstream\"\nkind = \"mqtt\"\nurl = \"mqtt://127.0.0.1:{port}\"\ntopic_prefix = \"site-a/\"\ntimeout_ms = 2000\nbackoff_initial_ms = 20\nbackoff_max_ms = 300\n"
    );
    let gw = harness::start(&dir.path().join("data"), &ingest.url(), &Extra { sink: sink.clone(), ..Default::default() }).await;
    let gw_port = gw.mqtt_addr.port().to_string();
    let publish = async |from: usize, to: usize| {
        for i in from..to {
            let out = util::mosquitto_pub(&[
                "-h",
                "127.0.0.1",
                "-p",
                &gw_port,
                "-q",
                "1",
                "-i",
                "d1",
                "-t",
                "devices/d1/t",
                "-m",
                &format!("m{i:02}"),
            ])
            .await;
            assert!(out.status.success(), "{out:?}");
        }
    };
    publish(0, 10).await;
    poll_until("10 messages upstream", WAIT, || keys_by_payload(&watcher.messages()).len() >= 10).await;
    let first = watcher.messages();
    assert!(first[0].starts_with("site-a/devices/d1/t m00 ") && first[0].contains("device:d1"), "{first:?}");
    // The upstream goes away; more is stored meanwhile (the bridge retries); the gateway stops
    // with its backlog; the upstream and its subscriber come back; the gateway starts again.
    upstream.terminate();
    drop(watcher);
    publish(10, 20).await;
    gw.stop().await;
    let _upstream = Mosquitto::start_at(&upstream_dir, port).await;
    let watcher = Sub::start(port, &cloud).await;
    let gw = harness::start(&dir.path().join("data"), &ingest.url(), &Extra { sink, ..Default::default() }).await;
    let seen =
        crate::util::within(WAIT, async || (keys_by_payload(&[first.clone(), watcher.messages()].concat()).len() >= 20).then_some(()))
            .await;
    assert!(seen.is_some(), "the rest upstream; the cloud saw after the restart: {:?}", watcher.all());
    let all = keys_by_payload(&[first, watcher.messages()].concat());
    for i in 0..20 {
        let keys = &all[&format!("m{i:02}")];
        assert!(!keys.is_empty() && !keys[0].is_empty(), "m{i:02} arrived with its key: {keys:?}");
        assert!(keys.iter().all(|k| k == &keys[0]), "m{i:02}: a duplicate carries the same key: {keys:?}");
    }
    let distinct: std::collections::HashSet<&String> = all.values().map(|k| &k[0]).collect();
    assert_eq!(distinct.len(), 20, "one key per message");
    gw.stop().await;
}

/// The downlink: the bridge subscribes upstream (`downlink`), and what arrives goes to local
/// subscribers under the topic without `topic_prefix`, ACL-checked as the downlink identity
/// (`api`, which this ACL lets send `devices/+/cmd/#` only). Its upstream session is
/// persistent: a command sent while the gateway is stopped arrives after it starts again (here
/// into a local persistent session, so it waits for its client too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bridge_downlink_delivers_upstream_commands_locally_within_the_acl_and_across_a_restart() {
    let dir = util::temp_dir();
    let upstream_dir = dir.path().join("upstream");
    std::fs::create_dir_all(&upstream_dir).unwrap();
    let upstream = Mosquitto::start(&upstream_dir).await;
    let ingest = IngestServer::start().await;
    let acl = "[[allow]]\nidentities = [\"*\"]\npublish = [\"devices/%u/#\"]\nsubscribe = [\"#\"]\n\n[[allow]]\nidentities = [\"api\"]\npublish = [\"devices/+/cmd/#\"]\n";
    let mut extra = crate::broker::extra(dir.path(), acl, "");
    extra.sink = format!(
        "\n[[sinks]]\nname = \"upstream\"\nkind = \"mqtt\"\nurl = \"mqtt://127.0.0.1:{}\"\ntopic_prefix = \"site-a/\"\ndownlink = [\"site-a/devices/+/cmd/#\", \"site-a/other/#\"]\ntimeout_ms = 2000\nbackoff_initial_ms = 20\nbackoff_max_ms = 300\n",
        upstream.port
    );
    let gw = harness::start(&dir.path().join("data"), &ingest.url(), &extra).await;
    let local = gw.mqtt_addr.port();
    let sub_args = ["-i", "dev-1", "-c", "-q", "1", "-t", "#", "-v"];
    let sub = Sub::start(local, &sub_args).await;
    let up = |topic: &'static str, payload: String| {
        let port = upstream.port.to_string();
        async move {
            let out = util::mosquitto_pub(&["-h", "127.0.0.1", "-p", &port, "-i", "cloud", "-q", "1", "-t", topic, "-m", &payload]).await;
            assert!(out.status.success(), "{out:?}");
        }
    };
    // The bridge connects within a second of the start: probe until a command comes through.
    let mut through = false;
    for i in 0..20 {
        up("site-a/devices/dev-1/cmd/probe", format!("p{i}")).await;
        if util::within(Duration::from_millis(500), async || {
            sub.messages().iter().any(|l| l.starts_with("devices/dev-1/cmd/probe ")).then_some(())
        })
        .await
        .is_some()
        {
            through = true;
            break;
        }
    }
    assert!(through, "no downlink message arrived: {:?}", sub.all());
    up("site-a/other/x", "refused".into()).await;
    up("site-a/devices/dev-1/cmd/valve", "open".into()).await;
    poll_until("the command, locally", WAIT, || sub.messages().iter().any(|l| l == "devices/dev-1/cmd/valve open")).await;
    assert!(!sub.messages().iter().any(|l| l.contains("refused")), "outside the downlink identity's ACL: {:?}", sub.messages());
    // Stored like a device's publish: the sinks see it too.
    poll_until("the command at the cloud", WAIT, || ingest.accepted().iter().any(|m| m.topic == "devices/dev-1/cmd/valve")).await;
    // A command whose commit fails is not acknowledged upstream: it comes again and is
    // delivered once the store takes writes (before: acknowledged and lost).
    gw.storage.get().expect("storage actor").cast(edge_gateway_actors::storage::StorageMsg::InjectFaults(5)).unwrap();
    up("site-a/devices/dev-1/cmd/valve", "half".into()).await;
    poll_until("the command whose first commit failed", WAIT, || sub.messages().iter().any(|l| l == "devices/dev-1/cmd/valve half")).await;
    drop(sub);
    gw.stop().await;
    up("site-a/devices/dev-1/cmd/valve", "close".into()).await;
    let gw = harness::start(&dir.path().join("data"), &ingest.url(), &extra).await;
    let sub = Sub::start(gw.mqtt_addr.port(), &sub_args).await;
    poll_until("the command sent while the gateway was stopped", WAIT, || {
        sub.messages().iter().any(|l| l == "devices/dev-1/cmd/valve close")
    })
    .await;
    gw.stop().await;
}
