//! Protection against slow and abusive clients, on real sockets. Every wait is bounded, and
//! each timing margin is several times the configured timeout, so a loaded machine does not
//! make a test fail.

use std::time::{Duration, Instant};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::timeout,
};

use crate::helpers;

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n";

/// Reads one response head and its JSON body (which ends with '}').
async fn read_response(stream: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.ends_with(b"}") {
        let n = timeout(Duration::from_secs(5), stream.read(&mut chunk))
            .await
            .expect("a response in time")
            .unwrap();
        assert!(
            n > 0,
            "connection closed mid-response: {}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8(buf).unwrap()
}

/// Whether the server closes the connection within `within` (EOF or reset).
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        timeout(within, stream.read(&mut byte)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test]
async fn a_client_trickling_headers_slower_than_the_timeout_is_disconnected() {
    // Arrange
    let server = helpers::spawn_api(&["--header-read-timeout", "300ms"]).await;
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    let started = Instant::now();

    // Act: one byte every 50 ms; the whole head would take over 3 s.
    let mut disconnected = false;
    for byte in b"GET / HTTP/1.1\r\nHost: test\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n" {
        if slow.write_all(&[*byte]).await.is_err() {
            disconnected = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        if started.elapsed() > Duration::from_secs(2) {
            disconnected = closed_within(&mut slow, Duration::from_secs(2)).await;
            break;
        }
    }

    // Assert: cut off long before the head was complete, while a normal client is served.
    assert!(disconnected, "a slow-loris client stayed connected");
    let mut normal = TcpStream::connect(server.addr).await.unwrap();
    normal.write_all(GET).await.unwrap();
    assert!(read_response(&mut normal).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn an_idle_keep_alive_connection_outlives_the_header_timeout_and_closes_at_the_keep_alive_timeout()
 {
    let server = helpers::spawn_api(&[
        "--header-read-timeout",
        "100ms",
        "--keep-alive-timeout",
        "1s",
    ])
    .await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(GET).await.unwrap();
    read_response(&mut stream).await;

    // Idle for 3× the header timeout: the connection is still usable.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stream.write_all(GET).await.unwrap();
    let second = read_response(&mut stream).await;

    // Then idle past the keep-alive timeout: the server closes it.
    let closed = closed_within(&mut stream, Duration::from_secs(5)).await;

    assert!(second.starts_with("HTTP/1.1 200"), "{second}");
    assert!(
        closed,
        "an idle connection was kept past the keep-alive timeout"
    );
}

#[tokio::test]
async fn a_declared_body_over_the_limit_gets_413_before_it_is_sent() {
    let server = helpers::spawn_api(&["--body-limit", "1KiB"]).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();

    // Only the head: 10 MB are announced and never sent.
    stream
        .write_all(b"POST /api/v1/echo HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 10000000\r\n\r\n")
        .await
        .unwrap();
    let response = read_response(&mut stream).await;

    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(response.contains("application/problem+json"), "{response}");
}

#[tokio::test]
async fn connections_over_the_limit_wait_for_a_free_slot_instead_of_failing() {
    // Arrange: both slots taken by open keep-alive connections.
    let server = helpers::spawn_api(&["--max-connections", "2"]).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream.write_all(GET).await.unwrap();
        read_response(&mut stream).await;
        held.push(stream);
    }

    // Act: a third client connects (the kernel's backlog accepts it) and sends a request.
    let mut waiting = TcpStream::connect(server.addr).await.unwrap();
    waiting.write_all(GET).await.unwrap();
    let mut byte = [0u8; 1];
    let answered_early = timeout(Duration::from_millis(300), waiting.peek(&mut byte))
        .await
        .is_ok();
    drop(held.pop());
    let response = read_response(&mut waiting).await;

    // Assert
    assert!(!answered_early, "a connection over the limit was served");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
}

#[tokio::test]
async fn a_request_head_over_the_header_limit_gets_431_and_the_server_stays_healthy() {
    let server = helpers::spawn_api(&["--header-limit", "8KiB"]).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();

    let head = format!(
        "GET / HTTP/1.1\r\nHost: test\r\nX-Big: {}\r\n\r\n",
        "a".repeat(16 * 1024)
    );
    let _ = stream.write_all(head.as_bytes()).await; // the server may close before it is all sent
    let mut response = Vec::new();
    let _ = timeout(Duration::from_secs(5), stream.read_to_end(&mut response)).await;
    let mut normal = TcpStream::connect(server.addr).await.unwrap();
    normal.write_all(GET).await.unwrap();

    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 431"), "{response}");
    assert!(read_response(&mut normal).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn a_connection_that_never_sends_a_byte_is_closed_at_the_header_timeout_not_keep_alive() {
    let server = helpers::spawn_api(&[
        "--header-read-timeout",
        "300ms",
        "--keep-alive-timeout",
        "60s",
    ])
    .await;
    let mut silent = TcpStream::connect(server.addr).await.unwrap();

    // Well before the keep-alive timeout: the header clock runs from accept.
    assert!(closed_within(&mut silent, Duration::from_secs(5)).await);
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_at_the_send_timeout_and_frees_its_slot() {
    // Arrange: one connection slot, taken by a client with a tiny receive buffer that asks for
    // the 1.6 MB Swagger UI twice and never reads.
    let server = helpers::spawn_api(&[
        "--max-connections",
        "1",
        "--send-timeout",
        "300ms",
        "--keep-alive-timeout",
        "60s",
    ])
    .await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut reader = socket.connect(server.addr).await.unwrap();
    let docs = b"GET /docs HTTP/1.1\r\nHost: test\r\n\r\n";
    reader
        .write_all(&[&docs[..], &docs[..]].concat())
        .await
        .unwrap();

    // Act: a second client waits for the only slot.
    let mut next = TcpStream::connect(server.addr).await.unwrap();
    next.write_all(GET).await.unwrap();

    // Assert: the reader is cut and the waiting client is served, long before keep-alive.
    let answer = timeout(Duration::from_secs(10), read_response(&mut next)).await;
    assert!(
        answer
            .expect("served once the slow reader is cut")
            .starts_with("HTTP/1.1 200")
    );
}

#[tokio::test]
async fn a_request_the_client_abandons_is_counted_as_499_and_the_probes_answer() {
    let server = helpers::spawn_api(&[]).await;
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    client
        .write_all(b"GET /api/v1/delay/2000 HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    drop(client);

    let counted = async {
        loop {
            let metrics = server.state.metrics.render();
            if metrics.lines().any(|l| {
                l.starts_with("http_requests_total{")
                    && l.contains("route=\"/api/v1/delay/{ms}\"")
                    && l.contains("status=\"4xx\"")
            }) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    timeout(Duration::from_secs(5), counted)
        .await
        .expect("the abandoned request is counted");
    let health = helpers::http()
        .get(format!("http://{}/healthz", server.admin_addr))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn a_body_the_handler_never_reads_is_not_taken_for_the_next_request() {
    // Arrange: a GET with a 20 KB body of one long line, sent after the handler has begun; the
    // handler answers without reading it, and hyper drains it afterwards.
    let server =
        helpers::spawn_api(&["--header-read-timeout", "1s", "--keep-alive-timeout", "60s"]).await;
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    client
        .write_all(b"GET /api/v1/delay/300 HTTP/1.1\r\nHost: test\r\nContent-Length: 20000\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    client.write_all(&[b'a'; 20000]).await.unwrap();
    let first = read_response(&mut client).await;

    // Act: wait past the header-read timeout, then reuse the connection.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    client.write_all(GET).await.unwrap();
    let second = read_response(&mut client).await;

    // Assert: no 414 for the body's bytes, and the keep-alive clock, not the header clock.
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    assert!(!first.contains("414"), "{first}");
    assert!(second.starts_with("HTTP/1.1 200"), "{second}");
}

#[tokio::test]
async fn a_head_ended_by_bare_line_feeds_gets_the_keep_alive_clock_afterwards() {
    let server = helpers::spawn_api(&[
        "--header-read-timeout",
        "300ms",
        "--keep-alive-timeout",
        "60s",
    ])
    .await;
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    client
        .write_all(b"GET / HTTP/1.1\nHost: test\n\n")
        .await
        .unwrap();
    assert!(read_response(&mut client).await.starts_with("HTTP/1.1 200"));

    tokio::time::sleep(Duration::from_millis(1000)).await;
    client.write_all(GET).await.unwrap();

    assert!(read_response(&mut client).await.starts_with("HTTP/1.1 200"));
}
