//! A heartbeat on each MQTT I/O thread: a task that runs every second on the thread's own
//! runtime and records that it ran (`Health::io_thread`). A thread that is blocked or wedged
//! (a handler stuck in a system call, a busy loop) stops beating, and after
//! `health::IO_BEAT_LATE` `/readyz` answers 503 and the systemd watchdog is no longer fed.

use std::cell::Cell;
use std::time::Duration;

use edge_gateway_actors::health::Health;

/// Start this thread's heartbeat, once per thread (each listener's service factory calls it on
/// every worker thread).
pub(super) fn start_on_this_thread(health: &Health) {
    thread_local!(static BEATING: Cell<bool> = const { Cell::new(false) });
    if BEATING.with(|b| b.replace(true)) {
        return;
    }
    let beat = health.io_thread();
    ntex_rt::spawn(async move {
        loop {
            let stall = beat.beat();
            if stall > 0 {
                // Chaos (admin API): wedge this thread, as a stuck handler would.
                tracing::warn!(ms = stall, "Admin: blocking an MQTT I/O thread.");
                std::thread::sleep(Duration::from_millis(stall));
            }
            ntex_util::time::sleep(ntex_util::time::Millis(1000)).await;
        }
    });
}
