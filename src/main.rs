//! Composition root: read the configuration, start telemetry, bind both ports, serve until a
//! stop signal, then drain and stop as `lifecycle` describes.

use std::{net::SocketAddr, process::ExitCode};

use poem_api::{
    config::Config,
    lifecycle::StopSignals,
    routes,
    server::{self, Limits},
    state::{AppState, REVISION, VERSION},
    telemetry,
};
use tokio::net::TcpListener;

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
    raise_open_files_limit();
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
    runtime.block_on(run(config))
}

async fn run(config: Config) -> ExitCode {
    // Handlers first: a signal during start-up must not kill the process with the default action.
    let mut signals = match StopSignals::install() {
        Ok(signals) => signals,
        Err(err) => {
            tracing::error!(error = %err, "cannot install signal handlers");
            return ExitCode::FAILURE;
        }
    };
    let (api_listener, admin_listener) = match bind(&config).await {
        Ok(listeners) => listeners,
        Err(message) => {
            tracing::error!("{message}");
            return ExitCode::FAILURE;
        }
    };
    let api_addr = api_listener.local_addr().ok();
    let admin_addr = admin_listener.local_addr().ok();

    let state = AppState::new(config);
    let config = &state.config;
    let limits = Limits::from_config(config);
    let lifecycle = &state.lifecycle;
    let api = tokio::spawn(server::serve(
        api_listener,
        routes::api(state.clone()),
        limits,
        lifecycle.stopping_token(),
        state.metrics.connections("api"),
    ));
    // The admin listener outlives the API one, so probes and scrapes answer until the end.
    let admin_stopping = tokio_util::sync::CancellationToken::new();
    let admin = tokio::spawn(server::serve(
        admin_listener,
        routes::admin(state.clone()),
        limits,
        admin_stopping.clone(),
        state.metrics.connections("admin"),
    ));
    lifecycle.set_ready();
    tracing::info!(
        api = %addr_text(api_addr), admin = %addr_text(admin_addr), version = VERSION, revision = REVISION,
        "ready"
    );

    let signal = signals.recv().await;
    lifecycle.start_draining();
    tracing::info!(
        signal,
        drain_delay_ms = config.drain_delay.as_millis() as u64,
        "draining: readiness now fails"
    );
    tokio::select! {
        _ = tokio::time::sleep(config.drain_delay) => {}
        signal = signals.recv() => return exit_now(signal),
    }

    lifecycle.start_stopping();
    tracing::info!(
        shutdown_timeout_ms = config.shutdown_timeout.as_millis() as u64,
        "stopping: listener closed, finishing requests in flight"
    );
    let finished = tokio::select! {
        result = tokio::time::timeout(config.shutdown_timeout, api) => result.is_ok(),
        signal = signals.recv() => return exit_now(signal),
    };
    admin_stopping.cancel();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), admin).await;
    if finished {
        tracing::info!("stopped");
        ExitCode::SUCCESS
    } else {
        tracing::warn!("shutdown timeout reached with requests still in flight; exiting");
        ExitCode::FAILURE
    }
}

async fn bind(config: &Config) -> Result<(TcpListener, TcpListener), String> {
    let bind_one = |port: u16, variable: &'static str| async move {
        let addr = SocketAddr::new(config.host, port);
        TcpListener::bind(addr)
            .await
            .map_err(|err| format!("cannot listen on {addr} (POEM_API_HOST, {variable}): {err}"))
    };
    Ok((
        bind_one(config.port, "POEM_API_PORT").await?,
        bind_one(config.admin_port, "POEM_API_ADMIN_PORT").await?,
    ))
}

/// A second signal: the operator wants out now.
fn exit_now(signal: i32) -> ExitCode {
    tracing::warn!(signal, "second signal: exiting at once");
    ExitCode::from(128 + signal as u8)
}

fn addr_text(addr: Option<SocketAddr>) -> String {
    addr.map_or_else(|| "unknown".into(), |a| a.to_string())
}

/// Raises the soft limit of open files to the hard limit, as Go's runtime does: the default
/// soft limit (often 1024) is below what `POEM_API_MAX_CONNECTIONS` may allow.
fn raise_open_files_limit() {
    #[cfg(unix)]
    // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
    unsafe {
        let mut limit = std::mem::zeroed::<libc::rlimit>();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                tracing::debug!("could not raise the open files limit");
            }
        }
    }
}
