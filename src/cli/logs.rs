//! Log lines on stdout: JSON lines (for journald and log shippers) or plain text, filtered by
//! `RUST_LOG`, plus the OTLP log bridge that joins once the config is read.

/// The log line format (`run --log-format`).
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    /// Plain text for a terminal.
    Human,
    /// One JSON object per line.
    Json,
}

/// Install the global subscriber.
pub fn init(format: LogFormat) {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,ntex_service=warn,ntex_io=warn"));
    let lines = match format {
        LogFormat::Human => tracing_subscriber::fmt::layer().boxed(),
        LogFormat::Json => {
            tracing_subscriber::fmt::layer().json().with_current_span(true).with_span_list(false).flatten_event(true).boxed()
        }
    };
    // OTLP log export (tracing.export_logs) joins once the config is read and the runtime runs.
    tracing_subscriber::registry().with(filter).with(lines).with(edge_gateway::telemetry::logs::OtlpLogLayer).init();
}
