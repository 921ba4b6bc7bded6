//! The HTTP contract: publish, the user API, errors, operations endpoints and CORS.

use serde_json::{json, Value};

use crate::helpers::*;
use crate::refusals::assert_error;

/// The most a socket's task future may take in a debug build (measured: ~1.5 KiB).
const DEBUG_TASK_BUDGET: i64 = 1_800;

// ---------------------------------------------------------------------------------------------
// Publish refusals.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_requires_a_service_key() {
    let env = TestEnv::new().await;
    let node = env.node().await;
    let url = format!("{}/v1/notifications", node.base);
    let body = notification_body("alice", "hi");

    let r = node.http.post(&url).json(&body).send().await.expect("POST");
    check_error(r, 401, "unauthorized", None).await;
    let r = node
        .http
        .post(&url)
        .bearer_auth("test-service-key-0123456789-wrong")
        .json(&body)
        .send()
        .await
        .expect("POST");
    check_error(r, 401, "unauthorized", None).await;
    // A prefix of the real key.
    let r = node
        .http
        .post(&url)
        .bearer_auth(&SERVICE_KEY[..SERVICE_KEY.len() - 1])
        .json(&body)
        .send()
        .await
        .expect("POST");
    check_error(r, 401, "unauthorized", None).await;
    // A valid user token is not a service key.
    let r = node
        .http
        .post(&url)
        .bearer_auth(token("alice", 3600))
        .json(&body)
        .send()
        .await
        .expect("POST");
    check_error(r, 401, "unauthorized", None).await;
    // The right key with the wrong scheme.
    let r = node
        .http
        .post(&url)
        .header("authorization", format!("Basic {SERVICE_KEY}"))
        .json(&body)
        .send()
        .await
        .expect("POST");
    check_error(r, 401, "unauthorized", None).await;
    // Broadcasts too.
    let r = node
        .http
        .post(format!("{}/v1/broadcasts", node.base))
        .bearer_auth(token("alice", 3600))
        .json(&json!({ "type": "system.notice", "title": "hi" }))
        .send()
        .await
        .expect("POST");
    check_error(r, 401, "unauthorized", None).await;

    assert_no_notifications(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_refuses_bad_bodies() {
    let env = TestEnv::new().await;
    let node = env.node_with(|c| c.max_publish_body_bytes = 2048).await;
    let url = format!("{}/v1/notifications", node.base);
    let raw = |ct: &'static str, body: String| {
        node.http
            .post(&url)
            .bearer_auth(SERVICE_KEY)
            .header("content-type", ct)
            .body(body)
            .send()
    };

    let r = raw("application/json", "{\"recipient\": \"alice\",".into())
        .await
        .expect("POST");
    check_error(r, 400, "invalid_json", None).await;
    let r = raw("application/json", "not json at all".into())
        .await
        .expect("POST");
    check_error(r, 400, "invalid_json", None).await;
    let r = raw("application/json", String::new()).await.expect("POST");
    check_error(r, 400, "invalid_json", None).await;

    let valid = notification_body("alice", "hi").to_string();
    let r = raw("text/plain", valid.clone()).await.expect("POST");
    check_error(r, 415, "unsupported_media_type", None).await;
    let r = raw(
        "application/x-www-form-urlencoded",
        "recipient=alice".into(),
    )
    .await
    .expect("POST");
    check_error(r, 415, "unsupported_media_type", None).await;
    let r = node
        .http
        .post(&url)
        .bearer_auth(SERVICE_KEY)
        .body(valid)
        .send()
        .await
        .expect("POST");
    check_error(r, 415, "unsupported_media_type", None).await;

    let mut big = notification_body("alice", "big");
    big["body"] = json!("x".repeat(3000));
    let r = node.publish(&big).await;
    check_error(r, 413, "payload_too_large", None).await;

    assert_no_notifications(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_validation_failures_name_the_field() {
    let env = TestEnv::new().await;
    let node = env.node().await;
    let base = notification_body("alice", "hi");
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    let recipients: Vec<String> = (0..1001).map(|i| format!("u{i}")).collect();
    let cases: Vec<(Value, &str)> = vec![
        (with("type", json!("comment created")), "type"),
        (with("type", json!("")), "type"),
        (with("title", json!("")), "title"),
        (with("title", json!("   ")), "title"),
        (with("title", json!("x".repeat(201))), "title"),
        (with("body", json!("a\u{0}b")), "body"),
        (with("link", json!("javascript:alert(1)")), "link"),
        (with("link", json!("JavaScript:alert(1)")), "link"),
        (with("link", json!("//evil.example/x")), "link"),
        // Open redirects Chromium resolves off-site (every case of the shared link rule is in
        // crates/herald-protocol/link-vectors.json and herald-core's unit tests).
        (with("link", json!("/\\evil.example/login")), "link"),
        (with("link", json!("/%2F%2Fevil.example")), "link"),
        (with("link", json!("/\t/evil.example")), "link"),
        (with("link", json!("https:evil.example")), "link"),
        // Spoofing: a right-to-left override, a zero-width space.
        (with("title", json!("invoice\u{202E}fdp.exe")), "title"),
        (with("body", json!("pay\u{200B}pal")), "body"),
        (
            with("avatar_url", json!("data:image/png;base64,AAAA")),
            "avatar_url",
        ),
        (with("data", json!([1, 2, 3])), "data"),
        (with("data", json!("a string")), "data"),
        (with("data", json!({ "x": "y".repeat(9000) })), "data"),
        (
            json!({ "recipients": recipients, "type": "t", "title": "x" }),
            "recipients",
        ),
        (
            json!({ "recipient": "alice", "recipients": ["bob"], "type": "t", "title": "x" }),
            "recipients",
        ),
        (
            json!({ "recipients": [], "type": "t", "title": "x" }),
            "recipients",
        ),
        (json!({ "type": "t", "title": "x" }), "recipients"),
        (with("recipient", json!("a b")), "recipients"),
        (
            with("recipient", json!("'; DROP TABLE notifications;--")),
            "recipients",
        ),
        (
            json!({ "recipients": ["ok", "not ok"], "type": "t", "title": "x" }),
            "recipients",
        ),
        (with("idempotency_key", json!("")), "idempotency_key"),
    ];
    for (body, field) in cases {
        let r = node.publish(&body).await;
        let v = check_error(r, 400, "validation_failed", Some(field)).await;
        assert!(!v["message"].as_str().unwrap_or("").is_empty());
    }
    assert_no_notifications(&env).await;
}

/// Failures caught by deserialisation (unknown field, missing or mistyped field) are still
/// `validation_failed` and should name the field like the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_shape_errors_are_validation_failed_with_field() {
    let env = TestEnv::new().await;
    let node = env.node().await;
    let mut extra = notification_body("alice", "hi");
    extra["priority"] = json!("high");
    let r = node.publish(&extra).await;
    check_error(r, 400, "validation_failed", Some("priority")).await;

    let r = node
        .publish(&json!({ "recipient": "alice", "type": "t" }))
        .await;
    check_error(r, 400, "validation_failed", Some("title")).await;

    let mut mistyped = notification_body("alice", "hi");
    mistyped["title"] = json!(42);
    let r = node.publish(&mistyped).await;
    check_error(r, 400, "validation_failed", Some("title")).await;

    assert_no_notifications(&env).await;
}

// ---------------------------------------------------------------------------------------------
// The user API.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_pages_newest_first_with_cursors() {
    let env = TestEnv::new().await;
    let node = env.node().await;
    for i in 1..=25 {
        node.publish_one("alice", &format!("n{i}")).await;
    }
    node.publish_one("bob", "not alice's").await;
    let tok = token("alice", 3600);

    let p1 = page(&node, "/v1/notifications?limit=10", &tok).await;
    assert_eq!(seqs(&p1), (16..=25).rev().collect::<Vec<_>>());
    assert_eq!(p1["notifications"][0]["title"], "n25");
    assert_eq!(p1["unread_count"], 25);
    assert_eq!(p1["latest_seq"], 25);
    assert!(p1["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .all(|n| n["user_id"] == "alice"));
    let c1 = p1["next_cursor"]
        .as_str()
        .expect("next_cursor after page 1")
        .to_string();

    let p2 = page(
        &node,
        &format!("/v1/notifications?limit=10&before={c1}"),
        &tok,
    )
    .await;
    assert_eq!(seqs(&p2), (6..=15).rev().collect::<Vec<_>>());
    let c2 = p2["next_cursor"]
        .as_str()
        .expect("next_cursor after page 2")
        .to_string();

    let p3 = page(
        &node,
        &format!("/v1/notifications?limit=10&before={c2}"),
        &tok,
    )
    .await;
    assert_eq!(seqs(&p3), (1..=5).rev().collect::<Vec<_>>());
    assert!(
        p3["next_cursor"].is_null(),
        "last page must have next_cursor null: {p3}"
    );

    // The default page size is 20.
    let d = page(&node, "/v1/notifications", &tok).await;
    assert_eq!(seqs(&d), (6..=25).rev().collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_after_is_ascending() {
    let env = TestEnv::new().await;
    let node = env.node().await;
    for i in 1..=25 {
        node.publish_one("alice", &format!("n{i}")).await;
    }
    let tok = token("alice", 3600);
    let p1 = page(&node, "/v1/notifications?after=0&limit=10", &tok).await;
    assert_eq!(seqs(&p1), (1..=10).collect::<Vec<_>>());
    let c1 = p1["next_cursor"].as_str().expect("cursor").to_string();
    let p2 = page(
        &node,
        &format!("/v1/notifications?after={c1}&limit=10"),
        &tok,
    )
    .await;
    assert_eq!(seqs(&p2), (11..=20).collect::<Vec<_>>());
    let c2 = p2["next_cursor"].as_str().expect("cursor").to_string();
    let p3 = page(
        &node,
        &format!("/v1/notifications?after={c2}&limit=10"),
        &tok,
    )
    .await;
    assert_eq!(seqs(&p3), (21..=25).collect::<Vec<_>>());
    assert!(p3["next_cursor"].is_null());
    let none = page(&node, "/v1/notifications?after=25", &tok).await;
    assert_eq!(seqs(&none), Vec::<i64>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_only_get_one_and_unread_count() {
    let env = TestEnv::new().await;
    let node = env.node().await;
    for i in 1..=6 {
        node.publish_one("alice", &format!("n{i}")).await;
    }
    let tok = token("alice", 3600);
    let all = page(&node, "/v1/notifications", &tok).await;
    let id_of = |seq: i64| -> String {
        all["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["seq"] == seq)
            .and_then(|n| n["id"].as_str())
            .expect("id")
            .to_string()
    };
    for seq in [2, 5] {
        let r = node
            .post(
                &format!("/v1/notifications/{}/read", id_of(seq)),
                &tok,
                None,
            )
            .await;
        assert_eq!(r.status(), 200);
    }
    let unread = page(&node, "/v1/notifications?unread_only=true", &tok).await;
    assert_eq!(seqs(&unread), vec![6, 4, 3, 1]);
    assert!(unread["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .all(|n| n["read_at"].is_null()));
    assert_eq!(unread["unread_count"], 4);
    let also_all = page(&node, "/v1/notifications?unread_only=false", &tok).await;
    assert_eq!(seqs(&also_all).len(), 6);

    let r = node.get("/v1/notifications/unread-count", &tok).await;
    assert_eq!(r.status(), 200);
    let c: Value = r.json().await.expect("json");
    assert_eq!(c["unread_count"], 4);
    assert_eq!(c["latest_seq"], 6);
    assert!(c["version"].as_i64().expect("version") >= 8);

    let r = node
        .get(&format!("/v1/notifications/{}", id_of(3)), &tok)
        .await;
    assert_eq!(r.status(), 200);
    let n: Value = r.json().await.expect("json");
    assert_eq!(n["seq"], 3);
    assert_eq!(n["title"], "n3");
    assert_eq!(n["user_id"], "alice");
    assert_eq!(n["type"], "comment.created");
    assert!(n["read_at"].is_null());
    let r = node
        .get(&format!("/v1/notifications/{}", id_of(5)), &tok)
        .await;
    let n: Value = r.json().await.expect("json");
    assert!(n["read_at"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mark_read_is_idempotent() {
    let env = TestEnv::new().await;
    let node = env.node().await;
    node.publish_one("alice", "one").await;
    node.publish_one("alice", "two").await;
    let tok = token("alice", 3600);
    let id = page(&node, "/v1/notifications", &tok).await["notifications"][1]["id"]
        .as_str()
        .expect("id")
        .to_string();

    let r = node
        .post(&format!("/v1/notifications/{id}/read"), &tok, None)
        .await;
    assert_eq!(r.status(), 200);
    let first: Value = r.json().await.expect("json");
    assert_eq!(first["id"], id.as_str());
    assert_eq!(first["seq"], 1);
    assert_eq!(first["changed"], true);
    assert_eq!(first["unread_count"], 1);
    assert!(first["read_at"].is_string());

    let r = node
        .post(&format!("/v1/notifications/{id}/read"), &tok, None)
        .await;
    assert_eq!(r.status(), 200);
    let second: Value = r.json().await.expect("json");
    assert_eq!(second["changed"], false);
    assert_eq!(second["read_at"], first["read_at"], "read_at must not move");
    assert_eq!(second["unread_count"], 1);
    assert_eq!(
        second["version"], first["version"],
        "a no-op must not bump the version"
    );

    let db = env.sql().await;
    let unread: i64 = db
        .query_one(
            "SELECT count(*) FROM notifications WHERE user_id = 'alice' AND read_at IS NULL",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(unread, 1);
    let stored: i64 = db
        .query_one(
            "SELECT unread_count FROM user_state WHERE user_id = 'alice'",
            &[],
        )
        .await
        .expect("user_state")
        .get(0);
    assert_eq!(stored, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_all_with_and_without_up_to_seq() {
    let env = TestEnv::new().await;
    let node = env.node().await;
    for i in 1..=5 {
        node.publish_one("alice", &format!("n{i}")).await;
    }
    node.publish_one("bob", "bob's").await;
    let tok = token("alice", 3600);

    let r = node
        .post(
            "/v1/notifications/read-all",
            &tok,
            Some(json!({ "up_to_seq": 3 })),
        )
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["marked"], 3);
    assert_eq!(v["up_to_seq"], 3);
    assert_eq!(v["unread_count"], 2);
    assert_eq!(unread_seqs(&env, "alice").await, vec![4, 5]);

    // Bad bodies are refused without touching anything.
    let r = node
        .post(
            "/v1/notifications/read-all",
            &tok,
            Some(json!({ "up_to_seq": -1 })),
        )
        .await;
    check_error(r, 400, "validation_failed", Some("up_to_seq")).await;
    let r = node
        .http
        .post(format!("{}/v1/notifications/read-all", node.base))
        .bearer_auth(&tok)
        .header("content-type", "application/json")
        .body("{up_to_seq")
        .send()
        .await
        .expect("POST");
    check_error(r, 400, "invalid_json", None).await;
    let r = node
        .post(
            "/v1/notifications/read-all",
            &tok,
            Some(json!({ "up_to_seq": 5, "all": true })),
        )
        .await;
    check_error(r, 400, "validation_failed", None).await;
    assert_eq!(unread_seqs(&env, "alice").await, vec![4, 5]);

    // No body at all: everything.
    let r = node.post("/v1/notifications/read-all", &tok, None).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["marked"], 2);
    assert_eq!(v["up_to_seq"], 5);
    assert_eq!(v["unread_count"], 0);
    assert_eq!(unread_seqs(&env, "alice").await, Vec::<i64>::new());
    // Bob's are untouched.
    assert_eq!(unread_seqs(&env, "bob").await, vec![1]);

    // An empty JSON object and an empty body with a JSON content type are fine too.
    let r = node
        .post("/v1/notifications/read-all", &tok, Some(json!({})))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.expect("json")["marked"], 0);
    let r = node
        .http
        .post(format!("{}/v1/notifications/read-all", node.base))
        .bearer_auth(&tok)
        .header("content-type", "application/json")
        .body("")
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_query_and_path_values_are_invalid_parameter() {
    let env = TestEnv::new().await;
    let node = env.node().await;
    node.publish_one("alice", "one").await;
    let tok = token("alice", 3600);
    let before = stored(&env).await;
    let injection = "%27%20OR%201%3D1--"; // ' OR 1=1--
    let cases: Vec<(String, &str)> = vec![
        ("limit=0".into(), "limit"),
        ("limit=101".into(), "limit"),
        ("limit=abc".into(), "limit"),
        ("limit=-5".into(), "limit"),
        ("limit=99999999999999999999999".into(), "limit"),
        ("limit=".into(), "limit"),
        ("before=-1".into(), "before"),
        (format!("before={injection}"), "before"),
        (
            "before=1%3B%20DROP%20TABLE%20notifications".into(),
            "before",
        ),
        ("after=1e9".into(), "after"),
        ("after=0x10".into(), "after"),
        ("unread_only=maybe".into(), "unread_only"),
        ("unread_only=yes".into(), "unread_only"),
        ("before=5&after=1".into(), "after"),
        ("after=1&unread_only=true".into(), "unread_only"),
    ];
    for (q, field) in cases {
        let r = node.get(&format!("/v1/notifications?{q}"), &tok).await;
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        assert_eq!(status, 400, "?{q}: {text}");
        let v: Value =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("?{q}: not JSON: {text}"));
        check_error_body(&v, "invalid_parameter", Some(field));
    }
    for id in [
        "not-a-uuid",
        "1",
        "%27%20OR%201%3D1--",
        "00000000-0000-0000-0000-00000000000g",
    ] {
        let r = node.get(&format!("/v1/notifications/{id}"), &tok).await;
        check_error(r, 400, "invalid_parameter", Some("id")).await;
        let r = node
            .post(&format!("/v1/notifications/{id}/read"), &tok, None)
            .await;
        check_error(r, 400, "invalid_parameter", Some("id")).await;
    }
    assert_eq!(
        stored(&env).await,
        before,
        "a refused request changed stored data"
    );
}

/// Parameter pollution: a repeated query parameter is refused (not silently resolved) and,
/// like every other `invalid_parameter`, the error names the parameter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_query_parameter_is_invalid_parameter_naming_it() {
    let env = TestEnv::new().await;
    let node = env.node().await;
    node.publish_one("alice", "one").await;
    let tok = token("alice", 3600);
    let r = node
        .get("/v1/notifications?limit=10&limit=1000", &tok)
        .await;
    check_error(r, 400, "invalid_parameter", Some("limit")).await;
    let r = node.get("/v1/notifications?before=5&before=1", &tok).await;
    check_error(r, 400, "invalid_parameter", Some("before")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_and_wrong_methods() {
    let env = TestEnv::new().await;
    let node = env.node().await;
    let tok = token("alice", 3600);
    for path in [
        "/v2/notifications",
        "/v1/nope",
        "/",
        "/v1/notifications/a/b/c",
        "/admin",
    ] {
        let r = node.get(path, &tok).await;
        check_error(r, 404, "not_found", None).await;
    }
    let r = node.post("/v1/nope", &tok, Some(json!({}))).await;
    check_error(r, 404, "not_found", None).await;

    let url = |p: &str| format!("{}{p}", node.base);
    let id = uuid::Uuid::new_v4();
    let wrong: Vec<(reqwest::Method, String)> = vec![
        (reqwest::Method::DELETE, url("/v1/notifications")),
        (reqwest::Method::PUT, url("/v1/notifications")),
        (reqwest::Method::GET, url("/v1/broadcasts")),
        (reqwest::Method::POST, url("/v1/notifications/unread-count")),
        (reqwest::Method::GET, url("/v1/notifications/read-all")),
        (
            reqwest::Method::PUT,
            url(&format!("/v1/notifications/{id}")),
        ),
        (
            reqwest::Method::GET,
            url(&format!("/v1/notifications/{id}/read")),
        ),
    ];
    for (m, u) in wrong {
        let r = node
            .http
            .request(m.clone(), &u)
            .bearer_auth(SERVICE_KEY)
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        assert_eq!(status, 405, "{m} {u}: {text}");
        let v: Value =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("{m} {u}: not JSON: {text}"));
        check_error_body(&v, "method_not_allowed", None);
    }
    assert_no_notifications(&env).await;
}

// ---------------------------------------------------------------------------------------------
// Operations endpoints and CORS.
// ---------------------------------------------------------------------------------------------

/// An idle keep-alive connection stays usable until `HERALD_HTTP_KEEP_ALIVE_MS`, then the
/// gateway closes it (clients that pool connections must drop idle ones sooner:
/// docs/protocol.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_close_after_the_configured_time() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let env = TestEnv::new().await;
    let node = env
        .node_with(|c| c.http_keep_alive = std::time::Duration::from_millis(2_000))
        .await;
    let addr = node.base.trim_start_matches("http://").to_string();
    let mut tcp = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    let mut buf = vec![0u8; 4096];
    // Two requests on one connection, the second after 500 ms of idleness.
    for pause_ms in [0, 500] {
        tokio::time::sleep(std::time::Duration::from_millis(pause_ms)).await;
        tcp.write_all(request.as_bytes()).await.expect("write");
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), tcp.read(&mut buf))
            .await
            .expect("response in time")
            .expect("read");
        let head = String::from_utf8_lossy(&buf[..n]);
        assert!(head.starts_with("HTTP/1.1 200"), "response: {head}");
    }
    // Then idle: the gateway closes it (EOF) after the keep-alive: not before 1 s, and well
    // before actix-web's own default of 5 s (so the setting is what closed it). actix-http
    // takes the deadline from a clock it refreshes every 500 ms (`DateService`), so the close
    // comes up to 500 ms early: 2 s keeps it above 1 s (with 1.5 s it once came at 999 ms).
    let idle = std::time::Instant::now();
    let n = tokio::time::timeout(std::time::Duration::from_secs(4), tcp.read(&mut buf))
        .await
        .expect("closed within 4 s")
        .unwrap_or(0);
    assert_eq!(
        n,
        0,
        "expected EOF, got {:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    let waited = idle.elapsed();
    assert!(
        waited >= std::time::Duration::from_millis(1_000),
        "closed after {waited:?}, before the keep-alive"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_ready_and_metrics() {
    let env = TestEnv::new().await;
    let node = env.node().await;
    let r = node
        .http
        .get(format!("{}/healthz", node.base))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["status"], "ok");
    assert_eq!(v["node_id"], node.handle.node_id());

    let r = node
        .http
        .get(format!("{}/readyz", node.base))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["status"], "ready");
    assert_eq!(v["postgres"], true);
    assert_eq!(v["redis"], true);
    assert_eq!(v["node_id"], node.handle.node_id());

    let mut ws = node.connect("alice").await;
    ws.handshake().await;
    node.publish_one("alice", "counted").await;
    // /metrics is on the admin listener only; the health endpoints are on both.
    let r = node
        .http
        .get(format!("{}/metrics", node.base))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 404, "no /metrics on the public listener");
    for path in ["/healthz", "/readyz"] {
        let r = node
            .http
            .get(format!("{}{path}", node.admin))
            .send()
            .await
            .expect("GET");
        assert_eq!(r.status(), 200, "{path} on the admin listener");
    }
    let r = node
        .http
        .get(format!("{}/metrics", node.admin))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 200);
    assert!(r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain")));
    let text = r.text().await.expect("text");
    assert!(text.contains("herald_connections 1"), "metrics:\n{text}");
    assert!(
        text.contains("herald_publish_duration_seconds"),
        "metrics:\n{text}"
    );
    assert!(
        text.contains("herald_publish_duration_seconds_count 1"),
        "metrics:\n{text}"
    );
    // The group-commit stages of that one publish: one batch of one row.
    for stage in ["queue", "commit", "fanout", "reply"] {
        let line = format!("herald_publish_stage_seconds_count{{stage=\"{stage}\"}} 1");
        assert!(text.contains(&line), "no {line:?} in:\n{text}");
    }
    assert!(
        text.contains("herald_publish_batch_rows_sum 1"),
        "metrics:\n{text}"
    );
    // The size of a socket's task is exported once a socket has connected (its idle memory
    // floor; release figures in docs/performance.md, "What limits each figure").
    let task_bytes: i64 = text
        .lines()
        .find_map(|l| l.strip_prefix("herald_socket_task_bytes "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no herald_socket_task_bytes in:\n{text}"));
    // The budget: an idle socket must stay within ~3 KiB in a release build, of which the
    // task is the largest part. The release bound is also checked against a release node by
    // the fault suite (crates/herald-chaos).
    let budget = if cfg!(debug_assertions) {
        DEBUG_TASK_BUDGET
    } else {
        herald_gateway::ws::RELEASE_TASK_BUDGET
    };
    assert!(
        (256..=budget).contains(&task_bytes),
        "socket task of {task_bytes} bytes, budget {budget}"
    );
    // By convention: per-route request durations (the route pattern, not the path), the
    // process collector, and counters (not gauges) for the bus's cumulative counts.
    assert!(
        text.contains(
            "herald_http_request_duration_seconds_count{method=\"POST\",route=\"/v1/notifications\",status=\"201\"} 1"
        ),
        "metrics:\n{text}"
    );
    for name in [
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_cpu_seconds_total",
    ] {
        assert!(
            text.contains(&format!("\n{name} ")),
            "no {name} in:\n{text}"
        );
    }
    for name in [
        "herald_bus_reconnects_total",
        "herald_bus_resyncs_total",
        "herald_bus_probe_failures_total",
        "herald_bus_messages_received_total",
        "herald_bus_decode_errors_total",
        "herald_accept_errors_total",
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} counter")),
            "{name} is not a counter:\n{text}"
        );
    }
    // Every counter's name ends in _total.
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let mut parts = line.split_whitespace().skip(2);
        let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
        if kind == "counter" {
            assert!(
                name.ends_with("_total"),
                "counter {name} does not end in _total"
            );
        }
    }
    // No secret ever appears in the metrics.
    assert!(!text.contains(SERVICE_KEY) && !text.contains(SECRET));
}

/// Every request with `Upgrade: websocket` leaves actix-web for the upgrade hook; outside
/// `/v1/ws` (and the dev echo) it gets the same JSON errors as the rest of the API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrades_elsewhere_are_refused_with_json_errors() {
    let env = TestEnv::new().await;
    let node = env.node().await;
    node.publish_one("alice", "kept").await;
    let upgrade = |method: reqwest::Method, path: &str| {
        node.http
            .request(method, format!("{}{path}", node.base))
            .bearer_auth(token("alice", 3600))
            .header("connection", "Upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
    };
    let r = upgrade(reqwest::Method::GET, "/v1/notifications")
        .send()
        .await
        .expect("GET");
    assert_error(r, 404, "not_found", None).await;
    // The dev echo is off on this node.
    let r = upgrade(reqwest::Method::GET, "/dev/echo")
        .send()
        .await
        .expect("GET");
    assert_error(r, 404, "not_found", None).await;
    let r = upgrade(reqwest::Method::POST, "/v1/ws")
        .send()
        .await
        .expect("POST");
    assert_error(r, 405, "method_not_allowed", None).await;
    // A handshake with a bad version is a 400 naming the problem.
    let r = node
        .http
        .get(format!("{}/v1/ws", node.base))
        .bearer_auth(token("alice", 3600))
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "8")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .expect("GET");
    assert_error(r, 400, "invalid_parameter", None).await;
    // A plain GET (no upgrade) passes the same checks, then is a 400.
    let r = node
        .http
        .get(format!("{}/v1/ws", node.base))
        .bearer_auth(token("alice", 3600))
        .send()
        .await
        .expect("GET");
    assert_error(r, 400, "invalid_parameter", None).await;
    // Nothing was changed, and the node still serves sockets.
    let mut ws = node.connect("alice").await;
    ws.handshake().await;
    let r = node
        .http
        .get(format!("{}/v1/notifications", node.base))
        .bearer_auth(token("alice", 3600))
        .send()
        .await
        .expect("GET");
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["notifications"].as_array().map(Vec::len), Some(1), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflight_allows_only_the_allowed_origin() {
    let env = TestEnv::new().await;
    let node = env.node().await;
    let preflight = |origin: &'static str, path: &'static str| {
        node.http
            .request(reqwest::Method::OPTIONS, format!("{}{path}", node.base))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            )
            .send()
    };
    for path in ["/v1/notifications", "/v1/notifications/read-all"] {
        let r = preflight(ORIGIN, path).await.expect("OPTIONS");
        assert!(
            r.status().is_success(),
            "allowed preflight on {path}: {}",
            r.status()
        );
        assert_eq!(
            header(&r, "access-control-allow-origin").as_deref(),
            Some(ORIGIN)
        );
        let methods = header(&r, "access-control-allow-methods").unwrap_or_default();
        assert!(methods.contains("POST"), "allow-methods {methods}");
        let headers = header(&r, "access-control-allow-headers")
            .unwrap_or_default()
            .to_ascii_lowercase();
        assert!(headers.contains("authorization"), "allow-headers {headers}");

        for evil in ["https://evil.example", "null", "http://app.test.evil.com"] {
            let r = preflight(evil, path).await.expect("OPTIONS");
            assert!(
                header(&r, "access-control-allow-origin").is_none(),
                "preflight from {evil} must not be allowed"
            );
            assert!(
                !r.status().is_success(),
                "preflight from {evil}: {}",
                r.status()
            );
        }
    }
    // A simple cross-origin GET: the allowed origin gets the header, an evil one does not.
    let tok = token("alice", 3600);
    let r = node
        .http
        .get(format!("{}/v1/notifications", node.base))
        .bearer_auth(&tok)
        .header("origin", ORIGIN)
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "access-control-allow-origin").as_deref(),
        Some(ORIGIN)
    );
    let r = node
        .http
        .get(format!("{}/v1/notifications", node.base))
        .bearer_auth(&tok)
        .header("origin", "https://evil.example")
        .send()
        .await
        .expect("GET");
    assert!(header(&r, "access-control-allow-origin").is_none());
}

// ---------------------------------------------------------------------------------------------
// Helpers local to these tests.
// ---------------------------------------------------------------------------------------------

fn header(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

async fn page(node: &TestNode, path: &str, tok: &str) -> Value {
    let r = node.get(path, tok).await;
    let status = r.status();
    let text = r.text().await.expect("body");
    assert_eq!(status, 200, "GET {path}: {text}");
    serde_json::from_str(&text).expect("page json")
}

fn seqs(page: &Value) -> Vec<i64> {
    page["notifications"]
        .as_array()
        .expect("notifications array")
        .iter()
        .map(|n| n["seq"].as_i64().expect("seq"))
        .collect()
}

async fn unread_seqs(env: &TestEnv, user: &str) -> Vec<i64> {
    env.sql()
        .await
        .query(
            "SELECT seq FROM notifications WHERE user_id = $1 AND read_at IS NULL ORDER BY seq",
            &[&user],
        )
        .await
        .expect("query")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

async fn assert_no_notifications(env: &TestEnv) {
    let db = env.sql().await;
    let n: i64 = db
        .query_one("SELECT count(*) FROM notifications", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 0, "a refused publish stored notifications");
    let s: i64 = db
        .query_one("SELECT count(*) FROM user_state WHERE last_seq > 0", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(s, 0, "a refused publish advanced a user's seq");
    let k: i64 = db
        .query_one("SELECT count(*) FROM publish_idempotency", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(k, 0, "a refused publish stored an idempotency key");
}

async fn stored(env: &TestEnv) -> Vec<String> {
    let db = env.sql().await;
    let mut out = Vec::new();
    for r in db
        .query(
            "SELECT user_id, seq, read_at::text FROM notifications ORDER BY user_id, seq",
            &[],
        )
        .await
        .expect("query")
    {
        let (u, s, ra): (String, i64, Option<String>) = (r.get(0), r.get(1), r.get(2));
        out.push(format!("n {u} {s} {ra:?}"));
    }
    for r in db
        .query(
            "SELECT user_id, last_seq, unread_count, version FROM user_state ORDER BY user_id",
            &[],
        )
        .await
        .expect("query")
    {
        let (u, l, c, v): (String, i64, i64, i64) = (r.get(0), r.get(1), r.get(2), r.get(3));
        out.push(format!("u {u} {l} {c} {v}"));
    }
    out
}

/// Asserts an error body is exactly `{code, message[, field]}` with this code (and field).
fn check_error_body(v: &Value, code: &str, field: Option<&str>) {
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("error body is not an object: {v}"));
    assert_eq!(
        obj.get("code").and_then(Value::as_str),
        Some(code),
        "body {v}"
    );
    assert!(
        obj.get("message")
            .and_then(Value::as_str)
            .is_some_and(|m| !m.is_empty()),
        "error body needs a message: {v}"
    );
    for k in obj.keys() {
        assert!(
            ["code", "message", "field"].contains(&k.as_str()),
            "unexpected key {k} in {v}"
        );
    }
    if let Some(f) = obj.get("field") {
        assert!(f.is_string(), "field must be a string when present: {v}");
    }
    if let Some(f) = field {
        assert_eq!(
            obj.get("field").and_then(Value::as_str),
            Some(f),
            "field in {v}"
        );
    }
}

async fn check_error(r: reqwest::Response, status: u16, code: &str, field: Option<&str>) -> Value {
    let got = r.status().as_u16();
    let ct = header(&r, "content-type").unwrap_or_default();
    let text = r.text().await.expect("body");
    assert_eq!(got, status, "expected {status} {code}, got {got}: {text}");
    assert!(
        ct.starts_with("application/json"),
        "error content-type {ct:?}: {text}"
    );
    let v: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("error body not JSON ({e}): {text}"));
    check_error_body(&v, code, field);
    v
}
