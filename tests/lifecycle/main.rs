//! The lifecycle of the real binary, started as a child process and stopped with signals, as
//! Kubernetes does: readiness fails at once, requests in flight complete, the listener closes
//! after the drain delay, streams end, the exit code is 0; a second signal exits at once.

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use serde_json::Value;

/// The binary under test, started with `env` and both ports picked by the OS.
struct Instance {
    child: Child,
    api: SocketAddr,
    admin: SocketAddr,
}

impl Instance {
    fn start(env: &[(&str, &str)]) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_poem-api"))
            .env_clear()
            .envs([
                ("POEM_API_PORT", "0"),
                ("POEM_API_ADMIN_PORT", "0"),
                ("POEM_API_LOG_FORMAT", "json"),
            ])
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the binary");
        // The "ready" log event carries the bound addresses. Later lines keep being drained so
        // the child never blocks on a full pipe.
        let unknown = SocketAddr::from(([0, 0, 0, 0], 0));
        // Owned by the instance from here on, so a failed start still kills the child.
        let mut instance = Self {
            child,
            api: unknown,
            admin: unknown,
        };
        let (tx, rx) = mpsc::channel();
        let stdout = instance.child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("a ready event");
            let event: Value = serde_json::from_str(&line).unwrap_or_default();
            if event["message"] == "ready" {
                let addr = |key: &str| event[key].as_str().unwrap().parse().unwrap();
                (instance.api, instance.admin) = (addr("api"), addr("admin"));
                return instance;
            }
        }
    }

    fn signal(&self, signal: i32) {
        // SAFETY: kill only sends a signal to the child's pid.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, signal) }, 0);
    }

    /// Waits for the exit, failing the test instead of hanging.
    fn wait(&mut self, within: Duration) -> (ExitStatus, Duration) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, started.elapsed());
            }
            assert!(
                started.elapsed() < within,
                "the process did not exit within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn status(addr: SocketAddr, path: &str) -> Result<u16, reqwest::Error> {
    client()
        .get(format!("http://{addr}{path}"))
        .send()
        .map(|r| r.status().as_u16())
}

#[test]
fn after_sigterm_readiness_fails_at_once_while_a_slow_request_completes_and_the_exit_code_is_0() {
    // Arrange
    let mut instance = Instance::start(&[("POEM_API_DRAIN_DELAY", "500ms")]);
    assert_eq!(status(instance.admin, "/readyz").unwrap(), 200);
    let api = instance.api;
    let slow = std::thread::spawn(move || {
        client()
            .get(format!("http://{api}/api/v1/delay/1500"))
            .send()
    });
    std::thread::sleep(Duration::from_millis(200)); // the slow request is in the handler

    // Act
    instance.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(100));
    let readiness = status(instance.admin, "/readyz").unwrap();
    let liveness = status(instance.admin, "/healthz").unwrap();
    let slow = slow.join().unwrap().expect("the slow request completes");
    let (exit, _) = instance.wait(Duration::from_secs(15));

    // Assert
    assert_eq!(
        readiness, 503,
        "readiness must fail as soon as the signal arrives"
    );
    assert_eq!(
        liveness, 200,
        "liveness must hold while draining, or the pod is restarted"
    );
    assert_eq!(slow.status(), 200);
    assert_eq!(
        slow.headers()["connection"],
        "close",
        "draining asks clients to reconnect elsewhere"
    );
    assert_eq!(exit.code(), Some(0));
}

#[test]
fn new_connections_are_served_during_the_drain_delay_and_refused_after_it() {
    // Arrange: a request in flight keeps the process alive past the drain delay.
    let mut instance = Instance::start(&[("POEM_API_DRAIN_DELAY", "1s")]);
    let api = instance.api;
    let slow = std::thread::spawn(move || {
        client()
            .get(format!("http://{api}/api/v1/delay/4000"))
            .send()
    });
    std::thread::sleep(Duration::from_millis(200));

    // Act
    instance.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(50));
    let during = status(api, "/");
    std::thread::sleep(Duration::from_millis(1500));
    let after = std::net::TcpStream::connect_timeout(&api, Duration::from_secs(2));

    // Assert
    assert_eq!(during.unwrap(), 200, "the drain delay keeps serving");
    let err = after.expect_err("the listener must be closed after the drain delay");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
    assert_eq!(
        slow.join()
            .unwrap()
            .expect("the slow request completes")
            .status(),
        200
    );
    assert_eq!(instance.wait(Duration::from_secs(15)).0.code(), Some(0));
}

#[test]
fn a_second_signal_exits_at_once() {
    let mut instance = Instance::start(&[("POEM_API_DRAIN_DELAY", "30s")]);

    instance.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(200));
    instance.signal(libc::SIGINT);
    let (exit, took) = instance.wait(Duration::from_secs(5));

    assert_eq!(
        exit.code(),
        Some(128 + libc::SIGINT),
        "the exit code names the second signal"
    );
    assert!(took < Duration::from_secs(5));
}

#[test]
fn an_open_stream_ends_cleanly_when_the_server_stops() {
    // Arrange
    let mut instance = Instance::start(&[("POEM_API_DRAIN_DELAY", "200ms")]);
    let url = format!(
        "http://{}/api/v1/stream?count=1000&interval_ms=20",
        instance.api
    );
    let stream = std::thread::spawn(move || client().get(url).send().and_then(|r| r.text()));
    std::thread::sleep(Duration::from_millis(300));

    // Act
    instance.signal(libc::SIGTERM);
    let body = stream
        .join()
        .unwrap()
        .expect("the stream ends without an error");
    let (exit, _) = instance.wait(Duration::from_secs(15));

    // Assert
    let events = body.lines().filter(|l| l.starts_with("data:")).count();
    assert!(
        (5..1000).contains(&events),
        "{events} events before the end"
    );
    assert_eq!(exit.code(), Some(0));
}

#[test]
fn an_invalid_setting_stops_the_start_with_a_message_naming_the_variable() {
    let output = Command::new(env!("CARGO_BIN_EXE_poem-api"))
        .env_clear()
        .env("POEM_API_SHUTDOWN_TIMEOUT", "soon")
        .output()
        .unwrap();

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("POEM_API_SHUTDOWN_TIMEOUT"), "{stderr}");
}

#[test]
fn a_port_in_use_stops_the_start_with_a_message_naming_the_variable() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();

    let output = Command::new(env!("CARGO_BIN_EXE_poem-api"))
        .env_clear()
        .envs([
            ("POEM_API_PORT", port.as_str()),
            ("POEM_API_ADMIN_PORT", "0"),
            ("POEM_API_LOG_FORMAT", "json"),
        ])
        .output()
        .unwrap();

    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("POEM_API_PORT"), "{stdout}");
}
