//! The seen watermark: raised over the socket or HTTP, synchronised to every socket of the
//! user on every node, monotonic, in `connected`, and refused out of range with nothing
//! changed.

use herald_protocol::ws::{AckResult, Rid, ServerMessage};
use serde_json::{json, Value};

use crate::helpers::*;

async fn next_seen(ws: &mut Ws) -> (i64, i64) {
    loop {
        if let ServerMessage::Seen { seen_seq, version } = ws.event().await {
            return (seen_seq, version);
        }
    }
}

/// The next ack or error for `rid`, skipping other events.
async fn answer(ws: &mut Ws, want: Rid) -> ServerMessage {
    loop {
        match ws.event().await {
            m @ ServerMessage::Ack { .. } | m @ ServerMessage::Error { .. } => {
                let rid = match &m {
                    ServerMessage::Ack { rid, .. } | ServerMessage::Error { rid, .. } => rid,
                    _ => unreachable!(),
                };
                if rid.as_ref() == Some(&want) {
                    return m;
                }
            }
            _ => {}
        }
    }
}

async fn state_row(env: &TestEnv, user: &str) -> (i64, i64) {
    let c = env.sql().await;
    let row = c
        .query_one(
            "SELECT seen_seq, version FROM user_state WHERE user_id = $1",
            &[&user],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seen_from_any_tab_or_http_reaches_every_socket_and_only_rises() {
    let env = TestEnv::new().await;
    let a = env.node().await;
    let b = env.node().await;
    let mut t1 = a.connect("sam").await;
    let mut t2 = b.connect("sam").await;
    let (c1, _) = t1.handshake().await;
    assert!(matches!(c1, ServerMessage::Connected { seen_seq: 0, .. }));
    t2.handshake().await;
    for i in 1..=3 {
        a.publish_one("sam", &format!("{i}")).await;
    }
    t1.notifications_until(3).await;
    t2.notifications_until(3).await;
    let (_, v0) = state_row(&env, "sam").await;

    // Over the socket, acknowledged, and pushed to the other tab on the other node.
    t1.send(json!({ "type": "seen", "rid": "s1", "seq": 2 }))
        .await;
    let (mut acked, mut pushed) = (false, false);
    while !(acked && pushed) {
        match t1.event().await {
            ServerMessage::Ack {
                rid,
                result: AckResult::Seen(r),
            } => {
                assert_eq!(rid, Some(Rid::Str("s1".into())));
                assert!(r.changed);
                assert_eq!((r.seen_seq, r.version), (2, v0 + 1));
                acked = true;
            }
            ServerMessage::Seen { seen_seq, version } => {
                assert_eq!((seen_seq, version), (2, v0 + 1));
                pushed = true;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(next_seen(&mut t2).await, (2, v0 + 1));

    // Lower or equal: idempotent, no version bump, no event.
    let tok = token("sam", 3600);
    let r = b
        .post("/v1/notifications/seen", &tok, Some(json!({ "seq": 1 })))
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v,
        json!({ "seen_seq": 2, "changed": false, "version": v0 + 1 })
    );
    assert_eq!(state_row(&env, "sam").await, (2, v0 + 1));

    // Over HTTP on the other node: pushed to both sockets.
    let r = b
        .post("/v1/notifications/seen", &tok, Some(json!({ "seq": 3 })))
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["seen_seq"], 3);
    assert_eq!(v["changed"], true);
    // Only the `seen` at 3 follows (the refused/idempotent calls sent nothing).
    assert_eq!(next_seen(&mut t1).await, (3, v0 + 2));
    assert_eq!(next_seen(&mut t2).await, (3, v0 + 2));

    // A new socket learns the watermark in `connected`.
    let mut t3 = a.connect("sam").await;
    let (c3, _) = t3.handshake().await;
    match c3 {
        ServerMessage::Connected {
            seen_seq, version, ..
        } => assert_eq!((seen_seq, version), (3, v0 + 2)),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seen_out_of_range_is_refused_and_changes_nothing() {
    let env = TestEnv::new().await;
    let a = env.node().await;
    let tok = token("rita", 3600);
    // A user with nothing yet: only 0 is in range.
    let r = a
        .post("/v1/notifications/seen", &tok, Some(json!({ "seq": 1 })))
        .await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "validation_failed");
    assert_eq!(v["field"], "seq");
    a.publish_one("rita", "1").await;
    a.publish_one("rita", "2").await;
    let before = state_row(&env, "rita").await;
    for (body, code) in [
        (json!({ "seq": 3 }), "validation_failed"),
        (json!({ "seq": -1 }), "validation_failed"),
        (json!({ "seq": "2" }), "validation_failed"),
        (json!({}), "validation_failed"),
        (json!({ "seq": 1, "extra": true }), "validation_failed"),
        (json!([1]), "validation_failed"),
    ] {
        let r = a
            .post("/v1/notifications/seen", &tok, Some(body.clone()))
            .await;
        assert_eq!(r.status(), 400, "{body}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["code"], code, "{body}: {v}");
    }
    let r = a
        .http
        .post(format!("{}/v1/notifications/seen", a.base))
        .bearer_auth(&tok)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "invalid_json");
    // No token: 401.
    let r = a
        .http
        .post(format!("{}/v1/notifications/seen", a.base))
        .json(&json!({ "seq": 1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // GET: 405.
    let r = a.get("/v1/notifications/seen", &tok).await;
    assert_eq!(r.status(), 405);
    assert_eq!(state_row(&env, "rita").await, before);

    // Over the socket: an `error` with the rid, nothing changed.
    let mut ws = a.connect("rita").await;
    ws.handshake().await;
    for (i, seq) in [3i64, -1].into_iter().enumerate() {
        let rid = i as u64 + 10;
        ws.send(json!({ "type": "seen", "rid": rid, "seq": seq }))
            .await;
        match answer(&mut ws, Rid::Num(rid)).await {
            ServerMessage::Error { code, message, .. } => {
                assert_eq!(code, herald_protocol::ErrorCode::InvalidMessage);
                assert!(message.contains("seq"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }
    ws.send(json!({ "type": "seen", "rid": 20, "seq": "x" }))
        .await;
    assert!(matches!(
        answer(&mut ws, Rid::Num(20)).await,
        ServerMessage::Error { .. }
    ));
    assert_eq!(state_row(&env, "rita").await, before);
    // In range: accepted.
    ws.send(json!({ "type": "seen", "rid": 21, "seq": 2 }))
        .await;
    match answer(&mut ws, Rid::Num(21)).await {
        ServerMessage::Ack {
            result: AckResult::Seen(r),
            ..
        } => assert_eq!((r.seen_seq, r.changed), (2, true)),
        other => panic!("{other:?}"),
    }
    assert_eq!(state_row(&env, "rita").await, (2, before.1 + 1));
}
