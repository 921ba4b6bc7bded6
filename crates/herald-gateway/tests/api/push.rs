//! The Web Push fallback channel against a real (in-test) push service on loopback, which
//! checks every request as a push service would and more: the VAPID `Authorization` (an
//! ES256 JWT verified with the `k=` key, `aud` = the endpoint's origin, `exp` within 24 h,
//! `sub` = the subject) and the RFC 8291 `aes128gcm` body, decrypted here independently of the
//! gateway's crate (p256 + hkdf + aes-gcm) with the subscriber's private key and auth secret
//! the test made. Also the subscription API's refusals.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use aes_gcm::aead::{Aead, KeyInit};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use herald_core::fallback::{delivery_key, Channel, RetryPolicy, Rules};
use herald_gateway::fallback::push::{topic, PushConfig, VapidKey};
use herald_gateway::fallback::FallbackConfig;
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use serde_json::{json, Value};
use sha2::Sha256;

use crate::helpers::*;
use herald_testkit::eventually;

/// The server's VAPID private key (base64url of the raw scalar).
const VAPID: &str = "RS0WdYWWo1HajXg3NZR1olzCf31i-ZBGDkFyCs7j1jw";
const SUBJECT: &str = "mailto:ops@herald.test";
const KIND: &str = "comment.created";

/// RFC 8291 `aes128gcm` decryption, written from the RFC: `body` = salt(16) ‖ rs(4) ‖
/// idlen(1) ‖ keyid (the sender's public key) ‖ one record.
fn decrypt(body: &[u8], ua_secret: &p256::SecretKey, auth: &[u8]) -> Result<Vec<u8>, String> {
    if body.len() < 21 {
        return Err("short body".into());
    }
    let salt = &body[..16];
    let idlen = body[20] as usize;
    let keyid = body.get(21..21 + idlen).ok_or("short keyid")?;
    let record = &body[21 + idlen..];
    let as_public = p256::PublicKey::from_sec1_bytes(keyid).map_err(|_| "keyid not a point")?;
    let shared = p256::ecdh::diffie_hellman(ua_secret.to_nonzero_scalar(), as_public.as_affine());
    let ua_public = ua_secret.public_key().to_encoded_point(false);
    let mut key_info = b"WebPush: info\0".to_vec();
    key_info.extend_from_slice(ua_public.as_bytes());
    key_info.extend_from_slice(keyid);
    let mut ikm = [0u8; 32];
    hkdf::Hkdf::<Sha256>::new(Some(auth), shared.raw_secret_bytes())
        .expand(&key_info, &mut ikm)
        .map_err(|_| "hkdf")?;
    let prk = hkdf::Hkdf::<Sha256>::new(Some(salt), &ikm);
    let (mut cek, mut nonce) = ([0u8; 16], [0u8; 12]);
    prk.expand(b"Content-Encoding: aes128gcm\0", &mut cek)
        .map_err(|_| "hkdf")?;
    prk.expand(b"Content-Encoding: nonce\0", &mut nonce)
        .map_err(|_| "hkdf")?;
    let cipher = aes_gcm::Aes128Gcm::new_from_slice(&cek).map_err(|_| "aes key")?;
    let mut plain = cipher
        .decrypt(&aes_gcm::Nonce::from(nonce), record)
        .map_err(|_| "aes-gcm: authentication failed")?;
    // Padding: zeros after the last record's delimiter 0x02.
    while plain.last() == Some(&0) {
        plain.pop();
    }
    if plain.pop() != Some(2) {
        return Err("no last-record delimiter".into());
    }
    Ok(plain)
}

/// RFC 8291 §5's own example, through the test's decryption: proves the decryptor that
/// judges the gateway's pushes is right.
#[test]
fn the_test_decryptor_opens_the_rfc_8291_example() {
    let d = |s: &str| B64URL.decode(s).unwrap();
    let ua =
        p256::SecretKey::from_slice(&d("q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94")).unwrap();
    assert_eq!(
        ua.public_key().to_encoded_point(false).as_bytes(),
        d("BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4")
    );
    let body = d("DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN");
    let plain = decrypt(&body, &ua, &d("BTBZMqHH6r4Tts7J_aSIgg")).unwrap();
    assert_eq!(plain, b"When I grow up, I want to be a watermelon");
}

/// One subscriber: the browser side of a subscription.
struct Subscriber {
    secret: p256::SecretKey,
    auth: [u8; 16],
}

impl Subscriber {
    fn new() -> Subscriber {
        loop {
            if let Ok(secret) = p256::SecretKey::from_slice(&rand::random::<[u8; 32]>()) {
                return Subscriber {
                    secret,
                    auth: rand::random(),
                };
            }
        }
    }

    fn p256dh(&self) -> String {
        B64URL.encode(self.secret.public_key().to_encoded_point(false).as_bytes())
    }
}

/// One push the service accepted (or answered with a configured status).
#[derive(Debug, Clone)]
struct Hit {
    sub: String,
    topic: String,
    ttl: String,
    urgency: String,
    payload: Value,
}

#[derive(Default)]
struct Shared {
    subscribers: Mutex<HashMap<String, Arc<Subscriber>>>,
    /// Status per subscription name (default 201).
    status: Mutex<HashMap<String, u16>>,
    hits: Mutex<Vec<Hit>>,
    /// Requests that failed a check, and why.
    bad: Mutex<Vec<String>>,
    origin: Mutex<String>,
    vapid_public: Mutex<String>,
}

fn check(req: &HttpRequest, body: &[u8], shared: &Shared) -> Result<Hit, String> {
    let h = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or(format!("missing {name}"))
    };
    let name = req
        .path()
        .strip_prefix("/wpush/")
        .ok_or("bad path")?
        .to_owned();
    let sub = shared
        .subscribers
        .lock()
        .unwrap()
        .get(&name)
        .cloned()
        .ok_or("unknown subscription")?;
    if h("content-encoding")? != "aes128gcm" {
        return Err("content-encoding".into());
    }
    // VAPID (RFC 8292): vapid t=<jwt>, k=<the key the JWT verifies with>.
    let authz = h("authorization")?;
    let (t, k) = authz
        .strip_prefix("vapid t=")
        .and_then(|r| r.split_once(", k="))
        .ok_or("authorization is not vapid t=…, k=…")?;
    if k != *shared.vapid_public.lock().unwrap() {
        return Err("k is not the server's VAPID key".into());
    }
    let point = B64URL.decode(k).map_err(|_| "k not base64url")?;
    if point.len() != 65 {
        return Err("k not an uncompressed point".into());
    }
    let key = jsonwebtoken::DecodingKey::from_ec_components(
        &B64URL.encode(&point[1..33]),
        &B64URL.encode(&point[33..]),
    )
    .map_err(|e| format!("k: {e}"))?;
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    let origin = shared.origin.lock().unwrap().clone();
    v.set_audience(&[origin]);
    v.set_required_spec_claims(&["exp", "aud", "sub"]);
    let claims = jsonwebtoken::decode::<Value>(t, &key, &v)
        .map_err(|e| format!("jwt: {e}"))?
        .claims;
    let exp = claims["exp"].as_i64().ok_or("exp")?;
    if exp > chrono::Utc::now().timestamp() + 86_400 {
        return Err("exp more than 24 h ahead".into());
    }
    if claims["sub"] != SUBJECT {
        return Err(format!("sub {}", claims["sub"]));
    }
    let plain = decrypt(body, &sub.secret, &sub.auth)?;
    if plain.len() > 4096 - 103 {
        return Err("payload too long".into());
    }
    Ok(Hit {
        sub: name,
        topic: h("topic")?,
        ttl: h("ttl")?,
        urgency: h("urgency")?,
        payload: serde_json::from_slice(&plain).map_err(|e| format!("payload: {e}"))?,
    })
}

async fn receive(req: HttpRequest, body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    match check(&req, &body, &shared) {
        Ok(hit) => {
            let status = *shared.status.lock().unwrap().get(&hit.sub).unwrap_or(&201);
            shared.hits.lock().unwrap().push(hit);
            HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap()).finish()
        }
        Err(e) => {
            eprintln!("push service: refused: {e}");
            shared.bad.lock().unwrap().push(e);
            HttpResponse::BadRequest().finish()
        }
    }
}

struct PushService {
    base: String,
    shared: Arc<Shared>,
    server: actix_web::dev::ServerHandle,
}

impl PushService {
    async fn start() -> PushService {
        let shared = Arc::new(Shared::default());
        let data = web::Data::from(shared.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::to(receive))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        let base = format!("http://127.0.0.1:{port}");
        *shared.origin.lock().unwrap() = base.clone();
        *shared.vapid_public.lock().unwrap() =
            VapidKey::parse(VAPID).unwrap().public_b64().to_owned();
        PushService {
            base,
            shared,
            server: handle,
        }
    }

    /// A new subscriber `name`: its subscription JSON as a browser's `toJSON()` gives it.
    fn subscriber(&self, name: &str) -> Value {
        let s = Subscriber::new();
        let json = json!({
            "endpoint": self.endpoint(name),
            "expirationTime": null,
            "keys": { "p256dh": s.p256dh(), "auth": B64URL.encode(s.auth) },
        });
        self.shared
            .subscribers
            .lock()
            .unwrap()
            .insert(name.to_owned(), Arc::new(s));
        json
    }

    fn endpoint(&self, name: &str) -> String {
        format!("{}/wpush/{name}", self.base)
    }

    fn set_status(&self, name: &str, status: u16) {
        self.shared
            .status
            .lock()
            .unwrap()
            .insert(name.to_owned(), status);
    }

    fn hits(&self) -> Vec<Hit> {
        self.shared.hits.lock().unwrap().clone()
    }

    fn bad(&self) -> Vec<String> {
        self.shared.bad.lock().unwrap().clone()
    }
}

fn push_config() -> PushConfig {
    PushConfig {
        vapid: Arc::new(VapidKey::parse(VAPID).unwrap()),
        subject: SUBJECT.to_owned(),
        ttl: Duration::from_secs(120),
        timeout: Duration::from_secs(5),
        max_subscriptions: 10,
        allow_http_loopback: true,
    }
}

fn fallback(rules: &str) -> FallbackConfig {
    let entries: Vec<String> = rules.split(',').map(str::to_owned).collect();
    FallbackConfig {
        rules: Rules::parse(&entries).unwrap(),
        poll: Duration::from_millis(50),
        lease: Duration::from_secs(10),
        batch: 64,
        max_age: Duration::from_secs(3600),
        retry: RetryPolicy {
            base: Duration::from_millis(50),
            cap: Duration::from_millis(200),
            max_attempts: 5,
        },
        webhook: None,
        push: Some(push_config()),
        ..FallbackConfig::default()
    }
}

async fn subscribe(node: &TestNode, user: &str, body: &Value) -> reqwest::Response {
    node.post(
        "/v1/me/push-subscriptions",
        &token(user, 600),
        Some(body.clone()),
    )
    .await
}

async fn publish(node: &TestNode, user: &str, title: &str, data: Option<Value>) -> String {
    let mut body = json!({ "recipient": user, "type": KIND, "title": title, "body": "the body" });
    if let Some(d) = data {
        body["data"] = d;
    }
    let r = node.publish(&body).await;
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    v["notifications"][0]["id"].as_str().unwrap().to_owned()
}

async fn jobs(env: &TestEnv) -> HashMap<String, (String, i32, Option<String>)> {
    env.sql()
        .await
        .query(
            "SELECT notification_id::text AS id, state, attempts, last_error FROM fallback_jobs \
             WHERE channel = 'push'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.get::<_, String>("id"),
                (r.get("state"), r.get("attempts"), r.get("last_error")),
            )
        })
        .collect()
}

async fn endpoints(env: &TestEnv, user: &str) -> Vec<String> {
    env.sql()
        .await
        .query(
            "SELECT endpoint FROM push_subscriptions WHERE user_id = $1 ORDER BY endpoint",
            &[&user],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn topic_of(id: &str) -> String {
    topic(&delivery_key(id.parse().unwrap(), Channel::Push))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unseen_is_pushed_once_to_every_subscription_with_the_topic() {
    let env = TestEnv::new().await;
    let ps = PushService::start().await;
    let node = env
        .node_with(|c| c.fallback = fallback(&format!("{KIND}:push:200ms")))
        .await;
    for name in ["laptop", "phone"] {
        let r = subscribe(&node, "una", &ps.subscriber(name)).await;
        assert_eq!(r.status(), 201);
    }
    let id = publish(&node, "una", "Hello", Some(json!({"urgency": "high"}))).await;
    assert!(
        eventually(WAIT, || async {
            jobs(&env).await.get(&id).is_some_and(|j| j.0 == "sent")
        })
        .await,
        "{:?} {:?}",
        jobs(&env).await,
        ps.bad()
    );
    let hits = ps.hits();
    assert_eq!(hits.len(), 2, "once per subscription: {hits:?}");
    let mut subs: Vec<&str> = hits.iter().map(|h| h.sub.as_str()).collect();
    subs.sort();
    assert_eq!(subs, ["laptop", "phone"]);
    for h in &hits {
        assert_eq!(h.topic, topic_of(&id));
        assert_eq!(h.topic.len(), 32);
        assert_eq!(h.ttl, "120");
        assert_eq!(h.urgency, "high");
        assert_eq!(h.payload["id"], id.as_str());
        assert_eq!(h.payload["title"], "Hello");
        assert_eq!(h.payload["body"], "the body");
        assert_eq!(h.payload["type"], KIND);
        assert_eq!(h.payload["seq"], 1);
    }
    assert!(ps.bad().is_empty(), "{:?}", ps.bad());
    assert_eq!(
        node.metric("herald_fallback_sends_total{channel=\"push\",outcome=\"sent\"}")
            .await,
        1
    );
    ps.server.stop(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seen_before_fallback_after_pushes_nothing() {
    let env = TestEnv::new().await;
    let ps = PushService::start().await;
    let node = env
        .node_with(|c| c.fallback = fallback(&format!("{KIND}:push:1500ms")))
        .await;
    assert_eq!(
        subscribe(&node, "rita", &ps.subscriber("r")).await.status(),
        201
    );
    let read = publish(&node, "rita", "read me", None).await;
    let unread = publish(&node, "rita", "not me", None).await;
    let r = node
        .post(
            &format!("/v1/notifications/{read}/read"),
            &token("rita", 60),
            None,
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(eventually(WAIT, || async { !ps.hits().is_empty() }).await);
    // The cursor passed both, and only the unread one has a job.
    assert!(
        eventually(WAIT, || async {
            let seq: i64 = env
                .sql()
                .await
                .query_one(
                    "SELECT fallback_seq FROM fallback_cursor WHERE user_id = 'rita'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            seq == 2 && jobs(&env).await.values().all(|j| j.0 == "sent")
        })
        .await
    );
    let hits = ps.hits();
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0].payload["id"], unread.as_str());
    assert!(!jobs(&env).await.contains_key(&read));
    ps.server.stop(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_subscriptions_are_removed() {
    let env = TestEnv::new().await;
    let ps = PushService::start().await;
    let node = env
        .node_with(|c| c.fallback = fallback(&format!("{KIND}:push:100ms")))
        .await;
    // gus: one gone (410), one fine: sent, the gone one removed.
    assert_eq!(
        subscribe(&node, "gus", &ps.subscriber("old"))
            .await
            .status(),
        201
    );
    assert_eq!(
        subscribe(&node, "gus", &ps.subscriber("new"))
            .await
            .status(),
        201
    );
    ps.set_status("old", 410);
    // ivy: her only subscription is gone (404): cancelled, removed.
    assert_eq!(
        subscribe(&node, "ivy", &ps.subscriber("ivy"))
            .await
            .status(),
        201
    );
    ps.set_status("ivy", 404);
    // noa: no subscription at all: cancelled without a request.
    let g = publish(&node, "gus", "g", None).await;
    let i = publish(&node, "ivy", "i", None).await;
    let n = publish(&node, "noa", "n", None).await;
    assert!(
        eventually(WAIT, || async {
            let j = jobs(&env).await;
            j.get(&g).is_some_and(|j| j.0 == "sent")
                && j.get(&i).is_some_and(|j| j.0 == "cancelled")
                && j.get(&n).is_some_and(|j| j.0 == "cancelled")
        })
        .await,
        "{:?}",
        jobs(&env).await
    );
    let j = jobs(&env).await;
    assert_eq!(j[&i].2.as_deref(), Some("no subscription"));
    assert_eq!(j[&n].2.as_deref(), Some("no subscription"));
    assert_eq!(endpoints(&env, "gus").await, [ps.endpoint("new")]);
    assert!(endpoints(&env, "ivy").await.is_empty());
    assert_eq!(ps.hits().iter().filter(|h| h.sub == "ivy").count(), 1);
    assert!(ps.bad().is_empty(), "{:?}", ps.bad());
    ps.server.stop(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_with_the_same_topic() {
    let env = TestEnv::new().await;
    let ps = PushService::start().await;
    let node = env
        .node_with(|c| c.fallback = fallback(&format!("{KIND}:push:100ms")))
        .await;
    assert_eq!(
        subscribe(&node, "rex", &ps.subscriber("r")).await.status(),
        201
    );
    ps.set_status("r", 500);
    let id = publish(&node, "rex", "retry me", None).await;
    assert!(eventually(WAIT, || async { ps.hits().len() >= 2 }).await);
    ps.set_status("r", 201);
    assert!(
        eventually(WAIT, || async {
            jobs(&env).await.get(&id).is_some_and(|j| j.0 == "sent")
        })
        .await,
        "{:?}",
        jobs(&env).await
    );
    let (_, attempts, _) = jobs(&env).await[&id].clone();
    let hits = ps.hits();
    assert!(
        attempts >= 3 && hits.len() == attempts as usize,
        "{attempts} {hits:?}"
    );
    assert!(hits.iter().all(|h| h.topic == topic_of(&id)));
    // A permanent refusal (400) dead-letters at once.
    ps.set_status("r", 400);
    let dead = publish(&node, "rex", "refused", None).await;
    assert!(
        eventually(WAIT, || async {
            jobs(&env)
                .await
                .get(&dead)
                .is_some_and(|j| j.0 == "dead" && j.1 == 1)
        })
        .await,
        "{:?}",
        jobs(&env).await
    );
    assert!(ps.bad().is_empty(), "{:?}", ps.bad());
    ps.server.stop(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subscription_api_refuses_bad_input_and_keeps_its_bound() {
    let env = TestEnv::new().await;
    let ps = PushService::start().await;
    let node = env
        .node_with(|c| {
            let mut f = fallback(&format!("{KIND}:push:1h"));
            if let Some(p) = f.push.as_mut() {
                p.max_subscriptions = 2;
            }
            c.fallback = f;
        })
        .await;
    let r = node
        .http
        .get(format!("{}/v1/push/vapid-public-key", node.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["public_key"],
        VapidKey::parse(VAPID).unwrap().public_b64()
    );

    let good = ps.subscriber("good");
    assert_eq!(subscribe(&node, "ann", &good).await.status(), 201);
    let mut off_curve = B64URL
        .decode(good["keys"]["p256dh"].as_str().unwrap())
        .unwrap();
    off_curve[64] ^= 1;
    let with = |path: &[&str], value: Value| {
        let mut b = good.clone();
        let mut cur = &mut b;
        for p in &path[..path.len() - 1] {
            cur = &mut cur[*p];
        }
        cur[path[path.len() - 1]] = value;
        b
    };
    for (body, field) in [
        (with(&["endpoint"], json!("ftp://127.0.0.1/x")), "endpoint"),
        (
            with(&["endpoint"], json!("http://push.example/x")),
            "endpoint",
        ),
        (with(&["endpoint"], json!("not a url")), "endpoint"),
        (
            with(
                &["endpoint"],
                json!(format!("https://p.example/{}", "a".repeat(2100))),
            ),
            "endpoint",
        ),
        (with(&["endpoint"], json!(5)), "endpoint"),
        (
            with(&["keys", "p256dh"], json!(B64URL.encode(&off_curve))),
            "keys.p256dh",
        ),
        (with(&["keys", "p256dh"], json!("AAAA")), "keys.p256dh"),
        (
            with(&["keys", "p256dh"], json!("no base64!")),
            "keys.p256dh",
        ),
        (
            with(&["keys", "auth"], json!(B64URL.encode([1u8; 15]))),
            "keys.auth",
        ),
        (with(&["keys", "extra"], json!("x")), "keys.extra"),
        (with(&["surprise"], json!(1)), "surprise"),
        (json!({"endpoint": ps.endpoint("good")}), "keys"),
    ] {
        let r = subscribe(&node, "ann", &body).await;
        assert_eq!(r.status(), 400, "{body}");
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["code"], "validation_failed", "{body}: {e}");
        assert_eq!(e["field"], field, "{body}: {e}");
    }
    let r = node
        .http
        .post(format!("{}/v1/me/push-subscriptions", node.base))
        .bearer_auth(token("ann", 60))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "invalid_json");
    let r = node
        .http
        .post(format!("{}/v1/me/push-subscriptions", node.base))
        .json(&good)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "a user token is required");
    // Nothing of the refused ones was stored.
    assert_eq!(endpoints(&env, "ann").await, [ps.endpoint("good")]);
    let list: Value = node
        .get("/v1/me/push-subscriptions", &token("ann", 60))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["subscriptions"].as_array().unwrap().len(), 1);
    assert!(list["subscriptions"][0].get("keys").is_none());

    // The bound: a third subscription replaces the oldest.
    assert_eq!(
        subscribe(&node, "ann", &ps.subscriber("b")).await.status(),
        201
    );
    assert_eq!(
        subscribe(&node, "ann", &ps.subscriber("c")).await.status(),
        201
    );
    let mut want = vec![ps.endpoint("b"), ps.endpoint("c")];
    want.sort();
    assert_eq!(endpoints(&env, "ann").await, want);

    // Removal by endpoint: 204, then 404; another user's is not theirs to remove.
    let del = |user: &str, ep: String| {
        node.http
            .delete(format!("{}/v1/me/push-subscriptions", node.base))
            .query(&[("endpoint", ep)])
            .bearer_auth(token(user, 60))
            .send()
    };
    assert_eq!(del("bob", ps.endpoint("b")).await.unwrap().status(), 404);
    assert_eq!(del("ann", ps.endpoint("b")).await.unwrap().status(), 204);
    assert_eq!(del("ann", ps.endpoint("b")).await.unwrap().status(), 404);
    assert_eq!(endpoints(&env, "ann").await, [ps.endpoint("c")]);
    ps.server.stop(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_vapid_the_push_endpoints_answer_not_found() {
    let env = TestEnv::new().await;
    let node = env.node().await;
    let r = node
        .http
        .get(format!("{}/v1/push/vapid-public-key", node.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "not_found");
    let ps = PushService::start().await;
    let r = subscribe(&node, "ann", &ps.subscriber("x")).await;
    assert_eq!(r.status(), 404);
    assert!(endpoints(&env, "ann").await.is_empty());
    ps.server.stop(false).await;
}
