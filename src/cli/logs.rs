//! Log lines on stdout: JSON lines (for journald and log shippers) or plain text, filtered by
//! `RUST_LOG` or else `gateway.log_filter` (replaced on SIGHUP), plus the OTLP log bridge that
//! joins once the config is read.

use std::sync::OnceLock;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::reload::Handle;

/// The log line format (`run --log-format`).
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    /// Plain text for a terminal.
    Human,
    /// One JSON object per line.
    Json,
}

/// The installed filter, replaceable while `RUST_LOG` is not set.
static FILTER: OnceLock<Handle<EnvFilter, tracing_subscriber::Registry>> = OnceLock::new();

/// Install the global subscriber (filter: `RUST_LOG`, else the default until [`set_filter`]).
pub fn init(format: LogFormat) {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(edge_gateway::config::DEFAULT_LOG_FILTER));
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let _ = FILTER.set(handle);
    let lines = match format {
        LogFormat::Human => tracing_subscriber::fmt::layer().boxed(),
        LogFormat::Json => {
            tracing_subscriber::fmt::layer().json().with_current_span(true).with_span_list(false).flatten_event(true).boxed()
        }
    };
    // OTLP log export (tracing.export_logs) joins once the config is read and the runtime runs.
    tracing_subscriber::registry().with(filter).with(lines).with(edge_gateway::telemetry::logs::OtlpLogLayer).init();
}

/// Why a log filter was not applied.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    /// Not a filter (`EnvFilter` syntax).
    #[error("not a log filter: {0}")]
    Invalid(#[from] tracing_subscriber::filter::ParseError),
    /// The subscriber is gone.
    #[error("cannot replace the log filter: {0}")]
    Reload(#[from] tracing_subscriber::reload::Error),
}

/// Use `gateway.log_filter` from now on, unless `RUST_LOG` is set (it wins). `Ok(false)`:
/// left as it was because of `RUST_LOG`.
pub fn set_filter(spec: &str) -> Result<bool, FilterError> {
    if std::env::var_os("RUST_LOG").is_some() {
        return Ok(false);
    }
    let filter = EnvFilter::try_new(spec)?;
    match FILTER.get() {
        Some(h) => {
            h.reload(filter)?;
            Ok(true)
        }
        None => Ok(false),
    }
}
