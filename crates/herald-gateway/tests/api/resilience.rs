//! PostgreSQL is the source of truth: whatever the fast path (Redis) loses is caught up.

use std::time::Duration;

use crate::helpers::*;

async fn numsub(redis_url: &str, channel: &str) -> i64 {
    let client = redis::Client::open(redis_url).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let v: Vec<redis::Value> = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(channel)
        .query_async(&mut c)
        .await
        .unwrap();
    match v.get(1) {
        Some(redis::Value::Int(n)) => *n,
        other => panic!("unexpected NUMSUB reply {other:?}"),
    }
}

async fn wait_numsub(redis_url: &str, channel: &str, want: i64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if numsub(redis_url, channel).await == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "NUMSUB {channel} never reached {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_mid_test_live_delivery_resumes_and_the_gap_is_caught_up() {
    let mut redis = PrivateRedis::start().await;
    let env = TestEnv::with_redis(Some(redis.url())).await;
    let a = env.node().await;
    let b = env.node().await;
    let mut ws = a.connect("alice").await;
    ws.handshake().await;
    b.publish_one("alice", "1").await;
    b.publish_one("alice", "2").await;
    assert_seqs(&ws.notifications_until(2).await, 1, 2);

    redis.kill();
    // The node stays ready (degraded): Redis is only the fast path.
    let (status, body) = a.ready_until("degraded").await;
    assert_eq!((status, body["redis"].as_bool()), (200, Some(false)));
    // Publishes still succeed: PostgreSQL commits; only the fan-out fails.
    for i in 3..=7 {
        assert_eq!(b.publish_one("alice", &format!("{i}")).await, i);
    }
    redis.restart().await;
    // The same socket, never reconnected, gets the gap exactly once...
    assert_seqs(&ws.notifications_until(7).await, 3, 7);
    // ...the subscription is back, and live delivery works again.
    wait_numsub(&redis.url(), &format!("{}user:alice", env.prefix), 1).await;
    b.publish_one("alice", "8").await;
    assert_seqs(&ws.notifications_until(8).await, 8, 8);
    assert!(ws.next_within(Duration::from_millis(300)).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_pubsub_connection_is_resubscribed_without_clients_reconnecting() {
    let redis = PrivateRedis::start().await;
    let env = TestEnv::with_redis(Some(redis.url())).await;
    let a = env.node().await;
    let b = env.node().await;
    let mut ws = a.connect("bob").await;
    ws.handshake().await;
    let client = redis::Client::open(redis.url()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(
        killed >= 2,
        "expected both nodes' subscriber connections, killed {killed}"
    );
    b.publish_one("bob", "during").await;
    wait_numsub(&redis.url(), &format!("{}user:bob", env.prefix), 1).await;
    b.publish_one("bob", "after").await;
    assert_seqs(&ws.notifications_until(2).await, 1, 2);
}

/// A notification committed but never published (as after a crash between the commit and
/// the Redis publish) still reaches the online client, within the reconcile interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_but_never_fanned_out_reaches_the_online_client() {
    let env = TestEnv::new().await;
    let a = env.node().await;
    let mut ws = a.connect("carol").await;
    ws.handshake().await;
    let sql = env.sql().await;
    sql.batch_execute(
        "INSERT INTO user_state (user_id, last_seq, unread_count, version) VALUES ('carol', 1, 1, 1);
         INSERT INTO notifications (user_id, seq, id, type, title, body)
           VALUES ('carol', 1, gen_random_uuid(), 'system.alert', 'silent', '');",
    )
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let got = ws.notifications_until(1).await;
    assert_eq!(got[0].title, "silent");
    // Reconcile runs every second in tests.
    assert!(started.elapsed() < Duration::from_secs(5));
}
