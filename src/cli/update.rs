//! `edge-gateway update`: describe this build, verify a bundle, apply it with rollback, show
//! the last update. What a bundle is: `src/update/mod.rs`; the switch inside the gateway:
//! `switch.rs`.
//!
//! Exit codes: 0 done (verified, updated), 1 refused (signature, version, store formats,
//! install), 2 bad configuration or arguments, 3 rolled back, 4 no outcome in time.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use edge_gateway::update::minisign::{self, PublicKey};
use edge_gateway::update::release::Release;
use edge_gateway::update::state::{self, Phase, UpdateState};
use edge_gateway::update::{UpdateError, signature_path};

/// `update`'s subcommands.
#[derive(clap::Subcommand)]
pub enum UpdateCommand {
    /// Print what this build is, as a release's signed trusted comment says it
    /// (`scripts/release.sh` signs with it).
    Describe,
    /// Check a bundle (BINARY with BINARY.minisig beside it) against update.public_keys: the
    /// signature, a newer version, store formats both versions read.
    Verify(VerifyArgs),
    /// Verify, install beside the running binary (kept as PATH.prev), switch the running
    /// gateway to it and wait: back to the previous binary if it does not start in time.
    Apply(ApplyArgs),
    /// Print the last update (data_dir/update/state.json).
    Status(StatusArgs),
    /// (Internal) run by the gateway itself on SIGUSR2: start the new binary, roll back if it
    /// fails. ARGS are the gateway's own arguments.
    #[command(hide = true)]
    Switch(super::switch::SwitchArgs),
}

/// Which config, and extra keys.
#[derive(clap::Args)]
pub struct VerifyArgs {
    /// The bundle's binary (its signature is BUNDLE.minisig).
    bundle: PathBuf,
    /// TOML config file (its update.public_keys); the embedded default has none.
    #[arg(long, short)]
    config: Option<PathBuf>,
}

/// `apply`'s arguments.
#[derive(clap::Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    verify: VerifyArgs,
    /// Where the gateway's binary is installed (default: this program's path).
    #[arg(long)]
    install: Option<PathBuf>,
}

/// `status`'s arguments.
#[derive(clap::Args)]
pub struct StatusArgs {
    /// TOML config file (its gateway.data_dir).
    #[arg(long, short)]
    config: Option<PathBuf>,
}

/// Run one subcommand.
pub fn run(cmd: UpdateCommand) -> ExitCode {
    match cmd {
        UpdateCommand::Describe => {
            println!("{}", Release::running().describe());
            ExitCode::SUCCESS
        }
        UpdateCommand::Verify(args) => match load(&args) {
            Err(code) => code,
            Ok((_, keys)) => match verify(&args.bundle, &keys) {
                Ok((release, _)) => {
                    println!("{}: {} may replace {}", args.bundle.display(), release.describe(), Release::running().describe());
                    ExitCode::SUCCESS
                }
                Err(e) => refused(&args.bundle, &e),
            },
        },
        UpdateCommand::Apply(args) => apply(args),
        UpdateCommand::Status(args) => match super::load(args.config, None) {
            Err(problems) => super::bad_config(&problems),
            Ok((config, _)) => match state::read(&config.data_dir) {
                Ok(Some(s)) => {
                    println!("{}", serde_json::to_string_pretty(&s).unwrap_or_default());
                    ExitCode::SUCCESS
                }
                Ok(None) => {
                    println!("no update on record");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("edge-gateway update status: {e}");
                    ExitCode::FAILURE
                }
            },
        },
        UpdateCommand::Switch(args) => super::switch::run(args),
    }
}

fn load(args: &VerifyArgs) -> Result<(edge_gateway::config::Config, Vec<PublicKey>), ExitCode> {
    let (config, _) = super::load(args.config.clone(), None).map_err(|p| super::bad_config(&p))?;
    let keys = config.update.public_keys.clone();
    Ok((config, keys))
}

/// The bundle's release, verified and allowed to replace this one.
fn verify(bundle: &Path, keys: &[PublicKey]) -> Result<(Release, String), UpdateError> {
    if keys.is_empty() {
        return Err(UpdateError::UnknownKey("(any: update.public_keys is empty)".into()));
    }
    let comment = minisign::verify(bundle, &signature_path(bundle), keys)?;
    let release = Release::parse(&comment)?;
    Release::running().may_update_to(&release)?;
    Ok((release, comment))
}

fn refused(bundle: &Path, e: &UpdateError) -> ExitCode {
    eprintln!("edge-gateway update: {} refused: {e}", bundle.display());
    ExitCode::FAILURE
}

fn apply(args: ApplyArgs) -> ExitCode {
    let (config, keys) = match load(&args.verify) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let bundle = &args.verify.bundle;
    let release = match verify(bundle, &keys) {
        Ok((release, _)) => release,
        Err(e) => return refused(bundle, &e),
    };
    let data_dir = &config.data_dir;
    let pid = state::read_pid(data_dir).filter(|&pid| alive(pid));
    if let (Ok(Some(s)), Some(_)) = (state::read(data_dir), pid)
        && s.phase == Phase::Trying
    {
        eprintln!("edge-gateway update: an update to {} is in progress; try again when it is done", s.to);
        return ExitCode::FAILURE;
    }
    let install = match args.install.map(Ok).unwrap_or_else(std::env::current_exe).and_then(|p| p.canonicalize()) {
        Ok(p) => p,
        Err(e) => return refused(bundle, &UpdateError::Apply(format!("the installed binary: {e}"))),
    };
    let mut st = match install_beside(bundle, &install) {
        Ok(sha256) => UpdateState {
            phase: Phase::Trying,
            from: Release::running().version.to_string(),
            to: release.version.to_string(),
            install: install.clone(),
            sha256,
            reason: None,
            at_ms: 0,
        },
        Err(e) => return refused(bundle, &UpdateError::Apply(format!("cannot install at {}: {e}", install.display()))),
    };
    let Some(pid) = pid else {
        if let Err(e) = st.write(data_dir, Phase::Committed, None) {
            eprintln!("edge-gateway update: cannot record the update: {e}");
        }
        println!("installed {} at {}; no gateway is running: it starts with the next start", release.describe(), install.display());
        return ExitCode::SUCCESS;
    };
    if let Err(e) = st.write(data_dir, Phase::Trying, None) {
        restore(&install);
        return refused(bundle, &UpdateError::Apply(format!("cannot record the update: {e}")));
    }
    // SAFETY: kill(2) with a pid read from the gateway's own pid file.
    if unsafe { libc::kill(pid, libc::SIGUSR2) } != 0 {
        restore(&install);
        let _ = st.write(data_dir, Phase::RolledBack, Some("the gateway could not be signalled".into()));
        return refused(bundle, &UpdateError::Apply(format!("cannot signal the gateway (pid {pid}): {}", std::io::Error::last_os_error())));
    }
    println!("installed {} at {}; the gateway (pid {pid}) is switching to it", release.describe(), install.display());
    wait(data_dir, &install, &config.update)
}

/// Wait for the switch's outcome (and the probation after it); on a rollback, put the previous
/// binary back under `install`.
fn wait(data_dir: &Path, install: &Path, update: &edge_gateway::config::UpdateConfig) -> ExitCode {
    // The gateway first stops (draining in-flight publishes, up to about a minute).
    let until = Instant::now() + update.deadline + update.probation + Duration::from_secs(90);
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(200));
        match state::read(data_dir) {
            Ok(Some(s)) if s.phase == Phase::RolledBack => {
                restore(install);
                eprintln!("edge-gateway update: rolled back to {}: {}", s.from, s.reason.as_deref().unwrap_or("no reason given"));
                return ExitCode::from(3);
            }
            Ok(Some(s)) if s.phase == Phase::Committed => {
                let since = Duration::from_millis(edge_gateway_actors::storage::now_ms().saturating_sub(s.at_ms));
                if since >= update.probation {
                    println!("updated to {}: running for {} s", s.to, since.as_secs());
                    return ExitCode::SUCCESS;
                }
            }
            _ => {}
        }
    }
    eprintln!(
        "edge-gateway update: no outcome after {} s; see `edge-gateway update status`",
        (update.deadline + update.probation).as_secs() + 90
    );
    ExitCode::from(4)
}

/// Copy the running binary to `PATH.prev` and the bundle to `PATH` (through `PATH.new` and an
/// atomic rename), each fsync'ed; the new binary's SHA-256.
fn install_beside(bundle: &Path, install: &Path) -> std::io::Result<String> {
    let dir = install.parent().unwrap_or(Path::new("/"));
    let prev = sibling(install, "prev");
    let new = sibling(install, "new");
    copy_synced(install, &prev)?;
    copy_synced(bundle, &new)?;
    let sha256 = state::sha256_file(&new)?;
    std::fs::rename(&new, install)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(sha256)
}

/// Put `PATH.prev` back under `PATH` (a rollback).
fn restore(install: &Path) {
    let prev = sibling(install, "prev");
    match std::fs::copy(&prev, sibling(install, "new")).and_then(|_| std::fs::rename(sibling(install, "new"), install)) {
        Ok(()) => eprintln!("edge-gateway update: {} is the previous binary again", install.display()),
        Err(e) => eprintln!("edge-gateway update: cannot put {} back: {e}; copy it by hand", prev.display()),
    }
}

fn sibling(path: &Path, ext: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".");
    name.push(ext);
    name.into()
}

fn copy_synced(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::copy(from, to)?;
    let f = std::fs::OpenOptions::new().write(true).open(to)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o755))?;
    f.sync_all()
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    pid > 0 && unsafe { libc::kill(pid, 0) } == 0
}
