//! The process-wide panic hook: a panic is counted and logged, the task that panicked is
//! dropped and the gateway goes on (supervision restarts an actor that died of it).

/// Panics are counted in `gateway_panics_total` and logged as JSON; the task that panicked is
/// dropped and the gateway goes on. On the MQTT I/O threads, where a peer's bytes can trigger a
/// panic in a dependency again and again, the log line is throttled and the default report
/// (stderr) skipped; elsewhere the default report follows. Installed once per process.
pub fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    static THROTTLE: crate::throttle::Throttle = crate::throttle::Throttle::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            edge_gateway_actors::metrics::PANICS.inc();
            let thread = std::thread::current().name().unwrap_or("unnamed").to_string();
            let io_thread = thread.starts_with("mqtt:worker");
            if io_thread && !THROTTLE.allow() {
                return;
            }
            let location = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
            let message = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(%thread, %location, panic = %message, "Panic caught; the task that panicked is dropped.");
            if !io_thread {
                previous(info);
            }
        }));
    });
}
