//! The tracing subscriber: JSON lines in a cluster, readable lines on a terminal, filtered by
//! `POEM_API_LOG` or `RUST_LOG`. Lines reach stdout through one writer thread that is never
//! waited for: when stdout falls behind, lines are dropped and counted (README, "Logging").
//!
//! - [`format`] — the JSON line, built by hand because the access log formats one per request
//! - [`writer`] — the bounded queue and the thread that owns stdout
//! - [`traces`] — OTLP export of one span per request, when a collector is configured
//! - [`otlp_http`] — the exporter's HTTP/1.1 transport

pub mod format;
pub mod otlp_http;
pub mod traces;
pub mod writer;

use std::{io::IsTerminal, os::fd::AsFd, sync::LazyLock, time::Duration};

use prometheus_client::metrics::counter::Counter;
use tracing_subscriber::{
    EnvFilter, Layer, fmt, layer::SubscriberExt, registry::Registry, util::SubscriberInitExt,
};

use crate::config::{Config, LogFormat};
pub use writer::{LogGuard, LogQueue, MAX_LINE_BYTES, QueueLimits};

/// The filter when neither `POEM_API_LOG` nor `RUST_LOG` is set.
const DEFAULT_FILTER: &str = "info";

/// How long dropping the guard waits for queued lines to be written: a blocked stdout must not
/// hold the exit (the stop sequence in `main` is bounded; this adds at most this much).
const FLUSH_TIMEOUT: Duration = Duration::from_secs(1);

/// Log lines lost because stdout fell behind (or failed). It exists before the metrics registry
/// does, so that lines dropped during start-up count too; `Metrics::new` registers it.
pub fn dropped_lines() -> &'static Counter {
    static DROPPED: LazyLock<Counter> = LazyLock::new(Counter::default);
    &DROPPED
}

/// Installs the global subscriber. Call once, first thing in `main`, and keep the guard until
/// the process ends: dropping it flushes the log lines still queued, for at most a second.
pub fn init(config: &Config) -> Result<LogGuard, String> {
    let filter = match config
        .log
        .clone()
        .or_else(|| std::env::var("RUST_LOG").ok())
    {
        Some(directives) => EnvFilter::try_new(&directives).map_err(|e| {
            format!("invalid log filter {directives:?} in POEM_API_LOG or RUST_LOG: {e}")
        })?,
        None => EnvFilter::new(DEFAULT_FILTER),
    };
    let json = match config.log_format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stdout().is_terminal(),
    };
    // A descriptor of its own: `Stdout` would add a line buffer (one write(2) per line) and a
    // lock that a blocked write holds against anything else printing.
    let stdout = std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .map(std::fs::File::from)
        .map_err(|e| format!("cannot duplicate stdout for the log writer: {e}"))?;
    let summary = if json {
        format::json_summary
    } else {
        format::text_summary
    };
    let (queue, guard) = writer::spawn(
        stdout,
        QueueLimits::default(),
        dropped_lines().clone(),
        summary,
        FLUSH_TIMEOUT,
    )
    .map_err(|e| format!("cannot start the log writer thread: {e}"))?;
    let otel = traces::layer::<Registry>(config)?;
    let result = match (otel, json) {
        // No collector: the log filter is global, the cheapest form (spans and events it
        // rejects are never built).
        (None, true) => tracing_subscriber::registry()
            .with(filter)
            .with(format::JsonLayer::new(queue))
            .try_init(),
        (None, false) => tracing_subscriber::registry()
            .with(filter)
            .with(fmt::layer().with_writer(queue))
            .try_init(),
        // With one, the log filter is the log layer's own: `POEM_API_LOG=warn` must not turn
        // the request spans off.
        (Some(otel), json) => {
            let log = match json {
                true => format::JsonLayer::new(queue).boxed(),
                false => fmt::layer().with_writer(queue).boxed(),
            };
            tracing_subscriber::registry()
                .with(otel)
                .with(log.with_filter(filter))
                .try_init()
        }
    };
    result.map_err(|e| e.to_string())?;
    // Panics are logged as events (with the request id in the access log entry that follows),
    // not written to stderr in a format log collectors do not parse.
    std::panic::set_hook(Box::new(|info| tracing::error!(panic = %info, "panic")));
    Ok(guard)
}
