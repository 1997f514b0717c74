//! The local API's HTTPS certificate and key (`http.tls_cert`, `http.tls_key`): loaded and
//! checked at start, and reloaded by the rotation actor when the files change (target
//! `http_tls`; its certificate's expiry is the gauge label `http`), so a renewed certificate is
//! used from the next connection on, without a restart. A set that does not load is refused and
//! the previous one stays in use.

use std::path::PathBuf;
use std::sync::Arc;

use edge_gateway_actors::rotation::{CertExpiry, ReloadError, Reloadable};
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject as _;

use super::ApiError;
use crate::trust::tls::{Swap, check_validity, provider, read_certs, unix_now};

/// One loaded set.
struct Loaded {
    config: Arc<rustls::ServerConfig>,
    expiry: CertExpiry,
}

/// The HTTPS set in use, replaced as a whole.
pub struct HttpTls {
    cert: PathBuf,
    key: PathBuf,
    current: Swap<Loaded>,
}

impl HttpTls {
    /// Load and check the set (the certificate must be valid now and fit the key).
    pub fn load(cert: PathBuf, key: PathBuf) -> Result<Arc<HttpTls>, ApiError> {
        let loaded = load(&cert, &key)?;
        Ok(Arc::new(HttpTls { cert, key, current: Swap::new(loaded) }))
    }

    /// The rustls config for the next connection.
    pub fn config(&self) -> Arc<rustls::ServerConfig> {
        self.current.get().config.clone()
    }
}

fn load(cert: &std::path::Path, key: &std::path::Path) -> Result<Loaded, ApiError> {
    let tls = |e: String| ApiError::Tls(e);
    let certs = read_certs(cert, "http.tls_cert").map_err(|e| tls(e.to_string()))?;
    let expiry = check_validity(&certs[0], "http", "http.tls_cert", unix_now()).map_err(|e| tls(e.to_string()))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| tls(format!("http.tls_key: {}: {e}", key.display())))?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| tls(format!("http.tls_cert / http.tls_key: {e}")))?;
    Ok(Loaded { config: Arc::new(config), expiry })
}

impl Reloadable for HttpTls {
    fn name(&self) -> String {
        "http_tls".into()
    }

    fn paths(&self) -> Vec<PathBuf> {
        vec![self.cert.clone(), self.key.clone()]
    }

    fn reload(&self) -> Result<(), ReloadError> {
        self.current.set(load(&self.cert, &self.key)?);
        Ok(())
    }

    fn expiry(&self) -> Vec<CertExpiry> {
        vec![self.current.get().expiry.clone()]
    }
}
