//! `edge-gateway run`: the gateway itself, until SIGTERM/SIGINT or until the root supervisor
//! gives up.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use edge_gateway::config::{AdminConfig, Config};
use edge_gateway::{Exit, Gateway};
use edge_gateway_actors::supervisor::SupervisionConfig;

use super::logs::{self, LogFormat};

/// `run`'s arguments.
#[derive(clap::Args)]
pub struct RunArgs {
    /// TOML config file.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// supervision.toml to use instead of the config's or the embedded one.
    #[arg(long)]
    supervision: Option<PathBuf>,
    /// Enable the chaos admin API on this loopback address (off by default; see src/api/admin.rs).
    #[arg(long, requires = "admin_token_file")]
    admin_listen: Option<SocketAddr>,
    /// File holding the admin API's bearer token (at least 16 characters).
    #[arg(long, requires = "admin_listen")]
    admin_token_file: Option<PathBuf>,
    /// Log line format: JSON lines on stdout (for journald and log shippers), or human.
    #[arg(long, value_enum, default_value_t = LogFormat::Json)]
    log_format: LogFormat,
}

/// Load everything, then run the gateway on a fresh tokio runtime.
pub fn run(args: RunArgs) -> ExitCode {
    logs::init(args.log_format);
    let admin = match admin_flags(args.admin_listen, args.admin_token_file) {
        Ok(a) => a,
        Err(problems) => return super::bad_config(&problems),
    };
    match super::load(args.config.clone(), args.supervision) {
        Ok((mut config, supervision)) => {
            config.admin = admin;
            serve(config, supervision, args.config)
        }
        Err(problems) => super::bad_config(&problems),
    }
}

/// The chaos admin API from its two flags (both or neither).
fn admin_flags(listen: Option<SocketAddr>, token_file: Option<PathBuf>) -> Result<Option<AdminConfig>, Vec<String>> {
    let (Some(listen), Some(file)) = (listen, token_file) else { return Ok(None) };
    let token = std::fs::read_to_string(&file).map_err(|e| vec![format!("--admin-token-file: {}: {e}", file.display())])?;
    AdminConfig::new(listen, token).map(Some).map_err(|e| e.0)
}

fn serve(config: Config, supervision: SupervisionConfig, path: Option<PathBuf>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("gateway").build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("edge-gateway: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let gateway = match Gateway::start(config, supervision).await {
            Ok(g) => g,
            Err(e) => {
                tracing::error!("Cannot start: {:#}", anyhow::Error::from(e));
                return ExitCode::FAILURE;
            }
        };
        tokio::spawn(super::reload::on_sighup(path, gateway.rotation.clone()));
        // systemd (Type=notify): ready now; the watchdog fed while ready; stopping on a signal.
        let notifier = super::systemd::Notifier::from_env();
        let stopping = super::systemd::Notifier::from_env();
        if let Some(n) = notifier {
            n.send("READY=1\nSTATUS=started");
            tokio::spawn(n.watchdog(gateway.health.clone(), gateway.metrics.clone()));
        }
        let shutdown = async move {
            shutdown_signal().await;
            if let Some(n) = stopping {
                n.send("STOPPING=1\nSTATUS=stopping: draining in-flight publishes");
            }
        };
        match gateway.run_until(shutdown).await {
            Exit::Graceful => ExitCode::SUCCESS,
            Exit::RootFailed => ExitCode::FAILURE,
        }
    })
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "Cannot listen for SIGTERM; only SIGINT stops the gateway.");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping."),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping."),
    }
}
