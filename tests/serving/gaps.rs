//! Hand-made requests that nginx answers correctly, and signals that must not kill the process.

use std::{
    io::Write,
    time::{Duration, Instant},
};

use crate::support::{Conn, Instance, Response, connect, exchange, get, request};

const T: Duration = Duration::from_secs(5);

fn raw(instance: &Instance, bytes: &[u8]) -> Response {
    exchange(instance.api, bytes, T).expect("a response")
}

#[test]
fn http_1_1_without_host_with_two_hosts_or_an_invalid_host_is_400_and_1_0_without_host_is_fine() {
    let instance = Instance::start(&[]);
    let cases: [&[u8]; 3] = [
        b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: bad host/\\x\r\nConnection: close\r\n\r\n",
    ];
    for case in cases {
        let r = raw(&instance, case);
        let what = String::from_utf8_lossy(case);
        assert_eq!(r.status, 400, "{what:?}");
        r.problem(400);
    }

    let r = raw(&instance, b"GET / HTTP/1.0\r\n\r\n");
    assert_eq!(r.status, 200, "HTTP/1.0 needs no Host");
}

#[test]
fn status_205_204_and_304_have_no_body() {
    let instance = Instance::start(&[]);
    for code in [205, 204, 304] {
        let mut s = connect(instance.api, T);
        let req = format!(
            "GET /api/v1/status/{code} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).unwrap();
        let mut conn = Conn::new(s);
        let deadline = Instant::now() + T;
        // Read as if headers only, then everything until the close: nothing may follow.
        let head = conn.read_response(true, deadline).unwrap();
        let rest = conn.read_to_close(deadline).unwrap();
        assert_eq!(head.status, code);
        assert!(
            rest.is_empty(),
            "{code}: {} bytes after the head: {:?}",
            rest.len(),
            String::from_utf8_lossy(&rest)
        );
        if code == 205 {
            let len = head.header("content-length");
            assert!(
                len.is_none() || len == Some("0"),
                "205 with content-length {len:?}"
            );
        }
    }
}

#[test]
fn status_401_has_www_authenticate_and_426_has_upgrade() {
    let instance = Instance::start(&[]);
    let r = get(instance.api, "/api/v1/status/401", T).unwrap();
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").is_some(), "{:?}", r.headers);

    let r = get(instance.api, "/api/v1/status/426", T).unwrap();
    assert_eq!(r.status, 426);
    assert!(r.header("upgrade").is_some(), "{:?}", r.headers);
}

#[test]
fn admin_405_carries_allow() {
    let instance = Instance::start(&[]);
    let r = request(instance.admin, "POST", "/healthz", None, T).unwrap();
    assert_eq!(r.status, 405);
    let allow = r
        .header("allow")
        .unwrap_or_else(|| panic!("{:?}", r.headers));
    assert!(allow.contains("GET"), "Allow: {allow}");
}

#[test]
fn a_request_line_over_8_kib_is_414_and_a_head_over_the_limit_stays_431() {
    let instance = Instance::start(&[]);
    let long_uri = format!(
        "GET /{} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        "u".repeat(9000)
    );
    assert_eq!(raw(&instance, long_uri.as_bytes()).status, 414);

    let big_head = format!(
        "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "h".repeat(40 * 1024)
    );
    assert_eq!(raw(&instance, big_head.as_bytes()).status, 431);
}

#[test]
fn transfer_encoding_gzip_chunked_is_501() {
    let instance = Instance::start(&[]);
    let r = raw(
        &instance,
        b"POST /api/v1/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
          Transfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    );
    r.problem(501);
}

#[test]
fn asterisk_authority_form_and_connect_requests_are_400() {
    let instance = Instance::start(&[]);
    let cases: [&[u8]; 3] = [
        b"GET * HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        b"GET example.com:80 HTTP/1.1\r\nHost: example.com:80\r\nConnection: close\r\n\r\n",
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
    ];
    for case in cases {
        let r = raw(&instance, case);
        assert_eq!(r.status, 400, "{:?}", String::from_utf8_lossy(case));
    }
}

#[test]
fn post_on_docs_and_openapi_json_is_405_with_allow_get_head() {
    let instance = Instance::start(&[]);
    for path in ["/docs", "/openapi.json"] {
        let r = request(instance.api, "POST", path, Some(b"{}"), T).unwrap();
        r.problem(405);
        let allow = r.header("allow").unwrap_or_default().replace(' ', "");
        let mut methods: Vec<&str> = allow.split(',').collect();
        methods.sort_unstable();
        assert_eq!(methods, ["GET", "HEAD"], "POST {path}: Allow {allow:?}");
    }
}

#[test]
fn the_readyz_503_body_has_instance_and_request_id() {
    let instance = Instance::start(&[]);
    let r = request(instance.admin, "POST", "/readyz/disable", None, T).unwrap();
    assert_eq!(r.status, 200);

    let problem = get(instance.admin, "/readyz", T).unwrap().problem(503);

    assert!(problem["instance"].is_string(), "{problem}");
    assert!(problem["request_id"].is_string(), "{problem}");
}

#[test]
fn sighup_sigusr1_and_sigusr2_neither_kill_the_process_nor_a_request_in_flight() {
    let mut instance = Instance::start(&[]);
    for (signal, name) in [
        (libc::SIGHUP, "SIGHUP"),
        (libc::SIGUSR1, "SIGUSR1"),
        (libc::SIGUSR2, "SIGUSR2"),
    ] {
        let api = instance.api;
        let slow = std::thread::spawn(move || get(api, "/api/v1/delay/600", T));
        std::thread::sleep(Duration::from_millis(200));

        instance.signal(signal);
        let in_flight = slow.join().unwrap();

        let in_flight = in_flight.unwrap_or_else(|e| panic!("request in flight at {name}: {e}"));
        assert_eq!(in_flight.status, 200, "request in flight at {name}");
        assert!(instance.alive(), "{name} ended the process");
        assert_eq!(
            get(instance.api, "/", T).unwrap().status,
            200,
            "after {name}"
        );
        let noted = instance.wait_event(Duration::from_secs(2), |e| notes_signal(e, name, signal));
        assert!(noted.is_some(), "no log line notes {name}");
    }
}

#[test]
fn a_request_the_client_abandons_is_logged_as_499_and_counted() {
    let instance = Instance::start(&[]);
    let route = "/api/v1/delay/{ms}";
    let counted = |i: &Instance| {
        i.metric(
            "http_requests_total",
            &[("listener", "api"), ("route", route), ("status", "4xx")],
        )
        .unwrap_or(0.0)
    };
    let before = counted(&instance);

    let mut s = connect(instance.api, T);
    s.write_all(b"GET /api/v1/delay/2000 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    drop(s);

    let logged = instance.wait_event(Duration::from_secs(4), |e| {
        e["status"] == 499 && e["path"] == "/api/v1/delay/2000"
    });
    assert!(logged.is_some(), "no access-log line with status 499");
    let after = counted(&instance);
    assert_eq!(after - before, 1.0, "http_requests_total 4xx for {route}");
}

#[test]
fn a_request_cut_by_the_shutdown_timeout_is_logged_as_503_not_499() {
    let mut instance = Instance::start(&[("POEM_API_SHUTDOWN_TIMEOUT", "300ms")]);
    let mut s = connect(instance.api, T);
    s.write_all(b"GET /api/v1/delay/5000 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));

    instance.signal(libc::SIGTERM);
    let exit = instance.wait(Duration::from_secs(8));

    let (status, _) = exit.expect("the process exits after the shutdown timeout");
    assert_eq!(status.code(), Some(1), "exit status {status}");
    let line = instance
        .events()
        .into_iter()
        .find(|e| e["path"] == "/api/v1/delay/5000");
    let line = line.unwrap_or_else(|| panic!("no access-log line: {:#?}", instance.lines()));
    assert_eq!(line["status"], 503, "{line}");
    drop(s);
}

/// Whether a log event names the signal: `SIGHUP` or `HUP` in a field, or its number in a
/// `signal` field.
fn notes_signal(event: &serde_json::Value, name: &str, number: i32) -> bool {
    let short = name.trim_start_matches("SIG");
    event["signal"] == number
        || event.as_object().is_some_and(|fields| {
            fields
                .iter()
                .filter(|(k, _)| k.as_str() != "target")
                .filter_map(|(_, v)| v.as_str())
                .any(|v| {
                    v.split(|c: char| !c.is_ascii_alphanumeric())
                        .any(|w| w.eq_ignore_ascii_case(name) || w.eq_ignore_ascii_case(short))
                })
        })
}
