//! The `[tls]` and `[auth]` sections: the device-facing TLS listener, certificate rotation and
//! renewal, and how devices are identified and authorised.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use edge_gateway_actors::rotation::{RenewalPolicy, RotationPolicy};
use serde::Deserialize;

/// The TLS listener (present only when `tls.enabled`).
#[derive(Debug, Clone)]
pub struct TlsListenerConfig {
    /// Address to bind.
    pub listen: SocketAddr,
    /// Certificate, key, CA bundle, CRLs and their policy.
    pub files: ServerTlsFiles,
    /// A socket that does not finish its TLS handshake in time is closed.
    pub handshake_timeout: Duration,
}

/// How plain-listener devices authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlainAuth {
    /// Username and password from `auth.password_file`; the username is the identity.
    Password,
    /// No authentication; the client id is the identity (lab only).
    Anonymous,
}

/// Identity and authorisation of devices.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Plain-listener authentication.
    pub plain: PlainAuth,
    /// Salted password hashes (mosquitto_passwd format).
    pub password_file: Option<PathBuf>,
    /// Topic ACLs; without it every identity owns `devices/<identity>/#` and nothing else, and
    /// the downlink identity may publish commands to `devices/+/cmd/#`.
    pub acl_file: Option<PathBuf>,
    /// The identity `POST /api/publish` publishes as (`broker.api_identity`).
    pub downlink_identity: String,
    /// Which certificate field is the identity.
    pub identity: IdentityField,
    /// The MQTT client id must equal the identity.
    pub client_id_must_match: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawTls {
    enabled: bool,
    listen: String,
    cert: String,
    key: String,
    ca: String,
    crl: Vec<String>,
    client_auth: String,
    min_version: String,
    handshake_timeout_secs: u64,
    warn_before_days: u64,
    renew_before_days: u64,
    renew_command: Vec<String>,
    renew_timeout_secs: u64,
    reload_debounce_ms: u64,
    check_interval_secs: u64,
}

impl Default for RawTls {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: "127.0.0.1:8883".into(),
            cert: "certs/dev/server.pem".into(),
            key: "certs/dev/server.key".into(),
            ca: "certs/dev/ca.pem".into(),
            crl: Vec::new(),
            client_auth: "required".into(),
            min_version: "1.3".into(),
            handshake_timeout_secs: 10,
            warn_before_days: 30,
            renew_before_days: 0,
            renew_command: Vec::new(),
            renew_timeout_secs: 300,
            reload_debounce_ms: 500,
            check_interval_secs: 60,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawAuth {
    plain: String,
    password_file: Option<String>,
    acl_file: Option<String>,
    identity: String,
    client_id_must_match: bool,
}

impl Default for RawAuth {
    fn default() -> Self {
        Self { plain: "password".into(), password_file: None, acl_file: None, identity: "cn".into(), client_id_must_match: true }
    }
}

fn non_empty(key: &str, value: &str, e: &mut Vec<String>) -> PathBuf {
    if value.is_empty() {
        e.push(format!("{key}: must not be empty"));
    }
    PathBuf::from(value)
}

impl RawTls {
    pub(super) fn validate(&self, e: &mut Vec<String>) -> (Option<TlsListenerConfig>, RotationPolicy) {
        let rotation = self.rotation(e);
        if !self.enabled {
            return (None, rotation);
        }
        let client_auth = match self.client_auth.as_str() {
            "required" => ClientAuth::Required,
            "optional" => ClientAuth::Optional,
            other => {
                e.push(format!("tls.client_auth: \"{other}\" is not one of \"required\", \"optional\""));
                ClientAuth::Required
            }
        };
        let min_version = match self.min_version.as_str() {
            "1.3" => MinVersion::Tls13,
            "1.2" => MinVersion::Tls12,
            other => {
                e.push(format!("tls.min_version: \"{other}\" is not one of \"1.2\", \"1.3\" (older versions are never offered)"));
                MinVersion::Tls13
            }
        };
        if !(1..=300).contains(&self.handshake_timeout_secs) {
            e.push("tls.handshake_timeout_secs: must be between 1 and 300".into());
        }
        let files = ServerTlsFiles {
            cert: non_empty("tls.cert", &self.cert, e),
            key: non_empty("tls.key", &self.key, e),
            ca: non_empty("tls.ca", &self.ca, e),
            crl: self.crl.iter().enumerate().map(|(i, c)| non_empty(&format!("tls.crl[{i}]"), c, e)).collect(),
            client_auth,
            min_version,
        };
        let listen = super::addr("tls.listen", &self.listen, e);
        (Some(TlsListenerConfig { listen, files, handshake_timeout: Duration::from_secs(self.handshake_timeout_secs) }), rotation)
    }

    fn rotation(&self, e: &mut Vec<String>) -> RotationPolicy {
        if self.renew_before_days > 0 && self.renew_command.is_empty() {
            e.push("tls.renew_command: required when tls.renew_before_days > 0".into());
        }
        if self.renew_command.first().is_some_and(|c| c.is_empty()) {
            e.push("tls.renew_command[0]: must name a program".into());
        }
        if !(1..=86_400).contains(&self.check_interval_secs) {
            e.push("tls.check_interval_secs: must be between 1 and 86400".into());
        }
        if self.reload_debounce_ms > 60_000 {
            e.push("tls.reload_debounce_ms: must be at most 60000".into());
        }
        let days = |d: u64| Duration::from_secs(d.saturating_mul(86_400));
        RotationPolicy {
            renewal: RenewalPolicy {
                warn_before: days(self.warn_before_days),
                renew_before: days(self.renew_before_days),
                command: self.renew_command.clone(),
                command_timeout: Duration::from_secs(self.renew_timeout_secs.max(1)),
                min_interval: Duration::from_secs(3600),
            },
            debounce: Duration::from_millis(self.reload_debounce_ms),
            check_every: Duration::from_secs(self.check_interval_secs.max(1)),
        }
    }
}

impl RawAuth {
    pub(super) fn validate(&self, plain_enabled: bool, tls: Option<&TlsListenerConfig>, e: &mut Vec<String>) -> AuthConfig {
        let plain = match self.plain.as_str() {
            "password" => PlainAuth::Password,
            "anonymous" => PlainAuth::Anonymous,
            other => {
                e.push(format!("auth.plain: \"{other}\" is not one of \"password\", \"anonymous\""));
                PlainAuth::Password
            }
        };
        let identity = match self.identity.as_str() {
            "cn" => IdentityField::CommonName,
            "san_dns" => IdentityField::SanDns,
            "san_uri" => IdentityField::SanUri,
            "san_email" => IdentityField::SanEmail,
            other => {
                e.push(format!("auth.identity: \"{other}\" is not one of \"cn\", \"san_dns\", \"san_uri\", \"san_email\""));
                IdentityField::CommonName
            }
        };
        if plain_enabled && plain == PlainAuth::Anonymous && tls.is_some() {
            e.push(
                "auth.plain: \"anonymous\" next to tls.enabled would let a plain-TCP client claim any certificate's identity; \
                 use \"password\" or set mqtt.plain = false"
                    .into(),
            );
        }
        let needs_passwords =
            (plain_enabled && plain == PlainAuth::Password) || tls.is_some_and(|t| t.files.client_auth == ClientAuth::Optional);
        if needs_passwords && self.password_file.as_deref().is_none_or(str::is_empty) {
            e.push("auth.password_file: required by auth.plain = \"password\" or tls.client_auth = \"optional\"".into());
        }
        AuthConfig {
            plain,
            password_file: self.password_file.as_ref().filter(|p| !p.is_empty()).map(PathBuf::from),
            acl_file: self.acl_file.as_ref().filter(|p| !p.is_empty()).map(PathBuf::from),
            downlink_identity: String::new(),
            identity,
            client_id_must_match: self.client_id_must_match,
        }
    }
}

/// Lowest TLS version offered to devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MinVersion {
    /// TLS 1.2 (ECDHE + AEAD suites only) and 1.3.
    Tls12,
    /// TLS 1.3 only.
    Tls13,
}

/// Whether devices must present a client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// A certificate from the CA bundle is required (mTLS).
    Required,
    /// A certificate is verified if presented; otherwise the device needs a password.
    Optional,
}

/// Where the listener's material lives and how it is used.
#[derive(Debug, Clone)]
pub struct ServerTlsFiles {
    /// PEM: the server certificate, then any intermediates.
    pub cert: PathBuf,
    /// PEM: the server's private key.
    pub key: PathBuf,
    /// PEM: the CAs that issue device certificates (and the server's chain).
    pub ca: PathBuf,
    /// PEM CRLs from those CAs.
    pub crl: Vec<PathBuf>,
    /// Client certificate policy.
    pub client_auth: ClientAuth,
    /// Lowest protocol version.
    pub min_version: MinVersion,
}

/// Which certificate field is a device's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityField {
    /// The subject's common name.
    CommonName,
    /// The first DNS name in the subjectAltName extension.
    SanDns,
    /// The first URI in the subjectAltName extension.
    SanUri,
    /// The first e-mail address (rfc822Name) in the subjectAltName extension.
    SanEmail,
}
