//! The systemd notify protocol (sd_notify(3)), without libsystemd: state lines sent as one
//! datagram to the unix socket `$NOTIFY_SOCKET` names (`@...`: Linux's abstract namespace).
//!
//! `READY=1` once the gateway has started (store open, tree up, every listener bound),
//! `STATUS=` every watchdog tick (connections and backlog), `WATCHDOG=1` every half of
//! `$WATCHDOG_USEC` but only while `/readyz` would answer 200 (store writable, listeners bound,
//! every permanent actor running), so a gateway that cannot take messages is restarted by
//! systemd's `WatchdogSec=`; `STOPPING=1` when a stop begins. Without `$NOTIFY_SOCKET` nothing
//! is sent.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use edge_gateway_actors::health::Health;
use edge_gateway_actors::metrics::Metrics;

/// Where the notifications go.
pub struct Notifier {
    socket: UnixDatagram,
    target: std::os::unix::net::SocketAddr,
}

impl Notifier {
    /// The notifier `$NOTIFY_SOCKET` asks for, if any (a bad value is logged, not fatal).
    pub fn from_env() -> Option<Notifier> {
        let path = std::env::var_os("NOTIFY_SOCKET")?;
        let path = path.to_string_lossy().into_owned();
        let target = match path.strip_prefix('@') {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
            }
            None => std::os::unix::net::SocketAddr::from_pathname(&path),
        };
        match (UnixDatagram::unbound(), target) {
            (Ok(socket), Ok(target)) => Some(Notifier { socket, target }),
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(notify_socket = %path, error = %e, "Cannot use NOTIFY_SOCKET; systemd gets no notifications.");
                None
            }
        }
    }

    /// Send state lines (`READY=1`, `STATUS=...`); a failure is logged.
    pub fn send(&self, state: &str) {
        if let Err(e) = self.socket.send_to_addr(state.as_bytes(), &self.target) {
            tracing::warn!(error = %e, "sd_notify failed.");
        }
    }

    /// Every half of `$WATCHDOG_USEC` (when it is set for this process): `STATUS=`, and
    /// `WATCHDOG=1` while the gateway is ready. Runs until the task is dropped.
    pub async fn watchdog(self, health: Health, metrics: Metrics) {
        let Some(period) = watchdog_period() else {
            return;
        };
        tracing::info!(period_ms = period.as_millis() as u64, "systemd watchdog on.");
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut was_ready = true;
        loop {
            tick.tick().await;
            let status = format!(
                "STATUS={} connections, {} messages waiting for the sinks",
                metrics.connections.get(),
                metrics.backlog_messages.get()
            );
            match health.readiness() {
                Ok(()) => {
                    self.send(&format!("WATCHDOG=1\n{status}"));
                    was_ready = true;
                }
                Err(problems) => {
                    if was_ready {
                        tracing::error!(
                            ?problems,
                            "Not ready: the systemd watchdog is no longer fed (systemd restarts the gateway after WatchdogSec)."
                        );
                    }
                    was_ready = false;
                    self.send(&format!("STATUS=not ready: {}", problems.join("; ")));
                }
            }
        }
    }
}

/// Half of `$WATCHDOG_USEC`, if it is set and `$WATCHDOG_PID` (when set) is this process.
pub(super) fn watchdog_period() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}
