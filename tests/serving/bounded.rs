//! Work and memory a client can make the server spend stay bounded: a 422 lists a fixed number
//! of field errors, `HEAD /docs` builds no body, streams are limited in number and lifetime.

use std::{
    io::Write,
    time::{Duration, Instant},
};

use crate::support::{Conn, Instance, connect, get, request};

/// `{"message":"x","tags":[1,1,...]}` just under the default 64 KiB body limit, and the number
/// of tags in it (every one invalid: not a string).
fn many_bad_tags() -> (Vec<u8>, usize) {
    let n = 32_000;
    let tags = vec!["1"; n].join(",");
    (
        format!(r#"{{"message":"x","tags":[{tags}]}}"#).into_bytes(),
        n,
    )
}

#[test]
fn a_422_lists_at_most_32_field_errors_and_states_the_total() {
    let instance = Instance::start(&[("POEM_API_ACCESS_LOG", "false")]);
    let (body, tags) = many_bad_tags();
    assert!(body.len() < 64 * 1024);

    let r = request(
        instance.api,
        "POST",
        "/api/v1/echo",
        Some(&body),
        Duration::from_secs(10),
    )
    .unwrap();

    assert!(
        r.body.len() < 16 * 1024,
        "a {}-byte 422 body for a {}-byte request",
        r.body.len(),
        body.len()
    );
    let problem = r.problem(422);
    let errors = problem["errors"].as_array().expect("an errors array");
    assert!(
        (1..=32).contains(&errors.len()),
        "{} entries in errors",
        errors.len()
    );
    let total = problem["error_count"]
        .as_u64()
        .unwrap_or_else(|| panic!("no numeric error_count: {problem:.500}"));
    assert!(
        total as usize >= tags,
        "error_count {total} below the {tags} invalid tags"
    );
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(&total.to_string()),
        "detail {detail:?} does not state the total {total}"
    );
}

#[test]
fn a_small_422_still_lists_every_error() {
    let instance = Instance::start(&[("POEM_API_ACCESS_LOG", "false")]);
    let body = br#"{"message":"","count":0}"#;

    let r = request(
        instance.api,
        "POST",
        "/api/v1/echo",
        Some(body),
        Duration::from_secs(5),
    )
    .unwrap();

    let problem = r.problem(422);
    assert_eq!(problem["errors"].as_array().map(Vec::len), Some(2));
    assert_eq!(problem["error_count"], 2, "{problem}");
}

/// Server CPU time for `n` requests sent one after another on one keep-alive connection.
fn cpu_for(instance: &Instance, n: usize, request: &[u8]) -> Duration {
    let mut conn = Conn::new(connect(instance.api, Duration::from_secs(10)));
    let before = instance.cpu();
    for _ in 0..n {
        conn.stream.write_all(request).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let r = conn.read_response(true, deadline).unwrap();
        assert_eq!(r.status, 200);
    }
    instance.cpu() - before
}

#[test]
fn head_docs_and_openapi_json_send_headers_only_and_head_docs_builds_no_body() {
    let instance = Instance::start(&[("POEM_API_ACCESS_LOG", "false")]);
    let head = |path: &str| format!("HEAD {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    let (head_docs, head_spec) = (head("/docs"), head("/openapi.json"));
    // Headers only: with `Connection: close`, nothing may follow the head.
    for path in ["/docs", "/openapi.json"] {
        let close = format!("HEAD {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        let mut s = connect(instance.api, Duration::from_secs(5));
        s.write_all(close.as_bytes()).unwrap();
        let mut conn = Conn::new(s);
        let deadline = Instant::now() + Duration::from_secs(5);
        let r = conn.read_response(true, deadline).unwrap();
        assert_eq!(r.status, 200, "HEAD {path}");
        let rest = conn.read_to_close(deadline).unwrap();
        assert!(rest.is_empty(), "{} bytes after HEAD {path}", rest.len());
    }

    // The reference: the OpenAPI document, the other static document (24 KB).
    cpu_for(&instance, 50, head_spec.as_bytes()); // warm-up
    let docs = cpu_for(&instance, 1000, head_docs.as_bytes());
    let spec = cpu_for(&instance, 1000, head_spec.as_bytes());

    // Building the 1.6 MB page per request made a HEAD /docs cost 14x a HEAD /openapi.json in a
    // release build, 2.4x in a debug one. Headers over shared bytes cost about the same as the
    // reference. 1.5x and 40 ms of slack (CPU time comes in 10 ms ticks).
    assert!(
        docs <= spec * 3 / 2 + Duration::from_millis(40),
        "1000 HEAD /docs took {docs:?} of server CPU, 1000 HEAD /openapi.json {spec:?}"
    );
}

#[test]
fn streams_beyond_the_limit_get_503_with_retry_after() {
    let instance = Instance::start(&[("POEM_API_MAX_STREAMS", "2")]);
    let open = |addr| {
        let mut s = connect(addr, Duration::from_secs(5));
        s.write_all(
            b"GET /api/v1/stream?count=1000&interval_ms=100 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        )
        .unwrap();
        let mut head = [0u8; 12];
        std::io::Read::read_exact(&mut s, &mut head).unwrap();
        assert_eq!(&head, b"HTTP/1.1 200", "a stream below the limit starts");
        s
    };
    let _first = open(instance.api);
    let _second = open(instance.api);

    let third = get(
        instance.api,
        "/api/v1/stream?count=1000&interval_ms=100",
        Duration::from_secs(3),
    );

    let third = third.expect("a third stream is answered at once");
    third.problem(503);
    assert!(third.header("retry-after").is_some(), "{:?}", third.headers);
}

#[test]
fn a_stream_ends_cleanly_after_its_maximum_duration() {
    let instance = Instance::start(&[("POEM_API_STREAM_MAX_DURATION", "1s")]);

    let r = get(
        instance.api,
        "/api/v1/stream?count=1000&interval_ms=50",
        Duration::from_secs(6),
    );

    // A complete chunked body (terminating chunk read) within the deadline: a clean end.
    let r = r.expect("the stream did not end cleanly within 6 s (maximum duration 1 s)");
    assert_eq!(r.status, 200);
    let events = r.text().lines().filter(|l| l.starts_with("data:")).count();
    assert!((5..100).contains(&events), "{events} events");
    assert!(r.elapsed >= Duration::from_millis(900), "{:?}", r.elapsed);
}
