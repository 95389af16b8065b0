//! Probes stand apart: the admin listener answers while the API has used every descriptor it
//! may use.

use std::{
    net::TcpStream,
    time::{Duration, Instant},
};

use crate::support::{Instance, Stdout, get};

#[test]
fn probes_answer_while_api_connections_exhaust_the_open_files_limit() {
    // 512 descriptors for the process, 1024 connections allowed by default: without a clamp
    // and a reserve for the admin listener, the API's connections take every descriptor.
    let instance = Instance::start_with(
        &[
            ("POEM_API_HEADER_READ_TIMEOUT", "20s"),
            ("POEM_API_ACCESS_LOG", "false"),
        ],
        Stdout::Drained,
        Some(512),
    );
    // The clamp is logged at start, before the ready event.
    let events = instance.events();
    let before_ready = events
        .iter()
        .take_while(|e| e["message"] != "ready")
        .map(|e| e.to_string().to_ascii_lowercase())
        .collect::<Vec<_>>();
    let clamp_logged = before_ready.iter().any(|e| {
        ["max_connections", "open files", "nofile", "clamp"]
            .iter()
            .any(|w| e.contains(w))
    });
    let mut flood: Vec<TcpStream> = Vec::new();
    for _ in 0..700 {
        // The kernel completes these handshakes whether or not the server accepts them.
        match TcpStream::connect_timeout(&instance.api, Duration::from_secs(2)) {
            Ok(s) => flood.push(s),
            Err(_) => break,
        }
    }
    std::thread::sleep(Duration::from_millis(500)); // the server accepts what it can

    let started = Instant::now();
    let probes: Vec<_> = ["/healthz", "/readyz", "/metrics"]
        .into_iter()
        .map(|p| (p, get(instance.admin, p, Duration::from_secs(3))))
        .collect();
    let took = started.elapsed();
    let flooded = flood.len();
    drop(flood);

    assert!(flooded >= 600, "test setup: only {flooded} connections");
    for (path, r) in probes {
        let r = r.unwrap_or_else(|e| panic!("admin {path} while the API holds every fd: {e}"));
        assert_eq!(r.status, 200, "admin {path}");
    }
    assert!(took < Duration::from_secs(3), "probes took {took:?}");
    assert!(
        clamp_logged,
        "no log line before ready tells that the connection limit was clamped to the open \
         files limit: {before_ready:#?}"
    );
    // Afterwards the API serves again.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match get(instance.api, "/", Duration::from_secs(2)) {
            Ok(r) if r.status == 200 => break,
            other => assert!(Instant::now() < deadline, "API after the flood: {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
