//! Read state is synchronised to every socket of the user on every node.

use herald_protocol::ws::{AckResult, ServerMessage};
use serde_json::{json, Value};

use crate::helpers::*;

async fn next_read(ws: &mut Ws) -> (Vec<uuid::Uuid>, Option<i64>, i64) {
    loop {
        if let ServerMessage::Read {
            ids,
            up_to_seq,
            unread_count,
            ..
        } = ws.event().await
        {
            return (ids, up_to_seq, unread_count);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mark_read_from_any_tab_or_http_reaches_every_socket() {
    let env = TestEnv::new().await;
    let a = env.node().await;
    let b = env.node().await;
    let mut t1 = a.connect("alice").await;
    let mut t2 = b.connect("alice").await;
    t1.handshake().await;
    t2.handshake().await;
    for i in 1..=3 {
        a.publish_one("alice", &format!("{i}")).await;
    }
    let got = t1.notifications_until(3).await;
    t2.notifications_until(3).await;

    // Over the socket, with an acknowledgement.
    t1.send(json!({ "type": "mark_read", "rid": "r1", "id": got[0].id }))
        .await;
    let mut acked = false;
    let mut read_seen = false;
    while !(acked && read_seen) {
        match t1.event().await {
            ServerMessage::Ack { rid, result } => {
                assert_eq!(rid, Some(herald_protocol::ws::Rid::Str("r1".into())));
                match result {
                    AckResult::MarkRead(r) => {
                        assert!(r.changed);
                        assert_eq!(r.unread_count, 2);
                    }
                    other => panic!("{other:?}"),
                }
                acked = true;
            }
            ServerMessage::Read {
                ids, unread_count, ..
            } => {
                assert_eq!((ids, unread_count), (vec![got[0].id], 2));
                read_seen = true;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(next_read(&mut t2).await, (vec![got[0].id], None, 2));

    // Over HTTP on the other node.
    let tok = token("alice", 3600);
    let r = b
        .post(&format!("/v1/notifications/{}/read", got[1].id), &tok, None)
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(next_read(&mut t1).await, (vec![got[1].id], None, 1));
    assert_eq!(next_read(&mut t2).await, (vec![got[1].id], None, 1));

    // Read-all with a watermark leaves later notifications unread.
    a.publish_one("alice", "4").await;
    t1.notifications_until(4).await;
    t2.notifications_until(4).await;
    t2.send(json!({ "type": "mark_all_read", "rid": 9, "up_to_seq": 3 }))
        .await;
    assert_eq!(next_read(&mut t1).await, (vec![], Some(3), 1));
    let r: Value = a
        .get("/v1/notifications/unread-count", &tok)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["unread_count"], 1);
    assert_eq!(r["latest_seq"], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_count_stays_exact_under_concurrent_publish_and_mark_read() {
    let env = TestEnv::new().await;
    let a = env.node().await;
    let b = env.node().await;
    let tok = token("busy", 3600);
    let mut tasks = vec![];
    for p in 0..4 {
        let node_base = if p % 2 == 0 {
            a.base.clone()
        } else {
            b.base.clone()
        };
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            for i in 0..25 {
                let r = http
                    .post(format!("{node_base}/v1/notifications"))
                    .bearer_auth(SERVICE_KEY)
                    .json(&notification_body("busy", &format!("{p}-{i}")))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 201);
            }
        }));
    }
    let mut markers = vec![];
    for m in 0..2 {
        let base = if m == 0 {
            a.base.clone()
        } else {
            b.base.clone()
        };
        let tok = tok.clone();
        markers.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut marked = 0;
            for _ in 0..30 {
                let page: Value = http
                    .get(format!("{base}/v1/notifications?unread_only=true&limit=5"))
                    .bearer_auth(&tok)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                for n in page["notifications"].as_array().unwrap() {
                    let r = http
                        .post(format!(
                            "{base}/v1/notifications/{}/read",
                            n["id"].as_str().unwrap()
                        ))
                        .bearer_auth(&tok)
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 200);
                    marked += 1;
                }
            }
            marked
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for m in markers {
        m.await.unwrap();
    }
    let row = env
        .sql()
        .await
        .query_one(
            "SELECT us.unread_count, (SELECT count(*) FROM notifications WHERE user_id='busy' AND read_at IS NULL), us.last_seq FROM user_state us WHERE user_id='busy'",
            &[],
        )
        .await
        .unwrap();
    let (counter, actual, last): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(last, 100);
    assert_eq!(counter, actual, "unread counter drifted from the rows");
    assert!(actual < 100, "the markers marked nothing");
    let r: Value = a
        .get("/v1/notifications/unread-count", &tok)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["unread_count"], actual);
}
