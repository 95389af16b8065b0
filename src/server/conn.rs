//! One HTTP/1.1 connection as an explicit state machine: poem's endpoint served over hyper, with
//! the timeouts hyper gets wrong or lacks.
//!
//! | phase | from | deadline |
//! |---|---|---|
//! | reading a head | accept; the first byte after a response; bytes left over from the last request | `header_read` |
//! | handler running, or reading a body | hyper calls the service | none here: the request timeout bounds the handler |
//! | writing, client not accepting bytes | a write returns `Pending` | `send`, from the last byte the client accepted |
//! | idle | the response is written, no byte of the next head | `keep_alive` |
//!
//! Why not hyper's own `header_read_timeout`: hyper 1.12 starts it whenever it waits for a head
//! (`proto/h1/io.rs`, `parse`), also on an idle keep-alive connection, so it cannot tell a
//! slow-loris client from an idle one; and hyper has no send timeout at all.
//!
//! Every phase change happens while this connection's task polls hyper (the socket wrapper, the
//! service and the response body all run inside that poll), so [`Connection::poll`] looks at a
//! generation counter after each poll of hyper and re-arms its one timer only when it moved. A
//! deadline that passes closes the connection: nothing re-polls an elapsed timer.
//!
//! With HTTP/2 on ([`ConnLimits::http2`]), the first bytes are read under the header clock and
//! compared with the HTTP/2 preface (see [`super::h2`]); a connection that differs is served
//! here, the bytes read so far replayed to hyper first.
//!
//! Half-close: hyper's default (`half_close(false)`) is kept — a client that shuts down its
//! sending side is treated as gone, and a handler still running for it is dropped (and logged
//! as 499 by the pipeline), as nginx does by default.

use std::{
    future::Future,
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed},
    },
    task::{Context, Poll, ready},
    time::Duration,
};

use bytes::Bytes;
use hyper::{
    body::{Body, Frame, Incoming, SizeHint},
    server::conn::http1,
};
use hyper_util::rt::TokioIo;
use poem::{
    Endpoint, Response,
    http::uri::Scheme,
    web::{LocalAddr, RemoteAddr},
};
use tokio::{
    io::{AsyncRead, ReadBuf},
    net::TcpStream,
    time::{Instant, Sleep, sleep_until},
};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use super::socket::{SendClock, Socket};

use super::h2::{self, Http2Limits, Opening, Replay};

/// Connection timeouts.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// From accept, or the first byte of a later request, to the end of its head.
    pub header_read: Duration,
    /// From the end of a response to the first byte of the next request.
    pub keep_alive: Duration,
    /// While a response is written: the longest time the client may accept no byte of it.
    pub send: Duration,
}

/// What a connection needs besides its socket.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// The timeouts.
    pub timeouts: Timeouts,
    /// Largest request head in bytes (431 above it).
    pub header_limit: usize,
    /// HTTP/2 by prior knowledge beside HTTP/1.1, when set.
    pub http2: Option<Http2Limits>,
}

/// Longest request line: above it the answer is 414, as nginx's `large_client_header_buffers`
/// gives. hyper reads the request line as part of the head and answers 431 for either.
pub const MAX_REQUEST_LINE: usize = 8 * 1024;

/// hyper's smallest allowed `max_buf_size` (`proto::h1::MINIMUM_MAX_BUFFER_SIZE`).
const MIN_BUF: usize = 8192;

/// hyper's read buffer bound for a head limit: the head must fit, and body bytes flow through
/// the same buffer in pieces of at most this size. hyper's default is ~400 KB per connection.
pub fn read_buffer_limit(header_limit: usize) -> usize {
    header_limit.max(MIN_BUF)
}

/// Why a deadline closes the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// No complete request head within the header-read timeout.
    SlowHead,
    /// The client accepted no byte of the response within the send timeout.
    SlowReader,
    /// Idle longer than the keep-alive timeout.
    Idle,
}

/// Microseconds since the connection was accepted, plus one, so that 0 can mean "not set".
type Stamp = u64;
const UNSET: Stamp = 0;

/// The connection's phase, shared by the socket wrapper, the service and the response bodies;
/// all of them run inside the connection task's poll, so relaxed atomics suffice.
#[derive(Debug)]
struct Track {
    accepted: Instant,
    /// Bumped on every change that moves the deadline.
    generation: AtomicU32,
    /// A request's handler runs or its response body is not yet finished.
    busy: AtomicBool,
    /// The request in progress declared a body (so bytes after its head are its body).
    has_body: AtomicBool,
    /// The last response finished before hyper was known to have read its request's body:
    /// bytes read until the next request starts may be that body (hyper drains what the
    /// handler left), so they neither start a head's clock nor count as a request line.
    body_pending: AtomicBool,
    /// When the head being read started; UNSET when not reading a head.
    head_since: AtomicU64,
    /// When the connection went idle; UNSET when not idle.
    idle_since: AtomicU64,
    /// When a write last returned `Pending` without the client accepting a byte since.
    blocked_since: AtomicU64,
    /// Bytes read from the socket.
    read_total: AtomicU64,
    /// Offset just past the last `\r\n\r\n` read: the end of the newest complete head.
    head_end: AtomicU64,
}

impl Track {
    fn new(accepted: Instant) -> Self {
        Self {
            accepted,
            generation: AtomicU32::new(0),
            busy: AtomicBool::new(false),
            has_body: AtomicBool::new(false),
            body_pending: AtomicBool::new(false),
            // The header clock starts at accept: a client that never sends a byte is a slow
            // head, not an idle keep-alive connection.
            head_since: AtomicU64::new(1),
            idle_since: AtomicU64::new(UNSET),
            blocked_since: AtomicU64::new(UNSET),
            read_total: AtomicU64::new(0),
            head_end: AtomicU64::new(0),
        }
    }

    fn stamp(&self, now: Instant) -> Stamp {
        now.saturating_duration_since(self.accepted).as_micros() as u64 + 1
    }

    fn at(&self, stamp: Stamp) -> Instant {
        self.accepted + Duration::from_micros(stamp - 1)
    }

    fn changed(&self) {
        self.generation.fetch_add(1, Relaxed);
    }

    /// hyper parsed a head and calls the service.
    fn request_started(&self, has_body: bool) {
        self.busy.store(true, Relaxed);
        self.has_body.store(has_body, Relaxed);
        self.body_pending.store(false, Relaxed);
        self.head_since.store(UNSET, Relaxed);
        self.idle_since.store(UNSET, Relaxed);
        self.changed();
    }

    /// hyper is done with the response body: the last byte is handed to the socket, or the
    /// client went away.
    fn response_finished(&self, now: Instant) {
        self.busy.store(false, Relaxed);
        // Bytes beyond the last head of a request without a body are the start of the next
        // head (a pipelined request in the same packet): its header clock runs from now.
        // After a request with a body they cannot be told from that body without parsing it,
        // so until the next request the keep-alive clock bounds them.
        let has_body = self.has_body.load(Relaxed);
        self.body_pending.store(has_body, Relaxed);
        let leftover = !has_body && self.read_total.load(Relaxed) > self.head_end.load(Relaxed);
        if leftover {
            self.head_since.store(self.stamp(now), Relaxed);
        } else {
            self.idle_since.store(self.stamp(now), Relaxed);
        }
        self.changed();
    }

    /// Bytes arrived; `head_end` is the offset past a `\r\n\r\n` among them, if any.
    /// True when they are the first bytes of a new head after an idle time.
    fn bytes_read(&self, n: usize, head_end: Option<u64>, now: impl FnOnce() -> Instant) -> bool {
        self.read_total.fetch_add(n as u64, Relaxed);
        if let Some(end) = head_end {
            self.head_end.store(end, Relaxed);
        }
        if self.idle_since.load(Relaxed) == UNSET || self.body_pending.load(Relaxed) {
            return false;
        }
        self.idle_since.store(UNSET, Relaxed);
        self.head_since.store(self.stamp(now()), Relaxed);
        self.changed();
        true
    }

    fn write_blocked(&self, now: Instant) {
        if self.blocked_since.load(Relaxed) == UNSET {
            self.blocked_since.store(self.stamp(now), Relaxed);
            self.changed();
        }
    }

    fn write_progressed(&self, now: impl FnOnce() -> Instant) {
        if self.blocked_since.load(Relaxed) == UNSET {
            return;
        }
        self.blocked_since.store(UNSET, Relaxed);
        // A response handed to hyper before the client took it: the idle (or next head's)
        // clock starts once the bytes move again, not when the body was handed over.
        if !self.busy.load(Relaxed) {
            let now = self.stamp(now());
            for clock in [&self.idle_since, &self.head_since] {
                if clock.load(Relaxed) != UNSET {
                    clock.store(now, Relaxed);
                }
            }
        }
        self.changed();
    }

    /// When the current phase runs out, and what that means.
    fn deadline(&self, timeouts: &Timeouts) -> Option<(Instant, Expiry)> {
        let blocked = self.blocked_since.load(Relaxed);
        if blocked != UNSET {
            return Some((self.at(blocked) + timeouts.send, Expiry::SlowReader));
        }
        if self.busy.load(Relaxed) {
            return None;
        }
        let head = self.head_since.load(Relaxed);
        if head != UNSET {
            return Some((self.at(head) + timeouts.header_read, Expiry::SlowHead));
        }
        let idle = self.idle_since.load(Relaxed);
        (idle != UNSET).then(|| (self.at(idle) + timeouts.keep_alive, Expiry::Idle))
    }
}

/// Serves one accepted connection until the client closes it, a deadline closes it, or the
/// server stops (`stopping`): then hyper finishes the request in progress and closes.
/// `slots` is the listener's connection semaphore: HTTP/2 streams beyond a connection's first
/// take a slot of it each.
pub async fn serve<E>(
    mut stream: TcpStream,
    endpoint: Arc<E>,
    limits: ConnLimits,
    stopping: CancellationToken,
    slots: Arc<tokio::sync::Semaphore>,
) where
    E: Endpoint<Output = Response> + 'static,
{
    let (Ok(local), Ok(remote)) = (stream.local_addr(), stream.peer_addr()) else {
        return;
    };
    let accepted = Instant::now();
    let replay = match limits.http2 {
        None => Replay::default(),
        Some(_) => {
            let deadline = accepted + limits.timeouts.header_read;
            match h2::detect(&mut stream, deadline, &stopping).await {
                Opening::Http1(replay) => replay,
                Opening::Http2(read) => {
                    let addrs = (local, remote);
                    h2::serve(stream, read, addrs, endpoint, limits, stopping, slots).await;
                    return;
                }
                Opening::Closed(why) => {
                    tracing::debug!(%remote, why, "connection closed before its protocol was known");
                    return;
                }
            }
        }
    };
    let track = Arc::new(Track::new(accepted));
    let io = TokioIo::new(TrackedIo {
        inner: stream,
        side: Http1 {
            track: track.clone(),
            scan: HeadScan::default(),
            replay,
        },
    });
    let (local, remote_addr) = (LocalAddr(local.into()), RemoteAddr(remote.into()));
    let service_track = track.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        service_track.request_started(!req.body().is_end_stream());
        let req = poem::Request::from((req, local.clone(), remote_addr.clone(), Scheme::HTTP));
        let (endpoint, track) = (endpoint.clone(), service_track.clone());
        async move {
            // The pipeline answers every error itself; `Endpoint::Output` is a Response.
            let response: hyper::Response<_> = match endpoint.call(req).await {
                Ok(response) => response.into(),
                Err(err) => err.into_response().into(),
            };
            Ok::<_, io::Error>(response.map(|body| TrackedBody {
                inner: body,
                track: Some(track),
            }))
        }
    });
    let conn = http1::Builder::new()
        // Disabled: this module owns the head and idle clocks (see the module docs).
        .header_read_timeout(None)
        // Above it, hyper answers 431 and closes.
        .max_header_size(limits.header_limit)
        // Bounds hyper's read buffer (default ~400 KB) and so the memory a client can make
        // one connection hold; see `MemoryBudget`.
        .max_buf_size(read_buffer_limit(limits.header_limit))
        .serve_connection(io, service);
    let connection = Connection {
        conn: Box::pin(conn),
        track,
        timeouts: limits.timeouts,
        generation: u32::MAX,
        timer: Box::pin(sleep_until(Instant::now())),
        armed: None,
        stopping: Some(Box::pin(stopping.cancelled_owned())),
    };
    match connection.await {
        Ok(()) => {}
        Err(Closed::Expired(expiry)) => {
            tracing::debug!(%remote, ?expiry, "connection deadline passed; closed");
        }
        Err(Closed::Error(err)) => {
            tracing::debug!(%remote, error = %err, "connection ended with an error");
        }
    }
}

/// hyper's connection as [`Connection`] drives it.
trait GracefulConnection: Future<Output = hyper::Result<()>> {
    fn graceful_shutdown(self: Pin<&mut Self>);
}

impl<I, S, B> GracefulConnection for http1::Connection<I, S>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    S: hyper::service::HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        http1::Connection::graceful_shutdown(self);
    }
}

enum Closed {
    Expired(Expiry),
    Error(hyper::Error),
}

/// The per-connection future: hyper's connection, one timer, and the stop signal.
struct Connection<C> {
    conn: Pin<Box<C>>,
    track: Arc<Track>,
    timeouts: Timeouts,
    /// The `Track::generation` the timer was armed for.
    generation: u32,
    timer: Pin<Box<Sleep>>,
    armed: Option<Expiry>,
    /// Taken once the stop is seen, so it is not polled again.
    stopping: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
}

impl<C: GracefulConnection> Future for Connection<C> {
    type Output = Result<(), Closed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        // hyper first: a request already in the socket is read and answered, not cut by a
        // stop that arrives in the same wake-up.
        if let Poll::Ready(result) = this.conn.as_mut().poll(cx) {
            return Poll::Ready(result.map_err(Closed::Error));
        }
        if let Some(stopping) = &mut this.stopping
            && stopping.as_mut().poll(cx).is_ready()
        {
            this.stopping = None;
            // A connection that never sent a byte has nothing to finish; hyper would keep it
            // (its keep-alive state starts busy) until the header-read timeout.
            if this.track.read_total.load(Relaxed) == 0 {
                return Poll::Ready(Ok(()));
            }
            // Closes at once if idle, otherwise after the response in progress.
            this.conn.as_mut().graceful_shutdown();
            if let Poll::Ready(result) = this.conn.as_mut().poll(cx) {
                return Poll::Ready(result.map_err(Closed::Error));
            }
        }
        let generation = this.track.generation.load(Relaxed);
        if generation != this.generation {
            this.generation = generation;
            this.armed = this.track.deadline(&this.timeouts).map(|(at, expiry)| {
                this.timer.as_mut().reset(at);
                expiry
            });
        }
        if let Some(expiry) = this.armed {
            ready!(this.timer.as_mut().poll(cx));
            return Poll::Ready(Err(Closed::Expired(expiry)));
        }
        Poll::Pending
    }
}

/// Finds the ends of request heads (`\r\n\r\n`) in the byte stream, across reads, and the
/// length of a request line still without its `\n`.
#[derive(Debug)]
struct HeadScan {
    /// The last up to three bytes of the previous read.
    tail: [u8; 3],
    tail_len: u8,
    /// Bytes of the current request line read so far with no `\n` yet; None once it ended.
    line: Option<usize>,
}

impl Default for HeadScan {
    fn default() -> Self {
        // A connection starts with a request line.
        Self {
            tail: [0; 3],
            tail_len: 0,
            line: Some(0),
        }
    }
}

impl HeadScan {
    /// Scans `bytes`, which start at stream offset `offset`; returns the offset past the last
    /// `\r\n\r\n` in them.
    fn scan(&mut self, bytes: &[u8], offset: u64) -> Option<u64> {
        let tail = usize::from(self.tail_len);
        // httparse ends a head at `\r\n\r\n` or at a bare `\n\n`: the last `\n` of either is
        // in `bytes` (an earlier one was found by the earlier call), so look back from each `\n`,
        // last first, into the tail of the previous read where needed.
        let before = |i: usize, back: usize| -> Option<u8> {
            match i.checked_sub(back) {
                Some(j) => Some(bytes[j]),
                None => (back - i <= tail).then(|| self.tail[tail - (back - i)]),
            }
        };
        let end = memchr::memrchr_iter(b'\n', bytes)
            .find(|&i| {
                before(i, 1) == Some(b'\n')
                    || (before(i, 1) == Some(b'\r') && before(i, 2) == Some(b'\n'))
            })
            .map(|i| offset + i as u64 + 1);
        let keep = bytes.len().min(3);
        if keep == 3 {
            self.tail.copy_from_slice(&bytes[bytes.len() - 3..]);
            self.tail_len = 3;
        } else {
            let old = &self.tail[..tail];
            let mut joined = [0u8; 6];
            joined[..tail].copy_from_slice(old);
            joined[tail..tail + keep].copy_from_slice(bytes);
            let len = tail + keep;
            let start = len.saturating_sub(3);
            self.tail[..len - start].copy_from_slice(&joined[start..len]);
            self.tail_len = (len - start) as u8;
        }
        end
    }

    /// Counts `bytes` toward the request line started by the current head; true when it has
    /// grown past [`MAX_REQUEST_LINE`] without ending.
    fn line_too_long(&mut self, bytes: &[u8]) -> bool {
        let Some(seen) = self.line else {
            return false;
        };
        match memchr::memchr(b'\n', bytes) {
            Some(end) => {
                self.line = None;
                seen + end > MAX_REQUEST_LINE
            }
            None => {
                self.line = Some(seen + bytes.len());
                seen + bytes.len() > MAX_REQUEST_LINE
            }
        }
    }
}

/// The answer to an over-long request line, written by the socket wrapper itself because hyper
/// would answer 431 with an empty body.
const URI_TOO_LONG: &[u8] = b"HTTP/1.1 414 URI Too Long\r\n\
content-type: application/problem+json\r\n\
connection: close\r\n\
content-length: 118\r\n\r\n\
{\"type\":\"about:blank\",\"title\":\"URI Too Long\",\"status\":414,\"detail\":\"the request line exceeds the limit of 8192 bytes\"}";

/// What the HTTP/1.1 path keeps beside the socket: the head scan, the bytes the protocol
/// detection read (handed out before the socket's), and the [`Track`] reads and writes report to.
struct Http1 {
    track: Arc<Track>,
    scan: HeadScan,
    replay: Replay,
}

type TrackedIo = Socket<Http1>;

impl AsyncRead for TrackedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let Socket { inner, side } = self.get_mut();
        let before = buf.filled().len();
        if !side.replay.take_into(buf) {
            ready!(Pin::new(&mut *inner).poll_read(cx, buf))?;
        }
        let bytes = &buf.filled()[before..];
        if bytes.is_empty() {
            return Poll::Ready(Ok(()));
        }
        let track = &side.track;
        let end = side.scan.scan(bytes, track.read_total.load(Relaxed));
        if track.bytes_read(bytes.len(), end, Instant::now) {
            // The first bytes of a new head: its request line starts here.
            side.scan.line = Some(0);
        }
        if side.scan.line_too_long(bytes) {
            // Best effort: a small answer fits in an empty socket buffer; then the connection
            // ends as hyper sees an error.
            let _ = inner.try_write(URI_TOO_LONG);
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "request line too long (414 sent)",
            )));
        }
        Poll::Ready(Ok(()))
    }
}

impl SendClock for Http1 {
    fn written(&self, poll: &Poll<io::Result<usize>>) {
        match poll {
            Poll::Pending => self.track.write_blocked(Instant::now()),
            Poll::Ready(Ok(n)) if *n > 0 => self.track.write_progressed(Instant::now),
            Poll::Ready(_) => {}
        }
    }
}

type PoemBody = http_body_util::combinators::BoxBody<Bytes, io::Error>;

/// A response body that tells the tracker when hyper is done with it.
struct TrackedBody {
    inner: PoemBody,
    track: Option<Arc<Track>>,
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
        if let Some(track) = self.track.take() {
            track.response_finished(Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUTS: Timeouts = Timeouts {
        header_read: Duration::from_secs(5),
        keep_alive: Duration::from_secs(75),
        send: Duration::from_secs(30),
    };

    fn expiry(track: &Track) -> Option<(Duration, Expiry)> {
        track
            .deadline(&TIMEOUTS)
            .map(|(at, e)| (at - track.accepted, e))
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_is_a_slow_head_from_accept() {
        let track = Track::new(Instant::now());
        assert_eq!(
            expiry(&track),
            Some((TIMEOUTS.header_read, Expiry::SlowHead))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_response_the_keep_alive_clock_runs_until_the_next_byte() {
        let track = Track::new(Instant::now());
        let request = b"GET / HTTP/1.1\r\nhost: a\r\n\r\n";
        track.bytes_read(request.len(), Some(request.len() as u64), Instant::now);
        track.request_started(false);
        assert_eq!(
            expiry(&track),
            None,
            "no connection deadline while the handler runs"
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        track.response_finished(Instant::now());
        let idle_at = Duration::from_secs(1) + TIMEOUTS.keep_alive;
        assert_eq!(expiry(&track), Some((idle_at, Expiry::Idle)));
        tokio::time::advance(Duration::from_secs(2)).await;
        track.bytes_read(3, None, Instant::now);
        let head_at = Duration::from_secs(3) + TIMEOUTS.header_read;
        assert_eq!(expiry(&track), Some((head_at, Expiry::SlowHead)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_partial_head_pipelined_behind_a_request_starts_the_header_clock() {
        let track = Track::new(Instant::now());
        let bytes = b"GET / HTTP/1.1\r\nhost: a\r\n\r\nGET / HT";
        let mut scan = HeadScan::default();
        let end = scan.scan(bytes, 0);
        track.bytes_read(bytes.len(), end, Instant::now);
        track.request_started(false);
        tokio::time::advance(Duration::from_secs(1)).await;
        track.response_finished(Instant::now());
        let at = Duration::from_secs(1) + TIMEOUTS.header_read;
        assert_eq!(expiry(&track), Some((at, Expiry::SlowHead)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_blocked_write_runs_the_send_clock_until_the_client_takes_a_byte() {
        let track = Track::new(Instant::now());
        track.request_started(false);
        tokio::time::advance(Duration::from_secs(2)).await;
        track.write_blocked(Instant::now());
        tokio::time::advance(Duration::from_secs(1)).await;
        track.write_blocked(Instant::now()); // still blocked: the clock does not restart
        let at = Duration::from_secs(2) + TIMEOUTS.send;
        assert_eq!(expiry(&track), Some((at, Expiry::SlowReader)));
        // The body was handed over, but the bytes are still unsent: still the send clock,
        // not keep-alive (the cause of the old busy loop).
        track.response_finished(Instant::now());
        assert_eq!(expiry(&track), Some((at, Expiry::SlowReader)));
        tokio::time::advance(Duration::from_secs(4)).await;
        track.write_progressed(Instant::now);
        // The idle clock starts when the client took the bytes, not when hyper had them.
        let idle_at = Duration::from_secs(7) + TIMEOUTS.keep_alive;
        assert_eq!(expiry(&track), Some((idle_at, Expiry::Idle)));
    }

    #[test]
    fn the_414_answer_declares_its_length_and_the_limit() {
        let text = std::str::from_utf8(URI_TOO_LONG).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        let problem: serde_json::Value = serde_json::from_str(body).unwrap();
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains(&MAX_REQUEST_LINE.to_string())
        );
    }

    #[test]
    fn head_ends_are_found_across_reads() {
        let mut scan = HeadScan::default();
        assert_eq!(scan.scan(b"GET / HTTP/1.1\r\nh: v\r", 0), None);
        assert_eq!(scan.scan(b"\n\r", 22), None);
        assert_eq!(scan.scan(b"\nbody", 24), Some(25));
        let mut scan = HeadScan::default();
        assert_eq!(scan.scan(b"\r\n\r\n\r\n\r\nx", 0), Some(8));
        let mut scan = HeadScan::default();
        assert_eq!(scan.scan(b"GET / HTTP/1.1\nhost: a\n\n", 0), Some(24));
        let mut scan = HeadScan::default();
        assert_eq!(scan.scan(b"GET / HTTP/1.1\nhost: a\n", 0), None);
        assert_eq!(
            scan.scan(b"\n", 23),
            Some(24),
            "bare LFs split across reads"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_after_a_request_with_a_body_do_not_start_a_head() {
        let track = Track::new(Instant::now());
        let head = b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 9000\r\n\r\n";
        track.bytes_read(head.len(), Some(head.len() as u64), Instant::now);
        track.request_started(true);
        track.response_finished(Instant::now());
        // hyper drains the body the handler left: not a new head, the keep-alive clock holds.
        assert!(!track.bytes_read(4096, None, Instant::now));
        assert_eq!(expiry(&track), Some((TIMEOUTS.keep_alive, Expiry::Idle)));
    }

    #[test]
    fn a_request_line_over_the_limit_is_detected_without_a_newline() {
        let mut scan = HeadScan {
            line: Some(0),
            ..HeadScan::default()
        };
        assert!(!scan.line_too_long(&[b'a'; MAX_REQUEST_LINE]));
        assert!(scan.line_too_long(b"a"));
        let mut scan = HeadScan {
            line: Some(0),
            ..HeadScan::default()
        };
        assert!(!scan.line_too_long(&[b'a'; 100]));
        assert!(!scan.line_too_long(b"a HTTP/1.1\r\n"));
        assert!(
            !scan.line_too_long(&[b'a'; MAX_REQUEST_LINE * 2]),
            "headers may be long"
        );
    }
}
