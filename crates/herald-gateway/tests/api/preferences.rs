//! `GET`/`PUT /v1/me/preferences` (user token) and `PUT /v1/users/{user_id}/contact`
//! (service key): stored when valid, refused naming the field (and nothing stored) when not.

use serde_json::{json, Value};

use crate::helpers::*;

async fn put(node: &TestNode, path: &str, bearer: &str, body: &Value) -> reqwest::Response {
    node.http
        .put(format!("{}{path}", node.base))
        .bearer_auth(bearer)
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preferences_round_trip_and_bad_ones_are_refused_unchanged() {
    let env = TestEnv::new().await;
    let node = env.node().await;
    let tok = token("pia", 600);
    // None stored: the empty document.
    let r = node.get("/v1/me/preferences", &tok).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({ "channels": {} }));

    let good = json!({
        "channels": { "comment.created": { "webhook": false }, "*": { "email": false } },
        "quiet_hours": { "start": "22:00", "end": "07:00", "time_zone": "Europe/Berlin" },
        "digest_window_secs": 3600
    });
    let r = put(&node, "/v1/me/preferences", &tok, &good).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), good);
    assert_eq!(
        node.get("/v1/me/preferences", &tok)
            .await
            .json::<Value>()
            .await
            .unwrap(),
        good
    );
    // Another user sees only their own.
    let other = node.get("/v1/me/preferences", &token("quinn", 600)).await;
    assert_eq!(
        other.json::<Value>().await.unwrap(),
        json!({ "channels": {} })
    );

    for (bad, field) in [
        (
            json!({ "channels": { "dm": { "fax": true } } }),
            "channels.dm",
        ),
        (
            json!({ "channels": { "dm": { "email": "yes" } } }),
            "channels.dm.email",
        ),
        (
            json!({ "quiet_hours": { "start": "22:00", "end": "07:00", "time_zone": "Mars/Base" } }),
            "quiet_hours.time_zone",
        ),
        (
            json!({ "quiet_hours": { "start": "24:00", "end": "07:00", "time_zone": "UTC" } }),
            "quiet_hours.start",
        ),
        (json!({ "digest_window_secs": 10 }), "digest_window_secs"),
        (json!({ "colour": "blue" }), "colour"),
    ] {
        let r = put(&node, "/v1/me/preferences", &tok, &bad).await;
        assert_eq!(r.status(), 400, "{bad}");
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["code"], "validation_failed", "{bad}: {e}");
        assert_eq!(e["field"], field, "{bad}: {e}");
    }
    // Nothing of the refused ones was stored.
    assert_eq!(
        node.get("/v1/me/preferences", &tok)
            .await
            .json::<Value>()
            .await
            .unwrap(),
        good
    );
    // Without a user token: 401.
    let r = node
        .http
        .get(format!("{}/v1/me/preferences", node.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contact_is_set_by_the_service_and_checked() {
    let env = TestEnv::new().await;
    let node = env.node().await;
    let r = put(
        &node,
        "/v1/users/pia/contact",
        SERVICE_KEY,
        &json!({ "email": "pia@example.com", "locale": "de-CH" }),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({ "user_id": "pia", "email": "pia@example.com", "locale": "de-CH" })
    );
    for (bad, field) in [
        (json!({ "email": "pia at example.com" }), "email"),
        (json!({ "email": "pia@example.com\r\nBcc: x@y.z" }), "email"),
        (json!({ "locale": "de_CH" }), "locale"),
        (json!({ "phone": "1" }), "phone"),
    ] {
        let r = put(&node, "/v1/users/pia/contact", SERVICE_KEY, &bad).await;
        assert_eq!(r.status(), 400, "{bad}");
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["field"], field, "{bad}: {e}");
    }
    let r = put(&node, "/v1/users/bad%20id/contact", SERVICE_KEY, &json!({})).await;
    assert_eq!(r.status(), 400);
    // A user token is not a service key.
    let r = put(
        &node,
        "/v1/users/pia/contact",
        &token("pia", 60),
        &json!({ "email": "x@y.z" }),
    )
    .await;
    assert_eq!(r.status(), 401);
    let row = env
        .sql()
        .await
        .query_one(
            "SELECT email, locale FROM user_contacts WHERE user_id = 'pia'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1)),
        ("pia@example.com".to_owned(), "de-CH".to_owned()),
        "the refused updates changed nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_lists_the_configured_types_and_channels() {
    let env = TestEnv::new().await;
    let entries: Vec<String> = ["*:webhook:1h", "dm:webhook:30s", "comment:webhook:15m"]
        .map(str::to_owned)
        .to_vec();
    let node = env
        .node_with(|c| {
            c.fallback.rules = herald_core::fallback::Rules::parse(&entries).unwrap();
        })
        .await;
    let tok = token("pia", 600);
    let r = node.get("/v1/me/preferences/schema", &tok).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({
            "channels": ["webhook"],
            "types": [
                { "type": "comment", "channels": ["webhook"], "after_ms": 900000 },
                { "type": "dm", "channels": ["webhook"], "after_ms": 30000 },
                { "type": "*", "channels": ["webhook"], "after_ms": 3600000 },
            ],
            "digest_window_secs": { "min": 60, "max": 86400 },
        })
    );
    // A user token is required; other methods are refused.
    let r = node
        .http
        .get(format!("{}/v1/me/preferences/schema", node.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = put(&node, "/v1/me/preferences/schema", &tok, &json!({})).await;
    assert_eq!(r.status(), 405);
    assert_eq!(
        r.json::<Value>().await.unwrap()["code"],
        "method_not_allowed"
    );

    // Without fallback rules: empty lists.
    let bare = env.node().await;
    let r = bare.get("/v1/me/preferences/schema", &tok).await;
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({ "channels": [], "types": [], "digest_window_secs": { "min": 60, "max": 86400 } })
    );
}
