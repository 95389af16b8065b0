//! Owns the listeners: the accept loop, the connection limit and graceful stop. poem's own
//! `Server` retries failed accepts in a tight loop, has no connection limit, no header-read
//! timeout and leaves TCP_NODELAY off; this module serves poem endpoints over hyper instead.

mod conn;

use std::{io, sync::Arc, time::Duration};

use poem::{Response, endpoint::BoxEndpoint};
use prometheus_client::metrics::gauge::Gauge;
use tokio::{net::TcpListener, sync::Semaphore};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

pub use conn::Timeouts;

use crate::config::Config;

/// How one listener treats its connections.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connection timeouts.
    pub timeouts: Timeouts,
    /// Largest request head in bytes.
    pub header_limit: usize,
    /// Open connections at once; the accept loop waits for a free slot beyond it.
    pub max_connections: u32,
}

impl Limits {
    /// The limits the configuration sets.
    pub fn from_config(config: &Config) -> Self {
        Self {
            timeouts: Timeouts {
                header_read: config.header_read_timeout,
                keep_alive: config.keep_alive_timeout,
            },
            header_limit: config.header_limit,
            max_connections: config.max_connections,
        }
    }
}

/// Serves `endpoint` on `listener` until `stopping` is cancelled, then stops accepting, lets
/// every connection finish its request in progress, and returns when all are closed. The
/// caller bounds that wait (the shutdown timeout).
pub async fn serve(
    listener: TcpListener,
    endpoint: BoxEndpoint<'static, Response>,
    limits: Limits,
    stopping: CancellationToken,
    open_connections: Gauge,
) {
    let endpoint = Arc::new(endpoint);
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
        open_connections.inc();
        connections.spawn(async move {
            conn::serve(
                stream,
                endpoint,
                limits.timeouts,
                limits.header_limit,
                stopping,
            )
            .await;
            open_connections.dec();
            drop(slot);
        });
    }
    // Closing the listener now makes new connections fail fast (refused) instead of waiting in
    // a backlog nobody reads.
    drop(listener);
    connections.close();
    connections.wait().await;
}

fn is_per_connection(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
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
