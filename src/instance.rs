//! One running instance, start to exit, for `main` and the tests alike ([`start`], then
//! [`Instance::run`]):
//!
//! 1. bind both ports; serve the API on the caller's runtime and the admin port on a thread and
//!    runtime of its own, so probes and scrapes answer while the API is saturated; turn ready;
//! 2. on SIGTERM or SIGINT: readiness fails, serving goes on for the drain delay;
//! 3. then stop accepting, let requests in flight finish within the shutdown timeout, stop the
//!    admin listener last, flush the spans still queued (when traces are exported: for what is
//!    left of the shutdown timeout, at least 1 s), and exit 0 (1 if requests were cut);
//! 4. a second signal exits at once (128 + its number); a listener that fails (its accept loop
//!    ends with an error or panics) turns readiness off, and the instance stops as in 3 and
//!    exits 1.

use std::{
    future::Future,
    io,
    net::{SocketAddr, TcpListener as StdListener},
    process::ExitCode,
    sync::Arc,
    time::Duration,
};

use futures_util::{
    FutureExt,
    future::{Fuse, FusedFuture},
};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use crate::{
    config::Config,
    lifecycle::StopSignals,
    routes,
    server::{self, ADMIN_CONNECTIONS, Limits},
    state::{AppState, REVISION, VERSION},
};

/// Descriptors kept free beyond both listeners' connections: the log, `/proc` reads for the
/// process metrics, the listeners themselves. The API's connection limit is lowered to fit
/// `RLIMIT_NOFILE` with this reserve and the admin's connections, so exhausting the API's
/// descriptors never starves the probes.
pub const FD_RESERVE: u64 = 64;

/// How long the admin listener may take to close after the API has stopped.
const ADMIN_STOP: Duration = Duration::from_secs(1);

/// Where stop signals come from: the process's ([`StopSignals`]) or a test's channel.
pub trait Signals {
    /// The next stop signal's number.
    fn recv(&mut self) -> impl Future<Output = i32> + Send;
}

impl Signals for StopSignals {
    async fn recv(&mut self) -> i32 {
        StopSignals::recv(self).await
    }
}

/// A test sends signal numbers; a closed channel never signals again.
impl Signals for tokio::sync::mpsc::UnboundedReceiver<i32> {
    async fn recv(&mut self) -> i32 {
        match tokio::sync::mpsc::UnboundedReceiver::recv(self).await {
            Some(signal) => signal,
            None => std::future::pending().await,
        }
    }
}

/// How an instance ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Stopped by a signal; every request finished.
    Stopped,
    /// Stopped by a signal; the shutdown timeout cut requests still in flight.
    TimedOut,
    /// A listener failed.
    Failed,
    /// A second signal during the stop: out at once.
    Interrupted(i32),
}

impl Exit {
    /// The process exit code: 0, 1, 1, 128 + signal.
    pub fn code(self) -> u8 {
        match self {
            Self::Stopped => 0,
            Self::TimedOut | Self::Failed => 1,
            Self::Interrupted(signal) => 128u8.saturating_add(signal as u8),
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit.code())
    }
}

/// A started instance: both listeners bound and serving, ready.
#[derive(Debug)]
pub struct Instance {
    /// The shared state (configuration, lifecycle, metrics).
    pub state: Arc<AppState>,
    /// Where the API listens.
    pub api_addr: SocketAddr,
    /// Where the admin listener listens.
    pub admin_addr: SocketAddr,
    api: Fuse<JoinHandle<io::Result<()>>>,
    admin: Fuse<oneshot::Receiver<io::Result<()>>>,
    /// A listener's accept loop broke: sent at once, while its connections still finish.
    api_failed: oneshot::Receiver<io::Error>,
    admin_failed: oneshot::Receiver<io::Error>,
    admin_stopping: CancellationToken,
    /// Stops the admin thread also when the instance is dropped without running to the end.
    _admin_guard: tokio_util::sync::DropGuard,
}

/// Binds both ports (0 picks a free one), starts serving and turns ready. Must be called
/// within a tokio runtime, which serves the API.
pub fn start(config: Config) -> Result<Instance, String> {
    let api_listener = bind(&config, config.port, "POEM_API_PORT")?;
    let admin_listener = bind(&config, config.admin_port, "POEM_API_ADMIN_PORT")?;
    let addr = |l: &StdListener| l.local_addr().map_err(|e| format!("no local address: {e}"));
    let (api_addr, admin_addr) = (addr(&api_listener)?, addr(&admin_listener)?);

    let state = AppState::new(config);
    let config = &state.config;
    let mut limits = Limits::from_config(config);
    limits.max_connections = fit_descriptors(limits.max_connections);
    let api_listener = TcpListener::from_std(api_listener)
        .map_err(|e| format!("cannot serve on {api_addr}: {e}"))?;
    let (api_failure, api_failed) = oneshot::channel();
    let api = tokio::spawn(server::serve(
        api_listener,
        routes::api(state.clone()),
        limits,
        state.lifecycle.stopping_token(),
        state.metrics.connections("api"),
        api_failure,
    ));
    // The admin listener outlives the API one, so probes and scrapes answer until the end.
    let admin_stopping = CancellationToken::new();
    let (admin_failure, admin_failed) = oneshot::channel();
    let admin = spawn_admin(
        admin_listener,
        state.clone(),
        admin_stopping.clone(),
        admin_failure,
    )?;

    state.lifecycle.set_ready();
    tracing::info!(
        api = %api_addr, admin = %admin_addr, version = VERSION, revision = REVISION,
        max_connections = limits.max_connections,
        traces_exported = crate::telemetry::traces::enabled(), "ready"
    );
    Ok(Instance {
        state,
        api_addr,
        admin_addr,
        api: api.fuse(),
        admin: admin.fuse(),
        api_failed,
        admin_failed,
        _admin_guard: admin_stopping.clone().drop_guard(),
        admin_stopping,
    })
}

impl Instance {
    /// Serves until a stop signal or a failed listener, then drains and stops.
    pub async fn run(mut self, mut signals: impl Signals) -> Exit {
        let state = self.state.clone();
        let (lifecycle, config) = (&state.lifecycle, &state.config);
        let mut failed = tokio::select! {
            signal = signals.recv() => {
                lifecycle.start_draining();
                tracing::info!(
                    signal,
                    drain_delay_ms = config.drain_delay.as_millis() as u64,
                    "draining: readiness now fails"
                );
                false
            }
            failure = self.failure() => {
                failure.log();
                true
            }
        };
        if !failed {
            // Readiness fails; serving goes on until load balancers have stopped sending.
            tokio::select! {
                _ = tokio::time::sleep(config.drain_delay) => {}
                signal = signals.recv() => return interrupted(signal),
                failure = self.failure() => {
                    failure.log();
                    failed = true;
                }
            }
        }
        if failed {
            lifecycle.set_failed();
            lifecycle.start_draining();
        }

        lifecycle.start_stopping();
        tracing::info!(
            shutdown_timeout_ms = config.shutdown_timeout.as_millis() as u64,
            "stopping: listener closed, finishing requests in flight"
        );
        let stop_started = tokio::time::Instant::now();
        // A listener that ended has already finished its connections.
        let finished = self.api.is_terminated()
            || tokio::select! {
                result = tokio::time::timeout(config.shutdown_timeout, &mut self.api) => result.is_ok(),
                signal = signals.recv() => return interrupted(signal),
            };
        self.admin_stopping.cancel();
        if !self.admin.is_terminated() {
            let _ = tokio::time::timeout(ADMIN_STOP, &mut self.admin).await;
        }
        // The spans of the last requests leave before the process does.
        let left = config
            .shutdown_timeout
            .saturating_sub(stop_started.elapsed());
        crate::telemetry::traces::flush(left).await;
        if !finished {
            // The runtime's end drops them: their log lines say 503, not the client's 499.
            lifecycle.set_cut();
        }
        match (failed, finished) {
            (true, _) => {
                tracing::error!("stopped after a listener failed");
                Exit::Failed
            }
            (false, true) => {
                tracing::info!("stopped");
                Exit::Stopped
            }
            (false, false) => {
                tracing::warn!("shutdown timeout reached with requests still in flight; exiting");
                Exit::TimedOut
            }
        }
    }

    /// The first sign that a listener failed: its accept loop broke, or its task ended or
    /// panicked before the stop.
    async fn failure(&mut self) -> Failure {
        tokio::select! {
            Ok(err) = &mut self.api_failed => Failure("api", Err(err)),
            Ok(err) = &mut self.admin_failed => Failure("admin", Err(err)),
            result = &mut self.api => {
                Failure("api", result.unwrap_or_else(|e| Err(io::Error::other(e))))
            }
            result = &mut self.admin => Failure(
                "admin",
                result.unwrap_or_else(|_| Err(io::Error::other("the admin thread panicked"))),
            ),
        }
    }
}

/// A listener that failed, and how.
struct Failure(&'static str, io::Result<()>);

impl Failure {
    fn log(&self) {
        let listener = self.0;
        match &self.1 {
            Err(err) => tracing::error!(listener, error = %err, "listener failed; stopping"),
            Ok(()) => tracing::error!(listener, "listener ended unexpectedly; stopping"),
        }
    }
}

/// A second signal: the operator wants out now.
fn interrupted(signal: i32) -> Exit {
    tracing::warn!(signal, "second signal: exiting at once");
    Exit::Interrupted(signal)
}

/// Connections the kernel completes and queues while the accept loop waits for a free slot
/// (tokio's `TcpListener::bind` uses the same; std's uses 128). The kernel caps it at
/// `net.core.somaxconn`.
const BACKLOG: i32 = 1024;

fn bind(config: &Config, port: u16, variable: &str) -> Result<StdListener, String> {
    use socket2::{Domain, Socket, Type};
    let addr = SocketAddr::new(config.host, port);
    let listen = || -> io::Result<StdListener> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        // As tokio's and std's bind: a restarted server can bind while old connections are
        // in TIME_WAIT.
        socket.set_reuse_address(true)?;
        socket.bind(&addr.into())?;
        socket.listen(BACKLOG)?;
        socket.set_nonblocking(true)?;
        Ok(socket.into())
    };
    listen().map_err(|err| format!("cannot listen on {addr} (POEM_API_HOST, {variable}): {err}"))
}

/// The admin listener on a thread with a single-threaded runtime of its own: CPU-heavy or
/// stalled API traffic cannot delay a probe. Its result (or a panic, as a closed channel)
/// reaches [`Instance::run`].
fn spawn_admin(
    listener: StdListener,
    state: Arc<AppState>,
    stopping: CancellationToken,
    failure: oneshot::Sender<io::Error>,
) -> Result<oneshot::Receiver<io::Result<()>>, String> {
    let (done, result) = oneshot::channel();
    let limits = Limits::admin(&state.config);
    std::thread::Builder::new()
        .name("poem-api-admin".into())
        .spawn(move || {
            let serve = || -> io::Result<()> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                runtime.block_on(async {
                    let listener = TcpListener::from_std(listener)?;
                    let gauge = state.metrics.connections("admin");
                    let admin = routes::admin(state);
                    server::serve(listener, admin, limits, stopping, gauge, failure).await
                })
            };
            let _ = done.send(serve());
        })
        .map_err(|e| format!("cannot start the admin thread: {e}"))?;
    Ok(result)
}

/// Lowers the API's connection limit so that it, the admin connections and [`FD_RESERVE`]
/// fit the open-files limit.
fn fit_descriptors(max_connections: u32) -> u32 {
    let Some(limit) = open_files_limit() else {
        return max_connections;
    };
    let available = limit.saturating_sub(FD_RESERVE + u64::from(ADMIN_CONNECTIONS));
    if u64::from(max_connections) <= available {
        return max_connections;
    }
    let fitted = available.clamp(1, u64::from(u32::MAX)) as u32;
    tracing::warn!(
        configured = max_connections,
        fitted,
        open_files_limit = limit,
        "POEM_API_MAX_CONNECTIONS lowered to fit the open-files limit with the admin reserve"
    );
    fitted
}

/// The soft limit of open files, raised to the hard limit first, as Go's runtime does: the
/// default soft limit (often 1024) is below what `POEM_API_MAX_CONNECTIONS` may allow.
fn open_files_limit() -> Option<u64> {
    // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
    unsafe {
        let mut limit = std::mem::zeroed::<libc::rlimit>();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                ..limit
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
        Some(limit.rlim_cur as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_documented_table() {
        assert_eq!(Exit::Stopped.code(), 0);
        assert_eq!(Exit::TimedOut.code(), 1);
        assert_eq!(Exit::Failed.code(), 1);
        assert_eq!(Exit::Interrupted(libc::SIGTERM).code(), 143);
    }
}
