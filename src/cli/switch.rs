//! The switch to a new binary. On SIGUSR2 with an update staged, `run` stops gracefully
//! (in-flight publishes committed, store closed, listeners released; the systemd watchdog fed
//! meanwhile) and replaces itself (same pid, so systemd keeps tracking it) with `update switch`:
//! a fresh image of the previous, trusted binary, holding nothing. It starts the staged binary
//! (`PATH.new`) with the gateway's arguments and waits:
//!
//! - started (it wrote its pid to `data_dir/gateway.pid`, as it does once the store is open
//!   and every listener bound) within `update.deadline_secs`: phase `started`; after
//!   `update.probation_secs` more without an exit: `committed` (then `update apply` renames it
//!   over `PATH`). This process stays its parent, passing on SIGTERM and SIGINT (and SIGHUP and
//!   SIGUSR2 once the new gateway handles them), and exits with its status;
//! - exited before that, not started in time, or exited within the probation: rolled back. The
//!   new process is stopped, the state says why, and this process becomes the previous gateway
//!   again (`/proc/self/exe`), which reports the rollback on `/api/health` and
//!   `gateway_update_phase`. `PATH` never held the new binary.
//!
//! A stop (SIGTERM, SIGINT) during the switch is a stop, not a failure: the new process is
//! stopped, the update recorded as rolled back ("stopped during the switch"), and this process
//! exits; the next start runs `PATH`, the previous version. While waiting it feeds the systemd
//! watchdog itself; the new gateway's notifications reach systemd through `NotifyAccess=all`.

use std::ffi::OsString;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use edge_gateway::update::state::{self, Phase, UpdateState};
use tokio::signal::unix::{SignalKind, signal};

/// `update switch`'s arguments (given by `run`).
#[derive(clap::Args)]
pub struct SwitchArgs {
    /// The gateway's data dir.
    #[arg(long)]
    data_dir: PathBuf,
    /// update.deadline_secs.
    #[arg(long)]
    deadline_secs: u64,
    /// update.probation_secs.
    #[arg(long)]
    probation_secs: u64,
    /// The gateway's own arguments (`run --config ...`).
    #[arg(last = true)]
    args: Vec<OsString>,
}

/// Replace this process with `update switch` (after a graceful stop). Returns only on failure.
pub fn exec_switch(data_dir: &std::path::Path, update: &edge_gateway::config::UpdateConfig) -> std::io::Error {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    std::process::Command::new("/proc/self/exe")
        .args(["update", "switch", "--data-dir"])
        .arg(data_dir)
        .arg("--deadline-secs")
        .arg(update.deadline.as_secs().to_string())
        .arg("--probation-secs")
        .arg(update.probation.as_secs().to_string())
        .arg("--")
        .args(args)
        .exec()
}

/// Run the switch; the new gateway's exit status, or never returns (rollback: exec).
pub fn run(args: SwitchArgs) -> ExitCode {
    super::logs::init(super::logs::LogFormat::Json);
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return roll_back(&args, None, &format!("cannot start a runtime: {e}")),
    };
    runtime.block_on(switch(&args))
}

/// The signals the switch handles, registered before anything else (their default action
/// would end this process, and with it the service).
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    usr2: tokio::signal::unix::Signal,
}

async fn switch(args: &SwitchArgs) -> ExitCode {
    let (Ok(term), Ok(int), Ok(hup), Ok(usr2)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
        signal(SignalKind::user_defined2()),
    ) else {
        return roll_back(args, None, "cannot listen for signals");
    };
    let mut sig = Signals { term, int, hup, usr2 };
    let notifier = super::systemd::Notifier::from_env();
    let feed = |what: &str| {
        if let Some(n) = &notifier {
            n.send(&format!("WATCHDOG=1\nSTATUS={what}"));
        }
    };
    feed("switching to an update");
    let mut st = match state::read(&args.data_dir) {
        Ok(Some(s)) if s.phase == Phase::Trying => s,
        other => return roll_back(args, None, &format!("no update staged in the state file ({other:?})")),
    };
    match edge_gateway::sha256::file(&st.staged) {
        Ok(sum) if sum == st.sha256 => {}
        Ok(_) => return roll_back(args, Some(&mut st), "the staged binary is not the one verified"),
        Err(e) => return roll_back(args, Some(&mut st), &format!("cannot read the staged binary: {e}")),
    }
    tracing::info!(from = %st.from, to = %st.to, staged = %st.staged.display(), "Update: starting the new version.");
    let mut child = match tokio::process::Command::new(&st.staged).args(&args.args).env_remove("WATCHDOG_PID").spawn() {
        Ok(c) => c,
        Err(e) => {
            let reason = format!("cannot start {}: {e}", st.staged.display());
            return roll_back(args, Some(&mut st), &reason);
        }
    };
    let pid = child.id().map_or(0, |p| p as i32);
    let period = notifier.as_ref().and_then(|_| super::systemd::watchdog_period());
    let (deadline, probation) = (Duration::from_secs(args.deadline_secs), Duration::from_secs(args.probation_secs));
    let started = Instant::now();
    let (mut ready_at, mut committed, mut stopping): (Option<Instant>, bool, bool) = (None, false, false);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut last_ping = Instant::now();
    loop {
        tokio::select! {
            status = child.wait() => {
                let (status, failed) = match status {
                    Ok(s) => (s.to_string(), !s.success()),
                    Err(e) => (e.to_string(), true),
                };
                if committed {
                    tracing::info!(%status, "The gateway exited.");
                    return if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS };
                }
                if stopping {
                    record(args, &mut st, Phase::RolledBack, "stopped during the switch; the next start runs the previous version");
                    return if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS };
                }
                let reason = match ready_at {
                    None => format!("the new version exited ({status}) before it started"),
                    Some(t) => format!(
                        "the new version exited ({status}) {} s after it started, within update.probation_secs ({})",
                        t.elapsed().as_secs(),
                        probation.as_secs()
                    ),
                };
                return roll_back(args, Some(&mut st), &reason);
            }
            _ = sig.term.recv() => {
                stopping = true;
                forward(pid, libc::SIGTERM);
            }
            _ = sig.int.recv() => {
                stopping = true;
                forward(pid, libc::SIGINT);
            }
            // Until the new gateway handles them, their default action would end it.
            _ = sig.hup.recv() => if ready_at.is_some() { forward(pid, libc::SIGHUP) } else { tracing::warn!("SIGHUP during the switch: ignored.") },
            _ = sig.usr2.recv() => if ready_at.is_some() { forward(pid, libc::SIGUSR2) } else { tracing::warn!("SIGUSR2 during the switch: ignored.") },
            _ = tick.tick() => {
                if committed || stopping {
                    continue;
                }
                match ready_at {
                    None if state::read_pid(&args.data_dir) == Some(pid) => {
                        ready_at = Some(Instant::now());
                        record(args, &mut st, Phase::Started, "");
                        tracing::info!(to = %st.to, secs = started.elapsed().as_secs_f64(), "Update: the new version started; probation.");
                    }
                    None if started.elapsed() > deadline => {
                        stop(&mut child, pid).await;
                        let reason = format!("the new version did not start within update.deadline_secs ({})", deadline.as_secs());
                        return roll_back(args, Some(&mut st), &reason);
                    }
                    None => {
                        if period.is_some_and(|p| last_ping.elapsed() >= p) {
                            feed(&format!("updating to {}", st.to));
                            last_ping = Instant::now();
                        }
                    }
                    Some(t) if t.elapsed() >= probation => {
                        committed = true;
                        record(args, &mut st, Phase::Committed, "");
                        tracing::info!(to = %st.to, "Update committed.");
                    }
                    Some(_) => {}
                }
            }
        }
    }
}

/// Write the state; a failure is logged (`update apply` then reports no outcome).
fn record(args: &SwitchArgs, st: &mut UpdateState, phase: Phase, reason: &str) {
    let reason = (!reason.is_empty()).then(|| reason.to_string());
    if let Err(e) = st.write(&args.data_dir, phase, reason) {
        tracing::error!(error = %e, ?phase, "Cannot record the update's phase.");
    }
}

fn forward(pid: i32, sig: libc::c_int) {
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid, sig) };
}

/// SIGTERM, then SIGKILL after 10 s.
async fn stop(child: &mut tokio::process::Child, pid: i32) {
    forward(pid, libc::SIGTERM);
    if tokio::time::timeout(Duration::from_secs(10), child.wait()).await.is_err() {
        let _ = child.kill().await;
    }
}

/// Record why, then become the previous gateway again (returns only if that fails).
fn roll_back(args: &SwitchArgs, st: Option<&mut UpdateState>, reason: &str) -> ExitCode {
    tracing::error!(reason, "Update rolled back: starting the previous version again.");
    if let Some(st) = st {
        record(args, st, Phase::RolledBack, reason);
    }
    let e = std::process::Command::new("/proc/self/exe").args(&args.args).exec();
    tracing::error!(error = %e, "Cannot start the previous version again.");
    ExitCode::FAILURE
}
