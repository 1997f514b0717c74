//! Starting a gateway for a test: through the library on port 0, or as the real binary.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use edge_gateway::Gateway;
use edge_gateway::config::Config;
use edge_gateway_actors::supervisor::SupervisionConfig;

use crate::util::poll_until;

/// Extra lines for the config's sections (each may be empty).
#[derive(Default, Clone)]
pub struct Extra {
    /// Lines under `[mqtt]`.
    pub mqtt: &'static str,
    /// Lines under `[storage]`.
    pub storage: &'static str,
    /// Lines under the http sink.
    pub sink: String,
    /// Lines under `[auth]`; empty: the lab setup (anonymous plain listener, [`LAB_ACL`]).
    pub auth: String,
    /// Lines under `[tls]`.
    pub tls: String,
    /// Lines under `[http]`.
    pub http: String,
    /// Lines under `[schemas]`.
    pub schemas: String,
    /// Lines under `[broker]`.
    pub broker: String,
}

/// The ACL of the lab setup: anyone may publish anywhere (tests of the pipeline, not of trust).
pub const LAB_ACL: &str = "[[allow]]\nidentities = [\"*\"]\npublish = [\"#\"]\n";

/// A config for a test: loopback, port 0, one http sink at `url` with fast retries.
pub fn config_text(data_dir: &Path, url: &str, mqtt: &str, http: &str, extra: &Extra) -> String {
    let auth = if extra.auth.is_empty() {
        std::fs::create_dir_all(data_dir).expect("data dir");
        let acl = data_dir.join("lab-acl.toml");
        std::fs::write(&acl, LAB_ACL).expect("write lab ACL");
        format!("plain = \"anonymous\"\nacl_file = \"{}\"\n", acl.display())
    } else {
        extra.auth.clone()
    };
    format!(
        r#"
[gateway]
data_dir = "{data}"
[mqtt]
listen = "{mqtt}"
connect_timeout_secs = 2
partial_packet_timeout_secs = 2
{mqtt_extra}
[http]
listen = "{http}"
{http_extra}
[storage]
{storage}
[auth]
{auth}
[tls]
{tls}
[schemas]
{schemas}
[broker]
{broker}
[[sinks]]
name = "cloud"
kind = "http"
url = "{url}"
{timeout}
backoff_initial_ms = 20
backoff_max_ms = 300
{sink}
"#,
        data = data_dir.display(),
        mqtt_extra = extra.mqtt,
        storage = extra.storage,
        sink = extra.sink,
        tls = extra.tls,
        http_extra = extra.http,
        schemas = extra.schemas,
        broker = extra.broker,
        timeout = if extra.sink.contains("timeout_ms") { "" } else { "timeout_ms = 2000" },
    )
}

/// Start a gateway in this process on port 0.
pub async fn start(data_dir: &Path, url: &str, extra: &Extra) -> Gateway {
    start_with(data_dir, url, extra, SupervisionConfig::default_config()).await
}

/// Start a gateway in this process with a given supervision config.
pub async fn start_with(data_dir: &Path, url: &str, extra: &Extra, sup: SupervisionConfig) -> Gateway {
    let text = config_text(data_dir, url, "127.0.0.1:0", "127.0.0.1:0", extra);
    let config = Config::parse(&text, Vec::new()).expect("test config is valid");
    let gw = Gateway::start(config, sup).await.expect("gateway starts");
    let health = gw.health.clone();
    poll_until("gateway ready", Duration::from_secs(10), || health.readiness().is_ok()).await;
    gw
}

/// GET a path of the local HTTP endpoint: (status, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    install_crypto();
    let url = format!("http://{addr}{path}");
    let resp = reqwest::get(&url).await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

/// The value of one sample in a Prometheus text scrape (`name{labels}` exactly), 0 if absent.
pub fn sample(scrape: &str, series: &str) -> f64 {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The gateway binary built for these tests.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_edge-gateway"))
}

/// The real binary running as a child process.
pub struct Process {
    pub child: Child,
    pub mqtt: SocketAddr,
    pub http: SocketAddr,
    /// Where its stdout and stderr go (appended across restarts).
    pub log: PathBuf,
}

impl Process {
    /// Write `config` to `dir/gateway.toml` and start `edge-gateway run` on it; wait for ready.
    pub async fn start(dir: &Path, config: &str, mqtt: SocketAddr, http: SocketAddr) -> Process {
        Self::start_with_env(&[], dir, config, mqtt, http).await
    }

    /// Like [`Process::start`], with extra environment (e.g. libfaketime's `LD_PRELOAD`; an empty
    /// value removes the variable, e.g. `RUST_LOG`, which is `warn` otherwise).
    pub async fn start_with_env(env: &[(&str, String)], dir: &Path, config: &str, mqtt: SocketAddr, http: SocketAddr) -> Process {
        let path = dir.join("gateway.toml");
        std::fs::write(&path, config).expect("write config");
        let log_path = dir.join("gateway.log");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).expect("log file");
        let mut cmd = Command::new(binary());
        cmd.env("RUST_LOG", "warn");
        for (k, v) in env {
            if v.is_empty() {
                cmd.env_remove(k);
            } else {
                cmd.env(k, v);
            }
        }
        let child = cmd
            .args(["run", "--config"])
            .arg(&path)
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn edge-gateway");
        let p = Process { child, mqtt, http, log: log_path };
        p.wait_ready().await;
        p
    }

    async fn wait_ready(&self) {
        install_crypto();
        let url = format!("http://{}/readyz", self.http);
        let ready = async || reqwest::get(&url).await.ok().filter(|r| r.status().is_success()).map(|_| ());
        if crate::util::within(Duration::from_secs(20), ready).await.is_none() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            panic!("gateway process not ready at {url}; last log lines (newest first): {tail:#?}");
        }
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then the exit code (panics after 30 s).
    pub fn terminate(&mut self) -> Option<i32> {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            assert!(std::time::Instant::now() < deadline, "gateway did not exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// reqwest is built without a default TLS provider; the gateway installs ring, tests do too.
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
