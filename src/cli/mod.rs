//! The command line: one file per subcommand. `anyhow` lives here only: library errors are
//! typed, and each subcommand prints them with their context.

mod archive;
mod check_config;
mod logs;
mod passwd;
mod reload;
mod run;
mod salvage;
mod schema;
mod switch;
mod systemd;
mod update;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use edge_gateway::config::{Config, ENV_OVERRIDES};
use edge_gateway::{load_supervision, preflight};
use edge_gateway_actors::supervisor::SupervisionConfig;

/// `edge-gateway`'s arguments.
#[derive(Parser)]
#[command(name = "edge-gateway", version, about = "IoT edge gateway: MQTT in, durable store, forwarders to the cloud")]
#[command(after_help = format!("Environment overrides: {ENV_OVERRIDES}\nLog filter: RUST_LOG (default: info)"))]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (on the embedded default config unless --config is given).
    Run(run::RunArgs),
    /// Create a dev PKI: CA, server, device and cloud-client certificates, CRLs (certs/README.md).
    #[command(subcommand)]
    Certs(edge_gateway::trust::pki::CertsCommand),
    /// Add or replace a user in a password file (mosquitto_passwd format); the password is
    /// read from the first line of stdin.
    Passwd(passwd::PasswdArgs),
    /// Work on the store while the gateway is stopped.
    #[command(subcommand)]
    Store(salvage::StoreCommand),
    /// Validate a config file (and its supervision file); print every problem.
    CheckConfig(check_config::CheckConfigArgs),
    /// Schema registry tools: compatibility checks for CI, the messages kept apart.
    #[command(subcommand)]
    Schema(schema::SchemaCommand),
    /// Signed self-update with rollback (docs/OPERATIONS.md).
    #[command(subcommand)]
    Update(update::UpdateCommand),
    /// The archive (retention tier): list, query, export, verify; deletions and legal holds
    /// (docs/RETENTION.md).
    #[command(subcommand)]
    Archive(archive::ArchiveCommand),
}

impl Cli {
    /// Run the chosen subcommand; its exit code.
    pub fn dispatch(self) -> ExitCode {
        match self.command {
            Command::Run(args) => run::run(args),
            Command::Certs(cmd) => report("certs", edge_gateway::trust::pki::run(cmd).map(Some).map_err(anyhow::Error::from)),
            Command::Passwd(args) => report("passwd", passwd::run(args).map(|()| None)),
            Command::Store(cmd) => report("store salvage", salvage::run(cmd).map(Some)),
            Command::CheckConfig(args) => check_config::run(args),
            Command::Schema(cmd) => schema::run(cmd),
            Command::Update(cmd) => update::run(cmd),
            Command::Archive(cmd) => archive::run(cmd),
        }
    }
}

/// Print a subcommand's summary (exit 0) or its error with every cause (exit 1).
fn report(name: &str, result: anyhow::Result<Option<String>>) -> ExitCode {
    match result {
        Ok(summary) => {
            summary.iter().for_each(|s| println!("{s}"));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("edge-gateway {name}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The config (file or embedded default) and the supervision policies, with every file they
/// name loaded; `Err` lists every problem.
fn load(file: Option<PathBuf>, supervision: Option<PathBuf>) -> Result<(Config, SupervisionConfig), Vec<String>> {
    let mut config = match &file {
        Some(path) => Config::load(path),
        None => Config::embedded_default(),
    }
    .map_err(|e| e.0)?;
    if supervision.is_some() {
        config.supervision_file = supervision;
    }
    let problems = preflight(&config);
    if !problems.is_empty() {
        return Err(problems);
    }
    let sup = load_supervision(&config).map_err(|errors| {
        let file = config.supervision_file.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
        errors.into_iter().map(|e| format!("{file}: {e}")).collect::<Vec<_>>()
    })?;
    Ok((config, sup))
}

/// Print every configuration problem; exit 2.
fn bad_config(problems: &[String]) -> ExitCode {
    eprintln!("edge-gateway: invalid configuration:");
    for p in problems {
        eprintln!("  {p}");
    }
    ExitCode::from(2)
}
