//! Delivery on a Redis Cluster while a master dies (`HERALD_TEST_REDIS_CLUSTER`, the seeds of
//! `scripts/redis-cluster.sh`; without it the test returns at once). It SIGKILLs a master:
//! run it alone (`scripts/redis-cluster-test.sh` does; nextest's `redis-cluster` group keeps
//! it apart from the bus crate's cluster tests).

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use herald_protocol::ws::ServerMessage;
use herald_testkit::{cluster, eventually};

use crate::helpers::*;

/// Notifications per user.
const PER_USER: i64 = 20;
const USERS: usize = 24;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_failover_during_publishing_loses_and_repeats_nothing() {
    let Some(seeds) = cluster::seeds() else {
        return;
    };
    assert!(
        cluster::wait_healthy(&seeds, Duration::from_secs(60)).await,
        "cluster healthy"
    );
    let env = TestEnv::with_cluster(seeds.join(",")).await;
    let a = env.node().await;
    let b = env.node().await;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let users: Vec<String> = (0..USERS).map(|i| format!("fo{i}-{}", &run[..8])).collect();
    // Every user has a socket on each node: its messages cross the cluster from node a to b,
    // and come back to a itself.
    let mut sockets = Vec::new();
    for u in &users {
        for node in [&a, &b] {
            let mut ws = node.connect(u).await;
            let (_, caught_up) = ws.handshake().await;
            assert!(caught_up.is_empty());
            sockets.push((u.clone(), ws));
        }
    }

    let published = Arc::new(AtomicI64::new(0));
    let publisher = {
        let (base, http, users, published) = (
            a.base.clone(),
            a.http.clone(),
            users.clone(),
            published.clone(),
        );
        tokio::spawn(async move {
            for i in 1..=PER_USER {
                for u in &users {
                    let r = http
                        .post(format!("{base}/v1/notifications"))
                        .bearer_auth(SERVICE_KEY)
                        .json(&notification_body(u, &format!("n{i}")))
                        .send()
                        .await
                        .expect("publish");
                    assert_eq!(r.status(), 201, "publish {u} #{i}");
                    published.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let total = PER_USER * USERS as i64;
    assert!(
        eventually(WAIT, || async {
            published.load(Ordering::Relaxed) >= total / 4
        })
        .await,
        "publishing started"
    );
    let victim = cluster::masters(&seeds)[0].clone();
    let killed = cluster::kill(&victim);
    let replaced = eventually(Duration::from_secs(30), || async {
        killed.replaced(&seeds)
    })
    .await;
    let done = tokio::time::timeout(Duration::from_secs(60), publisher).await;
    killed.restart();
    assert!(replaced, "a replica took over {victim}");
    done.expect("publishing finished in time")
        .expect("publisher");

    // Every socket gets every seq of its user exactly once, in order.
    let (mut lost, mut duplicated, mut out_of_order) = (0i64, 0i64, 0i64);
    for (user, ws) in &mut sockets {
        let mut seqs: Vec<i64> = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while seqs.iter().max().copied().unwrap_or(0) < PER_USER
            && tokio::time::Instant::now() < deadline
        {
            match ws.next_within(Duration::from_secs(1)).await {
                Some(Got::Event(ServerMessage::Notification { notification, .. })) => {
                    seqs.push(notification.seq)
                }
                Some(Got::Event(ServerMessage::Batch { notifications, .. })) => {
                    seqs.extend(notifications.iter().map(|n| n.seq))
                }
                Some(Got::Closed(code, reason)) => panic!("{user}: closed {code} {reason}"),
                _ => {}
            }
        }
        // Nothing more may follow (a duplicate would arrive right behind).
        while let Some(got) = ws.next_within(Duration::from_millis(300)).await {
            match got {
                Got::Event(ServerMessage::Notification { notification, .. }) => {
                    seqs.push(notification.seq)
                }
                Got::Event(ServerMessage::Batch { notifications, .. }) => {
                    seqs.extend(notifications.iter().map(|n| n.seq))
                }
                _ => {}
            }
        }
        let distinct: HashSet<i64> = seqs.iter().copied().collect();
        lost += (1..=PER_USER).filter(|s| !distinct.contains(s)).count() as i64;
        duplicated += seqs.len() as i64 - distinct.len() as i64;
        out_of_order += seqs.windows(2).filter(|w| w[1] <= w[0]).count() as i64;
    }
    let per_node: BTreeMap<&str, i64> = [
        ("a", a.metric("herald_bus_reconnects_total").await),
        ("b", b.metric("herald_bus_reconnects_total").await),
    ]
    .into_iter()
    .collect();
    eprintln!(
        "cluster failover ({victim} SIGKILLed while publishing): {total} notifications to {} sockets: lost={lost} duplicated={duplicated} out_of_order={out_of_order}; bus reconnects per node {per_node:?}",
        sockets.len()
    );
    assert_eq!((lost, duplicated, out_of_order), (0, 0, 0));
    assert!(
        cluster::wait_healthy(&seeds, Duration::from_secs(60)).await,
        "the killed node rejoined"
    );
}
