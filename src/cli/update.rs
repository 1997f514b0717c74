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
    /// Stage (PATH.new) and verify, switch the running gateway to it and wait; once committed
    /// it replaces PATH (the old one kept as PATH.prev); back to the previous version if it
    /// does not start in time or exits during its probation.
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
            Ok((config, keys)) => {
                let running = running_release(&config.data_dir);
                match verify(&args.bundle, &signature_path(&args.bundle), &keys, &running) {
                    Ok(release) => {
                        println!("{}: {} may replace {}", args.bundle.display(), release.describe(), running.describe());
                        ExitCode::SUCCESS
                    }
                    Err(e) => refused(&args.bundle, &e),
                }
            }
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

/// What the running gateway is (from its pid file), else this build.
fn running_release(data_dir: &Path) -> Release {
    state::read_running_release(data_dir).unwrap_or_else(Release::running)
}

/// `binary`'s release, verified against `signature` and allowed to replace `running`.
fn verify(binary: &Path, signature: &Path, keys: &[PublicKey], running: &Release) -> Result<Release, UpdateError> {
    if keys.is_empty() {
        return Err(UpdateError::UnknownKey("(any: update.public_keys is empty)".into()));
    }
    let comment = minisign::verify(binary, signature, keys)?;
    let release = Release::parse(&comment)?;
    running.may_update_to(&release)?;
    Ok(release)
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
    let (bundle, data_dir) = (&args.verify.bundle, &config.data_dir);
    let fail = |why: String| refused(bundle, &UpdateError::Apply(why));
    let install = match args.install.map(Ok).unwrap_or_else(std::env::current_exe).and_then(|p| p.canonicalize()) {
        Ok(p) => p,
        Err(e) => return fail(format!("the installed binary: {e}")),
    };
    let _lock = match state::lock(data_dir) {
        Ok(l) => l,
        Err(e) => return refused(bundle, &e),
    };
    let gateway = state::read_pid(data_dir).filter(|&pid| is_gateway(pid, &install));
    match state::read(data_dir) {
        Err(e) => return fail(format!("the last update's state cannot be read: {e}")),
        Ok(Some(s)) if s.phase.in_progress() && gateway.is_some() && !stale(&s, &config.update) => {
            return fail(format!("an update to {} is in progress ({:?}); try again when it is done", s.to, s.phase));
        }
        _ => {}
    }
    // What is verified is the private copy that will run, not the file given (which anyone who
    // can write where it lies could swap after the check).
    let staged = sibling(&install, "new");
    if let Err(e) = copy_synced(bundle, &staged) {
        return fail(format!("cannot stage {}: {e}", staged.display()));
    }
    let running = running_release(data_dir);
    let release = match verify(&staged, &signature_path(bundle), &keys, &running) {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_file(&staged);
            return refused(bundle, &e);
        }
    };
    let sha256 = match edge_gateway::sha256::file(&staged) {
        Ok(s) => s,
        Err(e) => return fail(format!("cannot read {}: {e}", staged.display())),
    };
    let mut st = UpdateState {
        phase: Phase::Trying,
        from: running.version.to_string(),
        to: release.version.to_string(),
        install: install.clone(),
        staged: staged.clone(),
        sha256,
        reason: None,
        at_ms: 0,
    };
    let Some(pid) = gateway else {
        return match finalize(&install, &staged).and_then(|()| st.write(data_dir, Phase::Committed, None)) {
            Ok(()) => {
                println!("installed {} at {}; no gateway is running: it starts with the next start", release.describe(), install.display());
                ExitCode::SUCCESS
            }
            Err(e) => fail(format!("cannot install at {}: {e}", install.display())),
        };
    };
    if let Err(e) = st.write(data_dir, Phase::Trying, None) {
        let _ = std::fs::remove_file(&staged);
        return fail(format!("cannot record the update: {e}"));
    }
    // SAFETY: kill(2) on the process the pid file names, checked to run the gateway's binary.
    if unsafe { libc::kill(pid, libc::SIGUSR2) } != 0 {
        let e = std::io::Error::last_os_error();
        let _ = std::fs::remove_file(&staged);
        if let Err(w) = st.write(data_dir, Phase::RolledBack, Some(format!("the gateway could not be signalled: {e}"))) {
            eprintln!("edge-gateway update: cannot record the refusal: {w}");
        }
        return fail(format!("cannot signal the gateway (pid {pid}): {e}"));
    }
    println!("verified {}; the gateway (pid {pid}) is switching to it", release.describe());
    wait(data_dir, &install, &staged, &config.update)
}

/// Whether a switch that never finished is too old to still be running.
fn stale(s: &UpdateState, update: &edge_gateway::config::UpdateConfig) -> bool {
    let age = std::time::Duration::from_millis(edge_gateway_actors::storage::now_ms().saturating_sub(s.at_ms));
    age > update.deadline + update.probation + WAIT_MARGIN
}

/// Beyond the deadline and probation: the gateway's graceful stop (listeners, in-flight
/// commits, the tree: up to about two minutes) and the start of the new one.
const WAIT_MARGIN: Duration = Duration::from_secs(180);

/// Whether `pid` runs the gateway's binary (installed or staged), so that a stale or forged
/// pid file cannot make root signal another process.
fn is_gateway(pid: i32, install: &Path) -> bool {
    let Ok(exe) = std::fs::read_link(format!("/proc/{pid}/exe")) else { return false };
    let exe = exe.to_string_lossy();
    let exe = exe.trim_end_matches(" (deleted)");
    pid > 0 && (Path::new(exe) == install || Path::new(exe) == sibling(install, "new"))
}

/// Wait for the switch's outcome: committed (after the probation) puts the new binary under
/// `install`; rolled back removes it.
fn wait(data_dir: &Path, install: &Path, staged: &Path, update: &edge_gateway::config::UpdateConfig) -> ExitCode {
    let until = Instant::now() + update.deadline + update.probation + WAIT_MARGIN;
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(200));
        match state::read(data_dir) {
            Ok(Some(s)) if s.phase == Phase::RolledBack => {
                let _ = std::fs::remove_file(staged);
                eprintln!("edge-gateway update: rolled back to {}: {}", s.from, s.reason.as_deref().unwrap_or("no reason given"));
                return ExitCode::from(3);
            }
            Ok(Some(s)) if s.phase == Phase::Committed => {
                return match finalize(install, staged) {
                    Ok(()) => {
                        println!(
                            "updated to {}: {} is the new binary, the previous one is {}",
                            s.to,
                            install.display(),
                            sibling(install, "prev").display()
                        );
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!(
                            "edge-gateway update: {} runs, but it could not be put under {}: {e}; until it is, a restart starts the previous version",
                            s.to,
                            install.display()
                        );
                        ExitCode::FAILURE
                    }
                };
            }
            Ok(_) => {}
            Err(e) => eprintln!("edge-gateway update: {e}"),
        }
    }
    eprintln!(
        "edge-gateway update: no outcome in time; see `edge-gateway update status` (the previous binary stays under {})",
        install.display()
    );
    ExitCode::from(4)
}

/// The running binary becomes `PATH.prev` and the staged one `PATH`, each by an atomic rename,
/// the directory fsync'ed.
fn finalize(install: &Path, staged: &Path) -> std::io::Result<()> {
    let dir = install.parent().unwrap_or(Path::new("/"));
    let prev = sibling(install, "prev");
    let tmp = sibling(install, "prev.tmp");
    copy_synced(install, &tmp)?;
    std::fs::rename(&tmp, &prev)?;
    std::fs::rename(staged, install)?;
    std::fs::File::open(dir)?.sync_all()
}

fn sibling(path: &Path, ext: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".");
    name.push(ext);
    name.into()
}

/// Copy `from` to a new file `to` (any old one removed first), 0755, fsync'ed.
fn copy_synced(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    match std::fs::remove_file(to) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let bytes = std::fs::read(from)?;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o755).open(to)?;
    f.write_all(&bytes)?;
    f.sync_all()
}
