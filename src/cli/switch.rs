//! The switch to a new binary. On SIGUSR2 with an update pending, `run` stops gracefully
//! (in-flight publishes committed, store closed, listeners released) and replaces itself (same
//! pid, so systemd keeps tracking it) with `update switch`: a fresh image of the previous,
//! trusted binary, holding nothing. It starts the installed binary with the gateway's
//! arguments and waits:
//!
//! - started (it wrote its pid to `data_dir/gateway.pid`, as it does once the store is open
//!   and every listener bound) within `update.deadline_secs`: the update is committed; this
//!   process stays its parent, passing on SIGTERM, SIGINT, SIGHUP and SIGUSR2, and exits with
//!   its status;
//! - exited before that, not started in time, or exited with an error within
//!   `update.probation_secs` after: rolled back. The new process is stopped, the state says why,
//!   and this process becomes the previous gateway again (`/proc/self/exe`: the previous binary
//!   even though its file was replaced), which reports the rollback on `/api/health` and
//!   `gateway_update_phase`. `update apply` puts the previous binary back under its path.
//!
//! While waiting it feeds the systemd watchdog itself; the new gateway's notifications reach
//! systemd through `NotifyAccess=all`.

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

async fn switch(args: &SwitchArgs) -> ExitCode {
    let mut st = match state::read(&args.data_dir) {
        Ok(Some(s)) if s.phase == Phase::Trying => s,
        other => return roll_back(args, None, &format!("no update in progress in the state file ({other:?})")),
    };
    match state::sha256_file(&st.install) {
        Ok(sum) if sum == st.sha256 => {}
        Ok(_) => return roll_back(args, Some(&mut st), "the installed binary is not the one verified"),
        Err(e) => return roll_back(args, Some(&mut st), &format!("cannot read the installed binary: {e}")),
    }
    tracing::info!(from = %st.from, to = %st.to, install = %st.install.display(), "Update: starting the new version.");
    let mut child = match tokio::process::Command::new(&st.install).args(&args.args).env_remove("WATCHDOG_PID").spawn() {
        Ok(c) => c,
        Err(e) => {
            let reason = format!("cannot start {}: {e}", st.install.display());
            return roll_back(args, Some(&mut st), &reason);
        }
    };
    let pid = child.id().map_or(0, |p| p as i32);
    let notifier = super::systemd::Notifier::from_env();
    let watchdog = notifier.as_ref().and_then(|_| super::systemd::watchdog_period());
    let (deadline, probation) = (Duration::from_secs(args.deadline_secs), Duration::from_secs(args.probation_secs));
    let started = Instant::now();
    let mut ready_at: Option<Instant> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut last_ping = Instant::now();
    let (Ok(mut term), Ok(mut int), Ok(mut hup), Ok(mut usr2)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
        signal(SignalKind::user_defined2()),
    ) else {
        stop(&mut child, pid).await;
        return roll_back(args, Some(&mut st), "cannot listen for signals");
    };
    loop {
        tokio::select! {
            status = child.wait() => {
                let (status, failed) = match status {
                    Ok(s) => (s.to_string(), !s.success()),
                    Err(e) => (e.to_string(), true),
                };
                return match ready_at {
                    None => roll_back(args, Some(&mut st), &format!("the new version exited ({status}) before it started")),
                    Some(t) if failed && t.elapsed() < probation => roll_back(
                        args,
                        Some(&mut st),
                        &format!("the new version exited ({status}) {} s after it started (update.probation_secs {})", t.elapsed().as_secs(), probation.as_secs()),
                    ),
                    Some(_) => {
                        tracing::info!(%status, "The gateway exited.");
                        if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
                    }
                };
            }
            _ = term.recv() => forward(pid, libc::SIGTERM),
            _ = int.recv() => forward(pid, libc::SIGINT),
            _ = hup.recv() => forward(pid, libc::SIGHUP),
            _ = usr2.recv() => forward(pid, libc::SIGUSR2),
            _ = tick.tick() => {
                if ready_at.is_some() {
                    continue;
                }
                if state::read_pid(&args.data_dir) == Some(pid) {
                    ready_at = Some(Instant::now());
                    if let Err(e) = st.write(&args.data_dir, Phase::Committed, None) {
                        tracing::error!(error = %e, "Cannot record the update as committed.");
                    }
                    tracing::info!(to = %st.to, secs = started.elapsed().as_secs_f64(), "Update: the new version started; committed.");
                } else if started.elapsed() > deadline {
                    stop(&mut child, pid).await;
                    return roll_back(args, Some(&mut st), &format!("the new version did not start within update.deadline_secs ({})", deadline.as_secs()));
                } else if let (Some(n), Some(period)) = (&notifier, watchdog)
                    && last_ping.elapsed() >= period
                {
                    n.send(&format!("WATCHDOG=1\nSTATUS=updating to {}", st.to));
                    last_ping = Instant::now();
                }
            }
        }
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
    if let Some(st) = st
        && let Err(e) = st.write(&args.data_dir, Phase::RolledBack, Some(reason.to_string()))
    {
        tracing::error!(error = %e, "Cannot record the rollback.");
    }
    let e = std::process::Command::new("/proc/self/exe").args(&args.args).exec();
    tracing::error!(error = %e, "Cannot start the previous version again.");
    ExitCode::FAILURE
}
