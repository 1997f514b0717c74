//! TLS for both sides of the gateway, with material that can be swapped while it runs.
//!
//! - [`server`]: the device-facing listener's rustls `ServerConfig` (server certificate, CA
//!   bundle, CRLs, client-certificate policy), loaded and validated as one set.
//! - [`acceptor`]: the ntex service that runs the TLS handshake with whatever `ServerConfig` is
//!   current at that moment (after the connection gate, `crate::ingress::gate`).
//! - [`verifier`]: why a handshake failed, as a metric label.
//! - The cloud-facing client side lives with the sinks: `crate::egress::cloud_tls`.
//! - [`Swap`]: the shared cell through which the cert-rotation actor replaces a set atomically;
//!   a new handshake takes the current value, an established session keeps what it started with.

pub mod acceptor;
pub mod server;
pub mod verifier;

use std::path::Path;
use std::sync::{Arc, RwLock};

use edge_gateway_actors::rotation::CertExpiry;

use crate::config::IdentityField;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// A value replaced as a whole; readers get the current `Arc` and keep it as long as they need.
#[derive(Debug)]
pub struct Swap<T>(Arc<RwLock<Arc<T>>>);

impl<T> Clone for Swap<T> {
    fn clone(&self) -> Self {
        Swap(self.0.clone())
    }
}

impl<T> Swap<T> {
    /// A cell holding `value`.
    pub fn new(value: T) -> Self {
        Swap(Arc::new(RwLock::new(Arc::new(value))))
    }

    /// The current value.
    pub fn get(&self) -> Arc<T> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replace the value for every later `get`.
    pub fn set(&self, value: T) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(value);
    }
}

/// A problem with TLS material; the message names the file or config key.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(pub String);

impl TlsError {
    fn at(what: &str, detail: impl std::fmt::Display) -> Self {
        TlsError(format!("{what}: {detail}"))
    }
}

/// The identity a certificate carries in `field`, if it has one.
pub fn identity_of(der: &[u8], field: IdentityField) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    if field == IdentityField::CommonName {
        return cert.subject().iter_common_name().next()?.as_str().ok().map(str::to_string);
    }
    let san = cert.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|name| match (field, name) {
        (IdentityField::SanDns, GeneralName::DNSName(s))
        | (IdentityField::SanUri, GeneralName::URI(s))
        | (IdentityField::SanEmail, GeneralName::RFC822Name(s)) => Some(s.to_string()),
        _ => None,
    })
}

/// Read every certificate of a PEM file (in file order).
pub fn read_certs(path: &Path, key: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::at(key, format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(TlsError::at(key, format!("{}: no certificate in the file", path.display())));
    }
    Ok(certs)
}

/// Validity window of `der`, checked against `now` (unix seconds); `label` names it in gauges.
pub fn check_validity(der: &[u8], label: &str, key: &str, now: i64) -> Result<CertExpiry, TlsError> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| TlsError::at(key, format!("not an X.509 certificate: {e}")))?;
    let not_before = cert.validity().not_before.timestamp();
    let not_after = cert.validity().not_after.timestamp();
    let subject = cert.subject().to_string();
    if now < not_before {
        return Err(TlsError::at(key, format!("certificate \"{subject}\" is not valid before {}", cert.validity().not_before)));
    }
    if now > not_after {
        return Err(TlsError::at(key, format!("certificate \"{subject}\" expired on {}", cert.validity().not_after)));
    }
    Ok(CertExpiry { label: label.to_string(), subject, not_after })
}

/// The first DNS or IP subjectAltName of a server certificate (used to verify its chain).
pub fn first_server_name(der: &[u8]) -> Option<rustls::pki_types::ServerName<'static>> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|name| match name {
        GeneralName::DNSName(s) => rustls::pki_types::ServerName::try_from(s.to_string()).ok(),
        GeneralName::IPAddress(b) if b.len() == 4 => {
            Some(rustls::pki_types::ServerName::IpAddress(std::net::IpAddr::from(<[u8; 4]>::try_from(*b).ok()?).into()))
        }
        GeneralName::IPAddress(b) if b.len() == 16 => {
            Some(rustls::pki_types::ServerName::IpAddress(std::net::IpAddr::from(<[u8; 16]>::try_from(*b).ok()?).into()))
        }
        _ => None,
    })
}

/// Unix time now, in seconds.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// The crypto provider: ring, with only AEAD suites (TLS 1.3, and TLS 1.2 ECDHE+AEAD).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites.retain(|s| {
        let name = format!("{:?}", s.suite());
        name.starts_with("TLS13_") || (name.contains("_ECDHE_") && (name.contains("_GCM_") || name.contains("CHACHA20_POLY1305")))
    });
    Arc::new(p)
}
