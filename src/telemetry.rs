//! The tracing subscriber: JSON lines in a cluster, readable lines on a terminal, filtered by
//! `POEM_API_LOG` or `RUST_LOG`.

use std::io::IsTerminal;

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::{EnvFilter, fmt};

use crate::config::{Config, LogFormat};

/// The filter when neither `POEM_API_LOG` nor `RUST_LOG` is set.
const DEFAULT_FILTER: &str = "info";

/// Installs the global subscriber. Call once, first thing in `main`, and keep the guard until
/// the process ends: dropping it flushes the log lines still queued.
pub fn init(config: &Config) -> Result<WorkerGuard, String> {
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
    // Lines go to stdout from a dedicated thread, in batches: a request thread never waits on a
    // write(2) per access-log line, which cost 30% of the throughput of `GET /` (README,
    // benchmark). Not lossy: when the queue is full, request threads wait rather than drop lines.
    // The queue is allocated up front: 128,000 lines, the default, would add 4 MiB of idle RSS.
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(4096)
        .thread_name("poem-api-log")
        .finish(std::io::stdout());
    let builder = fmt().with_env_filter(filter).with_writer(writer);
    let result = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init()
    } else {
        builder.try_init()
    };
    result.map_err(|e| e.to_string())?;
    // Panics are logged as events (with the request id in the access log entry that follows),
    // not written to stderr in a format log collectors do not parse.
    std::panic::set_hook(Box::new(|info| tracing::error!(panic = %info, "panic")));
    Ok(guard)
}
