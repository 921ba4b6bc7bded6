//! The cluster bus against a real Redis Cluster (`scripts/redis-cluster.sh up`; the seed list
//! in `HERALD_TEST_REDIS_CLUSTER`). Without that variable every test here returns at once.
//! They run one at a time (a process-wide lock, and the `redis-cluster` test group in
//! `.config/nextest.toml`), because one of them kills a master.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test harness: a panic is a failed test

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_bus::{Bus, BusConfig, SubscribeOutcome};
use herald_core::FanoutSink;
use herald_protocol::bus::{BusMessage, Reject};
use herald_protocol::Broadcast;
use herald_testkit::{cluster, eventually};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[derive(Default)]
struct Sink {
    /// user → versions received, in order.
    users: Mutex<HashMap<String, Vec<i64>>>,
    broadcasts: AtomicU64,
    resyncs: AtomicU64,
}

impl FanoutSink for Sink {
    fn user_event(&self, user_id: &str, msg: BusMessage) {
        let v = match msg {
            BusMessage::Read { version, .. } => version,
            _ => -1,
        };
        self.users
            .lock()
            .unwrap()
            .entry(user_id.to_owned())
            .or_default()
            .push(v);
    }
    fn broadcast(&self, _: Arc<Broadcast>) {
        self.broadcasts.fetch_add(1, Ordering::Relaxed);
    }
    fn resync_all(&self) {
        self.resyncs.fetch_add(1, Ordering::Relaxed);
    }
    fn rejected(&self, _: Reject, _: &str) {}
    fn revoked(&self, _: &str) {}
}

impl Sink {
    fn got(&self, user: &str, version: i64) -> bool {
        self.users
            .lock()
            .unwrap()
            .get(user)
            .is_some_and(|v| v.contains(&version))
    }
    fn count(&self, user: &str) -> usize {
        self.users.lock().unwrap().get(user).map_or(0, Vec::len)
    }
}

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

fn config(seeds: &[String], prefix: &str) -> BusConfig {
    BusConfig {
        cluster_nodes: seeds.to_vec(),
        prefix: prefix.to_owned(),
        node_id: uuid::Uuid::new_v4().simple().to_string(),
        probe_interval: Duration::from_millis(300),
        probe_timeout: Duration::from_millis(1500),
        ..BusConfig::default()
    }
}

async fn node(seeds: &[String], prefix: &str) -> (Bus, Arc<Sink>) {
    let sink = Arc::new(Sink::default());
    let bus = Bus::start(config(seeds, prefix), sink.clone())
        .await
        .unwrap();
    (bus, sink)
}

/// Waits for a healthy cluster, then starts two bus nodes on a fresh channel prefix.
async fn two_nodes(seeds: &[String]) -> (String, (Bus, Arc<Sink>), (Bus, Arc<Sink>)) {
    assert!(
        cluster::wait_healthy(seeds, Duration::from_secs(60)).await,
        "cluster healthy"
    );
    let prefix = format!("test:{}:", uuid::Uuid::new_v4().simple());
    let first = node(seeds, &prefix).await;
    let second = node(seeds, &prefix).await;
    (prefix, first, second)
}

fn users(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("u{i}-{}", uuid::Uuid::new_v4().simple()))
        .collect()
}

const WAIT: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_delivers_to_many_users_across_slots() {
    let Some(seeds) = cluster::seeds() else {
        return;
    };
    let _serial = SERIAL.lock().await;
    let (_, (a, sink_a), (b, sink_b)) = two_nodes(&seeds).await;
    assert!(a.is_connected() && b.is_connected());
    let users = users(300);
    for u in &users {
        assert_eq!(b.subscribe(u).await, SubscribeOutcome::Confirmed, "{u}");
    }
    assert_eq!(b.subscribed_users(), 300);
    // One batch from the other node: every user gets exactly its message.
    let items: Vec<(String, BusMessage)> = users.iter().map(|u| (u.clone(), read_msg(1))).collect();
    a.publish(items).await.unwrap();
    assert!(
        eventually(WAIT, || async { users.iter().all(|u| sink_b.got(u, 1)) }).await,
        "every user's message arrives"
    );
    // A broadcast reaches both nodes.
    assert!(a.broadcast(broadcast_msg()).await.unwrap() >= 2);
    assert!(
        eventually(WAIT, || async {
            sink_a.broadcasts.load(Ordering::Relaxed) == 1
                && sink_b.broadcasts.load(Ordering::Relaxed) == 1
        })
        .await
    );
    // Unsubscribed users get nothing more; the rest still do.
    for u in &users[..150] {
        b.unsubscribe(u);
    }
    assert!(eventually(WAIT, || async { b.subscribed_users() == 150 }).await);
    // The unsubscribes are applied in order before this subscribe is confirmed.
    let extra = format!("extra-{}", uuid::Uuid::new_v4().simple());
    assert_eq!(b.subscribe(&extra).await, SubscribeOutcome::Confirmed);
    let items: Vec<(String, BusMessage)> = users
        .iter()
        .chain(std::iter::once(&extra))
        .map(|u| (u.clone(), read_msg(2)))
        .collect();
    a.publish(items).await.unwrap();
    assert!(
        eventually(WAIT, || async {
            users[150..].iter().all(|u| sink_b.got(u, 2)) && sink_b.got(&extra, 2)
        })
        .await
    );
    for u in &users[..150] {
        assert!(!sink_b.got(u, 2), "{u} was unsubscribed");
        assert_eq!(sink_b.count(u), 1);
    }
    for u in &users[150..] {
        assert_eq!(sink_b.count(u), 2, "exactly once each: {u}");
    }
    assert!(a.ping().await.is_ok());
    assert_eq!(
        sink_b.resyncs.load(Ordering::Relaxed),
        0,
        "no trouble, no resync"
    );
    a.shutdown();
    b.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_failover_of_a_killed_master_resubscribes_and_resyncs() {
    let Some(seeds) = cluster::seeds() else {
        return;
    };
    let _serial = SERIAL.lock().await;
    let (_, (publisher, _), (sub, sink)) = two_nodes(&seeds).await;
    let users = users(200);
    for u in &users {
        assert_eq!(sub.subscribe(u).await, SubscribeOutcome::Confirmed);
    }

    // Publish continuously (one message per user per round) while a master dies.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let rounds = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let task = {
        let (publisher, users, stop, rounds, errors) = (
            publisher.clone(),
            users.clone(),
            stop.clone(),
            rounds.clone(),
            errors.clone(),
        );
        tokio::spawn(async move {
            let mut version = 100;
            while !stop.load(Ordering::Relaxed) {
                version += 1;
                let items = users
                    .iter()
                    .map(|u| (u.clone(), read_msg(version)))
                    .collect();
                if publisher.publish(items).await.is_err() {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                rounds.fetch_add(1, Ordering::Relaxed);
                tokio::task::yield_now().await;
            }
        })
    };
    assert!(eventually(WAIT, || async { rounds.load(Ordering::Relaxed) >= 5 }).await);

    let victim = cluster::masters(&seeds)[0].clone();
    let killed = cluster::kill(&victim);
    let replaced = eventually(Duration::from_secs(30), || async {
        killed.replaced(&seeds)
    })
    .await;
    let resynced = eventually(Duration::from_secs(30), || async {
        sink.resyncs.load(Ordering::Relaxed) >= 1 && sub.is_connected()
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    task.await.unwrap();
    // Whatever happens below, bring the node back so the cluster is whole for later tests.
    killed.restart();
    assert!(replaced, "a replica took over {victim}");
    assert!(resynced, "the bus re-subscribed and signalled a resync");
    assert!(sub.metrics().reconnects >= 1);

    // Every channel is subscribed again at its new owner: a fresh message reaches every user.
    let items: Vec<(String, BusMessage)> = users
        .iter()
        .map(|u| (u.clone(), read_msg(1_000_000)))
        .collect();
    publisher.publish(items).await.unwrap();
    assert!(
        eventually(WAIT, || async {
            users.iter().all(|u| sink.got(u, 1_000_000))
        })
        .await,
        "every user receives after the failover"
    );
    assert!(
        cluster::wait_healthy(&seeds, Duration::from_secs(60)).await,
        "the killed node rejoined and the cluster is healthy again"
    );
    eprintln!(
        "failover: {} publish rounds, {} failed publishes (retried within 3 s, then left to the resync)",
        rounds.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed)
    );
    publisher.shutdown();
    sub.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_slot_migration_resubscribes_at_the_new_owner() {
    let Some(seeds) = cluster::seeds() else {
        return;
    };
    let _serial = SERIAL.lock().await;
    let (prefix, (publisher, _), (sub, sink)) = two_nodes(&seeds).await;
    let user = format!("mover-{}", uuid::Uuid::new_v4().simple());
    assert_eq!(sub.subscribe(&user).await, SubscribeOutcome::Confirmed);
    let slot = cluster::keyslot(&seeds, &format!("{prefix}user:{user}"));
    let (from, _) = cluster::owner(&seeds, slot);
    let to = cluster::masters(&seeds)
        .into_iter()
        .find(|m| *m != from)
        .expect("another master");

    // The server unsubscribes the channel on the old owner; the bus refreshes the slot map,
    // subscribes at the new owner and resyncs.
    cluster::move_slot(&seeds, slot, &to);
    assert!(
        eventually(WAIT, || async {
            sink.resyncs.load(Ordering::Relaxed) >= 1 && sub.is_connected()
        })
        .await,
        "the bus re-subscribed after the slot moved"
    );
    assert!(
        eventually(WAIT, || async { cluster::owner(&seeds, slot).0 == to }).await,
        "every master agrees on the new owner"
    );
    publisher
        .publish(vec![(user.clone(), read_msg(7))])
        .await
        .unwrap();
    assert!(
        eventually(WAIT, || async { sink.got(&user, 7) }).await,
        "delivered through the new owner"
    );

    // And back, so the layout is as the script made it.
    cluster::move_slot(&seeds, slot, &from);
    assert!(
        eventually(WAIT, || async {
            sink.resyncs.load(Ordering::Relaxed) >= 2 && sub.is_connected()
        })
        .await
    );
    publisher
        .publish(vec![(user.clone(), read_msg(8))])
        .await
        .unwrap();
    assert!(eventually(WAIT, || async { sink.got(&user, 8) }).await);
    assert!(cluster::wait_healthy(&seeds, Duration::from_secs(30)).await);
    publisher.shutdown();
    sub.shutdown();
}

#[tokio::test]
async fn cluster_seeds_must_be_host_and_port() {
    for bad in [
        "redis://127.0.0.1:7001",
        "127.0.0.1",
        "user:pw@127.0.0.1:7001",
        "h:0",
    ] {
        let cfg = BusConfig {
            cluster_nodes: vec![bad.to_owned()],
            ..BusConfig::default()
        };
        assert!(
            Bus::start(cfg, Arc::new(Sink::default())).await.is_err(),
            "{bad}"
        );
    }
    let both = BusConfig {
        cluster_nodes: vec!["127.0.0.1:7001".to_owned()],
        redis_url: Some("redis://127.0.0.1:6379".to_owned()),
        ..BusConfig::default()
    };
    assert!(Bus::start(both, Arc::new(Sink::default())).await.is_err());
}
