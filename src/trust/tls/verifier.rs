//! Why a device's TLS handshake failed, as a bounded metric label.
//!
//! rustls tells the client-certificate verifier exactly why it refused a certificate
//! ([`CountingVerifier`] maps that error kind and queues the label); ntex hands the acceptor
//! only an `io::Error` for everything else, so [`classify_handshake_error`] is the one place
//! that reads error text.

use std::io;

use edge_gateway_actors::metrics::TlsFailure;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

/// A bounded label for a failed handshake that only left an `io::Error` (ntex does not hand
/// rustls' error to the acceptor): the one function that reads error text.
pub fn classify_handshake_error(e: &io::Error) -> TlsFailure {
    if e.kind() == io::ErrorKind::TimedOut {
        return TlsFailure::HandshakeTimeout;
    }
    let text = format!("{e} {e:?}");
    let has = |s: &str| text.contains(s);
    if has("Expired") {
        TlsFailure::CertExpired
    } else if has("NotValidYet") {
        TlsFailure::CertNotYetValid
    } else if has("Revoked") {
        TlsFailure::CertRevoked
    } else if has("UnknownIssuer") || has("BadSignature") {
        TlsFailure::CertUnknownIssuer
    } else if has("NoCertificatesPresented") || has("no certificates") {
        TlsFailure::NoClientCert
    } else if has("InvalidCertificate") || has("invalid peer certificate") {
        TlsFailure::CertInvalid
    } else {
        // Protocol version or cipher suite mismatch, a peer that hung up mid-handshake.
        TlsFailure::HandshakeFailed
    }
}

/// The label for a client certificate rustls refused, from the error's kind.
pub fn classify_cert_error(e: &rustls::Error) -> TlsFailure {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => TlsFailure::CertExpired,
        rustls::Error::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. }) => TlsFailure::CertNotYetValid,
        rustls::Error::InvalidCertificate(C::Revoked) => TlsFailure::CertRevoked,
        rustls::Error::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => TlsFailure::CertUnknownIssuer,
        rustls::Error::NoCertificatesPresented => TlsFailure::NoClientCert,
        rustls::Error::InvalidCertificate(_) => TlsFailure::CertInvalid,
        _ => TlsFailure::HandshakeFailed,
    }
}

/// The reason the verifier queued for the handshake that just failed on this thread, if any.
pub fn take_cert_failure() -> Option<TlsFailure> {
    CERT_FAILURES.with(|q| q.borrow_mut().pop_front())
}

thread_local! {
    /// Client-certificate refusals on this ntex worker thread, oldest first: the verifier runs
    /// inside the handshake on the same thread, and each refusal fails exactly one handshake,
    /// which takes one reason from here.
    static CERT_FAILURES: std::cell::RefCell<std::collections::VecDeque<TlsFailure>> = Default::default();
}

/// Delegates to webpki and remembers why a client certificate was refused.
#[derive(Debug)]
pub struct CountingVerifier(pub Arc<dyn ClientCertVerifier>);

impl ClientCertVerifier for CountingVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false // enforced by RotatingTls after the handshake, so the refusal can be counted
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end: &CertificateDer<'_>,
        chain: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.0.verify_client_cert(end, chain, now).inspect_err(|e| {
            let reason = classify_cert_error(e);
            CERT_FAILURES.with(|q| {
                let mut q = q.borrow_mut();
                // Bounded: a reason whose handshake future was dropped (worker shutdown) is
                // never taken; the oldest goes first.
                if q.len() >= 1024 {
                    q.pop_front();
                }
                q.push_back(reason);
            });
        })
    }

    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(m, c, d)
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(m, c, d)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::CertificateError as C;

    #[test]
    fn certificate_errors_are_labelled_by_their_kind() {
        let cases = [
            (rustls::Error::InvalidCertificate(C::Expired), "cert_expired"),
            (rustls::Error::InvalidCertificate(C::NotValidYet), "cert_not_yet_valid"),
            (rustls::Error::InvalidCertificate(C::Revoked), "cert_revoked"),
            (rustls::Error::InvalidCertificate(C::UnknownIssuer), "cert_unknown_issuer"),
            (rustls::Error::InvalidCertificate(C::BadSignature), "cert_unknown_issuer"),
            (rustls::Error::NoCertificatesPresented, "no_client_cert"),
            (rustls::Error::InvalidCertificate(C::BadEncoding), "cert_invalid"),
            (rustls::Error::HandshakeNotComplete, "handshake_failed"),
        ];
        for (e, label) in cases {
            assert_eq!(classify_cert_error(&e).as_str(), label, "{e:?}");
        }
    }

    #[test]
    fn io_errors_without_a_kind_are_labelled_by_their_text() {
        let cases = [
            (io::Error::from(io::ErrorKind::TimedOut), "handshake_timeout"),
            (io::Error::other("invalid peer certificate: Expired"), "cert_expired"),
            (io::Error::other("invalid peer certificate: NotValidYet"), "cert_not_yet_valid"),
            (io::Error::other("invalid peer certificate: Revoked"), "cert_revoked"),
            (io::Error::other("invalid peer certificate: UnknownIssuer"), "cert_unknown_issuer"),
            (io::Error::other("peer sent no certificates"), "no_client_cert"),
            (io::Error::other("invalid peer certificate: BadEncoding"), "cert_invalid"),
            (io::Error::other("peer is incompatible: ProtocolVersion"), "handshake_failed"),
            (io::Error::from(io::ErrorKind::UnexpectedEof), "handshake_failed"),
        ];
        for (e, label) in cases {
            assert_eq!(classify_handshake_error(&e).as_str(), label, "{e}");
        }
    }
}
