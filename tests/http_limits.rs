//! Slow and greedy clients: half a header block is cut off after the header timeout,
//! a stalled body after the body timeout, and past the connection cap new connections
//! wait instead of exhausting the service.

mod common;

use common::Harness;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest a test waits for the server to act (far above the 1 s limits under test).
const PATIENCE: Duration = Duration::from_secs(20);

async fn harness(max_connections: &str) -> Harness {
    Harness::start_with(
        None,
        &[
            ("OZBRIDGE_HEADER_TIMEOUT_SECS", "1"),
            ("OZBRIDGE_BODY_TIMEOUT_SECS", "1"),
            ("OZBRIDGE_MAX_CONNECTIONS", max_connections),
        ],
    )
    .await
    .unwrap()
}

fn addr(h: &Harness) -> std::net::SocketAddr {
    h.app.as_ref().unwrap().addr
}

/// Opens a connection that sends half a header block and stops.
async fn slow_client(h: &Harness) -> TcpStream {
    let mut stream = TcpStream::connect(addr(h)).await.unwrap();
    stream
        .write_all(b"POST /github/webhook HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: iss")
        .await
        .unwrap();
    stream
}

/// Reads until the server closes the connection; what it sent before closing.
async fn until_closed(stream: &mut TcpStream) -> String {
    let mut seen = Vec::new();
    let read = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut seen)).await;
    assert!(read.is_ok(), "the server kept a stalled connection open");
    String::from_utf8_lossy(&seen).into_owned()
}

#[tokio::test]
async fn half_a_header_block_is_cut_off_and_others_are_served_meanwhile() {
    let h = harness("1024").await;
    let mut slow = Vec::new();
    for _ in 0..50 {
        slow.push(slow_client(&h).await);
    }
    // Fifty stalled clients do not stand in the way of a real one.
    let health = h.http.get(h.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    for stream in &mut slow {
        let answer = until_closed(stream).await;
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
            "{answer}"
        );
    }
}

#[tokio::test]
async fn a_stalled_body_is_refused() {
    let h = harness("1024").await;
    let mut stream = TcpStream::connect(addr(&h)).await.unwrap();
    stream
        .write_all(
            b"POST /github/webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              X-GitHub-Event: issue_comment\r\nContent-Length: 1000\r\n\r\n{\"action\":",
        )
        .await
        .unwrap();
    let answer = until_closed(&mut stream).await;
    let status: u16 = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    assert!(
        answer.is_empty() || (400..500).contains(&status),
        "a stalled body must get a 4xx or be closed: {answer}"
    );
    assert_eq!(h.store().pending_command_count().await.unwrap(), 0);
}

#[tokio::test]
async fn past_the_cap_connections_wait_their_turn() {
    let h = harness("4").await;
    let mut slow = Vec::new();
    for _ in 0..4 {
        slow.push(slow_client(&h).await);
    }
    // A fifth connection is accepted only when a slot frees: the stalled ones are cut
    // off by the header timeout, and then it is served.
    let served = tokio::time::timeout(PATIENCE, h.http.get(h.url("/healthz")).send()).await;
    let health = served.expect("served once a slot was free").unwrap();
    assert_eq!(health.status(), 200);
    let mut closed = 0;
    for stream in &mut slow {
        let mut byte = [0u8; 1];
        if matches!(stream.try_read(&mut byte), Ok(0) | Ok(1)) {
            closed += 1;
        }
    }
    assert!(
        closed >= 1,
        "the fifth was served while all four slots were held"
    );
}
