//! Who may connect and what they may do: device TLS, identity and authentication, topic ACLs,
//! password files, and the dev PKI that issues the certificates.
//!
//! - [`tls`]: the device-facing TLS material (swappable while running), the handshake and its
//!   failure labels.
//! - [`auth`]: a connecting device's identity (certificate, username or client id), password
//!   checks, ACL decisions.
//! - [`acl`]: topic ACL files and their patterns.
//! - [`passwd`]: mosquitto_passwd-format password files.
//! - [`pki`]: `edge-gateway certs`: a dev CA and its server, device and client certificates.

pub mod acl;
pub mod auth;
pub mod passwd;
pub mod pki;
pub mod tls;
