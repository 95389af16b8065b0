//! Connection phases and their deadlines: a head must arrive within the header-read timeout
//! (from accept, and from the first byte of every later head), an idle keep-alive connection
//! lasts the keep-alive timeout, and a client that stops reading is cut at the send timeout
//! without the server spinning meanwhile.

use std::{
    io::Write,
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use socket2::{Domain, Socket, Type};

use crate::support::{Conn, Instance, connect, get, time_to_close};

const GET_ROOT: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

#[test]
fn a_connection_that_never_sends_a_byte_is_closed_after_the_header_read_timeout() {
    let instance = Instance::start(&[
        ("POEM_API_HEADER_READ_TIMEOUT", "1s"),
        ("POEM_API_KEEP_ALIVE_TIMEOUT", "30s"),
    ]);
    let mut silent = connect(instance.api, Duration::from_secs(10));

    let closed = time_to_close(&mut silent, Duration::from_secs(5));

    let closed = closed.expect(
        "a silent connection was still open 5 s after accept (header-read timeout 1 s): it is \
         treated as idle keep-alive",
    );
    assert!(
        closed >= Duration::from_millis(900),
        "closed after {closed:?}"
    );
}

#[test]
fn a_partial_second_head_sent_with_the_first_request_is_closed_at_the_header_read_timeout() {
    let instance = Instance::start(&[
        ("POEM_API_HEADER_READ_TIMEOUT", "1s"),
        ("POEM_API_KEEP_ALIVE_TIMEOUT", "30s"),
    ]);
    let mut s = connect(instance.api, Duration::from_secs(10));
    // One write, so both arrive in one segment: the second head never completes.
    s.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET / HTTP/1.1\r\nHost: 127")
        .unwrap();
    let mut conn = Conn::new(s);
    let first = conn
        .read_response(false, Instant::now() + Duration::from_secs(5))
        .expect("the first response");
    assert_eq!(first.status, 200);

    let closed = time_to_close(&mut conn.stream, Duration::from_secs(5));

    assert!(
        closed.is_some(),
        "a partial second head was still open 5 s after the first response (header-read \
         timeout 1 s)"
    );
}

#[test]
fn an_idle_keep_alive_connection_outlives_the_header_read_timeout_and_closes_at_keep_alive() {
    let instance = Instance::start(&[
        ("POEM_API_HEADER_READ_TIMEOUT", "1s"),
        ("POEM_API_KEEP_ALIVE_TIMEOUT", "3s"),
    ]);
    let mut s = connect(instance.api, Duration::from_secs(10));
    s.write_all(GET_ROOT).unwrap();
    let mut conn = Conn::new(s);
    let first = conn
        .read_response(false, Instant::now() + Duration::from_secs(5))
        .unwrap();
    assert_eq!(first.status, 200);

    // Idle for 1.8 s (past the header-read timeout): still usable.
    std::thread::sleep(Duration::from_millis(1800));
    conn.stream.write_all(GET_ROOT).unwrap();
    let second = conn
        .read_response(false, Instant::now() + Duration::from_secs(5))
        .expect("an idle connection is kept for the keep-alive timeout, not the header one");
    assert_eq!(second.status, 200);
    let closed = time_to_close(&mut conn.stream, Duration::from_secs(8));

    let closed = closed.expect("an idle connection still open 8 s into a 3 s keep-alive");
    assert!(
        closed >= Duration::from_millis(2500),
        "closed {closed:?} into a 3 s keep-alive"
    );
}

/// A client with a 4 KiB receive buffer that sends two pipelined `GET /docs` and never reads.
fn slow_reader(addr: SocketAddr) -> TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    // Before connect, so the advertised window is small from the start.
    socket.set_recv_buffer_size(4096).unwrap();
    socket
        .connect_timeout(&addr.into(), Duration::from_secs(5))
        .unwrap();
    let mut stream: TcpStream = socket.into();
    stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let docs = b"GET /docs HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    stream.write_all(&[&docs[..], &docs[..]].concat()).unwrap();
    stream
}

/// Waits until the API listener's open-connection gauge is `n`; how long that took.
fn wait_api_connections(instance: &Instance, n: f64, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < within {
        if instance.metric("http_connections_open", &[("listener", "api")]) == Some(n) {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

#[test]
fn a_slow_reader_does_not_make_the_server_spin_and_is_cut_at_the_send_timeout() {
    // Keep-alive 1 s: the old core began spinning once it had passed. Send timeout 4 s, so the
    // CPU is measured while the connection is still open.
    let instance = Instance::start(&[
        ("POEM_API_KEEP_ALIVE_TIMEOUT", "1s"),
        ("POEM_API_SEND_TIMEOUT", "4s"),
        ("POEM_API_ACCESS_LOG", "false"),
    ]);
    let started = Instant::now();
    let reader = slow_reader(instance.api);

    std::thread::sleep(Duration::from_millis(1300));
    let cpu_before = instance.cpu();
    let window = Instant::now();
    std::thread::sleep(Duration::from_millis(2000));
    let cpu = instance.cpu() - cpu_before;
    let window = window.elapsed();
    let open_during = instance.metric("http_connections_open", &[("listener", "api")]);
    let closed_after =
        wait_api_connections(&instance, 0.0, Duration::from_secs(8)).map(|_| started.elapsed());
    drop(reader);

    assert!(
        cpu < window / 5,
        "the server used {cpu:?} of CPU in {window:?} while one client did not read (a spin)"
    );
    assert_eq!(
        open_during,
        Some(1.0),
        "the slow reader is open during the measurement"
    );
    let closed_after =
        closed_after.expect("the slow reader was still connected 8 s past a 4 s send timeout");
    assert!(
        closed_after >= Duration::from_millis(3500),
        "the slow reader was cut after {closed_after:?}, before the 4 s send timeout"
    );
}

#[test]
fn slow_readers_at_the_connection_limit_lock_others_out_no_longer_than_the_send_timeout() {
    let instance = Instance::start(&[
        ("POEM_API_MAX_CONNECTIONS", "8"),
        ("POEM_API_SEND_TIMEOUT", "2s"),
        ("POEM_API_KEEP_ALIVE_TIMEOUT", "30s"),
        ("POEM_API_ACCESS_LOG", "false"),
    ]);
    let readers: Vec<_> = (0..8).map(|_| slow_reader(instance.api)).collect();
    std::thread::sleep(Duration::from_millis(300));
    let full = instance.metric("http_connections_open", &[("listener", "api")]);

    let started = Instant::now();
    let served = get(instance.api, "/", Duration::from_secs(7));
    let waited = started.elapsed();
    drop(readers);

    assert_eq!(full, Some(8.0), "8 slow readers hold every slot");
    let served = served.unwrap_or_else(|e| {
        panic!("a normal client was locked out for {waited:?} (send timeout 2 s): {e}")
    });
    assert_eq!(served.status, 200);
    assert!(waited < Duration::from_secs(6), "locked out for {waited:?}");
}
