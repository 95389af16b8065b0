//! HTTP/2 by prior knowledge on the API port, against the real binary: served beside HTTP/1.1,
//! with the protections of the HTTP/1.1 path (header list, stream bound, body limit, the
//! header-read and idle clocks, rapid reset, a stalled flow-control window, graceful stop).
//!
//! Well-behaved exchanges use the `h2` crate's client; the misbehaving ones write frames by hand
//! (RFC 9113 §4, §6) over a raw socket, with a minimal HPACK encoder (literal fields only).

use std::{
    io::{ErrorKind, Read, Write},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use bytes::Bytes;
use poem::http::{HeaderMap, Method, Request, StatusCode};

use crate::support::{Instance, connect, get};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;

const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;
const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
const SETTINGS_MAX_HEADER_LIST_SIZE: u16 = 0x6;

const ENHANCE_YOUR_CALM: u32 = 0xb;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = len.to_be_bytes()[1..].to_vec();
    f.extend([kind, flags]);
    f.extend(stream.to_be_bytes());
    f.extend(payload);
    f
}

fn settings(values: &[(u16, u32)]) -> Vec<u8> {
    let payload: Vec<u8> = values
        .iter()
        .flat_map(|(id, v)| id.to_be_bytes().into_iter().chain(v.to_be_bytes()))
        .collect();
    frame(SETTINGS, 0, 0, &payload)
}

/// An HPACK integer with an `n`-bit prefix after the `flags` bits (RFC 7541 §5.1).
fn hpack_int(flags: u8, n: u32, mut value: usize, out: &mut Vec<u8>) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128 + 128) as u8);
        value /= 128;
    }
    out.push(value as u8);
}

fn hpack_string(s: &[u8], out: &mut Vec<u8>) {
    hpack_int(0, 7, s.len(), out);
    out.extend(s);
}

/// A header block of literal fields without indexing, new names (RFC 7541 §6.2.2).
fn header_block(method: &str, path: &str, extra: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    let fields: [(&str, &[u8]); 4] = [
        (":method", method.as_bytes()),
        (":scheme", b"http"),
        (":path", path.as_bytes()),
        (":authority", b"127.0.0.1"),
    ];
    for (name, value) in fields.iter().chain(extra) {
        out.push(0);
        hpack_string(name.as_bytes(), &mut out);
        hpack_string(value, &mut out);
    }
    out
}

/// A raw HTTP/2 client connection: preface and `settings` sent.
struct Raw {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    fn open(addr: SocketAddr, own_settings: &[(u16, u32)]) -> Self {
        let mut s = connect(addr, Duration::from_secs(10));
        let mut hello = PREFACE.to_vec();
        hello.extend(settings(own_settings));
        s.write_all(&hello).unwrap();
        Self { s, buf: Vec::new() }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).unwrap();
    }

    /// The next frame (kind, flags, stream, payload); None once the server closed.
    fn next(&mut self, deadline: Instant) -> Option<(u8, u8, u32, Vec<u8>)> {
        loop {
            if self.buf.len() >= 9 {
                let len = u32::from_be_bytes([0, self.buf[0], self.buf[1], self.buf[2]]) as usize;
                if self.buf.len() >= 9 + len {
                    let f: Vec<u8> = self.buf.drain(..9 + len).collect();
                    let stream = u32::from_be_bytes([f[5], f[6], f[7], f[8]]) & 0x7fff_ffff;
                    return Some((f[3], f[4], stream, f[9..].to_vec()));
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no frame and no close before the deadline");
            self.s.set_read_timeout(Some(left)).unwrap();
            let mut chunk = [0u8; 65536];
            match self.s.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return None,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    panic!("no frame and no close before the deadline")
                }
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    /// Frames until the server closes, answering its PINGs; at most until `deadline`.
    fn until_closed(&mut self, deadline: Instant) -> Vec<(u8, u8, u32, Vec<u8>)> {
        let mut seen = Vec::new();
        while let Some(f) = self.next(deadline) {
            if f.0 == PING && f.1 & ACK == 0 {
                let pong = frame(PING, ACK, 0, &f.3);
                let _ = self.s.write_all(&pong);
            }
            seen.push(f);
        }
        seen
    }
}

fn goaway_code(frames: &[(u8, u8, u32, Vec<u8>)]) -> Option<u32> {
    frames
        .iter()
        .rfind(|f| f.0 == GOAWAY)
        .map(|f| u32::from_be_bytes([f.3[4], f.3[5], f.3[6], f.3[7]]))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A well-behaved client: one connection, requests sent one after another or at once.
async fn client(addr: SocketAddr) -> h2::client::SendRequest<Bytes> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (send, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    send
}

/// Sends one request and reads its whole response.
async fn call(
    send: &mut h2::client::SendRequest<Bytes>,
    method: Method,
    path: &str,
    body: Option<Bytes>,
) -> (StatusCode, HeaderMap, Vec<u8>) {
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://127.0.0.1{path}"));
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let mut send = send.clone().ready().await.unwrap();
    let (response, mut stream) = send
        .send_request(req.body(()).unwrap(), body.is_none())
        .unwrap();
    if let Some(body) = body {
        stream.send_data(body, true).unwrap();
    }
    let response = tokio::time::timeout(Duration::from_secs(10), response)
        .await
        .expect("a response within 10 s")
        .unwrap();
    let (head, mut body) = response.into_parts();
    let mut bytes = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        body.flow_control().release_capacity(chunk.len()).unwrap();
        bytes.extend_from_slice(&chunk);
    }
    (head.status, head.headers, bytes)
}

#[test]
fn get_and_post_by_prior_knowledge_are_served_and_http1_still_works_on_the_same_port() {
    // Arrange
    let instance = Instance::start(&[]);
    let rt = runtime();

    // Act
    let (root, echo) = rt.block_on(async {
        let mut send = client(instance.api).await;
        let root = call(&mut send, Method::GET, "/", None).await;
        let body = Bytes::from_static(br#"{"message":"over h2","count":2}"#);
        let echo = call(&mut send, Method::POST, "/api/v1/echo", Some(body)).await;
        (root, echo)
    });
    let http1 = get(instance.api, "/", Duration::from_secs(5)).unwrap();

    // Assert
    assert_eq!(root.0, StatusCode::OK);
    let info: serde_json::Value = serde_json::from_slice(&root.2).unwrap();
    assert_eq!(info["name"], "poem-api");
    assert!(root.1.contains_key("x-request-id"));
    assert_eq!(
        echo.0,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&echo.2)
    );
    let echoed: serde_json::Value = serde_json::from_slice(&echo.2).unwrap();
    assert_eq!(echoed["message"], "over h2");
    assert_eq!(echoed["count"], 2);
    assert_eq!(http1.status, 200);
    assert_eq!(http1.json()["name"], "poem-api");
    let logged = instance.wait_event(Duration::from_secs(5), |e| {
        e["message"] == "request" && e["route"] == "/api/v1/echo" && e["status"] == 200
    });
    assert!(
        logged.is_some(),
        "the HTTP/2 request passed the pipeline's access log"
    );
}

#[test]
fn with_http2_off_the_preface_is_answered_as_http1_not_as_http2() {
    let instance = Instance::start(&[("POEM_API_HTTP2", "false")]);
    let mut raw = Raw::open(instance.api, &[]);

    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut chunk = [0u8; 4096];
        raw.s
            .set_read_timeout(Some(deadline.saturating_duration_since(Instant::now())))
            .unwrap();
        match raw.s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.extend_from_slice(&chunk[..n]),
        }
    }

    // hyper's HTTP/1.1 server closes on a preface without answering; above all, no SETTINGS.
    assert!(seen.is_empty(), "{:?}", String::from_utf8_lossy(&seen));
}

#[test]
fn the_server_settings_advertise_the_stream_bound_and_the_header_list_limit() {
    let instance = Instance::start(&[
        ("POEM_API_HTTP2_MAX_STREAMS", "7"),
        ("POEM_API_HEADER_LIMIT", "12KiB"),
    ]);
    let mut raw = Raw::open(instance.api, &[]);

    let (kind, flags, stream, payload) = raw.next(Instant::now() + Duration::from_secs(5)).unwrap();

    assert_eq!(
        (kind, flags, stream),
        (SETTINGS, 0, 0),
        "the server's first frame"
    );
    let values: Vec<(u16, u32)> = payload
        .chunks(6)
        .map(|c| {
            let id = u16::from_be_bytes([c[0], c[1]]);
            (id, u32::from_be_bytes([c[2], c[3], c[4], c[5]]))
        })
        .collect();
    assert!(
        values.contains(&(SETTINGS_MAX_CONCURRENT_STREAMS, 7)),
        "{values:?}"
    );
    assert!(
        values.contains(&(SETTINGS_MAX_HEADER_LIST_SIZE, 12 * 1024)),
        "{values:?}"
    );
}

#[test]
fn a_header_list_over_the_limit_is_refused_and_the_next_request_is_served() {
    let instance = Instance::start(&[("POEM_API_HEADER_LIMIT", "4KiB")]);
    let mut raw = Raw::open(instance.api, &[]);
    let big = vec![b'a'; 6000];
    let block = header_block("GET", "/", &[("x-pad", &big)]);
    raw.send(&frame(HEADERS, END_STREAM | END_HEADERS, 1, &block));
    let small = header_block("GET", "/", &[]);
    raw.send(&frame(HEADERS, END_STREAM | END_HEADERS, 3, &small));

    let deadline = Instant::now() + Duration::from_secs(5);
    let mut first = None;
    let mut second = None;
    while first.is_none() || second.is_none() {
        let Some((kind, _, stream, payload)) = raw.next(deadline) else {
            break;
        };
        match (kind, stream) {
            // `:status 431` is a literal (not in the static table); 200 is index 8 (0x88).
            (HEADERS, 1) => first = Some(payload),
            (RST_STREAM, 1) => first = Some(b"reset".to_vec()),
            (HEADERS, 3) => second = Some(payload),
            _ => {}
        }
    }

    let first = first.expect("the oversized request got neither a response nor a reset");
    // `:status` by its static index (8), "431" Huffman-coded (RFC 7541 Appendix B):
    // 011010 011001 00001 + padding = 69 90 ff.
    assert!(
        first == b"reset" || first.ends_with(&[0x83, 0x69, 0x90, 0xff]),
        "not a 431: {first:?}"
    );
    assert_eq!(second.expect("the next request got no response")[0], 0x88);
}

#[test]
fn a_body_over_the_limit_gets_413_over_http2() {
    let instance = Instance::start(&[("POEM_API_BODY_LIMIT", "16KiB")]);
    let rt = runtime();

    let (status, headers, body) = rt.block_on(async {
        let mut send = client(instance.api).await;
        let pad = "a".repeat(40 * 1024);
        let body = Bytes::from(format!(r#"{{"message":"x","pad":"{pad}"}}"#));
        call(&mut send, Method::POST, "/api/v1/echo", Some(body)).await
    });

    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/problem+json")
    );
    let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(problem["status"], 413);
}

#[test]
fn streams_beyond_the_free_connection_slots_are_answered_503() {
    // Three slots: the connection's own, the one the accept loop holds for the next
    // connection, and one more; so of three streams at once, the third finds none.
    let instance = Instance::start(&[("POEM_API_MAX_CONNECTIONS", "3")]);
    let rt = runtime();

    let statuses = rt.block_on(async {
        let send = client(instance.api).await;
        let calls = (0..3).map(|_| {
            let mut send = send.clone();
            async move {
                call(&mut send, Method::GET, "/api/v1/delay/1000", None)
                    .await
                    .0
            }
        });
        futures_util::future::join_all(calls).await
    });

    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::SERVICE_UNAVAILABLE)
        .count();
    assert_eq!((ok, refused), (2, 1), "{statuses:?}");
}

#[test]
fn a_connection_that_sends_only_the_preface_is_closed_at_the_header_read_timeout() {
    let instance = Instance::start(&[
        ("POEM_API_HEADER_READ_TIMEOUT", "1s"),
        ("POEM_API_KEEP_ALIVE_TIMEOUT", "30s"),
    ]);
    let mut s = connect(instance.api, Duration::from_secs(10));
    s.write_all(PREFACE).unwrap();
    let started = Instant::now();

    let closed = crate::support::time_to_close(&mut s, Duration::from_secs(6));

    let closed = closed.expect("still open 6 s after the preface (header-read timeout 1 s)");
    assert!(
        closed >= Duration::from_millis(800),
        "closed after {closed:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(6));
}

#[test]
fn an_idle_http2_connection_gets_goaway_and_is_closed_after_the_keep_alive_timeout() {
    let instance = Instance::start(&[
        ("POEM_API_HEADER_READ_TIMEOUT", "1s"),
        ("POEM_API_KEEP_ALIVE_TIMEOUT", "2s"),
    ]);
    let mut raw = Raw::open(instance.api, &[]);
    raw.send(&frame(
        HEADERS,
        END_STREAM | END_HEADERS,
        1,
        &header_block("GET", "/", &[]),
    ));
    let started = Instant::now();

    let frames = raw.until_closed(started + Duration::from_secs(10));

    let took = started.elapsed();
    assert!(
        frames.iter().any(|f| f.0 == HEADERS && f.2 == 1),
        "the request was answered"
    );
    assert_eq!(
        goaway_code(&frames),
        Some(0),
        "GOAWAY NO_ERROR before the close"
    );
    assert!(
        took >= Duration::from_millis(1800),
        "closed after {took:?}, before the keep-alive timeout (2 s): the header-read timeout \
         (1 s) cut an idle connection"
    );
}

#[test]
fn rapid_reset_gets_goaway_while_another_client_is_served() {
    let instance = Instance::start(&[("POEM_API_ACCESS_LOG", "false")]);
    let mut raw = Raw::open(instance.api, &[]);
    let block = header_block("GET", "/api/v1/delay/100", &[]);
    let mut burst = Vec::new();
    for i in 0..2000u32 {
        let id = 2 * i + 1;
        burst.extend(frame(HEADERS, END_STREAM | END_HEADERS, id, &block));
        burst.extend(frame(RST_STREAM, 0, id, &8u32.to_be_bytes())); // CANCEL
    }
    // The server may close before taking it all.
    let _ = raw.s.write_all(&burst);

    let frames = raw.until_closed(Instant::now() + Duration::from_secs(10));
    let other = get(instance.api, "/", Duration::from_secs(5)).unwrap();

    assert_eq!(goaway_code(&frames), Some(ENHANCE_YOUR_CALM));
    assert_eq!(other.status, 200);
}

#[test]
fn a_stream_whose_window_stays_closed_gets_its_connection_closed_after_the_send_timeout() {
    let instance = Instance::start(&[
        ("POEM_API_SEND_TIMEOUT", "2s"),
        ("POEM_API_KEEP_ALIVE_TIMEOUT", "60s"),
    ]);
    // A window of 0: the server may send headers, no data, until a WINDOW_UPDATE that never
    // comes.
    let mut raw = Raw::open(instance.api, &[(SETTINGS_INITIAL_WINDOW_SIZE, 0)]);
    raw.send(&frame(
        HEADERS,
        END_STREAM | END_HEADERS,
        1,
        &header_block("GET", "/docs", &[]),
    ));
    let started = Instant::now();

    let frames = raw.until_closed(started + Duration::from_secs(15));

    let took = started.elapsed();
    assert!(
        frames.iter().any(|f| f.0 == HEADERS && f.2 == 1),
        "the response headers came"
    );
    assert!(
        !frames.iter().any(|f| f.0 == DATA && !f.3.is_empty()),
        "data was sent with a window of 0"
    );
    assert!(goaway_code(&frames).is_some(), "GOAWAY before the close");
    assert!(
        took >= Duration::from_millis(1800) && took < Duration::from_secs(8),
        "closed after {took:?} (send timeout 2 s)"
    );
}

#[test]
fn a_stream_in_flight_at_sigterm_completes_and_the_client_sees_goaway() {
    let mut instance = Instance::start(&[
        ("POEM_API_DRAIN_DELAY", "0s"),
        ("POEM_API_SHUTDOWN_TIMEOUT", "10s"),
    ]);
    let mut raw = Raw::open(instance.api, &[]);
    let block = header_block("GET", "/api/v1/delay/1000", &[]);
    raw.send(&frame(HEADERS, END_STREAM | END_HEADERS, 1, &block));
    // Give the request time to reach the handler.
    assert!(
        instance
            .wait_event(Duration::from_secs(5), |_| true)
            .is_some()
    );
    std::thread::sleep(Duration::from_millis(300));
    instance.signal(libc::SIGTERM);

    let frames = raw.until_closed(Instant::now() + Duration::from_secs(10));
    let exit = instance.wait(Duration::from_secs(10));

    let goaway = frames.iter().position(|f| f.0 == GOAWAY);
    let answer = frames.iter().position(|f| f.0 == HEADERS && f.2 == 1);
    let end = frames
        .iter()
        .position(|f| f.2 == 1 && f.1 & END_STREAM != 0);
    assert!(goaway.is_some(), "no GOAWAY: {:?}", kinds(&frames));
    assert_eq!(
        frames[answer.expect("no response to the request in flight")].3[0],
        0x88,
        "not :status 200"
    );
    assert!(
        end.is_some(),
        "the response did not end: {:?}",
        kinds(&frames)
    );
    assert!(
        goaway < end,
        "GOAWAY came after the response: {:?}",
        kinds(&frames)
    );
    let (status, _) = exit.expect("exited within 10 s");
    assert_eq!(status.code(), Some(0));
}

fn kinds(frames: &[(u8, u8, u32, Vec<u8>)]) -> Vec<(u8, u8, u32)> {
    frames.iter().map(|f| (f.0, f.1, f.2)).collect()
}

#[test]
fn while_draining_a_response_is_followed_by_goaway_and_a_new_connection_is_served() {
    let instance = Instance::start(&[
        ("POEM_API_DRAIN_DELAY", "5s"),
        ("POEM_API_SHUTDOWN_TIMEOUT", "5s"),
    ]);
    let mut raw = Raw::open(instance.api, &[]);
    raw.send(&frame(
        HEADERS,
        END_STREAM | END_HEADERS,
        1,
        &header_block("GET", "/", &[]),
    ));
    let deadline = Instant::now() + Duration::from_secs(5);
    while raw
        .next(deadline)
        .is_some_and(|f| !(f.2 == 1 && f.1 & END_STREAM != 0))
    {}
    instance.signal(libc::SIGTERM);
    assert!(
        instance
            .wait_event(Duration::from_secs(5), |e| e["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("draining")))
            .is_some()
    );

    raw.send(&frame(
        HEADERS,
        END_STREAM | END_HEADERS,
        3,
        &header_block("GET", "/", &[]),
    ));
    let frames = raw.until_closed(Instant::now() + Duration::from_secs(4));
    let next = get(instance.api, "/", Duration::from_secs(3)).unwrap();

    let answer = frames.iter().position(|f| f.0 == HEADERS && f.2 == 3);
    assert_eq!(frames[answer.expect("the request was answered")].3[0], 0x88);
    assert!(
        frames.iter().any(|f| f.0 == GOAWAY),
        "no GOAWAY while draining: {:?}",
        kinds(&frames)
    );
    assert_eq!(next.status, 200, "a new connection during the drain");
}
