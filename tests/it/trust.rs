//! Trust: the mTLS listener, identities, ACLs and rotation, driven by mosquitto_pub/sub and
//! openssl s_client against a gateway with a dev PKI made by `edge_gateway::trust::pki`.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use edge_gateway::Gateway;
use edge_gateway::trust::pki::{self, LeafKind, LeafSpec, Validity};

use crate::harness::{self, Extra};
use crate::ingest::IngestServer;
use crate::util::OutputWithin;
use crate::util::{self, eventually, poll_until};

/// A dev PKI in a temp dir: CA, server, devices (good, expired, revoked) and a foreign CA.
pub struct TestPki {
    /// Where everything is.
    pub dir: PathBuf,
}

impl TestPki {
    /// CA, server cert for localhost/127.0.0.1, devices dev-a and dev-b, an expired `old`, a
    /// revoked `stolen` (in crl.pem), and `other/dev-a` from a second CA.
    pub fn new(root: &Path) -> TestPki {
        let dir = root.join("pki");
        pki::create_ca(&dir, "test CA", 3650, false).expect("CA");
        let p = TestPki { dir };
        p.server("server");
        for id in ["dev-a", "dev-b", "stolen"] {
            p.device(&p.dir, id, id, Validity { days: 30, not_before_days: -1 });
        }
        p.device(&p.dir, "old", "old", Validity { days: 1, not_before_days: -10 });
        pki::make_crl(&p.dir, &p.path("crl.pem"), &[p.path("stolen.pem")], 30).expect("CRL");
        let other = p.dir.join("other");
        pki::create_ca(&other, "test CA", 3650, false).expect("second CA");
        p.device(&other, "dev-a", "dev-a", Validity { days: 30, not_before_days: -1 });
        p
    }

    /// A file of the PKI.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Issue a server certificate for localhost and 127.0.0.1 to `<name>.pem/.key`.
    pub fn server(&self, name: &str) {
        let spec = LeafSpec {
            kind: LeafKind::Server,
            cn: "edge-gateway".into(),
            dns: vec!["localhost".into()],
            ips: vec!["127.0.0.1".parse().unwrap()],
            uris: Vec::new(),
            validity: Validity { days: 400, not_before_days: -1 },
        };
        pki::issue(&self.dir, &self.path(name), &spec).expect("server cert");
    }

    fn device(&self, ca_dir: &Path, name: &str, identity: &str, validity: Validity) {
        let spec = LeafSpec { kind: LeafKind::Device, cn: identity.into(), dns: Vec::new(), ips: Vec::new(), uris: Vec::new(), validity };
        pki::issue(ca_dir, &ca_dir.join(name), &spec).expect("device cert");
    }

    /// `[tls]` lines for this PKI.
    pub fn tls_section(&self, extra: &str) -> String {
        format!(
            "enabled = true\nlisten = \"127.0.0.1:0\"\ncert = \"{}\"\nkey = \"{}\"\nca = \"{}\"\ncrl = [\"{}\"]\n\
             reload_debounce_ms = 100\ncheck_interval_secs = 1\n{extra}",
            self.path("server.pem").display(),
            self.path("server.key").display(),
            self.path("ca.pem").display(),
            self.path("crl.pem").display(),
        )
    }
}

/// A gateway with only the mTLS listener (plus whatever `auth` says) and the default namespace.
pub async fn start_tls(root: &Path, ingest: &IngestServer, pki: &TestPki, auth: &str, tls_extra: &str) -> Gateway {
    let extra =
        Extra { mqtt: "plain = false", auth: format!("identity = \"cn\"\n{auth}"), tls: pki.tls_section(tls_extra), ..Default::default() };
    harness::start(&root.join("data"), &ingest.url(), &extra).await
}

/// mosquitto_pub/sub over mTLS as `device` (cert `<device>.pem` in `dir`), with extra args.
async fn mosq(client: &str, gw: &Gateway, dir: &Path, cert: Option<&str>, ca: &Path, args: &[&str]) -> (i32, String) {
    let port = gw.tls_addr.expect("tls listener").port().to_string();
    let (cert_file, key_file) = cert.map(|c| (dir.join(format!("{c}.pem")), dir.join(format!("{c}.key")))).unzip();
    let (cert_s, key_s) = (cert_file.map(|p| p.display().to_string()), key_file.map(|p| p.display().to_string()));
    let ca_s = ca.display().to_string();
    let mut all: Vec<&str> = vec!["-h", "localhost", "-p", &port, "--cafile", &ca_s];
    if let (Some(c), Some(k)) = (&cert_s, &key_s) {
        all.extend(["--cert", c.as_str(), "--key", k.as_str()]);
    }
    all.extend(args);
    let out: Output = util::mosquitto(client, &all).await;
    let text = util::text(&out);
    (out.status.code().unwrap_or(-1), text)
}

/// One row of the access matrix.
struct Case {
    name: &'static str,
    client: &'static str,
    /// Certificate name in the test PKI (`other/dev-a` for the foreign CA), or none.
    cert: Option<&'static str>,
    args: &'static [&'static str],
    /// Client output must contain this.
    says: &'static str,
    /// This series must grow by one.
    counted: &'static str,
}

const MATRIX: &[Case] = &[
    Case {
        name: "A publishes in its namespace (v3)",
        client: "mosquitto_pub",
        cert: Some("dev-a"),
        args: &["-i", "dev-a", "-t", "devices/dev-a/temp", "-q", "1", "-m", "a3"],
        says: "",
        counted: "gateway_tls_handshakes_total",
    },
    Case {
        name: "A publishes in its namespace (v5)",
        client: "mosquitto_pub",
        cert: Some("dev-a"),
        args: &["-V", "mqttv5", "-i", "dev-a", "-t", "devices/dev-a/temp", "-q", "1", "-m", "a5"],
        says: "",
        counted: "gateway_tls_handshakes_total",
    },
    Case {
        name: "A publishes in B's namespace (v5: PUBACK 0x87)",
        client: "mosquitto_pub",
        cert: Some("dev-a"),
        args: &["-V", "mqttv5", "-i", "dev-a", "-t", "devices/dev-b/temp", "-q", "1", "-m", "x"],
        says: "Not authorized",
        counted: "gateway_acl_denied_total{action=\"publish\",reason=\"no_rule\"}",
    },
    Case {
        name: "A publishes in B's namespace (v3: disconnect)",
        client: "mosquitto_pub",
        cert: Some("dev-a"),
        args: &["-i", "dev-a", "-t", "devices/dev-b/temp", "-q", "1", "-m", "x"],
        says: "connection was lost",
        counted: "gateway_acl_denied_total{action=\"publish\",reason=\"no_rule\"}",
    },
    Case {
        name: "A subscribes in B's namespace (v5)",
        client: "mosquitto_sub",
        cert: Some("dev-a"),
        args: &["-V", "mqttv5", "-i", "dev-a", "-t", "devices/dev-b/#", "-W", "3"],
        says: "denied",
        counted: "gateway_acl_denied_total{action=\"subscribe\",reason=\"no_rule\"}",
    },
    Case {
        name: "A subscribes to # at the root (v3)",
        client: "mosquitto_sub",
        cert: Some("dev-a"),
        args: &["-i", "dev-a", "-t", "#", "-W", "3"],
        says: "denied",
        counted: "gateway_acl_denied_total{action=\"subscribe\",reason=\"no_rule\"}",
    },
    Case {
        name: "A subscribes in its namespace (granted, times out waiting)",
        client: "mosquitto_sub",
        cert: Some("dev-a"),
        args: &["-V", "mqttv5", "-i", "dev-a", "-t", "devices/dev-a/cmd/#", "-W", "1"],
        says: "Timed out",
        counted: "gateway_tls_handshakes_total",
    },
    Case {
        name: "client id differs from the certificate (v5: 0x85)",
        client: "mosquitto_pub",
        cert: Some("dev-a"),
        args: &["-V", "mqttv5", "-i", "dev-b", "-t", "devices/dev-b/t", "-q", "1", "-m", "x"],
        says: "Client Identifier not valid",
        counted: "gateway_auth_failures_total{reason=\"client_id_mismatch\"}",
    },
    Case {
        name: "client id differs from the certificate (v3: code 2)",
        client: "mosquitto_pub",
        cert: Some("dev-a"),
        args: &["-i", "dev-b", "-t", "devices/dev-b/t", "-q", "1", "-m", "x"],
        says: "identifier rejected",
        counted: "gateway_auth_failures_total{reason=\"client_id_mismatch\"}",
    },
    Case {
        name: "no client certificate",
        client: "mosquitto_pub",
        cert: None,
        args: &["-i", "dev-a", "-t", "devices/dev-a/t", "-q", "1", "-m", "x"],
        says: "connection was lost",
        counted: "gateway_tls_handshake_failures_total{reason=\"no_client_cert\"}",
    },
    Case {
        name: "certificate from another CA",
        client: "mosquitto_pub",
        cert: Some("other/dev-a"),
        args: &["-i", "dev-a", "-t", "devices/dev-a/t", "-q", "1", "-m", "x"],
        says: "connection was lost",
        counted: "gateway_tls_handshake_failures_total{reason=\"cert_unknown_issuer\"}",
    },
    Case {
        name: "expired certificate",
        client: "mosquitto_pub",
        cert: Some("old"),
        args: &["-i", "old", "-t", "devices/old/t", "-q", "1", "-m", "x"],
        says: "connection was lost",
        counted: "gateway_tls_handshake_failures_total{reason=\"cert_expired\"}",
    },
    Case {
        name: "revoked certificate (CRL)",
        client: "mosquitto_pub",
        cert: Some("stolen"),
        args: &["-i", "stolen", "-t", "devices/stolen/t", "-q", "1", "-m", "x"],
        says: "connection was lost",
        counted: "gateway_tls_handshake_failures_total{reason=\"cert_revoked\"}",
    },
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_matrix_refuses_every_wrong_device_with_its_reason_and_lets_the_right_ones_in() {
    let root = util::temp_dir();
    let pki = TestPki::new(root.path());
    let ingest = IngestServer::start().await;
    let gw = start_tls(root.path(), &ingest, &pki, "", "").await;
    let mut failures = Vec::new();
    for case in MATRIX {
        let before = harness::sample(&harness::http_get(gw.http_addr, "/metrics").await.1, case.counted);
        let (code, out) = mosq(case.client, &gw, &pki.dir, case.cert, &pki.path("ca.pem"), case.args).await;
        let scrape = harness::http_get(gw.http_addr, "/metrics").await.1;
        let after = harness::sample(&scrape, case.counted);
        // An allowed publish must also exit 0 (mosquitto exits 0 on a v5 PUBACK refusal too,
        // which is why refusals are judged by their message and the gateway's counter).
        let ok = out.contains(case.says) && after == before + 1.0 && (!case.says.is_empty() || code == 0);
        println!("{:<62} {:<5} exit {code:<3} {} {} -> {}", case.name, if ok { "ok" } else { "WRONG" }, case.counted, before, after);
        if !ok {
            failures.push(format!("{}: exit {code}, output {out:?}, {} {before} -> {after}", case.name, case.counted));
        }
    }
    println!("access matrix: {}/{} cases as expected", MATRIX.len() - failures.len(), MATRIX.len());
    assert!(failures.is_empty(), "{failures:#?}");
    // Only the two allowed publishes reached the cloud, with the certificate's identity.
    poll_until("allowed messages forwarded", Duration::from_secs(10), || ingest.accepted().len() >= 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got: Vec<(String, String)> = ingest.accepted().iter().map(|m| (m.device.clone(), m.topic.clone())).collect();
    assert_eq!(got, vec![("dev-a".to_string(), "devices/dev-a/temp".to_string()); 2]);
    gw.stop().await;
}

/// `openssl s_client` against the TLS listener; (handshake completed, output).
pub async fn s_client(addr: std::net::SocketAddr, args: &[&str]) -> (bool, String) {
    let bin = util::require("openssl");
    let connect = addr.to_string();
    let out = tokio::task::spawn_blocking({
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        move || {
            std::process::Command::new("timeout")
                .args(["10", bin.to_str().unwrap(), "s_client", "-connect", &connect])
                .args(&args)
                .stdin(std::process::Stdio::null())
                .output_within()
                .expect("run openssl")
        }
    })
    .await
    .unwrap();
    let text = util::text(&out);
    let done = !text.contains("Cipher is (NONE)") && text.contains("Cipher is ");
    (done, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_protocols_and_non_aead_suites_are_refused_and_modern_ones_work() {
    let root = util::temp_dir();
    let pki = TestPki::new(root.path());
    let ingest = IngestServer::start().await;
    let gw = start_tls(root.path(), &ingest, &pki, "", "min_version = \"1.2\"\n").await;
    let addr = gw.tls_addr.unwrap();
    let (cert, key, ca) = (pki.path("dev-a.pem"), pki.path("dev-a.key"), pki.path("ca.pem"));
    let id: Vec<String> = vec![
        "-cert".into(),
        cert.display().to_string(),
        "-key".into(),
        key.display().to_string(),
        "-CAfile".into(),
        ca.display().to_string(),
    ];
    let probe = |extra: &'static [&'static str]| {
        let mut a: Vec<String> = id.clone();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let cases: [(&str, &[&str], bool); 6] = [
        ("TLS 1.0", &["-tls1", "-cipher", "DEFAULT@SECLEVEL=0"], false),
        ("TLS 1.1", &["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"], false),
        ("TLS 1.2 RSA key exchange, CBC", &["-tls1_2", "-cipher", "AES128-SHA"], false),
        ("TLS 1.2 ECDHE, CBC (not AEAD)", &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA"], false),
        ("TLS 1.2 ECDHE + AES-GCM", &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"], true),
        ("TLS 1.3", &["-tls1_3"], true),
    ];
    for (name, extra, expect) in cases {
        let args = probe(extra);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let (done, text) = s_client(addr, &refs).await;
        println!("{name:<34} handshake {}", if done { "completed" } else { "refused" });
        assert_eq!(done, expect, "{name}: {text}");
    }
    let scrape = harness::http_get(gw.http_addr, "/metrics").await.1;
    assert!(harness::sample(&scrape, "gateway_tls_handshake_failures_total{reason=\"handshake_failed\"}") >= 4.0, "{scrape}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_judges_expiry_by_its_own_clock() {
    let preload = util::libfaketime();
    // Only the wall clock moves: timers and timeouts run on the real monotonic clock.
    let shifted = |offset: &str| {
        vec![("LD_PRELOAD", preload.clone()), ("FAKETIME", offset.to_string()), ("FAKETIME_DONT_FAKE_MONOTONIC", "1".to_string())]
    };
    let root = util::temp_dir();
    let pki = TestPki::new(root.path());
    let ingest = IngestServer::start().await;
    let (tls, http) = (util::free_port(), util::free_port());
    let tls_section = pki.tls_section("").replace("127.0.0.1:0", &format!("127.0.0.1:{tls}"));
    let extra = Extra { mqtt: "plain = false", auth: "identity = \"cn\"".into(), tls: tls_section, ..Default::default() };
    let data = root.path().join("data");
    let config = harness::config_text(&data, &ingest.url(), "127.0.0.1:0", &format!("127.0.0.1:{http}"), &extra);

    // 40 days on, dev-a's 30-day certificate has expired; the 400-day server certificate has not.
    let tls_addr: std::net::SocketAddr = format!("127.0.0.1:{tls}").parse().unwrap();
    let http_addr: std::net::SocketAddr = format!("127.0.0.1:{http}").parse().unwrap();
    let mut p = harness::Process::start_with_env(&shifted("+40d"), root.path(), &config, tls_addr, http_addr).await;
    let port = tls.to_string();
    let (cert, key, ca) = (pki.path("dev-a.pem"), pki.path("dev-a.key"), pki.path("ca.pem"));
    let args = ["-h", "localhost", "-p", &port, "--cafile", ca.to_str().unwrap(), "--cert", cert.to_str().unwrap()];
    let out = util::mosquitto(
        "mosquitto_pub",
        &[&args[..], &["--key", key.to_str().unwrap(), "-i", "dev-a", "-t", "devices/dev-a/t", "-q", "1", "-m", "x"]].concat(),
    )
    .await;
    assert!(!out.status.success(), "an expired certificate connected");
    let scrape = harness::http_get(http_addr, "/metrics").await.1;
    assert_eq!(harness::sample(&scrape, "gateway_tls_handshake_failures_total{reason=\"cert_expired\"}"), 1.0, "{scrape}");
    assert_eq!(p.terminate(), Some(0));

    // 500 days on, its own server certificate has expired: it refuses to start, naming the file.
    let out = std::process::Command::new(harness::binary())
        .envs(shifted("+500d"))
        .args(["run", "--config"])
        .arg(root.path().join("gateway.toml"))
        .output_within()
        .expect("run under faketime");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("tls.cert") && stderr.contains("expired"), "{stderr}");
}

/// `mosquitto_pub -l` over mTLS as `device`: `n` QoS1 messages, one every `every`, on one
/// connection. Returns the exit status: non-zero if the connection was dropped.
async fn publish_slowly(gw: &Gateway, pki: &TestPki, device: &str, n: usize, every: Duration) -> std::process::ExitStatus {
    use tokio::io::AsyncWriteExt;
    let port = gw.tls_addr.unwrap().port().to_string();
    let (cert, key, ca) = (pki.path(&format!("{device}.pem")), pki.path(&format!("{device}.key")), pki.path("ca.pem"));
    let mut child = tokio::process::Command::new(util::require("mosquitto_pub"))
        .args(["-h", "localhost", "-p", &port, "-q", "1", "-l", "-i", device, "-t", &format!("devices/{device}/load")])
        .args(["--cafile", ca.to_str().unwrap(), "--cert", cert.to_str().unwrap(), "--key", key.to_str().unwrap()])
        .stdin(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn mosquitto_pub");
    let mut stdin = child.stdin.take().unwrap();
    for i in 0..n {
        if stdin.write_all(format!("{device}-{i}\n").as_bytes()).await.is_err() {
            break;
        }
        tokio::time::sleep(every).await;
    }
    drop(stdin);
    tokio::time::timeout(Duration::from_secs(30), child.wait()).await.expect("mosquitto_pub exits").expect("wait")
}

/// The certificate (PEM) the TLS listener presents to a new handshake.
async fn presented_cert(gw: &Gateway, pki: &TestPki) -> String {
    let (cert, key) = (pki.path("dev-a.pem"), pki.path("dev-a.key"));
    let (_, text) = s_client(gw.tls_addr.unwrap(), &["-cert", cert.to_str().unwrap(), "-key", key.to_str().unwrap()]).await;
    let start = text.find("-----BEGIN CERTIFICATE-----").expect("s_client shows the server certificate");
    let end = text.find("-----END CERTIFICATE-----").unwrap();
    text[start..end].to_string()
}

pub fn pem_body(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let end = text.find("-----END CERTIFICATE-----").unwrap();
    text[..end].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_certificate_is_replaced_under_load_without_dropping_a_session_and_a_broken_one_is_refused() {
    let root = util::temp_dir();
    let pki = TestPki::new(root.path());
    let ingest = IngestServer::start().await;
    let gw = start_tls(root.path(), &ingest, &pki, "", "").await;
    let old = presented_cert(&gw, &pki).await;
    assert_eq!(old, pem_body(&pki.path("server.pem")));

    let (n, every) = (300, Duration::from_millis(10));
    let load = ["dev-a", "dev-b"];
    let (a, b) = tokio::join!(publish_slowly(&gw, &pki, load[0], n, every), async {
        let b = publish_slowly(&gw, &pki, load[1], n, every);
        let rotate = async {
            tokio::time::sleep(Duration::from_millis(800)).await;
            pki.server("server"); // new key and certificate, renamed into place
            let new = pem_body(&pki.path("server.pem"));
            assert_ne!(new, old);
            eventually("new handshakes present the new certificate", Duration::from_secs(15), async || {
                presented_cert(&gw, &pki).await == new
            })
            .await;
            // A broken replacement: a key that does not belong to the certificate.
            std::fs::copy(pki.path("dev-b.key"), pki.path("server.key.tmp")).unwrap();
            std::fs::rename(pki.path("server.key.tmp"), pki.path("server.key")).unwrap();
            eventually("the broken set is refused", Duration::from_secs(15), async || {
                let scrape = harness::http_get(gw.http_addr, "/metrics").await.1;
                harness::sample(&scrape, "gateway_reloads_total{target=\"device_tls\",result=\"rejected\"}") >= 1.0
            })
            .await;
            assert_eq!(presented_cert(&gw, &pki).await, new, "the last good certificate stays in use");
            new
        };
        tokio::join!(b, rotate)
    });
    let (b, _new) = b;
    assert!(a.success() && b.success(), "a publishing session was dropped: {a:?} {b:?}");
    poll_until("every message forwarded", Duration::from_secs(20), || ingest.accepted().len() >= 2 * n).await;
    let scrape = harness::http_get(gw.http_addr, "/metrics").await.1;
    assert_eq!(ingest.accepted().len(), 2 * n, "no loss, no duplicate");
    ingest.assert_per_device_order();
    assert_eq!(harness::sample(&scrape, "gateway_mqtt_connections_opened_total"), 2.0, "no reconnect: {scrape}");
    assert!(harness::sample(&scrape, "gateway_reloads_total{target=\"device_tls\",result=\"ok\"}") >= 1.0, "{scrape}");
    println!("rotation under load: {} messages from 2 mTLS sessions, 0 dropped, 0 lost", 2 * n);
    gw.stop().await;
}
