//! The cloud-facing TLS identity of an HTTPS sink (mTLS), replaceable while the gateway runs.
//!
//! The HTTP client is built once with a rustls `ClientConfig` whose certificate resolver and
//! server verifier read the current set from a [`Swap`]: after a reload, every new connection
//! presents the new client certificate and trusts the new CA bundle; pooled connections finish
//! with what they were opened with.

use std::path::PathBuf;
use std::sync::Arc;

use edge_gateway_actors::rotation::{CertExpiry, ReloadError, Reloadable};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::config::ClientTlsFiles;
use crate::trust::tls::{Swap, TlsError, check_validity, provider, read_certs, unix_now};

/// One validated cloud-side set.
struct ClientSet {
    /// Presented to the cloud when it asks for a certificate.
    identity: Option<Arc<CertifiedKey>>,
    /// Verifies the cloud's server certificate.
    verifier: Arc<WebPkiServerVerifier>,
    /// For gauges and warnings.
    expiry: Vec<CertExpiry>,
}

/// The TLS material of one HTTPS sink.
pub struct CloudTls {
    /// Sink name (labels, logs).
    sink: String,
    /// Where the files are.
    files: ClientTlsFiles,
    /// The set new connections use.
    current: Swap<ClientSet>,
}

impl CloudTls {
    /// Load and validate the sink's set.
    pub fn load(sink: &str, files: &ClientTlsFiles) -> Result<Arc<CloudTls>, TlsError> {
        let set = load_set(sink, files)?;
        Ok(Arc::new(CloudTls { sink: sink.to_string(), files: files.clone(), current: Swap::new(set) }))
    }

    /// A rustls client config that always uses the current set.
    pub fn client_config(self: &Arc<Self>) -> Result<rustls::ClientConfig, TlsError> {
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError(format!("sink '{}': {e}", self.sink)))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Current(self.clone())))
            .with_client_cert_resolver(Arc::new(Current(self.clone())));
        // A resumed session would not present the client certificate again, so a renewed or
        // replaced identity would only show on a full handshake: always do one.
        let mut config = config;
        config.resumption = rustls::client::Resumption::disabled();
        Ok(config)
    }
}

fn load_set(sink: &str, files: &ClientTlsFiles) -> Result<ClientSet, TlsError> {
    let key = |k: &str| format!("sinks.{sink}.{k}");
    let now = unix_now();
    let mut roots = RootCertStore::empty();
    let mut expiry = Vec::new();
    for (i, ca) in read_certs(&files.ca, &key("tls_ca"))?.into_iter().enumerate() {
        let label = if i == 0 { format!("cloud_ca:{sink}") } else { format!("cloud_ca{i}:{sink}") };
        expiry.push(check_validity(&ca, &label, &key("tls_ca"), now)?);
        roots.add(ca).map_err(|e| TlsError(format!("{}: {e}", key("tls_ca"))))?;
    }
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| TlsError(format!("{}: {e}", key("tls_ca"))))?;
    let identity = match (&files.cert, &files.key) {
        (Some(cert), Some(key_file)) => {
            let chain: Vec<CertificateDer<'static>> = read_certs(cert, &key("tls_cert"))?;
            expiry.push(check_validity(&chain[0], &format!("cloud_client:{sink}"), &key("tls_cert"), now)?);
            let private =
                PrivateKeyDer::from_pem_file(key_file).map_err(|e| TlsError(format!("{}: {}: {e}", key("tls_key"), key_file.display())))?;
            let certified = CertifiedKey::from_der(chain, private, &provider())
                .map_err(|e| TlsError(format!("{}: does not fit {}: {e}", key("tls_key"), cert.display())))?;
            Some(Arc::new(certified))
        }
        _ => None,
    };
    Ok(ClientSet { identity, verifier, expiry })
}

impl Reloadable for CloudTls {
    fn name(&self) -> String {
        format!("cloud_tls:{}", self.sink)
    }

    fn paths(&self) -> Vec<PathBuf> {
        let mut p = vec![self.files.ca.clone()];
        p.extend(self.files.cert.iter().cloned());
        p.extend(self.files.key.iter().cloned());
        p
    }

    fn reload(&self) -> Result<(), ReloadError> {
        let set = load_set(&self.sink, &self.files)?;
        self.current.set(set);
        Ok(())
    }

    fn expiry(&self) -> Vec<CertExpiry> {
        self.current.get().expiry.clone()
    }
}

/// Delegates to whatever set is current at each handshake.
struct Current(Arc<CloudTls>);

impl std::fmt::Debug for Current {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CloudTls({})", self.0.sink)
    }
}

impl ResolvesClientCert for Current {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.0.current.get().identity.clone()
    }

    fn has_certs(&self) -> bool {
        self.0.current.get().identity.is_some()
    }
}

impl ServerCertVerifier for Current {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.0.current.get().verifier.verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.current.get().verifier.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.current.get().verifier.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.current.get().verifier.supported_verify_schemes()
    }
}
