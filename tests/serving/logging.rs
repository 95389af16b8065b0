//! Logging never blocks serving: with stdout a full pipe nobody reads, the API, the probes,
//! the metrics and SIGTERM keep working; dropped lines are counted (a metric, and one summary
//! line once the writer recovers); one access-log line is capped.

use std::{
    io::Write,
    net::SocketAddr,
    time::{Duration, Instant},
};

use crate::support::{Conn, Instance, Stdout, connect, get};

/// One 404 with a 900-byte path: an access-log line of about 1.1 KB.
fn padded_request() -> Vec<u8> {
    let path = format!("/nope/{}", "a".repeat(900));
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").into_bytes()
}

/// Sends up to `n` requests over 4 keep-alive connections, each answer awaited at most 5 s;
/// a connection stops at its first failure. Returns how many were answered.
fn send_requests(api: SocketAddr, n: usize) -> usize {
    let workers: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                let req = padded_request();
                let mut conn = Conn::new(connect(api, Duration::from_secs(5)));
                let mut answered = 0;
                for _ in 0..n / 4 {
                    if conn.stream.write_all(&req).is_err() {
                        break;
                    }
                    let deadline = Instant::now() + Duration::from_secs(5);
                    match conn.read_response(false, deadline) {
                        Ok(r) if r.status == 404 => answered += 1,
                        _ => break,
                    }
                }
                answered
            })
        })
        .collect();
    workers.into_iter().map(|w| w.join().unwrap()).sum()
}

/// Fills the unread stdout pipe with access-log lines, and checks that it is full.
fn fill_stdout(instance: &Instance) -> usize {
    let answered = send_requests(instance.api, 6000);
    std::thread::sleep(Duration::from_millis(300)); // let the writer reach the full pipe
    let in_pipe = instance.stdout_pipe_bytes();
    // 64 KiB of pipe; a writer blocks once less than a line's room is left.
    assert!(
        in_pipe >= 48 * 1024,
        "test setup: only {in_pipe} bytes wait in the stdout pipe after {answered} requests"
    );
    answered
}

const DROPPED: &str = "poem_api_log_lines_dropped_total";

/// Probes, metrics and the API answer promptly; returns the slowest probe.
fn assert_serving(instance: &Instance) -> Duration {
    let mut slowest = Duration::ZERO;
    for path in ["/healthz", "/readyz", "/metrics", "/healthz", "/healthz"] {
        let r = get(instance.admin, path, Duration::from_secs(3))
            .unwrap_or_else(|e| panic!("admin {path} with stdout blocked: {e}"));
        assert_eq!(r.status, 200, "admin {path} with stdout blocked");
        slowest = slowest.max(r.elapsed);
    }
    let r = get(instance.api, "/", Duration::from_secs(3))
        .unwrap_or_else(|e| panic!("GET / with stdout blocked: {e}"));
    assert_eq!(r.status, 200, "GET / with stdout blocked");
    assert!(
        slowest < Duration::from_secs(1),
        "a probe took {slowest:?} with stdout blocked"
    );
    slowest
}

#[test]
fn a_full_stdout_pipe_stops_neither_the_api_nor_the_probes_nor_sigterm() {
    let mut instance = Instance::start_with(
        &[
            ("POEM_API_SHUTDOWN_TIMEOUT", "2s"),
            ("POEM_API_DRAIN_DELAY", "0s"),
        ],
        Stdout::Blocked,
        None,
    );
    let answered = fill_stdout(&instance);

    assert_serving(&instance);
    assert_eq!(answered, 6000, "requests stalled on a full stdout");
    let dropped = instance.metric(DROPPED, &[]);
    assert!(
        dropped.is_some_and(|d| d > 0.0),
        "{DROPPED} is {dropped:?} while lines cannot be written"
    );
    instance.signal(libc::SIGTERM);
    let exit = instance.wait(Duration::from_secs(5));

    let (status, took) =
        exit.expect("SIGTERM did not stop the process within 5 s (shutdown timeout 2 s)");
    assert_eq!(status.code(), Some(0), "exit after {took:?}");
    instance.start_draining();
    std::thread::sleep(Duration::from_millis(200));
    for line in instance.lines() {
        assert!(line.len() <= 16 * 1024, "a {}-byte stdout line", line.len());
    }
}

#[test]
fn lines_dropped_while_stdout_was_full_are_counted_in_a_metric_and_one_summary_line() {
    let mut instance = Instance::start_with(&[], Stdout::Blocked, None);
    fill_stdout(&instance);
    let dropped_while_full = instance.metric(DROPPED, &[]);

    instance.start_draining();
    // The writer recovers; a few more lines give it something to write after the summary.
    let deadline = Instant::now() + Duration::from_secs(10);
    let summary = loop {
        let _ = get(instance.api, "/", Duration::from_secs(2));
        let found = instance.wait_event(Duration::from_millis(200), |e| {
            e["message"] == "log lines dropped"
        });
        if found.is_some() || Instant::now() >= deadline {
            break found;
        }
    };

    assert!(
        dropped_while_full.is_some_and(|d| d > 0.0),
        "{DROPPED} was {dropped_while_full:?} while stdout was full"
    );
    let summary = summary.expect("no \"log lines dropped\" event after stdout drained");
    let in_line = summary["dropped"]
        .as_u64()
        .unwrap_or_else(|| panic!("the summary has no numeric dropped field: {summary}"));
    assert!(in_line > 0, "{summary}");
    let total = instance.metric(DROPPED, &[]).unwrap_or_default();
    assert!(
        total >= in_line as f64,
        "{DROPPED} {total} below the {in_line} the summary line reports"
    );
}

#[test]
fn one_access_log_line_holds_at_most_1024_bytes_of_the_path_and_16_kib_in_all() {
    let instance = Instance::start(&[]);
    let path = format!("/nope/{}", "p".repeat(7000));
    let request_id = "r".repeat(12000);
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nx-request-id: {request_id}\r\nConnection: \
         close\r\n\r\n"
    );
    let r = crate::support::exchange(instance.api, req.as_bytes(), Duration::from_secs(5))
        .expect("a response");
    // 404 for the path; an overlong request id may be refused instead, which is fine here.
    assert!(matches!(r.status, 400 | 404), "{}", r.status);

    let line = instance
        .wait_event(Duration::from_secs(5), |e| {
            e["path"]
                .as_str()
                .is_some_and(|p| p.starts_with("/nope/ppp"))
        })
        .expect("an access-log event for the request");

    let logged = line["path"].as_str().unwrap();
    assert!(
        logged.len() <= 1024,
        "the access log holds {} bytes of the path",
        logged.len()
    );
    assert_eq!(line["path_truncated"], true, "a cut path is marked");
    for text in instance.lines() {
        assert!(text.len() <= 16 * 1024, "a {}-byte stdout line", text.len());
    }
}
