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

/// A TCP connection to `node` from a loopback address of our choice (`127.0.0.2` is as much
/// this machine as `127.0.0.1`, and lets a test be two different clients).
async fn connect_from(node: &TestNode, from: &str) -> TcpStream {
    let addr: std::net::SocketAddr = node
        .base
        .trim_start_matches("http://")
        .parse()
        .expect("node address");
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.bind(format!("{from}:0").parse().expect("bind address"))
        .expect("bind");
    sock.connect(addr).await.expect("connect")
}

/// Reads an HTTP response head byte by byte (so nothing after it is consumed); `None` at EOF.
async fn read_head(tcp: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(WAIT, tcp.read(&mut b))
            .await
            .expect("response in time")
            .unwrap_or(0);
        if n == 0 {
            return None;
        }
        head.push(b[0]);
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

/// An upgrade attempt's outcome: the socket after its 101, or the refusal's status line.
enum Upgrade {
    Open(TcpStream),
    Refused(String),
    /// The connection was closed without a response.
    Closed,
}

/// Sends an upgrade request (browser Origin, optional bearer token and extra headers) on
/// `tcp`, after `prefix` (a PROXY header, say).
async fn upgrade_on(
    mut tcp: TcpStream,
    prefix: &[u8],
    bearer: Option<&str>,
    headers: &[(&str, &str)],
) -> Upgrade {
    let auth = bearer.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let req = format!(
        "GET /v1/ws HTTP/1.1\r\nHost: herald\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Origin: {ORIGIN}\r\n{auth}{extra}\r\n"
    );
    let mut bytes = prefix.to_vec();
    bytes.extend_from_slice(req.as_bytes());
    if tcp.write_all(&bytes).await.is_err() {
        return Upgrade::Closed;
    }
    match read_head(&mut tcp).await {
        None => Upgrade::Closed,
        Some(h) if h.starts_with("HTTP/1.1 101") => Upgrade::Open(tcp),
        Some(h) => Upgrade::Refused(h),
    }
}

/// Upgrades a raw TCP connection from 127.0.0.1 (with the browser's Origin, and a bearer
/// token when given) and returns it right after the 101.
pub async fn raw_upgrade(node: &TestNode, bearer: Option<&str>) -> TcpStream {
    match upgrade_on(connect_from(node, "127.0.0.1").await, &[], bearer, &[]).await {
        Upgrade::Open(tcp) => tcp,
        Upgrade::Refused(h) => panic!("upgrade refused: {h}"),
        Upgrade::Closed => panic!("upgrade: connection closed"),
    }
}

/// Reads server frames until a close frame; returns its code and reason.
pub async fn read_close<R: AsyncRead + Unpin>(tcp: &mut R) -> (u16, String) {
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
        .node_with(|c| {
            c.service_keys.push(OTHER_KEY.to_string().into());
            c.service_key_scopes.push(herald_gateway::auth::Scopes::ALL);
        })
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

/// A node whose edge limits are on (the shared test config turns them off for loopback).
async fn guarded_node(env: &TestEnv, tweak: impl FnOnce(&mut herald_gateway::Config)) -> TestNode {
    env.node_with(|c| {
        c.edge.limit_exempt = Default::default();
        tweak(c);
    })
    .await
}

fn status_of(head: &str) -> u16 {
    head.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Unauthenticated sockets have a small budget of their own and are evicted, oldest first,
/// when the node is full: 20 of them renewed by an attacker no longer lock a valid client out
/// of a node capped at 20 sockets (before, the valid client got 503 until they timed out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_sockets_cannot_lock_out_a_valid_client() {
    let env = TestEnv::new().await;
    let node = env
        .node_with(|c| {
            c.max_connections = 20;
            c.edge.max_preauth_sockets = 5;
        })
        .await;
    // The attacker's sockets: never authenticated. Only 5 fit the budget; each new one
    // evicts the oldest with 4102.
    let mut attackers = Vec::new();
    for _ in 0..20 {
        attackers.push(raw_upgrade(&node, None).await);
    }
    let (code, reason) = tokio::time::timeout(WAIT, read_close(&mut attackers[0]))
        .await
        .expect("the oldest unauthenticated socket is evicted");
    assert_eq!(code, 4102, "{reason}");
    assert!(reason.contains("evicted"), "{reason}");
    // A full node (filled with authenticated sockets and the attacker's latest 5) still
    // admits a valid client: it evicts an unauthenticated socket instead of refusing.
    let mut users = Vec::new();
    for i in 0..15 {
        let mut ws = node.connect(&format!("u{i}")).await;
        ws.handshake().await;
        users.push(ws);
    }
    for _ in 0..5 {
        attackers.push(raw_upgrade(&node, None).await);
    }
    let mut valid = node.connect("alice").await;
    valid.handshake().await;
    node.publish_one("alice", "you got in").await;
    assert_eq!(valid.notifications_until(1).await.len(), 1);
}

/// Per client address: at most `max_sockets_per_addr` sockets and a handshake rate; other
/// addresses are not affected, and exempt addresses are not limited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_and_handshakes_are_limited_per_client_address() {
    let env = TestEnv::new().await;
    let node = guarded_node(&env, |c| {
        c.edge.max_sockets_per_addr = 3;
        c.edge.handshakes_per_addr = herald_core::rate::Rate::new(1, 5);
    })
    .await;
    let tok = token("alice", 3600);
    let mut held = Vec::new();
    for _ in 0..3 {
        match upgrade_on(connect_from(&node, "127.0.0.2").await, &[], Some(&tok), &[]).await {
            Upgrade::Open(t) => held.push(t),
            _ => panic!("within the per-address cap"),
        }
    }
    match upgrade_on(connect_from(&node, "127.0.0.2").await, &[], Some(&tok), &[]).await {
        Upgrade::Refused(h) => {
            assert_eq!(status_of(&h), 429, "{h}");
            assert!(h.to_ascii_lowercase().contains("retry-after"), "{h}");
        }
        _ => panic!("a fourth socket from one address must be refused"),
    }
    // Another address is a different client.
    assert!(matches!(
        upgrade_on(connect_from(&node, "127.0.0.3").await, &[], Some(&tok), &[]).await,
        Upgrade::Open(_)
    ));
    // Handshakes: 127.0.0.2 spent 4 of its burst of 5 (the refused one counted nothing, it
    // was over the socket cap first); close the sockets and try quickly: one more, then 429.
    drop(held);
    let mut results = Vec::new();
    for _ in 0..3 {
        let r = upgrade_on(connect_from(&node, "127.0.0.2").await, &[], Some(&tok), &[]).await;
        results.push(match r {
            Upgrade::Open(_) => 101,
            Upgrade::Refused(h) => status_of(&h),
            Upgrade::Closed => 0,
        });
    }
    assert!(results.contains(&429), "handshake rate: {results:?}");
    let limited = node
        .metric("herald_limited_total{limit=\"addr_handshakes\"}")
        .await;
    assert!(limited > 0, "handshake refusals are counted");
}

/// Behind a balancer the client address comes from `X-Forwarded-For`, believed only from a
/// trusted proxy, or from the PROXY protocol v2 header when the listener requires one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_address_comes_from_trusted_proxies_only() {
    let env = TestEnv::new().await;
    let tok = token("alice", 3600);
    let node = guarded_node(&env, |c| {
        c.edge.max_sockets_per_addr = 1;
        c.edge.trusted_proxies =
            herald_gateway::edge::addr::Cidrs::parse(&["127.0.0.1"]).expect("cidrs");
    })
    .await;
    let via_proxy = |client: &'static str| {
        let node = &node;
        let tok = tok.clone();
        async move {
            let tcp = connect_from(node, "127.0.0.1").await;
            upgrade_on(tcp, &[], Some(&tok), &[("X-Forwarded-For", client)]).await
        }
    };
    // Two clients behind the trusted proxy: one socket each.
    let a = via_proxy("203.0.113.1").await;
    let b = via_proxy("203.0.113.2").await;
    assert!(matches!(a, Upgrade::Open(_)) && matches!(b, Upgrade::Open(_)));
    // The same client again: over its cap of 1.
    assert!(matches!(via_proxy("203.0.113.1").await, Upgrade::Refused(h) if status_of(&h) == 429));
    // From an untrusted peer the header is ignored: 127.0.0.2 itself is the client, so
    // claiming a fresh address gets it one socket, not one per claimed address.
    let forged = |claim: &'static str| {
        let node = &node;
        let tok = tok.clone();
        async move {
            let tcp = connect_from(node, "127.0.0.2").await;
            upgrade_on(tcp, &[], Some(&tok), &[("X-Forwarded-For", claim)]).await
        }
    };
    let first = forged("198.51.100.1").await;
    assert!(matches!(first, Upgrade::Open(_)));
    assert!(matches!(forged("198.51.100.2").await, Upgrade::Refused(h) if status_of(&h) == 429));
    drop((a, b, first));

    // PROXY protocol: the header's source is the client; no header, no service.
    let node = guarded_node(&env, |c| {
        c.edge.max_sockets_per_addr = 1;
        c.edge.proxy_protocol = true;
    })
    .await;
    let dst: std::net::SocketAddr = node
        .base
        .trim_start_matches("http://")
        .parse()
        .expect("addr");
    let proxied = |src: &'static str| {
        let node = &node;
        let tok = tok.clone();
        async move {
            let header = herald_gateway::edge::proxy::encode(src.parse().expect("src"), dst);
            upgrade_on(
                connect_from(node, "127.0.0.1").await,
                &header,
                Some(&tok),
                &[],
            )
            .await
        }
    };
    let c1 = proxied("198.51.100.7:4000").await;
    let c2 = proxied("198.51.100.8:4000").await;
    assert!(matches!(c1, Upgrade::Open(_)) && matches!(c2, Upgrade::Open(_)));
    assert!(
        matches!(proxied("198.51.100.7:4001").await, Upgrade::Refused(h) if status_of(&h) == 429)
    );
    let bare = upgrade_on(connect_from(&node, "127.0.0.1").await, &[], Some(&tok), &[]).await;
    assert!(
        matches!(bare, Upgrade::Closed),
        "a connection without a PROXY header is closed"
    );
}

/// A slow-body flood (a body trickled in, as one user's token held 720 connections open)
/// neither outlives the whole-request timeout nor stops `/healthz` answering on the same node;
/// connections over the per-address cap are refused at accept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_body_flood_times_out_and_healthz_keeps_answering() {
    let env = TestEnv::new().await;
    let node = guarded_node(&env, |c| {
        c.edge.request_timeout = Duration::from_millis(1_500);
        c.edge.max_http_connections_per_addr = 50;
    })
    .await;
    // 80 connections from one address, each announcing a 1 KiB body and sending 1 byte.
    let mut slow = Vec::new();
    for _ in 0..80 {
        let mut tcp = connect_from(&node, "127.0.0.2").await;
        let head = format!(
            "POST /v1/notifications HTTP/1.1\r\nHost: herald\r\nAuthorization: Bearer {SERVICE_KEY}\r\n\
             Content-Type: application/json\r\nContent-Length: 1024\r\n\r\n{{"
        );
        let _ = tcp.write_all(head.as_bytes()).await;
        slow.push(tcp);
    }
    // Meanwhile /healthz from another address answers, promptly.
    let started = Instant::now();
    let r = node
        .http
        .get(format!("{}/healthz", node.base))
        .send()
        .await
        .expect("healthz during the flood");
    assert_eq!(r.status(), 200);
    let healthz = started.elapsed();
    // Every slow connection ends: 30 refused at accept (429), 50 answered 408 at the timeout.
    let mut statuses = Vec::new();
    for mut tcp in slow {
        let head = tokio::time::timeout(WAIT, read_head(&mut tcp))
            .await
            .expect("every slow connection is answered within the wait");
        statuses.push(head.as_deref().map_or(0, status_of));
    }
    let refused = statuses.iter().filter(|s| **s == 429).count();
    let timed_out = statuses.iter().filter(|s| **s == 408).count();
    assert_eq!((refused, timed_out), (30, 50), "{statuses:?}");
    eprintln!("healthz during the flood: {healthz:?}");
    assert_no_rows(&env).await;
}

async fn notification_count(env: &TestEnv) -> i64 {
    env.sql()
        .await
        .query_one("SELECT count(*) FROM notifications", &[])
        .await
        .expect("count")
        .get(0)
}

async fn assert_no_rows(env: &TestEnv) {
    let n = notification_count(env).await;
    assert_eq!(n, 0, "a refused request stored a notification");
}

/// Token buckets per user (user API), per service key (publish) and for broadcasts: 429
/// `rate_limited` with `Retry-After`, and one user's hammering leaves another's budget alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_rate_limits_per_user_and_per_service_key() {
    use herald_core::rate::Rate;
    let env = TestEnv::new().await;
    let node = guarded_node(&env, |c| {
        c.edge.user_api = Rate::new(1, 5);
        c.edge.publish = Rate::new(1, 3);
        c.edge.broadcast = Rate::new(1, 2);
    })
    .await;
    let (alice, bob) = (token("alice", 3600), token("bob", 3600));
    let mut codes = Vec::new();
    for _ in 0..8 {
        let r = node.get("/v1/notifications/unread-count", &alice).await;
        if r.status() == 429 {
            let retry = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            assert_eq!(retry.as_deref(), Some("1"));
            let v: serde_json::Value = r.json().await.expect("json");
            assert_eq!(v["code"], "rate_limited");
            codes.push(429);
        } else {
            codes.push(r.status().as_u16());
        }
    }
    assert_eq!(codes.iter().filter(|c| **c == 200).count(), 5, "{codes:?}");
    let r = node.get("/v1/notifications/unread-count", &bob).await;
    assert_eq!(
        r.status(),
        200,
        "another user is not limited by alice's requests"
    );

    let mut publishes = Vec::new();
    for i in 0..5 {
        let r = node
            .publish(&notification_body("carol", &format!("p{i}")))
            .await;
        publishes.push(r.status().as_u16());
    }
    assert_eq!(publishes, [201, 201, 201, 429, 429]);

    let mut broadcasts = Vec::new();
    for _ in 0..4 {
        let r = node
            .http
            .post(format!("{}/v1/broadcasts", node.base))
            .bearer_auth(SERVICE_KEY)
            .json(&serde_json::json!({ "type": "system", "title": "hello" }))
            .send()
            .await
            .expect("broadcast");
        broadcasts.push(r.status().as_u16());
    }
    assert_eq!(broadcasts, [202, 202, 429, 429]);
    let n = notification_count(&env).await;
    assert_eq!(n, 3, "refused publishes stored nothing");
}

/// A refused upgrade answers `Connection: close`, as the protocol says, also for requests
/// that ask for an upgrade without `Upgrade: websocket` (none at all, or `h2c`): the
/// connection is not left in an upgrade state the client might try to use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_upgrades_answer_connection_close() {
    let env = TestEnv::new().await;
    let node = env.node().await;
    for extra in [
        "Connection: Upgrade\r\n",
        "Connection: Upgrade\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n",
        "Connection: Upgrade\r\nUpgrade: websocket\r\n",
    ] {
        let mut tcp = connect_from(&node, "127.0.0.1").await;
        let req = format!("GET /v1/ws HTTP/1.1\r\nHost: herald\r\nOrigin: {ORIGIN}\r\n{extra}\r\n");
        tcp.write_all(req.as_bytes()).await.expect("send");
        let head = read_head(&mut tcp).await.expect("a response");
        assert_eq!(status_of(&head), 400, "{extra:?}: {head}");
        let lower = head.to_ascii_lowercase();
        assert!(
            lower.contains("\r\nconnection: close\r\n"),
            "{extra:?}: expected Connection: close in {head}"
        );
    }
}
