//! Owns the listeners: the accept loop, the connection limit and graceful stop. poem's own
//! `Server` retries failed accepts in a tight loop, has no connection limit, no header-read
//! or send timeout and leaves TCP_NODELAY off; this module serves poem endpoints over hyper.

mod budget;
mod conn;
mod h2;
mod socket;

use std::{io, sync::Arc, time::Duration};

use poem::{Endpoint, Response};
use prometheus_client::metrics::gauge::Gauge;
use tokio::{net::TcpListener, sync::Semaphore};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

pub use budget::MemoryBudget;
pub use conn::{ConnLimits, MAX_REQUEST_LINE, Timeouts, read_buffer_limit};
pub use h2::{
    Http2Limits, MAX_FRAME as HTTP2_MAX_FRAME, MAX_LOCAL_ERROR_RESETS, MAX_PENDING_ACCEPT_RESETS,
    SEND_BUFFER as HTTP2_SEND_BUFFER, WINDOW as HTTP2_WINDOW,
};

use crate::config::Config;

/// Connections the admin listener accepts at once: probes and scrapes need few, and the
/// bound keeps its descriptors and memory out of reach of API traffic.
pub const ADMIN_CONNECTIONS: u32 = 32;

/// The admin listener's keep-alive and header-read timeouts at most: kubelet probes open a
/// connection each time, and Prometheus scrapes far less often than this.
pub const ADMIN_KEEP_ALIVE: Duration = Duration::from_secs(5);

/// How one listener treats its connections.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Timeouts and the head limit of each connection.
    pub conn: ConnLimits,
    /// Open connections at once; the accept loop waits for a free slot beyond it.
    pub max_connections: u32,
}

impl Limits {
    /// The API listener's limits, as the configuration sets them.
    pub fn from_config(config: &Config) -> Self {
        Self {
            conn: ConnLimits {
                timeouts: Timeouts {
                    header_read: config.header_read_timeout,
                    keep_alive: config.keep_alive_timeout,
                    send: config.send_timeout,
                },
                header_limit: config.header_limit,
                http2: config.http2.then_some(Http2Limits {
                    max_streams: config.http2_max_streams,
                    ping_interval: config.http2_ping_interval,
                    ping_timeout: config.http2_ping_timeout,
                }),
            },
            max_connections: config.max_connections,
        }
    }

    /// The admin listener's: HTTP/1.1 only, [`ADMIN_CONNECTIONS`] connections, and at most
    /// [`ADMIN_KEEP_ALIVE`] of idleness, so that idle keep-alive clients cannot hold every slot
    /// for the API's long keep-alive timeout and lock the probes out.
    pub fn admin(config: &Config) -> Self {
        let mut limits = Self::from_config(config);
        limits.max_connections = ADMIN_CONNECTIONS;
        limits.conn.http2 = None;
        let timeouts = &mut limits.conn.timeouts;
        timeouts.keep_alive = timeouts.keep_alive.min(ADMIN_KEEP_ALIVE);
        timeouts.header_read = timeouts.header_read.min(ADMIN_KEEP_ALIVE);
        limits
    }
}

/// Serves `endpoint` on `listener` until `stopping` is cancelled, then stops accepting, lets
/// every connection finish its request in progress, and returns when all are closed. The
/// caller bounds that wait (the shutdown timeout). An accept error that is neither the
/// client's nor a shortage of descriptors or memory means the listener is broken: it is sent
/// to `failed` at once (the caller stops the instance: open keep-alive connections could
/// otherwise keep this function waiting for ever), and returned once the connections already
/// open are finished.
pub async fn serve<E>(
    listener: TcpListener,
    endpoint: E,
    limits: Limits,
    stopping: CancellationToken,
    open_connections: Gauge,
    failed: tokio::sync::oneshot::Sender<io::Error>,
) -> io::Result<()>
where
    E: Endpoint<Output = Response> + 'static,
{
    let endpoint = Arc::new(endpoint);
    let mut failure = None;
    let slots = Arc::new(Semaphore::new(limits.max_connections as usize));
    let connections = TaskTracker::new();
    let mut backoff = AcceptBackoff::default();
    loop {
        // Wait for a free slot before accepting: clients queue in the kernel's backlog instead
        // of the process running out of memory or file descriptors.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            _ = stopping.cancelled() => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopping.cancelled() => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => {
                backoff.reset();
                stream
            }
            // The client gave up between connect and accept: nothing is wrong with us.
            Err(err) if is_per_connection(&err) => continue,
            Err(err) if !is_resource_shortage(&err) => {
                let _ = failed.send(io::Error::new(err.kind(), err.to_string()));
                failure = Some(err);
                break;
            }
            // Out of file descriptors or memory: wait for connections to close rather than
            // spin on an accept that fails at once.
            Err(err) => {
                let pause = backoff.next();
                tracing::warn!(error = %err, pause_ms = pause.as_millis() as u64, "accept failed");
                tokio::select! {
                    _ = tokio::time::sleep(pause) => continue,
                    _ = stopping.cancelled() => break,
                }
            }
        };
        // Small responses leave at once instead of waiting for Nagle's algorithm.
        let _ = stream.set_nodelay(true);
        let endpoint = endpoint.clone();
        let stopping = stopping.clone();
        let open_connections = open_connections.clone();
        let slots = slots.clone();
        open_connections.inc();
        connections.spawn(async move {
            conn::serve(stream, endpoint, limits.conn, stopping, slots).await;
            open_connections.dec();
            drop(slot);
        });
    }
    // Closing the listener now makes new connections fail fast (refused) instead of waiting in
    // a backlog nobody reads.
    drop(listener);
    connections.close();
    connections.wait().await;
    failure.map_or(Ok(()), Err)
}

/// Errors of one pending connection, not of the listener. Linux's accept(2) passes a new
/// socket's pending network errors on as its own, and its man page says to retry on them.
fn is_per_connection(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    ) || matches!(
        err.raw_os_error(),
        Some(
            libc::EPROTO
                | libc::ENETDOWN
                | libc::ENOPROTOOPT
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::EHOSTUNREACH
                | libc::EOPNOTSUPP
                | libc::ENETUNREACH
                | libc::EPERM
                | libc::ETIMEDOUT
        )
    )
}

/// Errors that pass when connections close (EMFILE, ENFILE, ENOBUFS, ENOMEM): worth waiting for.
fn is_resource_shortage(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    ) || err.kind() == io::ErrorKind::OutOfMemory
}

/// 5 ms, doubling to 1 s: the schedule Go's net/http uses for the same failure.
#[derive(Debug, Default)]
struct AcceptBackoff(Option<Duration>);

impl AcceptBackoff {
    fn next(&mut self) -> Duration {
        let next = self.0.map_or(Duration::from_millis(5), |d| {
            (d * 2).min(Duration::from_secs(1))
        });
        self.0 = Some(next);
        next
    }

    fn reset(&mut self) {
        self.0 = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_backoff_doubles_up_to_one_second_and_resets() {
        let mut backoff = AcceptBackoff::default();
        let pauses: Vec<u64> = (0..10).map(|_| backoff.next().as_millis() as u64).collect();
        assert_eq!(pauses, [5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        backoff.reset();
        assert_eq!(backoff.next(), Duration::from_millis(5));
    }
}
