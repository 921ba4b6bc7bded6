//! TLS to PostgreSQL and Redis against real servers: a private PostgreSQL cluster with
//! `ssl = on` whose pg_hba admits only TLS connections, and a `redis-server` with only a TLS
//! port, both presenting certificates from a CA this test makes.

use std::sync::Arc;
use std::time::Duration;

use herald_bus::{Bus, BusConfig};
use herald_core::FanoutSink;
use herald_protocol::bus::{BusMessage, Reject};
use herald_protocol::Broadcast;
use herald_store::{Store, StoreConfig};
use herald_testkit::tls::{TempDir, TestCa, TlsPostgres, TlsRedis};

use crate::helpers::*;

fn store_config(url: String) -> StoreConfig {
    StoreConfig {
        url,
        pool_size: 1,
        statement_timeout_ms: 10_000,
        connect_timeout_ms: 5_000,
    }
}

/// `postgres://…` for the TLS cluster on `port`, connecting to 127.0.0.1 while naming `host`.
fn pg_url(host: &str, port: u16, params: &str) -> String {
    format!("postgres://postgres@{host}:{port}/postgres?hostaddr=127.0.0.1&{params}")
}

#[tokio::test]
async fn postgres_verify_full_connects_and_a_wrong_ca_or_host_name_is_refused() {
    let ca = TestCa::new("herald test CA");
    let other = TestCa::new("some other CA");
    let dir = TempDir::new("tls-pg-client");
    let ca_file = ca.write(&dir.0, "ca.pem");
    let other_file = other.write(&dir.0, "other.pem");
    let pg = TlsPostgres::start(&ca.issue(&["db.herald.test"])).await;
    let rootcert = |f: &std::path::Path| format!("sslrootcert={}", f.display());

    // verify-full with the right CA and the name on the certificate.
    let store = Store::connect(&store_config(pg_url(
        "db.herald.test",
        pg.port,
        &format!("sslmode=verify-full&{}", rootcert(&ca_file)),
    )))
    .await
    .expect("verify-full with the right CA connects");
    store.ping().await.expect("ping over TLS");
    store.migrate().await.expect("migrations over TLS");

    // A CA that did not sign the server's certificate.
    let err = Store::connect(&store_config(pg_url(
        "db.herald.test",
        pg.port,
        &format!("sslmode=verify-full&{}", rootcert(&other_file)),
    )))
    .await
    .expect_err("a wrong CA is refused")
    .to_string();
    assert!(err.contains("invalid peer certificate"), "{err}");
    assert!(err.contains("UnknownIssuer"), "{err}");

    // The right CA, but a host name that is not on the certificate.
    let wrong_host = pg_url(
        "wrong.herald.test",
        pg.port,
        &format!("sslmode=verify-full&{}", rootcert(&ca_file)),
    );
    let err = Store::connect(&store_config(wrong_host))
        .await
        .expect_err("a wrong host name is refused")
        .to_string();
    assert!(err.contains("invalid peer certificate"), "{err}");
    assert!(
        err.contains("not valid for name \"wrong.herald.test\""),
        "{err}"
    );

    // verify-ca checks the chain only: the same wrong name connects, a wrong CA does not.
    Store::connect(&store_config(pg_url(
        "wrong.herald.test",
        pg.port,
        &format!("sslmode=verify-ca&{}", rootcert(&ca_file)),
    )))
    .await
    .expect("verify-ca ignores the host name");
    let err = Store::connect(&store_config(pg_url(
        "db.herald.test",
        pg.port,
        &format!("sslmode=verify-ca&{}", rootcert(&other_file)),
    )))
    .await
    .expect_err("verify-ca still checks the chain")
    .to_string();
    assert!(err.contains("UnknownIssuer"), "{err}");

    // The server admits only TLS: sslmode=disable is turned away by the server; require
    // (encrypted, unchecked, as in libpq) gets in.
    let err = Store::connect(&store_config(pg_url(
        "db.herald.test",
        pg.port,
        "sslmode=disable",
    )))
    .await
    .expect_err("plaintext is refused by this server")
    .to_string();
    assert!(err.contains("no pg_hba.conf entry"), "{err}");
    Store::connect(&store_config(pg_url(
        "db.herald.test",
        pg.port,
        "sslmode=require",
    )))
    .await
    .expect("require connects without checking");
}

#[derive(Default)]
struct NullSink;

impl FanoutSink for NullSink {
    fn user_event(&self, _user_id: &str, _msg: BusMessage) {}
    fn broadcast(&self, _broadcast: Arc<Broadcast>) {}
    fn resync_all(&self) {}
    fn rejected(&self, _reason: Reject, _channel: &str) {}
    fn revoked(&self, _user_id: &str) {}
}

#[tokio::test]
async fn redis_over_tls_checks_the_ca_and_the_host_name() {
    herald_store::tls::install_crypto_provider();
    let ca = TestCa::new("herald test CA");
    let other = TestCa::new("some other CA");
    let dir = TempDir::new("tls-redis-client");
    let ca_file = ca.write(&dir.0, "ca.pem");
    let other_file = other.write(&dir.0, "other.pem");
    let redis = TlsRedis::start(&ca.issue(&["127.0.0.1"]), &ca).await;
    let bus_with = |url: String, ca: &std::path::Path| BusConfig {
        redis_url: Some(url),
        tls_ca_file: Some(ca.to_path_buf()),
        node_id: format!("tls-{}", uuid::Uuid::new_v4().simple()),
        ..BusConfig::default()
    };

    let ok = Bus::start(
        bus_with(format!("rediss://127.0.0.1:{}", redis.port), &ca_file),
        Arc::new(NullSink),
    )
    .await
    .expect("bus starts");
    ok.ping().await.expect("publish pool over TLS");
    assert!(
        ok.is_connected(),
        "the subscriber connection is up over TLS"
    );
    ok.shutdown();

    let wrong_ca = Bus::start(
        bus_with(format!("rediss://127.0.0.1:{}", redis.port), &other_file),
        Arc::new(NullSink),
    )
    .await
    .expect("the bus starts degraded");
    let err = wrong_ca
        .ping()
        .await
        .expect_err("a wrong CA is refused")
        .to_string();
    assert!(err.contains("UnknownIssuer"), "{err}");
    assert!(!wrong_ca.is_connected());
    wrong_ca.shutdown();

    // `localhost` resolves to the same server, but the certificate names only 127.0.0.1.
    let wrong_host = Bus::start(
        bus_with(format!("rediss://localhost:{}", redis.port), &ca_file),
        Arc::new(NullSink),
    )
    .await
    .expect("the bus starts degraded");
    let err = wrong_host
        .ping()
        .await
        .expect_err("a wrong host name is refused")
        .to_string();
    assert!(err.contains("not valid for name \"localhost\""), "{err}");
    wrong_host.shutdown();
}

/// A whole node on TLS only: its database and its Redis accept nothing else, and a
/// notification published over HTTP reaches a WebSocket.
#[tokio::test]
async fn a_node_runs_on_tls_postgres_and_tls_redis() {
    let env = TestEnv::new().await;
    let ca = TestCa::new("herald test CA");
    let dir = TempDir::new("tls-node");
    let ca_file = ca.write(&dir.0, "ca.pem");
    let pg = TlsPostgres::start(&ca.issue(&["db.herald.test"])).await;
    let redis = TlsRedis::start(&ca.issue(&["127.0.0.1"]), &ca).await;
    let db_url = pg_url(
        "db.herald.test",
        pg.port,
        &format!("sslmode=verify-full&sslrootcert={}", ca_file.display()),
    );
    let node = env
        .node_with(|c| {
            c.database_url = db_url.clone().into();
            c.migrate_on_start = true;
            c.redis_url = Some(format!("rediss://127.0.0.1:{}", redis.port).into());
            c.redis_ca_file = Some(ca_file.clone());
        })
        .await;
    let (status, body) = node.ready_until("ready").await;
    assert_eq!(status, 200, "{body}");
    let mut ws = node.connect("alice").await;
    let (_, pending) = ws.handshake().await;
    assert!(pending.is_empty());
    let seq = node.publish_one("alice", "over TLS").await;
    let got = tokio::time::timeout(Duration::from_secs(10), ws.notifications_until(seq))
        .await
        .expect("the notification arrives");
    assert_seqs(&got, 1, seq);
    assert_eq!(got[0].title, "over TLS");
}
