//! Access control beyond certificates: password files, ACL reloads, connection limits, the TLS
//! handshake timeout, expiry gauges and the renewal command.

use std::time::Duration;

use tokio::io::AsyncReadExt;

use crate::harness::{self, Extra};
use crate::ingest::IngestServer;
use edge_gateway::trust::pki;

use crate::trust::{TestPki, start_tls};
use crate::util::{self, eventually, poll_until};

async fn scrape(gw: &edge_gateway::Gateway) -> String {
    harness::http_get(gw.http_addr, "/metrics").await.1
}

async fn pub_plain(gw: &edge_gateway::Gateway, extra: &[&str]) -> (i32, String) {
    let port = gw.mqtt_addr.port().to_string();
    let mut args = vec!["-h", "127.0.0.1", "-p", &port, "-q", "1", "-m", "x"];
    args.extend(extra);
    let out = util::mosquitto("mosquitto_pub", &args).await;
    (out.status.code().unwrap_or(-1), util::text(&out))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_listener_devices_need_a_password_from_the_hash_file_which_reloads_on_change() {
    let dir = util::temp_dir();
    let pw = dir.path().join("passwords");
    // A file written by the real mosquitto_passwd: its $7$ lines are our format.
    let made =
        std::process::Command::new(util::require("mosquitto_passwd")).args(["-c", "-b"]).arg(&pw).args(["meter-1", "s3cret"]).status();
    assert!(made.expect("run mosquitto_passwd").success());
    let ingest = IngestServer::start().await;
    let auth = format!("plain = \"password\"\npassword_file = \"{}\"", pw.display());
    let extra = Extra { auth, tls: "check_interval_secs = 1\nreload_debounce_ms = 100".into(), ..Default::default() };
    let gw = harness::start(&dir.path().join("data"), &ingest.url(), &extra).await;

    let ok = ["-i", "meter-1", "-u", "meter-1", "-P", "s3cret", "-t", "devices/meter-1/kwh"];
    assert_eq!(pub_plain(&gw, &ok).await.0, 0);
    let (_, out) = pub_plain(&gw, &["-V", "mqttv5", "-i", "meter-1", "-u", "meter-1", "-P", "wrong", "-t", "devices/meter-1/kwh"]).await;
    assert!(out.contains("Bad User Name or Password"), "{out}");
    let (_, out) = pub_plain(&gw, &["-i", "meter-1", "-u", "meter-1", "-P", "wrong", "-t", "devices/meter-1/kwh"]).await;
    assert!(out.contains("bad user name or password"), "{out}");
    let (_, out) = pub_plain(&gw, &["-i", "meter-1", "-t", "devices/meter-1/kwh"]).await;
    assert!(out.contains("bad user name or password"), "no credentials: {out}");
    let m = scrape(&gw).await;
    assert_eq!(harness::sample(&m, "gateway_auth_failures_total{reason=\"bad_password\"}"), 2.0, "{m}");
    assert_eq!(harness::sample(&m, "gateway_auth_failures_total{reason=\"no_credentials\"}"), 1.0, "{m}");

    // `edge-gateway passwd` adds a user; the running gateway picks the file up.
    let mut child = std::process::Command::new(harness::binary())
        .arg("passwd")
        .arg(&pw)
        .arg("meter-2")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("edge-gateway passwd");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"other-secret\n").unwrap();
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    let new_user = ["-i", "meter-2", "-u", "meter-2", "-P", "other-secret", "-t", "devices/meter-2/kwh"];
    eventually("the new user was never accepted", Duration::from_secs(10), async || pub_plain(&gw, &new_user).await.0 == 0).await;
    assert_eq!(pub_plain(&gw, &ok).await.0, 0, "the old user still works");
    poll_until("messages forwarded", Duration::from_secs(10), || ingest.accepted().len() >= 3).await;
    assert!(ingest.accepted().iter().any(|m| m.device == "meter-2"), "identity is the username");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_acl_file_applies_to_the_next_publish_and_a_broken_one_keeps_the_old_rules() {
    let dir = util::temp_dir();
    let acl = dir.path().join("acl.toml");
    std::fs::write(&acl, "default_namespace = true\n").unwrap();
    let ingest = IngestServer::start().await;
    let auth = format!("plain = \"anonymous\"\nacl_file = \"{}\"", acl.display());
    let extra = Extra { auth, tls: "check_interval_secs = 1\nreload_debounce_ms = 100".into(), ..Default::default() };
    let gw = harness::start(&dir.path().join("data"), &ingest.url(), &extra).await;
    let site = ["-V", "mqttv5", "-i", "gw-probe", "-t", "site/status"];
    let (_, out) = pub_plain(&gw, &site).await;
    assert!(out.contains("Not authorized"), "outside the namespace before the change: {out}");

    let write = |text: &str| {
        std::fs::write(dir.path().join("acl.tmp"), text).unwrap();
        std::fs::rename(dir.path().join("acl.tmp"), &acl).unwrap();
    };
    write("[[allow]]\nidentities = [\"gw-probe\"]\npublish = [\"site/#\"]\n");
    eventually("the new rule never applied", Duration::from_secs(10), async || !(pub_plain(&gw, &site).await.1.contains("Not authorized")))
        .await;
    write("[[allow]]\nidentities = [\"gw-probe\"]\npublish = [\"site/#/x\"]\n"); // '#' not last: invalid
    let rejected = "gateway_reloads_total{target=\"acl\",result=\"rejected\"}";
    eventually("the broken ACL was never refused", Duration::from_secs(10), async || harness::sample(&scrape(&gw).await, rejected) >= 1.0)
        .await;
    let (_, out) = pub_plain(&gw, &site).await;
    assert!(!out.contains("Not authorized"), "the previous rules stay: {out}");
    gw.stop().await;
}

/// Open `n` raw TCP connections.
async fn connect_n(addr: std::net::SocketAddr, n: usize) -> Vec<tokio::net::TcpStream> {
    let mut sockets = Vec::new();
    for _ in 0..n {
        sockets.push(tokio::net::TcpStream::connect(addr).await.expect("connect"));
    }
    sockets
}

/// How many of `sockets` the gateway closed (refused), and the open ones. The gate counts a
/// refusal just before it closes the socket, so once the count is final the refused ones are
/// closed or about to be.
async fn refused_of(sockets: Vec<tokio::net::TcpStream>) -> (usize, Vec<tokio::net::TcpStream>) {
    // One deadline for all: an open socket must not reach the gateway's CONNECT timeout here.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(200);
    let mut open = Vec::new();
    let mut refused = 0;
    for mut s in sockets {
        let mut buf = [0u8; 1];
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => refused += 1,
            _ => open.push(s),
        }
    }
    (refused, open)
}

/// The refused-connection count for `reason` on the plain listener.
async fn refused_count(gw: &edge_gateway::Gateway, reason: &str) -> f64 {
    harness::sample(&scrape(gw).await, &format!("gateway_connections_refused_total{{listener=\"plain\",reason=\"{reason}\"}}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limits_refuse_and_count_before_any_mqtt_work() {
    let dir = util::temp_dir();
    let ingest = IngestServer::start().await;
    let extra = Extra { mqtt: "max_connections = 3\nmax_new_connections_per_source = 0", ..Default::default() };
    let gw = harness::start(&dir.path().join("data"), &ingest.url(), &extra).await;
    let sockets = connect_n(gw.mqtt_addr, 5).await;
    eventually("2 refusals counted", Duration::from_secs(10), async || refused_count(&gw, "max_connections").await >= 2.0).await;
    let (refused, open) = refused_of(sockets).await;
    assert_eq!((refused, open.len()), (2, 3));
    assert_eq!(refused_count(&gw, "max_connections").await, 2.0);
    // Closed sockets give their slots back: three fit again.
    drop(open);
    let mut again = Vec::new();
    for _ in 0..50 {
        let sockets = connect_n(gw.mqtt_addr, 3).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (refused, open) = refused_of(sockets).await;
        if refused == 0 {
            again = open;
            break;
        }
        drop(open);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(again.len(), 3, "the slots of closed sockets were not given back");
    drop(again);
    gw.stop().await;

    let dir = util::temp_dir();
    let extra = Extra { mqtt: "max_connections = 0\nmax_new_connections_per_source = 5", ..Default::default() };
    let gw = harness::start(&dir.path().join("data"), &ingest.url(), &extra).await;
    let sockets = connect_n(gw.mqtt_addr, 12).await;
    eventually("5 refusals counted", Duration::from_secs(10), async || refused_count(&gw, "rate_limited").await >= 5.0).await;
    // Then until the count stops moving: every socket of the burst has been judged.
    let mut counted = refused_count(&gw, "rate_limited").await;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = refused_count(&gw, "rate_limited").await;
        if now == counted {
            break;
        }
        counted = now;
    }
    let (refused, _open) = refused_of(sockets).await;
    assert!(refused >= 5, "only {refused} of 12 refused at 5/s");
    assert_eq!(counted, refused as f64);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_socket_on_the_tls_port_is_closed_after_the_handshake_timeout() {
    let root = util::temp_dir();
    let pki = TestPki::new(root.path());
    let ingest = IngestServer::start().await;
    let gw = start_tls(root.path(), &ingest, &pki, "", "handshake_timeout_secs = 1\n").await;
    let mut s = tokio::net::TcpStream::connect(gw.tls_addr.unwrap()).await.unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.expect("closed in time").unwrap_or(0);
    assert_eq!(n, 0);
    assert!(started.elapsed() >= Duration::from_millis(900), "closed too early: {:?}", started.elapsed());
    let m = scrape(&gw).await;
    assert_eq!(harness::sample(&m, "gateway_tls_handshake_failures_total{reason=\"handshake_timeout\"}"), 1.0, "{m}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_inside_the_renewal_window_run_the_renewal_command_and_expiry_is_exported() {
    let root = util::temp_dir();
    let pki = TestPki::new(root.path());
    let ingest = IngestServer::start().await;
    let marker = root.path().join("renewed");
    // The server certificate (400 days) is inside a 1000-day window from the start.
    let renew =
        format!("renew_before_days = 1000\nrenew_command = [\"sh\", \"-c\", \"echo $EDGE_GATEWAY_CERT >> {}\"]\n", marker.display());
    let gw = start_tls(root.path(), &ingest, &pki, "", &renew).await;
    poll_until("renewal command ran", Duration::from_secs(10), || marker.exists()).await;
    let ok = "gateway_cert_renewals_total{result=\"ok\"}";
    eventually("renewal not counted", Duration::from_secs(10), async || harness::sample(&scrape(&gw).await, ok) >= 1.0).await;
    let which = std::fs::read_to_string(&marker).unwrap();
    // The soonest to expire is the test CRL (next update in 30 days; the server certificate: 400).
    assert_eq!(which.lines().next(), Some("crl"), "the soonest-expiring item is named: {which}");
    let m = scrape(&gw).await;
    let not_after = harness::sample(&m, "gateway_certificate_expiry_timestamp_seconds{cert=\"server\"}");
    let expected = edge_gateway::trust::tls::unix_now() as f64 + 399.0 * 86_400.0;
    assert!((not_after - expected).abs() < 86_400.0, "server not-after {not_after} vs ~{expected}");
    assert!(harness::sample(&m, "gateway_certificate_expiry_timestamp_seconds{cert=\"ca\"}") > not_after);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_connected_device_ends_its_session_at_its_next_publish() {
    use tokio::io::AsyncWriteExt;
    let root = util::temp_dir();
    let pki = TestPki::new(root.path());
    let ingest = IngestServer::start().await;
    let gw = start_tls(root.path(), &ingest, &pki, "", "").await;
    let port = gw.tls_addr.unwrap().port().to_string();
    let (cert, key, ca) = (pki.path("dev-b.pem"), pki.path("dev-b.key"), pki.path("ca.pem"));
    let mut child = tokio::process::Command::new(util::require("mosquitto_pub"))
        .args(["-h", "localhost", "-p", &port, "-q", "1", "-l", "-V", "mqttv5", "-i", "dev-b", "-t", "devices/dev-b/t"])
        .args(["--cafile", ca.to_str().unwrap(), "--cert", cert.to_str().unwrap(), "--key", key.to_str().unwrap()])
        .stdin(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn mosquitto_pub");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"before-1\nbefore-2\n").await.unwrap();
    poll_until("messages before the revocation", Duration::from_secs(10), || ingest.accepted().len() == 2).await;

    pki::make_crl(&pki.dir, &pki.path("crl.pem"), &[pki.path("stolen.pem"), pki.path("dev-b.pem")], 30).unwrap();
    let reloaded = "gateway_reloads_total{target=\"device_tls\",result=\"ok\"}";
    eventually("the new CRL was never loaded", Duration::from_secs(10), async || harness::sample(&scrape(&gw).await, reloaded) >= 1.0)
        .await;
    let _ = stdin.write_all(b"after-1\nafter-2\n").await;
    let ended = "gateway_auth_failures_total{reason=\"cert_revoked_in_session\"}";
    eventually("the revoked device's session went on", Duration::from_secs(10), async || harness::sample(&scrape(&gw).await, ended) >= 1.0)
        .await;
    let _ = child.kill().await;
    // Coming back is refused at the handshake.
    let again = util::mosquitto(
        "mosquitto_pub",
        &[
            "-h",
            "localhost",
            "-p",
            &port,
            "-q",
            "1",
            "-i",
            "dev-b",
            "-t",
            "devices/dev-b/t",
            "-m",
            "again",
            "--cafile",
            ca.to_str().unwrap(),
        ]
        .into_iter()
        .chain(["--cert", cert.to_str().unwrap(), "--key", key.to_str().unwrap()])
        .collect::<Vec<_>>(),
    )
    .await;
    assert!(!again.status.success());
    assert_eq!(harness::sample(&scrape(&gw).await, "gateway_tls_handshake_failures_total{reason=\"cert_revoked\"}"), 1.0);
    let payloads: Vec<String> = ingest.accepted().iter().map(|m| String::from_utf8_lossy(&m.payload_bytes()).into_owned()).collect();
    assert_eq!(payloads, ["before-1", "before-2"], "nothing after the revocation was accepted");
    gw.stop().await;
}
