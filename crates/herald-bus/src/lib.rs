//! Herald's fan-out bus.
//!
//! Every gateway node subscribes to Redis channel `<prefix>user:<user_id>` exactly while it
//! holds at least one socket of that user (one subscription per user per node, reference
//! counted), plus `<prefix>broadcast` and its own probe channel `<prefix>node:<node_id>`.
//! What arrives is handed to the gateway through [`FanoutSink`]. PostgreSQL is the source of
//! truth; whenever the bus may have lost messages (the subscriber connection died and came
//! back, or the liveness probe failed) it calls [`FanoutSink::resync_all`] *after*
//! re-subscribing everything.
//!
//! Without a Redis URL the bus is in-process (single node): publishes go straight to the sink.
//!
//! Structure: one subscriber actor task owns all subscription state; callers reach it only
//! through an mpsc channel. Publishing uses a separate deadpool-redis pool, never the
//! subscriber connection.

mod actor;
mod cluster;
mod conn;
pub mod tls;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_core::FanoutSink;
use herald_protocol::bus::{BusKey, BusMessage};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use actor::{Actor, Channels, Command};

/// Most Redis Cluster seed nodes a bus takes.
pub const MAX_CLUSTER_SEEDS: usize = cluster::publish::MAX_SEEDS;

/// How long `subscribe` waits for its SUBSCRIBE confirmation before answering `Degraded`.
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(2);
/// Bound on one publish / broadcast (pool checkout + round trip).
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(3);
/// Bound on `ping`.
const PING_TIMEOUT: Duration = Duration::from_secs(1);

/// Bus settings.
#[derive(Debug, Clone)]
pub struct BusConfig {
    /// `redis://…` URL; `None` (and no `cluster_nodes`) selects the in-process bus (single
    /// node).
    pub redis_url: Option<String>,
    /// Redis Cluster seed nodes (`host:port`, at most [`MAX_CLUSTER_SEEDS`]); when not empty
    /// the bus uses the cluster with sharded pub/sub (`SSUBSCRIBE`/`SPUBLISH`) and
    /// `redis_url` must be `None`. No TLS, no password.
    pub cluster_nodes: Vec<String>,
    /// PEM CA certificates that a `rediss://` server's certificate must lead to; `None`: the
    /// operating system's store.
    pub tls_ca_file: Option<std::path::PathBuf>,
    /// Prefix of every channel name, e.g. `herald:`.
    pub prefix: String,
    /// This node's id (unique per running gateway); names the probe channel and the
    /// subscriber connection (`CLIENT SETNAME herald-sub:<node_id>`).
    pub node_id: String,
    /// How often the node probes its own subscriber connection.
    pub probe_interval: Duration,
    /// How long a probe may take to come back before the connection is declared dead.
    pub probe_timeout: Duration,
    /// Connections in the publish pool.
    pub publish_pool_size: usize,
    /// The shared node key: when set, every payload this node publishes is sealed with it and
    /// every payload received without its valid tag is dropped (and counted).
    pub key: Option<BusKey>,
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            redis_url: None,
            cluster_nodes: Vec::new(),
            tls_ca_file: None,
            prefix: "herald:".to_owned(),
            node_id: uuid::Uuid::new_v4().to_string(),
            probe_interval: Duration::from_secs(5),
            probe_timeout: Duration::from_secs(3),
            publish_pool_size: 16,
            key: None,
        }
    }
}

/// Result of [`Bus::subscribe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscribeOutcome {
    /// The user's channel is subscribed: every message published from now on arrives.
    Confirmed,
    /// Redis is down right now (or did not confirm in time). The socket proceeds; it will be
    /// caught up by `resync_all()` once the bus is back.
    Degraded,
}

/// Bus errors.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// Redis could not be reached or refused the command.
    #[error("redis unavailable: {0}")]
    Unavailable(String),
    /// Misuse or misconfiguration (bad URL, wrong message kind, …).
    #[error("bus internal error: {0}")]
    Internal(String),
    /// Redis refused this node's credentials or its ACL forbids what the bus needs. Not
    /// retried at start: it does not heal by waiting.
    #[error("redis refused the bus: {0} (check the user and password in the Redis URL, and that the ACL user may PUBLISH and SUBSCRIBE on the prefix's channels)")]
    Refused(String),
}

/// Whether a Redis error message is a refusal of credentials or permissions rather than an
/// outage.
pub(crate) fn is_refusal(e: &str) -> bool {
    // Server replies as written raw (`-WRONGPASS …`) or as redis-rs names them (`NoPerm: …`).
    [
        "WRONGPASS",
        "NOAUTH",
        "NOPERM",
        "NoPerm",
        "AuthenticationFailed",
        "invalid password",
    ]
    .iter()
    .any(|m| e.contains(m))
}

/// A snapshot of the bus counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BusMetrics {
    /// User and broadcast messages received and handed to the sink.
    pub messages_received: u64,
    /// Failed publishes / broadcasts.
    pub publish_errors: u64,
    /// Successful reconnections of the subscriber connection.
    pub reconnects: u64,
    /// `resync_all` calls.
    pub resyncs: u64,
    /// Probes that did not come back in time.
    pub probe_failures: u64,
    /// Received payloads that could not be decoded (or had the wrong kind for their channel).
    /// Every dropped payload, for any reason, is also reported to [`FanoutSink::rejected`].
    pub decode_errors: u64,
}

#[derive(Default)]
struct Counters {
    messages_received: AtomicU64,
    publish_errors: AtomicU64,
    reconnects: AtomicU64,
    resyncs: AtomicU64,
    probe_failures: AtomicU64,
    decode_errors: AtomicU64,
}

/// State shared between the handles and the actor (atomics only).
struct Shared {
    sink: Arc<dyn FanoutSink>,
    key: Option<BusKey>,
    connected: AtomicBool,
    subscribed_users: AtomicUsize,
    metrics: Counters,
}

enum Mode {
    InProcess {
        refcounts: Mutex<HashMap<String, u64>>,
    },
    Redis {
        /// Unbounded on purpose: `unsubscribe` must never block nor lose a decrement, and
        /// `subscribe` must enqueue its increment synchronously on first poll so a cancelled
        /// `subscribe().await` can't leave the caller unsure whether to unsubscribe. The
        /// queue is bounded in practice: every command is one socket opening or closing, at
        /// most two per socket lifecycle, and the actor drains whole batches at a time.
        tx: mpsc::UnboundedSender<Command>,
        pool: deadpool_redis::Pool,
        cancel: CancellationToken,
    },
    /// Redis Cluster, sharded pub/sub (`cluster/`). Same command queue as `Redis`.
    Cluster {
        tx: mpsc::UnboundedSender<Command>,
        publisher: Arc<cluster::publish::Publisher>,
        cancel: CancellationToken,
    },
}

struct Inner {
    channels: Channels,
    shared: Arc<Shared>,
    mode: Mode,
}

impl Drop for Inner {
    fn drop(&mut self) {
        match &self.mode {
            Mode::Redis { cancel, .. } | Mode::Cluster { cancel, .. } => cancel.cancel(),
            Mode::InProcess { .. } => {}
        }
    }
}

/// Handle to the bus. Cheap to clone; all clones share one subscriber actor. Dropping the last
/// clone stops the actor.
#[derive(Clone)]
pub struct Bus {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field(
                "mode",
                &match self.inner.mode {
                    Mode::InProcess { .. } => "in-process",
                    Mode::Redis { .. } => "redis",
                    Mode::Cluster { .. } => "redis-cluster",
                },
            )
            .field("connected", &self.is_connected())
            .field("subscribed_users", &self.subscribed_users())
            .finish()
    }
}

impl Bus {
    /// Starts the bus. Without a URL: the in-process bus. With a URL: builds the publish pool,
    /// opens the subscriber connection and spawns the subscriber actor (must run inside a
    /// Tokio runtime). If Redis is unreachable, the bus still starts, degraded, and keeps
    /// reconnecting in the background. Fails only on an invalid URL or pool configuration.
    pub async fn start(cfg: BusConfig, sink: Arc<dyn FanoutSink>) -> Result<Bus, BusError> {
        let channels = Channels::new(&cfg.prefix, &cfg.node_id);
        let shared = Arc::new(Shared {
            sink,
            key: cfg.key.clone(),
            connected: AtomicBool::new(false),
            subscribed_users: AtomicUsize::new(0),
            metrics: Counters::default(),
        });
        if !cfg.cluster_nodes.is_empty() {
            return Bus::start_cluster(cfg, channels, shared).await;
        }
        let Some(url) = cfg.redis_url.as_deref() else {
            shared.connected.store(true, Ordering::Release);
            return Ok(Bus {
                inner: Arc::new(Inner {
                    channels,
                    shared,
                    mode: Mode::InProcess {
                        refcounts: Mutex::new(HashMap::new()),
                    },
                }),
            });
        };

        let client = tls::client(url, cfg.tls_ca_file.as_deref()).map_err(BusError::Internal)?;
        let conn_cfg = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(actor::CONNECT_TIMEOUT))
            .set_response_timeout(Some(PUBLISH_TIMEOUT));
        let manager = deadpool_redis::Manager::new_with_config(
            client.get_connection_info().clone(),
            conn_cfg,
        )
        .map_err(|e| BusError::Internal(format!("invalid redis url: {e}")))?;
        let pool = deadpool_redis::Pool::builder(manager)
            .max_size(cfg.publish_pool_size.max(1))
            .runtime(deadpool_redis::Runtime::Tokio1)
            .wait_timeout(Some(PUBLISH_TIMEOUT))
            .create_timeout(Some(actor::CONNECT_TIMEOUT))
            .recycle_timeout(Some(Duration::from_secs(1)))
            .build()
            .map_err(|e| BusError::Internal(format!("publish pool: {e}")))?;

        let conn_name = conn::subscriber_name(&cfg.node_id);
        let initial = match actor::connect(
            client.clone(),
            conn_name.clone(),
            channels.clone(),
            Vec::new(),
        )
        .await
        {
            Ok(c) => {
                shared.connected.store(true, Ordering::Release);
                tracing::info!(node_id = %cfg.node_id, "bus subscriber connected");
                Some(c)
            }
            Err(e) if is_refusal(&e) => return Err(BusError::Refused(e)),
            Err(e) => {
                tracing::warn!(node_id = %cfg.node_id, error = %e, "redis unreachable at start; bus starts degraded and keeps reconnecting");
                None
            }
        };
        if initial.is_some() {
            check_publish(&pool, &channels, &cfg, shared.key.as_ref()).await?;
        }

        let (tx, rx) = mpsc::unbounded_channel();
        let cancel = CancellationToken::new();
        let actor = Actor {
            client,
            conn_name,
            channels: channels.clone(),
            node_id: cfg.node_id.clone(),
            probe_interval: cfg.probe_interval.max(Duration::from_millis(10)),
            probe_timeout: cfg.probe_timeout.max(Duration::from_millis(10)),
            pool: pool.clone(),
            shared: shared.clone(),
            rx,
            cancel: cancel.clone(),
            refcounts: HashMap::new(),
            subscribed: Default::default(),
            waiters: HashMap::new(),
            touched: Default::default(),
        };
        tokio::spawn(actor.run(initial));

        Ok(Bus {
            inner: Arc::new(Inner {
                channels,
                shared,
                mode: Mode::Redis { tx, pool, cancel },
            }),
        })
    }

    async fn start_cluster(
        cfg: BusConfig,
        channels: Channels,
        shared: Arc<Shared>,
    ) -> Result<Bus, BusError> {
        if cfg.redis_url.is_some() {
            return Err(BusError::Internal(
                "a Redis URL and cluster nodes are exclusive".to_owned(),
            ));
        }
        if cfg.cluster_nodes.len() > MAX_CLUSTER_SEEDS {
            return Err(BusError::Internal(format!(
                "at most {MAX_CLUSTER_SEEDS} cluster seed nodes"
            )));
        }
        if let Some(bad) = cfg.cluster_nodes.iter().find(|n| !valid_seed(n)) {
            return Err(BusError::Internal(format!(
                "cluster node {bad:?} is not host:port"
            )));
        }
        let cancel = CancellationToken::new();
        let started = cluster::start(&cfg, channels.clone(), shared.clone(), cancel.clone()).await;
        Ok(Bus {
            inner: Arc::new(Inner {
                channels,
                shared,
                mode: Mode::Cluster {
                    tx: started.tx,
                    publisher: started.publisher,
                    cancel,
                },
            }),
        })
    }

    /// Adds one reference (one socket) for `user_id`. Resolves once the user's channel is
    /// subscribed (immediately if it already was), or `Degraded` if Redis is down or does not
    /// confirm within 2 s. Every call that was polled must be matched by one
    /// [`Bus::unsubscribe`], whatever the outcome.
    pub async fn subscribe(&self, user_id: &str) -> SubscribeOutcome {
        match &self.inner.mode {
            Mode::InProcess { refcounts } => {
                let mut map = lock(refcounts);
                *map.entry(user_id.to_owned()).or_insert(0) += 1;
                self.inner
                    .shared
                    .subscribed_users
                    .store(map.len(), Ordering::Relaxed);
                SubscribeOutcome::Confirmed
            }
            Mode::Redis { tx, .. } | Mode::Cluster { tx, .. } => {
                let (reply, rx) = oneshot::channel();
                let cmd = Command::Subscribe {
                    user_id: user_id.to_owned(),
                    reply,
                };
                if tx.send(cmd).is_err() {
                    return SubscribeOutcome::Degraded;
                }
                match tokio::time::timeout(SUBSCRIBE_WAIT, rx).await {
                    Ok(Ok(outcome)) => outcome,
                    _ => SubscribeOutcome::Degraded,
                }
            }
        }
    }

    /// Drops one reference for `user_id`; the channel is unsubscribed when none remain.
    /// Never blocks.
    pub fn unsubscribe(&self, user_id: &str) {
        match &self.inner.mode {
            Mode::InProcess { refcounts } => {
                let mut map = lock(refcounts);
                match map.get_mut(user_id) {
                    Some(n) if *n > 1 => *n -= 1,
                    Some(_) => {
                        map.remove(user_id);
                    }
                    None => {
                        tracing::warn!(%user_id, "bus unsubscribe without a matching subscribe; ignored")
                    }
                }
                self.inner
                    .shared
                    .subscribed_users
                    .store(map.len(), Ordering::Relaxed);
            }
            Mode::Redis { tx, .. } | Mode::Cluster { tx, .. } => {
                let _ = tx.send(Command::Unsubscribe {
                    user_id: user_id.to_owned(),
                });
            }
        }
    }

    /// Publishes `(user_id, message)` pairs: every PUBLISH pipelined in one round trip.
    pub async fn publish(&self, items: Vec<(String, BusMessage)>) -> Result<(), BusError> {
        if items.is_empty() {
            return Ok(());
        }
        let (pool, shared) = match &self.inner.mode {
            Mode::InProcess { .. } => {
                let sink = &self.inner.shared.sink;
                for (user_id, msg) in items {
                    sink.user_event(&user_id, msg);
                }
                return Ok(());
            }
            Mode::Redis { pool, .. } => (pool, &self.inner.shared),
            Mode::Cluster { publisher, .. } => {
                let shared = &self.inner.shared;
                let key = shared.key.as_ref();
                let items = items
                    .iter()
                    .map(|(user_id, msg)| {
                        let channel = self.inner.channels.user(user_id);
                        let payload = msg.encode_for(&channel, key);
                        (channel, payload)
                    })
                    .collect();
                return publisher
                    .publish(items)
                    .await
                    .map(|_| ())
                    .map_err(|e| publish_error(shared, e));
            }
        };
        let mut pipe = redis::pipe();
        let key = shared.key.as_ref();
        for (user_id, msg) in &items {
            let channel = self.inner.channels.user(user_id);
            let payload = msg.encode_for(&channel, key);
            pipe.cmd("PUBLISH").arg(channel).arg(payload).ignore();
        }
        let n = items.len();
        let fut = async {
            let mut conn = pool.get().await.map_err(|e| format!("publish pool: {e}"))?;
            pipe.query_async::<()>(&mut *conn)
                .await
                .map_err(|e| format!("PUBLISH x{n}: {e}"))
        };
        match tokio::time::timeout(PUBLISH_TIMEOUT, fut).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(publish_error(shared, e)),
            Err(_) => Err(publish_error(
                shared,
                format!("PUBLISH x{n} timed out after {PUBLISH_TIMEOUT:?}"),
            )),
        }
    }

    /// Publishes a message for every node (must be [`BusMessage::Broadcast`] or
    /// [`BusMessage::Revoked`]) on the broadcast channel; returns how many nodes received it.
    /// In-process: hands it to the sink and returns 1.
    pub async fn broadcast(&self, msg: BusMessage) -> Result<u64, BusError> {
        if !matches!(
            msg,
            BusMessage::Broadcast { .. } | BusMessage::Revoked { .. }
        ) {
            return Err(BusError::Internal(
                "broadcast() takes BusMessage::Broadcast or BusMessage::Revoked".to_owned(),
            ));
        }
        let (pool, shared) = match &self.inner.mode {
            Mode::InProcess { .. } => {
                let sink = &self.inner.shared.sink;
                match &msg {
                    BusMessage::Broadcast { broadcast } => {
                        sink.broadcast(Arc::new(broadcast.clone()))
                    }
                    BusMessage::Revoked { user_id } => sink.revoked(user_id),
                    _ => {}
                }
                return Ok(1);
            }
            Mode::Redis { pool, .. } => (pool, &self.inner.shared),
            Mode::Cluster { publisher, .. } => {
                let shared = &self.inner.shared;
                let channel = self.inner.channels.broadcast.clone();
                let payload = msg.encode_for(&channel, shared.key.as_ref());
                return publisher
                    .publish(vec![(channel, payload)])
                    .await
                    .map_err(|e| publish_error(shared, e));
            }
        };
        let fut = async {
            let mut conn = pool.get().await.map_err(|e| format!("publish pool: {e}"))?;
            let channel = &self.inner.channels.broadcast;
            redis::cmd("PUBLISH")
                .arg(channel)
                .arg(msg.encode_for(channel, shared.key.as_ref()))
                .query_async::<u64>(&mut *conn)
                .await
                .map_err(|e| format!("PUBLISH broadcast: {e}"))
        };
        match tokio::time::timeout(PUBLISH_TIMEOUT, fut).await {
            Ok(Ok(n)) => Ok(n),
            Ok(Err(e)) => Err(publish_error(shared, e)),
            Err(_) => Err(publish_error(
                shared,
                format!("PUBLISH broadcast timed out after {PUBLISH_TIMEOUT:?}"),
            )),
        }
    }

    /// PING over the publish pool (for readiness checks). Always Ok in-process.
    pub async fn ping(&self) -> Result<(), BusError> {
        let pool = match &self.inner.mode {
            Mode::InProcess { .. } => return Ok(()),
            Mode::Cluster { publisher, .. } => {
                return match tokio::time::timeout(PING_TIMEOUT, publisher.ping()).await {
                    Ok(r) => r.map_err(BusError::Unavailable),
                    Err(_) => Err(BusError::Unavailable(format!(
                        "PING timed out after {PING_TIMEOUT:?}"
                    ))),
                };
            }
            Mode::Redis { pool, .. } => pool,
        };
        let fut = async {
            let mut conn = pool.get().await.map_err(|e| format!("publish pool: {e}"))?;
            redis::cmd("PING")
                .query_async::<String>(&mut *conn)
                .await
                .map_err(|e| format!("PING: {e}"))
        };
        match tokio::time::timeout(PING_TIMEOUT, fut).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(BusError::Unavailable(e)),
            Err(_) => Err(BusError::Unavailable(format!(
                "PING timed out after {PING_TIMEOUT:?}"
            ))),
        }
    }

    /// Whether the subscriber connection is up and subscribed to everything wanted (always
    /// true in-process).
    pub fn is_connected(&self) -> bool {
        self.inner.shared.connected.load(Ordering::Acquire)
    }

    /// Users with at least one reference on this node. With Redis this reflects the commands
    /// the actor has applied (an `unsubscribe` is applied shortly after the call).
    pub fn subscribed_users(&self) -> usize {
        self.inner.shared.subscribed_users.load(Ordering::Relaxed)
    }

    /// Counter snapshot.
    pub fn metrics(&self) -> BusMetrics {
        let m = &self.inner.shared.metrics;
        BusMetrics {
            messages_received: m.messages_received.load(Ordering::Relaxed),
            publish_errors: m.publish_errors.load(Ordering::Relaxed),
            reconnects: m.reconnects.load(Ordering::Relaxed),
            resyncs: m.resyncs.load(Ordering::Relaxed),
            probe_failures: m.probe_failures.load(Ordering::Relaxed),
            decode_errors: m.decode_errors.load(Ordering::Relaxed),
        }
    }

    /// Stops the subscriber actor (its connection closes; pending subscribes resolve
    /// `Degraded`). Publishing keeps working. Idempotent.
    pub fn shutdown(&self) {
        match &self.inner.mode {
            Mode::Redis { cancel, .. } | Mode::Cluster { cancel, .. } => cancel.cancel(),
            Mode::InProcess { .. } => {}
        }
    }
}

/// At start, once the subscriber is up: one PUBLISH over the pool (a probe nobody waits
/// for, on this node's own channel), so credentials or an ACL that refuse publishing fail the
/// start instead of every later fan-out. Anything else (Redis gone again) only warns.
async fn check_publish(
    pool: &deadpool_redis::Pool,
    channels: &Channels,
    cfg: &BusConfig,
    key: Option<&BusKey>,
) -> Result<(), BusError> {
    let probe = BusMessage::Probe {
        node_id: cfg.node_id.clone(),
        nonce: 0,
    };
    let payload = probe.encode_for(&channels.probe, key);
    let fut = async {
        let mut conn = pool.get().await.map_err(|e| format!("publish pool: {e}"))?;
        redis::cmd("PUBLISH")
            .arg(&channels.probe)
            .arg(payload)
            .query_async::<u64>(&mut *conn)
            .await
            .map_err(|e| format!("PUBLISH: {e}"))
    };
    match tokio::time::timeout(PUBLISH_TIMEOUT, fut).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) if is_refusal(&e) => Err(BusError::Refused(e)),
        Ok(Err(e)) => {
            tracing::warn!(node_id = %cfg.node_id, error = %e, "bus publish check at start failed");
            Ok(())
        }
        Err(_) => {
            tracing::warn!(node_id = %cfg.node_id, "bus publish check at start timed out");
            Ok(())
        }
    }
}

/// `host:port` with a port in 1..=65535 and a host without spaces, `@` or `/` (no scheme, no
/// credentials).
pub fn valid_seed(seed: &str) -> bool {
    match seed.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty()
                && !host.contains(|c: char| c.is_whitespace() || "@/".contains(c))
                && port.parse::<u16>().is_ok_and(|p| p > 0)
        }
        None => false,
    }
}

fn publish_error(shared: &Shared, e: String) -> BusError {
    shared
        .metrics
        .publish_errors
        .fetch_add(1, Ordering::Relaxed);
    tracing::warn!(error = %e, "bus publish failed");
    BusError::Unavailable(e)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_protocol::Broadcast;

    #[derive(Default)]
    struct Rec {
        users: Mutex<Vec<String>>,
        broadcasts: AtomicUsize,
    }

    impl FanoutSink for Rec {
        fn user_event(&self, user_id: &str, _msg: BusMessage) {
            lock(&self.users).push(user_id.to_owned());
        }
        fn broadcast(&self, _b: Arc<Broadcast>) {
            self.broadcasts.fetch_add(1, Ordering::Relaxed);
        }
        fn resync_all(&self) {}
        fn rejected(&self, _: herald_protocol::bus::Reject, _: &str) {}
        fn revoked(&self, _: &str) {}
    }

    fn bmsg() -> BusMessage {
        let broadcast: Broadcast = serde_json::from_value(serde_json::json!({
            "id": uuid::Uuid::new_v4(), "type": "t", "title": "t", "body": "b",
            "link": null, "data": null, "created_at": "2024-01-01T00:00:00Z"
        }))
        .unwrap();
        BusMessage::Broadcast { broadcast }
    }

    #[tokio::test]
    async fn in_process_bus() {
        let rec = Arc::new(Rec::default());
        let bus = Bus::start(BusConfig::default(), rec.clone()).await.unwrap();
        assert!(bus.is_connected());
        assert_eq!(bus.subscribe("u1").await, SubscribeOutcome::Confirmed);
        assert_eq!(bus.subscribe("u1").await, SubscribeOutcome::Confirmed);
        assert_eq!(bus.subscribe("u2").await, SubscribeOutcome::Confirmed);
        assert_eq!(bus.subscribed_users(), 2);
        bus.unsubscribe("u1");
        assert_eq!(bus.subscribed_users(), 2);
        bus.unsubscribe("u1");
        bus.unsubscribe("u1"); // extra: ignored
        assert_eq!(bus.subscribed_users(), 1);
        bus.publish(vec![("u1".into(), bmsg()), ("u2".into(), bmsg())])
            .await
            .unwrap();
        assert_eq!(*lock(&rec.users), vec!["u1".to_owned(), "u2".to_owned()]);
        assert_eq!(bus.broadcast(bmsg()).await.unwrap(), 1);
        assert_eq!(rec.broadcasts.load(Ordering::Relaxed), 1);
        assert!(bus.ping().await.is_ok());
        assert!(matches!(
            bus.broadcast(BusMessage::Probe {
                node_id: "n".into(),
                nonce: 1
            })
            .await,
            Err(BusError::Internal(_))
        ));
    }

    #[tokio::test]
    async fn bad_url_is_an_error() {
        let cfg = BusConfig {
            redis_url: Some("not a url".into()),
            ..BusConfig::default()
        };
        assert!(matches!(
            Bus::start(cfg, Arc::new(Rec::default())).await,
            Err(BusError::Internal(_))
        ));
    }

    #[test]
    fn bus_is_send_sync() {
        fn check<T: Send + Sync + Clone>() {}
        check::<Bus>();
    }
}
