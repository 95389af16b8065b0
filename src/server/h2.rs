//! HTTP/2 by prior knowledge (h2c) on the API port, beside HTTP/1.1: protocol detection and one
//! HTTP/2 connection over hyper's `http2` server, with the protections the HTTP/1.1 path has.
//!
//! Detection: the first bytes are read (not peeked: a client that sends one byte at a time
//! would make a peek loop spin) under the header-read clock and compared with the 24-byte
//! preface; any HTTP/1.1 method differs from `PRI` by its first or second byte, so an HTTP/1.1
//! connection costs one extra `read(2)` at most, and the bytes are replayed to its path. Not
//! hyper-util's `auto` builder: it reads the same bytes, but the HTTP/1.1 path has its own
//! socket wrapper (head scan, 414, phase clocks) that must see them too, and `auto` would need
//! that wrapper around both protocols, where its head scan would misread binary frames.
//! No `Upgrade: h2c` from HTTP/1.1: hyper does not implement it, and RFC 9113 §3.1 deprecates
//! it. No TLS here, hence no ALPN: TLS is terminated in front.
//!
//! | phase | deadline | then |
//! |---|---|---|
//! | preface and the client's SETTINGS frame | `header_read`, from accept | closed |
//! | no stream open | `keep_alive`, from the end of the last stream | GOAWAY, closed after the streams and the ping, at most `header_read` later |
//! | socket write blocked | `send`, from the last byte the client accepted | closed |
//! | a stream's produced data not taken (flow-control window 0) | `send`, from when the data was produced | GOAWAY, closed at most 1 s later |
//! | PING not acknowledged | `ping_timeout` (hyper) | closed |
//!
//! Draining: the pipeline marks every response `Connection: close` while the instance drains,
//! so that HTTP/1.1 clients reconnect to an instance still ready. hyper strips that header from
//! HTTP/2 responses (RFC 9113 §8.2.2); its HTTP/2 meaning is GOAWAY, so the first such response
//! on a connection makes it send GOAWAY: streams already open finish, new ones go to a new
//! connection. The stop itself sends GOAWAY on every connection.
//!
//! Streams run on tasks of their own (hyper spawns them), so the connection task cannot watch
//! their phases from inside its poll as the HTTP/1.1 path does: it looks at the shared state on
//! a tick of at most 1 s, which makes each deadline late by up to one tick.

use std::{
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed, Ordering::SeqCst},
    },
    task::{Context, Poll, ready},
    time::Duration,
};

use bytes::{Buf, Bytes};
use futures_util::task::AtomicWaker;
use hyper::{
    body::{Body, Frame, Incoming, SizeHint},
    server::conn::http2,
};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use poem::{
    Endpoint, Response,
    http::{HeaderValue, StatusCode, header, uri::Scheme},
    web::{LocalAddr, RemoteAddr},
};
use tokio::{
    io::{AsyncRead, ReadBuf},
    net::TcpStream,
    sync::{OwnedSemaphorePermit, Semaphore},
    time::{Instant, Sleep, sleep_until},
};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use super::{
    conn::{ConnLimits, Timeouts},
    socket::{SendClock, Socket},
};

/// The client connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Flow-control window of each stream and of the connection, in both directions the spec's
/// default (65,535): hyper's default of 1 MiB would let a client park that much unread body
/// data per connection. No request body may exceed `POEM_API_BODY_LIMIT` (64 KiB) anyway.
pub const WINDOW: u32 = 65_535;

/// Largest frame received (the spec's default, SETTINGS_MAX_FRAME_SIZE): bounds h2's read
/// buffer.
pub const MAX_FRAME: u32 = 16 * 1024;

/// Response data h2 queues per stream beyond what the client's window lets out (hyper's
/// default is ~400 KB).
pub const SEND_BUFFER: usize = 16 * 1024;

/// Streams the client may reset while still in the accept queue before the connection is
/// closed with GOAWAY ENHANCE_YOUR_CALM: the CVE-2023-44487 (rapid reset) guard of h2 0.4,
/// whose own default this is.
pub const MAX_PENDING_ACCEPT_RESETS: usize = 20;

/// Streams this server may reset for the client's protocol errors before it sends GOAWAY
/// (RUSTSEC-2024-0003; hyper's default is 1024, a quarter of it is plenty for honest clients).
pub const MAX_LOCAL_ERROR_RESETS: usize = 256;

/// Largest piece a response body is handed to hyper in: with flow control stalled, the next
/// piece is not asked for, which is what the stall clock measures.
const PIECE: usize = 16 * 1024;

/// How long a connection closed for a stalled stream has to get its GOAWAY out.
const GOAWAY_GRACE: Duration = Duration::from_secs(1);

/// The HTTP/2 settings of a listener.
#[derive(Debug, Clone, Copy)]
pub struct Http2Limits {
    /// SETTINGS_MAX_CONCURRENT_STREAMS.
    pub max_streams: u32,
    /// A PING after this long without a frame from the client.
    pub ping_interval: Duration,
    /// A PING unanswered for this long closes the connection.
    pub ping_timeout: Duration,
}

/// Bytes the detection read, for the HTTP/1.1 path to hand out first.
#[derive(Debug, Default)]
pub struct Replay {
    buf: [u8; PREFACE.len()],
    pos: u8,
    len: u8,
}

impl Replay {
    /// Copies what is left into `buf`; false when nothing was left (read the socket).
    #[inline]
    pub fn take_into(&mut self, buf: &mut ReadBuf<'_>) -> bool {
        if self.pos == self.len {
            return false;
        }
        let left = &self.buf[usize::from(self.pos)..usize::from(self.len)];
        let n = left.len().min(buf.remaining());
        buf.put_slice(&left[..n]);
        self.pos += n as u8;
        true
    }
}

/// What the first bytes of a connection said.
pub enum Opening {
    /// Not the HTTP/2 preface: these bytes, then the socket, are HTTP/1.1.
    Http1(Replay),
    /// The preface and the client's SETTINGS frame (or whatever came instead), all read.
    Http2(Vec<u8>),
    /// Closed, timed out or stopped before the protocol was known.
    Closed(&'static str),
}

/// Reads until the bytes differ from the preface or match all of it; then, for HTTP/2, the
/// frame after it, which must be SETTINGS (hyper rejects anything else). All before
/// `deadline`; a stop closes a connection that has sent nothing.
pub async fn detect(
    stream: &mut TcpStream,
    deadline: Instant,
    stopping: &CancellationToken,
) -> Opening {
    let mut replay = Replay::default();
    loop {
        let n = usize::from(replay.len);
        match read_some(stream, &mut replay.buf[n..], deadline, stopping, n == 0).await {
            Ok(got) => replay.len += got as u8,
            Err(why) => return Opening::Closed(why),
        }
        let n = usize::from(replay.len);
        if replay.buf[..n] != PREFACE[..n] {
            return Opening::Http1(replay);
        }
        if n == PREFACE.len() {
            break;
        }
    }
    let mut read = Vec::with_capacity(PREFACE.len() + 64);
    read.extend_from_slice(PREFACE);
    let mut chunk = [0u8; 4096];
    loop {
        let frame = &read[PREFACE.len()..];
        if frame.len() >= 9 {
            let length = u32::from_be_bytes([0, frame[0], frame[1], frame[2]]) as usize;
            let settings = frame[3] == 0x4;
            if !settings || length > MAX_FRAME as usize || frame.len() >= 9 + length {
                return Opening::Http2(read);
            }
        }
        match read_some(stream, &mut chunk, deadline, stopping, false).await {
            Ok(got) => read.extend_from_slice(&chunk[..got]),
            Err(why) => return Opening::Closed(why),
        }
    }
}

/// One non-empty read before `deadline`.
async fn read_some(
    stream: &mut TcpStream,
    buf: &mut [u8],
    deadline: Instant,
    stopping: &CancellationToken,
    close_on_stop: bool,
) -> Result<usize, &'static str> {
    loop {
        match stream.try_read(buf) {
            Ok(0) => return Err("closed by the client"),
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return Err("read error"),
        }
        tokio::select! {
            biased;
            ready = stream.readable() => {
                if ready.is_err() {
                    return Err("read error");
                }
            }
            _ = sleep_until(deadline) => return Err("no preface or request head within the header-read timeout"),
            _ = stopping.cancelled(), if close_on_stop => return Err("stopping"),
        }
    }
}

/// Microseconds since accept, plus one; 0 is "not set".
type Stamp = u64;
const UNSET: Stamp = 0;

/// What the connection task and its stream tasks share.
#[derive(Debug)]
struct State {
    accepted: Instant,
    /// Streams whose handler runs or whose response hyper still sends.
    open: AtomicU32,
    /// The connection's own slot is not used by a stream.
    base_free: AtomicBool,
    /// When the last stream ended; UNSET while one is open.
    idle_since: AtomicU64,
    /// When a socket write last returned `Pending` without progress since.
    blocked_since: AtomicU64,
    /// Each response's "data handed over at, not asked for again since" stamp.
    stalls: Mutex<Vec<Weak<AtomicU64>>>,
    /// `stalls` is pruned of ended streams when it reaches this length.
    stalls_cap: usize,
    /// A response said `Connection: close` (the instance drains): GOAWAY.
    leave: AtomicBool,
    /// The connection task, woken when `leave` is set.
    waker: AtomicWaker,
}

impl State {
    fn stamp(&self, now: Instant) -> Stamp {
        now.saturating_duration_since(self.accepted).as_micros() as u64 + 1
    }

    fn at(&self, stamp: Stamp) -> Instant {
        self.accepted + Duration::from_micros(stamp - 1)
    }

    /// The oldest stamp of a response waiting for the client's flow-control window.
    fn oldest_stall(&self) -> Option<Stamp> {
        let stalls = self.stalls.lock().unwrap_or_else(|e| e.into_inner());
        stalls
            .iter()
            .filter_map(|w| w.upgrade())
            .map(|s| s.load(Relaxed))
            .filter(|&s| s != UNSET)
            .min()
    }

    fn register(&self, waiting: &Arc<AtomicU64>) {
        let mut stalls = self.stalls.lock().unwrap_or_else(|e| e.into_inner());
        if stalls.len() >= self.stalls_cap {
            stalls.retain(|w| w.strong_count() > 0);
        }
        stalls.push(Arc::downgrade(waiting));
    }
}

/// One stream's claim: the connection's own slot, or one more of the listener's.
struct StreamGuard {
    state: Arc<State>,
    permit: Option<OwnedSemaphorePermit>,
}

impl StreamGuard {
    /// None when the stream would need a slot and none is free.
    fn start(state: &Arc<State>, slots: &Arc<Semaphore>) -> Option<Self> {
        let permit = if state.base_free.swap(false, SeqCst) {
            None
        } else {
            Some(slots.clone().try_acquire_owned().ok()?)
        };
        state.open.fetch_add(1, SeqCst);
        state.idle_since.store(UNSET, SeqCst);
        Some(Self {
            state: state.clone(),
            permit,
        })
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if self.permit.take().is_none() {
            self.state.base_free.store(true, SeqCst);
        }
        if self.state.open.fetch_sub(1, SeqCst) == 1 {
            let now = self.state.stamp(Instant::now());
            self.state.idle_since.store(now, SeqCst);
        }
    }
}

/// The answer to a stream that finds every slot taken; hyper sends it before the body is read.
const NO_SLOT: &str = "{\"type\":\"about:blank\",\"title\":\"Service Unavailable\",\"status\":503,\
\"detail\":\"every connection slot of this instance is in use; retry\"}";

fn no_slot() -> hyper::Response<PoemBody> {
    Response::builder()
        .status(StatusCode::SERVICE_UNAVAILABLE)
        .header(header::CONTENT_TYPE, "application/problem+json")
        .header(header::RETRY_AFTER, "1")
        .body(NO_SLOT)
        .into()
}

type PoemBody = http_body_util::combinators::BoxBody<Bytes, io::Error>;

/// Serves one HTTP/2 connection whose first bytes (`read`) the detection took.
pub async fn serve<E>(
    stream: TcpStream,
    read: Vec<u8>,
    (local, remote): (SocketAddr, SocketAddr),
    endpoint: Arc<E>,
    limits: ConnLimits,
    stopping: CancellationToken,
    slots: Arc<Semaphore>,
) where
    E: Endpoint<Output = Response> + 'static,
{
    let http2 = limits.http2.expect("served as HTTP/2 only when it is on");
    let state = Arc::new(State {
        accepted: Instant::now(),
        open: AtomicU32::new(0),
        base_free: AtomicBool::new(true),
        idle_since: AtomicU64::new(1),
        blocked_since: AtomicU64::new(UNSET),
        stalls: Mutex::new(Vec::new()),
        stalls_cap: 2 * http2.max_streams as usize + 16,
        leave: AtomicBool::new(false),
        waker: AtomicWaker::new(),
    });
    let io = TokioIo::new(Socket {
        inner: stream,
        side: Http2 {
            replay: Bytes::from(read),
            state: state.clone(),
        },
    });
    let (local, remote_addr) = (LocalAddr(local.into()), RemoteAddr(remote.into()));
    let service_state = state.clone();
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        let guard = StreamGuard::start(&service_state, &slots);
        // The pipeline checks requests by HTTP/1.1's rules, which require a Host header; an
        // HTTP/2 request carries the authority in `:authority`, which RFC 9113 §8.3.1 says a
        // translation to HTTP/1.1 copies into Host.
        if !req.headers().contains_key(header::HOST)
            && let Some(value) = req
                .uri()
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        {
            req.headers_mut().insert(header::HOST, value);
        }
        let req = poem::Request::from((req, local.clone(), remote_addr.clone(), Scheme::HTTP));
        let (endpoint, state) = (endpoint.clone(), service_state.clone());
        async move {
            let Some(guard) = guard else {
                return Ok::<_, io::Error>(no_slot().map(|body| H2Body::new(body, &state, None)));
            };
            let response: hyper::Response<_> = match endpoint.call(req).await {
                Ok(response) => response.into(),
                Err(err) => err.into_response().into(),
            };
            let close = response.headers().get(header::CONNECTION);
            if close.is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"))
                && !state.leave.swap(true, SeqCst)
            {
                state.waker.wake();
            }
            Ok(response.map(|body| H2Body::new(body, &state, Some(guard))))
        }
    });
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.header_limit).unwrap_or(u32::MAX))
        .max_concurrent_streams(http2.max_streams)
        .initial_stream_window_size(WINDOW)
        .initial_connection_window_size(WINDOW)
        .max_frame_size(MAX_FRAME)
        .max_send_buf_size(SEND_BUFFER)
        .keep_alive_interval(http2.ping_interval)
        .keep_alive_timeout(http2.ping_timeout)
        .max_pending_accept_reset_streams(MAX_PENDING_ACCEPT_RESETS)
        .max_local_error_reset_streams(MAX_LOCAL_ERROR_RESETS);
    let conn = builder.serve_connection(io, service);
    let timeouts = limits.timeouts;
    let tick = (timeouts.send.min(timeouts.keep_alive) / 4)
        .clamp(Duration::from_millis(10), Duration::from_secs(1));
    let connection = H2Connection {
        conn: Box::pin(conn),
        state,
        timeouts,
        tick,
        timer: Box::pin(sleep_until(Instant::now() + tick)),
        closing: None,
        left: false,
        stopping: Some(Box::pin(stopping.cancelled_owned())),
    };
    match connection.await {
        Ok(()) => {}
        Err(Closed::Expired(expiry)) => {
            tracing::debug!(%remote, ?expiry, "HTTP/2 connection deadline passed; closed");
        }
        Err(Closed::Error(err)) => {
            tracing::debug!(%remote, error = %err, "HTTP/2 connection ended with an error");
        }
    }
}

/// Why a deadline closes an HTTP/2 connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// The socket accepted no byte within the send timeout.
    SlowReader,
    /// A stream's response data waited for the client's flow-control window longer than the
    /// send timeout.
    StalledStream,
    /// No stream open for the keep-alive timeout.
    Idle,
}

enum Closed {
    Expired(Expiry),
    Error(hyper::Error),
}

/// What the tick decided.
enum Verdict {
    /// Check again then.
    At(Instant),
    /// Close now.
    Close(Expiry),
    /// Send GOAWAY and close once the streams are done, at the latest after the grace.
    GoAway(Expiry, Duration),
}

struct H2Connection<C> {
    conn: Pin<Box<C>>,
    state: Arc<State>,
    timeouts: Timeouts,
    tick: Duration,
    timer: Pin<Box<Sleep>>,
    /// A close was asked for (GOAWAY sent): the connection ends by then regardless.
    closing: Option<(Instant, Expiry)>,
    /// GOAWAY sent for the drain.
    left: bool,
    stopping: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
}

impl<C> H2Connection<C> {
    fn verdict(&self, now: Instant) -> Verdict {
        let state = &self.state;
        let t = &self.timeouts;
        let mut next = now + self.tick;
        if let Some((at, expiry)) = self.closing {
            if now >= at {
                return Verdict::Close(expiry);
            }
            next = next.min(at);
        }
        let blocked = state.blocked_since.load(Relaxed);
        if blocked != UNSET {
            let at = state.at(blocked) + t.send;
            if now >= at {
                return Verdict::Close(Expiry::SlowReader);
            }
            next = next.min(at);
        }
        if self.closing.is_none() {
            if let Some(stall) = state.oldest_stall() {
                let at = state.at(stall) + t.send;
                if now >= at {
                    return Verdict::GoAway(Expiry::StalledStream, GOAWAY_GRACE);
                }
                next = next.min(at);
            }
            let idle = state.idle_since.load(SeqCst);
            if state.open.load(SeqCst) == 0 && idle != UNSET {
                let at = state.at(idle) + t.keep_alive;
                if now >= at {
                    return Verdict::GoAway(Expiry::Idle, t.header_read);
                }
                next = next.min(at);
            }
        }
        Verdict::At(next.max(now + Duration::from_millis(1)))
    }
}

impl<I, S, B> Future for H2Connection<http2::Connection<I, S, TokioExecutor>>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Output = Result<(), Closed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Poll::Ready(result) = this.conn.as_mut().poll(cx) {
            return Poll::Ready(result.map_err(Closed::Error));
        }
        if !this.left {
            this.state.waker.register(cx.waker());
            if this.state.leave.load(SeqCst) {
                this.left = true;
                this.conn.as_mut().graceful_shutdown();
                if let Poll::Ready(result) = this.conn.as_mut().poll(cx) {
                    return Poll::Ready(result.map_err(Closed::Error));
                }
            }
        }
        if let Some(stopping) = &mut this.stopping
            && stopping.as_mut().poll(cx).is_ready()
        {
            this.stopping = None;
            // GOAWAY: streams already open finish, then hyper closes.
            this.conn.as_mut().graceful_shutdown();
            if let Poll::Ready(result) = this.conn.as_mut().poll(cx) {
                return Poll::Ready(result.map_err(Closed::Error));
            }
        }
        loop {
            ready!(this.timer.as_mut().poll(cx));
            let now = Instant::now();
            match this.verdict(now) {
                Verdict::At(at) => this.timer.as_mut().reset(at),
                Verdict::Close(expiry) => return Poll::Ready(Err(Closed::Expired(expiry))),
                Verdict::GoAway(expiry, grace) => {
                    this.closing = Some((now + grace, expiry));
                    this.conn.as_mut().graceful_shutdown();
                    if let Poll::Ready(result) = this.conn.as_mut().poll(cx) {
                        return Poll::Ready(result.map_err(Closed::Error));
                    }
                    this.timer.as_mut().reset(now + grace);
                }
            }
        }
    }
}

/// What the HTTP/2 path keeps beside the socket: the detection's bytes, handed out first, and
/// the state whose send clock writes report to.
struct Http2 {
    replay: Bytes,
    state: Arc<State>,
}

impl AsyncRead for Socket<Http2> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let Socket { inner, side } = self.get_mut();
        if !side.replay.is_empty() {
            let n = side.replay.len().min(buf.remaining());
            buf.put_slice(&side.replay[..n]);
            side.replay.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(inner).poll_read(cx, buf)
    }
}

impl SendClock for Http2 {
    fn written(&self, poll: &Poll<io::Result<usize>>) {
        let blocked = &self.state.blocked_since;
        match poll {
            Poll::Pending if blocked.load(Relaxed) == UNSET => {
                blocked.store(self.state.stamp(Instant::now()), Relaxed);
            }
            Poll::Ready(Ok(n)) if *n > 0 && blocked.load(Relaxed) != UNSET => {
                blocked.store(UNSET, Relaxed);
            }
            _ => {}
        }
    }
}

/// A response body handed to hyper in pieces of at most [`PIECE`], with the end of the stream
/// reported only when hyper asks after the last piece: hyper asks for the next piece once the
/// client's window lets the previous one out, so the time between handing a piece over and the
/// next ask is the time the stream waits for the client's WINDOW_UPDATE. Holds the stream's
/// slot until hyper drops it.
struct H2Body {
    inner: PoemBody,
    rest: Bytes,
    waiting: Arc<AtomicU64>,
    state: Arc<State>,
    yielded: bool,
    done: bool,
    _guard: Option<StreamGuard>,
}

impl H2Body {
    fn new(inner: PoemBody, state: &Arc<State>, guard: Option<StreamGuard>) -> Self {
        let waiting = Arc::new(AtomicU64::new(UNSET));
        state.register(&waiting);
        Self {
            inner,
            rest: Bytes::new(),
            waiting,
            state: state.clone(),
            yielded: false,
            done: false,
            _guard: guard,
        }
    }

    fn hand_over(&mut self, mut data: Bytes) -> Frame<Bytes> {
        if data.len() > PIECE {
            self.rest = data.split_off(PIECE);
        }
        self.yielded = true;
        let now = self.state.stamp(Instant::now());
        self.waiting.store(now, Relaxed);
        Frame::data(data)
    }
}

impl Body for H2Body {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        this.waiting.store(UNSET, Relaxed);
        if !this.rest.is_empty() {
            let rest = std::mem::take(&mut this.rest);
            return Poll::Ready(Some(Ok(this.hand_over(rest))));
        }
        if this.done {
            return Poll::Ready(None);
        }
        match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => Poll::Ready(Some(Ok(this.hand_over(data)))),
                Err(frame) => Poll::Ready(Some(Ok(frame))),
            },
            Some(Err(err)) => Poll::Ready(Some(Err(err))),
            None => {
                this.done = true;
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        // Before any data: an empty body ends with the headers (204, 304, HEAD).
        self.done || (!self.yielded && self.rest.is_empty() && self.inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        // Read by hyper before the first piece, for content-length.
        if self.yielded {
            SizeHint::default()
        } else {
            self.inner.size_hint()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_http1_method_differs_from_the_preface_by_its_second_byte() {
        for method in [
            "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
        ] {
            let differs = method
                .bytes()
                .zip(PREFACE.iter())
                .position(|(a, &b)| a != b);
            assert!(matches!(differs, Some(0 | 1)), "{method}");
        }
    }

    fn state() -> Arc<State> {
        Arc::new(State {
            accepted: Instant::now(),
            open: AtomicU32::new(0),
            base_free: AtomicBool::new(true),
            idle_since: AtomicU64::new(1),
            blocked_since: AtomicU64::new(UNSET),
            stalls: Mutex::new(Vec::new()),
            stalls_cap: 8,
            leave: AtomicBool::new(false),
            waker: AtomicWaker::new(),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_goes_out_in_pieces_and_its_end_only_when_asked_again() {
        use http_body_util::{BodyExt, Full};
        let state = state();
        let inner = Full::new(Bytes::from(vec![7u8; 40 * 1024]))
            .map_err(|never| match never {})
            .boxed();
        let mut body = H2Body::new(inner, &state, None);
        assert_eq!(
            body.size_hint().exact(),
            Some(40 * 1024),
            "content-length still known"
        );
        let mut sizes = Vec::new();
        while let Some(frame) = body.frame().await {
            let data = frame.unwrap().into_data().unwrap();
            sizes.push(data.len());
            assert!(!body.is_end_stream(), "the end waits for the next ask");
            assert!(
                state.oldest_stall().is_some(),
                "a piece handed over waits for an ask"
            );
            tokio::time::advance(Duration::from_millis(5)).await;
        }
        assert_eq!(sizes, [PIECE, PIECE, 8 * 1024]);
        assert!(body.is_end_stream());
        assert_eq!(state.oldest_stall(), None, "asked again: nothing waits");
    }

    #[tokio::test(start_paused = true)]
    async fn an_empty_body_ends_with_the_headers() {
        use http_body_util::{BodyExt, Empty};
        let state = state();
        let inner = Empty::<Bytes>::new()
            .map_err(|never| match never {})
            .boxed();
        assert!(H2Body::new(inner, &state, None).is_end_stream());
    }

    #[tokio::test(start_paused = true)]
    async fn streams_beyond_the_first_take_a_slot_and_give_it_back() {
        let state = state();
        let slots = Arc::new(Semaphore::new(1));
        let first = StreamGuard::start(&state, &slots).expect("the connection's own slot");
        let second = StreamGuard::start(&state, &slots).expect("the free slot");
        assert!(StreamGuard::start(&state, &slots).is_none(), "no slot left");
        drop(second);
        let third = StreamGuard::start(&state, &slots).expect("the slot came back");
        drop((first, third));
        assert_eq!(state.open.load(SeqCst), 0);
        assert_ne!(
            state.idle_since.load(SeqCst),
            UNSET,
            "idle from the last stream's end"
        );
        assert_eq!(slots.available_permits(), 1);
        assert!(state.base_free.load(SeqCst));
    }

    #[test]
    fn replayed_bytes_come_first_then_the_socket() {
        let mut replay = Replay {
            buf: *PREFACE,
            pos: 0,
            len: 3,
        };
        let mut storage = [0u8; 2];
        let mut buf = ReadBuf::new(&mut storage);
        assert!(replay.take_into(&mut buf));
        assert_eq!(buf.filled(), b"PR");
        let mut storage = [0u8; 8];
        let mut buf = ReadBuf::new(&mut storage);
        assert!(replay.take_into(&mut buf));
        assert_eq!(buf.filled(), b"I");
        assert!(!replay.take_into(&mut buf), "then nothing is left");
    }
}
