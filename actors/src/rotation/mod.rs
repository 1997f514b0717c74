//! The cert-rotation actor: reloads certificates, CRLs, ACLs and password files while the
//! gateway runs, and watches certificate expiry.
//!
//! What is reloaded is a [`Reloadable`] (implemented by the root crate for the device-facing TLS
//! set, the cloud client identity, the ACL file and the password file). The actor only knows
//! files and outcomes:
//!
//! - file events (notify, on the parent directories so that atomic renames are seen) and a
//!   periodic fingerprint poll (in case an event is missed) mark a target dirty;
//! - `debounce` after the first event (later events in that window join the same reload) the
//!   target validates and swaps its whole set; a
//!   refused set keeps the old one, and the refusal is logged (ERROR) and counted;
//! - every `check_every` the expiry of every certificate in use goes to a gauge, a WARN is logged
//!   inside `warn_before`, and inside `renew_before` the configured renewal command runs (off the
//!   actor, with a timeout), its result logged and counted.
//!
//! A crash restarts the actor, which re-arms its watches; the sets in use are held by the targets,
//! not by the actor, so nothing is lost with it.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

mod watch;

use self::watch::{below, fingerprint, same_file, watch};
use crate::metrics::{Attempt, AttemptLabels, CertLabels, Metrics, ReloadLabels, ReloadResult};

/// One certificate in use and when it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertExpiry {
    /// Gauge label (`server`, `ca`, `cloud_client:cloud`...).
    pub label: String,
    /// Subject, for logs.
    pub subject: String,
    /// Not-after, unix seconds.
    pub not_after: i64,
}

/// Why a set could not be reloaded: the implementor's own error (it names the file).
pub type ReloadError = Box<dyn std::error::Error + Send + Sync>;

/// Why the renewal command failed.
#[derive(Debug, thiserror::Error)]
pub enum RenewalError {
    /// It ran longer than `rotation.renewal.command_timeout_secs`.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// It could not be started.
    #[error("cannot run {command:?}: {source}")]
    Spawn {
        /// The program.
        command: String,
        /// Why.
        source: std::io::Error,
    },
    /// It exited unsuccessfully; the end of its stderr.
    #[error("{status}: {stderr}")]
    Failed {
        /// Its exit status.
        status: std::process::ExitStatus,
        /// The last 500 bytes of its stderr.
        stderr: String,
    },
}

/// A set of files the actor reloads as one unit.
pub trait Reloadable: Send + Sync + 'static {
    /// Metric label and log name (`device_tls`, `acl`, `passwords`, `cloud_tls:<sink>`).
    fn name(&self) -> String;
    /// The files of the set.
    fn paths(&self) -> Vec<PathBuf>;
    /// Folders whose whole content belongs to the set (watched recursively: a file added,
    /// changed or removed anywhere below marks the set changed).
    fn folders(&self) -> Vec<PathBuf> {
        Vec::new()
    }
    /// Load and validate the whole set; swap it in only if valid. `Err` names the problem.
    fn reload(&self) -> Result<(), ReloadError>;
    /// Expiry of every certificate of the set in use now.
    fn expiry(&self) -> Vec<CertExpiry>;
}

/// The cert-rotation actor.
pub struct RotationActor;

/// When to warn and what to run before certificates expire.
#[derive(Debug, Clone, Default)]
pub struct RenewalPolicy {
    /// WARN when a certificate expires within this time.
    pub warn_before: Duration,
    /// Run `command` when a certificate expires within this time (zero: never).
    pub renew_before: Duration,
    /// Program and arguments; gets `EDGE_GATEWAY_CERT` (label) and `EDGE_GATEWAY_CERT_NOT_AFTER`.
    pub command: Vec<String>,
    /// The command is killed after this.
    pub command_timeout: Duration,
    /// At least this long between two runs (the renewed files arrive through the watch).
    pub min_interval: Duration,
}

/// How every certificate file is watched and renewed (applies to both sides).
#[derive(Debug, Clone)]
pub struct RotationPolicy {
    /// Expiry warnings and the renewal command.
    pub renewal: RenewalPolicy,
    /// Delay from the first file change to the reload; changes in between join it.
    pub debounce: Duration,
    /// Expiry check and file poll interval.
    pub check_every: Duration,
}

/// Everything the actor is built from.
pub struct RotationArgs {
    /// What to reload.
    pub targets: Vec<Arc<dyn Reloadable>>,
    /// Gauges and counters.
    pub metrics: Metrics,
    /// Expiry warnings and renewal.
    pub renewal: RenewalPolicy,
    /// Delay from the first file event to the reload; events in between join it.
    pub debounce: Duration,
    /// Expiry check and fingerprint poll interval.
    pub check_every: Duration,
}

/// The actor's state.
pub struct RotationState {
    args: RotationArgs,
    /// Keeps the file watches alive; `None` if notify could not start (polling only).
    _watcher: Option<notify::RecommendedWatcher>,
    /// Targets (by index) with a pending change.
    dirty: HashSet<usize>,
    /// Targets whose last reload was refused: retried at every check, since a refusal can
    /// depend on time (a new certificate valid from a minute from now).
    failed: HashSet<usize>,
    /// A `Reload` is already scheduled.
    scheduled: bool,
    /// Last seen (mtime, length) of every watched file.
    fingerprints: HashMap<PathBuf, Option<(SystemTime, u64)>>,
    /// When the renewal command last started.
    last_renewal: Option<Instant>,
    /// A renewal command is running.
    renewing: bool,
    /// When the last "expires soon" warning went out (one per `WARN_EVERY`).
    last_warned: Option<Instant>,
}

/// Expiry warnings repeat at most this often.
const WARN_EVERY: Duration = Duration::from_secs(6 * 3600);

/// Messages to the rotation actor.
pub enum RotationMsg {
    /// A watched file changed (from the watcher thread).
    Changed(PathBuf),
    /// The debounce elapsed: reload the dirty targets.
    Reload,
    /// Periodic: expiry gauges, warnings, renewal, fingerprint poll.
    Check,
    /// Reload every target now and report each outcome (admin, tests).
    ReloadAll(RpcReplyPort<Vec<(String, Result<(), ReloadError>)>>),
    /// The renewal command finished.
    RenewalDone(Result<String, RenewalError>),
}

impl Actor for RotationActor {
    type Msg = RotationMsg;
    type State = RotationState;
    type Arguments = RotationArgs;

    async fn pre_start(&self, myself: ActorRef<RotationMsg>, args: RotationArgs) -> Result<RotationState, ActorProcessingErr> {
        let watcher = watch(&myself, &args.targets);
        let watched = args.targets.iter().flat_map(|t| t.paths().into_iter().chain(t.folders()));
        let fingerprints = watched.map(|p| (p.clone(), fingerprint(&p))).collect();
        for target in &args.targets {
            for &result in ReloadResult::ALL {
                let _ = args.metrics.reloads.get_or_create(&ReloadLabels { target: target.name(), result });
            }
        }
        myself.send_interval(args.check_every, || RotationMsg::Check);
        let state = RotationState {
            args,
            _watcher: watcher,
            dirty: HashSet::new(),
            failed: HashSet::new(),
            scheduled: false,
            fingerprints,
            last_renewal: None,
            renewing: false,
            last_warned: None,
        };
        state.publish_expiry();
        Ok(state)
    }

    async fn handle(&self, myself: ActorRef<RotationMsg>, msg: RotationMsg, state: &mut RotationState) -> Result<(), ActorProcessingErr> {
        match msg {
            RotationMsg::Changed(path) => state.on_changed(&myself, &path),
            RotationMsg::Reload => state.on_reload(),
            RotationMsg::Check => state.on_check(&myself),
            RotationMsg::ReloadAll(reply) => {
                let _ = reply.send(state.reload_all());
            }
            RotationMsg::RenewalDone(result) => state.on_renewal_done(result),
        }
        Ok(())
    }
}

impl RotationState {
    fn on_changed(&mut self, myself: &ActorRef<RotationMsg>, path: &Path) {
        for (i, target) in self.args.targets.iter().enumerate() {
            if target.paths().iter().any(|p| same_file(p, path)) || target.folders().iter().any(|f| below(f, path)) {
                self.dirty.insert(i);
            }
        }
        if !self.dirty.is_empty() && !self.scheduled {
            self.scheduled = true;
            myself.send_after(self.args.debounce, || RotationMsg::Reload);
        }
    }

    fn on_reload(&mut self) {
        self.scheduled = false;
        let dirty: Vec<usize> = self.dirty.drain().collect();
        for i in dirty {
            let target = self.args.targets[i].clone();
            match self.reload_one(target.as_ref()) {
                Ok(()) => self.failed.remove(&i),
                Err(_) => self.failed.insert(i),
            };
        }
        self.refresh_fingerprints();
        self.publish_expiry();
    }

    fn reload_all(&mut self) -> Vec<(String, Result<(), ReloadError>)> {
        let targets = self.args.targets.clone();
        let results = targets.iter().map(|t| (t.name(), self.reload_one(t.as_ref()))).collect();
        self.refresh_fingerprints();
        self.publish_expiry();
        results
    }

    fn reload_one(&self, target: &dyn Reloadable) -> Result<(), ReloadError> {
        let name = target.name();
        let result = target.reload();
        let label = if result.is_ok() { ReloadResult::Ok } else { ReloadResult::Rejected };
        self.args.metrics.reloads.get_or_create(&ReloadLabels { target: name.clone(), result: label }).inc();
        match &result {
            Ok(()) => tracing::info!(target = %name, "Reloaded; new handshakes and checks use the new set."),
            Err(e) => tracing::error!(target = %name, error = %e, "Reload refused; the previous set stays in use."),
        }
        result
    }

    fn refresh_fingerprints(&mut self) {
        for (path, fp) in self.fingerprints.iter_mut() {
            *fp = fingerprint(path);
        }
    }

    fn on_check(&mut self, myself: &ActorRef<RotationMsg>) {
        let changed: Vec<PathBuf> = self.fingerprints.iter().filter(|(p, fp)| fingerprint(p) != **fp).map(|(p, _)| p.clone()).collect();
        for path in changed {
            self.on_changed(myself, &path);
        }
        if !self.failed.is_empty() {
            self.dirty.extend(self.failed.iter().copied());
            if !self.scheduled {
                self.scheduled = true;
                myself.send_after(self.args.debounce, || RotationMsg::Reload);
            }
        }
        self.publish_expiry();
        self.maybe_renew(myself);
    }

    fn publish_expiry(&self) {
        for cert in self.args.targets.iter().flat_map(|t| t.expiry()) {
            self.args.metrics.cert_expiry.get_or_create(&CertLabels { cert: cert.label.clone() }).set(cert.not_after);
        }
    }

    /// The soonest-expiring certificate inside `window`, if any.
    fn expiring_within(&self, window: Duration) -> Option<CertExpiry> {
        let now = crate::storage::now_ms() as i64 / 1000;
        let all = self.args.targets.iter().flat_map(|t| t.expiry());
        all.filter(|c| c.not_after - now <= window.as_secs() as i64).min_by_key(|c| c.not_after)
    }

    fn maybe_renew(&mut self, myself: &ActorRef<RotationMsg>) {
        let warn_due = self.last_warned.is_none_or(|t| t.elapsed() >= WARN_EVERY);
        if let Some(cert) = self.expiring_within(self.args.renewal.warn_before).filter(|_| warn_due) {
            self.last_warned = Some(Instant::now());
            let days = (cert.not_after - crate::storage::now_ms() as i64 / 1000) as f64 / 86_400.0;
            tracing::warn!(cert = %cert.label, subject = %cert.subject, days_left = format!("{days:.1}"), "Certificate expires soon.");
        }
        let policy = &self.args.renewal;
        if policy.command.is_empty() || policy.renew_before.is_zero() || self.renewing {
            return;
        }
        if self.last_renewal.is_some_and(|t| t.elapsed() < policy.min_interval) {
            return;
        }
        let Some(cert) = self.expiring_within(policy.renew_before) else { return };
        self.renewing = true;
        self.last_renewal = Some(Instant::now());
        tracing::info!(cert = %cert.label, command = ?policy.command, "Certificate inside its renewal window; running the renewal command.");
        let (command, timeout, me) = (policy.command.clone(), policy.command_timeout, myself.clone());
        tokio::spawn(async move {
            let result = run_renewal(&command, timeout, &cert).await;
            let _ = me.send_message(RotationMsg::RenewalDone(result));
        });
    }

    fn on_renewal_done(&mut self, result: Result<String, RenewalError>) {
        self.renewing = false;
        let label = if result.is_ok() { Attempt::Ok } else { Attempt::Failed };
        self.args.metrics.cert_renewals.get_or_create(&AttemptLabels { result: label }).inc();
        match result {
            Ok(out) => tracing::info!(output = %out, "Renewal command succeeded; the new files are picked up when they change."),
            Err(e) => tracing::error!(error = %e, "Renewal command failed; certificates keep expiring."),
        }
    }
}

async fn run_renewal(command: &[String], timeout: Duration, cert: &CertExpiry) -> Result<String, RenewalError> {
    let mut cmd = tokio::process::Command::new(&command[0]);
    cmd.args(&command[1..])
        .env("EDGE_GATEWAY_CERT", &cert.label)
        .env("EDGE_GATEWAY_CERT_NOT_AFTER", cert.not_after.to_string())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let output = match tokio::time::timeout(timeout, cmd.output()).await {
        Err(_) => return Err(RenewalError::Timeout(timeout)),
        Ok(Err(source)) => return Err(RenewalError::Spawn { command: command[0].clone(), source }),
        Ok(Ok(out)) => out,
    };
    let tail = |b: &[u8]| String::from_utf8_lossy(&b[b.len().saturating_sub(500)..]).trim().to_string();
    if output.status.success() {
        Ok(tail(&output.stdout))
    } else {
        Err(RenewalError::Failed { status: output.status, stderr: tail(&output.stderr) })
    }
}
