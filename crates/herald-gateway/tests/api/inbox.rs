//! The inbox lifecycle: archive, unarchive, unread, read and delete — per notification, by
//! ids and by filter — synchronised to every socket with a version; filters and counts; the
//! unread count invariant; refusals that change nothing; catch-up across deleted seqs; the
//! retention purge.

use std::time::Duration;

use herald_protocol::inbox::InboxAction;
use herald_protocol::ws::{AckResult, Rid, ServerMessage};
use serde_json::{json, Value};

use crate::helpers::*;

/// The next `inbox` event: (action, ids, unread_count, version).
async fn next_inbox(ws: &mut Ws) -> (InboxAction, Vec<uuid::Uuid>, i64, i64) {
    loop {
        if let ServerMessage::Inbox {
            action,
            ids,
            unread_count,
            version,
        } = ws.event().await
        {
            return (action, ids, unread_count, version);
        }
    }
}

/// `unread_count` in user_state, the true count of unread rows, and the version.
async fn counters(env: &TestEnv, user: &str) -> (i64, i64, i64) {
    let c = env.sql().await;
    let row = c
        .query_one(
            "SELECT us.unread_count, \
                    (SELECT count(*) FROM notifications n WHERE n.user_id = us.user_id AND n.read_at IS NULL), \
                    us.version \
             FROM user_state us WHERE us.user_id = $1",
            &[&user],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

/// Everything stored for a user, to compare before and after a refused call.
async fn snapshot(env: &TestEnv, user: &str) -> String {
    let c = env.sql().await;
    let rows = c
        .query(
            "SELECT seq, id::text, coalesce(read_at::text, '-'), coalesce(archived_at::text, '-') \
             FROM notifications WHERE user_id = $1 ORDER BY seq",
            &[&user],
        )
        .await
        .unwrap();
    let mut s: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{}:{}:{}:{}",
                r.get::<_, i64>(0),
                r.get::<_, String>(1),
                r.get::<_, String>(2),
                r.get::<_, String>(3)
            )
        })
        .collect();
    let (u, _, v) = counters(env, user).await;
    s.push(format!("unread={u} version={v}"));
    s.join("\n")
}

async fn publish_typed(node: &TestNode, user: &str, kind: &str, title: &str) -> (uuid::Uuid, i64) {
    let r = node
        .publish(&json!({ "recipient": user, "type": kind, "title": title, "body": "b" }))
        .await;
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    (
        v["notifications"][0]["id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap(),
        v["notifications"][0]["seq"].as_i64().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_item_actions_sync_to_every_socket_and_keep_the_unread_count() {
    let env = TestEnv::new().await;
    let a = env.node().await;
    let b = env.node().await;
    let mut t1 = a.connect("ann").await;
    let mut t2 = b.connect("ann").await;
    t1.handshake().await;
    t2.handshake().await;
    let mut ids = vec![];
    for i in 1..=4 {
        ids.push(
            publish_typed(&a, "ann", "comment.created", &format!("{i}"))
                .await
                .0,
        );
    }
    t1.notifications_until(4).await;
    t2.notifications_until(4).await;
    let tok = token("ann", 3600);
    let (_, _, v0) = counters(&env, "ann").await;

    // Archive: read too, so the unread count drops.
    let r = b
        .post(&format!("/v1/notifications/{}/archive", ids[0]), &tok, None)
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["action"], "archive");
    assert_eq!(body["ids"], json!([ids[0]]));
    assert_eq!(body["unread_count"], 3);
    assert_eq!(body["version"], v0 + 1);
    for ws in [&mut t1, &mut t2] {
        assert_eq!(
            next_inbox(ws).await,
            (InboxAction::Archive, vec![ids[0]], 3, v0 + 1)
        );
    }
    let n: Value = a
        .get(&format!("/v1/notifications/{}", ids[0]), &tok)
        .await
        .json()
        .await
        .unwrap();
    assert!(
        n["archived_at"].is_string() && n["read_at"].is_string(),
        "{n}"
    );

    // Again: idempotent, no version bump.
    let body: Value = a
        .post(&format!("/v1/notifications/{}/archive", ids[0]), &tok, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["ids"], json!([]));
    assert_eq!(body["version"], v0 + 1);
    // Unread of an archived notification: left alone (archived ones are never unread).
    let body: Value = a
        .post(&format!("/v1/notifications/{}/unread", ids[0]), &tok, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["ids"], json!([]));
    assert_eq!(body["unread_count"], 3);

    // Unarchive: stays read. Then unread: counted again.
    let body: Value = a
        .post(
            &format!("/v1/notifications/{}/unarchive", ids[0]),
            &tok,
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (body["ids"].clone(), body["unread_count"].clone()),
        (json!([ids[0]]), json!(3))
    );
    assert_eq!(
        next_inbox(&mut t2).await,
        (InboxAction::Unarchive, vec![ids[0]], 3, v0 + 2)
    );
    let body: Value = a
        .post(&format!("/v1/notifications/{}/unread", ids[0]), &tok, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["unread_count"], 4);
    assert_eq!(
        next_inbox(&mut t2).await,
        (InboxAction::Unread, vec![ids[0]], 4, v0 + 3)
    );
    assert_eq!(next_inbox(&mut t1).await.0, InboxAction::Unarchive);
    assert_eq!(next_inbox(&mut t1).await.0, InboxAction::Unread);

    // Delete (DELETE): gone, unread count down, and a second delete is a 404.
    let r = a
        .http
        .delete(format!("{}/v1/notifications/{}", a.base, ids[1]))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["unread_count"], 3);
    assert_eq!(
        next_inbox(&mut t1).await,
        (InboxAction::Delete, vec![ids[1]], 3, v0 + 4)
    );
    assert_eq!(
        a.get(&format!("/v1/notifications/{}", ids[1]), &tok)
            .await
            .status(),
        404
    );
    let r = a
        .http
        .delete(format!("{}/v1/notifications/{}", a.base, ids[1]))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "not_found");

    // Over the socket: the `inbox` command, acknowledged, and pushed to the other tab.
    t1.send(json!({ "type": "inbox", "rid": "x1", "action": "read", "ids": [ids[2], ids[3]] }))
        .await;
    let (mut acked, mut pushed) = (false, false);
    while !(acked && pushed) {
        match t1.event().await {
            ServerMessage::Ack {
                rid,
                result: AckResult::Inbox(r),
            } => {
                assert_eq!(rid, Some(Rid::Str("x1".into())));
                assert_eq!(r.ids.len(), 2);
                assert_eq!(r.unread_count, 1);
                acked = true;
            }
            ServerMessage::Inbox { action, .. } => {
                assert_eq!(action, InboxAction::Read);
                pushed = true;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(next_inbox(&mut t2).await.0, InboxAction::Delete);
    assert_eq!(next_inbox(&mut t2).await.0, InboxAction::Read);
    let (stored, real, _) = counters(&env, "ann").await;
    assert_eq!((stored, real), (1, 1));

    // Another user's notification: 404, nothing changed.
    let before = snapshot(&env, "ann").await;
    let other = token("mallory", 3600);
    for path in ["archive", "unarchive", "unread"] {
        let r = a
            .post(
                &format!("/v1/notifications/{}/{path}", ids[2]),
                &other,
                None,
            )
            .await;
        assert_eq!(r.status(), 404, "{path}");
    }
    let r = a
        .http
        .delete(format!("{}/v1/notifications/{}", a.base, ids[2]))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = a
        .post("/v1/notifications/not-a-uuid/archive", &tok, None)
        .await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["code"],
        "invalid_parameter"
    );
    assert_eq!(snapshot(&env, "ann").await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_counts_and_bulk_actions() {
    let env = TestEnv::new().await;
    let a = env.node().await;
    let tok = token("flo", 3600);
    let mut comments = vec![];
    for i in 0..3 {
        comments.push(
            publish_typed(&a, "flo", "comment.created", &format!("c{i}"))
                .await
                .0,
        );
    }
    let mut mentions = vec![];
    for i in 0..2 {
        mentions.push(
            publish_typed(&a, "flo", "mention", &format!("m{i}"))
                .await
                .0,
        );
    }
    a.post(
        &format!("/v1/notifications/{}/archive", comments[0]),
        &tok,
        None,
    )
    .await;
    a.post(
        &format!("/v1/notifications/{}/read", mentions[0]),
        &tok,
        None,
    )
    .await;

    let list = |q: &'static str| {
        let a = &a;
        let tok = tok.clone();
        async move {
            let r = a.get(&format!("/v1/notifications?{q}"), &tok).await;
            assert_eq!(r.status(), 200, "{q}");
            let v: Value = r.json().await.unwrap();
            v["notifications"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n["title"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(list("archived=true").await, vec!["c0"]);
    assert_eq!(list("archived=false").await, vec!["m1", "m0", "c2", "c1"]);
    assert_eq!(
        list("archived=false&type=comment.created").await,
        vec!["c2", "c1"]
    );
    assert_eq!(list("type=comment.created").await, vec!["c2", "c1", "c0"]);
    assert_eq!(
        list("archived=false&unread_only=true").await,
        vec!["m1", "c2", "c1"]
    );
    assert_eq!(list("type=mention&unread_only=true").await, vec!["m1"]);
    assert_eq!(
        list("archived=false&limit=2&before=4").await,
        vec!["c2", "c1"]
    );

    let c: Value = a
        .get("/v1/notifications/counts", &tok)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            c["total"].clone(),
            c["inbox"].clone(),
            c["unread"].clone(),
            c["archived"].clone()
        ),
        (json!(5), json!(4), json!(3), json!(1))
    );
    assert_eq!(
        c["by_type"]["comment.created"],
        json!({ "inbox": 2, "unread": 2, "archived": 1 })
    );
    assert_eq!(
        c["by_type"]["mention"],
        json!({ "inbox": 2, "unread": 1, "archived": 0 })
    );
    assert_eq!(c["types_truncated"], false);

    // Bulk by filter: read every unread comment.
    let r = a
        .post(
            "/v1/notifications/bulk",
            &tok,
            Some(json!({ "action": "read", "filter": { "type": "comment.created", "unread": true } })),
        )
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["ids"], json!([comments[1], comments[2]]));
    assert_eq!(v["up_to_seq"], 5);
    assert_eq!(v["has_more"], false);
    assert_eq!(v["unread_count"], 1);
    // Bulk by ids: archive (an unknown id is ignored).
    let r = a
        .post(
            "/v1/notifications/bulk",
            &tok,
            Some(json!({ "action": "archive", "ids": [mentions[0], mentions[1], uuid::Uuid::now_v7()] })),
        )
        .await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["ids"], json!([mentions[0], mentions[1]]));
    assert_eq!(v["unread_count"], 0);
    // Bulk delete of everything archived, then the counts agree.
    let v: Value = a
        .post(
            "/v1/notifications/bulk",
            &tok,
            Some(json!({ "action": "delete", "filter": { "archived": true } })),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["ids"].as_array().unwrap().len(), 3);
    let c: Value = a
        .get("/v1/notifications/counts", &tok)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (c["total"].clone(), c["archived"].clone()),
        (json!(2), json!(0))
    );
    let (stored, real, _) = counters(&env, "flo").await;
    assert_eq!(stored, real);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_action_is_bounded_and_resumable_with_its_watermark() {
    let env = TestEnv::new().await;
    let a = env.node().await;
    // 1005 unread rows, written directly (the statement under test is the action's).
    let c = env.sql().await;
    c.batch_execute(
        "INSERT INTO user_state (user_id, last_seq, unread_count, version) VALUES ('big', 1005, 1005, 1005);
         INSERT INTO notifications (user_id, seq, id, type, title, body)
         SELECT 'big', s, gen_random_uuid(), 'bulk.test', 't' || s, '' FROM generate_series(1, 1005) s;",
    )
    .await
    .unwrap();
    let tok = token("big", 3600);
    let v: Value = a
        .post(
            "/v1/notifications/bulk",
            &tok,
            Some(json!({ "action": "archive", "filter": {} })),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["ids"].as_array().unwrap().len(), 1000);
    assert_eq!(v["has_more"], true);
    assert_eq!(v["up_to_seq"], 1005);
    assert_eq!(v["unread_count"], 5);
    // A notification arriving meanwhile is not touched by the repeat.
    a.publish_one("big", "new").await;
    let v: Value = a
        .post(
            "/v1/notifications/bulk",
            &tok,
            Some(json!({ "action": "archive", "filter": {}, "up_to_seq": 1005 })),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["ids"].as_array().unwrap().len(), 5);
    assert_eq!(v["has_more"], false);
    assert_eq!(v["unread_count"], 1);
    let (stored, real, _) = counters(&env, "big").await;
    assert_eq!((stored, real), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inbox_requests_are_refused_and_change_nothing() {
    let env = TestEnv::new().await;
    let a = env.node().await;
    let (id, _) = publish_typed(&a, "val", "comment.created", "1").await;
    publish_typed(&a, "val", "comment.created", "2").await;
    let tok = token("val", 3600);
    let before = snapshot(&env, "val").await;
    let many: Vec<String> = (0..101).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    for (body, code, field) in [
        (json!({ "action": "archive" }), "validation_failed", "ids"),
        (
            json!({ "action": "archive", "ids": [] }),
            "validation_failed",
            "ids",
        ),
        (
            json!({ "action": "archive", "ids": many }),
            "validation_failed",
            "ids",
        ),
        (
            json!({ "action": "archive", "ids": [id], "filter": {} }),
            "validation_failed",
            "ids",
        ),
        (
            json!({ "action": "archive", "ids": [id], "up_to_seq": 1 }),
            "validation_failed",
            "up_to_seq",
        ),
        (
            json!({ "action": "archive", "filter": {}, "up_to_seq": -1 }),
            "validation_failed",
            "up_to_seq",
        ),
        (
            json!({ "action": "explode", "ids": [id] }),
            "validation_failed",
            "action",
        ),
        (json!({ "ids": [id] }), "validation_failed", "action"),
        (
            json!({ "action": "delete", "ids": ["nope"] }),
            "validation_failed",
            "ids[0]",
        ),
        (
            json!({ "action": "delete", "filter": { "type": "bad type" } }),
            "validation_failed",
            "filter.type",
        ),
        (
            json!({ "action": "delete", "filter": { "colour": "red" } }),
            "validation_failed",
            "filter.colour",
        ),
        (
            json!({ "action": "delete", "filter": {}, "extra": 1 }),
            "validation_failed",
            "extra",
        ),
    ] {
        let r = a
            .post("/v1/notifications/bulk", &tok, Some(body.clone()))
            .await;
        assert_eq!(r.status(), 400, "{body}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["code"], code, "{body}: {v}");
        assert_eq!(v["field"], field, "{body}: {v}");
    }
    let r = a
        .http
        .post(format!("{}/v1/notifications/bulk", a.base))
        .bearer_auth(&tok)
        .body("{\"action\":")
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "invalid_json");
    // List filters.
    for (q, field) in [
        ("archived=maybe", "archived"),
        ("type=bad%20type", "type"),
        ("after=0&archived=true", "archived"),
        ("after=0&type=mention", "type"),
    ] {
        let r = a.get(&format!("/v1/notifications?{q}"), &tok).await;
        assert_eq!(r.status(), 400, "{q}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(
            (v["code"].as_str(), v["field"].as_str()),
            (Some("invalid_parameter"), Some(field)),
            "{q}"
        );
    }
    // Wrong methods, no token.
    assert_eq!(a.get("/v1/notifications/bulk", &tok).await.status(), 405);
    assert_eq!(
        a.post("/v1/notifications/counts", &tok, None)
            .await
            .status(),
        405
    );
    let r = a
        .http
        .post(format!("{}/v1/notifications/bulk", a.base))
        .json(&json!({ "action": "delete", "filter": {} }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Over the socket: `error` invalid_message with the rid.
    let mut ws = a.connect("val").await;
    ws.handshake().await;
    for (i, cmd) in [
        json!({ "type": "inbox", "action": "archive" }),
        json!({ "type": "inbox", "action": "nuke", "ids": [id] }),
        json!({ "type": "inbox", "action": "delete", "filter": {}, "up_to_seq": -3 }),
    ]
    .into_iter()
    .enumerate()
    {
        let mut cmd = cmd;
        cmd["rid"] = json!(i);
        ws.send(cmd.clone()).await;
        match ws.event().await {
            ServerMessage::Error { rid, code, .. } => {
                assert_eq!(rid, Some(Rid::Num(i as u64)), "{cmd}");
                assert_eq!(code, herald_protocol::ErrorCode::InvalidMessage, "{cmd}");
            }
            other => panic!("{cmd}: {other:?}"),
        }
    }
    assert_eq!(snapshot(&env, "val").await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_skips_deleted_seqs_and_live_delivery_continues_without_a_gap_read() {
    let env = TestEnv::new().await;
    let a = env.node().await;
    let mut ids = vec![];
    for i in 1..=5 {
        ids.push(
            publish_typed(&a, "cat", "comment.created", &format!("{i}"))
                .await
                .0,
        );
    }
    let tok = token("cat", 3600);
    // Delete seq 3 and the latest, seq 5.
    for id in [ids[2], ids[4]] {
        let r = a
            .http
            .delete(format!("{}/v1/notifications/{id}", a.base))
            .bearer_auth(&tok)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // Resume from seq 1: 2 and 4 come back, complete; 3 and 5 are skipped.
    let mut ws = a.connect_browser(&tok, Some(1)).await;
    let (connected, got) = ws.handshake().await;
    assert!(matches!(
        connected,
        ServerMessage::Connected { latest_seq: 5, .. }
    ));
    assert_eq!(got.iter().map(|n| n.seq).collect::<Vec<_>>(), vec![2, 4]);
    // The cursor moved past the deleted seq 5: seq 6 is written live, with no gap read.
    let gaps = a.metric("herald_gap_fills_total").await;
    a.publish_one("cat", "6").await;
    match ws.event().await {
        ServerMessage::Notification { notification, .. } => assert_eq!(notification.seq, 6),
        other => panic!("{other:?}"),
    }
    assert_eq!(a.metric("herald_gap_fills_total").await, gaps);
    // HTTP catch-up (`after`) skips them too.
    let v: Value = a
        .get("/v1/notifications?after=2", &tok)
        .await
        .json()
        .await
        .unwrap();
    let seqs: Vec<i64> = v["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, vec![4, 6]);
    // A new notification never reuses a deleted seq.
    assert_eq!(a.publish_one("cat", "7").await, 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_purges_old_notifications_of_a_type_in_batches() {
    let env = TestEnv::new().await;
    let a = env
        .node_with(|c| {
            c.retention = herald_core::inbox::parse_retention("old.news=1s").unwrap();
            c.retention_interval = Duration::from_millis(200);
        })
        .await;
    let mut ws = a.connect("ret").await;
    ws.handshake().await;
    let (old, _) = publish_typed(&a, "ret", "old.news", "old").await;
    let (keep, _) = publish_typed(&a, "ret", "kept.type", "kept").await;
    ws.notifications_until(2).await;
    // The purge deletes the old.news row once it is older than 1 s, and tells the socket.
    let (action, ids, unread, _) = next_inbox(&mut ws).await;
    assert_eq!((action, ids, unread), (InboxAction::Delete, vec![old], 1));
    let tok = token("ret", 3600);
    assert_eq!(
        a.get(&format!("/v1/notifications/{old}"), &tok)
            .await
            .status(),
        404
    );
    assert_eq!(
        a.get(&format!("/v1/notifications/{keep}"), &tok)
            .await
            .status(),
        200
    );
    let (stored, real, _) = counters(&env, "ret").await;
    assert_eq!((stored, real), (1, 1));
    assert!(a.metric("herald_notifications_purged_total").await >= 1);
}
