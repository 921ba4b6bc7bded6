//! The answers `docs/protocol.md` gives to questions client writers asked: one test per
//! answer, named after the question, so the page and the server cannot drift apart.

use std::time::Duration;

use herald_protocol::ws::{AckResult, Rid, ServerMessage};
use serde_json::{json, Value};

use crate::helpers::*;
use crate::refusals::assert_error;

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

async fn publish_raw(node: &TestNode, body: String) -> reqwest::Response {
    node.http
        .post(format!("{}/v1/notifications", node.base))
        .bearer_auth(SERVICE_KEY)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("publish request")
}

async fn count_stored(env: &TestEnv) -> i64 {
    env.sql()
        .await
        .query_one("SELECT count(*) FROM notifications", &[])
        .await
        .expect("count")
        .get(0)
}

/// 2.7: 4103 comes at `exp` plus the leeway, not at `exp`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_expiry_closes_at_exp_plus_the_leeway() {
    let env = TestEnv::new().await;
    let node = env
        .node_with(|c| {
            c.jwt.leeway_secs = 2;
            c.token_expiry_warning = Duration::ZERO;
        })
        .await;
    let exp = now() + 1;
    let tok = token_claims(json!({ "sub": "alice", "exp": exp }));
    let mut ws = node.connect_browser(&tok, None).await;
    ws.handshake().await;
    let got = ws.next().await;
    let closed_ms = chrono::Utc::now().timestamp_millis();
    match got {
        Got::Closed(code, reason) => assert_eq!(code, 4103, "{reason}"),
        Got::Event(e) => panic!("expected close 4103, got {e:?}"),
    }
    assert!(
        closed_ms >= (exp + 2) * 1000,
        "closed {} ms before exp + leeway",
        (exp + 2) * 1000 - closed_ms
    );
}

/// 2.7: the idle close comes between the idle timeout and the idle timeout plus one
/// heartbeat interval after the last frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_idle_close_comes_within_one_heartbeat_after_the_idle_timeout() {
    let env = TestEnv::new().await;
    let heartbeat = Duration::from_millis(400);
    let idle = Duration::from_millis(1_000);
    let node = env
        .node_with(|c| {
            c.heartbeat_interval = heartbeat;
            c.idle_timeout = idle;
        })
        .await;
    // A raw socket, authenticated by its upgrade's header, that sends nothing after it and
    // never answers the server's pings.
    let mut raw = crate::abuse::raw_upgrade(&node, Some(&token("alice", 600))).await;
    let last_frame = tokio::time::Instant::now();
    let (code, _) = tokio::time::timeout(WAIT, crate::abuse::read_close(&mut raw))
        .await
        .expect("no close");
    let after = last_frame.elapsed();
    assert_eq!(code, 4101);
    assert!(
        after >= idle,
        "closed after {after:?}, before the idle timeout"
    );
    assert!(
        after <= idle + heartbeat + Duration::from_millis(300),
        "closed after {after:?}, later than idle timeout + one heartbeat"
    );
}

/// 2.2, 2.6: `auth` may carry `rid` like every command (ignored: `connected` answers it);
/// `auth` again after authentication is `invalid_state`, echoing its `rid`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_may_carry_a_rid_and_a_second_auth_is_invalid_state() {
    let env = TestEnv::new().await;
    let node = env.node().await;
    let mut ws = node
        .connect_opts(None, None, &[("origin", ORIGIN)])
        .await
        .unwrap();
    ws.send(json!({"type": "auth", "rid": "a-1", "token": token("alice", 600), "last_seq": null}))
        .await;
    ws.handshake().await;
    ws.send(json!({"type": "auth", "rid": 9, "token": token("alice", 600)}))
        .await;
    match ws.event().await {
        ServerMessage::Error { rid, code, .. } => {
            assert_eq!(code.as_str(), "invalid_state");
            assert_eq!(rid, Some(Rid::Num(9)));
        }
        other => panic!("expected invalid_state, got {other:?}"),
    }
}

/// 3.1: `type` is required on publish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_without_a_type_is_refused_naming_it() {
    let env = TestEnv::new().await;
    let node = env.node().await;
    let r = node
        .publish(&json!({"recipient": "alice", "title": "t"}))
        .await;
    assert_error(r, 400, "validation_failed", Some("type")).await;
    assert_eq!(count_stored(&env).await, 0);
}

/// 3.1: the recipient limit counts entries as sent, before duplicates are removed; neither
/// or both of `recipient`/`recipients` is refused with `field: "recipients"`; an unknown
/// field is refused naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recipient_rules_and_unknown_fields_name_the_field() {
    let env = TestEnv::new().await;
    let node = env.node().await;
    let mut users: Vec<String> = (0..1_000).map(|i| format!("u{i}")).collect();
    users.push("u0".into());
    let r = node
        .publish(&json!({"recipients": users, "type": "t", "title": "t"}))
        .await;
    assert_error(r, 400, "validation_failed", Some("recipients")).await;
    let r = node.publish(&json!({"type": "t", "title": "t"})).await;
    assert_error(r, 400, "validation_failed", Some("recipients")).await;
    let r = node
        .publish(&json!({"recipient": "a", "recipients": ["b"], "type": "t", "title": "t"}))
        .await;
    assert_error(r, 400, "validation_failed", Some("recipients")).await;
    let r = node
        .publish(&json!({"recipient": "a", "type": "t", "title": "t", "colour": "red"}))
        .await;
    assert_error(r, 400, "validation_failed", Some("colour")).await;
    assert_eq!(count_stored(&env).await, 0);
    // Duplicates within the limit are removed: one notification per user.
    let r = node
        .publish(&json!({"recipients": ["b", "a", "b"], "type": "t", "title": "t"}))
        .await;
    assert_eq!(r.status(), 201);
    assert_eq!(count_stored(&env).await, 2);
}

/// 3.1: `data` is at most 8,192 bytes as compact JSON (whitespace in the request does not
/// count) and at most 16 levels deep, the `data` object itself being level 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_limits_count_compact_json_and_levels_from_one() {
    let env = TestEnv::new().await;
    let node = env.node().await;
    let body = |data: Value| {
        // Pretty-printed: the request is far larger than its compact form.
        serde_json::to_string_pretty(&json!({
            "recipient": "alice", "type": "t", "title": "t", "data": data
        }))
        .unwrap()
    };
    // `{"k":"…"}` is the string's length plus 8 bytes.
    let fits = json!({ "k": "x".repeat(8_192 - 8) });
    assert_eq!(serde_json::to_string(&fits).unwrap().len(), 8_192);
    assert_eq!(publish_raw(&node, body(fits)).await.status(), 201);
    let over = json!({ "k": "x".repeat(8_192 - 7) });
    assert_error(
        publish_raw(&node, body(over)).await,
        400,
        "validation_failed",
        Some("data"),
    )
    .await;

    let nested = |levels: usize| {
        let mut v = json!({});
        for _ in 1..levels {
            v = json!({ "a": v });
        }
        v
    };
    assert_eq!(publish_raw(&node, body(nested(16))).await.status(), 201);
    assert_error(
        publish_raw(&node, body(nested(17))).await,
        400,
        "validation_failed",
        Some("data"),
    )
    .await;
    assert_eq!(count_stored(&env).await, 2);
}

/// 3.1: idempotency compares the validated request, not its bytes; another recipient is 409.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_same_body_means_the_same_meaning() {
    let env = TestEnv::new().await;
    let node = env.node().await;
    let first = node
        .publish(&json!({
            "recipients": ["bob", "alice", "bob"], "type": "t", "title": "t",
            "data": {"x": 1, "y": 2}, "link": "", "idempotency_key": "k-1"
        }))
        .await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    // Reordered recipients and data keys, whitespace, no empty link: the same request.
    let again = publish_raw(
        &node,
        r#"{ "idempotency_key": "k-1",  "title": "t", "type": "t",
             "data": { "y": 2, "x": 1 }, "recipients": [ "alice", "bob" ] }"#
            .to_string(),
    )
    .await;
    assert_eq!(again.status(), 200);
    assert_eq!(
        again
            .headers()
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    assert_eq!(again.json::<Value>().await.unwrap(), first);
    let other = node
        .publish(&json!({
            "recipients": ["alice", "carol"], "type": "t", "title": "t",
            "data": {"x": 1, "y": 2}, "idempotency_key": "k-1"
        }))
        .await;
    assert_error(other, 409, "idempotency_key_reused", None).await;
    assert_eq!(count_stored(&env).await, 2);
}

/// 2.4, 3.2: marking what is already read changes nothing: `changed: false`, the same
/// `version`, and no `read` event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_no_op_mark_sends_no_read_event_and_keeps_the_version() {
    let env = TestEnv::new().await;
    let node = env.node().await;
    node.publish_one("alice", "one").await;
    let mut ws = node.connect("alice").await;
    let (_, rows) = ws.handshake().await;
    let id = rows[0].id;
    let tok = token("alice", 600);
    let first: Value = node
        .post(&format!("/v1/notifications/{id}/read"), &tok, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first["changed"], true);
    assert!(matches!(ws.event().await, ServerMessage::Read { .. }));
    let again: Value = node
        .post(&format!("/v1/notifications/{id}/read"), &tok, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["changed"], false);
    assert_eq!(again["version"], first["version"]);
    let all: Value = node
        .post("/v1/notifications/read-all", &tok, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (all["marked"].as_i64(), &all["version"]),
        (Some(0), &first["version"])
    );
    ws.send(json!({"type": "mark_read", "id": id, "rid": 1}))
        .await;
    match ws.event().await {
        ServerMessage::Ack {
            result: AckResult::MarkRead(r),
            ..
        } => assert!(!r.changed),
        other => panic!("expected the mark_read ack, got {other:?}"),
    }
    assert!(
        ws.next_within(Duration::from_millis(300)).await.is_none(),
        "a no-op mark sent an event"
    );
}

/// 2.1: a plain `GET /v1/ws` (no upgrade headers) is a refused upgrade like any other: the
/// same checks in order, then 400 `invalid_parameter`, and the connection is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_get_of_the_socket_path_is_a_refused_upgrade() {
    let env = TestEnv::new().await;
    let node = env.node().await;
    let r = node
        .http
        .get(format!("{}/v1/ws", node.base))
        .header("authorization", format!("Bearer {}", token("alice", 600)))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers().get("connection").and_then(|v| v.to_str().ok()),
        Some("close")
    );
    assert_error(r, 400, "invalid_parameter", None).await;
    assert_eq!(
        node.metric("herald_handshake_refusals_total{code=\"invalid_parameter\"}")
            .await,
        1,
        "counted with the refused upgrades"
    );
    let r = node
        .http
        .get(format!("{}/v1/ws?token=x", node.base))
        .send()
        .await
        .unwrap();
    assert_error(r, 400, "token_in_url", None).await;
}

/// Conventions: stored times have at most 6 fractional digits, and parse as RFC 3339.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_times_have_at_most_six_fractional_digits() {
    let env = TestEnv::new().await;
    let node = env.node().await;
    let r: Value = node
        .publish(&notification_body("alice", "t"))
        .await
        .json()
        .await
        .unwrap();
    let page: Value = node
        .get("/v1/notifications", &token("alice", 600))
        .await
        .json()
        .await
        .unwrap();
    for t in [&r["created_at"], &page["notifications"][0]["created_at"]] {
        let t = t.as_str().expect("a string time");
        chrono::DateTime::parse_from_rfc3339(t).expect("RFC 3339");
        let frac = t
            .split_once('.')
            .map_or(0, |(_, f)| f.trim_end_matches('Z').len());
        assert!(frac <= 6 && frac % 3 == 0, "{t}");
        assert!(t.ends_with('Z'), "{t}");
    }
}

/// 3.3: `/healthz` checks nothing but the process: `postgres` and `redis` are `null`.
/// `/readyz` reports both from the node's last background check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_reports_no_dependencies_and_readyz_reports_both() {
    let env = TestEnv::new().await;
    let node = env.node().await;
    let h: Value = node
        .http
        .get(format!("{}/healthz", node.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h["status"], "ok");
    assert_eq!((&h["postgres"], &h["redis"]), (&Value::Null, &Value::Null));
    let (status, r) = node.ready_until("ready").await;
    assert_eq!(status, 200);
    assert_eq!((&r["postgres"], &r["redis"]), (&json!(true), &json!(true)));
}

/// 2.2: the per-user socket cap is per node: a user at the cap on one node still connects to
/// another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_user_socket_cap_is_per_node() {
    let env = TestEnv::new().await;
    let a = env.node_with(|c| c.max_sockets_per_user = 1).await;
    let b = env.node_with(|c| c.max_sockets_per_user = 1).await;
    let mut on_a = a.connect("alice").await;
    on_a.handshake().await;
    let mut on_b = b.connect("alice").await;
    on_b.handshake().await;
    let mut second = a.connect("alice").await;
    let (code, reason) = second.expect_close().await;
    assert_eq!(code, 4005, "{reason}");
    // The others keep working.
    a.publish_one("alice", "x").await;
    assert_seqs(&on_a.notifications_until(1).await, 1, 1);
    assert_seqs(&on_b.notifications_until(1).await, 1, 1);
}
