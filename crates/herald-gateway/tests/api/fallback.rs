//! Offline fallback over the webhook channel, against a real HTTP receiver that checks every
//! Standard Webhooks signature: sent once per unseen notification, nothing for one read
//! before `fallback_after`, retries then dead-letter, and a node killed mid-send (a real
//! process, SIGKILL) losing nothing.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use base64::Engine as _;
use herald_core::fallback::{RetryPolicy, Rules};
use herald_gateway::fallback::webhook::{decode_secret, WebhookConfig};
use herald_gateway::fallback::FallbackConfig;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::helpers::*;
use herald_testkit::{eventually, free_port};

const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const KIND: &str = "comment.created";

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Hit {
    id: String,
    notification_id: String,
    attempt: i64,
}

#[derive(Default)]
struct Shared {
    hits: Mutex<Vec<Hit>>,
    bad_signatures: AtomicU64,
    /// Status to answer with.
    status: AtomicU16,
    /// Delay before answering, ms.
    delay_ms: AtomicU64,
    /// Requests that reached `/landing`, where a 3xx answer points.
    followed: AtomicU64,
    /// Signed requests answered (after the delay).
    answered: AtomicU64,
}

/// A webhook endpoint that verifies each request as a customer would: the three headers,
/// the timestamp within 5 minutes, one `v1,` signature equal (constant time) to the HMAC.
struct Receiver {
    url: String,
    shared: Arc<Shared>,
    server: actix_web::dev::ServerHandle,
}

fn verify(req: &HttpRequest, body: &[u8]) -> Result<(), String> {
    let h = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or(format!("missing {name}"))
    };
    let (id, ts, sigs) = (
        h("webhook-id")?,
        h("webhook-timestamp")?,
        h("webhook-signature")?,
    );
    let ts_n: i64 = ts.parse().map_err(|_| "bad timestamp".to_string())?;
    if (chrono::Utc::now().timestamp() - ts_n).abs() > 300 {
        return Err("timestamp out of tolerance".into());
    }
    let key = base64::engine::general_purpose::STANDARD
        .decode(WHSEC.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(body);
    let want = mac.finalize().into_bytes();
    let ok = sigs.split(' ').any(|s| {
        s.strip_prefix("v1,")
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .is_some_and(|got| constant_time_eq::constant_time_eq(&got, &want))
    });
    if ok {
        Ok(())
    } else {
        Err("no matching signature".into())
    }
}

async fn receive(req: HttpRequest, body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    if req.path() == "/landing" {
        shared.followed.fetch_add(1, Ordering::SeqCst);
        return HttpResponse::NoContent().finish();
    }
    if let Err(e) = verify(&req, &body) {
        eprintln!("receiver: refused: {e}");
        shared.bad_signatures.fetch_add(1, Ordering::SeqCst);
        return HttpResponse::Unauthorized().finish();
    }
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["type"], "notification.fallback");
    let id = req
        .headers()
        .get("webhook-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    shared.hits.lock().unwrap().push(Hit {
        id,
        notification_id: v["data"]["notification"]["id"].as_str().unwrap().to_owned(),
        attempt: v["data"]["attempt"].as_i64().unwrap(),
    });
    let delay = shared.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let status = shared.status.load(Ordering::SeqCst);
    shared.answered.fetch_add(1, Ordering::SeqCst);
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
        .insert_header(("location", "/landing"))
        .finish()
}

impl Receiver {
    async fn start() -> Receiver {
        let shared = Arc::new(Shared::default());
        shared.status.store(204, Ordering::SeqCst);
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
        Receiver {
            url: format!("http://127.0.0.1:{port}/hooks/herald"),
            shared,
            server: handle,
        }
    }

    fn hits(&self) -> Vec<Hit> {
        self.shared.hits.lock().unwrap().clone()
    }

    fn distinct(&self) -> HashSet<String> {
        self.hits().into_iter().map(|h| h.id).collect()
    }
}

fn fallback(
    rules: &str,
    receiver: &Receiver,
    tweak: impl FnOnce(&mut FallbackConfig),
) -> FallbackConfig {
    let entries: Vec<String> = rules.split(',').map(str::to_owned).collect();
    let mut c = FallbackConfig {
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
        job_retention: Duration::from_secs(3600),
        email: None,
        webhook: Some(WebhookConfig {
            url: receiver.url.clone(),
            key: Arc::new(decode_secret(WHSEC).unwrap().into()),
            timeout: Duration::from_secs(5),
        }),
        push: None,
    };
    tweak(&mut c);
    c
}

async fn publish_ids(node: &TestNode, user: &str, n: usize) -> Vec<String> {
    publish_to(&node.http, &node.base, user, n).await
}

async fn publish_to(http: &reqwest::Client, base: &str, user: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let r = http
            .post(format!("{base}/v1/notifications"))
            .bearer_auth(SERVICE_KEY)
            .json(
                &json!({ "recipient": user, "type": KIND, "title": format!("t{i}"), "body": "b" }),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let v: Value = r.json().await.unwrap();
        ids.push(v["notifications"][0]["id"].as_str().unwrap().to_owned());
    }
    ids
}

async fn job_states(env: &TestEnv) -> HashMap<String, (String, i32)> {
    env.sql()
        .await
        .query(
            "SELECT notification_id::text AS id, state, attempts FROM fallback_jobs",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.get::<_, String>("id"),
                (r.get("state"), r.get("attempts")),
            )
        })
        .collect()
}

fn key_of(id: &str) -> String {
    format!("nf_{}_webhook", id.replace('-', ""))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unseen_notifications_are_sent_signed_once_each() {
    let env = TestEnv::new().await;
    let rx = Receiver::start().await;
    let cfg = fallback(&format!("{KIND}:webhook:200ms"), &rx, |_| {});
    let node = env.node_with(|c| c.fallback = cfg).await;
    let ids = publish_ids(&node, "una", 3).await;
    // Another type has no rule: never sent.
    let r = node
        .publish(&json!({ "recipient": "una", "type": "other", "title": "x", "body": "b" }))
        .await;
    assert_eq!(r.status(), 201);
    assert!(
        eventually(WAIT, || async { rx.distinct().len() == 3 }).await,
        "got {:?}",
        rx.hits()
    );
    assert!(
        eventually(WAIT, || async {
            job_states(&env)
                .await
                .values()
                .filter(|s| s.0 == "sent")
                .count()
                == 3
        })
        .await
    );
    let hits = rx.hits();
    assert_eq!(hits.len(), 3, "one request each: {hits:?}");
    for h in &hits {
        assert!(ids.contains(&h.notification_id));
        assert_eq!(
            h.id,
            key_of(&h.notification_id),
            "webhook-id is the stable key"
        );
        assert_eq!(h.attempt, 1);
    }
    assert_eq!(rx.shared.bad_signatures.load(Ordering::SeqCst), 0);
    assert_eq!(
        node.metric("herald_fallback_sends_total{channel=\"webhook\",outcome=\"sent\"}")
            .await,
        3
    );
    // The "other" notification advanced the cursor without a job.
    let seq: i64 = env
        .sql()
        .await
        .query_one(
            "SELECT fallback_seq FROM fallback_cursor WHERE user_id = 'una'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(seq, 4);
    rx.server.stop(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_before_fallback_after_sends_nothing_for_it() {
    let env = TestEnv::new().await;
    let rx = Receiver::start().await;
    let cfg = fallback(&format!("{KIND}:webhook:1500ms"), &rx, |_| {});
    let node = env.node_with(|c| c.fallback = cfg).await;
    let ids = publish_ids(&node, "rita", 2).await;
    // Read on "another device" (HTTP) well before the 1.5 s.
    let r = node
        .post(
            &format!("/v1/notifications/{}/read", ids[0]),
            &token("rita", 60),
            None,
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(eventually(WAIT, || async { rx.distinct().len() == 1 }).await);
    // Both rows are planned (the cursor is past them) and nothing more is pending.
    assert!(
        eventually(WAIT, || async {
            let c = env.sql().await;
            let seq: i64 = c
                .query_one(
                    "SELECT fallback_seq FROM fallback_cursor WHERE user_id = 'rita'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            seq == 2 && job_states(&env).await.values().all(|s| s.0 == "sent")
        })
        .await
    );
    let hits = rx.hits();
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0].notification_id, ids[1], "the read one was sent");
    assert!(!job_states(&env).await.contains_key(&ids[0]));
    rx.server.stop(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_endpoint_is_retried_then_dead_lettered() {
    let env = TestEnv::new().await;
    let rx = Receiver::start().await;
    rx.shared.status.store(503, Ordering::SeqCst);
    let cfg = fallback(&format!("{KIND}:webhook:0ms"), &rx, |c| {
        c.retry.max_attempts = 3
    });
    let node = env.node_with(|c| c.fallback = cfg).await;
    let ids = publish_ids(&node, "dora", 1).await;
    assert!(
        eventually(WAIT, || async {
            job_states(&env)
                .await
                .get(&ids[0])
                .is_some_and(|s| s.0 == "dead")
        })
        .await,
        "{:?}",
        job_states(&env).await
    );
    assert_eq!(job_states(&env).await[&ids[0]], ("dead".to_owned(), 3));
    let hits = rx.hits();
    assert_eq!(
        hits.iter().map(|h| h.attempt).collect::<Vec<_>>(),
        vec![1, 2, 3],
        "three attempts, then no more"
    );
    assert!(
        hits.iter().all(|h| h.id == key_of(&ids[0])),
        "one key across retries"
    );
    let failed = "herald_fallback_sends_total{channel=\"webhook\",outcome=\"failed\"}";
    let dead = "herald_fallback_sends_total{channel=\"webhook\",outcome=\"dead\"}";
    assert_eq!((node.metric(failed).await, node.metric(dead).await), (2, 1));
    // Nothing is tried after the dead letter.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.hits().len(), 3);
    rx.server.stop(false).await;
}

/// A redirect is a failed attempt, never followed: following it would turn the signed POST
/// into a bodyless GET whose 2xx counted as sent, and would carry the signed headers away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_is_a_failed_attempt_and_is_not_followed() {
    let env = TestEnv::new().await;
    let rx = Receiver::start().await;
    rx.shared.status.store(302, Ordering::SeqCst);
    let cfg = fallback(&format!("{KIND}:webhook:0ms"), &rx, |c| {
        c.retry.max_attempts = 2
    });
    let node = env.node_with(|c| c.fallback = cfg).await;
    let ids = publish_ids(&node, "rita", 1).await;
    assert!(
        eventually(WAIT, || async {
            job_states(&env)
                .await
                .get(&ids[0])
                .is_some_and(|s| s.0 == "dead")
        })
        .await,
        "{:?}",
        job_states(&env).await
    );
    assert_eq!(rx.hits().len(), 2, "two signed attempts");
    assert_eq!(
        rx.shared.followed.load(Ordering::SeqCst),
        0,
        "no redirect followed"
    );
    rx.server.stop(false).await;
}

/// A `herald serve` process is killed (SIGKILL) while its webhook requests are in flight;
/// another node claims the unfinished jobs when their lease runs out. Every notification
/// reaches the receiver at least once; distinct keys are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_killed_mid_send_loses_no_fallback() {
    const USERS: usize = 6;
    const PER_USER: usize = 5;
    let env = TestEnv::new().await;
    let rx = Receiver::start().await;
    // Slow answers: the first node's sends are in flight when it dies.
    rx.shared.delay_ms.store(3_000, Ordering::SeqCst);
    let port = free_port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs([
            ("HERALD_LISTEN", format!("127.0.0.1:{port}")),
            ("HERALD_ADMIN_LISTEN", "off".into()),
            ("HERALD_DATABASE_URL", env.db_url.clone()),
            ("HERALD_REDIS_URL", redis_url()),
            ("HERALD_REDIS_PREFIX", env.prefix.clone()),
            ("HERALD_SERVICE_KEYS", SERVICE_KEY.into()),
            ("HERALD_JWT_HS256_SECRET", SECRET.into()),
            ("HERALD_JWT_ALLOW_ANY_AUDIENCE", "true".into()),
            ("HERALD_JWT_ALLOW_ANY_ISSUER", "true".into()),
            ("HERALD_ALLOWED_ORIGINS", ORIGIN.into()),
            ("HERALD_LIMIT_EXEMPT", "127.0.0.0/8".into()),
            ("HERALD_FALLBACK_TYPES", format!("{KIND}:webhook:100ms")),
            ("HERALD_FALLBACK_WEBHOOK_URL", rx.url.clone()),
            ("HERALD_FALLBACK_WEBHOOK_SECRET", WHSEC.into()),
            ("HERALD_FALLBACK_POLL_MS", "50".into()),
            ("HERALD_FALLBACK_LEASE_MS", "2000".into()),
            ("HERALD_FALLBACK_WEBHOOK_TIMEOUT_MS", "1500".into()),
            ("HERALD_FALLBACK_BATCH", "8".into()),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    assert!(
        eventually(WAIT, || async {
            http.get(format!("{base}/healthz")).send().await.is_ok()
        })
        .await,
        "herald serve did not start"
    );
    let mut all = Vec::new();
    for u in 0..USERS {
        all.extend(publish_to(&http, &base, &format!("kim{u}"), PER_USER).await);
    }
    // Wait until the first node has requests in flight, then kill it.
    assert!(eventually(WAIT, || async { !rx.hits().is_empty() }).await);
    child.kill().unwrap();
    child.wait().unwrap();
    let in_flight_at_kill = rx.hits().len();
    rx.shared.delay_ms.store(0, Ordering::SeqCst);

    let cfg = fallback(&format!("{KIND}:webhook:100ms"), &rx, |c| {
        c.lease = Duration::from_secs(2)
    });
    let _b = env.node_with(|c| c.fallback = cfg).await;
    let want = USERS * PER_USER;
    assert!(
        eventually(Duration::from_secs(30), || async {
            job_states(&env)
                .await
                .values()
                .filter(|s| s.0 == "sent")
                .count()
                == want
        })
        .await,
        "jobs: {:?}",
        job_states(&env).await
    );
    let distinct = rx.distinct();
    let expected: HashSet<String> = all.iter().map(|id| key_of(id)).collect();
    assert_eq!(distinct, expected, "every fallback sent at least once");
    let hits = rx.hits();
    eprintln!(
        "kill test: {} requests, {} distinct keys, {} in flight when the node was killed",
        hits.len(),
        distinct.len(),
        in_flight_at_kill
    );
    assert!(in_flight_at_kill > 0);
    // The sends in flight at the kill were never recorded by the dead node: they were sent
    // again, so those keys arrived twice.
    assert!(hits.len() >= want + in_flight_at_kill.min(want));
    assert_eq!(rx.shared.bad_signatures.load(Ordering::SeqCst), 0);
    rx.server.stop(false).await;
}

/// The worker applies preferences at send time: a muted type × channel is cancelled, not sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_muted_channel_cancels_the_fallback() {
    let env = TestEnv::new().await;
    let rx = Receiver::start().await;
    let cfg = fallback(&format!("{KIND}:webhook:100ms"), &rx, |_| {});
    let node = env.node_with(|c| c.fallback = cfg).await;
    let r = node
        .http
        .put(format!("{}/v1/me/preferences", node.base))
        .bearer_auth(token("mia", 60))
        .json(&json!({ "channels": { KIND: { "webhook": false } } }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let muted = publish_ids(&node, "mia", 1).await;
    let sent = publish_ids(&node, "max", 1).await;
    assert!(
        eventually(WAIT, || async {
            let s = job_states(&env).await;
            s.get(&muted[0]).is_some_and(|s| s.0 == "cancelled")
                && s.get(&sent[0]).is_some_and(|s| s.0 == "sent")
        })
        .await,
        "{:?}",
        job_states(&env).await
    );
    let hits = rx.hits();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].notification_id, sent[0]);
    let why: String = env
        .sql()
        .await
        .query_one(
            "SELECT last_error FROM fallback_jobs WHERE state = 'cancelled'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(why, "muted");
    rx.server.stop(false).await;
}

/// Shown in a visible tab (the seen watermark, here over HTTP) before `fallback_after`: the
/// notifications it covers are never sent; a later one is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seen_watermark_cancels_the_fallbacks_it_covers() {
    let env = TestEnv::new().await;
    let rx = Receiver::start().await;
    let cfg = fallback(&format!("{KIND}:webhook:1500ms"), &rx, |_| {});
    let node = env.node_with(|c| c.fallback = cfg).await;
    let ids = publish_ids(&node, "sam", 3).await;
    let r = node
        .post(
            "/v1/notifications/seen",
            &token("sam", 60),
            Some(json!({ "seq": 2 })),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(eventually(WAIT, || async { rx.distinct().len() == 1 }).await);
    assert!(
        eventually(WAIT, || async {
            let seq: i64 = env
                .sql()
                .await
                .query_one(
                    "SELECT fallback_seq FROM fallback_cursor WHERE user_id = 'sam'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            seq == 3
        })
        .await
    );
    let hits = rx.hits();
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0].notification_id, ids[2]);
    rx.server.stop(false).await;
}

async fn publish_json(node: &TestNode, body: Value) -> reqwest::Response {
    node.publish(&body).await
}

async fn job_error(env: &TestEnv, id: &str) -> Option<String> {
    env.sql()
        .await
        .query_one(
            "SELECT last_error FROM fallback_jobs WHERE notification_id = $1::text::uuid",
            &[&id],
        )
        .await
        .unwrap()
        .get(0)
}

/// More rows than one planner page behind a long wait: the later, short-wait rows are still
/// sent on time (the page's waiting row is scheduled as a job, the cursor moves on), and the
/// long-wait row waits as a scheduled job, not sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_planner_page_does_not_hold_later_notifications() {
    let env = TestEnv::new().await;
    let rx = Receiver::start().await;
    let cfg = fallback(
        &format!("slow:webhook:1h,{KIND}:webhook:100ms"),
        &rx,
        |_| {},
    );
    let node = env.node_with(|c| c.fallback = cfg).await;
    let r = publish_json(
        &node,
        json!({ "recipient": "pam", "type": "slow", "title": "s", "body": "b" }),
    )
    .await;
    assert_eq!(r.status(), 201);
    let slow: Value = r.json().await.unwrap();
    let slow = slow["notifications"][0]["id"].as_str().unwrap().to_owned();
    // Past the planner's page of 200 rows per user.
    let ids = publish_ids(&node, "pam", 230).await;
    assert!(
        eventually(Duration::from_secs(30), || async {
            rx.distinct().len() == ids.len()
        })
        .await,
        "sent {} of {}",
        rx.distinct().len(),
        ids.len()
    );
    assert!(!rx.hits().iter().any(|h| h.notification_id == slow));
    let row = env
        .sql()
        .await
        .query_one(
            "SELECT state, next_attempt_at > now() + interval '50 minutes' AS later \
             FROM fallback_jobs WHERE notification_id = $1::text::uuid",
            &[&slow],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>("state"), "pending");
    assert!(row.get::<_, bool>("later"), "scheduled for its due time");
    rx.server.stop(false).await;
}

/// A publish call's `priority` and `fallback`: critical is sent at once even in quiet hours,
/// an override gives a type without a rule a fallback, `channels: []` turns it off, and a
/// channel that is not set up, or a bad wait, is refused with nothing stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_priority_and_fallback_override() {
    let env = TestEnv::new().await;
    let rx = Receiver::start().await;
    let cfg = fallback(&format!("{KIND}:webhook:1h"), &rx, |_| {});
    let node = env.node_with(|c| c.fallback = cfg).await;
    // The user is in quiet hours right now.
    let now = chrono::Utc::now();
    let hhmm = |t: chrono::DateTime<chrono::Utc>| t.format("%H:%M").to_string();
    let r = node
        .http
        .put(format!("{}/v1/me/preferences", node.base))
        .bearer_auth(token("cleo", 60))
        .json(&json!({ "quiet_hours": {
            "start": hhmm(now - chrono::Duration::hours(1)),
            "end": hhmm(now + chrono::Duration::hours(1)),
            "time_zone": "UTC" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id_of = |v: Value| v["notifications"][0]["id"].as_str().unwrap().to_owned();
    let base = |extra: Value| {
        let mut b = json!({ "recipient": "cleo", "type": KIND, "title": "t", "body": "b" });
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    let r = publish_json(&node, base(json!({ "priority": "critical" }))).await;
    assert_eq!(r.status(), 201);
    let critical = id_of(r.json().await.unwrap());
    // A normal one of the same type waits its hour.
    let r = publish_json(&node, base(json!({}))).await;
    assert_eq!(r.status(), 201);
    let normal = id_of(r.json().await.unwrap());
    // No rule for "other": the call gives it one (quiet hours defer it, it is not critical).
    let r = publish_json(
        &node,
        json!({ "recipient": "cleo", "type": "other", "title": "t", "body": "b",
                "fallback": { "channels": ["webhook"], "after": "100ms" } }),
    )
    .await;
    assert_eq!(r.status(), 201);
    let overridden = id_of(r.json().await.unwrap());
    // Critical, but the call turned the fallback off.
    let r = publish_json(
        &node,
        base(json!({ "priority": "critical", "fallback": { "channels": [] } })),
    )
    .await;
    assert_eq!(r.status(), 201);
    let off = id_of(r.json().await.unwrap());

    assert!(
        eventually(WAIT, || async { rx.distinct().len() == 1 }).await,
        "{:?}",
        rx.hits()
    );
    assert_eq!(rx.hits()[0].notification_id, critical);
    assert!(
        eventually(WAIT, || async {
            let s = job_states(&env).await;
            s.get(&overridden)
                .is_some_and(|s| s.0 == "pending" && s.1 == 0)
        })
        .await,
        "the override's job is deferred by quiet hours: {:?}",
        job_states(&env).await
    );
    let s = job_states(&env).await;
    assert!(
        !s.contains_key(&normal),
        "the normal one still waits: {s:?}"
    );
    assert!(!s.contains_key(&off), "fallback turned off: {s:?}");
    let stored: Value = env
        .sql()
        .await
        .query_one(
            "SELECT fallback FROM notifications WHERE id = $1::text::uuid",
            &[&critical],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, json!({ "critical": true }));

    // Refusals: nothing stored.
    let before = node
        .http
        .get(format!("{}/v1/notifications", node.base))
        .bearer_auth(token("cleo", 60))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    for (extra, field) in [
        (
            json!({ "fallback": { "channels": ["email"] } }),
            "fallback.channels",
        ),
        (
            json!({ "fallback": { "channels": ["fax"] } }),
            "fallback.channels",
        ),
        (json!({ "fallback": { "after": "2d" } }), "fallback.after"),
        (json!({ "fallback": { "after": "25h" } }), "fallback.after"),
        (json!({ "priority": "urgent" }), ""),
        (json!({ "fallback": { "wait": "1s" } }), ""),
    ] {
        let r = publish_json(&node, base(extra.clone())).await;
        assert_eq!(r.status(), 400, "{extra}");
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["code"], "validation_failed", "{extra}: {e}");
        if !field.is_empty() {
            assert_eq!(e["field"], field, "{extra}: {e}");
        }
    }
    let after = node
        .http
        .get(format!("{}/v1/notifications", node.base))
        .bearer_auth(token("cleo", 60))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(before, after);
    rx.server.stop(false).await;
}

/// A send that outlives its lease is claimed again; once claims pass the attempt limit without
/// an outcome, the job is dead-lettered instead of being claimed forever, and the late answers
/// of the old claims do not overwrite that (the claim fence).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_that_keeps_running_out_ends_in_the_dead_letter() {
    let env = TestEnv::new().await;
    let rx = Receiver::start().await;
    rx.shared.delay_ms.store(1_500, Ordering::SeqCst);
    let cfg = fallback(&format!("{KIND}:webhook:50ms"), &rx, |c| {
        c.lease = Duration::from_millis(300);
        c.retry.max_attempts = 3;
    });
    // Two nodes: while one waits on its slow send, the other claims the job again.
    let node = env.node_with(|c| c.fallback = cfg.clone()).await;
    let _other = env.node_with(|c| c.fallback = cfg).await;
    let ids = publish_ids(&node, "lea", 1).await;
    assert!(
        eventually(WAIT, || async {
            job_states(&env)
                .await
                .get(&ids[0])
                .is_some_and(|s| s.0 == "dead")
        })
        .await,
        "{:?}",
        job_states(&env).await
    );
    assert!(
        job_error(&env, &ids[0])
            .await
            .unwrap_or_default()
            .contains("lease ran out"),
        "{:?}",
        job_error(&env, &ids[0]).await
    );
    // Every claim's request is answered (late); none of them turns the job back.
    let sent = rx.hits().len() as u64;
    assert_eq!(sent, 3, "one request per attempt: {:?}", rx.hits());
    assert!(
        eventually(WAIT, || async {
            rx.shared.answered.load(Ordering::SeqCst) == sent
        })
        .await
    );
    assert_eq!(job_states(&env).await[&ids[0]].0, "dead");
    rx.server.stop(false).await;
}

/// Finished jobs are deleted after the retention; pending ones never are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_jobs_are_purged_after_their_retention() {
    let env = TestEnv::new().await;
    let rx = Receiver::start().await;
    let cfg = fallback(
        &format!("{KIND}:webhook:100ms,slow:webhook:1h"),
        &rx,
        |_| {},
    );
    let node = env.node_with(|c| c.fallback = cfg).await;
    publish_ids(&node, "pia", 2).await;
    assert!(
        eventually(WAIT, || async {
            job_states(&env)
                .await
                .values()
                .filter(|s| s.0 == "sent")
                .count()
                == 2
        })
        .await
    );
    // A pending job, as old as the finished ones are about to be made; and a finished one
    // past the user's fallback cursor (the planner may read its row again: kept).
    env.sql()
        .await
        .batch_execute(
            "INSERT INTO fallback_jobs (notification_id, channel, user_id, seq, next_attempt_at) \
             VALUES (gen_random_uuid(), 'webhook', 'pia', 99, now() + interval '1 day');
             INSERT INTO fallback_jobs (notification_id, channel, user_id, seq, next_attempt_at, state) \
             VALUES (gen_random_uuid(), 'webhook', 'pia', 50, now(), 'sent');",
        )
        .await
        .unwrap();
    env.sql()
        .await
        .execute(
            "UPDATE fallback_jobs SET updated_at = now() - interval '2 hours'",
            &[],
        )
        .await
        .unwrap();
    let store = env.store().await;
    let n = store
        .fallback_purge_jobs(Duration::from_secs(3600), 1)
        .await
        .unwrap();
    assert_eq!(n, 1, "bounded by the limit");
    let n = store
        .fallback_purge_jobs(Duration::from_secs(3600), 100)
        .await
        .unwrap();
    assert_eq!(n, 1);
    let left = job_states(&env).await;
    assert_eq!(left.len(), 2, "{left:?}");
    assert_eq!(
        left.values().filter(|s| s.0 == "pending").count(),
        1,
        "{left:?}"
    );
    let past: i64 = env
        .sql()
        .await
        .query_one("SELECT seq FROM fallback_jobs WHERE state = 'sent'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(past, 50);
    rx.server.stop(false).await;
}
