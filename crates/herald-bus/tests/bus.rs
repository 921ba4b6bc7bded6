//! Integration tests against a real Redis: the shared one at 127.0.0.1:6379 (each test uses
//! its own random prefix, so they run in parallel) and private `redis-server` children for
//! the restart and blackhole cases. Every wait is bounded.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test harness: a panic is a failed test

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald_bus::{Bus, BusConfig, BusError, SubscribeOutcome};
use herald_core::FanoutSink;
use herald_protocol::bus::{BusKey, BusMessage, LiveFrame, Reject};
use herald_protocol::Broadcast;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

const SHARED_URL: &str = "redis://127.0.0.1:6379/";

// ---------------------------------------------------------------------------------------------
// Test sink

#[derive(Debug, Clone)]
enum Ev {
    User(String, Box<BusMessage>),
    Broadcast(Arc<Broadcast>),
    Resync,
}

#[derive(Default)]
struct TestSink {
    events: Mutex<Vec<Ev>>,
    rejected: Mutex<Vec<(Reject, String)>>,
    notify: Notify,
}

impl FanoutSink for TestSink {
    fn user_event(&self, user_id: &str, msg: BusMessage) {
        self.push(Ev::User(user_id.to_owned(), Box::new(msg)));
    }
    fn broadcast(&self, broadcast: Arc<Broadcast>) {
        self.push(Ev::Broadcast(broadcast));
    }
    fn resync_all(&self) {
        self.push(Ev::Resync);
    }
    fn revoked(&self, _: &str) {}
    fn rejected(&self, reason: Reject, channel: &str) {
        self.rejected
            .lock()
            .unwrap()
            .push((reason, channel.to_owned()));
        self.notify.notify_waiters();
    }
}

impl TestSink {
    fn push(&self, ev: Ev) {
        self.events.lock().unwrap().push(ev);
        self.notify.notify_waiters();
    }

    fn snapshot(&self) -> Vec<Ev> {
        self.events.lock().unwrap().clone()
    }

    fn count(&self, pred: impl Fn(&Ev) -> bool) -> usize {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| pred(e))
            .count()
    }

    fn user_count(&self, user: &str) -> usize {
        self.count(|e| matches!(e, Ev::User(u, _) if u == user))
    }

    fn users_total(&self) -> usize {
        self.count(|e| matches!(e, Ev::User(..)))
    }

    fn resyncs(&self) -> usize {
        self.count(|e| matches!(e, Ev::Resync))
    }

    fn broadcasts(&self) -> usize {
        self.count(|e| matches!(e, Ev::Broadcast(_)))
    }

    /// Waits until `pred` holds over the recorded events; false on timeout.
    async fn wait_for(&self, timeout: Duration, pred: impl Fn(&[Ev]) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            // Evaluate on a snapshot: predicates may call the counting helpers (which lock).
            if pred(&self.snapshot()) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return pred(&self.snapshot());
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn read_msg(version: i64) -> BusMessage {
    let json = serde_json::json!({
        "k": "read", "ids": [], "up_to_seq": null, "read_at": "2024-01-01T00:00:00Z",
        "unread_count": 0, "version": version
    });
    BusMessage::decode(json.to_string().as_bytes()).unwrap()
}

fn broadcast_msg() -> BusMessage {
    let broadcast: Broadcast = serde_json::from_value(serde_json::json!({
        "id": uuid::Uuid::new_v4(), "type": "announcement", "title": "hi", "body": "all",
        "link": null, "data": null, "created_at": "2024-01-01T00:00:00Z"
    }))
    .unwrap();
    BusMessage::Broadcast { broadcast }
}

fn prefix() -> String {
    format!("test:{}:", uuid::Uuid::new_v4())
}

fn config(url: &str, prefix: &str) -> BusConfig {
    BusConfig {
        redis_url: Some(url.to_owned()),
        cluster_nodes: Vec::new(),
        tls_ca_file: None,
        prefix: prefix.to_owned(),
        node_id: uuid::Uuid::new_v4().to_string(),
        probe_interval: Duration::from_millis(500),
        probe_timeout: Duration::from_secs(2),
        publish_pool_size: 4,
        key: None,
    }
}

async fn node(url: &str, prefix: &str) -> (Bus, Arc<TestSink>) {
    let sink = Arc::new(TestSink::default());
    let bus = Bus::start(config(url, prefix), sink.clone()).await.unwrap();
    (bus, sink)
}

async fn redis_conn(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn numsub(url: &str, channel: &str) -> i64 {
    let mut c = redis_conn(url).await;
    let v: Vec<(String, i64)> = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(channel)
        .query_async(&mut c)
        .await
        .unwrap();
    v.first().map(|(_, n)| *n).unwrap_or(0)
}

use herald_testkit::{eventually, free_port, PrivateRedis};

/// A TCP proxy in front of a Redis that can turn its *current* connections into black holes:
/// server→client bytes are dropped while the connections stay open. Connections accepted
/// afterwards are healthy.
struct Proxy {
    port: u16,
    flags: Arc<Mutex<Vec<Arc<AtomicBool>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let flags: Arc<Mutex<Vec<Arc<AtomicBool>>>> = Arc::default();
        let flags2 = flags.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let flag = Arc::new(AtomicBool::new(false));
                flags2.lock().unwrap().push(flag.clone());
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                        return;
                    };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let up = async { tokio::io::copy(&mut cr, &mut sw).await.ok() };
                    let down = async {
                        let mut buf = vec![0u8; 16 * 1024];
                        loop {
                            match sr.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    if !flag.load(Ordering::SeqCst)
                                        && cw.write_all(&buf[..n]).await.is_err()
                                    {
                                        break;
                                    }
                                }
                            }
                        }
                    };
                    tokio::select! {
                        _ = up => {},
                        _ = down => {},
                    }
                });
            }
        });
        Proxy { port, flags, task }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn blackhole_existing(&self) {
        for f in self.flags.lock().unwrap().iter() {
            f.store(true, Ordering::SeqCst);
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Kills this node's subscriber connection (found by its CLIENT SETNAME).
async fn kill_subscriber(url: &str, node_id: &str) {
    let mut c = redis_conn(url).await;
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut c)
        .await
        .unwrap();
    let wanted = format!("name=herald-sub:{node_id}");
    let line = list
        .lines()
        .find(|l| l.split(' ').any(|f| f == wanted))
        .unwrap_or_else(|| panic!("no pubsub client named {wanted} in:\n{list}"));
    let id: u64 = line
        .split(' ')
        .find_map(|f| f.strip_prefix("id="))
        .unwrap()
        .parse()
        .unwrap();
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(id)
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(killed, 1);
}

const WAIT: Duration = Duration::from_secs(5);
/// How long to watch for something that must NOT arrive.
const QUIET: Duration = Duration::from_millis(300);

// ---------------------------------------------------------------------------------------------
// Tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_reaches_only_nodes_subscribed_to_the_user() {
    let p = prefix();
    let (a, sink_a) = node(SHARED_URL, &p).await;
    let (b, sink_b) = node(SHARED_URL, &p).await;
    assert!(a.is_connected() && b.is_connected());

    assert_eq!(b.subscribe("u1").await, SubscribeOutcome::Confirmed);
    assert_eq!(b.subscribed_users(), 1);
    a.publish(vec![("u1".into(), read_msg(1)), ("u2".into(), read_msg(1))])
        .await
        .unwrap();

    assert!(sink_b.wait_for(WAIT, |ev| ev.len() == 1).await);
    tokio::time::sleep(QUIET).await;
    let events = sink_b.events.lock().unwrap().clone();
    assert_eq!(events.len(), 1, "{events:?}");
    match &events[0] {
        Ev::User(u, m) => {
            assert_eq!(u, "u1");
            assert_eq!(**m, read_msg(1));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(sink_a.users_total(), 0);
    assert_eq!(b.metrics().messages_received, 1);
    assert!(a.ping().await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refcounted_subscription_one_per_user_per_node() {
    let p = prefix();
    let channel = format!("{p}user:u");
    let (a, _sink_a) = node(SHARED_URL, &p).await;
    let (b, sink_b) = node(SHARED_URL, &p).await;

    assert_eq!(b.subscribe("u").await, SubscribeOutcome::Confirmed);
    assert_eq!(b.subscribe("u").await, SubscribeOutcome::Confirmed);
    assert_eq!(numsub(SHARED_URL, &channel).await, 1);
    assert_eq!(b.subscribed_users(), 1);

    b.unsubscribe("u");
    // Still subscribed: a message published after the decrement is applied is delivered.
    assert_eq!(b.subscribe("other").await, SubscribeOutcome::Confirmed); // flushes the queue
    assert_eq!(numsub(SHARED_URL, &channel).await, 1);
    a.publish(vec![("u".into(), read_msg(1))]).await.unwrap();
    assert!(sink_b.wait_for(WAIT, |_| sink_b_has(&sink_b, "u", 1)).await);

    b.unsubscribe("u");
    assert!(
        eventually(WAIT, || async { numsub(SHARED_URL, &channel).await == 0 }).await,
        "channel still subscribed after the last unsubscribe"
    );
    assert!(eventually(WAIT, || async { b.subscribed_users() == 1 }).await);
    a.publish(vec![("u".into(), read_msg(2))]).await.unwrap();
    tokio::time::sleep(QUIET).await;
    assert_eq!(sink_b.user_count("u"), 1);
}

fn sink_b_has(sink: &TestSink, user: &str, n: usize) -> bool {
    sink.user_count(user) >= n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_publish_to_1000_users() {
    let p = prefix();
    let (a, _sink_a) = node(SHARED_URL, &p).await;
    let (b, sink_b) = node(SHARED_URL, &p).await;

    let users: Vec<String> = (0..1000).map(|i| format!("user-{i}")).collect();
    let outcomes =
        futures_util::future::join_all(users.iter().map(|u| b.subscribe(u.as_str()))).await;
    assert!(outcomes.iter().all(|o| *o == SubscribeOutcome::Confirmed));
    assert_eq!(b.subscribed_users(), 1000);
    assert_eq!(numsub(SHARED_URL, &format!("{p}user:user-0")).await, 1);
    assert_eq!(numsub(SHARED_URL, &format!("{p}user:user-999")).await, 1);

    let items: Vec<(String, BusMessage)> = users.iter().map(|u| (u.clone(), read_msg(7))).collect();
    let started = Instant::now();
    a.publish(items).await.unwrap();
    let took = started.elapsed();
    assert!(sink_b.wait_for(WAIT, |ev| ev.len() >= 1000).await);
    assert_eq!(sink_b.users_total(), 1000);
    assert!(users.iter().all(|u| sink_b.user_count(u) == 1));
    assert!(took < Duration::from_secs(2), "publish took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_reaches_every_node() {
    let p = prefix();
    let (a, sink_a) = node(SHARED_URL, &p).await;
    let (_b, sink_b) = node(SHARED_URL, &p).await;

    let msg = broadcast_msg();
    assert_eq!(a.broadcast(msg.clone()).await.unwrap(), 2);
    assert!(sink_a.wait_for(WAIT, |_| sink_a.broadcasts() == 1).await);
    assert!(sink_b.wait_for(WAIT, |_| sink_b.broadcasts() == 1).await);
    let BusMessage::Broadcast { broadcast } = msg else {
        unreachable!()
    };
    let got = sink_b.events.lock().unwrap().clone();
    assert!(matches!(&got[0], Ev::Broadcast(b) if **b == broadcast));
    assert!(matches!(
        a.broadcast(read_msg(1)).await,
        Err(BusError::Internal(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_subscriber_connection_reconnects_resubscribes_and_resyncs() {
    let p = prefix();
    let channel = format!("{p}user:u");
    let (a, _sink_a) = node(SHARED_URL, &p).await;
    let sink_b = Arc::new(TestSink::default());
    let cfg_b = config(SHARED_URL, &p);
    let node_b = cfg_b.node_id.clone();
    let b = Bus::start(cfg_b, sink_b.clone()).await.unwrap();

    assert_eq!(b.subscribe("u").await, SubscribeOutcome::Confirmed);
    assert_eq!(numsub(SHARED_URL, &channel).await, 1);

    kill_subscriber(SHARED_URL, &node_b).await;
    assert!(
        sink_b.wait_for(WAIT, |_| sink_b.resyncs() == 1).await,
        "no resync_all after the connection was killed"
    );
    assert!(b.is_connected());
    // resync_all comes after re-subscribing.
    assert_eq!(numsub(SHARED_URL, &channel).await, 1);
    assert_eq!(numsub(SHARED_URL, &format!("{p}broadcast")).await, 2);
    let m = b.metrics();
    assert_eq!((m.reconnects, m.resyncs), (1, 1));

    a.publish(vec![("u".into(), read_msg(3))]).await.unwrap();
    assert!(sink_b.wait_for(WAIT, |_| sink_b.user_count("u") == 1).await);
    assert_eq!(a.broadcast(broadcast_msg()).await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_degrades_then_recovers() {
    let port = free_port();
    let mut redis = PrivateRedis::start_on(port, &[]).await;
    let url = redis.url();
    let p = prefix();
    let (bus, sink) = node(&url, &p).await;
    assert_eq!(bus.subscribe("u").await, SubscribeOutcome::Confirmed);

    redis.kill();
    assert!(eventually(WAIT, || async { !bus.is_connected() }).await);
    match bus.publish(vec![("u".into(), read_msg(1))]).await {
        Err(BusError::Unavailable(_)) => {}
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(bus.ping().await.is_err());
    assert!(bus.metrics().publish_errors >= 1);
    // A socket arriving during the outage proceeds degraded.
    assert_eq!(bus.subscribe("late").await, SubscribeOutcome::Degraded);
    assert_eq!(bus.subscribed_users(), 2);

    let _redis = PrivateRedis::start_on(port, &[]).await;
    assert!(
        sink.wait_for(Duration::from_secs(10), |_| sink.resyncs() == 1)
            .await,
        "no resync_all after redis came back"
    );
    assert!(bus.is_connected());
    assert_eq!(numsub(&url, &format!("{p}user:u")).await, 1);
    assert_eq!(numsub(&url, &format!("{p}user:late")).await, 1);
    bus.publish(vec![
        ("u".into(), read_msg(2)),
        ("late".into(), read_msg(2)),
    ])
    .await
    .unwrap();
    assert!(
        sink.wait_for(WAIT, |_| sink.user_count("u") == 1
            && sink.user_count("late") == 1)
            .await
    );
    assert!(bus.ping().await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_degraded_when_redis_is_down_and_connects_later() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}/");
    let p = prefix();
    let started = Instant::now();
    let (bus, sink) = node(&url, &p).await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(!bus.is_connected());
    assert_eq!(bus.subscribe("u").await, SubscribeOutcome::Degraded);

    let _redis = PrivateRedis::start_on(port, &[]).await;
    assert!(
        sink.wait_for(Duration::from_secs(10), |_| sink.resyncs() == 1)
            .await
    );
    assert!(bus.is_connected());
    assert_eq!(numsub(&url, &format!("{p}user:u")).await, 1);
    bus.publish(vec![("u".into(), read_msg(1))]).await.unwrap();
    assert!(sink.wait_for(WAIT, |_| sink.user_count("u") == 1).await);
    assert_eq!(bus.subscribe("u").await, SubscribeOutcome::Confirmed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_detects_a_blackholed_subscriber_connection() {
    let port = free_port();
    let redis = PrivateRedis::start_on(port, &[]).await;
    let proxy = Proxy::start(redis.port).await;
    let p = prefix();
    let sink = Arc::new(TestSink::default());
    let cfg = BusConfig {
        probe_interval: Duration::from_millis(300),
        probe_timeout: Duration::from_secs(1),
        ..config(&proxy.url(), &p)
    };
    let bus = Bus::start(cfg, sink.clone()).await.unwrap();
    assert_eq!(bus.subscribe("u").await, SubscribeOutcome::Confirmed);
    // Probes pass on a healthy link.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(bus.metrics().probe_failures, 0);
    assert_eq!(sink.resyncs(), 0);

    let blackholed_at = Instant::now();
    proxy.blackhole_existing();
    assert!(
        sink.wait_for(WAIT, |_| sink.resyncs() == 1).await,
        "blackhole not detected"
    );
    let detected = blackholed_at.elapsed();
    assert!(detected < Duration::from_secs(3), "took {detected:?}");
    let m = bus.metrics();
    assert!(m.probe_failures >= 1);
    assert_eq!(m.reconnects, 1);
    assert!(bus.is_connected());

    // Live delivery works again (the first publishes may hit black-holed pool connections,
    // which the pool discards).
    let delivered = eventually(Duration::from_secs(8), || async {
        let _ = bus.publish(vec![("u".into(), read_msg(1))]).await;
        sink.wait_for(Duration::from_millis(300), |_| sink.user_count("u") >= 1)
            .await
    })
    .await;
    assert!(delivered);
    drop(bus);
    drop(proxy);
    drop(redis);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_payloads_are_counted_not_fatal() {
    let p = prefix();
    let (b, sink_b) = node(SHARED_URL, &p).await;
    assert_eq!(b.subscribe("u").await, SubscribeOutcome::Confirmed);
    let mut c = redis_conn(SHARED_URL).await;
    let _: i64 = redis::cmd("PUBLISH")
        .arg(format!("{p}user:u"))
        .arg("not json")
        .query_async(&mut c)
        .await
        .unwrap();
    let _: i64 = redis::cmd("PUBLISH")
        .arg(format!("{p}broadcast"))
        .arg("{\"k\":\"bogus\"}")
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(eventually(WAIT, || async { b.metrics().decode_errors == 2 }).await);
    b.publish(vec![("u".into(), read_msg(1))]).await.unwrap();
    assert!(sink_b.wait_for(WAIT, |_| sink_b.user_count("u") == 1).await);
    assert!(b.is_connected());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_the_subscriber() {
    let p = prefix();
    let (b, _sink) = node(SHARED_URL, &p).await;
    assert_eq!(b.subscribe("u").await, SubscribeOutcome::Confirmed);
    b.shutdown();
    assert!(
        eventually(WAIT, || async {
            numsub(SHARED_URL, &format!("{p}user:u")).await == 0
        })
        .await
    );
    assert!(!b.is_connected());
    assert_eq!(b.subscribe("v").await, SubscribeOutcome::Degraded);
}

// ---------------------------------------------------------------------------------------------
// Trust: envelope checks, the node key, Redis ACL users

fn live_for(user: &str, seq: i64) -> BusMessage {
    let notification = serde_json::from_value(serde_json::json!({
        "id": uuid::Uuid::new_v4(), "user_id": user, "seq": seq, "type": "t", "title": "t",
        "body": "", "link": "javascript:alert(1)", "avatar_url": null, "data": null,
        "created_at": "2024-01-01T00:00:00Z", "delivered_at": null, "read_at": null
    }))
    .unwrap();
    BusMessage::Live(LiveFrame::render(notification, 0, 1))
}

async fn publish_raw(url: &str, channel: &str, payload: &[u8]) -> Result<i64, redis::RedisError> {
    let mut c = redis_conn(url).await;
    redis::cmd("PUBLISH")
        .arg(channel)
        .arg(payload)
        .query_async(&mut c)
        .await
}

fn rejected(sink: &TestSink) -> Vec<Reject> {
    sink.rejected.lock().unwrap().iter().map(|r| r.0).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_payloads_on_a_user_channel_are_dropped_by_reason() {
    let p = prefix();
    let (a, _sink_a) = node(SHARED_URL, &p).await;
    let (b, sink_b) = node(SHARED_URL, &p).await;
    assert_eq!(b.subscribe("alice").await, SubscribeOutcome::Confirmed);
    let channel = format!("{p}user:alice");
    // Bob's notification on Alice's channel.
    publish_raw(SHARED_URL, &channel, &live_for("bob", 1).encode())
        .await
        .unwrap();
    // A header seq the frame does not carry.
    let BusMessage::Live(mut lying) = live_for("alice", 1) else {
        unreachable!()
    };
    lying.seq = 99_999_999_999_999_999;
    publish_raw(SHARED_URL, &channel, &BusMessage::Live(lying).encode())
        .await
        .unwrap();
    // The JSON notification earlier nodes published.
    let legacy = serde_json::json!({"k": "notification", "notification": {}, "unread_count": 1, "version": 1});
    publish_raw(SHARED_URL, &channel, legacy.to_string().as_bytes())
        .await
        .unwrap();
    a.publish(vec![("alice".into(), live_for("alice", 1))])
        .await
        .unwrap();
    assert!(
        sink_b
            .wait_for(WAIT, |_| sink_b.user_count("alice") == 1)
            .await
    );
    assert_eq!(
        rejected(&sink_b),
        vec![Reject::WrongUser, Reject::Malformed, Reject::Malformed]
    );
    assert!(sink_b
        .rejected
        .lock()
        .unwrap()
        .iter()
        .all(|r| r.1 == channel));
    assert_eq!(b.metrics().decode_errors, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_node_key_only_payloads_sealed_with_it_are_delivered() {
    let p = prefix();
    let key = BusKey::new(&[42u8; 32]).unwrap();
    let keyed = |sink: Arc<TestSink>| {
        let cfg = BusConfig {
            key: Some(key.clone()),
            ..config(SHARED_URL, &p)
        };
        async move { Bus::start(cfg, sink).await.unwrap() }
    };
    let sink_a = Arc::new(TestSink::default());
    let sink_b = Arc::new(TestSink::default());
    let a = keyed(sink_a.clone()).await;
    let b = keyed(sink_b.clone()).await;
    assert_eq!(b.subscribe("alice").await, SubscribeOutcome::Confirmed);
    let alice = format!("{p}user:alice");
    let msg = live_for("alice", 1);
    // No tag; another key's tag; this key's tag for another channel.
    let other = BusKey::new(&[43u8; 32]).unwrap();
    let forged = [
        msg.encode(),
        msg.encode_for(&alice, Some(&other)),
        msg.encode_for(&format!("{p}user:bob"), Some(&key)),
        read_msg(9).encode(),
    ];
    for payload in &forged {
        publish_raw(SHARED_URL, &alice, payload).await.unwrap();
    }
    publish_raw(
        SHARED_URL,
        &format!("{p}broadcast"),
        &broadcast_msg().encode(),
    )
    .await
    .unwrap();
    a.publish(vec![("alice".into(), msg.clone())])
        .await
        .unwrap();
    assert_eq!(a.broadcast(broadcast_msg()).await.unwrap(), 2);
    assert!(
        sink_b
            .wait_for(WAIT, |_| sink_b.user_count("alice") == 1
                && sink_b.broadcasts() == 1)
            .await
    );
    assert_eq!(
        rejected(&sink_b),
        vec![
            Reject::MissingTag,
            Reject::BadTag,
            Reject::BadTag,
            Reject::MissingTag,
            Reject::MissingTag
        ]
    );
    match &sink_b.snapshot()[..] {
        [Ev::User(u, m), Ev::Broadcast(_)] => assert!(u == "alice" && **m == msg),
        other => panic!("unexpected events: {other:?}"),
    }
    // The probes are sealed too: the subscriber connections stay up.
    assert!(a.is_connected() && b.is_connected());
    assert_eq!(a.metrics().probe_failures + b.metrics().probe_failures, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acl_user_with_a_password_works_and_a_wrong_password_fails_at_start() {
    let p = prefix();
    let channels = format!("&{p}*");
    let port = free_port();
    let args = [
        "--user",
        "default",
        "off",
        "--user",
        "herald",
        "on",
        ">s3cret-pass",
        "resetchannels",
        &channels,
        "+publish",
        "+subscribe",
        "+unsubscribe",
        "+ping",
        "+client|setname",
        "--user",
        "other",
        "on",
        ">other-pass",
        "resetchannels",
        "&other:*",
        "+publish",
        "+subscribe",
        "+ping",
        "+client|setname",
    ];
    let url = format!("redis://herald:s3cret-pass@127.0.0.1:{port}/");
    let _redis = PrivateRedis::start_on(port, &args).await;

    // Pool and subscriber connections both authenticate as the ACL user.
    let (a, _sink_a) = node(&url, &p).await;
    let (b, sink_b) = node(&url, &p).await;
    assert!(a.is_connected() && b.is_connected());
    assert_eq!(b.subscribe("alice").await, SubscribeOutcome::Confirmed);
    a.publish(vec![("alice".into(), read_msg(1))])
        .await
        .unwrap();
    assert_eq!(a.broadcast(broadcast_msg()).await.unwrap(), 2);
    assert!(
        sink_b
            .wait_for(WAIT, |_| sink_b.user_count("alice") == 1
                && sink_b.broadcasts() == 1)
            .await
    );
    assert!(a.ping().await.is_ok());

    // A wrong password, no credentials, or a user whose ACL has other channels: the start fails
    // at once, naming the refusal.
    let refused = [
        (
            format!("redis://herald:wrong@127.0.0.1:{port}/"),
            "WRONGPASS",
        ),
        (format!("redis://127.0.0.1:{port}/"), "NOAUTH"),
        (
            format!("redis://other:other-pass@127.0.0.1:{port}/"),
            "NoPerm",
        ),
    ];
    for (bad, why) in refused {
        let started = Instant::now();
        match Bus::start(config(&bad, &p), Arc::new(TestSink::default())).await {
            Err(e @ BusError::Refused(_)) => {
                let text = e.to_string();
                assert!(text.contains(why), "{text}");
                assert!(text.contains("user and password"), "{text}");
                assert!(
                    !text.contains("s3cret") && !text.contains("other-pass"),
                    "{text}"
                );
            }
            other => panic!("{why}: expected a refusal, got {other:?}"),
        }
        assert!(started.elapsed() < WAIT);
    }

    // Another client of the same Redis cannot put a frame on Herald's channels.
    let outsider = format!("redis://other:other-pass@127.0.0.1:{port}/");
    let err = publish_raw(
        &outsider,
        &format!("{p}user:alice"),
        &live_for("alice", 1).encode(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Some("NOPERM"), "{err}");
}
