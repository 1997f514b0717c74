//! The device-facing TLS material: loaded from files and validated as one set.
//!
//! A set is accepted only if every part is usable: the certificate chain parses, the key matches
//! the leaf, the chain verifies against the CA bundle for the certificate's own name, no
//! certificate is expired or not yet valid, and every CRL parses. Otherwise the caller keeps the
//! set it has (at start: the gateway refuses to start).

use edge_gateway_actors::metrics::AuthFailure;
use std::path::PathBuf;
use std::sync::Arc;

use edge_gateway_actors::rotation::{CertExpiry, ReloadError};
use rustls::RootCertStore;
use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;

use super::{TlsError, check_validity, first_server_name, provider, read_certs, unix_now};
use crate::config::{ClientAuth, MinVersion, ServerTlsFiles};

/// A validated set, ready for new handshakes.
pub struct ServerTls {
    /// The rustls config every new handshake uses.
    pub config: Arc<rustls::ServerConfig>,
    /// Expiry of the server certificate and of every CA, for gauges and warnings.
    pub expiry: Vec<CertExpiry>,
    /// Every certificate the CRLs revoke, as [`cert_key`] (issuer + serial): connected devices
    /// are checked against it at each publish, so a revocation also ends established sessions.
    pub revoked: std::collections::HashSet<Vec<u8>>,
}

/// What a session needs to re-check its device certificate later.
#[derive(Debug, Clone)]
pub struct PeerCertInfo {
    /// Issuer DN (DER) followed by the serial number.
    pub key: Vec<u8>,
    /// Not-after, unix seconds.
    pub not_after: i64,
}

impl PeerCertInfo {
    /// Parse a verified client certificate.
    pub fn of(der: &[u8]) -> Option<PeerCertInfo> {
        use x509_parser::prelude::{FromDer, X509Certificate};
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        Some(PeerCertInfo { key: cert_key(cert.issuer().as_raw(), cert.raw_serial()), not_after: cert.validity().not_after.timestamp() })
    }
}

/// Issuer DN (DER) + serial: what identifies a certificate for revocation.
pub fn cert_key(issuer: &[u8], serial: &[u8]) -> Vec<u8> {
    let serial = serial.strip_prefix(&[0u8]).unwrap_or(serial);
    [issuer, serial].concat()
}

/// The revoked certificates listed in `crls`, and each CRL's next update (for the expiry gauge
/// and warning: a CRL that is not renewed goes stale; it is not refused, so that a late CRL
/// does not lock every device out).
fn revoked_keys(crls: &[CertificateRevocationListDer<'static>]) -> Result<(std::collections::HashSet<Vec<u8>>, Vec<CertExpiry>), TlsError> {
    let mut out = std::collections::HashSet::new();
    let mut next = Vec::new();
    for (i, der) in crls.iter().enumerate() {
        let (_, crl) =
            x509_parser::parse_x509_crl(der.as_ref()).map_err(|e| TlsError(format!("tls.crl: CRL {i} cannot be parsed: {e}")))?;
        let issuer = crl.issuer().as_raw();
        out.extend(crl.iter_revoked_certificates().map(|r| cert_key(issuer, r.raw_serial())));
        if let Some(at) = crl.next_update() {
            let label = if i == 0 { "crl".to_string() } else { format!("crl{i}") };
            next.push(CertExpiry { label, subject: crl.issuer().to_string(), not_after: at.timestamp() });
        }
    }
    Ok((out, next))
}

impl ServerTlsFiles {
    /// Every file of the set (the rotation actor watches them).
    pub fn paths(&self) -> Vec<PathBuf> {
        let mut p = vec![self.cert.clone(), self.key.clone(), self.ca.clone()];
        p.extend(self.crl.iter().cloned());
        p
    }

    /// Load and validate the whole set.
    pub fn load(&self) -> Result<ServerTls, TlsError> {
        let provider = provider();
        let now = unix_now();
        let chain = read_certs(&self.cert, "tls.cert")?;
        let key = PrivateKeyDer::from_pem_file(&self.key).map_err(|e| TlsError(format!("tls.key: {}: {e}", self.key.display())))?;
        let certified = CertifiedKey::from_der(chain.clone(), key, &provider)
            .map_err(|e| TlsError(format!("tls.key: {} does not fit tls.cert {}: {e}", self.key.display(), self.cert.display())))?;
        let (roots, mut expiry) = self.roots(now)?;
        expiry.insert(0, check_validity(&chain[0], "server", "tls.cert", now)?);
        verify_own_chain(&chain, &roots, &provider)?;
        let crls = self.crls()?;
        let (revoked, crl_expiry) = revoked_keys(&crls)?;
        expiry.extend(crl_expiry);
        let verifier = self.client_verifier(roots, crls, &provider)?;
        let versions: &[&rustls::SupportedProtocolVersion] = match self.min_version {
            MinVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
            MinVersion::Tls13 => &[&rustls::version::TLS13],
        };
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .map_err(|e| TlsError(format!("tls.min_version: {e}")))?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certified)));
        // No session resumption: a resumed session skips client-certificate verification, so a
        // device revoked or expired since its last handshake could come back in.
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        Ok(ServerTls { config: Arc::new(config), expiry, revoked })
    }

    fn roots(&self, now: i64) -> Result<(RootCertStore, Vec<CertExpiry>), TlsError> {
        let mut roots = RootCertStore::empty();
        let mut expiry = Vec::new();
        for (i, ca) in read_certs(&self.ca, "tls.ca")?.into_iter().enumerate() {
            let label = if i == 0 { "ca".to_string() } else { format!("ca{i}") };
            expiry.push(check_validity(&ca, &label, "tls.ca", now)?);
            if !is_ca(&ca) {
                return Err(TlsError(format!("tls.ca: {}: certificate {i} is not a CA (basicConstraints CA:TRUE)", self.ca.display())));
            }
            roots.add(ca).map_err(|e| TlsError(format!("tls.ca: {}: {e}", self.ca.display())))?;
        }
        Ok((roots, expiry))
    }

    fn crls(&self) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
        let mut crls = Vec::new();
        for path in &self.crl {
            let list = CertificateRevocationListDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| TlsError(format!("tls.crl: {}: {e}", path.display())))?;
            if list.is_empty() {
                return Err(TlsError(format!("tls.crl: {}: no CRL in the file", path.display())));
            }
            crls.extend(list);
        }
        Ok(crls)
    }

    fn client_verifier(
        &self,
        roots: RootCertStore,
        crls: Vec<CertificateRevocationListDer<'static>>,
        provider: &Arc<CryptoProvider>,
    ) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
        // Unauthenticated handshakes are allowed at the TLS level; RotatingTls closes a
        // connection without a certificate when one is required, so that the refusal can be
        // counted as `no_client_cert` (rustls' own refusal is not visible through ntex).
        let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .with_crls(crls)
            .allow_unauthenticated()
            .build()
            .map_err(|e| TlsError(format!("tls.ca/tls.crl: {e}")))?;
        Ok(Arc::new(super::verifier::CountingVerifier(inner)))
    }
}

fn is_ca(der: &[u8]) -> bool {
    use x509_parser::prelude::{FromDer, X509Certificate};
    X509Certificate::from_der(der).map(|(_, c)| c.is_ca()).unwrap_or(false)
}

/// The server's own chain must verify against the bundle devices are given.
fn verify_own_chain(chain: &[CertificateDer<'static>], roots: &RootCertStore, provider: &Arc<CryptoProvider>) -> Result<(), TlsError> {
    let name =
        first_server_name(&chain[0]).ok_or_else(|| TlsError("tls.cert: the server certificate has no DNS or IP subjectAltName".into()))?;
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots.clone()), provider.clone())
        .build()
        .map_err(|e| TlsError(format!("tls.ca: {e}")))?;
    verifier
        .verify_server_cert(&chain[0], &chain[1..], &name, &[], UnixTime::now())
        .map_err(|e| TlsError(format!("tls.cert: the chain does not verify against tls.ca: {e}")))?;
    Ok(())
}

/// The listener's material in use, replaced as a whole by the rotation actor.
pub struct DeviceTls {
    /// Where the files are.
    files: ServerTlsFiles,
    /// The set new handshakes use.
    current: super::Swap<ServerTls>,
}

impl DeviceTls {
    /// Load and validate the set (at start: a bad set stops the gateway).
    pub fn load(files: &ServerTlsFiles) -> Result<Arc<DeviceTls>, TlsError> {
        let set = files.load()?;
        Ok(Arc::new(DeviceTls { files: files.clone(), current: super::Swap::new(set) }))
    }

    /// The rustls config for the next handshake.
    pub fn config(&self) -> Arc<rustls::ServerConfig> {
        self.current.get().config.clone()
    }

    /// Why a device certificate accepted earlier may no longer be used: revoked by the CRLs
    /// in use now, or expired at `now` (unix seconds).
    pub fn recheck(&self, peer: &PeerCertInfo, now: i64) -> Option<AuthFailure> {
        if now > peer.not_after {
            Some(AuthFailure::CertExpiredInSession)
        } else if self.current.get().revoked.contains(&peer.key) {
            Some(AuthFailure::CertRevokedInSession)
        } else {
            None
        }
    }

    /// Whether a client certificate is required.
    pub fn client_auth(&self) -> ClientAuth {
        self.files.client_auth
    }
}

impl edge_gateway_actors::rotation::Reloadable for DeviceTls {
    fn name(&self) -> String {
        "device_tls".into()
    }

    fn paths(&self) -> Vec<PathBuf> {
        self.files.paths()
    }

    fn reload(&self) -> Result<(), ReloadError> {
        let set = self.files.load()?;
        self.current.set(set);
        Ok(())
    }

    fn expiry(&self) -> Vec<CertExpiry> {
        self.current.get().expiry.clone()
    }
}
