//! The OpenAPI document against reality: a real node serves the committed docs/openapi.json,
//! and real responses (successes and errors) of that node validate against the schemas the
//! document gives for their operation and status.

use herald_gateway::auth::Scopes;
use secrecy::SecretString;
use serde_json::{json, Value};

use crate::helpers::*;

const COMMITTED: &str = include_str!("../../../../docs/openapi.json");
const PUBLISH_ONLY_KEY: &str = "publish-only-key-0123456789";

/// The document, and the responses it has been checked against.
struct Spec {
    doc: Value,
    checked: usize,
}

impl Spec {
    fn new(doc: Value) -> Spec {
        Spec { doc, checked: 0 }
    }

    /// The JSON Schema of `method template`'s `status` answer, standalone: the document's
    /// components ride along so `#/components/schemas/..` references resolve.
    fn schema(&self, method: &str, template: &str, status: u16) -> Option<Value> {
        let op = &self.doc["paths"][template][method.to_lowercase()];
        assert!(op.is_object(), "{method} {template} is not in the document");
        let resp = &op["responses"][status.to_string()];
        assert!(
            resp.is_object(),
            "{method} {template} answered {status}, which the document does not list"
        );
        let schema = &resp["content"]["application/json"]["schema"];
        if schema.is_null() {
            return None;
        }
        Some(json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": self.doc["components"],
            "allOf": [schema],
        }))
    }

    fn errors(&self, schema: &Value, body: &Value) -> Vec<String> {
        let validator = jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(schema)
            .expect("the document's schema compiles");
        validator.iter_errors(body).map(|e| e.to_string()).collect()
    }

    /// Validates a real response: its status must be documented for the operation, and its
    /// JSON body must match that status's schema. Returns the body.
    async fn check(
        &mut self,
        method: &str,
        template: &str,
        r: reqwest::Response,
        want_status: u16,
    ) -> Value {
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.expect("body");
        assert_eq!(status, want_status, "{method} {template}: {text}");
        let body: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {template} {status}: not JSON ({e}): {text}"));
        let ct = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(
            ct.starts_with("application/json"),
            "{method} {template}: {ct}"
        );
        let schema = self
            .schema(method, template, status)
            .unwrap_or_else(|| panic!("{method} {template} {status}: no JSON schema"));
        let errors = self.errors(&schema, &body);
        assert!(
            errors.is_empty(),
            "{method} {template} {status}: the body does not match the document: {errors:?}\n{body}"
        );
        if status == 429 || status == 503 {
            assert!(headers.contains_key("retry-after"), "{method} {template}");
        }
        self.checked += 1;
        body
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_serves_the_committed_document() {
    let env = TestEnv::new().await;
    let node = env.node().await;
    let r = node
        .http
        .get(format!("{}/v1/openapi.json", node.base))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 200);
    let header = |name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    assert!(header("content-type").starts_with("application/json"));
    assert_eq!(header("cache-control"), "public, max-age=3600");
    let text = r.text().await.expect("body");
    assert!(
        text == COMMITTED,
        "GET /v1/openapi.json differs from docs/openapi.json: run scripts/gen-openapi.sh"
    );
    let doc: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["version"], herald_protocol::PROTOCOL_VERSION);
    // Other methods on it are not routes (404 like any unknown path).
    let r = node
        .http
        .post(format!("{}/v1/openapi.json", node.base))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 404);
}

/// The schemas are not vacuous: bodies that break them are refused.
#[test]
fn the_schemas_refuse_wrong_bodies() {
    let spec = Spec::new(serde_json::from_str(COMMITTED).expect("JSON"));
    let err = spec
        .schema("POST", "/v1/notifications", 400)
        .expect("schema");
    assert!(spec
        .errors(&err, &json!({"code": "invalid_json", "message": "x"}))
        .is_empty());
    // A code another status carries, an unknown code, a missing message.
    for bad in [
        json!({"code": "not_found", "message": "x"}),
        json!({"code": "no_such_code", "message": "x"}),
        json!({"code": "invalid_json"}),
    ] {
        assert!(!spec.errors(&err, &bad).is_empty(), "{bad}");
    }
    let one = spec
        .schema("GET", "/v1/notifications/{id}", 200)
        .expect("schema");
    let good = json!({
        "id": "0193f1c2-7d3e-7a40-9b1e-2f5c8e0d4a11", "user_id": "alice", "seq": 42,
        "type": "comment.created", "title": "t", "body": "b", "link": null, "avatar_url": null,
        "data": {"post_id": 7}, "created_at": "2026-11-23T11:06:48.123456Z",
        "delivered_at": null, "read_at": null
    });
    assert!(
        spec.errors(&one, &good).is_empty(),
        "{:?}",
        spec.errors(&one, &good)
    );
    for (k, v) in [
        ("seq", json!("42")),
        ("id", json!("not-a-uuid")),
        ("created_at", json!("yesterday")),
        ("data", json!([1])),
        ("title", Value::Null),
    ] {
        let mut bad = good.clone();
        bad[k] = v;
        assert!(!spec.errors(&one, &bad).is_empty(), "{k}: {bad}");
    }
    let publish = &spec.doc["components"]["schemas"]["PublishRequest"];
    assert_eq!(publish["additionalProperties"], false, "{publish}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_responses_match_the_document() {
    let env = TestEnv::new().await;
    let node = env
        .node_with(|c| {
            c.max_publish_body_bytes = 4096;
            c.service_keys.push(SecretString::from(PUBLISH_ONLY_KEY));
            c.service_key_scopes
                .push(Scopes::parse("publish").expect("scopes"));
        })
        .await;
    let r = node
        .http
        .get(format!("{}/v1/openapi.json", node.base))
        .send()
        .await
        .expect("GET");
    let mut spec = Spec::new(r.json().await.expect("document"));
    let url = |p: &str| format!("{}{p}", node.base);
    let alice = token("alice", 3600);
    let service = |method: reqwest::Method, path: &str| {
        node.http
            .request(method, url(path))
            .bearer_auth(SERVICE_KEY)
    };

    // Operations.
    let r = node.http.get(url("/healthz")).send().await.expect("GET");
    let v = spec.check("GET", "/healthz", r, 200).await;
    assert_eq!(v["postgres"], Value::Null);
    let r = node.http.get(url("/readyz")).send().await.expect("GET");
    spec.check("GET", "/readyz", r, 200).await;

    // Publish: created, replayed, reused key, and the refusals.
    let mut body = notification_body("alice", "hello");
    body["idempotency_key"] = json!("k-1");
    body["data"] = json!({"post_id": 7});
    body["link"] = json!("/posts/7");
    let path = "/v1/notifications";
    let r = service(reqwest::Method::POST, path)
        .json(&body)
        .send()
        .await
        .expect("POST");
    let created = spec.check("POST", path, r, 201).await;
    let id = created["notifications"][0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let r = service(reqwest::Method::POST, path)
        .json(&body)
        .send()
        .await
        .expect("POST");
    assert_eq!(
        r.headers()
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    spec.check("POST", path, r, 200).await;
    body["title"] = json!("another");
    let r = service(reqwest::Method::POST, path)
        .json(&body)
        .send()
        .await
        .expect("POST");
    spec.check("POST", path, r, 409).await;
    node.publish_one("alice", "second").await;
    let r = node
        .http
        .post(url(path))
        .json(&body)
        .send()
        .await
        .expect("POST");
    spec.check("POST", path, r, 401).await;
    let r = node
        .http
        .post(url(path))
        .bearer_auth(PUBLISH_ONLY_KEY)
        .json(&notification_body("alice", "scoped"))
        .send()
        .await
        .expect("POST");
    spec.check("POST", path, r, 201).await;
    let r = service(reqwest::Method::POST, path)
        .header("content-type", "application/json")
        .body("{\"recipient\":")
        .send()
        .await
        .expect("POST");
    spec.check("POST", path, r, 400).await;
    let r = service(reqwest::Method::POST, path)
        .json(&json!({"recipient": "alice", "type": "t", "title": "x", "extra": 1}))
        .send()
        .await
        .expect("POST");
    let v = spec.check("POST", path, r, 400).await;
    assert_eq!(v["field"], "extra");
    let r = service(reqwest::Method::POST, path)
        .header("content-type", "text/plain")
        .body(notification_body("alice", "x").to_string())
        .send()
        .await
        .expect("POST");
    spec.check("POST", path, r, 415).await;
    let mut big = notification_body("alice", "big");
    big["body"] = json!("x".repeat(5000));
    let r = service(reqwest::Method::POST, path)
        .json(&big)
        .send()
        .await
        .expect("POST");
    spec.check("POST", path, r, 413).await;
    let r = service(reqwest::Method::PUT, path)
        .send()
        .await
        .expect("PUT");
    spec.check("POST", path, r, 405).await;

    // Broadcasts.
    let r = service(reqwest::Method::POST, "/v1/broadcasts")
        .json(&json!({"type": "system.notice", "title": "hi", "data": {"a": 1}}))
        .send()
        .await
        .expect("POST");
    spec.check("POST", "/v1/broadcasts", r, 202).await;
    let r = node
        .http
        .post(url("/v1/broadcasts"))
        .bearer_auth(PUBLISH_ONLY_KEY)
        .json(&json!({"type": "system.notice", "title": "hi"}))
        .send()
        .await
        .expect("POST");
    spec.check("POST", "/v1/broadcasts", r, 403).await;
    let r = service(reqwest::Method::POST, "/v1/broadcasts")
        .json(&json!({"type": "", "title": "hi"}))
        .send()
        .await
        .expect("POST");
    spec.check("POST", "/v1/broadcasts", r, 400).await;

    // The user API.
    let list = "/v1/notifications";
    let page = spec
        .check("GET", list, node.get(list, &alice).await, 200)
        .await;
    assert_eq!(page["notifications"].as_array().map(Vec::len), Some(3));
    let r = node.get("/v1/notifications?after=0&limit=1", &alice).await;
    let page = spec.check("GET", list, r, 200).await;
    assert!(page["next_cursor"].is_string(), "{page}");
    let r = node.get("/v1/notifications?limit=0", &alice).await;
    let v = spec.check("GET", list, r, 400).await;
    assert_eq!(v["field"], "limit");
    let r = node.get(list, &token("alice", -3600)).await;
    let v = spec.check("GET", list, r, 401).await;
    assert_eq!(v["code"], "token_expired");
    let r = node.get(list, "not-a-token").await;
    spec.check("GET", list, r, 401).await;
    let r = node
        .http
        .get(url("/v1/notifications?token=abc"))
        .send()
        .await
        .expect("GET");
    let v = spec.check("GET", list, r, 400).await;
    assert_eq!(v["code"], "token_in_url");

    let count = "/v1/notifications/unread-count";
    spec.check("GET", count, node.get(count, &alice).await, 200)
        .await;
    let one = "/v1/notifications/{id}";
    let r = node.get(&format!("/v1/notifications/{id}"), &alice).await;
    let n = spec.check("GET", one, r, 200).await;
    assert_eq!(n["data"], json!({"post_id": 7}));
    let r = node.get("/v1/notifications/not-a-uuid", &alice).await;
    spec.check("GET", one, r, 400).await;
    let r = node
        .get(
            &format!("/v1/notifications/{}", uuid::Uuid::new_v4()),
            &alice,
        )
        .await;
    spec.check("GET", one, r, 404).await;
    let r = node
        .get(&format!("/v1/notifications/{id}"), &token("bob", 3600))
        .await;
    spec.check("GET", one, r, 404).await;

    let read = "/v1/notifications/{id}/read";
    let r = node
        .post(&format!("/v1/notifications/{id}/read"), &alice, None)
        .await;
    let v = spec.check("POST", read, r, 200).await;
    assert_eq!(v["changed"], true);
    let r = node
        .post(
            &format!("/v1/notifications/{}/read", uuid::Uuid::new_v4()),
            &alice,
            None,
        )
        .await;
    spec.check("POST", read, r, 404).await;

    let all = "/v1/notifications/read-all";
    let r = node.post(all, &alice, None).await;
    spec.check("POST", all, r, 200).await;
    let r = node.post(all, &alice, Some(json!({"up_to_seq": 1}))).await;
    spec.check("POST", all, r, 200).await;
    let r = node.post(all, &alice, Some(json!({"up_to_seq": -1}))).await;
    spec.check("POST", all, r, 400).await;
    let r = node
        .http
        .post(url(all))
        .bearer_auth(&alice)
        .body("{not json")
        .send()
        .await
        .expect("POST");
    spec.check("POST", all, r, 400).await;
    let r = node
        .http
        .post(url(all))
        .bearer_auth(&alice)
        .body(vec![b' '; 300 * 1024])
        .send()
        .await
        .expect("POST");
    let v = spec.check("POST", all, r, 413).await;
    assert_eq!(v["code"], "payload_too_large");
    let r = node.get(all, &alice).await;
    spec.check("POST", all, r, 405).await;

    // Revocation.
    let revoke = "/v1/users/{user_id}/revoke";
    let r = service(reqwest::Method::POST, "/v1/users/bob/revoke")
        .send()
        .await
        .expect("POST");
    spec.check("POST", revoke, r, 200).await;
    let r = service(reqwest::Method::POST, "/v1/users/bob/revoke")
        .json(&json!({"issued_before": "2020-01-01T00:00:00Z"}))
        .send()
        .await
        .expect("POST");
    spec.check("POST", revoke, r, 200).await;
    let r = service(reqwest::Method::POST, "/v1/users/bad%20id/revoke")
        .send()
        .await
        .expect("POST");
    let v = spec.check("POST", revoke, r, 400).await;
    assert_eq!(v["field"], "user_id");
    let r = service(reqwest::Method::POST, "/v1/users/bob/revoke")
        .json(&json!({"issued_before": "yesterday"}))
        .send()
        .await
        .expect("POST");
    spec.check("POST", revoke, r, 400).await;
    let r = service(reqwest::Method::POST, "/v1/users/bob/revoke")
        .body(vec![b' '; 300 * 1024])
        .send()
        .await
        .expect("POST");
    spec.check("POST", revoke, r, 413).await;
    let r = node
        .http
        .post(url("/v1/users/bob/revoke"))
        .bearer_auth(PUBLISH_ONLY_KEY)
        .send()
        .await
        .expect("POST");
    spec.check("POST", revoke, r, 403).await;
    let r = node.get("/v1/notifications", &token("bob", 3600)).await;
    let v = spec.check("GET", list, r, 401).await;
    assert_eq!(v["code"], "token_revoked");

    // The WebSocket path without an upgrade, and with a bad header token.
    let r = node
        .http
        .get(url("/v1/ws"))
        .bearer_auth(&alice)
        .send()
        .await
        .expect("GET");
    spec.check("GET", "/v1/ws", r, 400).await;
    let r = node
        .http
        .get(url("/v1/ws"))
        .bearer_auth("not-a-token")
        .send()
        .await
        .expect("GET");
    spec.check("GET", "/v1/ws", r, 401).await;
    let r = node
        .http
        .get(url("/v1/ws"))
        .header("origin", "http://evil.test")
        .send()
        .await
        .expect("GET");
    spec.check("GET", "/v1/ws", r, 403).await;

    assert!(
        spec.checked >= 40,
        "only {} responses checked",
        spec.checked
    );
}
