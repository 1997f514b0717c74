//! The cloud side of trust: an HTTPS ingestion server that requires a client certificate, the
//! gateway's client identity, and its rotation while the gateway runs.

use std::sync::Arc;
use std::time::Duration;

use edge_gateway::trust::pki::{self, LeafKind, LeafSpec, Validity};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::harness::{self, Extra};
use crate::ingest::IngestServer;
use crate::trust::TestPki;
use crate::util::{self, eventually, poll_until, within};

/// The cloud: HTTPS with the test PKI's server certificate, client certificates required.
fn cloud_tls(pki: &TestPki) -> Arc<rustls::ServerConfig> {
    harness::install_crypto();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(pki.path("server.pem")).unwrap().map(|c| c.unwrap()).collect();
    let key = PrivateKeyDer::from_pem_file(pki.path("server.key")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(pki.path("ca.pem")).unwrap() {
        roots.add(ca.unwrap()).unwrap();
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots)).build().unwrap();
    Arc::new(rustls::ServerConfig::builder().with_client_cert_verifier(verifier).with_single_cert(certs, key).unwrap())
}

fn issue_client(pki: &TestPki, cn: &str) {
    let spec = LeafSpec {
        kind: LeafKind::Client,
        cn: cn.into(),
        dns: Vec::new(),
        ips: Vec::new(),
        uris: Vec::new(),
        validity: Validity { days: 30, not_before_days: -1 },
    };
    pki::issue(&pki.dir, &pki.path("gw-client"), &spec).expect("client cert");
}

async fn publish(gw: &edge_gateway::Gateway, n: usize) {
    util::publish_one(gw.mqtt_addr, &n.to_string()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_https_sink_presents_the_gateways_client_certificate_and_a_renewed_one_without_restart() {
    let root = util::temp_dir();
    let pki = TestPki::new(root.path());
    issue_client(&pki, "gw-client-1");
    let ingest = IngestServer::start_tls(cloud_tls(&pki)).await;
    let sink = format!(
        "tls_ca = \"{}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"",
        pki.path("ca.pem").display(),
        pki.path("gw-client.pem").display(),
        pki.path("gw-client.key").display()
    );
    let extra = Extra { sink, tls: "check_interval_secs = 1\nreload_debounce_ms = 100".into(), ..Default::default() };
    let gw = harness::start(&root.path().join("data"), &ingest.url(), &extra).await;
    publish(&gw, 1).await;
    poll_until("first message over HTTPS", Duration::from_secs(10), || ingest.accepted().len() == 1).await;
    assert_eq!(ingest.client_cns(), ["gw-client-1"]);

    issue_client(&pki, "gw-client-2"); // renewed on disk, atomically
    let mut n = 1;
    let renewed = within(Duration::from_secs(10), async || {
        n += 1;
        publish(&gw, n).await;
        (ingest.client_cns().last().map(String::as_str) == Some("gw-client-2")).then_some(())
    });
    if renewed.await.is_none() {
        panic!("the renewed client certificate was never presented: {:?}", ingest.client_cns());
    }
    poll_until("every message delivered", Duration::from_secs(10), || ingest.accepted().len() == n).await;

    // A broken renewal (key of another certificate) is refused; the renewed identity stays.
    std::fs::copy(pki.path("dev-a.key"), pki.path("gw-client.key")).unwrap();
    let refused = "gateway_reloads_total{target=\"cloud_tls:cloud\",result=\"rejected\"}";
    eventually("the broken client key was not refused", Duration::from_secs(10), async || {
        harness::sample(&harness::http_get(gw.http_addr, "/metrics").await.1, refused) >= 1.0
    })
    .await;
    publish(&gw, n + 1).await;
    poll_until("delivered with the last good identity", Duration::from_secs(10), || ingest.accepted().len() == n + 1).await;
    assert_eq!(ingest.client_cns().last().map(String::as_str), Some("gw-client-2"));
    let scrape = harness::http_get(gw.http_addr, "/metrics").await.1;
    assert!(harness::sample(&scrape, "gateway_certificate_expiry_timestamp_seconds{cert=\"cloud_client:cloud\"}") > 0.0, "{scrape}");
    gw.stop().await;
}
