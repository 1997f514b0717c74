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

/// Puts the calling thread (one of the `gateway` runtime's) in `SCHED_BATCH`: a message from an
/// MQTT I/O thread to an actor wakes this thread without preempting the I/O thread, which goes on
/// with its connections and lets the actor run when it sleeps or on the other core. Without it,
/// every actor message cost the I/O thread two context switches (with the CONNECT's session
/// entry no longer awaited: ~8 switches per CONNECT before, ~5.4 after; docs/BENCHMARKS.md,
/// "Idle connections"). Still the fair scheduler, same nice value; a refusal (seccomp, say)
/// leaves the thread as it was.
fn yield_to_io() {
    let normal = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler(2) on the calling thread (pid 0) with a valid parameter.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &normal) } != 0 {
        tracing::debug!("SCHED_BATCH refused: {}", std::io::Error::last_os_error());
    }
}

fn serve(config: Config, supervision: SupervisionConfig, path: Option<PathBuf>) -> ExitCode {
    // While this is the only thread: a table grown later stalls an accept for an RCU grace period.
    match edge_gateway::ingress::fd_table::reserve(config.mqtt.max_connections) {
        Ok(slots) => tracing::debug!(slots, "Descriptor table grown for the device connections."),
        Err(e) => {
            tracing::warn!(error = %e, "Cannot grow the descriptor table at start; it grows as connections come (each growth stalls accepting for a few ms).")
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("gateway").on_thread_start(yield_to_io).build();
    let runtime = match runtime {
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
                tracing::error!("Cannot start: {}", with_causes(&e));
                return Ended::Exit(ExitCode::FAILURE);
            }
        };
        report_last_update(&data_dir);
        // Every signal handler first: the pid file tells `update apply` (and systemd's reload)
        // that this process takes SIGUSR2 and SIGHUP; their default action would end it.
        let mut stops = Stops::new();
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(hup) => {
                tokio::spawn(super::reload::on_sighup(hup, path, gateway.rotation.clone(), gateway.sinks.clone()));
            }
            Err(e) => tracing::error!(error = %e, "Cannot listen for SIGHUP; the configuration is only read at start."),
        }
        if let Err(e) = state::write_pid(&data_dir) {
            tracing::warn!(error = %e, "Cannot write the pid file; `edge-gateway update apply` cannot find this gateway.");
        }
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
                let update = stops.next(&data_dir).await;
                if !update {
                    if let Some(n) = &stopping {
                        n.send("STOPPING=1\nSTATUS=stopping: draining in-flight publishes");
                    }
                    return;
                }
                switch.store(true, std::sync::atomic::Ordering::SeqCst);
                // While draining for the switch: the watchdog stays fed (the gateway is doing
                // what it was asked), and a SIGTERM or SIGINT turns the switch into a stop.
                tokio::spawn(async move {
                    let every = super::systemd::watchdog_period().unwrap_or(std::time::Duration::from_secs(3600));
                    let mut tick = tokio::time::interval(every);
                    loop {
                        tokio::select! {
                            () = stops.stop() => {
                                switch.store(false, std::sync::atomic::Ordering::SeqCst);
                                tracing::info!("Stop requested while stopping for an update: the update is not switched to.");
                                if let Some(n) = &stopping {
                                    n.send("STOPPING=1\nSTATUS=stopping: draining in-flight publishes");
                                }
                                return;
                            }
                            _ = tick.tick() => if let Some(n) = &stopping {
                                n.send("WATCHDOG=1\nSTATUS=stopping to switch to an update");
                            },
                        }
                    }
                });
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

/// The signals that stop the gateway or switch it to an update, registered once.
struct Stops {
    term: Option<tokio::signal::unix::Signal>,
    int: Option<tokio::signal::unix::Signal>,
    usr2: Option<tokio::signal::unix::Signal>,
}

/// Until `s` fires (never, when it could not be registered).
async fn on(s: &mut Option<tokio::signal::unix::Signal>) {
    match s {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

impl Stops {
    fn new() -> Stops {
        use tokio::signal::unix::{SignalKind, signal};
        let register = |kind: SignalKind, name: &str, lost: &str| match signal(kind) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(error = %e, signal = name, "Cannot listen for {name}; {lost}.");
                None
            }
        };
        Stops {
            term: register(SignalKind::terminate(), "SIGTERM", "only SIGINT stops the gateway gracefully"),
            int: register(SignalKind::interrupt(), "SIGINT", "only SIGTERM stops the gateway gracefully"),
            usr2: register(SignalKind::user_defined2(), "SIGUSR2", "`edge-gateway update apply` cannot switch this gateway"),
        }
    }

    /// Until SIGTERM or SIGINT.
    async fn stop(&mut self) {
        tokio::select! {
            () = on(&mut self.term) => tracing::info!("SIGTERM: stopping."),
            () = on(&mut self.int) => tracing::info!("SIGINT: stopping."),
        }
    }

    /// Until SIGTERM or SIGINT (`false`), or SIGUSR2 with an update staged (`true`).
    async fn next(&mut self, data_dir: &std::path::Path) -> bool {
        loop {
            tokio::select! {
                () = on(&mut self.usr2) => match state::read(data_dir) {
                    Ok(Some(s)) if s.phase == state::Phase::Trying => {
                        tracing::info!(from = %s.from, to = %s.to, "SIGUSR2: stopping to switch to the staged update.");
                        return true;
                    }
                    other => tracing::warn!(state = ?other, "SIGUSR2 without an update staged; ignored."),
                },
                () = on(&mut self.term) => {
                    tracing::info!("SIGTERM: stopping.");
                    return false;
                }
                () = on(&mut self.int) => {
                    tracing::info!("SIGINT: stopping.");
                    return false;
                }
            }
        }
    }
}

/// The error and each cause its message does not already quote: the start errors mostly put
/// their source in their own message, and `{:#}` would print it twice.
fn with_causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let part = c.to_string();
        if !text.contains(&part) {
            text = format!("{text}: {part}");
        }
        cause = c.source();
    }
    text
}
