//! The MQTT bridge sink against a real upstream mosquitto: every stored message arrives under
//! the topic prefix with its key, device and payload; an upstream that goes away mid-stream
//! gets everything that was stored meanwhile once it is back (the gateway restarted in between
//! too), nothing lost, duplicates only under the same key.

use std::collections::HashMap;
use std::time::Duration;

use crate::broker::Sub;
use crate::harness::{self, Extra};
use crate::ingest::IngestServer;
use crate::util::OutputWithin;
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
    assert!(first[0].contains("topic:devices/d1/t"), "the topic as the device sent it: {first:?}");
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

/// `mqtts://` with mTLS and a user name and password: the upstream mosquitto asks for a client
/// certificate from the test CA and checks the password; the bridge presents the gateway's
/// `tls_cert` and delivers, under the topic its `topic_rewrite` rule gives. A bridge that trusts another CA refuses the upstream's certificate:
/// nothing goes up, the failures are counted as `connect`, and the message stays stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bridge_speaks_mtls_with_a_password_and_refuses_an_untrusted_upstream() {
    let dir = util::temp_dir();
    let pki = crate::trust::TestPki::new(dir.path());
    let p = |name: &str| pki.path(name).display().to_string();
    let passwords = dir.path().join("passwords");
    let made = std::process::Command::new(util::require("mosquitto_passwd"))
        .args(["-c", "-b", &passwords.display().to_string(), "site-a", "s3cret"])
        .output_within()
        .expect("mosquitto_passwd");
    assert!(made.status.success(), "{made:?}");
    let (tls_port, plain_port) = (free_port(), free_port());
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            // `user root`: mosquitto started as root keeps it (else it runs as `mosquitto`, which
            // cannot read the test's 0600 key files); ignored when not started as root.
            "user root\nallow_anonymous false\npassword_file {}\npersistence false\n\
             listener {tls_port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\n\
             listener {plain_port} 127.0.0.1\n",
            passwords.display(),
            p("ca.pem"),
            p("server.pem"),
            p("server.key"),
        ),
    )
    .unwrap();
    let mosquitto = std::process::Command::new(util::require("mosquitto"))
        .arg("-c")
        .arg(&conf)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("mosquitto");
    let _mosquitto = util::Killed(mosquitto);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], plain_port));
    poll_until("mosquitto listening", WAIT, || std::net::TcpStream::connect(addr).is_ok()).await;
    let watcher = Sub::start(plain_port, &["-V", "mqttv5", "-u", "site-a", "-P", "s3cret", "-t", "site-a/#", "-F", "%t %p %P"]).await;
    let ingest = IngestServer::start().await;
    let sink = |ca: &str| {
        format!(
            "\n[[sinks]]\nname = \"upstream\"\nkind = \"mqtt\"\nurl = \"mqtts://site-a:s3cret@localhost:{tls_port}\"\ntopic_prefix = \"site-a/\"\n\
             topic_rewrite = [{{ filter = \"devices/+/t\", to = \"site-a/by-device/{{1}}\" }}]\n\
             tls_ca = \"{ca}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\ntimeout_ms = 2000\nbackoff_initial_ms = 20\nbackoff_max_ms = 300\n",
            p("dev-a.pem"),
            p("dev-a.key"),
        )
    };
    let gw = harness::start(&dir.path().join("data"), &ingest.url(), &Extra { sink: sink(&p("ca.pem")), ..Default::default() }).await;
    util::publish_one(gw.mqtt_addr, "over mTLS").await;
    poll_until("the message upstream over mTLS", WAIT, || watcher.messages().iter().any(|l| l.contains(" over mTLS "))).await;
    let line = watcher.messages().into_iter().find(|l| l.contains(" over mTLS ")).unwrap();
    assert!(line.starts_with("site-a/by-device/dev-1 over mTLS ") && line.contains("idempotency-key:"), "rewritten topic, key: {line}");
    assert!(line.contains("topic:devices/dev-1/t"), "the original topic travels along: {line}");
    gw.stop().await;

    // Trusting another CA: the upstream's server certificate is refused.
    let other = pki.path("other/ca.pem").display().to_string();
    let gw = harness::start(&dir.path().join("data2"), &ingest.url(), &Extra { sink: sink(&other), ..Default::default() }).await;
    util::publish_one(gw.mqtt_addr, "untrusted").await;
    let failing = util::within(WAIT, async || {
        let text = harness::http_get(gw.http_addr, "/metrics").await.1;
        let n: f64 = text
            .lines()
            .find(|l| l.starts_with("gateway_forward_errors_total{") && l.contains("sink=\"upstream\"") && l.contains("kind=\"connect\""))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        (n >= 2.0).then_some(())
    })
    .await;
    assert!(failing.is_some(), "connect failures counted against an untrusted upstream");
    assert!(!watcher.messages().iter().any(|l| l.contains("untrusted")), "{:?}", watcher.messages());
    let backlog = harness::http_get(gw.http_addr, "/metrics").await.1;
    assert!(backlog.lines().any(|l| l == "gateway_backlog_messages 1"), "the message stays stored");
    gw.stop().await;
}
