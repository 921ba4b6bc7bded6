//! The data path: publish on any node, every socket of the user on every node gets each
//! notification exactly once, in order; offline users and resuming clients catch up.

use std::time::Duration;

use herald_protocol::ws::{ResyncReason, ServerMessage};
use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_tabs_on_two_nodes_get_each_notification_once_in_order() {
    let env = TestEnv::new().await;
    let a = env.node().await;
    let b = env.node().await;
    let mut tab1 = a.connect("alice").await;
    let mut tab2 = a.connect("alice").await;
    let mut tab3 = b.connect("alice").await;
    let mut bob = b.connect("bob").await;
    for ws in [&mut tab1, &mut tab2, &mut tab3, &mut bob] {
        let (_, pending) = ws.handshake().await;
        assert!(pending.is_empty());
    }
    // One Redis subscription per user per node, however many tabs.
    assert_eq!(a.handle.subscribed_users(), 1);
    assert_eq!(b.handle.subscribed_users(), 2);

    for i in 1..=20 {
        let seq = b.publish_one("alice", &format!("n{i}")).await;
        assert_eq!(seq, i);
    }
    for ws in [&mut tab1, &mut tab2, &mut tab3] {
        let got = ws.notifications_until(20).await;
        assert_seqs(&got, 1, 20);
        assert_eq!(got[4].title, "n5");
        assert!(got.iter().all(|n| n.user_id == "alice"));
        // Nothing more arrives: no duplicates trail behind.
        assert!(
            ws.next_within(Duration::from_millis(300)).await.is_none(),
            "unexpected extra message"
        );
    }
    // Bob got nothing of Alice's.
    assert!(bob.next_within(Duration::from_millis(200)).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_events_carry_unread_count_and_version() {
    let env = TestEnv::new().await;
    let a = env.node().await;
    let mut ws = a.connect("u1").await;
    ws.handshake().await;
    a.publish_one("u1", "one").await;
    a.publish_one("u1", "two").await;
    let mut counts = vec![];
    while counts.len() < 2 {
        if let ServerMessage::Notification {
            unread_count,
            version,
            ..
        } = ws.event().await
        {
            counts.push((unread_count, version));
        }
    }
    assert_eq!(counts, vec![(1, 1), (2, 2)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_user_gets_everything_on_connect_then_nothing_twice() {
    let env = TestEnv::new().await;
    let a = env.node().await;
    for i in 1..=5 {
        a.publish_one("carol", &format!("offline {i}")).await;
    }
    let mut ws = a.connect("carol").await;
    let (connected, pending) = ws.handshake().await;
    match connected {
        ServerMessage::Connected {
            latest_seq,
            unread_count,
            resume_from,
            ..
        } => {
            assert_eq!((latest_seq, unread_count, resume_from), (5, 5, 0));
        }
        other => panic!("{other:?}"),
    }
    assert_seqs(&pending, 1, 5);
    ws.close().await;

    // Delivery is recorded (batched); a new socket without a cursor then gets only what is
    // still undelivered: nothing.
    let sql = env.sql().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let row = sql
            .query_one(
                "SELECT delivered_seq, (SELECT count(*) FROM notifications n WHERE user_id='carol' \
                 AND NOT EXISTS (SELECT 1 FROM delivery_marks d WHERE d.user_id = n.user_id AND d.seq >= n.seq)) \
                 FROM user_state WHERE user_id='carol'",
                &[],
            )
            .await
            .unwrap();
        let (d, undelivered): (i64, i64) = (row.get(0), row.get(1));
        if d == 5 && undelivered == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "delivery never recorded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut again = a.connect("carol").await;
    let (_, pending) = again.handshake().await;
    assert!(
        pending.is_empty(),
        "already delivered notifications sent again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_from_seq_gets_exactly_the_rest() {
    let env = TestEnv::new().await;
    let a = env.node().await;
    for i in 1..=10 {
        a.publish_one("dave", &format!("{i}")).await;
    }
    let mut ws = a.connect_browser(&token("dave", 3600), Some(4)).await;
    let (_, got) = ws.handshake().await;
    assert_seqs(&got, 5, 10);
    // Also via the query parameter for header-authenticated clients.
    let mut ws2 = a
        .connect_opts(Some(&token("dave", 3600)), Some("last_seq=8"), &[])
        .await
        .unwrap();
    let (_, got) = ws2.handshake().await;
    assert_seqs(&got, 9, 10);
}

/// Notifications committed while the client connects arrive by catch-up or live (or both)
/// and are written exactly once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_during_concurrent_publishing_has_no_gap_and_no_duplicate() {
    let env = TestEnv::new().await;
    let a = env.node().await;
    let b = env.node().await;
    for i in 1..=20 {
        a.publish_one("erin", &format!("{i}")).await;
    }
    let total = 120;
    let publisher = {
        let base = a.base.clone();
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            for i in 21..=total {
                let r = http
                    .post(format!("{base}/v1/notifications"))
                    .bearer_auth(SERVICE_KEY)
                    .json(&notification_body("erin", &format!("{i}")))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 201);
            }
        })
    };
    // Several clients connect at different moments while publishing runs.
    let mut clients = vec![];
    for k in 0..4 {
        tokio::time::sleep(Duration::from_millis(15 * k)).await;
        let node = if k % 2 == 0 { &a } else { &b };
        clients.push((
            node.connect_browser(&token("erin", 3600), Some(10)).await,
            k,
        ));
    }
    for (ws, _) in clients.iter_mut() {
        let got = ws.notifications_until(total).await;
        assert_seqs(&got, 11, total);
    }
    publisher.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bogus_and_far_behind_cursors_are_answered_with_resync() {
    let env = TestEnv::new().await;
    let a = env
        .node_with(|c| {
            c.max_resume_gap = 5;
        })
        .await;
    for i in 1..=12 {
        a.publish_one("frank", &format!("{i}")).await;
    }
    // Ahead of the server: told so, then live from the real latest.
    let mut ws = a.connect_browser(&token("frank", 3600), Some(1_000)).await;
    assert!(matches!(ws.event().await, ServerMessage::Connected { .. }));
    match ws.event().await {
        ServerMessage::Resync { reason, latest_seq } => {
            assert_eq!((reason, latest_seq), (ResyncReason::CursorAhead, 12))
        }
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(ws.event().await, ServerMessage::Batch { complete: true, ref notifications, .. } if notifications.is_empty())
    );
    a.publish_one("frank", "13").await;
    assert_seqs(&ws.notifications_until(13).await, 13, 13);

    // Far behind (gap 13 > 5): resync, refetch over HTTP.
    let mut ws = a.connect_browser(&token("frank", 3600), Some(0)).await;
    assert!(matches!(ws.event().await, ServerMessage::Connected { .. }));
    assert!(matches!(
        ws.event().await,
        ServerMessage::Resync {
            reason: ResyncReason::GapTooLarge,
            latest_seq: 13
        }
    ));
    // Reconnect twice with nothing new: an empty, complete batch each time.
    for _ in 0..2 {
        let mut ws = a.connect_browser(&token("frank", 3600), Some(13)).await;
        let (_, got) = ws.handshake().await;
        assert!(got.is_empty());
    }
    // Reconnect before any notification exists.
    let mut ws = a.connect_browser(&token("nobody-yet", 3600), Some(0)).await;
    let (c, got) = ws.handshake().await;
    assert!(got.is_empty());
    assert!(matches!(c, ServerMessage::Connected { latest_seq: 0, .. }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_publish_returns_the_original_and_creates_nothing() {
    let env = TestEnv::new().await;
    let a = env.node().await;
    let mut body = notification_body("gina", "once");
    body["idempotency_key"] = json!("order-42-shipped");
    let r1 = a.publish(&body).await;
    assert_eq!(r1.status(), 201);
    let v1: Value = r1.json().await.unwrap();
    let r2 = a.publish(&body).await;
    assert_eq!(r2.status(), 200);
    assert_eq!(r2.headers()["idempotent-replayed"], "true");
    let v2: Value = r2.json().await.unwrap();
    assert_eq!(v1, v2);
    body["title"] = json!("different");
    let r3 = a.publish(&body).await;
    assert_eq!(r3.status(), 409);
    let e: Value = r3.json().await.unwrap();
    assert_eq!(e["code"], "idempotency_key_reused");
    let n: i64 = env
        .sql()
        .await
        .query_one("SELECT count(*) FROM notifications", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_publish_to_a_thousand_users() {
    let env = TestEnv::new().await;
    let a = env.node().await;
    let b = env.node().await;
    let mut w7 = b.connect("user-7").await;
    let mut w999 = a.connect("user-999").await;
    w7.handshake().await;
    w999.handshake().await;
    let users: Vec<String> = (0..1000).map(|i| format!("user-{i}")).collect();
    let r = a
        .publish(&json!({ "recipients": users, "type": "system.alert", "title": "maintenance" }))
        .await;
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    let items = v["notifications"].as_array().unwrap();
    assert_eq!(items.len(), 1000);
    assert!(items.iter().all(|i| i["seq"] == 1));
    for ws in [&mut w7, &mut w999] {
        let got = ws.notifications_until(1).await;
        assert_eq!(got[0].title, "maintenance");
    }
    let n: i64 = env
        .sql()
        .await
        .query_one("SELECT count(*) FROM notifications", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_reaches_every_socket_on_every_node() {
    let env = TestEnv::new().await;
    let a = env.node().await;
    let b = env.node().await;
    let mut s1 = a.connect("x1").await;
    let mut s2 = b.connect("x2").await;
    s1.handshake().await;
    s2.handshake().await;
    let r = a
        .http
        .post(format!("{}/v1/broadcasts", a.base))
        .bearer_auth(SERVICE_KEY)
        .json(&json!({ "type": "system.maintenance", "title": "Down at 5", "body": "brief" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["nodes"], 2);
    for ws in [&mut s1, &mut s2] {
        match ws.event().await {
            ServerMessage::Global { notification } => assert_eq!(notification.title, "Down at 5"),
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_without_redis_uses_the_in_process_bus() {
    let env = TestEnv::with_redis(None).await;
    let a = env.node().await;
    let mut t1 = a.connect("solo").await;
    let mut t2 = a.connect("solo").await;
    t1.handshake().await;
    t2.handshake().await;
    a.publish_one("solo", "hi").await;
    for ws in [&mut t1, &mut t2] {
        assert_seqs(&ws.notifications_until(1).await, 1, 1);
    }
}

/// Concurrent handshakes share batched `user_state` and catch-up page reads (`loader.rs`);
/// each socket still gets its own user's counters and exactly its own rows after its own
/// cursor, and unknown users get zeros.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_handshakes_each_get_their_own_counters_and_rows() {
    let env = TestEnv::new().await;
    let a = env.node().await;
    let users: Vec<String> = (0..40).map(|i| format!("storm-{i}")).collect();
    // storm-i has i % 6 notifications; storm-0, -6, ... have none (no user_state row).
    for (i, u) in users.iter().enumerate() {
        for k in 0..(i % 6) {
            a.publish_one(u, &format!("n{k}")).await;
        }
    }
    // Odd users resume from seq 1 (those with nothing stored get a cursor-ahead resync).
    let handshakes = users.iter().enumerate().map(|(i, u)| {
        let a = &a;
        async move {
            let cursor = (i % 2 == 1).then_some(1);
            let mut ws = match cursor {
                Some(c) => a.connect_browser(&token(u, 3600), Some(c)).await,
                None => a.connect(u).await,
            };
            let (connected, pending) = ws.handshake().await;
            ws.close().await;
            (connected, pending, cursor.unwrap_or(0))
        }
    });
    let results = futures_util::future::join_all(handshakes).await;
    for (i, (connected, pending, cursor)) in results.into_iter().enumerate() {
        let want = (i % 6) as i64;
        match connected {
            ServerMessage::Connected {
                latest_seq,
                unread_count,
                ..
            } => assert_eq!((latest_seq, unread_count), (want, want), "user {i}"),
            other => panic!("user {i}: {other:?}"),
        }
        let got: Vec<(String, i64)> = pending.iter().map(|n| (n.user_id.clone(), n.seq)).collect();
        let expected: Vec<(String, i64)> = ((cursor + 1)..=want)
            .map(|s| (users[i].clone(), s))
            .collect();
        assert_eq!(got, expected, "user {i}");
    }
    // Every handshake read its counters through the batched loader, and the 26 sockets with
    // rows after their cursor (users 2, 4, 8, ... from 0, and 3, 5, 9, ... from 1) one page.
    let states = a
        .metric("herald_read_batch_keys_sum{read=\"user_states\"}")
        .await;
    let pages = a
        .metric("herald_read_batch_keys_sum{read=\"after_seqs\"}")
        .await;
    assert_eq!((states, pages), (40, 26));
    let statements = a
        .metric("herald_read_batch_keys_count{read=\"user_states\"}")
        .await;
    assert!((1..=40).contains(&statements), "{statements} counter reads");
}

/// Deliveries to one user within one flush interval are written as one mark (one row in
/// `delivery_marks`, one update of `user_state`), not one per notification. Five live
/// publishes 150 ms apart span about 0.6 s: at most one tick of the 5 s interval falls among
/// them, so at most two marks, where recording each delivery would write five.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_within_one_flush_interval_are_one_mark() {
    let env = TestEnv::new().await;
    let a = env
        .node_with(|c| c.delivery_flush_interval = Duration::from_secs(5))
        .await;
    let (marks, span) = marks_for_live_burst(&env, &a, "dora", 5, Duration::from_millis(150)).await;
    let most = marks_allowed(span, Duration::from_secs(5));
    assert!(
        (1..=most).contains(&marks),
        "{marks} marks for 5 deliveries over {span:?} (at most {most}: the first, then one per started interval)"
    );
}

/// A busy user, one marked within the last second, is marked at most once a second instead of
/// every flush interval (`crate::delivery`): ten live notifications 100 ms apart with the
/// default 200 ms interval were five marks or more, and are now three at most (the first, the
/// user's turn in that second, the rest).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_user_is_marked_at_most_once_a_second() {
    let env = TestEnv::new().await;
    let a = env.node().await;
    let (marks, span) =
        marks_for_live_burst(&env, &a, "erin", 10, Duration::from_millis(100)).await;
    // About 1 s on an idle machine (at most 3 marks); a loaded machine stretches the burst, and
    // the rule allows one more mark per started second, never one per delivery.
    let most = marks_allowed(span, Duration::from_secs(1)) + 1;
    assert!(
        (1..=most).contains(&marks),
        "{marks} marks for 10 deliveries over {span:?} (at most {most})"
    );
}

/// The marks a burst spanning `span` may take when a user is marked at most once per
/// `period`: the first, then one per started period.
fn marks_allowed(span: Duration, period: Duration) -> i64 {
    1 + (span.as_secs_f64() / period.as_secs_f64()).ceil() as i64
}

/// Publishes `n` live notifications `gap` apart to a connected `user`, waits until the
/// delivered watermark reaches `n` with every row delivered, and returns how many delivery
/// marks that took and how long the burst took from the first publish to the last delivery.
async fn marks_for_live_burst(
    env: &TestEnv,
    node: &TestNode,
    user: &str,
    n: i64,
    gap: Duration,
) -> (i64, Duration) {
    let mut ws = node.connect(user).await;
    ws.handshake().await;
    let started = tokio::time::Instant::now();
    for i in 1..=n {
        if i > 1 {
            tokio::time::sleep(gap).await;
        }
        node.publish_one(user, &format!("live {i}")).await;
    }
    assert_seqs(&ws.notifications_until(n).await, 1, n);
    let span = started.elapsed();

    let sql = env.sql().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let row = sql
            .query_one(
                "SELECT delivered_seq, (SELECT count(*) FROM delivery_marks WHERE user_id = $1), \
                 (SELECT count(*) FROM notifications n WHERE user_id = $1 AND NOT EXISTS \
                  (SELECT 1 FROM delivery_marks d WHERE d.user_id = n.user_id AND d.seq >= n.seq)) \
                 FROM user_state WHERE user_id = $1",
                &[&user],
            )
            .await
            .unwrap();
        let (delivered, marks, undelivered): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
        if delivered == n {
            assert_eq!(
                undelivered, 0,
                "every row is delivered once the watermark is"
            );
            return (marks, span);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "delivery never recorded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
