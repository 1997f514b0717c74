//! The one HTTP server loop behind the local API and the admin API: axum over plain TCP, or
//! over rustls for `http.tls_cert` / `http.tls_key`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject as _;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::ApiError;

/// A TLS handshake must finish within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serve `app` on `listener` until `stop` turns true; over TLS when `tls` is set.
pub async fn serve(listener: TcpListener, app: Router, tls: Option<Arc<rustls::ServerConfig>>, stop: watch::Receiver<bool>) {
    let Some(tls) = tls else {
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stopped(stop)).await {
            tracing::warn!(error = %e, "HTTP server stopped.");
        }
        return;
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let mut stop_signal = std::pin::pin!(stopped(stop));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = &mut stop_signal => return,
        };
        let Ok((tcp, peer)) = accepted else { continue };
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "HTTPS handshake failed."),
                Err(_) => return tracing::debug!(%peer, "HTTPS handshake timed out."),
            };
            let service = TowerToHyperService::new(app);
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

/// Resolves when `stop` turns true (or its sender is gone).
pub async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// The rustls server config for `http.tls_cert` and `http.tls_key`.
pub fn tls_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, ApiError> {
    let tls = |e: String| ApiError::Tls(e);
    let certs = crate::trust::tls::read_certs(cert, "http.tls_cert").map_err(|e| tls(e.to_string()))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| tls(format!("http.tls_key: {}: {e}", key.display())))?;
    let config = rustls::ServerConfig::builder_with_provider(crate::trust::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| tls(format!("http.tls_cert / http.tls_key: {e}")))?;
    Ok(Arc::new(config))
}
