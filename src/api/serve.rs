//! The one HTTP server loop behind the local API and the admin API: axum over plain TCP, or
//! over rustls for `http.tls_cert` / `http.tls_key` (the set in `https.rs`).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::https::HttpTls;

/// A TLS handshake must finish within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serve `app` on `listener` until `stop` turns true; over TLS when `tls` is set (each new
/// connection uses the set in use at that moment).
pub async fn serve(listener: TcpListener, app: Router, tls: Option<Arc<HttpTls>>, stop: watch::Receiver<bool>) {
    let Some(tls) = tls else {
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stopped(stop)).await {
            tracing::warn!(error = %e, "HTTP server stopped.");
        }
        return;
    };
    let mut stop_signal = std::pin::pin!(stopped(stop));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = &mut stop_signal => return,
        };
        let Ok((tcp, peer)) = accepted else { continue };
        let (acceptor, app) = (tokio_rustls::TlsAcceptor::from(tls.config()), app.clone());
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
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
