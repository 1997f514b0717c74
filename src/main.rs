//! The `edge-gateway` binary: parse the CLI, load the config, run the gateway.
//!
//! Exit codes: 0 after a graceful stop, 1 when the gateway fails at run time (the root
//! supervisor gave up, a listener cannot bind), 2 for a bad config or bad usage.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use edge_gateway::config::{Config, ENV_OVERRIDES};
use edge_gateway::{Exit, Gateway, load_supervision, preflight};
use edge_gateway_actors::supervisor::SupervisionConfig;

#[derive(Parser)]
#[command(name = "edge-gateway", version, about = "IoT edge gateway: MQTT in, durable store, forwarders to the cloud")]
#[command(after_help = format!("Environment overrides: {ENV_OVERRIDES}\nLog filter: RUST_LOG (default: info)"))]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (on the embedded default config unless --config is given).
    Run {
        /// TOML config file.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// supervision.toml to use instead of the config's or the embedded one.
        #[arg(long)]
        supervision: Option<PathBuf>,
        /// Enable the chaos admin API on this loopback address (off by default; see src/admin.rs).
        #[arg(long, requires = "admin_token_file")]
        admin_listen: Option<std::net::SocketAddr>,
        /// File holding the admin API's bearer token (at least 16 characters).
        #[arg(long, requires = "admin_listen")]
        admin_token_file: Option<PathBuf>,
        /// Log line format: JSON lines on stdout (for journald and log shippers), or human.
        #[arg(long, value_enum, default_value_t = LogFormat::Json)]
        log_format: LogFormat,
    },
    /// Create a dev PKI: CA, server, device and cloud-client certificates, CRLs (certs/README.md).
    #[command(subcommand)]
    Certs(edge_gateway::pki::CertsCommand),
    /// Add or replace a user in a password file (mosquitto_passwd format); the password is
    /// read from the first line of stdin.
    Passwd {
        /// The password file (created if missing).
        file: PathBuf,
        /// The username (the device's identity).
        user: String,
        /// PBKDF2 iterations.
        #[arg(long, default_value_t = edge_gateway::passwd::DEFAULT_ITERATIONS)]
        iterations: u32,
    },
    /// Work on the store while the gateway is stopped.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Validate a config file (and its supervision file); print every problem.
    CheckConfig {
        /// TOML config file; the embedded default when omitted.
        file: Option<PathBuf>,
        /// supervision.toml to check as well.
        #[arg(long)]
        supervision: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Re-import every readable message of a quarantined (or any other) store file into this
    /// gateway's store, keeping their idempotency keys; the gateway must be stopped.
    Salvage {
        /// The quarantined file (data_dir/gateway.redb.quarantine-<ms>).
        file: PathBuf,
        /// The gateway's config (for data_dir and sinks); the embedded default when omitted.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Store(StoreCommand::Salvage { file, config }) => match salvage(&file, config) {
            Ok(summary) => {
                println!("{summary}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("edge-gateway store salvage: {e}");
                ExitCode::FAILURE
            }
        },
        Command::CheckConfig { file, supervision } => match load(file, supervision) {
            Ok(_) => {
                println!("configuration OK");
                ExitCode::SUCCESS
            }
            Err(problems) => bad_config(&problems),
        },
        Command::Certs(cmd) => match edge_gateway::pki::run(cmd) {
            Ok(summary) => {
                println!("{summary}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("edge-gateway certs: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Passwd { file, user, iterations } => match add_password(&file, &user, iterations) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("edge-gateway passwd: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Run { config, supervision, log_format, admin_listen, admin_token_file } => {
            init_logs(log_format);
            let admin = match admin_flags(admin_listen, admin_token_file) {
                Ok(a) => a,
                Err(problem) => return bad_config(&[problem]),
            };
            match load(config, supervision) {
                Ok((mut config, supervision)) => {
                    config.admin = admin;
                    run(config, supervision)
                }
                Err(problems) => bad_config(&problems),
            }
        }
    }
}

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

/// Copy what can be read from `file` into the configured store (gateway stopped).
fn salvage(file: &std::path::Path, config: Option<PathBuf>) -> Result<String, String> {
    use edge_gateway_actors::storage::Store;
    let config = match &config {
        Some(path) => Config::load(path),
        None => Config::embedded_default(),
    }
    .map_err(|e| e.to_string())?;
    let found = Store::salvage(file).map_err(|e| format!("{}: cannot be read: {e}", file.display()))?;
    let sinks = config.sinks.iter().map(|s| s.name.clone()).collect();
    let store = Store::open(&config.store_path(), sinks)
        .map_err(|e| format!("{} (is the gateway still running? stop it first): {e}", config.store_path().display()))?;
    let imported = store.import(&found.values).map_err(|e| e.to_string())?;
    let how = match &found.open_error {
        None => format!("read through redb, {} unreadable rows skipped", found.skipped),
        Some(e) => format!("redb cannot open it ({e}): found by a raw scan of its bytes"),
    };
    Ok(format!(
        "imported {imported} messages from {} into {} ({how}); they keep their idempotency keys, so the cloud drops any it already has",
        file.display(),
        config.store_path().display(),
    ))
}

/// The chaos admin API from its two flags (both or neither).
fn admin_flags(
    listen: Option<std::net::SocketAddr>,
    token_file: Option<PathBuf>,
) -> Result<Option<edge_gateway::admin::AdminConfig>, String> {
    let (Some(listen), Some(file)) = (listen, token_file) else { return Ok(None) };
    let token = std::fs::read_to_string(&file).map_err(|e| format!("--admin-token-file: {}: {e}", file.display()))?;
    edge_gateway::admin::AdminConfig::new(listen, token).map(Some)
}

/// Add or replace `user` in `file`, atomically (the gateway reloads the file when it changes).
fn add_password(file: &std::path::Path, user: &str, iterations: u32) -> Result<(), String> {
    let mut password = String::new();
    std::io::stdin().read_line(&mut password).map_err(|e| format!("cannot read the password from stdin: {e}"))?;
    let password = password.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        return Err("empty password on stdin".into());
    }
    let entry = edge_gateway::passwd::hash_entry(user, password.as_bytes(), iterations).map_err(|e| e.to_string())?;
    let old = std::fs::read_to_string(file).unwrap_or_default();
    let mut lines: Vec<&str> = old.lines().filter(|l| l.split(':').next() != Some(user)).collect();
    lines.push(&entry);
    let tmp = file.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        f.write_all((lines.join("\n") + "\n").as_bytes())?;
        f.sync_all()
    };
    write().map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, file).map_err(|e| format!("{}: {e}", file.display()))
}

fn bad_config(problems: &[String]) -> ExitCode {
    eprintln!("edge-gateway: invalid configuration:");
    for p in problems {
        eprintln!("  {p}");
    }
    ExitCode::from(2)
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,ntex_service=warn,ntex_io=warn"));
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let lines = match format {
        LogFormat::Human => tracing_subscriber::fmt::layer().boxed(),
        LogFormat::Json => {
            tracing_subscriber::fmt::layer().json().with_current_span(true).with_span_list(false).flatten_event(true).boxed()
        }
    };
    // OTLP log export (tracing.export_logs) joins once the config is read and the runtime runs.
    tracing_subscriber::registry().with(filter).with(lines).with(edge_gateway::otlp_logs::OtlpLogLayer).init();
}

fn run(config: Config, supervision: SupervisionConfig) -> ExitCode {
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
                tracing::error!("Cannot start: {e:#}");
                return ExitCode::FAILURE;
            }
        };
        match gateway.run_until(shutdown_signal()).await {
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
