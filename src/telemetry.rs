//! The tracing subscriber: JSON lines in a cluster, readable lines on a terminal, filtered by
//! `POEM_API_LOG` or `RUST_LOG`.

use std::io::IsTerminal;

use tracing_subscriber::{EnvFilter, fmt};

use crate::config::{Config, LogFormat};

/// The filter when neither `POEM_API_LOG` nor `RUST_LOG` is set.
const DEFAULT_FILTER: &str = "info";

/// Installs the global subscriber. Call once, first thing in `main`.
pub fn init(config: &Config) -> Result<(), String> {
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
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stdout);
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
    Ok(())
}
