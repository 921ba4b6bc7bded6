//! Attacks on a node's edge, each tried as an attacker would, over raw TCP where a proper
//! client library would refuse to send the bytes.

use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

/// The test process's resident set in KiB (the node runs in this process).
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

/// Upgrades a raw TCP connection to a WebSocket (with the browser's Origin, and a bearer
/// token when given) and returns it right after the 101.
async fn raw_upgrade(node: &TestNode, bearer: Option<&str>) -> TcpStream {
    let addr = node.base.trim_start_matches("http://").to_string();
    let mut tcp = TcpStream::connect(&addr).await.expect("connect");
    let auth = bearer.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let req = format!(
        "GET /v1/ws HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Origin: {ORIGIN}\r\n{auth}\r\n"
    );
    tcp.write_all(req.as_bytes()).await.expect("send upgrade");
    // Read the response head byte by byte so no frame after it is consumed.
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(WAIT, tcp.read(&mut b))
            .await
            .expect("101 in time")
            .expect("read 101");
        assert_eq!(n, 1, "EOF before the end of the response head");
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "upgrade refused: {head}");
    tcp
}

/// Reads server frames until a close frame; returns its code and reason.
async fn read_close<R: AsyncRead + Unpin>(tcp: &mut R) -> (u16, String) {
    loop {
        let mut h = [0u8; 2];
        tcp.read_exact(&mut h).await.expect("frame header");
        let len = match h[1] & 0x7f {
            126 => usize::from(tcp.read_u16().await.expect("length")),
            127 => usize::try_from(tcp.read_u64().await.expect("length")).expect("length"),
            n => usize::from(n),
        };
        let mut body = vec![0u8; len];
        tcp.read_exact(&mut body).await.expect("frame body");
        if h[0] & 0x0f == 0x8 {
            assert!(len >= 2, "close frame without a code");
            let code = u16::from_be_bytes([body[0], body[1]]);
            return (code, String::from_utf8_lossy(&body[2..]).into_owned());
        }
    }
}

/// A masked text frame header declaring `len` payload bytes (64-bit length form).
fn huge_text_header(len: u64) -> Vec<u8> {
    let mut h = vec![0x81, 0x80 | 127];
    h.extend_from_slice(&len.to_be_bytes());
    h.extend_from_slice(&[0x11, 0x22, 0x33, 0x44]);
    h
}

/// Sends a frame header announcing 2^62 bytes and then `mib` MiB of payload; returns the
/// close code, the time from the header to the close and the node's RSS growth in KiB.
async fn flood_after_huge_header(mut tcp: TcpStream, mib: usize) -> (u16, Duration, i64) {
    let before = rss_kib();
    let started = Instant::now();
    tcp.write_all(&huge_text_header(1 << 62))
        .await
        .expect("send header");
    let (mut rd, mut wr) = tcp.into_split();
    let writer = tokio::spawn(async move {
        let chunk = vec![0x5au8; 64 * 1024];
        for _ in 0..mib * 16 {
            // The node closes early: a failed write is the expected end.
            if wr.write_all(&chunk).await.is_err() {
                break;
            }
        }
    });
    let (code, reason) = tokio::time::timeout(WAIT, read_close(&mut rd))
        .await
        .expect("a close within the wait (is the node buffering the announced payload?)");
    let to_close = started.elapsed();
    let _ = tokio::time::timeout(WAIT, writer).await;
    assert!(reason.contains("limit"), "close reason: {reason}");
    (code, to_close, rss_kib() as i64 - before as i64)
}

/// A frame header announcing 2^62 bytes is refused with 1009 on the header, before and after
/// auth, and the node does not buffer the payload that follows it. Before the header check the
/// node read everything that followed into memory and never closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_frame_header_closes_1009_at_once_and_nothing_is_buffered() {
    let env = TestEnv::new().await;
    let node = env.node().await;
    // Warm up the node's allocations (first socket, first session) outside the measurement.
    let warm = node.connect("warm").await;
    warm.close().await;

    // Not signed in: only an allowed Origin.
    let tcp = raw_upgrade(&node, None).await;
    let (code, to_close, grew_kib) = flood_after_huge_header(tcp, 8).await;
    assert_eq!(code, 1009);
    assert!(
        grew_kib < 2048,
        "RSS grew by {grew_kib} KiB for 8 MiB sent after the header"
    );
    eprintln!("pre-auth: closed after {to_close:?}, RSS grew {grew_kib} KiB");

    // Signed in with a header token.
    let tcp = raw_upgrade(&node, Some(&token("alice", 3600))).await;
    let (code, to_close, grew_kib) = flood_after_huge_header(tcp, 8).await;
    assert_eq!(code, 1009);
    assert!(
        grew_kib < 2048,
        "RSS grew by {grew_kib} KiB for 8 MiB sent after the header"
    );
    eprintln!("signed in: closed after {to_close:?}, RSS grew {grew_kib} KiB");

    // The node still serves.
    let mut ws = node.connect("alice").await;
    ws.handshake().await;
    node.publish_one("alice", "still here").await;
    assert_eq!(ws.notifications_until(1).await.len(), 1);
}

/// A masked client frame with an empty payload.
fn empty_frame(fin: bool, opcode: u8) -> [u8; 6] {
    [if fin { 0x80 } else { 0 } | opcode, 0x80, 1, 2, 3, 4]
}

/// Every frame counts against the per-connection rate limit: a flood of unsolicited pongs,
/// or of empty continuation frames that never finish a message, is closed with 4104 like a
/// flood of messages. Before, neither was counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_of_pongs_or_empty_fragments_close_4104() {
    let env = TestEnv::new().await;
    let node = env.node().await;
    let tok = token("alice", 3600);

    let mut pongs = Vec::new();
    for _ in 0..2_000 {
        pongs.extend_from_slice(&empty_frame(true, 0xA));
    }
    let mut fragments = empty_frame(false, 0x1).to_vec();
    for _ in 0..20_000 {
        fragments.extend_from_slice(&empty_frame(false, 0x0));
    }

    for (what, flood, bearer) in [
        ("pongs before auth", &pongs, None),
        ("pongs after auth", &pongs, Some(tok.as_str())),
        ("fragments before auth", &fragments, None),
        ("fragments after auth", &fragments, Some(tok.as_str())),
    ] {
        let tcp = raw_upgrade(&node, bearer).await;
        let (mut rd, mut wr) = tcp.into_split();
        let flood = flood.clone();
        // The node closes part-way: a failed write is the expected end.
        let writer = tokio::spawn(async move { wr.write_all(&flood).await.ok() });
        let (code, reason) = tokio::time::timeout(WAIT, read_close(&mut rd))
            .await
            .unwrap_or_else(|_| panic!("{what}: no close within the wait"));
        assert_eq!(code, 4104, "{what}: {reason}");
        let _ = tokio::time::timeout(WAIT, writer).await;
    }
}

/// Idempotency keys are scoped per service key: another service reusing a key gets its own
/// publish, never the first service's stored response (or a 409 for its own, other body).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_are_scoped_per_service_key() {
    const OTHER_KEY: &str = "second-service-key-0123456789";
    let env = TestEnv::new().await;
    let node = env
        .node_with(|c| c.service_keys.push(OTHER_KEY.to_string().into()))
        .await;
    let publish_as = |key: &'static str, title: &'static str| {
        let mut body = notification_body("gina", title);
        body["idempotency_key"] = serde_json::json!("order-42");
        let req = node
            .http
            .post(format!("{}/v1/notifications", node.base))
            .bearer_auth(key)
            .json(&body);
        async move { req.send().await.expect("publish") }
    };
    let first = publish_as(SERVICE_KEY, "from the first service").await;
    assert_eq!(first.status(), 201);
    let second = publish_as(OTHER_KEY, "from the second service").await;
    assert_eq!(second.status(), 201, "another service's key is its own");
    let again = publish_as(OTHER_KEY, "from the second service").await;
    assert_eq!(again.status(), 200, "a retry by the same service replays");
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let titles: Vec<String> = env
        .sql()
        .await
        .query("SELECT title FROM notifications ORDER BY seq", &[])
        .await
        .expect("query")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        titles,
        ["from the first service", "from the second service"],
        "each service's publish stored once"
    );
}
