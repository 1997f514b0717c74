//! Unit tests of the dev PKI: issue into a temp dir, parse the results back with x509-parser.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use clap::Parser;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;

use super::*;

fn pem_der(path: &Path) -> Vec<u8> {
    let bytes = fs::read(path).unwrap();
    x509_parser::pem::parse_x509_pem(&bytes).unwrap().1.contents
}

fn with_cert<T>(path: &Path, f: impl FnOnce(&X509Certificate<'_>) -> T) -> T {
    let der = pem_der(path);
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    f(&cert)
}

fn cn(cert: &X509Certificate<'_>) -> String {
    cert.subject().iter_common_name().next().unwrap().as_str().unwrap().to_string()
}

fn spec(kind: LeafKind, cn: &str) -> LeafSpec {
    let validity = Validity { days: 365, not_before_days: -1 };
    LeafSpec { kind, cn: cn.into(), dns: Vec::new(), ips: Vec::new(), uris: Vec::new(), validity }
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Parses `edge-gateway certs ...` the way the binary will (as a subcommand).
#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    certs: CertsCommand,
}

#[test]
fn ca_server_device_client_and_crl_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    run(CertsCommand::Ca { dir: d.into(), cn: "site CA".into(), days: 3650, force: false }).unwrap();
    let target = |name: &str| Target { ca_dir: d.into(), out: d.join(name) };
    let validity = Validity { days: 365, not_before_days: -1 };
    let ip = vec!["127.0.0.1".parse().unwrap()];
    run(CertsCommand::Server { target: target("server"), cn: "gw".into(), dns: vec!["localhost".into()], ip, validity }).unwrap();
    let (san_uri, san_dns) = (vec!["spiffe://site/dev-001".into()], vec!["dev-001.local".into()]);
    run(CertsCommand::Device { target: target("dev-001"), identity: "dev-001".into(), san_uri, san_dns, validity }).unwrap();
    run(CertsCommand::Client { target: target("client"), cn: "edge-gateway-client".into(), validity }).unwrap();
    let summary =
        run(CertsCommand::Crl { ca_dir: d.into(), out: d.join("crl.pem"), revoke: vec![d.join("dev-001.pem")], next_update_days: 30 })
            .unwrap();
    assert!(summary.contains("crl.pem"), "{summary}");

    let ca_der = pem_der(&d.join(CA_CERT));
    let (_, ca) = X509Certificate::from_der(&ca_der).unwrap();
    assert!(ca.is_ca());
    let ca_ku = ca.key_usage().unwrap().unwrap().value;
    assert!(ca_ku.key_cert_sign() && ca_ku.crl_sign());
    let ca_ski = ca.iter_extensions().find_map(|e| match e.parsed_extension() {
        ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
        _ => None,
    });

    for (file, want_cn, server_auth) in
        [("server.pem", "gw", true), ("dev-001.pem", "dev-001", false), ("client.pem", "edge-gateway-client", false)]
    {
        with_cert(&d.join(file), |cert| {
            assert_eq!(cn(cert), want_cn);
            let eku = cert.extended_key_usage().unwrap().unwrap().value;
            assert_eq!((eku.server_auth, eku.client_auth), (server_auth, !server_auth), "{file}");
            assert!(cert.key_usage().unwrap().unwrap().value.digital_signature());
            assert!(!cert.is_ca());
            assert_eq!(cert.raw_serial().len(), 16, "{file}: 16-byte positive serial");
            assert!(cert.raw_serial()[0] & 0x80 == 0);
            cert.verify_signature(Some(ca.public_key())).expect("leaf signature verifies against the CA key");
            let aki = cert.iter_extensions().find_map(|e| match e.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(aki) => aki.key_identifier.as_ref().map(|k| k.0.to_vec()),
                _ => None,
            });
            assert_eq!(aki, ca_ski, "{file}: AKI = CA's SKI");
        });
    }
    with_cert(&d.join("server.pem"), |cert| {
        let sans = &cert.subject_alternative_name().unwrap().unwrap().value.general_names;
        assert!(sans.contains(&GeneralName::DNSName("localhost")));
        assert!(sans.contains(&GeneralName::IPAddress(&[127, 0, 0, 1])));
    });
    with_cert(&d.join("dev-001.pem"), |cert| {
        let sans = &cert.subject_alternative_name().unwrap().unwrap().value.general_names;
        assert!(sans.contains(&GeneralName::URI("spiffe://site/dev-001")));
        assert!(sans.contains(&GeneralName::DNSName("dev-001.local")));
    });

    let crl_der = pem_der(&d.join("crl.pem"));
    let (_, crl) = CertificateRevocationList::from_der(&crl_der).unwrap();
    crl.verify_signature(ca.public_key()).expect("CRL signature verifies against the CA key");
    let revoked: Vec<_> = crl.iter_revoked_certificates().map(|r| r.serial().to_bytes_be()).collect();
    assert_eq!(revoked, vec![cert_serial(&d.join("dev-001.pem")).unwrap()]);
    assert!(crl.crl_number().is_some());
    assert!(crl.next_update().unwrap().timestamp() > crl.last_update().timestamp() + 29 * DAY_SECS);
}

#[test]
fn validity_window_honours_not_before_days() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    create_ca(d, "CA", 10, false).unwrap();
    let now = ASN1Time::now().timestamp();
    let cases = [(-10, 1, "expired"), (5, 30, "not_yet_valid"), (-1, 365, "default")];
    for (not_before_days, days, name) in cases {
        let mut s = spec(LeafKind::Device, name);
        s.validity = Validity { days, not_before_days };
        let issued = issue(d, &d.join(name), &s).unwrap();
        with_cert(&issued.cert, |cert| {
            let (nb, na) = (cert.validity().not_before.timestamp(), cert.validity().not_after.timestamp());
            let want_nb = now + not_before_days * DAY_SECS;
            assert!((nb - want_nb).abs() < 60, "{name}: not_before {nb} vs {want_nb}");
            assert_eq!(na - nb, i64::from(days) * DAY_SECS, "{name}");
            assert_eq!((issued.not_before, issued.not_after), (nb, na));
        });
    }
    with_cert(&d.join("expired.pem"), |c| assert!(c.validity().not_after.timestamp() < now));
    with_cert(&d.join("not_yet_valid.pem"), |c| assert!(c.validity().not_before.timestamp() > now));
}

#[test]
fn existing_ca_key_is_not_overwritten_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    create_ca(d, "CA", 10, false).unwrap();
    let before = fs::read(d.join(CA_KEY)).unwrap();
    let err = create_ca(d, "CA", 10, false).unwrap_err();
    assert!(matches!(err, PkiError::Exists { .. }));
    assert!(err.to_string().contains("ca.key") && err.to_string().contains("--force"), "{err}");
    assert_eq!(fs::read(d.join(CA_KEY)).unwrap(), before);
    create_ca(d, "CA", 10, true).unwrap();
    assert_ne!(fs::read(d.join(CA_KEY)).unwrap(), before);
}

#[test]
fn private_keys_are_mode_0600_and_certificates_0644() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    create_ca(d, "CA", 10, false).unwrap();
    let issued = issue(d, &d.join("sub/dev"), &spec(LeafKind::Device, "dev")).unwrap();
    make_crl(d, &d.join("crl.pem"), &[], 30).unwrap();
    assert_eq!((mode(&d.join(CA_KEY)), mode(&issued.key)), (0o600, 0o600));
    assert_eq!((mode(&d.join(CA_CERT)), mode(&issued.cert), mode(&d.join("crl.pem"))), (0o644, 0o644, 0o644));
    let leftovers: Vec<_> =
        fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name()).filter(|n| n.to_string_lossy().contains(".tmp-")).collect();
    assert!(leftovers.is_empty(), "temp files left behind: {leftovers:?}");
}

#[test]
fn empty_crl_is_signed_and_lists_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    create_ca(d, "CA", 10, false).unwrap();
    let info = make_crl(d, &d.join("crl.pem"), &[], 7).unwrap();
    assert!(info.revoked.is_empty() && info.to_string().contains("revoking nothing"), "{info}");
    let ca_der = pem_der(&d.join(CA_CERT));
    let (_, ca) = X509Certificate::from_der(&ca_der).unwrap();
    let crl_der = pem_der(&d.join("crl.pem"));
    let (_, crl) = CertificateRevocationList::from_der(&crl_der).unwrap();
    crl.verify_signature(ca.public_key()).unwrap();
    assert_eq!(crl.iter_revoked_certificates().count(), 0);
    assert_eq!(crl.crl_number().unwrap().to_string(), info.number.to_string());
}

#[test]
fn crl_refuses_a_certificate_of_another_ca_even_with_the_same_name() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    create_ca(&a, "edge-gateway dev CA", 10, false).unwrap();
    create_ca(&b, "edge-gateway dev CA", 10, false).unwrap();
    let foreign = issue(&b, &b.join("dev"), &spec(LeafKind::Device, "dev")).unwrap();
    let err = make_crl(&a, &a.join("crl.pem"), &[foreign.cert], 30).unwrap_err();
    assert!(err.to_string().contains("not issued by this CA"), "{err}");
    assert!(!a.join("crl.pem").exists());
}

#[test]
fn ca_key_that_does_not_match_ca_pem_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    create_ca(&a, "CA a", 10, false).unwrap();
    create_ca(&b, "CA b", 10, false).unwrap();
    fs::copy(b.join(CA_KEY), a.join(CA_KEY)).unwrap();
    let err = issue(&a, &a.join("dev"), &spec(LeafKind::Device, "dev")).unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");
}

#[test]
fn missing_ca_is_reported_with_its_file_name() {
    let dir = tempfile::tempdir().unwrap();
    let err = issue(dir.path(), &dir.path().join("dev"), &spec(LeafKind::Device, "dev")).unwrap_err();
    assert!(err.to_string().contains("ca.key"), "{err}");
}

#[test]
fn device_identity_that_is_no_topic_level_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    create_ca(d, "CA", 10, false).unwrap();
    for bad in ["", "a/b", "dev+", "dev#", "dev 1"] {
        let err = issue(d, &d.join("dev"), &spec(LeafKind::Device, bad)).unwrap_err();
        assert!(err.to_string().contains("device identity"), "{bad:?}: {err}");
    }
    assert!(!d.join("dev.pem").exists() && !d.join("dev.key").exists());
}

#[test]
fn cli_takes_negative_day_offsets_and_repeated_flags() {
    let cli = Cli::try_parse_from([
        "certs",
        "device",
        "--ca-dir",
        "d",
        "--out",
        "d/x",
        "--identity",
        "x",
        "--not-before-days",
        "-10",
        "--days",
        "1",
    ]);
    match cli.unwrap().certs {
        CertsCommand::Device { validity, .. } => assert_eq!(validity, Validity { days: 1, not_before_days: -10 }),
        other => panic!("{other:?}"),
    }
    match Cli::try_parse_from(["certs", "server", "--ca-dir", "d", "--out", "d/s"]).unwrap().certs {
        CertsCommand::Server { dns, ip, cn, validity, .. } => {
            assert_eq!((dns, cn), (vec!["localhost".to_string()], "edge-gateway".to_string()));
            assert_eq!(ip, vec!["127.0.0.1".parse::<IpAddr>().unwrap()]);
            assert_eq!(validity, Validity { days: 365, not_before_days: -1 });
        }
        other => panic!("{other:?}"),
    }
    match Cli::try_parse_from(["certs", "crl", "--ca-dir", "d", "--out", "c", "--revoke", "a.pem", "--revoke", "b.pem"]).unwrap().certs {
        CertsCommand::Crl { revoke, next_update_days, .. } => assert_eq!((revoke.len(), next_update_days), (2, 30)),
        other => panic!("{other:?}"),
    }
    assert!(Cli::try_parse_from(["certs", "client", "--ca-dir", "d", "--out", "c", "--days", "0"]).is_err());
}

#[test]
fn rustls_accepts_the_issued_set_and_refuses_revoked_expired_and_wrong_purpose_certs() {
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, ServerName, UnixTime, pem::PemObject};
    use rustls::{CertificateError, Error};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    create_ca(d, "CA", 10, false).unwrap();
    let mut expired = spec(LeafKind::Device, "old");
    expired.validity = Validity { days: 1, not_before_days: -10 };
    for (name, s) in [("good", spec(LeafKind::Device, "good")), ("revoked", spec(LeafKind::Device, "revoked")), ("old", expired)] {
        issue(d, &d.join(name), &s).unwrap();
    }
    let mut server = spec(LeafKind::Server, "gw");
    (server.dns, server.ips) = (vec!["localhost".into()], vec!["127.0.0.1".parse().unwrap()]);
    issue(d, &d.join("server"), &server).unwrap();
    make_crl(d, &d.join("crl.pem"), &[d.join("revoked.pem")], 30).unwrap();

    let der = |name: &str| CertificateDer::from_pem_file(d.join(name)).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der(CA_CERT)).unwrap();
    let roots = std::sync::Arc::new(roots);
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let crl = CertificateRevocationListDer::from_pem_file(d.join("crl.pem")).unwrap();
    let clients =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone()).with_crls([crl]).build().unwrap();
    let now = UnixTime::now();
    assert!(clients.verify_client_cert(&der("good.pem"), &[], now).is_ok());
    let refused = |name: &str| match clients.verify_client_cert(&der(name), &[], now) {
        Err(Error::InvalidCertificate(e)) => e,
        other => panic!("{name}: {other:?}"),
    };
    assert_eq!(refused("revoked.pem"), CertificateError::Revoked);
    assert!(matches!(refused("old.pem"), CertificateError::ExpiredContext { .. } | CertificateError::Expired), "old.pem");
    assert!(matches!(refused("server.pem"), CertificateError::InvalidPurposeContext { .. } | CertificateError::InvalidPurpose));

    let servers = rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider).build().unwrap();
    for name in ["localhost", "127.0.0.1"] {
        let name = ServerName::try_from(name).unwrap();
        servers.verify_server_cert(&der("server.pem"), &[], &name, &[], now).unwrap();
    }
}
