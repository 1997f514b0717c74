//! mTLS load for `bench/tls.sh`: a reconnect storm and QoS1 ingest over TLS or plain TCP.
//!
//! ```text
//! tlsload pki    --dir D --count N                       CA, server cert, devices dev-00000..
//! tlsload storm  --addr A --dir D --count N [--timeout S] N devices connect at once (mTLS + CONNECT)
//! tlsload ingest --addr A [--dir D] --clients C --messages M [--inflight W] [--payload B]
//! ```
//!
//! A minimal MQTT 3.1.1 client (CONNECT, QoS1 PUBLISH, PUBACK) over tokio-rustls, so the TLS and
//! plain figures come from the same client code. Each command prints one JSON line. `storm`
//! starts every connection at once and reports the time until the last CONNACK and the
//! handshake rate; `ingest` reports messages per second from "all connected" to "last PUBACK".
//! Client identity `dev-NNNNN` = certificate CN = client id; topic `devices/dev-NNNNN/load`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use edge_gateway::trust::pki::{self, LeafKind, LeafSpec, Validity};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

fn num(args: &[String], name: &str, default: usize) -> usize {
    arg(args, name).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn device(i: usize) -> String {
    format!("dev-{i:05}")
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let result = match args.get(1).map(String::as_str) {
        Some("pki") => make_pki(&args),
        Some("storm") => rt.block_on(storm(&args)),
        Some("ingest") => rt.block_on(ingest(&args)),
        _ => {
            eprintln!("usage: tlsload pki|storm|ingest ... (see the module doc)");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tlsload: {e}");
            ExitCode::FAILURE
        }
    }
}

fn make_pki(args: &[String]) -> Res<()> {
    let dir = PathBuf::from(arg(args, "--dir").ok_or("--dir")?);
    let count = num(args, "--count", 5000);
    let started = Instant::now();
    pki::create_ca(&dir, "tlsload CA", 3650, true)?;
    let leaf = |kind, cn: &str, dns: Vec<String>, ips| LeafSpec {
        kind,
        cn: cn.into(),
        dns,
        ips,
        uris: Vec::new(),
        validity: Validity { days: 30, not_before_days: -1 },
    };
    pki::issue(&dir, &dir.join("server"), &leaf(LeafKind::Server, "edge-gateway", vec!["localhost".into()], vec!["127.0.0.1".parse()?]))?;
    std::fs::create_dir_all(dir.join("devices"))?;
    for i in 0..count {
        pki::issue(&dir, &dir.join("devices").join(device(i)), &leaf(LeafKind::Device, &device(i), Vec::new(), Vec::new()))?;
    }
    println!("{{\"devices\":{count},\"elapsed_s\":{:.2}}}", started.elapsed().as_secs_f64());
    Ok(())
}

/// A TLS client config presenting device `i`'s certificate.
fn client_config(dir: &Path, i: usize, roots: &Arc<rustls::RootCertStore>) -> Res<Arc<rustls::ClientConfig>> {
    let base = dir.join("devices").join(device(i));
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(base.with_extension("pem"))?.collect::<Result<_, _>>()?;
    let key = PrivateKeyDer::from_pem_file(base.with_extension("key"))?;
    let mut cfg = rustls::ClientConfig::builder().with_root_certificates(roots.clone()).with_client_auth_cert(certs, key)?;
    cfg.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(cfg))
}

fn roots(dir: &Path) -> Res<Arc<rustls::RootCertStore>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(dir.join("ca.pem"))? {
        roots.add(c?)?;
    }
    Ok(Arc::new(roots))
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// TCP (+ TLS when `tls` is set), then CONNECT/CONNACK as `device(i)`.
async fn connect(addr: &str, i: usize, tls: Option<Arc<rustls::ClientConfig>>) -> Res<Box<dyn Stream>> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let mut s: Box<dyn Stream> = match tls {
        Some(cfg) => Box::new(tokio_rustls::TlsConnector::from(cfg).connect(ServerName::try_from("localhost")?, tcp).await?),
        None => Box::new(tcp),
    };
    let id = device(i);
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60];
    body.extend((id.len() as u16).to_be_bytes());
    body.extend(id.as_bytes());
    s.write_all(&packet(0x10, &body)).await?;
    let mut ack = [0u8; 4];
    s.read_exact(&mut ack).await?;
    if ack[0] != 0x20 || ack[3] != 0 {
        return Err(format!("{id}: CONNACK {ack:?}").into());
    }
    Ok(s)
}

fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut len = body.len();
    loop {
        let mut b = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            b |= 0x80;
        }
        out.push(b);
        if len == 0 {
            break;
        }
    }
    out.extend(body);
    out
}

async fn storm(args: &[String]) -> Res<()> {
    let addr = arg(args, "--addr").ok_or("--addr")?;
    let dir = PathBuf::from(arg(args, "--dir").ok_or("--dir")?);
    let (count, timeout) = (num(args, "--count", 5000), Duration::from_secs(num(args, "--timeout", 120) as u64));
    let roots = roots(&dir)?;
    let configs: Vec<_> = (0..count).map(|i| client_config(&dir, i, &roots)).collect::<Res<_>>()?;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, cfg) in configs.into_iter().enumerate() {
        let addr = addr.clone();
        tasks.spawn(async move { connect(&addr, i, Some(cfg)).await.map(|s| (s, started.elapsed())) });
    }
    let (mut open, mut failed, mut last) = (Vec::new(), 0usize, Duration::ZERO);
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    while !tasks.is_empty() {
        tokio::select! {
            Some(done) = tasks.join_next() => match done? {
                Ok((s, at)) => { last = last.max(at); open.push(s); }
                Err(e) => { failed += 1; if failed <= 3 { eprintln!("tlsload: {e}"); } }
            },
            _ = &mut deadline => break,
        }
    }
    let (pending, secs) = (tasks.len(), if tasks.is_empty() { last.as_secs_f64() } else { timeout.as_secs_f64() });
    println!(
        "{{\"devices\":{count},\"connected\":{},\"failed\":{failed},\"pending\":{pending},\"all_connected_s\":{secs:.3},\"handshakes_per_s\":{:.0}}}",
        open.len(),
        open.len() as f64 / secs
    );
    match (failed, pending) {
        (0, 0) => Ok(()),
        (f, p) => Err(format!("{f} connections failed, {p} not connected after {timeout:?}").into()),
    }
}

async fn ingest(args: &[String]) -> Res<()> {
    let addr = arg(args, "--addr").ok_or("--addr")?;
    let (clients, messages) = (num(args, "--clients", 8), num(args, "--messages", 2000));
    let (inflight, payload) = (num(args, "--inflight", 100).clamp(1, 60_000), vec![b'x'; num(args, "--payload", 64)]);
    let tls = match arg(args, "--dir") {
        Some(d) => Some((PathBuf::from(&d), roots(Path::new(&d))?)),
        None => None,
    };
    let mut streams = Vec::new();
    for i in 0..clients {
        let cfg = match &tls {
            Some((dir, roots)) => Some(client_config(dir, i, roots)?),
            None => None,
        };
        streams.push(connect(&addr, i, cfg).await?);
    }
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, s) in streams.into_iter().enumerate() {
        let payload = payload.clone();
        tasks.spawn(async move { publish_all(s, &format!("devices/{}/load", device(i)), &payload, messages, inflight).await });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let secs = started.elapsed().as_secs_f64();
    let total = clients * messages;
    println!(
        "{{\"clients\":{clients},\"messages\":{total},\"tls\":{},\"elapsed_s\":{secs:.3},\"msg_per_s\":{:.0}}}",
        tls.is_some(),
        total as f64 / secs
    );
    Ok(())
}

/// Publish `n` QoS1 messages keeping at most `window` unacknowledged; Ok when all are acked.
async fn publish_all(s: Box<dyn Stream>, topic: &str, payload: &[u8], n: usize, window: usize) -> Res<()> {
    let (mut rd, mut wr) = tokio::io::split(s);
    let (mut sent, mut acked) = (0usize, 0usize);
    let mut ack = [0u8; 4];
    while acked < n {
        let mut batch = Vec::new();
        while sent < n && sent - acked < window {
            let id = (sent % 65_535 + 1) as u16;
            let mut body = (topic.len() as u16).to_be_bytes().to_vec();
            body.extend(topic.as_bytes());
            body.extend(id.to_be_bytes());
            body.extend(payload);
            batch.extend(packet(0x32, &body));
            sent += 1;
        }
        if !batch.is_empty() {
            wr.write_all(&batch).await?;
        }
        rd.read_exact(&mut ack).await?;
        if ack[0] != 0x40 {
            return Err(format!("expected PUBACK, got {ack:?}").into());
        }
        acked += 1;
    }
    Ok(())
}
