//! Tokens, and the publish load: services posting notifications and recording every
//! acknowledged one.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::watch;

use crate::settings::{SECRET, SERVICE_KEY};

pub fn token(user: &str, ttl_secs: i64) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({ "sub": user, "exp": chrono::Utc::now().timestamp() + ttl_secs }),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("encode token")
}

#[derive(Debug, Clone)]
pub struct Acked {
    pub user: String,
    pub id: String,
    pub seq: i64,
}

#[derive(Debug, Default)]
pub struct PublishReport {
    /// Publish calls made (each may take several attempts).
    pub calls: u64,
    /// Acknowledged (201, or 200 replayed by idempotency key after a retry).
    pub acked: Vec<Acked>,
    /// Of those, acknowledged only after a retry.
    pub acked_after_retry: u64,
    /// Calls that got an error on every attempt (status or transport error).
    pub failed: u64,
    /// Every failed attempt, by status ("503", "transport", ...).
    pub attempt_errors: BTreeMap<String, u64>,
    pub elapsed: Duration,
}

impl PublishReport {
    pub fn json(&self) -> Value {
        json!({
            "calls": self.calls,
            "acked": self.acked.len(),
            "acked_after_retry": self.acked_after_retry,
            "failed": self.failed,
            "attempt_errors": self.attempt_errors,
            "elapsed_s": self.elapsed.as_secs_f64(),
        })
    }
}

pub struct PublishPlan {
    pub base: String,
    pub users: Vec<String>,
    /// Calls per second.
    pub rate: u32,
    /// Stop after this many calls (None: until `stop`).
    pub total: Option<u64>,
    /// Attempts per call (1 = no retry). Retries reuse the idempotency key.
    pub attempts: u32,
    pub concurrency: usize,
}

/// Publishes `recipient = users[k % len]` at a fixed rate through `base`; every call carries a
/// unique idempotency key so a retry never duplicates. Stops at `total` or when `stop` flips.
pub async fn publish_load(plan: PublishPlan, mut stop: watch::Receiver<bool>) -> PublishReport {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(plan.concurrency)
        .build()
        .expect("http");
    let run = uuid::Uuid::new_v4().simple().to_string();
    let sem = Arc::new(tokio::sync::Semaphore::new(plan.concurrency));
    let report = Arc::new(Mutex::new(PublishReport::default()));
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / plan.rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::new();
    let mut k: u64 = 0;
    loop {
        if plan.total.is_some_and(|t| k >= t) || *stop.borrow() {
            break;
        }
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => continue,
        }
        let user = plan.users[(k as usize) % plan.users.len()].clone();
        let key = format!("chaos-{}-{k}", &run[..8]);
        let url = format!("{}/v1/notifications", plan.base);
        let http = http.clone();
        let report = report.clone();
        let sem = sem.clone();
        let attempts = plan.attempts.max(1);
        k += 1;
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await.expect("semaphore");
            let body = json!({
                "recipient": user, "type": "chaos.test", "title": key.clone(),
                "body": "", "idempotency_key": key,
            });
            for attempt in 0..attempts {
                let res = http
                    .post(&url)
                    .bearer_auth(SERVICE_KEY)
                    .json(&body)
                    .send()
                    .await;
                let err = match res {
                    Ok(r) if r.status() == 201 || r.status() == 200 => {
                        match r.json::<Value>().await {
                            Ok(v) => {
                                let n = &v["notifications"][0];
                                let a = Acked {
                                    user: user.clone(),
                                    id: n["id"].as_str().unwrap_or_default().to_string(),
                                    seq: n["seq"].as_i64().unwrap_or(-1),
                                };
                                let mut rep = report.lock().unwrap();
                                rep.calls += 1;
                                rep.acked.push(a);
                                if attempt > 0 {
                                    rep.acked_after_retry += 1;
                                }
                                return;
                            }
                            Err(_) => "bad-body".to_string(),
                        }
                    }
                    // "503 service_unavailable" from a node (JSON error body) vs
                    // "503 (lb)" from HAProxy (its own HTML page).
                    Ok(r) => {
                        let st = r.status().as_u16();
                        match r.json::<Value>().await {
                            Ok(v) if v["code"].is_string() => {
                                format!("{st} {}", v["code"].as_str().unwrap_or_default())
                            }
                            _ => format!("{st} (lb)"),
                        }
                    }
                    Err(e) if e.is_timeout() => "timeout".to_string(),
                    Err(_) => "transport".to_string(),
                };
                *report
                    .lock()
                    .unwrap()
                    .attempt_errors
                    .entry(err)
                    .or_default() += 1;
                let back = 100u64 << attempt.min(4);
                tokio::time::sleep(Duration::from_millis(back.min(1000))).await;
            }
            let mut rep = report.lock().unwrap();
            rep.calls += 1;
            rep.failed += 1;
        }));
    }
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(60), t).await;
    }
    let mut rep = std::mem::take(&mut *report.lock().unwrap());
    rep.elapsed = started.elapsed();
    rep
}
