//! Trace export against a real OTLP/HTTP receiver in this process: its requests are decoded with
//! the official protobuf definitions (`opentelemetry-proto`), as a collector would.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest,
    common::v1::{AnyValue, KeyValue, any_value::Value as Any},
    trace::v1::{Span, span::SpanKind, status::StatusCode},
};
use prost::Message;

use crate::support::{Instance, exchange};

const T: Duration = Duration::from_secs(5);

/// A client's trace: the server's span must continue it.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

/// How the receiver treats export requests.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Decodes them and answers 200.
    Collect,
    /// Reads them and never answers: a collector that hangs.
    Hang,
}

/// One received span, with its resource's `service.name`.
#[derive(Debug, Clone)]
struct Received {
    service: String,
    span: Span,
}

struct Receiver {
    addr: SocketAddr,
    spans: Arc<Mutex<Vec<Received>>>,
    posts: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    fn start(mode: Mode) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let spans: Arc<Mutex<Vec<Received>>> = Arc::default();
        let posts: Arc<Mutex<Vec<String>>> = Arc::default();
        let (s, p) = (spans.clone(), posts.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let (s, p) = (s.clone(), p.clone());
                std::thread::spawn(move || serve(stream, mode, &s, &p));
            }
        });
        Self { addr, spans, posts }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn spans(&self) -> Vec<Received> {
        self.spans.lock().unwrap().clone()
    }

    fn wait_spans(&self, n: usize, within: Duration) -> Vec<Received> {
        let deadline = Instant::now() + within;
        while self.spans.lock().unwrap().len() < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.spans()
    }
}

/// Reads HTTP/1.1 requests off one connection (the exporter keeps it alive).
fn serve(stream: TcpStream, mode: Mode, spans: &Mutex<Vec<Received>>, posts: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    loop {
        let mut head = Vec::new();
        loop {
            let mut line = Vec::new();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            head.extend_from_slice(&line);
            if line == b"\r\n" {
                break;
            }
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        req.parse(&head).unwrap();
        let length = req
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .map(|h| {
                std::str::from_utf8(h.value)
                    .unwrap()
                    .parse::<usize>()
                    .unwrap()
            })
            .expect("the exporter sends a Content-Length");
        let kind = req
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-type"))
            .map(|h| String::from_utf8_lossy(h.value).into_owned())
            .unwrap_or_default();
        posts.lock().unwrap().push(format!(
            "{} {} {kind}",
            req.method.unwrap(),
            req.path.unwrap()
        ));
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        if mode == Mode::Hang {
            std::thread::sleep(Duration::from_secs(600));
            return;
        }
        let export = ExportTraceServiceRequest::decode(body.as_slice()).expect("OTLP protobuf");
        for resource in export.resource_spans {
            let service = resource
                .resource
                .as_ref()
                .and_then(|r| string_attr(&r.attributes, "service.name"))
                .unwrap_or_default();
            for scope in resource.scope_spans {
                for span in scope.spans {
                    spans.lock().unwrap().push(Received {
                        service: service.clone(),
                        span,
                    });
                }
            }
        }
        let _ = out.write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n",
        );
    }
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a Any> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v: &AnyValue| v.value.as_ref())
}

fn string_attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    match attr(attrs, key)? {
        Any::StringValue(s) => Some(s.clone()),
        other => panic!("{key} is not a string: {other:?}"),
    }
}

fn int_attr(attrs: &[KeyValue], key: &str) -> Option<i64> {
    match attr(attrs, key)? {
        Any::IntValue(i) => Some(*i),
        other => panic!("{key} is not an integer: {other:?}"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// GET `path` with a `traceparent` of [`TRACE_ID`] when `traced`.
fn get(addr: SocketAddr, path: &str, traced: bool) -> crate::support::Response {
    let traceparent = match traced {
        true => format!("traceparent: 00-{TRACE_ID}-{PARENT_ID}-01\r\n"),
        false => String::new(),
    };
    let req =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{traceparent}Connection: close\r\n\r\n");
    exchange(addr, req.as_bytes(), T).unwrap()
}

fn traced_instance(receiver: &Receiver, extra: &[(&str, &str)]) -> Instance {
    let url = receiver.url();
    let mut env = vec![
        ("POEM_API_OTLP_ENDPOINT", url.as_str()),
        // Export every 100 ms rather than every 5 s, so the test waits little.
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    env.extend_from_slice(extra);
    Instance::start(&env)
}

fn span_named<'a>(spans: &'a [Received], name: &str) -> &'a Span {
    &spans
        .iter()
        .find(|r| r.span.name == name)
        .unwrap_or_else(|| panic!("no span {name:?} in {spans:#?}"))
        .span
}

#[test]
fn each_api_request_is_one_server_span_that_continues_the_clients_trace() {
    let receiver = Receiver::start(Mode::Collect);
    let srv = traced_instance(&receiver, &[]);
    assert_eq!(
        srv.wait_event(T, |e| e["message"] == "ready").unwrap()["traces_exported"],
        true
    );
    assert_eq!(
        get(srv.api, "/api/v1/delay/1?token=secret", true).status,
        200
    );
    assert_eq!(get(srv.api, "/api/v1/status/503", false).status, 503);
    // Probes and scrapes are not traced.
    assert_eq!(get(srv.admin, "/healthz", true).status, 200);
    let spans = receiver.wait_spans(2, Duration::from_secs(10));
    assert_eq!(spans.len(), 2, "one span per API request: {spans:#?}");
    assert!(spans.iter().all(|r| r.service == "poem-api"));
    assert!(
        receiver
            .posts
            .lock()
            .unwrap()
            .iter()
            .all(|p| p == "POST /v1/traces application/x-protobuf"),
        "{:?}",
        receiver.posts.lock().unwrap()
    );

    let delay = span_named(&spans, "GET /api/v1/delay/{ms}");
    assert_eq!(hex(&delay.trace_id), TRACE_ID, "the client's trace goes on");
    assert_eq!(hex(&delay.parent_span_id), PARENT_ID);
    assert_eq!(delay.kind, SpanKind::Server as i32);
    let attrs = &delay.attributes;
    assert_eq!(
        string_attr(attrs, "http.request.method").as_deref(),
        Some("GET")
    );
    assert_eq!(
        string_attr(attrs, "http.route").as_deref(),
        Some("/api/v1/delay/{ms}")
    );
    assert_eq!(
        string_attr(attrs, "url.path").as_deref(),
        Some("/api/v1/delay/1")
    );
    assert_eq!(string_attr(attrs, "url.scheme").as_deref(), Some("http"));
    assert_eq!(int_attr(attrs, "http.response.status_code"), Some(200));
    assert_eq!(
        string_attr(attrs, "network.protocol.version").as_deref(),
        Some("1.1")
    );
    assert_eq!(
        string_attr(attrs, "client.address").as_deref(),
        Some("127.0.0.1")
    );
    let everything = format!("{delay:?}");
    assert!(
        !everything.contains("secret"),
        "no query string in a span: {everything}"
    );
    assert!(
        delay
            .status
            .as_ref()
            .is_none_or(|s| s.code == StatusCode::Unset as i32)
    );

    let failed = span_named(&spans, "GET /api/v1/status/{code}");
    assert_eq!(
        failed.parent_span_id, b"",
        "a request without traceparent starts a trace"
    );
    assert_eq!(
        int_attr(&failed.attributes, "http.response.status_code"),
        Some(503)
    );
    assert_eq!(
        string_attr(&failed.attributes, "error.type").as_deref(),
        Some("503")
    );
    assert_eq!(
        failed.status.as_ref().unwrap().code,
        StatusCode::Error as i32
    );
}

#[test]
fn the_trace_id_is_in_the_problem_and_the_access_log_line() {
    let receiver = Receiver::start(Mode::Collect);
    let srv = traced_instance(&receiver, &[]);
    let answer = get(srv.api, "/no/such/path", true);
    assert_eq!(answer.problem(404)["trace_id"], TRACE_ID);
    let request_id = answer.header("x-request-id").unwrap().to_owned();
    let line = srv
        .wait_event(T, |e| {
            e["message"] == "request" && e["request_id"] == request_id.as_str()
        })
        .expect("the access log line");
    assert_eq!(line["trace_id"], TRACE_ID);
    // A route poem's router matched is named by its template; an unmatched one by its method
    // alone (a raw path would make span names unbounded).
    let spans = receiver.wait_spans(1, Duration::from_secs(10));
    let span = span_named(&spans, "GET");
    assert_eq!(string_attr(&span.attributes, "http.route"), None);
    assert_eq!(
        int_attr(&span.attributes, "http.response.status_code"),
        Some(404)
    );

    // A new trace when the request carries none: its id is the one the span got.
    let answer = get(srv.api, "/no/other", false);
    let trace_id = answer.problem(404)["trace_id"].as_str().unwrap().to_owned();
    assert_ne!(trace_id, TRACE_ID);
    let spans = receiver.wait_spans(2, Duration::from_secs(10));
    assert!(
        spans.iter().any(|r| hex(&r.span.trace_id) == trace_id),
        "{spans:#?}"
    );
}

#[test]
fn without_a_collector_nothing_is_traced() {
    let srv = Instance::start(&[]);
    assert_eq!(
        srv.wait_event(T, |e| e["message"] == "ready").unwrap()["traces_exported"],
        false
    );
    let answer = get(srv.api, "/no/such/path", true);
    let problem = answer.problem(404);
    assert!(problem.get("trace_id").is_none(), "{problem}");
    let request_id = answer.header("x-request-id").unwrap().to_owned();
    let line = srv
        .wait_event(T, |e| {
            e["message"] == "request" && e["request_id"] == request_id.as_str()
        })
        .unwrap();
    assert!(line.get("trace_id").is_none(), "{line}");
}

#[test]
fn a_hanging_collector_changes_no_answer_and_the_spans_held_stay_bounded() {
    let receiver = Receiver::start(Mode::Hang);
    // The export in progress waits a minute for the answer, longer than this test runs.
    let srv = traced_instance(
        &receiver,
        &[
            ("OTEL_BSP_MAX_QUEUE_SIZE", "8"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "60000"),
        ],
    );
    let mut slowest = Duration::ZERO;
    for _ in 0..100 {
        let started = Instant::now();
        assert_eq!(get(srv.api, "/", false).status, 200);
        slowest = slowest.max(started.elapsed());
    }
    // The export in progress waits for the collector's answer; the requests never do. Each takes about a millisecond here; the bound is loose on purpose.
    assert!(
        slowest < Duration::from_secs(2),
        "slowest request {slowest:?}"
    );
    let dropped = srv
        .metric(
            "poem_api_trace_spans_dropped_total",
            &[("reason", "queue_full")],
        )
        .unwrap_or(0.0);
    assert!(
        dropped >= 92.0,
        "at most 8 of 100 spans held, {dropped} dropped"
    );
}

#[test]
fn exporter_failures_are_counted_and_logged_once_per_interval() {
    // A port nobody listens on: each export fails at once.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("http://{closed}");
    let srv = Instance::start(&[
        ("POEM_API_OTLP_ENDPOINT", url.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "50"),
    ]);
    let failed = |srv: &Instance| {
        srv.metric(
            "poem_api_trace_spans_dropped_total",
            &[("reason", "export_failed")],
        )
        .unwrap_or(0.0)
    };
    for round in 1..=3 {
        let started = Instant::now();
        assert_eq!(get(srv.api, "/", false).status, 200);
        assert!(started.elapsed() < Duration::from_secs(2));
        let deadline = Instant::now() + Duration::from_secs(10);
        while failed(&srv) < f64::from(round) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(
            failed(&srv),
            f64::from(round),
            "each span of a failed export counted"
        );
    }
    let lines = srv
        .events()
        .into_iter()
        .filter(|e| {
            e["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("trace export failed"))
        })
        .collect::<Vec<_>>();
    assert_eq!(lines.len(), 1, "three failed exports, one line: {lines:#?}");
    assert_eq!(lines[0]["level"], "WARN");
    let cause = lines[0]["cause"]
        .as_str()
        .unwrap_or_default()
        .to_lowercase();
    assert!(
        cause.contains("refused"),
        "the line names the cause: {}",
        lines[0]
    );
}

#[test]
fn spans_still_queued_are_flushed_at_stop_whatever_the_log_level() {
    let receiver = Receiver::start(Mode::Collect);
    // No export until a minute has passed, or the queue holds 512: only the stop sends these.
    // The log filter is the log's own: `warn` does not turn spans off.
    let mut srv = traced_instance(
        &receiver,
        &[
            ("OTEL_BSP_SCHEDULE_DELAY", "60000"),
            ("POEM_API_LOG", "warn,poem_api::instance=info"),
        ],
    );
    for _ in 0..3 {
        assert_eq!(get(srv.api, "/", true).status, 200);
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        receiver.spans().len(),
        0,
        "nothing exported before the stop"
    );
    srv.signal(libc::SIGTERM);
    let (status, _) = srv.wait(Duration::from_secs(15)).expect("exits");
    assert!(status.success(), "{status:?}");
    let spans = receiver.spans();
    assert_eq!(spans.len(), 3, "every span flushed before exit: {spans:#?}");
    assert!(spans.iter().all(|r| hex(&r.span.trace_id) == TRACE_ID));
}

#[test]
fn an_https_collector_is_refused_at_start_naming_the_variable() {
    let output = std::process::Command::new(crate::support::binary())
        .env_clear()
        .env("POEM_API_OTLP_ENDPOINT", "https://collector:4318")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("POEM_API_OTLP_ENDPOINT"), "{stderr}");
    assert!(stderr.contains("https is not supported"), "{stderr}");
}

#[test]
fn an_http2_request_is_traced_as_one_like_any_other() {
    let receiver = Receiver::start(Mode::Collect);
    let srv = traced_instance(&receiver, &[]);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let status = runtime.block_on(async {
        let tcp = tokio::net::TcpStream::connect(srv.api).await.unwrap();
        let (send, conn) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(conn);
        let request = poem::http::Request::get("http://127.0.0.1/api/v1/delay/1")
            .header("traceparent", format!("00-{TRACE_ID}-{PARENT_ID}-01"))
            .body(())
            .unwrap();
        let mut send = send.ready().await.unwrap();
        let (response, _) = send.send_request(request, true).unwrap();
        tokio::time::timeout(T, response)
            .await
            .unwrap()
            .unwrap()
            .status()
    });
    assert_eq!(status, 200);
    let spans = receiver.wait_spans(1, Duration::from_secs(10));
    let span = span_named(&spans, "GET /api/v1/delay/{ms}");
    assert_eq!(hex(&span.trace_id), TRACE_ID);
    assert_eq!(
        string_attr(&span.attributes, "network.protocol.version").as_deref(),
        Some("2")
    );
}
