//! Faults injected into one node's dependencies through a proxy or a private server, with the
//! delivery invariant checked afterwards: every acknowledged notification is in PostgreSQL and
//! every connected client ends up with exactly its user's notifications, once each, in order.

use std::time::{Duration, Instant};

use herald_protocol::ws::ServerMessage;
use serde_json::{json, Value};

use crate::helpers::*;

fn pg_port() -> u16 {
    let url = admin_url();
    url.rsplit_once(':')
        .and_then(|(_, rest)| rest.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or(5432)
}

/// PostgreSQL unreachable: publishes fail fast with 503 and fan out nothing; sockets stay
/// open; after recovery everything is consistent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_publish_fails_fast_sockets_stay_open_then_consistent() {
    let env = TestEnv::new().await;
    let proxy = FaultProxy::start(pg_port()).await;
    let a = env
        .node_with(|c| {
            c.database_url = format!(
                "postgres://postgres@127.0.0.1:{}/{}",
                proxy.port, env.db_name
            )
            .into();
            c.database_timeout = Duration::from_millis(500);
        })
        .await;
    let mut ws = a.connect("pat").await;
    ws.handshake().await;
    a.publish_one("pat", "before").await;
    assert_seqs(&ws.notifications_until(1).await, 1, 1);

    proxy.set(CUT);
    for _ in 0..3 {
        let started = Instant::now();
        let r = a.publish(&notification_body("pat", "during")).await;
        assert_eq!(r.status(), 503);
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["code"], "service_unavailable");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "publish did not fail fast"
        );
    }
    let (status, body) = a.ready_until("unavailable").await;
    assert_eq!((status, body["postgres"].as_bool()), (503, Some(false)));
    // The socket is still open and answers what does not need the store...
    ws.send(json!({ "type": "ping", "rid": 1 })).await;
    assert!(matches!(ws.event().await, ServerMessage::Ack { .. }));
    // ...and refuses what does, without closing.
    ws.send(json!({ "type": "get_unread_count", "rid": 2 }))
        .await;
    match ws.event().await {
        ServerMessage::Error { code, .. } => assert_eq!(code.as_str(), "service_unavailable"),
        other => panic!("{other:?}"),
    }
    // Nothing was fanned out for the refused publishes.
    assert!(ws.next_within(Duration::from_millis(300)).await.is_none());

    proxy.set(PASS);
    let deadline = Instant::now() + WAIT;
    loop {
        let r = a.publish(&notification_body("pat", "after")).await;
        if r.status() == 201 {
            break;
        }
        assert!(Instant::now() < deadline, "publishing never recovered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_seqs(&ws.notifications_until(2).await, 2, 2);
    let n: i64 = env
        .sql()
        .await
        .query_one("SELECT count(*) FROM notifications", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2, "a refused publish left a row behind");
}

/// A Redis link that stays connected but silently drops messages is detected by the probe,
/// re-established, and the gap is caught up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackholed_redis_link_is_detected_by_the_probe_and_repaired() {
    let redis = PrivateRedis::start().await;
    let env = TestEnv::with_redis(Some(redis.url())).await;
    let proxy = FaultProxy::start(redis.port).await;
    let a = env
        .node_with(|c| c.redis_url = Some(format!("redis://127.0.0.1:{}", proxy.port).into()))
        .await;
    let b = env.node().await;
    let mut ws = a.connect("quinn").await;
    ws.handshake().await;
    proxy.set(BLACKHOLE);
    for i in 1..=5 {
        b.publish_one("quinn", &format!("{i}")).await;
    }
    // Let the probe notice (timeout 1.5 s in tests), then heal the path for the reconnect.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    proxy.set(PASS);
    assert_seqs(&ws.notifications_until(5).await, 1, 5);
    b.publish_one("quinn", "live again").await;
    assert_seqs(&ws.notifications_until(6).await, 6, 6);
}

/// A consumer that stops reading is cut off with 4100 while another user's socket on the same
/// node keeps receiving; on reconnect it catches up with nothing lost or repeated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_is_disconnected_others_unaffected_and_it_catches_up() {
    let env = TestEnv::new().await;
    let a = env
        .node_with(|c| {
            c.outbound_queue = 64;
            c.max_resume_gap = 5000;
        })
        .await;
    let mut slow = a.connect("sloth").await;
    slow.handshake().await;
    let mut fast = a.connect("hare").await;
    fast.handshake().await;
    // Large notifications so the kernel buffers fill and the queue overflows.
    let big = "x".repeat(3900);
    // ~6 MB for the slow reader: more than the kernel buffers between it and the node.
    let total = 1500;
    let mut handles = vec![];
    for w in 0..3 {
        let base = a.base.clone();
        let big = big.clone();
        handles.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            for i in 0..total / 3 {
                let r = http
                    .post(format!("{base}/v1/notifications"))
                    .bearer_auth(SERVICE_KEY)
                    .json(&json!({ "recipients": ["sloth", "hare"], "type": "load.test", "title": format!("{w}-{i}"), "body": big }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 201);
            }
        }));
    }
    // The fast reader gets everything while the slow one is not reading.
    let got = fast.notifications_until(total as i64).await;
    assert_seqs(&got, 1, total as i64);
    for h in handles {
        h.await.unwrap();
    }
    // The close frame (4100) is queued behind megabytes the client never read, so the
    // client may see the TCP connection end first (1006); the server counts it either way.
    let (code, _) = slow.expect_close().await;
    assert!(code == 4100 || code == 1006, "unexpected close {code}");
    assert!(
        a.metric("herald_connection_closes_total{reason=\"slow_consumer\"}")
            .await
            >= 1,
        "the server did not close the slow consumer"
    );
    // It reconnects with the last seq it holds (here: none read) and catches up completely.
    let mut again = a.connect_browser(&token("sloth", 3600), Some(0)).await;
    let (_, caught) = again.handshake().await;
    assert_seqs(&caught, 1, total as i64);
}

/// Redis drops a subscriber whose output buffer overflows (client-output-buffer-limit
/// pubsub): the node notices, re-subscribes and catches its sockets up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_dropping_a_slow_subscriber_is_repaired() {
    let redis = PrivateRedis::start().await;
    let client = redis::Client::open(redis.url()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("client-output-buffer-limit")
        .arg("pubsub 256kb 64kb 1")
        .query_async(&mut c)
        .await
        .unwrap();
    let env = TestEnv::with_redis(Some(redis.url())).await;
    let proxy = FaultProxy::start(redis.port).await;
    // A long probe, so that only Redis's buffer limit can detect the stalled subscriber.
    let a = env
        .node_with(|c| {
            c.redis_url = Some(format!("redis://127.0.0.1:{}", proxy.port).into());
            c.probe_interval = Duration::from_secs(30);
            c.probe_timeout = Duration::from_secs(60);
            // Room for the whole burst, so this test isolates the Redis fault.
            c.outbound_queue = 4096;
        })
        .await;
    let b = env.node().await;
    let mut ws = a.connect("ursula").await;
    ws.handshake().await;
    // Node a stops reading its subscriber connection while a burst arrives for its user:
    // Redis's output buffer for that subscriber grows past the limit and Redis drops it.
    // Publish until Redis's own client list no longer shows node a's named subscriber.
    proxy.set(STALL);
    let sub_name = format!("herald-sub:{}", a.handle.node_id());
    let big = "y".repeat(4000);
    let mut published = 0;
    let mut dropped = false;
    while published < 12_000 && !dropped {
        for _ in 0..200 {
            published += 1;
            let r = b
                .publish(&json!({ "recipient": "ursula", "type": "load.burst", "title": format!("{published}"), "body": big }))
                .await;
            assert_eq!(r.status(), 201);
        }
        let clients: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query_async(&mut c)
            .await
            .unwrap();
        dropped = !clients.contains(&sub_name);
    }
    assert!(
        dropped,
        "Redis never dropped the stalled subscriber after {published} publishes"
    );
    proxy.set(PASS);
    // The node sees the closed connection, reconnects, re-subscribes and catches the socket
    // up: nothing lost or repeated.
    let got = ws.notifications_until(published).await;
    assert_seqs(&got, 1, published);
    // The catch-up may come from the reconcile loop before the bus's reconnect (backoff)
    // completes; the node must still reconnect its subscriber.
    let deadline = Instant::now() + WAIT;
    while a.metric("herald_bus_reconnects_total").await < 1 {
        assert!(
            Instant::now() < deadline,
            "the node never reconnected its dropped subscriber"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    b.publish_one("ursula", "after").await;
    assert_seqs(
        &ws.notifications_until(published + 1).await,
        published + 1,
        published + 1,
    );
}

/// The injectable failure point: commit, then skip the fan-out as a crash would. The online
/// client still receives it within the reconcile interval, not only at its next reconnect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_between_commit_and_publish_still_reaches_the_client() {
    let env = TestEnv::new().await;
    let crashing = env.node_with(|c| c.fault_skip_fanout = true).await;
    let a = env.node().await;
    let mut ws = a.connect("rita").await;
    ws.handshake().await;
    let started = Instant::now();
    crashing.publish_one("rita", "lost on the fast path").await;
    assert_seqs(&ws.notifications_until(1).await, 1, 1);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        ws.next_within(Duration::from_millis(1500)).await.is_none(),
        "delivered twice"
    );
}

/// Notifications committed in the window between a socket's subscribe and its catch-up query
/// (widened to 500 ms by fault injection) arrive by both paths and are written exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_between_subscribe_and_catch_up_is_delivered_exactly_once() {
    let env = TestEnv::new().await;
    let a = env
        .node_with(|c| c.fault_catch_up_delay = Duration::from_millis(500))
        .await;
    let b = env.node().await;
    b.publish_one("sam", "before").await;
    let connecting = {
        let ws_url = a.ws.clone();
        tokio::spawn(async move {
            use tokio_tungstenite::tungstenite::client::IntoClientRequest;
            let mut req = ws_url.into_client_request().unwrap();
            req.headers_mut().insert(
                "authorization",
                format!("Bearer {}", token("sam", 3600)).parse().unwrap(),
            );
            tokio_tungstenite::connect_async(req).await.unwrap().0
        })
    };
    // Wait until node a holds the subscription, then publish inside the window.
    let deadline = Instant::now() + WAIT;
    while a.handle.subscribed_users() == 0 {
        assert!(Instant::now() < deadline, "never subscribed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for i in 2..=4 {
        b.publish_one("sam", &format!("in the window {i}")).await;
    }
    let mut ws = Ws {
        stream: connecting.await.unwrap(),
    };
    let (_, caught) = ws.handshake().await;
    let mut got = caught;
    if got.last().map(|n| n.seq) != Some(4) {
        got.extend(ws.notifications_until(4).await);
    }
    assert_seqs(&got, 1, 4);
    assert!(
        ws.next_within(Duration::from_millis(500)).await.is_none(),
        "a duplicate followed"
    );
}

/// A hung Redis (SIGSTOP) holds neither publish acknowledgements nor readiness: the rows are
/// committed, so a publish is answered once the fan-out wait has passed and the fan-out goes
/// on in the background; `/readyz` answers from the node's last check. Once Redis thaws, the
/// client has every notification once, in order (late fan-out or reconcile).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_redis_holds_neither_publish_acks_nor_readiness() {
    let redis = PrivateRedis::start().await;
    let env = TestEnv::with_redis(Some(redis.url())).await;
    let a = env
        .node_with(|c| c.reconcile_interval = Duration::from_millis(500))
        .await;
    let mut ws = a.connect("hana").await;
    ws.handshake().await;
    let late = "herald_fanout_late_total{outcome=\"continued\"}";
    assert_eq!(a.metric(late).await, 0);

    redis.pause();
    let hang = Instant::now();
    // Well above the fan-out wait (50 ms) and the readiness answer (no round trip), well
    // below the bus's 3 s publish timeout that used to hold every acknowledgement.
    let bound = Duration::from_millis(1_000);
    for i in 1..=5 {
        let t = Instant::now();
        assert_eq!(a.publish_one("hana", &format!("{i}")).await, i);
        assert!(t.elapsed() < bound, "publish {i} took {:?}", t.elapsed());
        let t = Instant::now();
        let ready = a
            .http
            .get(format!("{}/readyz", a.base))
            .send()
            .await
            .unwrap();
        assert!(t.elapsed() < bound, "/readyz took {:?}", t.elapsed());
        assert_eq!(
            ready.status(),
            200,
            "Redis alone does not take the node out"
        );
    }
    assert!(a.metric(late).await >= 1, "the fan-outs were late");
    // The health check notices the hang (ping timeout) and reports the node degraded.
    let (status, body) = a.ready_until("degraded").await;
    assert_eq!((status, body["redis"].as_bool()), (200, Some(false)));
    // Hold the hang a little longer than the late publishes' own timeout would allow a
    // stalled acknowledgement to hide, then thaw.
    tokio::time::sleep_until((hang + Duration::from_millis(2_500)).into()).await;
    redis.resume();
    assert_seqs(&ws.notifications_until(5).await, 1, 5);
    assert!(
        ws.next_within(Duration::from_millis(300)).await.is_none(),
        "nothing twice"
    );
}
