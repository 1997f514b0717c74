//! `edge-gateway run`: the gateway itself, until SIGTERM/SIGINT, until the root supervisor
//! gives up, or until SIGUSR2 asks it to switch to an installed update (`switch.rs`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use edge_gateway::config::{AdminConfig, Config};
use edge_gateway::update::state;
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
            if let Err(e) = logs::set_filter(&config.log_filter) {
                tracing::error!(error = %e, "gateway.log_filter not applied.");
            }
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

/// How the gateway's run ended.
enum Ended {
    /// Exit with this code.
    Exit(ExitCode),
    /// Stopped for an update: switch to it.
    Switch,
}

fn serve(config: Config, supervision: SupervisionConfig, path: Option<PathBuf>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("gateway").build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("edge-gateway: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (data_dir, update) = (config.data_dir.clone(), config.update.clone());
    let ended = runtime.block_on(async {
        let gateway = match Gateway::start(config, supervision).await {
            Ok(g) => g,
            Err(e) => {
                tracing::error!("Cannot start: {:#}", anyhow::Error::from(e));
                return Ended::Exit(ExitCode::FAILURE);
            }
        };
        report_last_update(&data_dir);
        // The switch of an update waits for this file to name the new process.
        if let Err(e) = state::write_pid(&data_dir) {
            tracing::warn!(error = %e, "Cannot write the pid file; `edge-gateway update apply` cannot find this gateway.");
        }
        tokio::spawn(super::reload::on_sighup(path, gateway.rotation.clone(), gateway.sinks.clone()));
        // systemd (Type=notify): ready now; the watchdog fed while ready; stopping on a signal.
        let notifier = super::systemd::Notifier::from_env();
        let stopping = super::systemd::Notifier::from_env();
        if let Some(n) = notifier {
            n.send("READY=1\nSTATUS=started");
            tokio::spawn(n.watchdog(gateway.health.clone(), gateway.metrics.clone()));
        }
        let switch = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let shutdown = {
            let (switch, data_dir) = (switch.clone(), data_dir.clone());
            async move {
                let update = stop_signal(&data_dir).await;
                switch.store(update, std::sync::atomic::Ordering::SeqCst);
                if let Some(n) = stopping {
                    n.send(if update {
                        "STATUS=stopping to switch to an update"
                    } else {
                        "STOPPING=1\nSTATUS=stopping: draining in-flight publishes"
                    });
                }
            }
        };
        let exit = gateway.run_until(shutdown).await;
        state::remove_pid(&data_dir);
        match exit {
            Exit::Graceful if switch.load(std::sync::atomic::Ordering::SeqCst) => Ended::Switch,
            Exit::Graceful => Ended::Exit(ExitCode::SUCCESS),
            Exit::RootFailed => Ended::Exit(ExitCode::FAILURE),
        }
    });
    // Every task and file of this gateway is gone before the switch.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    match ended {
        Ended::Exit(code) => code,
        Ended::Switch => {
            let e = super::switch::exec_switch(&data_dir, &update);
            eprintln!("edge-gateway: cannot switch to the update: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Log how the last update ended, once at start (it is also on `/api/health`).
fn report_last_update(data_dir: &std::path::Path) {
    match state::read(data_dir) {
        Ok(Some(s)) if s.phase == state::Phase::RolledBack => {
            tracing::error!(from = %s.from, to = %s.to, reason = s.reason.as_deref().unwrap_or(""), "The update was rolled back; this is the previous version.")
        }
        Ok(Some(s)) => tracing::info!(phase = ?s.phase, from = %s.from, to = %s.to, "Last update."),
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "Cannot read the update state."),
    }
}

/// Until SIGTERM or SIGINT (`false`), or SIGUSR2 with an update installed (`true`).
async fn stop_signal(data_dir: &std::path::Path) -> bool {
    use tokio::signal::unix::{SignalKind, signal};
    let mut usr2 = match signal(SignalKind::user_defined2()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!(error = %e, "Cannot listen for SIGUSR2; `edge-gateway update apply` cannot switch this gateway.");
            None
        }
    };
    let mut shutdown = std::pin::pin!(shutdown_signal());
    loop {
        let update = async {
            match usr2.as_mut() {
                Some(s) => s.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = &mut shutdown => return false,
            _ = update => match state::read(data_dir) {
                Ok(Some(s)) if s.phase == state::Phase::Trying => {
                    tracing::info!(from = %s.from, to = %s.to, "SIGUSR2: stopping to switch to the installed update.");
                    return true;
                }
                other => tracing::warn!(state = ?other, "SIGUSR2 without an update installed; ignored."),
            },
        }
    }
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
