//! Composition root: read the configuration, start telemetry and the runtime, then hand over to
//! `instance`, which binds, serves, drains and stops.

use std::process::ExitCode;

use poem_api::{config::Config, instance, lifecycle::StopSignals, telemetry};

// musl's malloc takes one lock for every thread, and the static Nix build links musl: there,
// mimalloc replaces it. On glibc the system allocator stays; see the README's "Allocator".
#[cfg(any(feature = "mimalloc", target_env = "musl"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let config = match Config::from_args(std::env::args_os()) {
        Ok(config) => config,
        Err(err) => err.exit(),
    };
    // Held to the end of main: dropping it flushes the queued log lines.
    let _log_guard = match telemetry::init(&config) {
        Ok(guard) => guard,
        Err(err) => {
            eprintln!("poem-api: {err}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            tracing::error!(error = %err, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        // Handlers first: a signal during start-up must not kill the process by default action.
        let signals = match StopSignals::install() {
            Ok(signals) => signals,
            Err(err) => {
                tracing::error!(error = %err, "cannot install signal handlers");
                return ExitCode::FAILURE;
            }
        };
        match instance::start(config) {
            Ok(instance) => instance.run(signals).await.into(),
            Err(message) => {
                tracing::error!("{message}");
                ExitCode::FAILURE
            }
        }
    })
}
