//! The `edge-gateway certs ...` subcommands: clap definitions and [`run`], which maps each onto
//! the library functions of [`super`] and returns a summary for the operator.

use std::net::IpAddr;
use std::path::PathBuf;

use super::{Issued, LeafKind, LeafSpec, PkiError, Validity, create_ca, issue, make_crl, show_time};

/// `edge-gateway certs ...`: a development PKI for one site (see certs/README.md).
#[derive(Debug, clap::Subcommand)]
pub enum CertsCommand {
    /// Create the site CA: DIR/ca.pem and DIR/ca.key.
    Ca {
        /// Directory for ca.pem and ca.key (created when missing).
        #[arg(long)]
        dir: PathBuf,
        /// Subject common name of the CA.
        #[arg(long, default_value = "edge-gateway dev CA")]
        cn: String,
        /// Validity in days, counted from one day ago.
        #[arg(long, default_value_t = 3650, value_parser = clap::value_parser!(u32).range(1..))]
        days: u32,
        /// Replace an existing ca.key (every certificate it issued must then be re-issued).
        #[arg(long)]
        force: bool,
    },
    /// Issue the gateway's server certificate (EKU serverAuth): PREFIX.pem and PREFIX.key.
    Server {
        #[command(flatten)]
        target: Target,
        /// Subject common name.
        #[arg(long, default_value = "edge-gateway")]
        cn: String,
        /// DNS subject alternative name; repeat for more. Giving any replaces the default.
        #[arg(long = "dns", default_value = "localhost")]
        dns: Vec<String>,
        /// IP subject alternative name; repeat for more. Giving any replaces the default.
        #[arg(long = "ip", default_value = "127.0.0.1")]
        ip: Vec<IpAddr>,
        #[command(flatten)]
        validity: Validity,
    },
    /// Issue a device certificate (CN = identity, EKU clientAuth): PREFIX.pem and PREFIX.key.
    Device {
        #[command(flatten)]
        target: Target,
        /// The device identity (MQTT client id and topic ACL name); becomes the subject CN.
        #[arg(long)]
        identity: String,
        /// URI subject alternative name (e.g. `spiffe://site/dev-001`); repeatable.
        #[arg(long)]
        san_uri: Vec<String>,
        /// DNS subject alternative name; repeatable.
        #[arg(long)]
        san_dns: Vec<String>,
        #[command(flatten)]
        validity: Validity,
    },
    /// Issue the gateway's client certificate for the cloud sinks (EKU clientAuth).
    Client {
        #[command(flatten)]
        target: Target,
        /// Subject common name.
        #[arg(long, default_value = "edge-gateway-client")]
        cn: String,
        #[command(flatten)]
        validity: Validity,
    },
    /// Sign a CRL listing the serial numbers of the given certificate files (none = empty CRL).
    Crl {
        /// Directory holding ca.pem and ca.key.
        #[arg(long)]
        ca_dir: PathBuf,
        /// The CRL file (PEM) to write.
        #[arg(long)]
        out: PathBuf,
        /// A certificate (PEM) to list as revoked; repeatable.
        #[arg(long)]
        revoke: Vec<PathBuf>,
        /// Days until the CRL's nextUpdate.
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..))]
        next_update_days: u32,
    },
}

/// Where a leaf comes from and where it goes.
#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// Directory holding ca.pem and ca.key.
    #[arg(long)]
    pub ca_dir: PathBuf,
    /// Output prefix: writes PREFIX.pem (the leaf only) and PREFIX.key.
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs one `certs` subcommand and returns a summary for the operator.
pub fn run(cmd: CertsCommand) -> Result<String, PkiError> {
    let (target, spec) = match cmd {
        CertsCommand::Ca { dir, cn, days, force } => return create_ca(&dir, &cn, days, force).map(|i| describe("CA certificate", &i)),
        CertsCommand::Crl { ca_dir, out, revoke, next_update_days } => {
            return make_crl(&ca_dir, &out, &revoke, next_update_days).map(|c| c.to_string());
        }
        CertsCommand::Server { target, cn, dns, ip, validity } => {
            (target, LeafSpec { kind: LeafKind::Server, cn, dns, ips: ip, uris: Vec::new(), validity })
        }
        CertsCommand::Device { target, identity, san_uri, san_dns, validity } => {
            (target, LeafSpec { kind: LeafKind::Device, cn: identity, dns: san_dns, ips: Vec::new(), uris: san_uri, validity })
        }
        CertsCommand::Client { target, cn, validity } => {
            (target, LeafSpec { kind: LeafKind::Client, cn, dns: Vec::new(), ips: Vec::new(), uris: Vec::new(), validity })
        }
    };
    let kind = match spec.kind {
        LeafKind::Server => "server",
        LeafKind::Device => "device",
        LeafKind::Client => "client",
    };
    let what = format!("{kind} certificate '{}'", spec.cn);
    issue(&target.ca_dir, &target.out, &spec).map(|i| describe(&what, &i))
}

fn describe(what: &str, i: &Issued) -> String {
    format!(
        "wrote {what} {} (serial {}, valid {} to {}) and its key {} (mode 0600)",
        i.cert.display(),
        i.serial,
        show_time(i.not_before),
        show_time(i.not_after),
        i.key.display()
    )
}
