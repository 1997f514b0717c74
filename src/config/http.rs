//! `[http]`: the local HTTP API's address, who may use it, and TLS.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

/// Which endpoints need the bearer token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpAuth {
    /// State-changing endpoints only (`POST /api/store/acknowledge`); reads are open.
    Writes,
    /// Everything but `/healthz` and `/readyz` (probes): `/metrics` and `/api/*` too.
    All,
}

/// The local HTTP API's settings.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Address to bind.
    pub listen: SocketAddr,
    /// The file holding the bearer token; `None`: `data_dir/http.token`, created with a random
    /// token (mode 0600) at the first start.
    pub token_file: Option<PathBuf>,
    /// Which endpoints need the token.
    pub auth: HttpAuth,
    /// Serve HTTPS with this certificate chain and key (PEM); `None`: plain HTTP.
    pub tls: Option<(PathBuf, PathBuf)>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawHttp {
    pub(super) listen: String,
    token_file: String,
    auth: String,
    tls_cert: String,
    tls_key: String,
}

impl Default for RawHttp {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9880".into(),
            token_file: String::new(),
            auth: "writes".into(),
            tls_cert: String::new(),
            tls_key: String::new(),
        }
    }
}

impl RawHttp {
    pub(super) fn validate(self, e: &mut Vec<String>) -> HttpConfig {
        let listen = super::addr("http.listen", &self.listen, e);
        let auth = match self.auth.as_str() {
            "writes" => HttpAuth::Writes,
            "all" => HttpAuth::All,
            other => {
                e.push(format!("http.auth: \"{other}\" is not one of \"writes\", \"all\""));
                HttpAuth::Writes
            }
        };
        if !listen.ip().is_loopback() && auth != HttpAuth::All {
            e.push(format!(
                "http.listen: {listen} is not a loopback address, and /metrics and /api/* would answer anyone who can reach it: \
                 set http.auth = \"all\" (a bearer token for everything but /healthz and /readyz; with http.tls_cert and \
                 http.tls_key for HTTPS), or listen on 127.0.0.1"
            ));
        }
        let tls = match (self.tls_cert.is_empty(), self.tls_key.is_empty()) {
            (true, true) => None,
            (false, false) => Some((PathBuf::from(self.tls_cert), PathBuf::from(self.tls_key))),
            _ => {
                e.push("http.tls_cert, http.tls_key: set both (HTTPS) or neither (plain HTTP)".into());
                None
            }
        };
        let token_file = (!self.token_file.is_empty()).then(|| PathBuf::from(self.token_file));
        HttpConfig { listen, token_file, auth, tls }
    }
}
