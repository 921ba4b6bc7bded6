//! Integration tests against a real PostgreSQL. Each test gets its own database.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test harness: a panic is a failed test

use std::collections::HashSet;

use herald_core::NewNotification;
use herald_protocol::http::{PublishResponse, PublishedItem};
use herald_store::{sql, Committed, PublishOutcome, Store, StoreConfig, StoreError, UserState};
use uuid::Uuid;

use herald_testkit::connect as admin_client;

/// A fresh database with no schema, dropped (best effort) with the value.
struct EmptyDb(herald_testkit::Database);

impl std::ops::Deref for EmptyDb {
    type Target = herald_testkit::Database;
    fn deref(&self) -> &herald_testkit::Database {
        &self.0
    }
}

impl EmptyDb {
    async fn new() -> EmptyDb {
        EmptyDb(herald_testkit::Database::create("herald_store_test").await)
    }

    fn config(&self, pool_size: usize) -> StoreConfig {
        StoreConfig {
            url: self.url.clone(),
            pool_size,
            statement_timeout_ms: 30_000,
            connect_timeout_ms: 5_000,
        }
    }
}

/// A migrated database and a store on it.
struct TestDb {
    db: EmptyDb,
    store: Store,
}

impl TestDb {
    async fn new() -> TestDb {
        let db = EmptyDb::new().await;
        let store = Store::connect(&db.config(20)).await.expect("connect store");
        let applied = store.migrate().await.expect("migrate");
        assert_eq!(applied, all_versions());
        TestDb { db, store }
    }

    async fn client(&self) -> tokio_postgres::Client {
        admin_client(&self.db.url).await
    }
}

fn all_versions() -> Vec<i32> {
    herald_store::MIGRATIONS.iter().map(|m| m.0).collect()
}

fn new_notification(recipients: &[&str]) -> NewNotification {
    let mut recipients: Vec<String> = recipients.iter().map(|s| s.to_string()).collect();
    recipients.sort();
    recipients.dedup();
    NewNotification {
        recipients,
        kind: "comment.created".into(),
        title: "Hello".into(),
        body: "World".into(),
        link: Some("/posts/1".into()),
        avatar_url: None,
        data: Some(serde_json::json!({"post": 1, "nested": {"a": [1, 2]}})),
        idempotency_key: None,
        fallback: None,
    }
}

/// The gateway's publish response body, built from what the store committed.
fn response(c: &Committed) -> PublishResponse {
    PublishResponse {
        notifications: c
            .items
            .iter()
            .map(|p| PublishedItem {
                user_id: p.notification.user_id.clone(),
                id: p.notification.id,
                seq: p.notification.seq,
            })
            .collect(),
        created_at: c.created_at,
    }
}

/// The idempotency record the gateway stores: its response body.
fn record(c: &Committed) -> serde_json::Result<serde_json::Value> {
    serde_json::to_value(response(c))
}

/// A replayed record, read back as the response it was built from.
fn replayed(r: serde_json::Value) -> PublishResponse {
    serde_json::from_value(r).expect("a stored response")
}

fn created(outcome: PublishOutcome) -> (PublishResponse, Vec<herald_store::Published>) {
    match outcome {
        PublishOutcome::Created(c) => (response(&c), c.items),
        PublishOutcome::Replayed(_) => panic!("expected Created, got Replayed"),
    }
}

async fn count(
    client: &tokio_postgres::Client,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> i64 {
    client.query_one(sql, params).await.expect(sql).get(0)
}

#[tokio::test]
async fn migrate_is_idempotent() {
    let db = TestDb::new().await;
    assert!(db.store.migrate().await.unwrap().is_empty());
    // Two concurrent migrators on an up-to-date schema are fine too.
    let (a, b) = tokio::join!(db.store.migrate(), db.store.migrate());
    assert!(a.unwrap().is_empty() && b.unwrap().is_empty());
    let c = db.client().await;
    assert_eq!(
        count(&c, "SELECT count(*) FROM schema_migrations", &[]).await,
        herald_store::MIGRATIONS.len() as i64
    );
    db.store.ping().await.unwrap();
}

#[tokio::test]
async fn concurrent_first_migrations_apply_once() {
    // Fresh database, two stores migrating at once.
    let db = EmptyDb::new().await;
    let cfg = db.config(2);
    let s1 = Store::connect(&cfg).await.unwrap();
    let s2 = Store::connect(&cfg).await.unwrap();
    let (a, b) = tokio::join!(s1.migrate(), s2.migrate());
    let mut all = a.unwrap();
    all.extend(b.unwrap());
    all.sort_unstable();
    assert_eq!(all, all_versions());
}

#[tokio::test]
async fn connect_to_dead_server_is_unavailable_and_fast() {
    let started = std::time::Instant::now();
    let err = Store::connect(&StoreConfig {
        url: "postgres://postgres@127.0.0.1:1/postgres".into(),
        pool_size: 2,
        statement_timeout_ms: 1_000,
        connect_timeout_ms: 500,
    })
    .await
    .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
}

#[tokio::test]
async fn publish_to_one_recipient() {
    let db = TestDb::new().await;
    let n = new_notification(&["alice"]);
    let (response, items) = created(db.store.publish(&n, &record).await.unwrap());
    assert_eq!(response.notifications.len(), 1);
    assert_eq!(response.notifications[0].user_id, "alice");
    assert_eq!(response.notifications[0].seq, 1);
    let item = &items[0];
    assert_eq!(item.unread_count, 1);
    assert_eq!(item.version, 1);
    assert_eq!(item.notification.kind, "comment.created");
    assert_eq!(item.notification.title, "Hello");
    assert_eq!(item.notification.body, "World");
    assert_eq!(item.notification.link.as_deref(), Some("/posts/1"));
    assert_eq!(item.notification.avatar_url, None);
    assert_eq!(item.notification.data, n.data);
    assert_eq!(item.notification.created_at, response.created_at);
    assert!(item.notification.read_at.is_none() && item.notification.delivered_at.is_none());
    // Time-ordered ids (UUIDv7), so the id index grows at its right edge.
    assert_eq!(item.notification.id.get_version_num(), 7);

    let stored = db
        .store
        .get("alice", item.notification.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored, item.notification);

    let (_, items) = created(db.store.publish(&n, &record).await.unwrap());
    assert_eq!(items[0].notification.seq, 2);
    assert_eq!(items[0].unread_count, 2);
    assert_eq!(items[0].version, 2);
    assert_eq!(
        db.store.user_state("alice").await.unwrap(),
        UserState {
            latest_seq: 2,
            delivered_seq: 0,
            unread_count: 2,
            version: 2,
            seen_seq: 0,
        }
    );
    assert_eq!(
        db.store.user_state("nobody").await.unwrap(),
        UserState::default()
    );
}

#[tokio::test]
async fn publish_to_a_thousand_recipients() {
    let db = TestDb::new().await;
    // One prior notification for some users, so seqs differ across the batch.
    let early: Vec<String> = (0..1000)
        .step_by(3)
        .map(|i| format!("user-{i:04}"))
        .collect();
    let early_refs: Vec<&str> = early.iter().map(String::as_str).collect();
    created(
        db.store
            .publish(&new_notification(&early_refs), &record)
            .await
            .unwrap(),
    );

    let all: Vec<String> = (0..1000).map(|i| format!("user-{i:04}")).collect();
    let all_refs: Vec<&str> = all.iter().map(String::as_str).collect();
    let n = new_notification(&all_refs);
    let (response, items) = created(db.store.publish(&n, &record).await.unwrap());
    assert_eq!(response.notifications.len(), 1000);
    assert_eq!(items.len(), 1000);
    let ids: HashSet<Uuid> = response.notifications.iter().map(|i| i.id).collect();
    assert_eq!(ids.len(), 1000);
    for (i, (item, published)) in response.notifications.iter().zip(&items).enumerate() {
        assert_eq!(item.user_id, n.recipients[i], "response in recipient order");
        let expected = if i % 3 == 0 { 2 } else { 1 };
        assert_eq!(item.seq, expected, "{}", item.user_id);
        assert_eq!(published.notification.id, item.id);
        assert_eq!(published.notification.seq, item.seq);
        assert_eq!(published.unread_count, expected);
        assert_eq!(published.version, expected);
        assert_eq!(published.notification.created_at, response.created_at);
    }
    let c = db.client().await;
    assert_eq!(
        count(&c, "SELECT count(*) FROM notifications", &[]).await,
        1000 + early.len() as i64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_publishers_get_gapless_seqs() {
    let db = TestDb::new().await;
    let mut tasks = Vec::new();
    for t in 0..16 {
        let store = db.store.clone();
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for _ in 0..10 {
                // Overlapping batches in both "directions" exercise the lock order too.
                let other = format!("other-{}", t % 4);
                let n = new_notification(&["shared", &other]);
                let (response, _) = created(store.publish(&n, &record).await.unwrap());
                let item = response
                    .notifications
                    .iter()
                    .find(|i| i.user_id == "shared")
                    .unwrap();
                seqs.push(item.seq);
            }
            seqs
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.extend(t.await.unwrap());
    }
    seqs.sort();
    assert_eq!(seqs, (1..=160).collect::<Vec<i64>>());
    let c = db.client().await;
    let stored: Vec<i64> = c
        .query(
            "SELECT seq FROM notifications WHERE user_id = 'shared' ORDER BY seq",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(stored, (1..=160).collect::<Vec<i64>>());
    let state = db.store.user_state("shared").await.unwrap();
    assert_eq!(
        (state.latest_seq, state.unread_count, state.version),
        (160, 160, 160)
    );
}

#[tokio::test]
async fn idempotent_replay_returns_the_same_response() {
    let db = TestDb::new().await;
    let mut n = new_notification(&["alice", "bob"]);
    n.idempotency_key = Some("order-42".into());
    let (first, _) = created(db.store.publish(&n, &record).await.unwrap());
    match db.store.publish(&n, &record).await.unwrap() {
        PublishOutcome::Replayed(r) => assert_eq!(replayed(r), first),
        other => panic!("expected replay, got {other:?}"),
    }
    // Same content with keys in another order in `data`: still the same request.
    let mut reordered = n.clone();
    reordered.data = Some(serde_json::json!({"nested": {"a": [1, 2]}, "post": 1}));
    assert!(matches!(
        db.store.publish(&reordered, &record).await.unwrap(),
        PublishOutcome::Replayed(_)
    ));

    let c = db.client().await;
    assert_eq!(
        count(&c, "SELECT count(*) FROM notifications", &[]).await,
        2
    );
    assert_eq!(db.store.user_state("alice").await.unwrap().latest_seq, 1);

    // Same key, different body: refused, nothing created.
    let mut different = n.clone();
    different.title = "Other".into();
    assert!(matches!(
        db.store.publish(&different, &record).await,
        Err(StoreError::IdempotencyKeyReused)
    ));
    let mut different_recipients = n.clone();
    different_recipients.recipients = vec!["alice".into()];
    assert!(matches!(
        db.store.publish(&different_recipients, &record).await,
        Err(StoreError::IdempotencyKeyReused)
    ));
    assert_eq!(
        count(&c, "SELECT count(*) FROM notifications", &[]).await,
        2
    );
    assert_eq!(db.store.user_state("alice").await.unwrap().version, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_same_key_creates_once() {
    let db = TestDb::new().await;
    let mut n = new_notification(&["alice", "bob"]);
    n.idempotency_key = Some("race".into());
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = db.store.clone();
        let n = n.clone();
        tasks.push(tokio::spawn(async move {
            store.publish(&n, &record).await.unwrap()
        }));
    }
    let mut created_responses = Vec::new();
    let mut replays = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            PublishOutcome::Created(c) => created_responses.push(response(&c)),
            PublishOutcome::Replayed(r) => replays.push(replayed(r)),
        }
    }
    assert_eq!(created_responses.len(), 1);
    assert!(replays.iter().all(|r| r == &created_responses[0]));
    let c = db.client().await;
    assert_eq!(
        count(&c, "SELECT count(*) FROM notifications", &[]).await,
        2
    );
}

#[tokio::test]
async fn reading_pages() {
    let db = TestDb::new().await;
    for _ in 0..10 {
        db.store
            .publish(&new_notification(&["alice", "bob"]), &record)
            .await
            .unwrap();
    }
    let after = db.store.after_seq("alice", 3, 4).await.unwrap();
    assert_eq!(
        after.iter().map(|n| n.seq).collect::<Vec<_>>(),
        vec![4, 5, 6, 7]
    );
    assert!(after.iter().all(|n| n.user_id == "alice"));
    assert!(db.store.after_seq("alice", 10, 5).await.unwrap().is_empty());
    assert!(db.store.after_seq("alice", 0, -1).await.unwrap().is_empty());
    assert!(db.store.after_seq("nobody", 0, 5).await.unwrap().is_empty());

    // Many readers in one statement: each gets its own page, in the readers' order, even
    // when a user appears twice or has nothing to read.
    let pages = db
        .store
        .after_seqs(&[
            ("bob", 8, 10),
            ("nobody", 0, 10),
            ("alice", 0, 3),
            ("alice", 9, 10),
            ("bob", 0, -1),
        ])
        .await
        .unwrap();
    let seqs: Vec<Vec<(String, i64)>> = pages
        .iter()
        .map(|p| p.iter().map(|n| (n.user_id.clone(), n.seq)).collect())
        .collect();
    let page = |u: &str, s: &[i64]| s.iter().map(|&s| (u.to_owned(), s)).collect::<Vec<_>>();
    assert_eq!(
        seqs,
        vec![
            page("bob", &[9, 10]),
            vec![],
            page("alice", &[1, 2, 3]),
            page("alice", &[10]),
            vec![],
        ]
    );
    let no_readers: &[(&str, i64, i64)] = &[];
    assert!(db.store.after_seqs(no_readers).await.unwrap().is_empty());

    let first = db.store.list("alice", None, 4, false).await.unwrap();
    assert_eq!(
        first.iter().map(|n| n.seq).collect::<Vec<_>>(),
        vec![10, 9, 8, 7]
    );
    let next = db.store.list("alice", Some(7), 4, false).await.unwrap();
    assert_eq!(
        next.iter().map(|n| n.seq).collect::<Vec<_>>(),
        vec![6, 5, 4, 3]
    );
    let last = db.store.list("alice", Some(3), 4, false).await.unwrap();
    assert_eq!(last.iter().map(|n| n.seq).collect::<Vec<_>>(), vec![2, 1]);

    // Mark 10, 8, 6 read; unread pages skip them.
    for seq in [10, 8, 6] {
        let id = first.iter().chain(&next).find(|n| n.seq == seq).unwrap().id;
        assert!(
            db.store
                .mark_read("alice", id)
                .await
                .unwrap()
                .unwrap()
                .changed
        );
    }
    let unread = db.store.list("alice", None, 3, true).await.unwrap();
    assert_eq!(
        unread.iter().map(|n| n.seq).collect::<Vec<_>>(),
        vec![9, 7, 5]
    );
    let unread = db.store.list("alice", Some(5), 10, true).await.unwrap();
    assert_eq!(
        unread.iter().map(|n| n.seq).collect::<Vec<_>>(),
        vec![4, 3, 2, 1]
    );
    assert_eq!(db.store.user_state("alice").await.unwrap().unread_count, 7);
    assert_eq!(db.store.user_state("bob").await.unwrap().unread_count, 10);
}

#[tokio::test]
async fn other_users_notifications_are_invisible() {
    let db = TestDb::new().await;
    let (_, items) = created(
        db.store
            .publish(&new_notification(&["alice"]), &record)
            .await
            .unwrap(),
    );
    let id = items[0].notification.id;
    db.store
        .publish(&new_notification(&["bob"]), &record)
        .await
        .unwrap();
    let before = db.store.user_state("alice").await.unwrap();

    assert!(db.store.get("bob", id).await.unwrap().is_none());
    assert!(db.store.mark_read("bob", id).await.unwrap().is_none());
    assert!(db.store.mark_read("mallory", id).await.unwrap().is_none());
    assert!(db
        .store
        .get("alice", Uuid::new_v4())
        .await
        .unwrap()
        .is_none());
    assert!(db
        .store
        .mark_read("alice", Uuid::new_v4())
        .await
        .unwrap()
        .is_none());

    assert!(db
        .store
        .get("alice", id)
        .await
        .unwrap()
        .unwrap()
        .read_at
        .is_none());
    assert_eq!(db.store.user_state("alice").await.unwrap(), before);
    assert_eq!(db.store.user_state("bob").await.unwrap().unread_count, 1);
}

#[tokio::test]
async fn mark_read_is_idempotent() {
    let db = TestDb::new().await;
    let (_, items) = created(
        db.store
            .publish(&new_notification(&["alice"]), &record)
            .await
            .unwrap(),
    );
    db.store
        .publish(&new_notification(&["alice"]), &record)
        .await
        .unwrap();
    let id = items[0].notification.id;

    let first = db.store.mark_read("alice", id).await.unwrap().unwrap();
    assert!(first.changed);
    assert_eq!(
        (first.id, first.seq, first.unread_count, first.version),
        (id, 1, 1, 3)
    );

    let second = db.store.mark_read("alice", id).await.unwrap().unwrap();
    assert!(!second.changed);
    assert_eq!(second.read_at, first.read_at);
    assert_eq!((second.unread_count, second.version), (1, 3));
    let stored = db.store.get("alice", id).await.unwrap().unwrap();
    assert_eq!(stored.read_at, Some(first.read_at));
}

#[tokio::test]
async fn mark_all_read_respects_the_watermark() {
    let db = TestDb::new().await;
    for _ in 0..5 {
        db.store
            .publish(&new_notification(&["alice"]), &record)
            .await
            .unwrap();
    }
    let r = db.store.mark_all_read("alice", Some(3)).await.unwrap();
    assert_eq!(
        (r.marked, r.up_to_seq, r.unread_count, r.version),
        (3, 3, 2, 6)
    );
    let unread = db.store.list("alice", None, 10, true).await.unwrap();
    assert_eq!(unread.iter().map(|n| n.seq).collect::<Vec<_>>(), vec![5, 4]);
    let read = db.store.after_seq("alice", 0, 3).await.unwrap();
    assert!(read.iter().all(|n| n.read_at == Some(r.read_at)));

    // Nothing more below the watermark: no change, no version bump.
    let again = db.store.mark_all_read("alice", Some(3)).await.unwrap();
    assert_eq!((again.marked, again.unread_count, again.version), (0, 2, 6));
    // Negative watermark: harmless.
    let neg = db.store.mark_all_read("alice", Some(-5)).await.unwrap();
    assert_eq!((neg.marked, neg.unread_count), (0, 2));

    // Without up_to_seq: everything up to the latest seq at the call.
    let all = db.store.mark_all_read("alice", None).await.unwrap();
    assert_eq!(
        (all.marked, all.up_to_seq, all.unread_count, all.version),
        (2, 5, 0, 7)
    );
    db.store
        .publish(&new_notification(&["alice"]), &record)
        .await
        .unwrap();
    assert_eq!(db.store.user_state("alice").await.unwrap().unread_count, 1);

    let unknown = db.store.mark_all_read("nobody", None).await.unwrap();
    assert_eq!(
        (unknown.marked, unknown.up_to_seq, unknown.unread_count),
        (0, 0, 0)
    );
    assert_eq!(
        db.store.user_state("nobody").await.unwrap(),
        UserState::default()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_publish_and_mark_read_keep_the_counter_exact() {
    let db = TestDb::new().await;
    let mut tasks = Vec::new();
    for t in 0..8 {
        let store = db.store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                let recipients: &[&str] = if (t + i) % 2 == 0 {
                    &["hot"]
                } else {
                    &["cold", "hot"]
                };
                store
                    .publish(&new_notification(recipients), &record)
                    .await
                    .unwrap();
            }
        }));
    }
    for t in 0..8 {
        let store = db.store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                if t == 0 && i % 8 == 7 {
                    let latest = store.user_state("hot").await.unwrap().latest_seq;
                    store.mark_all_read("hot", Some(latest / 2)).await.unwrap();
                    continue;
                }
                let page = store.list("hot", None, 5, true).await.unwrap();
                // Several markers race for the same rows: only one may count each.
                if let Some(n) = page.get(i % 3) {
                    store.mark_read("hot", n.id).await.unwrap().unwrap();
                }
            }
            if t == 1 {
                store.mark_all_read("hot", None).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let c = db.client().await;
    for user in ["hot", "cold"] {
        let actual = count(
            &c,
            "SELECT count(*) FROM notifications WHERE user_id = $1 AND read_at IS NULL",
            &[&user],
        )
        .await;
        let state = db.store.user_state(user).await.unwrap();
        assert_eq!(state.unread_count, actual, "{user}");
        let total = count(
            &c,
            "SELECT count(*) FROM notifications WHERE user_id = $1",
            &[&user],
        )
        .await;
        assert_eq!(state.latest_seq, total, "{user}");
    }
    assert_eq!(db.store.user_state("hot").await.unwrap().latest_seq, 200);
}

#[tokio::test]
async fn mark_delivered_and_users_behind() {
    let db = TestDb::new().await;
    for _ in 0..4 {
        db.store
            .publish(&new_notification(&["alice", "bob"]), &record)
            .await
            .unwrap();
    }
    db.store
        .mark_delivered(&[
            ("alice".into(), 2),
            ("bob".into(), 1),
            ("bob".into(), 3),
            ("nobody".into(), 7),
        ])
        .await
        .unwrap();
    let alice = db.store.after_seq("alice", 0, 10).await.unwrap();
    assert_eq!(
        alice
            .iter()
            .map(|n| n.delivered_at.is_some())
            .collect::<Vec<_>>(),
        vec![true, true, false, false]
    );
    let bob = db.store.after_seq("bob", 0, 10).await.unwrap();
    assert_eq!(
        bob.iter()
            .map(|n| n.delivered_at.is_some())
            .collect::<Vec<_>>(),
        vec![true, true, true, false]
    );
    assert_eq!(db.store.user_state("alice").await.unwrap().delivered_seq, 2);
    assert_eq!(db.store.user_state("bob").await.unwrap().delivered_seq, 3);

    // Lower marks never move delivered_seq back or touch delivered_at again.
    let stamp = alice[0].delivered_at;
    db.store
        .mark_delivered(&[("alice".into(), 1)])
        .await
        .unwrap();
    db.store.mark_delivered(&[]).await.unwrap();
    assert_eq!(db.store.user_state("alice").await.unwrap().delivered_seq, 2);
    assert_eq!(
        db.store
            .get("alice", alice[0].id)
            .await
            .unwrap()
            .unwrap()
            .delivered_at,
        stamp
    );
    // Beyond last_seq: capped.
    db.store
        .mark_delivered(&[("alice".into(), 99)])
        .await
        .unwrap();
    assert_eq!(db.store.user_state("alice").await.unwrap().delivered_seq, 4);
    let after = db.store.after_seq("alice", 0, 10).await.unwrap();
    let stamps: Vec<_> = after.iter().map(|n| n.delivered_at).collect();
    assert!(stamps.iter().all(|s| s.is_some()), "{stamps:?}");
    // Rows 1-2 keep the first mark's time; rows 3-4 took the later one.
    assert_eq!((stamps[0], stamps[1]), (stamp, stamp));
    assert_eq!(stamps[2], stamps[3]);
    assert!(stamps[2] > stamp, "{stamps:?}");
    let c = db.client().await;
    assert_eq!(
        count(
            &c,
            "SELECT count(*) FROM delivery_marks WHERE user_id = 'alice'",
            &[]
        )
        .await,
        2,
        "one mark per flush that raised delivered_seq"
    );

    // Reconcile: only users whose last_seq (4 each) is ahead of what was delivered.
    let mut behind = db
        .store
        .users_behind(&[("alice", 4), ("bob", 1), ("nobody", 0), ("carol", 9)])
        .await
        .unwrap();
    behind.sort();
    assert_eq!(behind, vec![("bob".to_string(), 4)]);
    let mut behind = db
        .store
        .users_behind(&[("alice", 0), ("bob", 3)])
        .await
        .unwrap();
    behind.sort();
    assert_eq!(
        behind,
        vec![("alice".to_string(), 4), ("bob".to_string(), 4)]
    );
    assert!(db.store.users_behind::<&str>(&[]).await.unwrap().is_empty());

    // Batched counters: one statement for many users; unknown users are absent.
    let states = db
        .store
        .user_states(&["alice", "bob", "nobody"])
        .await
        .unwrap();
    assert_eq!(states.len(), 2);
    assert_eq!(states["alice"], db.store.user_state("alice").await.unwrap());
    assert_eq!(states["bob"].delivered_seq, 3);
    assert_eq!(states["bob"].latest_seq, 4);
    assert!(db.store.user_states(&[]).await.unwrap().is_empty());
}

#[tokio::test]
async fn hot_queries_use_indexes_for_a_large_user() {
    let db = TestDb::new().await;
    let c = db.client().await;
    c.batch_execute(
        "INSERT INTO notifications (user_id, seq, id, type, title, body, read_at)
         SELECT 'big', g, gen_random_uuid(), 't', 'title', 'body',
                CASE WHEN g % 10 = 0 THEN NULL ELSE now() END
         FROM generate_series(1, 100000) AS g;
         INSERT INTO notifications (user_id, seq, id, type, title, body)
         SELECT 'small-' || (g % 500), g, gen_random_uuid(), 't', 'title', 'body'
         FROM generate_series(1, 5000) AS g;
         INSERT INTO user_state (user_id, last_seq, unread_count, version) VALUES ('big', 100000, 10000, 100000);
         INSERT INTO user_state (user_id, last_seq, unread_count, version)
         SELECT 'small-' || g, 10, 10, 10 FROM generate_series(0, 49999) AS g;
         UPDATE user_state SET delivered_seq = 90000 WHERE user_id = 'big';
         INSERT INTO delivery_marks (user_id, seq, delivered_at)
         SELECT 'big', g * 100, now() FROM generate_series(1, 900) AS g;
         ANALYZE notifications; ANALYZE user_state; ANALYZE delivery_marks;",
    )
    .await
    .unwrap();

    let id = Uuid::new_v4();
    // (name, statement, arguments as SQL literals for EXPLAIN EXECUTE)
    let queries: Vec<(&str, &str, String)> = vec![
        (
            "latest page",
            sql::LATEST_PAGE,
            format!("'big', {}, 50", i64::MAX),
        ),
        (
            "latest unread page",
            sql::LATEST_UNREAD_PAGE,
            format!("'big', {}, 50", i64::MAX),
        ),
        (
            "latest page, 2nd page",
            sql::LATEST_PAGE,
            "'big', 50000, 50".to_owned(),
        ),
        (
            "after seq N",
            sql::AFTER_SEQS,
            "ARRAY['big'], ARRAY[99000]::bigint[], ARRAY[50]::bigint[]".to_owned(),
        ),
        (
            "after seq 0",
            sql::AFTER_SEQS,
            "ARRAY['big'], ARRAY[0]::bigint[], ARRAY[50]::bigint[]".to_owned(),
        ),
        (
            "after seq, many readers (storm catch-up)",
            sql::AFTER_SEQS,
            "ARRAY['big', 'small-1', 'big'], ARRAY[99000, 0, 0]::bigint[], ARRAY[50, 50, 5]::bigint[]"
                .to_owned(),
        ),
        ("unread count", sql::USER_STATES, "ARRAY['big']".to_owned()),
        ("get", sql::GET, format!("'big', '{id}'")),
        ("mark read", sql::MARK_READ, format!("'big', '{id}'")),
        (
            "mark all read",
            sql::MARK_ALL_READ,
            "'big', 100000".to_owned(),
        ),
        (
            "users behind (reconcile)",
            sql::USERS_BEHIND,
            "ARRAY['big', 'small-1', 'small-2'], ARRAY[5, 3, 10]::bigint[]".to_owned(),
        ),
        (
            "mark delivered",
            sql::MARK_DELIVERED,
            "ARRAY['big', 'small-1'], ARRAY[95000, 3]::bigint[]".to_owned(),
        ),
    ];
    // The gateway sends arrays of these sizes: a reconcile chunk (250), a connect-time
    // counter batch (1,000), a page batch (200 readers) and a delivery flush (up to 5,000).
    // With the table's real size in the statistics a custom plan for a large array may
    // prefer a hash join over a sequential scan of `user_state`; these shapes must not.
    let users = |n: usize| -> String {
        let list: Vec<String> = (0..n)
            .map(|i| format!("'small-{}'", i * 7 % 50_000))
            .collect();
        format!("ARRAY[{}]", list.join(","))
    };
    let seqs = |n: usize, v: i64| format!("array_fill({v}::bigint, ARRAY[{n}])");
    let mut queries = queries;
    for n in [250, 1_000, 5_000] {
        let name = |what: &str| -> &'static str {
            Box::leak(format!("{what}, {n} users").into_boxed_str())
        };
        queries.push((
            name("users behind"),
            sql::USERS_BEHIND,
            format!("{}, {}", users(n), seqs(n, 5)),
        ));
        queries.push((name("user states"), sql::USER_STATES, users(n)));
        queries.push((
            name("mark delivered"),
            sql::MARK_DELIVERED,
            format!("{}, {}", users(n), seqs(n, 3)),
        ));
        queries.push((
            name("after seqs"),
            sql::AFTER_SEQS,
            format!("{}, {}, {}", users(n), seqs(n, 0), seqs(n, 100)),
        ));
    }
    // Custom plans (first executions of a prepared statement) and the generic plan it may
    // switch to later.
    for mode in ["force_custom_plan", "force_generic_plan"] {
        c.batch_execute(&format!("SET plan_cache_mode = {mode}"))
            .await
            .unwrap();
        for (i, (name, text, args)) in queries.iter().enumerate() {
            c.batch_execute(&format!("PREPARE q{i} AS {text}"))
                .await
                .unwrap();
            let rows = c
                .simple_query(&format!("EXPLAIN EXECUTE q{i}({args})"))
                .await
                .unwrap();
            let plan: Vec<String> = rows
                .iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
                    _ => None,
                })
                .collect();
            let plan = plan.join("\n");
            assert!(plan.contains("Scan"), "{name}: no plan?\n{plan}");
            assert!(
                !plan.contains("Seq Scan on notifications"),
                "{name} ({mode}):\n{plan}"
            );
            for table in ["user_state", "delivery_marks"] {
                assert!(
                    !plan.contains(&format!("Seq Scan on {table}")),
                    "{name} ({mode}):\n{plan}"
                );
            }
            c.batch_execute(&format!("DEALLOCATE q{i}")).await.unwrap();
        }
    }
    // The store's own calls agree with the data.
    let page = db.store.list("big", None, 50, false).await.unwrap();
    assert_eq!(page.first().map(|n| n.seq), Some(100_000));
    let unread = db.store.list("big", None, 50, true).await.unwrap();
    assert!(unread.iter().all(|n| n.seq % 10 == 0));
    assert_eq!(
        db.store.after_seq("big", 99_990, 50).await.unwrap().len(),
        10
    );
}

/// Group commit: requests with overlapping recipients in one batch get consecutive seqs per
/// user in request order, per-row counters as they stood after each row, and the batch
/// interleaves correctly with single publishes and with other batches running concurrently.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn publish_batch_assigns_consecutive_seqs_in_request_order() {
    let db = TestDb::new().await;
    let first = db
        .store
        .publish(&new_notification(&["a"]), &record)
        .await
        .unwrap();
    assert!(matches!(first, PublishOutcome::Created(_)));
    let mut reqs = [
        new_notification(&["a", "b"]),
        new_notification(&["b"]),
        new_notification(&["a", "c", "b"]),
    ];
    reqs[1].title = "second".into();
    reqs[2].data = None;
    let refs: Vec<&NewNotification> = reqs.iter().collect();
    let out = db.store.publish_batch(&refs).await.unwrap();
    assert_eq!(out.len(), 3);
    let seqs = |i: usize| -> Vec<(String, i64)> {
        out[i]
            .items
            .iter()
            .map(|p| (p.notification.user_id.clone(), p.notification.seq))
            .collect()
    };
    assert_eq!(seqs(0), vec![("a".into(), 2), ("b".into(), 1)]);
    assert_eq!(seqs(1), vec![("b".into(), 2)]);
    assert_eq!(
        seqs(2),
        vec![("a".into(), 3), ("b".into(), 3), ("c".into(), 1)]
    );
    assert_eq!(out[1].items[0].notification.title, "second");
    assert!(out[2].items.iter().all(|p| p.notification.data.is_none()));
    // Counters as they stood just after each row.
    let b_counts: Vec<(i64, i64)> = [0usize, 1, 2]
        .iter()
        .map(|&i| {
            let p = out[i]
                .items
                .iter()
                .find(|p| p.notification.user_id == "b")
                .unwrap();
            (p.unread_count, p.version)
        })
        .collect();
    assert_eq!(b_counts, vec![(1, 1), (2, 2), (3, 3)]);
    let a = db.store.user_state("a").await.unwrap();
    assert_eq!((a.latest_seq, a.unread_count, a.version), (3, 3, 3));

    // Concurrent batches and singles on shared users stay gapless.
    let mut tasks = Vec::new();
    for t in 0..8 {
        let store = db.store.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..10 {
                if t % 2 == 0 {
                    let batch = [
                        new_notification(&["shared", "x"]),
                        new_notification(&["shared"]),
                    ];
                    let refs: Vec<&NewNotification> = batch.iter().collect();
                    store.publish_batch(&refs).await.unwrap();
                } else {
                    store
                        .publish(&new_notification(&["shared", "y"]), &record)
                        .await
                        .unwrap();
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let c = db.client().await;
    let stored: Vec<i64> = c
        .query(
            "SELECT seq FROM notifications WHERE user_id = 'shared' ORDER BY seq",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(stored, (1..=120).collect::<Vec<i64>>());
    let s = db.store.user_state("shared").await.unwrap();
    assert_eq!((s.latest_seq, s.unread_count, s.version), (120, 120, 120));
    // Keyed publishes are refused by the batch path.
    let mut keyed = new_notification(&["a"]);
    keyed.idempotency_key = Some("k".into());
    assert!(db.store.publish_batch(&[&keyed]).await.is_err());
}

/// Idempotency keys are forgotten after their retention: old keys are purged in bounded
/// batches, recent ones are kept, and a purged key can be used again.
#[tokio::test]
async fn idempotency_keys_expire() {
    let db = TestDb::new().await;
    for k in ["old-1", "old-2", "old-3", "fresh"] {
        let mut n = new_notification(&["u"]);
        n.idempotency_key = Some(k.into());
        db.store.publish(&n, &record).await.unwrap();
    }
    let c = db.client().await;
    c.execute(
        "UPDATE publish_idempotency SET created_at = now() - interval '2 days' WHERE key LIKE 'old-%'",
        &[],
    )
    .await
    .unwrap();
    let day = std::time::Duration::from_secs(86_400);
    assert_eq!(db.store.purge_idempotency(day, 2).await.unwrap(), 2);
    assert_eq!(db.store.purge_idempotency(day, 2).await.unwrap(), 1);
    assert_eq!(db.store.purge_idempotency(day, 2).await.unwrap(), 0);
    let left: Vec<String> = c
        .query("SELECT key FROM publish_idempotency", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(left, vec!["fresh".to_string()]);
    // The fresh key still replays; an expired key creates a new notification.
    let mut fresh = new_notification(&["u"]);
    fresh.idempotency_key = Some("fresh".into());
    assert!(matches!(
        db.store.publish(&fresh, &record).await.unwrap(),
        PublishOutcome::Replayed(_)
    ));
    let mut old = new_notification(&["u"]);
    old.idempotency_key = Some("old-1".into());
    assert!(matches!(
        db.store.publish(&old, &record).await.unwrap(),
        PublishOutcome::Created(_)
    ));
}

/// Version 2 moves `delivered_at` from the rows into `delivery_marks`: a database written by
/// version 1 reads back the same `delivered_at` for every row after the migration.
#[tokio::test]
async fn migration_2_keeps_every_delivered_at() {
    let db = EmptyDb::new().await;
    let c = admin_client(&db.url).await;
    // The version-1 schema as 0001 left it, with rows delivered in three flushes (carol: two
    // rows at one time, one at a later one, one undelivered) and one user never delivered.
    version_1_as_an_old_runner_left_it(&c).await;
    c.batch_execute(
        "INSERT INTO user_state (user_id, last_seq, delivered_seq, unread_count, version)
             VALUES ('carol', 4, 3, 4, 4), ('dave', 1, 0, 1, 1);
         INSERT INTO notifications (user_id, seq, id, type, title, body, delivered_at) VALUES
             ('carol', 1, gen_random_uuid(), 't', 't', 'b', '2026-01-01 10:00:00+00'),
             ('carol', 2, gen_random_uuid(), 't', 't', 'b', '2026-01-01 10:00:00+00'),
             ('carol', 3, gen_random_uuid(), 't', 't', 'b', '2026-01-01 10:00:05+00'),
             ('carol', 4, gen_random_uuid(), 't', 't', 'b', NULL),
             ('dave', 1, gen_random_uuid(), 't', 't', 'b', NULL);",
    )
    .await
    .unwrap();
    let store = Store::connect(&db.config(2)).await.unwrap();
    // Migration 2 and every later one.
    let later: Vec<i32> = herald_store::MIGRATIONS[1..].iter().map(|m| m.0).collect();
    assert_eq!(store.migrate().await.unwrap(), later);
    assert_eq!(later.first(), Some(&2));
    let at = |s: &str| Some(s.parse::<chrono::DateTime<chrono::Utc>>().unwrap());
    let carol: Vec<_> = store
        .after_seq("carol", 0, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.delivered_at)
        .collect();
    assert_eq!(
        carol,
        vec![
            at("2026-01-01T10:00:00Z"),
            at("2026-01-01T10:00:00Z"),
            at("2026-01-01T10:00:05Z"),
            None
        ]
    );
    assert_eq!(
        store.after_seq("dave", 0, 10).await.unwrap()[0].delivered_at,
        None
    );
    // Two runs of equal times: two marks, not three.
    assert_eq!(
        count(&c, "SELECT count(*) FROM delivery_marks", &[]).await,
        2
    );
    // Marking after the migration continues from the backfilled watermark.
    store
        .mark_delivered(&[("carol".into(), 4), ("dave".into(), 1)])
        .await
        .unwrap();
    let carol = store.after_seq("carol", 0, 10).await.unwrap();
    assert_eq!(carol[0].delivered_at, at("2026-01-01T10:00:00Z"));
    assert!(carol[3].delivered_at > at("2026-01-01T10:00:05Z"));
    assert!(store.after_seq("dave", 0, 10).await.unwrap()[0]
        .delivered_at
        .is_some());
}

/// Every applied migration's checksum is recorded; an edited one is refused before anything
/// changes, by `migrate` and by the start-up check alike.
#[tokio::test]
async fn an_edited_migration_is_refused() {
    let db = EmptyDb::new().await;
    let store = Store::connect(&db.config(2)).await.unwrap();
    store.migrate().await.unwrap();
    let c = admin_client(&db.url).await;
    let sums: Vec<(i32, Option<String>)> = c
        .query(
            "SELECT version, checksum FROM schema_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let want: Vec<(i32, Option<String>)> = herald_store::MIGRATIONS
        .iter()
        .map(|m| (m.0, Some(herald_store::migrate_checksum(m.2))))
        .collect();
    assert_eq!(sums, want);
    // Someone edits migration 2 after it was applied (the recorded checksum no longer
    // matches the file this build embeds).
    c.batch_execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 2")
        .await
        .unwrap();
    let err = store.migrate().await.unwrap_err().to_string();
    assert!(
        err.contains("migration 2 (0002_delivery_marks.sql) differs"),
        "{err}"
    );
    let err = store.check_schema().await.unwrap_err().to_string();
    assert!(err.contains("differs"), "{err}");
    let count: i64 = c
        .query_one("SELECT count(*) FROM schema_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, herald_store::MIGRATIONS.len() as i64);
}

/// Rows written by a runner that recorded no checksum get this build's once; a newer
/// build's migration is reported, and refused only when marked as breaking older nodes.
#[tokio::test]
async fn old_rows_get_checksums_and_newer_migrations_are_judged_by_their_mark() {
    let db = EmptyDb::new().await;
    let c = admin_client(&db.url).await;
    let v1_sql = version_1_as_an_old_runner_left_it(&c).await;
    let store = Store::connect(&db.config(2)).await.unwrap();
    let status = store.check_schema().await.unwrap();
    assert_eq!(status.pending.len(), herald_store::MIGRATIONS.len() - 1);
    let sum: Option<String> = c
        .query_one(
            "SELECT checksum FROM schema_migrations WHERE version = 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(sum, Some(herald_store::migrate_checksum(v1_sql)));
    store.migrate().await.unwrap();
    assert!(store.check_schema().await.unwrap().is_current());

    c.batch_execute(
        "INSERT INTO schema_migrations (version, name, checksum) VALUES (99, '0099_future.sql', 'x')",
    )
    .await
    .unwrap();
    assert_eq!(store.check_schema().await.unwrap().newer, vec![99]);
    assert!(store.migrate().await.unwrap().is_empty());
    c.batch_execute("UPDATE schema_migrations SET breaks_older_nodes = true WHERE version = 99")
        .await
        .unwrap();
    let err = store.check_schema().await.unwrap_err().to_string();
    assert!(
        err.contains("0099_future.sql") && err.contains("older nodes cannot run"),
        "{err}"
    );
}

/// Migration 1 applied and recorded the way the first runner did it (no checksum column);
/// returns its SQL.
async fn version_1_as_an_old_runner_left_it(c: &tokio_postgres::Client) -> &'static str {
    let (v1, v1_name, v1_sql) = herald_store::MIGRATIONS[0];
    c.batch_execute(v1_sql).await.unwrap();
    c.batch_execute(&format!(
        "CREATE TABLE schema_migrations (version int PRIMARY KEY, name text NOT NULL, \
         applied_at timestamptz NOT NULL DEFAULT now());
         INSERT INTO schema_migrations (version, name) VALUES ({v1}, '{v1_name}');"
    ))
    .await
    .unwrap();
    v1_sql
}

/// The retention purge of one type moves its cursor past the other types' rows it looked at,
/// so the next batch (and pass) starts after them; it deletes only its type's old rows and
/// reports when there is nothing more to look at.
#[tokio::test]
async fn retention_purge_of_a_rare_type_scans_each_row_once() {
    let db = TestDb::new().await;
    for i in 0..15 {
        let mut n = new_notification(&["ret"]);
        if i % 5 == 2 {
            n.kind = "rare".into();
        }
        db.store.publish(&n, &record).await.unwrap();
    }
    let scope = herald_store::PurgeScope::Type("rare".into());
    let (mut cursor, mut calls, mut deleted) = (Uuid::nil(), 0, 0);
    loop {
        let b = db
            .store
            .purge_notifications(&scope, std::time::Duration::ZERO, 4, cursor)
            .await
            .unwrap();
        assert!(b.cursor >= cursor, "the cursor never goes back");
        cursor = b.cursor;
        calls += 1;
        deleted += b.purged.iter().map(|p| p.ids.len()).sum::<usize>();
        if b.exhausted {
            break;
        }
        assert!(calls < 10, "runaway scan");
    }
    // 15 rows, 4 per batch: 4 batches, the last one short.
    assert_eq!((calls, deleted), (4, 3));
    let kinds: Vec<String> = db
        .client()
        .await
        .query("SELECT type FROM notifications WHERE user_id = 'ret'", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(kinds.len(), 12);
    assert!(kinds.iter().all(|k| k == "comment.created"));
    // From the end, nothing is looked at again.
    let b = db
        .store
        .purge_notifications(&scope, std::time::Duration::ZERO, 4, cursor)
        .await
        .unwrap();
    assert!(b.exhausted && b.purged.is_empty());
    assert_eq!(b.cursor, cursor);
    let max: Uuid = db
        .client()
        .await
        .query_one("SELECT id FROM notifications ORDER BY id DESC LIMIT 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(cursor, max);
}
