//! WebSocket clients: one task each, reconnecting with jittered backoff, resuming by
//! `last_seq`, de-duplicating by id; a [`Fleet`] of them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::publisher::token;
use crate::settings::{secs_since, BACKOFF_BASE, BACKOFF_CAP};

/// What a client task shares while running.
#[derive(Default)]
pub struct Live {
    pub last_seq: AtomicI64,
    pub connected: AtomicBool,
    pub node: Mutex<String>,
    pub connects: AtomicU64,
}

#[derive(Debug, Clone)]
pub struct Reconnect {
    /// Seconds since the fleet's t0 when the socket closed.
    pub closed_at: f64,
    /// Seconds since t0 when `connected` arrived on the new socket.
    pub connected_at: f64,
    pub close_code: u16,
    pub from_node: String,
    pub to_node: String,
    /// Failed connect attempts in between.
    pub failed_attempts: u32,
}

impl Reconnect {
    pub fn took_ms(&self) -> f64 {
        (self.connected_at - self.closed_at) * 1000.0
    }
}

#[derive(Debug, Default)]
pub struct ClientReport {
    pub user: String,
    /// (seq, id) in the order received, de-duplicated by id.
    pub held: Vec<(i64, String)>,
    /// Notifications received again (same id) — must stay 0.
    pub duplicates: u64,
    /// Notifications not equal to last_seq + 1 when received — must stay 0.
    pub order_violations: u64,
    pub resyncs: u64,
    pub drain_notices: u64,
    pub reconnects: Vec<Reconnect>,
    pub failed_connects: u64,
    pub connect_errors: BTreeMap<String, u64>,
    pub terminal_close: Option<(u16, String)>,
}

fn backoff(attempt: u32) -> Duration {
    let ceil = BACKOFF_BASE
        .saturating_mul(1u32 << attempt.min(10))
        .min(BACKOFF_CAP);
    let ms = rand::random_range(0..=ceil.as_millis() as u64);
    Duration::from_millis(ms)
}

async fn until_stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn sleep_or_stop(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = until_stopped(stop) => true,
    }
}

async fn client_task(
    ws_url: String,
    user: String,
    start_delay: Duration,
    live: Arc<Live>,
    t0: Instant,
    mut stop: watch::Receiver<bool>,
) -> ClientReport {
    let mut rep = ClientReport {
        user: user.clone(),
        ..Default::default()
    };
    let mut ids: HashSet<String> = HashSet::new();
    let mut last_seq: i64 = 0;
    let mut attempt: u32 = 0;
    // (closed_at, code, node) of the last close, until the next `connected`.
    let mut pending: Option<(Instant, u16, String)> = None;
    let mut failed_since_close: u32 = 0;
    let tok = token(&user, 6 * 3600);
    if sleep_or_stop(start_delay, &mut stop).await {
        return rep;
    }
    'outer: loop {
        if *stop.borrow() {
            break;
        }
        let mut req = format!("{ws_url}?last_seq={last_seq}")
            .into_client_request()
            .expect("ws request");
        req.headers_mut().insert(
            "authorization",
            format!("Bearer {tok}").parse().expect("header"),
        );
        let conn = tokio::select! {
            r = tokio::time::timeout(Duration::from_secs(5), tokio_tungstenite::connect_async(req)) => r,
            _ = until_stopped(&mut stop) => break 'outer,
        };
        let mut ws = match conn {
            Ok(Ok((ws, _))) => ws,
            other => {
                let why = match other {
                    Err(_) => "timeout".to_string(),
                    Ok(Err(tokio_tungstenite::tungstenite::Error::Http(r))) => {
                        format!("http {}", r.status().as_u16())
                    }
                    Ok(Err(e)) => {
                        let s = e.to_string();
                        s.chars().take(40).collect()
                    }
                    Ok(Ok(_)) => unreachable!(),
                };
                *rep.connect_errors.entry(why).or_default() += 1;
                rep.failed_connects += 1;
                failed_since_close += 1;
                attempt += 1;
                if sleep_or_stop(backoff(attempt), &mut stop).await {
                    break 'outer;
                }
                continue;
            }
        };
        let mut node = String::new();
        let close: (u16, String) = loop {
            let msg = tokio::select! {
                m = ws.next() => m,
                _ = until_stopped(&mut stop) => {
                    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
                    break 'outer;
                }
            };
            match msg {
                None => break (1006, "stream ended".into()),
                Some(Err(e)) => break (1006, e.to_string()),
                Some(Ok(Message::Close(c))) => {
                    break match c {
                        Some(f) => (u16::from(f.code), f.reason.to_string()),
                        None => (1005, String::new()),
                    }
                }
                Some(Ok(Message::Text(t))) => {
                    let v: Value = match serde_json::from_str(&t) {
                        Ok(v) => v,
                        Err(_) => continue,
                    };
                    match v["type"].as_str().unwrap_or_default() {
                        "connected" => {
                            node = v["node_id"].as_str().unwrap_or_default().to_string();
                            *live.node.lock().unwrap() = node.clone();
                            live.connected.store(true, Ordering::SeqCst);
                            live.connects.fetch_add(1, Ordering::SeqCst);
                            attempt = 0;
                            if let Some((at, code, from)) = pending.take() {
                                rep.reconnects.push(Reconnect {
                                    closed_at: secs_since(t0, at),
                                    connected_at: secs_since(t0, Instant::now()),
                                    close_code: code,
                                    from_node: from,
                                    to_node: node.clone(),
                                    failed_attempts: failed_since_close,
                                });
                            }
                            failed_since_close = 0;
                        }
                        "notifications:batch" => {
                            if let Some(ns) = v["notifications"].as_array() {
                                for n in ns {
                                    accept(n, &mut rep, &mut ids, &mut last_seq);
                                }
                            }
                            live.last_seq.store(last_seq, Ordering::SeqCst);
                        }
                        "notification" => {
                            accept(&v["notification"], &mut rep, &mut ids, &mut last_seq);
                            live.last_seq.store(last_seq, Ordering::SeqCst);
                        }
                        "resync" => rep.resyncs += 1,
                        "reconnect" => rep.drain_notices += 1,
                        _ => {}
                    }
                }
                Some(Ok(_)) => {}
            }
        };
        live.connected.store(false, Ordering::SeqCst);
        pending = Some((Instant::now(), close.0, node));
        if (4000..4100).contains(&close.0) {
            rep.terminal_close = Some(close);
            break;
        }
        if sleep_or_stop(backoff(attempt), &mut stop).await {
            break;
        }
    }
    live.connected.store(false, Ordering::SeqCst);
    rep
}

fn accept(n: &Value, rep: &mut ClientReport, ids: &mut HashSet<String>, last_seq: &mut i64) {
    let seq = n["seq"].as_i64().unwrap_or(-1);
    let id = n["id"].as_str().unwrap_or_default().to_string();
    if !ids.insert(id.clone()) {
        rep.duplicates += 1;
        return;
    }
    if seq != *last_seq + 1 {
        rep.order_violations += 1;
    }
    *last_seq = (*last_seq).max(seq);
    rep.held.push((seq, id));
}

/// Many client tasks; aborted on drop.
pub struct Fleet {
    pub t0: Instant,
    pub users: Vec<String>,
    pub live: Vec<Arc<Live>>,
    handles: Vec<tokio::task::JoinHandle<ClientReport>>,
    stop: watch::Sender<bool>,
}

impl Fleet {
    /// One client per entry of `users` (repeat a user for several sockets), started evenly
    /// over `ramp`.
    pub fn spawn(ws_url: &str, users: Vec<String>, ramp: Duration, t0: Instant) -> Fleet {
        let (stop, rx) = watch::channel(false);
        let n = users.len().max(1) as u32;
        let mut live = Vec::new();
        let mut handles = Vec::new();
        for (i, u) in users.iter().enumerate() {
            let l = Arc::new(Live::default());
            live.push(l.clone());
            handles.push(tokio::spawn(client_task(
                ws_url.to_string(),
                u.clone(),
                ramp * i as u32 / n,
                l,
                t0,
                rx.clone(),
            )));
        }
        Fleet {
            t0,
            users,
            live,
            handles,
            stop,
        }
    }

    pub fn connected(&self) -> usize {
        self.live
            .iter()
            .filter(|l| l.connected.load(Ordering::SeqCst))
            .count()
    }

    pub async fn wait_connected(&self, timeout: Duration) -> Result<Duration, String> {
        let t = Instant::now();
        loop {
            let c = self.connected();
            if c == self.live.len() {
                return Ok(t.elapsed());
            }
            if t.elapsed() > timeout {
                return Err(format!(
                    "only {c}/{} clients connected after {timeout:?}",
                    self.live.len()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Connected sockets per node id.
    pub fn per_node(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for l in &self.live {
            if l.connected.load(Ordering::SeqCst) {
                *m.entry(l.node.lock().unwrap().clone()).or_default() += 1;
            }
        }
        m
    }

    /// Waits until every client is connected and holds `expected[user]` (max seq).
    pub async fn wait_caught_up(
        &self,
        expected: &HashMap<String, i64>,
        timeout: Duration,
    ) -> Result<Duration, String> {
        let t = Instant::now();
        loop {
            let behind: Vec<usize> = (0..self.live.len())
                .filter(|&i| {
                    let want = expected.get(&self.users[i]).copied().unwrap_or(0);
                    !self.live[i].connected.load(Ordering::SeqCst)
                        || self.live[i].last_seq.load(Ordering::SeqCst) < want
                })
                .collect();
            if behind.is_empty() {
                return Ok(t.elapsed());
            }
            if t.elapsed() > timeout {
                let i = behind[0];
                return Err(format!(
                    "{} clients not caught up after {timeout:?}; e.g. {} holds {} of {}, connected={}",
                    behind.len(),
                    self.users[i],
                    self.live[i].last_seq.load(Ordering::SeqCst),
                    expected.get(&self.users[i]).copied().unwrap_or(0),
                    self.live[i].connected.load(Ordering::SeqCst),
                ));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn stop(mut self) -> Vec<ClientReport> {
        let _ = self.stop.send(true);
        let mut out = Vec::new();
        for h in std::mem::take(&mut self.handles) {
            match tokio::time::timeout(Duration::from_secs(10), h).await {
                Ok(Ok(r)) => out.push(r),
                Ok(Err(e)) => panic!("client task failed: {e}"),
                Err(_) => panic!("client task did not stop within 10 s"),
            }
        }
        out
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for h in &self.handles {
            h.abort();
        }
    }
}
