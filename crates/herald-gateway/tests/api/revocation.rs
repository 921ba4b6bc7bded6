//! Session revocation (`POST /v1/users/{user_id}/revoke`) and scoped service keys.

use std::time::{Duration, Instant};

use herald_gateway::auth::Scopes;
use herald_protocol::ws::ServerMessage;
use secrecy::SecretString;
use serde_json::{json, Value};

use crate::helpers::*;

/// A token for `user` issued at `iat` (unix seconds; `None`: no `iat` claim), valid an hour.
fn tok(user: &str, iat: Option<i64>) -> String {
    let exp = chrono::Utc::now().timestamp() + 3600;
    let mut claims = json!({ "sub": user, "exp": exp });
    if let Some(iat) = iat {
        claims["iat"] = json!(iat);
    }
    token_claims(claims)
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

async fn revoke(node: &TestNode, key: &str, user: &str, body: Option<Value>) -> reqwest::Response {
    let mut req = node
        .http
        .post(format!("{}/v1/users/{user}/revoke", node.base))
        .bearer_auth(key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    req.send().await.expect("revoke request")
}

async fn revoke_ok(node: &TestNode, user: &str, body: Value) -> Value {
    let r = revoke(node, SERVICE_KEY, user, Some(body)).await;
    assert_eq!(r.status(), 200, "revoke: {:?}", r.text().await);
    r.json().await.expect("revoke json")
}

/// The close of `ws` within `within`, skipping events; panics if it stays open.
async fn closed_within(ws: &mut Ws, within: Duration) -> (u16, String) {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match ws.next_within(left).await {
            Some(Got::Closed(c, r)) => return (c, r),
            Some(Got::Event(_)) => continue,
            None => panic!("the socket was not closed within {within:?}"),
        }
    }
}

async fn error_code(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The HTTP refusal of a header-token upgrade.
async fn upgrade_refusal(node: &TestNode, token: &str) -> (u16, Value) {
    match node.connect_opts(Some(token), None, &[]).await {
        Ok(_) => panic!("the upgrade was accepted"),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => (
            resp.status().as_u16(),
            serde_json::from_slice(resp.body().as_deref().unwrap_or_default())
                .unwrap_or(Value::Null),
        ),
        Err(e) => panic!("expected an HTTP refusal, got {e}"),
    }
}

/// Polls `/v1/notifications/unread-count` with `token` until it answers `status` (bounded).
async fn http_status_becomes(node: &TestNode, token: &str, status: u16) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let (got, body) = error_code(node.get("/v1/notifications/unread-count", token).await).await;
        if got == status {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "still {got} {body}, wanted {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn revocation_rows(env: &TestEnv) -> i64 {
    env.sql()
        .await
        .query_one("SELECT count(*) FROM revocations", &[])
        .await
        .expect("count revocations")
        .get(0)
}

#[tokio::test]
async fn revoking_closes_the_users_sockets_on_every_node_within_a_second() {
    let env = TestEnv::new().await;
    let a = env.node().await;
    let b = env.node().await;
    let old = now() - 10;
    // Alice on both nodes, by header and by `auth` message; Bob beside her on b.
    let mut alice_a = a
        .connect_opts(Some(&tok("alice", Some(old))), None, &[])
        .await
        .expect("connect");
    alice_a.handshake().await;
    let mut alice_b = b.connect_browser(&tok("alice", Some(old)), None).await;
    alice_b.handshake().await;
    let mut bob_b = b.connect_browser(&tok("bob", Some(old)), None).await;
    bob_b.handshake().await;

    let started = Instant::now();
    let v = revoke_ok(&a, "alice", json!({})).await;
    assert_eq!(v["user_id"], "alice");
    for ws in [&mut alice_a, &mut alice_b] {
        let (code, reason) = closed_within(ws, Duration::from_secs(2)).await;
        assert_eq!(code, 4006, "{reason}");
        assert!(reason.starts_with("revoked"), "{reason}");
    }
    let took = started.elapsed();
    assert!(took < Duration::from_millis(1500), "closed after {took:?}");

    // Bob is untouched: his socket still gets his notifications live.
    let seq = a.publish_one("bob", "still here").await;
    let got = bob_b.notifications_until(seq).await;
    assert_eq!(got.last().map(|n| n.seq), Some(seq));
}

#[tokio::test]
async fn a_token_issued_before_the_cut_off_is_refused_everywhere_and_a_later_one_accepted() {
    let env = TestEnv::new().await;
    let node = env.node().await;
    let cut = now() - 30;
    let old = tok("alice", Some(cut - 30));
    let new = tok("alice", Some(cut + 10));
    let no_iat = tok("alice", None);
    // Before any revocation, all three are accepted (a token without iat too).
    for t in [&old, &new, &no_iat] {
        http_status_becomes(&node, t, 200).await;
    }
    // A socket on the new token, to refresh on later.
    let mut live = node.connect_browser(&new, None).await;
    live.handshake().await;

    let cut_text = chrono::DateTime::from_timestamp(cut, 0)
        .expect("time")
        .to_rfc3339();
    let v = revoke_ok(&node, "alice", json!({ "issued_before": cut_text })).await;
    let applied: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(v["revoked_before"].clone()).expect("revoked_before");
    assert_eq!(applied.timestamp(), cut);

    // HTTP: the old token and the one without iat are refused; the new one is not.
    for t in [&old, &no_iat] {
        let body = http_status_becomes(&node, t, 401).await;
        assert_eq!(body["code"], "token_revoked", "{body}");
    }
    http_status_becomes(&node, &new, 200).await;
    // Connect: refused before the upgrade with a header token, closed 4006 after `auth`.
    for t in [&old, &no_iat] {
        let (status, body) = upgrade_refusal(&node, t).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (401, Some("token_revoked"))
        );
        let mut ws = node.connect_browser(t, None).await;
        assert_eq!(ws.expect_close().await.0, 4006);
    }
    let mut fresh = node
        .connect_opts(Some(&new), None, &[])
        .await
        .expect("a token issued after the cut-off connects");
    fresh.handshake().await;
    // Refresh with a revoked token is refused; the socket keeps its own token.
    live.send(json!({ "type": "refresh", "rid": 1, "token": old }))
        .await;
    match live.event().await {
        ServerMessage::Error { code, .. } => {
            assert_eq!(code, herald_protocol::ErrorCode::TokenRevoked)
        }
        other => panic!("expected an error, got {other:?}"),
    }
    live.send(json!({ "type": "refresh", "rid": 2, "token": tok("alice", Some(now())) }))
        .await;
    assert!(matches!(live.event().await, ServerMessage::Ack { .. }));

    // A later cut-off replaces it; an earlier one never lowers it.
    let v = revoke_ok(
        &node,
        "alice",
        json!({ "issued_before": "2001-01-01T00:00:00Z" }),
    )
    .await;
    let kept: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(v["revoked_before"].clone()).expect("revoked_before");
    assert_eq!(kept.timestamp(), cut);
    // Another user is unaffected, even with a token without iat.
    http_status_becomes(&node, &tok("bob", None), 200).await;
    assert_eq!(revocation_rows(&env).await, 1);
}

#[tokio::test]
async fn a_node_that_missed_the_announcement_or_started_later_still_refuses() {
    let env = TestEnv::new().await;
    let a = env.node().await;
    // Another bus prefix: b never hears a's announcement, only PostgreSQL tells it.
    let deaf_prefix = format!("{}deaf:", env.prefix);
    let b = env
        .node_with(|c| {
            c.redis_prefix = deaf_prefix;
            c.revocation_refresh = Duration::from_millis(200);
        })
        .await;
    let old = tok("alice", Some(now() - 10));
    let mut on_b = b.connect_browser(&old, None).await;
    on_b.handshake().await;

    revoke_ok(&a, "alice", json!({})).await;
    let (code, reason) = closed_within(&mut on_b, Duration::from_secs(5)).await;
    assert_eq!(code, 4006, "{reason}");
    let body = http_status_becomes(&b, &old, 401).await;
    assert_eq!(body["code"], "token_revoked");

    // A node started after the revocation refuses the token from its first request.
    let c = env.node().await;
    let (status, body) = error_code(c.get("/v1/notifications/unread-count", &old).await).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("token_revoked"))
    );
    let (status, _) = upgrade_refusal(&c, &old).await;
    assert_eq!(status, 401);
    let later = tok("alice", Some(now() + 2));
    http_status_becomes(&c, &later, 200).await;
}

#[tokio::test]
async fn bad_revocations_are_refused_with_the_field_named_and_nothing_is_stored() {
    let env = TestEnv::new().await;
    let node = env.node().await;
    let long = "a".repeat(129);
    let future = (chrono::Utc::now() + chrono::Duration::minutes(10)).to_rfc3339();
    let cases: Vec<(&str, Option<Value>, &str, &str)> = vec![
        (
            long.as_str(),
            Some(json!({})),
            "invalid_parameter",
            "user_id",
        ),
        ("a%20b", Some(json!({})), "invalid_parameter", "user_id"),
        (
            "alice",
            Some(json!({ "issued_before": "yesterday" })),
            "validation_failed",
            "issued_before",
        ),
        (
            "alice",
            Some(json!({ "issued_before": "2030-01-01T00:00:00" })),
            "validation_failed",
            "issued_before",
        ),
        (
            "alice",
            Some(json!({ "issued_before": future })),
            "validation_failed",
            "issued_before",
        ),
        (
            "alice",
            Some(json!({ "issued_before": 1_700_000_000 })),
            "validation_failed",
            "issued_before",
        ),
        (
            "alice",
            Some(json!({ "before": "2020-01-01T00:00:00Z" })),
            "validation_failed",
            "before",
        ),
        ("alice", Some(json!([])), "validation_failed", "body"),
    ];
    for (user, body, code, field) in cases {
        let (status, v) = error_code(revoke(&node, SERVICE_KEY, user, body.clone()).await).await;
        assert_eq!(status, 400, "{user} {body:?}: {v}");
        assert_eq!(v["code"], code, "{user} {body:?}: {v}");
        assert_eq!(v["field"], field, "{user} {body:?}: {v}");
    }
    let r = node
        .http
        .post(format!("{}/v1/users/alice/revoke", node.base))
        .bearer_auth(SERVICE_KEY)
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .expect("post");
    assert_eq!(error_code(r).await.1["code"], "invalid_json");
    // No key, or a user's token: 401.
    for key in ["not-a-key", &tok("alice", Some(now()))] {
        let (status, _) = error_code(revoke(&node, key, "alice", Some(json!({}))).await).await;
        assert_eq!(status, 401);
    }
    assert_eq!(revocation_rows(&env).await, 0);
    // An empty body means `{}`.
    let r = revoke(&node, SERVICE_KEY, "alice", None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(revocation_rows(&env).await, 1);
}

#[tokio::test]
async fn a_key_without_the_scope_gets_403_on_each_endpoint_and_changes_nothing() {
    let env = TestEnv::new().await;
    const PUBLISH_KEY: &str = "publish-only-key-0123456789";
    const BROADCAST_KEY: &str = "broadcast-only-key-0123456789";
    const REVOKE_KEY: &str = "revoke-only-key-0123456789";
    let node = env
        .node_with(|c| {
            for (scopes, key) in [
                ("publish", PUBLISH_KEY),
                ("broadcast", BROADCAST_KEY),
                ("revoke", REVOKE_KEY),
            ] {
                c.service_keys.push(SecretString::from(key));
                c.service_key_scopes
                    .push(Scopes::parse(scopes).expect("scopes"));
            }
        })
        .await;
    let post = |path: &'static str, key: &'static str, body: Value| {
        let req = node
            .http
            .post(format!("{}{path}", node.base))
            .bearer_auth(key)
            .json(&body);
        async move { req.send().await.expect("post") }
    };
    let publish = notification_body("carol", "hi");
    let broadcast = json!({ "type": "maintenance", "title": "soon" });
    let calls = [
        ("/v1/notifications", publish.clone()),
        ("/v1/broadcasts", broadcast.clone()),
        ("/v1/users/carol/revoke", json!({})),
    ];
    for (key, allowed) in [(PUBLISH_KEY, 0), (BROADCAST_KEY, 1), (REVOKE_KEY, 2)] {
        for (i, (path, body)) in calls.iter().enumerate() {
            if i == allowed {
                continue;
            }
            let (status, v) = error_code(post(path, key, body.clone()).await).await;
            assert_eq!(status, 403, "{key} on {path}: {v}");
            assert_eq!(v["code"], "forbidden", "{key} on {path}: {v}");
        }
    }
    let sql = env.sql().await;
    let count = |table: &'static str| {
        let sql = &sql;
        async move {
            sql.query_one(&format!("SELECT count(*) FROM {table}"), &[])
                .await
                .expect("count")
                .get::<_, i64>(0)
        }
    };
    assert_eq!(count("notifications").await, 0);
    assert_eq!(count("revocations").await, 0);
    // Each key can call its own endpoint; the all-scope key can call every one.
    assert_eq!(
        post("/v1/notifications", PUBLISH_KEY, publish)
            .await
            .status(),
        201
    );
    assert_eq!(
        post("/v1/broadcasts", BROADCAST_KEY, broadcast)
            .await
            .status(),
        202
    );
    assert_eq!(
        post("/v1/users/carol/revoke", REVOKE_KEY, json!({}))
            .await
            .status(),
        200
    );
    assert_eq!(
        post("/v1/users/dave/revoke", SERVICE_KEY, json!({}))
            .await
            .status(),
        200
    );
    assert_eq!(count("notifications").await, 1);
    assert_eq!(count("revocations").await, 2);
}
