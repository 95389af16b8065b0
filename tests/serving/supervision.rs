//! Supervision: a listener whose accept loop fails turns readiness off and ends the process
//! with exit code 1, naming the listener. The failure is made from outside: a duplicate of the
//! listening socket, taken with pidfd_getfd(2) (needs root, as in CI), is shut down for reading,
//! so the server's accept(2) fails with EINVAL.

use std::time::Duration;

use crate::support::{Instance, get, is_root, listening_fd, shut_down_listener};

fn fail_listener(which: &str) {
    fail_listener_with(which, false);
}

/// With `busy_client`, a keep-alive client sends a request every 100 ms on one connection
/// meanwhile: the failure must not wait for that connection to go idle.
fn fail_listener_with(which: &str, busy_client: bool) {
    assert!(
        is_root(),
        "this test takes a socket of another process with pidfd_getfd: run it as root"
    );
    let mut instance = Instance::start(&[
        ("POEM_API_SHUTDOWN_TIMEOUT", "2s"),
        ("POEM_API_DRAIN_DELAY", "0s"),
    ]);
    let port = if which == "api" {
        instance.api
    } else {
        instance.admin
    }
    .port();
    let fd = listening_fd(instance.pid(), port);
    assert_eq!(
        get(instance.admin, "/readyz", Duration::from_secs(3))
            .unwrap()
            .status,
        200
    );

    let stop_client = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client = busy_client.then(|| {
        let (api, stop) = (instance.api, stop_client.clone());
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            let Ok(mut stream) = std::net::TcpStream::connect(api) else {
                return;
            };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 4096];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if stream
                    .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
                    .is_err()
                    || matches!(stream.read(&mut buf), Ok(0) | Err(_))
                {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    });
    std::thread::sleep(Duration::from_millis(300));

    shut_down_listener(instance.pid(), fd);
    // Readiness, while the process still runs (it may already have gone: also fine).
    std::thread::sleep(Duration::from_millis(200));
    let readiness = get(instance.admin, "/readyz", Duration::from_secs(2)).map(|r| r.status);
    let exit = instance.wait(Duration::from_secs(8));
    stop_client.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(client) = client {
        let _ = client.join();
    }

    let (status, _) = exit.unwrap_or_else(|| {
        panic!(
            "the process still runs 8 s after its {which} listener failed (readiness then: \
             {readiness:?})"
        )
    });
    assert_eq!(status.code(), Some(1), "exit status {status}");
    if let Ok(code) = readiness {
        assert_eq!(code, 503, "readiness after the {which} listener failed");
    }
    let named = instance
        .events()
        .iter()
        .any(|e| matches!(e["level"].as_str(), Some("ERROR" | "WARN")) && names(e, which));
    assert!(
        named,
        "no error log line names the {which} listener: {:#?}",
        instance.lines()
    );
}

#[test]
fn a_failed_api_listener_turns_readiness_off_and_exits_1() {
    fail_listener("api");
}

#[test]
fn a_failed_api_listener_is_noticed_while_a_keep_alive_client_stays_busy() {
    fail_listener_with("api", true);
}

#[test]
fn a_failed_admin_listener_exits_1() {
    fail_listener("admin");
}

/// Whether a field of the event (not where it was logged from) names `word`.
fn names(event: &serde_json::Value, word: &str) -> bool {
    let Some(fields) = event.as_object() else {
        return false;
    };
    fields
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "target" | "module_path" | "filename"))
        .filter_map(|(_, v)| v.as_str())
        .any(|v| {
            v.split(|c: char| !c.is_alphanumeric())
                .any(|w| w.eq_ignore_ascii_case(word))
        })
}
