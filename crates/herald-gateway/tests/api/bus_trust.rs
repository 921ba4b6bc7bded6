//! Frames published to Redis by hand: envelope checks, seqs checked against PostgreSQL, the
//! node key, and a password-protected Redis with ACL users.

use std::time::Duration;

use herald_protocol::bus::{BusKey, BusMessage, LiveFrame};
use herald_protocol::ws::ServerMessage;
use herald_protocol::Notification;
use secrecy::SecretString;
use serde_json::json;

use crate::helpers::*;

const BUS_KEY: &str = "test-bus-key-0123456789abcdef0123456789";

async fn redis_publish(url: &str, channel: &str, payload: &[u8]) -> i64 {
    let client = redis::Client::open(url).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("PUBLISH")
        .arg(channel)
        .arg(payload)
        .query_async(&mut c)
        .await
        .unwrap()
}

/// A notification event as a node would render it, with a hostile link and counters.
fn forged(user: &str, seq: i64) -> BusMessage {
    let notification: Notification = serde_json::from_value(json!({
        "id": uuid::Uuid::new_v4(), "user_id": user, "seq": seq, "type": "t",
        "title": "forged", "body": "", "link": "javascript:alert(1)", "avatar_url": null,
        "data": null, "created_at": "2024-01-01T00:00:00Z", "delivered_at": null,
        "read_at": null
    }))
    .unwrap();
    BusMessage::Live(LiveFrame::render(notification, 999, i64::MAX))
}

fn rejected(reason: &str) -> String {
    format!("herald_bus_frames_rejected_total{{reason=\"{reason}\"}}")
}

/// Polls the node's metric until it reaches `want` (bounded by [`WAIT`]).
async fn wait_metric(node: &TestNode, name: &str, want: i64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let got = node.metric(name).await;
        if got >= want {
            assert_eq!(got, want, "{name}");
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} stayed at {got}, expected {want}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Reads events until the notification with seq `upto`; every one must be a live
/// `notification` (no resync, no batch).
async fn live_until(ws: &mut Ws, upto: i64) -> Vec<Notification> {
    let mut got: Vec<Notification> = Vec::new();
    while got.last().map_or(0, |n| n.seq) < upto {
        match ws.event().await {
            ServerMessage::Notification { notification, .. } => got.push(notification),
            other => panic!("expected live notifications, got {other:?}"),
        }
    }
    got
}

/// The forged frames pass every envelope check (right user, header and frame agree) but
/// carry seqs PostgreSQL does not have: far ahead (`99999999999999999`, beyond
/// `max_resume_gap`) and a little ahead (a gap the socket would fill). Neither moves the
/// socket's cursor: the real notifications that follow arrive live, in order, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_seq_ahead_of_the_store_does_not_stop_the_live_stream() {
    let env = TestEnv::new().await;
    // No reconcile during the test: what reaches the socket came over the bus.
    let a = env
        .node_with(|c| c.reconcile_interval = Duration::from_secs(3600))
        .await;
    let mut ws = a.connect("alice").await;
    ws.handshake().await;
    assert_eq!(a.publish_one("alice", "one").await, 1);
    assert_seqs(&live_until(&mut ws, 1).await, 1, 1);

    let channel = format!("{}user:alice", env.prefix);
    for seq in [99_999_999_999_999_999, 4] {
        assert_eq!(
            redis_publish(&redis_url(), &channel, &forged("alice", seq).encode()).await,
            1
        );
    }
    // Both forged frames are dropped before anything real is published: otherwise the store
    // read that checks the little-ahead one could already find seq 2 and deliver it in a
    // gap-fill batch (once and in order, but not live, which this test asserts).
    wait_metric(&a, &rejected("seq_not_committed"), 2).await;
    for i in 2..=6 {
        assert_eq!(a.publish_one("alice", &format!("real {i}")).await, i);
    }
    let got = live_until(&mut ws, 6).await;
    assert_seqs(&got, 2, 6);
    assert!(got.iter().all(|n| n.title.starts_with("real")));
    assert!(
        ws.next_within(Duration::from_millis(200)).await.is_none(),
        "nothing else reaches the socket"
    );
    wait_metric(&a, &rejected("seq_not_committed"), 2).await;
}

/// Frames that fail the envelope check never reach the socket and are counted by reason:
/// another user's notification, a header seq the frame does not carry, the JSON notification
/// of earlier nodes, and undecodable bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bus_frames_failing_the_envelope_check_are_dropped_and_counted() {
    let env = TestEnv::new().await;
    let a = env
        .node_with(|c| c.reconcile_interval = Duration::from_secs(3600))
        .await;
    let mut ws = a.connect("erin").await;
    ws.handshake().await;
    let channel = format!("{}user:erin", env.prefix);
    let BusMessage::Live(mut lying) = forged("erin", 1) else {
        unreachable!()
    };
    lying.seq = 2;
    let legacy = json!({
        "k": "notification", "notification": {"user_id": "erin", "seq": 1},
        "unread_count": 1, "version": 1
    });
    let payloads: Vec<Vec<u8>> = vec![
        forged("bob", 1).encode(),
        BusMessage::Live(lying).encode(),
        legacy.to_string().into_bytes(),
        b"L2\n{\"type\":\"read\"}".to_vec(),
        b"Lx\nnot a frame".to_vec(),
    ];
    for p in &payloads {
        assert_eq!(redis_publish(&redis_url(), &channel, p).await, 1);
    }
    wait_metric(&a, &rejected("malformed"), 4).await;
    wait_metric(&a, &rejected("wrong_user"), 1).await;
    assert!(
        ws.next_within(Duration::from_millis(200)).await.is_none(),
        "a rejected bus frame reached the socket"
    );
    assert_eq!(a.publish_one("erin", "real").await, 1);
    let got = live_until(&mut ws, 1).await;
    assert_eq!(got[0].title, "real");
}

/// With `HERALD_BUS_HMAC_KEY` on every node, a frame without the key's tag is dropped even
/// when it is otherwise perfect (the next seq, the right user), and so is a forged read event;
/// notifications published by the nodes still cross from one node to the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_node_key_forged_frames_are_not_delivered() {
    let env = TestEnv::new().await;
    let keyed = |c: &mut herald_gateway::Config| {
        c.bus_hmac_key = Some(SecretString::from(BUS_KEY));
        c.reconcile_interval = Duration::from_secs(3600);
    };
    let a = env.node_with(keyed).await;
    let b = env.node_with(keyed).await;
    let mut ws = a.connect("frank").await;
    ws.handshake().await;

    let channel = format!("{}user:frank", env.prefix);
    let next = forged("frank", 1);
    let other_key = BusKey::new(b"another-key-another-key-another-key!").unwrap();
    let read = json!({
        "k": "read", "ids": [], "up_to_seq": null, "read_at": "2024-01-01T00:00:00Z",
        "unread_count": 0, "version": i64::MAX
    });
    let payloads: Vec<Vec<u8>> = vec![
        next.encode(),
        next.encode_for(&channel, Some(&other_key)),
        read.to_string().into_bytes(),
    ];
    for p in &payloads {
        assert_eq!(redis_publish(&redis_url(), &channel, p).await, 1);
    }
    wait_metric(&a, &rejected("missing_tag"), 2).await;
    wait_metric(&a, &rejected("bad_tag"), 1).await;
    assert!(
        ws.next_within(Duration::from_millis(200)).await.is_none(),
        "a forged frame reached the socket"
    );
    // Published through the other node: sealed there, opened here.
    assert_eq!(b.publish_one("frank", "real").await, 1);
    let got = live_until(&mut ws, 1).await;
    assert_eq!(got[0].title, "real");
    assert_eq!(a.metric(&rejected("malformed")).await, 0);
}

/// A Redis whose default user is off and whose gateway user has a password and only the
/// prefix's channels: both nodes' pool and subscriber connections authenticate, a
/// notification crosses from one node to the other, and `/readyz` sees Redis. A wrong password
/// fails the node's start with an error that names the refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_protected_redis_with_an_acl_user_serves_the_cluster() {
    let env = TestEnv::with_redis(None).await;
    let channels = format!("&{}*", env.prefix);
    let redis = PrivateRedis::start_with(&[
        "--user",
        "default",
        "off",
        "--user",
        "herald",
        "on",
        ">gw-pass-0123",
        "resetchannels",
        &channels,
        "+publish",
        "+subscribe",
        "+unsubscribe",
        "+ping",
        "+client|setname",
    ])
    .await;
    let url = format!("redis://herald:gw-pass-0123@127.0.0.1:{}", redis.port);
    let with_url = |u: String| {
        move |c: &mut herald_gateway::Config| {
            c.redis_url = Some(SecretString::from(u));
            c.reconcile_interval = Duration::from_secs(3600);
        }
    };
    let a = env.node_with(with_url(url.clone())).await;
    let b = env.node_with(with_url(url.clone())).await;
    let mut ws = a.connect("gina").await;
    ws.handshake().await;
    assert_eq!(b.publish_one("gina", "over an authenticated bus").await, 1);
    assert_eq!(live_until(&mut ws, 1).await[0].seq, 1);
    let ready: serde_json::Value = a
        .http
        .get(format!("{}/readyz", a.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["redis"], true, "{ready}");

    let mut cfg = env.config();
    cfg.redis_url = Some(SecretString::from(format!(
        "redis://herald:wrong@127.0.0.1:{}",
        redis.port
    )));
    let started = std::time::Instant::now();
    let err = match herald_gateway::Application::build(cfg).await {
        Err(e) => format!("{e:#}"),
        Ok(_) => panic!("a node started with a wrong Redis password"),
    };
    assert!(started.elapsed() < WAIT);
    assert!(err.contains("HERALD_REDIS_URL"), "{err}");
    assert!(err.contains("WRONGPASS"), "{err}");
    assert!(
        !err.contains("wrong@"),
        "the URL's password is not in the error: {err}"
    );
}

/// A gap must not stall a socket's queue (a fast reader was closed with 4100): notifications
/// 2..=40 reach the node before 1, and the store read that fills the gap is held up (the test
/// locks the table). The socket keeps taking live frames into its reorder buffer (smaller
/// than the burst: the overflow is read from the store), and once the read answers, the
/// client gets 1..=40 in order, each once, and stays connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_gap_fill_does_not_close_a_fast_reader() {
    const N: i64 = 40;
    let env = TestEnv::new().await;
    // Publishes commit without a fan-out: the test sends the frames itself, out of order.
    let a = env
        .node_with(|c| {
            c.reconcile_interval = Duration::from_secs(3600);
            c.outbound_queue = 16;
            c.fault_skip_fanout = true;
        })
        .await;
    let mut ws = a.connect("gus").await;
    ws.handshake().await;
    for i in 1..=N {
        assert_eq!(a.publish_one("gus", &format!("n{i}")).await, i);
    }
    let page: herald_protocol::http::NotificationPage = a
        .get("/v1/notifications?after=0&limit=100", &token("gus", 600))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page.notifications.len() as i64, N);
    let frames: Vec<(i64, Vec<u8>)> = page
        .notifications
        .into_iter()
        .map(|n| (n.seq, BusMessage::Live(LiveFrame::render(n, 0, 0)).encode()))
        .collect();

    // Hold every read of the table until the burst is in.
    let mut sql = env.sql().await;
    let lock = sql.transaction().await.unwrap();
    lock.batch_execute("LOCK TABLE notifications IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let received = a.metric("herald_bus_messages_received_total").await;
    let channel = format!("{}user:gus", env.prefix);
    for (_, f) in frames.iter().skip(1).chain(frames.iter().take(1)) {
        assert_eq!(redis_publish(&redis_url(), &channel, f).await, 1);
    }
    wait_metric(&a, "herald_bus_messages_received_total", received + N).await;
    // The node has offered all 40 to the socket; a queue stalled behind the gap read would
    // have overflowed (16) and killed it by now. Give a stalled queue a moment to show it.
    assert!(
        ws.next_within(Duration::from_millis(300)).await.is_none(),
        "nothing is written while the gap read waits"
    );
    lock.rollback().await.unwrap();

    let got = ws.notifications_until(N).await;
    assert_seqs(&got, 1, N);
    assert!(
        ws.next_within(Duration::from_millis(200)).await.is_none(),
        "nothing else reaches the socket"
    );
    assert_eq!(
        a.metric("herald_connection_closes_total{reason=\"slow_consumer\"}")
            .await,
        0
    );
}
