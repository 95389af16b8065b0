//! One HTTP/1.1 connection: poem's endpoint served over hyper, with the two timeouts poem's own
//! server lacks. hyper's `header_read_timeout` starts whenever hyper waits for a request head —
//! also while a keep-alive connection is idle — so it cannot tell a slow-loris client from an
//! idle one. This module tracks the connection's phase itself:
//!
//! - idle (no request, no bytes of the next one): closed after `keep_alive_timeout`;
//! - reading a head (bytes arrived, handler not yet called): closed after `header_read_timeout`;
//! - busy (a handler runs or its response is being written): no connection timeout; the
//!   request timeout bounds the handler.

use std::{
    io,
    pin::{Pin, pin},
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use hyper_util::rt::TokioIo;
use poem::{
    Endpoint, Response,
    endpoint::BoxEndpoint,
    http::uri::Scheme,
    web::{LocalAddr, RemoteAddr},
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
    sync::Notify,
    time::{Instant, sleep_until},
};
use tokio_util::sync::CancellationToken;

/// Connection timeouts.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// From the first byte of a request to the end of its headers.
    pub header_read: Duration,
    /// From the end of a response to the first byte of the next request.
    pub keep_alive: Duration,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Idle { since: Instant },
    ReadingHead { since: Instant },
    Busy { requests: usize },
}

/// The phase, shared by the socket wrapper, the service and the watchdog, which is woken
/// whenever the phase changes and so its deadline may have moved.
#[derive(Debug, Clone)]
struct Tracker(Arc<(Mutex<Phase>, Notify)>);

impl Tracker {
    fn new() -> Self {
        let idle = Phase::Idle {
            since: Instant::now(),
        };
        Self(Arc::new((Mutex::new(idle), Notify::new())))
    }

    fn phase(&self) -> Phase {
        *self.0.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update(&self, f: impl FnOnce(Phase) -> Phase) {
        {
            let mut phase = self.0.0.lock().unwrap_or_else(|e| e.into_inner());
            *phase = f(*phase);
        }
        self.0.1.notify_one();
    }

    async fn changed(&self) {
        self.0.1.notified().await;
    }

    fn bytes_received(&self) {
        // Called on every read: only the first bytes of a request change the phase.
        if matches!(self.phase(), Phase::Idle { .. }) {
            self.update(|_| Phase::ReadingHead {
                since: Instant::now(),
            });
        }
    }

    fn request_started(&self) {
        self.update(|p| match p {
            Phase::Busy { requests } => Phase::Busy {
                requests: requests + 1,
            },
            _ => Phase::Busy { requests: 1 },
        });
    }

    fn request_finished(&self) {
        self.update(|p| match p {
            Phase::Busy { requests } if requests > 1 => Phase::Busy {
                requests: requests - 1,
            },
            _ => Phase::Idle {
                since: Instant::now(),
            },
        });
    }

    /// When the current phase runs out, and what that means.
    fn deadline(&self, timeouts: Timeouts) -> Option<(Instant, Expiry)> {
        match *self.0.0.lock().unwrap_or_else(|e| e.into_inner()) {
            Phase::Idle { since } => Some((since + timeouts.keep_alive, Expiry::Idle)),
            Phase::ReadingHead { since } => Some((since + timeouts.header_read, Expiry::SlowHead)),
            Phase::Busy { .. } => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    Idle,
    SlowHead,
}

/// Serves one accepted connection until the client closes it, a timeout closes it, or the
/// server stops (`stopping`): then hyper finishes the request in progress and closes.
pub async fn serve(
    stream: TcpStream,
    endpoint: Arc<BoxEndpoint<'static, Response>>,
    timeouts: Timeouts,
    header_limit: usize,
    stopping: CancellationToken,
) {
    let (Ok(local), Ok(remote)) = (stream.local_addr(), stream.peer_addr()) else {
        return;
    };
    let tracker = Tracker::new();
    let io = TokioIo::new(TrackedIo {
        inner: stream,
        tracker: tracker.clone(),
    });
    let service_tracker = tracker.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let endpoint = endpoint.clone();
        let tracker = service_tracker.clone();
        tracker.request_started();
        async move {
            let (local, remote) = (LocalAddr(local.into()), RemoteAddr(remote.into()));
            let req = poem::Request::from((req, local, remote, Scheme::HTTP));
            let response: hyper::Response<_> = endpoint.get_response(req).await.into();
            // The request counts as finished when hyper drops the body: after the last byte
            // is written, or when the client goes away.
            Ok::<_, io::Error>(response.map(|body| TrackedBody {
                inner: body,
                tracker: Some(tracker),
            }))
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        // Disabled: this module owns both timeouts (see the module docs).
        .header_read_timeout(None)
        // Above it, hyper answers 431 and closes; without it, heads up to ~400 KB are read.
        .max_header_size(header_limit)
        .serve_connection(io, service);
    let mut conn = pin!(conn);
    let mut closing = false;
    loop {
        let deadline = tracker.deadline(timeouts);
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(%remote, error = %err, "connection ended with an error");
                }
                return;
            }
            _ = tracker.changed() => {} // Recompute the deadline.
            _ = stopping.cancelled(), if !closing => {
                // Closes at once if idle, otherwise after the response in progress.
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = sleep_until(deadline.map_or_else(far_future, |(at, _)| at)), if deadline.is_some() => {
                match tracker.deadline(timeouts) {
                    Some((at, Expiry::SlowHead)) if at <= Instant::now() => {
                        tracing::debug!(%remote, "request headers not complete in time; closing");
                        return;
                    }
                    Some((at, Expiry::Idle)) if at <= Instant::now() && !closing => {
                        conn.as_mut().graceful_shutdown();
                        closing = true;
                    }
                    _ => {} // The phase moved on; recompute the deadline.
                }
            }
        }
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400)
}

/// The socket, noting when bytes of a new request arrive.
struct TrackedIo {
    inner: TcpStream,
    tracker: Tracker,
}

impl AsyncRead for TrackedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(poll, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.tracker.bytes_received();
        }
        poll
    }
}

impl AsyncWrite for TrackedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

type PoemBody = http_body_util::combinators::BoxBody<Bytes, io::Error>;

/// A response body that tells the tracker when it is done with.
struct TrackedBody {
    inner: PoemBody,
    tracker: Option<Tracker>,
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for TrackedBody {
    fn drop(&mut self) {
        if let Some(tracker) = self.tracker.take() {
            tracker.request_finished();
        }
    }
}
