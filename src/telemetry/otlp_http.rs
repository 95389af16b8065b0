//! The OTLP exporter's HTTP transport: one blocking HTTP/1.1 POST per export, over
//! `std::net`, on the batch processor's own thread.
//!
//! Why not the exporter's built-in reqwest client: reqwest enables hyper's `client` feature,
//! and Cargo unifies features, so the server's own hyper is compiled with its client role too.
//! That alone cost the server up to 1.8 % more instructions per request with tracing off
//! (`bench/instructions --connections 1`, README "Tracing"), and reqwest's blocking client runs a
//! runtime of its own on a thread of its own, to send a few exports a second. OTLP/HTTP needs
//! one request shape: POST a protobuf body, read the status.
//!
//! Each export opens a connection and asks the collector to close it (`connection: close`): an
//! export leaves at most every `OTEL_BSP_SCHEDULE_DELAY` or 512 spans, so a connection per
//! export costs nothing measurable, and no stale kept-alive connection needs handling. Only
//! `http://` is supported (`config::otlp_endpoint` refuses https).

use std::{
    io::{self, Read, Write},
    net::{TcpStream, ToSocketAddrs},
    sync::Mutex,
    time::{Duration, Instant},
};

use bytes::Bytes;
use opentelemetry_http::{HttpClient, HttpError, Request, Response};

/// The OTLP specification's default export timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The most of a collector's answer that is read (the exporter's built-in clients use 4 MiB).
const MAX_ANSWER: usize = 4 * 1024 * 1024;

/// Why the last export could not be sent; the exporter reduces every transport error to
/// "network error", so the failure log line takes the cause from here.
static LAST_CAUSE: Mutex<String> = Mutex::new(String::new());

/// The cause of the last failed send, if any.
pub fn last_cause() -> String {
    LAST_CAUSE
        .lock()
        .map(|c| c.clone())
        .unwrap_or_else(|e| e.into_inner().clone())
}

/// A blocking OTLP/HTTP client with the exporter's timeout for the whole exchange.
#[derive(Debug)]
pub struct OtlpHttp {
    timeout: Duration,
}

impl OtlpHttp {
    /// The timeout is `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`, else `OTEL_EXPORTER_OTLP_TIMEOUT`
    /// (milliseconds), else 10 s: the variables the exporter reads for its own clients.
    pub fn from_env() -> Self {
        let millis = |name: &str| std::env::var(name).ok()?.trim().parse::<u64>().ok();
        let timeout = millis("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT")
            .or_else(|| millis("OTEL_EXPORTER_OTLP_TIMEOUT"))
            .map_or(DEFAULT_TIMEOUT, Duration::from_millis);
        Self {
            timeout: timeout.max(Duration::from_millis(1)),
        }
    }

    fn send(&self, request: &Request<Bytes>) -> io::Result<Response<Bytes>> {
        let deadline = Instant::now() + self.timeout;
        let uri = request.uri();
        let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_owned());
        if uri.scheme_str() != Some("http") {
            return Err(invalid("only http:// collectors are supported"));
        }
        let host = uri.host().ok_or_else(|| invalid("the URL has no host"))?;
        let port = uri.port_u16().unwrap_or(80);
        let authority = uri.authority().map_or(host, |a| a.as_str());
        let path = uri.path_and_query().map_or("/", |p| p.as_str());

        let mut stream = connect((host.trim_matches(['[', ']']), port), deadline)?;
        let body = request.body();
        let mut head = format!(
            "{} {path} HTTP/1.1\r\nhost: {authority}\r\nconnection: close\r\ncontent-length: {}\r\n",
            request.method(),
            body.len()
        );
        for (name, value) in request.headers() {
            if let Ok(value) = value.to_str() {
                head += &format!("{name}: {value}\r\n");
            }
        }
        head += "\r\n";
        // One buffer, so that a small export leaves in one segment (TCP_NODELAY is on).
        let mut message = head.into_bytes();
        message.extend_from_slice(body);
        stream.set_write_timeout(Some(left(deadline)?))?;
        stream.write_all(&message)?;
        read_answer(&mut stream, deadline)
    }
}

#[async_trait::async_trait]
impl HttpClient for OtlpHttp {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        // Blocking is right here: the batch processor calls this on its own thread.
        self.send(&request).map_err(|err| {
            if let Ok(mut cause) = LAST_CAUSE.lock() {
                *cause = err.to_string();
            }
            HttpError::from(err)
        })
    }
}

fn left(deadline: Instant) -> io::Result<Duration> {
    match deadline.checked_duration_since(Instant::now()) {
        Some(d) if !d.is_zero() => Ok(d),
        _ => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the export timed out",
        )),
    }
}

fn connect(addr: (&str, u16), deadline: Instant) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the host has no address");
    for addr in addr.to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, left(deadline)?) {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(err) => last = err,
        }
    }
    Err(last)
}

/// Reads the answer: its head, then a body of `content-length` bytes, or up to the end of a
/// chunked body, or up to the end of the connection.
fn read_answer(stream: &mut TcpStream, deadline: Instant) -> io::Result<Response<Bytes>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 8192];
    let mut parsed: Option<(Response<Bytes>, usize, Framing)> = None;
    loop {
        if let Some((_, head_len, framing)) = &parsed {
            let body = &buf[*head_len..];
            let done = match framing {
                Framing::Length(n) => body.len() >= *n,
                Framing::Chunked => body.ends_with(b"0\r\n\r\n"),
                Framing::Close => false,
            };
            if done {
                break;
            }
        }
        if buf.len() > MAX_ANSWER {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "answer too large",
            ));
        }
        stream.set_read_timeout(Some(left(deadline)?))?;
        let n = match stream.read(&mut chunk) {
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the export timed out",
                ));
            }
            Err(err) => return Err(err),
        };
        if n == 0 {
            if matches!(parsed, Some((_, _, Framing::Close))) {
                break;
            }
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the collector closed the connection before its answer ended",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        if parsed.is_none() {
            parsed = parse_head(&buf)?;
        }
    }
    let (mut response, head_len, framing) = parsed.expect("the loop ends after the head");
    let body = &buf[head_len..];
    *response.body_mut() = match framing {
        Framing::Length(n) => Bytes::copy_from_slice(&body[..n]),
        // The exporter uses only the status and headers; a chunked body is not decoded.
        Framing::Chunked => Bytes::new(),
        Framing::Close => Bytes::copy_from_slice(body),
    };
    Ok(response)
}

enum Framing {
    Length(usize),
    Chunked,
    Close,
}

fn parse_head(buf: &[u8]) -> io::Result<Option<(Response<Bytes>, usize, Framing)>> {
    let bad = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut head = httparse::Response::new(&mut headers);
    let head_len = match head.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(err) => return Err(bad(format!("invalid answer from the collector: {err}"))),
    };
    let mut response = Response::builder().status(head.code.unwrap_or(500));
    let mut framing = Framing::Close;
    for h in head.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| bad("invalid content-length from the collector".into()))?;
            framing = Framing::Length(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            framing = Framing::Chunked;
        }
        response = response.header(h.name, h.value);
    }
    let response = response
        .body(Bytes::new())
        .map_err(|e| bad(format!("invalid answer from the collector: {e}")))?;
    Ok(Some((response, head_len, framing)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A one-shot server: reads the request, writes `answer`, returns what it read.
    fn serve_once(answer: &'static [u8]) -> (String, std::thread::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
        let handle = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            // The whole request: its head and the 2-byte body, however many reads they take.
            let mut got = Vec::new();
            let mut chunk = [0u8; 4096];
            while got
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .is_none_or(|end| got.len() < end + 4 + 2)
            {
                let n = s.read(&mut chunk).unwrap();
                assert!(n > 0, "the client closed before sending its request");
                got.extend_from_slice(&chunk[..n]);
            }
            s.write_all(answer).unwrap();
            // Keep the connection open until the client closes it: a client that waited for the
            // server to close first would time out instead.
            while s.read(&mut chunk).is_ok_and(|n| n > 0) {}
            got
        });
        (url, handle)
    }

    fn post(url: &str) -> io::Result<Response<Bytes>> {
        let client = OtlpHttp {
            timeout: Duration::from_secs(5),
        };
        let request = Request::post(url)
            .header("content-type", "application/x-protobuf")
            .body(Bytes::from_static(b"\x0a\x00"))
            .unwrap();
        client.send(&request)
    }

    #[test]
    fn posts_the_body_and_reads_a_sized_answer_without_waiting_for_the_close() {
        let (url, server) =
            serve_once(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 2\r\n\r\nok");
        let response = post(&url).expect("the answer ends at its content-length");
        assert_eq!(response.status(), 200);
        assert_eq!(response.body().as_ref(), b"ok");
        let sent = String::from_utf8_lossy(&server.join().unwrap()).into_owned();
        assert!(sent.starts_with("POST /v1/traces HTTP/1.1\r\n"), "{sent}");
        assert!(sent.contains("content-length: 2\r\n"), "{sent}");
        assert!(
            sent.contains("content-type: application/x-protobuf\r\n"),
            "{sent}"
        );
        assert!(sent.ends_with("\r\n\r\n\x0a\x00"), "{sent:?}");
    }

    #[test]
    fn a_chunked_answer_ends_at_its_last_chunk_and_statuses_pass_through() {
        let (url, _server) = serve_once(
            b"HTTP/1.1 503 Service Unavailable\r\ntransfer-encoding: chunked\r\nretry-after: 3\r\n\r\n2\r\nno\r\n0\r\n\r\n",
        );
        let response = post(&url).expect("the answer ends at its last chunk");
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()["retry-after"], "3");
    }

    #[test]
    fn a_collector_that_never_answers_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
        let client = OtlpHttp {
            timeout: Duration::from_millis(200),
        };
        let request = Request::post(url).body(Bytes::new()).unwrap();
        let err = client.send(&request).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
        drop(listener);
    }
}
