//! Dev PKI: the `edge-gateway certs ...` subcommands and the library functions behind them.
//!
//! One CA per site (`ca.pem`, `ca.key`) issues three kinds of leaf: the gateway's server
//! certificate (devices verify it), device certificates (the gateway verifies them; the device
//! identity is the subject CN) and the gateway's client certificate for the cloud sinks.
//! [`make_crl`] signs a CRL listing revoked leaves. certs/README.md has the lifecycle.
//!
//! Every certificate: an ECDSA P-256 key, a random positive 16-byte serial, keyUsage
//! digitalSignature (the CA: keyCertSign + cRLSign), a subject key identifier, and on leaves an
//! authority key identifier equal to the CA's subject key identifier.
//!
//! Files are replaced atomically: written to a hidden temp file in the destination's directory
//! (`.NAME.tmp-PID-N`), synced, then renamed over NAME, so the certificate-rotation watcher never
//! reads half a file. Private keys get mode 0600 from creation on; certificates and CRLs 0644.

mod cli;
mod files;
#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams, SanType, SerialNumber,
};
use x509_parser::extensions::ParsedExtension;
use x509_parser::time::ASN1Time;

pub use cli::{CertsCommand, Target, run};
use files::{Staged, commit_pair, parse_cert, read_pem, with_suffix};

/// File name of the CA certificate inside a CA directory.
pub const CA_CERT: &str = "ca.pem";
/// File name of the CA private key inside a CA directory.
pub const CA_KEY: &str = "ca.key";
/// Mode of private key files.
pub const KEY_MODE: u32 = 0o600;
/// Mode of certificate and CRL files.
pub const PUBLIC_MODE: u32 = 0o644;
const DAY_SECS: i64 = 86_400;

/// Errors of the dev PKI; each names the file it is about.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// Reading, writing or renaming a file failed.
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// `certs ca` would replace a CA key.
    #[error("{}: already exists; pass --force to replace the CA (everything it issued must then be re-issued)", path.display())]
    Exists { path: PathBuf },
    /// A PEM, certificate or key file cannot be used.
    #[error("{}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
    /// rcgen refused to build or sign what `path` was going to hold.
    #[error("{}: cannot sign: {source}", path.display())]
    Sign { path: PathBuf, source: rcgen::Error },
}

/// A validity window relative to now: `not_before = now + not_before_days`, `not_after = not_before + days`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Args)]
pub struct Validity {
    /// Validity in days, counted from not-before.
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..))]
    pub days: u32,
    /// Signed day offset of not-before from now (negative = past; `-10 --days 1` = expired).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub not_before_days: i64,
}

/// The kind of leaf; decides the extended key usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeafKind {
    /// The gateway's device-facing listener (serverAuth).
    Server,
    /// A device authenticating to the gateway (clientAuth).
    Device,
    /// The gateway authenticating to a cloud sink (clientAuth).
    Client,
}

/// Everything a leaf certificate says.
#[derive(Debug, Clone)]
pub struct LeafSpec {
    /// Which EKU, and for devices the identity rules.
    pub kind: LeafKind,
    /// Subject common name (a device's identity).
    pub cn: String,
    /// DNS subject alternative names.
    pub dns: Vec<String>,
    /// IP subject alternative names.
    pub ips: Vec<IpAddr>,
    /// URI subject alternative names.
    pub uris: Vec<String>,
    /// The validity window.
    pub validity: Validity,
}

/// A certificate and key written to disk.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate file (PEM).
    pub cert: PathBuf,
    /// The private key file (PKCS#8 PEM, mode 0600).
    pub key: PathBuf,
    /// Serial number, colon-separated hex.
    pub serial: String,
    /// notBefore, unix seconds.
    pub not_before: i64,
    /// notAfter, unix seconds.
    pub not_after: i64,
}

/// A CRL written to disk.
#[derive(Debug, Clone)]
pub struct CrlInfo {
    /// The CRL file (PEM).
    pub path: PathBuf,
    /// The revoked serial numbers, colon-separated hex.
    pub revoked: Vec<String>,
    /// The CRL number (the unix time of issue).
    pub number: u64,
    /// nextUpdate, unix seconds.
    pub next_update: i64,
}

/// Creates `dir/ca.pem` and `dir/ca.key`; refuses to replace an existing `ca.key` unless `force`.
/// The CA is valid from one day ago (clock skew) for `days` days.
pub fn create_ca(dir: &Path, cn: &str, days: u32, force: bool) -> Result<Issued, PkiError> {
    let (cert_path, key_path) = (dir.join(CA_CERT), dir.join(CA_KEY));
    if key_path.exists() && !force {
        return Err(PkiError::Exists { path: key_path });
    }
    let window = Validity { days, not_before_days: -1 };
    let mut params = base_params(cn, window, &cert_path)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().map_err(sign_err(&key_path))?;
    let cert = params.self_signed(&key).map_err(sign_err(&cert_path))?;
    let issued = written(cert_path, key_path, &params);
    commit_pair(&issued, &key.serialize_pem(), &cert.pem())?;
    Ok(issued)
}

/// Issues a leaf signed by the CA in `ca_dir` into `out.pem` and `out.key` (replacing them).
pub fn issue(ca_dir: &Path, out: &Path, spec: &LeafSpec) -> Result<Issued, PkiError> {
    let (cert_path, key_path) = (with_suffix(out, ".pem"), with_suffix(out, ".key"));
    if spec.kind == LeafKind::Device {
        check_identity(&spec.cn, &cert_path)?;
    }
    let ca = load_ca(ca_dir)?;
    let mut params = base_params(&spec.cn, spec.validity, &cert_path)?;
    params.is_ca = IsCa::ExplicitNoCa; // basicConstraints CA:FALSE, and makes rcgen write the SKI
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![match spec.kind {
        LeafKind::Server => ExtendedKeyUsagePurpose::ServerAuth,
        LeafKind::Device | LeafKind::Client => ExtendedKeyUsagePurpose::ClientAuth,
    }];
    params.subject_alt_names = subject_alt_names(spec).map_err(sign_err(&cert_path))?;
    let key = KeyPair::generate().map_err(sign_err(&key_path))?;
    let cert = params.signed_by(&key, &ca.issuer).map_err(sign_err(&cert_path))?;
    let issued = written(cert_path, key_path, &params);
    commit_pair(&issued, &key.serialize_pem(), &cert.pem())?;
    Ok(issued)
}

/// Writes a CRL signed by the CA in `ca_dir` to `out`, listing the serials of the `revoke`
/// certificate files (each must have been issued by that CA). CRL number = now (unix seconds).
pub fn make_crl(ca_dir: &Path, out: &Path, revoke: &[PathBuf], next_update_days: u32) -> Result<CrlInfo, PkiError> {
    let ca = load_ca(ca_dir)?;
    let mut serials = revoke.iter().map(|p| revoked_serial(p, &ca)).collect::<Result<Vec<_>, _>>()?;
    serials.sort();
    serials.dedup();
    let now = ASN1Time::now().timestamp();
    let next_update = now + i64::from(next_update_days) * DAY_SECS;
    let this_update = at(now, out)?.to_datetime();
    let revoked_certs = serials
        .iter()
        .map(|s| RevokedCertParams {
            serial_number: SerialNumber::from_slice(s),
            revocation_time: this_update,
            reason_code: None,
            invalidity_date: None,
        })
        .collect();
    let number = u64::try_from(now).unwrap_or(0);
    let params = CertificateRevocationListParams {
        this_update,
        next_update: at(next_update, out)?.to_datetime(),
        crl_number: SerialNumber::from(number),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: ca.key_id,
    };
    let pem = params.signed_by(&ca.issuer).and_then(|crl| crl.pem()).map_err(sign_err(out))?;
    Staged::write(out, pem.as_bytes(), PUBLIC_MODE)?.commit()?;
    let revoked = serials.iter().map(|s| SerialNumber::from_slice(s).to_string()).collect();
    Ok(CrlInfo { path: out.to_path_buf(), revoked, number, next_update })
}

/// The serial number (big-endian, no leading zero) of the certificate in a PEM file.
pub fn cert_serial(path: &Path) -> Result<Vec<u8>, PkiError> {
    let der = read_pem(path, "CERTIFICATE")?;
    Ok(parse_cert(&der, path)?.serial.to_bytes_be())
}

impl std::fmt::Display for CrlInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "wrote CRL {} (number {}, next update {}) revoking ", self.path.display(), self.number, show_time(self.next_update))?;
        match self.revoked.is_empty() {
            true => write!(f, "nothing"),
            false => write!(f, "{}", self.revoked.join(", ")),
        }
    }
}

/// A loaded CA: the signer plus what CRLs and revocation checks need from its certificate.
struct Ca {
    /// Signs certificates and CRLs; carries the CA's subject and key identifier.
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate (DER), whose key must have signed every certificate a CRL lists.
    der: Vec<u8>,
    /// The CA's subject key identifier, for the CRL's authority key identifier.
    key_id: KeyIdMethod,
}

fn load_ca(dir: &Path) -> Result<Ca, PkiError> {
    let (cert_path, key_path) = (dir.join(CA_CERT), dir.join(CA_KEY));
    let key_pem = std::fs::read_to_string(&key_path).map_err(io_err(&key_path))?;
    let key = KeyPair::from_pem(&key_pem).map_err(|e| invalid(&key_path, format!("not a private key: {e}")))?;
    let der = read_pem(&cert_path, "CERTIFICATE")?;
    let cert = parse_cert(&der, &cert_path)?;
    if !cert.is_ca() {
        return Err(invalid(&cert_path, "not a CA certificate (basicConstraints CA:TRUE missing)".into()));
    }
    if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
        return Err(invalid(&key_path, format!("does not match the public key of {}", cert_path.display())));
    }
    let key_id = cert.iter_extensions().find_map(|ext| match ext.parsed_extension() {
        ParsedExtension::SubjectKeyIdentifier(id) => Some(KeyIdMethod::PreSpecified(id.0.to_vec())),
        _ => None,
    });
    let issuer = Issuer::from_ca_cert_der(&der.as_slice().into(), key).map_err(|e| invalid(&cert_path, e.to_string()))?;
    Ok(Ca { issuer, der, key_id: key_id.unwrap_or(KeyIdMethod::Sha256) })
}

/// The serial of a certificate the CA signed. The signature is checked, not the issuer name:
/// two dev CAs share the default CN. (x509-parser's `verify` feature comes with rcgen's `ring`.)
fn revoked_serial(path: &Path, ca: &Ca) -> Result<Vec<u8>, PkiError> {
    let der = read_pem(path, "CERTIFICATE")?;
    let cert = parse_cert(&der, path)?;
    let ca_cert = parse_cert(&ca.der, path)?;
    if cert.issuer() != ca_cert.subject() || cert.verify_signature(Some(ca_cert.public_key())).is_err() {
        return Err(invalid(path, format!("not issued by this CA (issuer '{}', not signed by its key)", cert.issuer())));
    }
    Ok(cert.serial.to_bytes_be())
}

/// Subject CN, validity window and a fresh random serial; the rest is up to the caller.
fn base_params(cn: &str, validity: Validity, cert_path: &Path) -> Result<CertificateParams, PkiError> {
    if validity.days == 0 {
        return Err(invalid(cert_path, "--days must be at least 1".into()));
    }
    let now = ASN1Time::now().timestamp();
    let bad_window = || invalid(cert_path, format!("validity window out of range: {validity:?}"));
    let start = validity.not_before_days.checked_mul(DAY_SECS).and_then(|o| now.checked_add(o)).ok_or_else(bad_window)?;
    let end = start.checked_add(i64::from(validity.days) * DAY_SECS).ok_or_else(bad_window)?;
    let mut params = CertificateParams::default();
    params.not_before = at(start, cert_path)?.to_datetime();
    params.not_after = at(end, cert_path)?.to_datetime();
    params.serial_number = Some(random_serial(cert_path)?);
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    Ok(params)
}

/// 16 random bytes with the high bit cleared (a positive INTEGER) and a non-zero first byte
/// (so it stays 16 bytes long in DER).
fn random_serial(cert_path: &Path) -> Result<SerialNumber, PkiError> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    let no_randomness = |_| invalid(cert_path, "the system random generator failed; no serial number".into());
    ring::rand::SystemRandom::new().fill(&mut bytes).map_err(no_randomness)?;
    bytes[0] = (bytes[0] & 0x7f).max(1);
    Ok(SerialNumber::from_slice(&bytes))
}

fn subject_alt_names(spec: &LeafSpec) -> Result<Vec<SanType>, rcgen::Error> {
    let mut sans = Vec::new();
    for name in &spec.dns {
        sans.push(SanType::DnsName(name.as_str().try_into()?));
    }
    sans.extend(spec.ips.iter().map(|ip| SanType::IpAddress(*ip)));
    for uri in &spec.uris {
        sans.push(SanType::URI(uri.as_str().try_into()?));
    }
    Ok(sans)
}

/// A device identity becomes the MQTT client id and a topic level (`devices/{id}/...`); as a
/// subject CN it may have at most 64 characters (RFC 5280 ub-common-name).
fn check_identity(id: &str, cert_path: &Path) -> Result<(), PkiError> {
    let invalid = |reason| PkiError::Invalid { path: cert_path.to_path_buf(), reason };
    if id.is_empty() || id.chars().count() > 64 {
        return Err(invalid(format!("device identity '{id}' must be 1 to 64 characters long")));
    }
    match id.chars().find(|c| matches!(c, '/' | '+' | '#') || c.is_control() || c.is_whitespace()) {
        Some(c) => Err(invalid(format!("device identity '{id}' contains {c:?}; it is used as an MQTT topic level"))),
        None => Ok(()),
    }
}

fn written(cert: PathBuf, key: PathBuf, params: &CertificateParams) -> Issued {
    let serial = params.serial_number.as_ref().map(ToString::to_string).unwrap_or_default();
    Issued { cert, key, serial, not_before: params.not_before.unix_timestamp(), not_after: params.not_after.unix_timestamp() }
}

fn show_time(secs: i64) -> String {
    ASN1Time::from_timestamp(secs).map(|t| t.to_string()).unwrap_or_else(|_| format!("@{secs}"))
}

/// `secs` as a date rcgen takes (via `.to_datetime()`; this keeps `time` out of our dependencies).
fn at(secs: i64, path: &Path) -> Result<ASN1Time, PkiError> {
    ASN1Time::from_timestamp(secs).map_err(|_| invalid(path, format!("date out of range: unix time {secs}")))
}

fn invalid(path: &Path, reason: String) -> PkiError {
    PkiError::Invalid { path: path.to_path_buf(), reason }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io { path: path.to_path_buf(), source }
}

fn sign_err(path: &Path) -> impl FnOnce(rcgen::Error) -> PkiError + '_ {
    move |source| PkiError::Sign { path: path.to_path_buf(), source }
}
