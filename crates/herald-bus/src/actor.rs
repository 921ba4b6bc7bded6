//! The subscriber actor: the single task that owns every subscription of this node.
//!
//! Callers talk to it only through the command channel. It batches refcount changes into one
//! UNSUBSCRIBE and one SUBSCRIBE per batch, reads the pub/sub stream, probes its own
//! connection, and reconnects (re-subscribing everything, then `resync_all`) when the
//! connection dies or silently stops delivering.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use herald_protocol::bus::{BusMessage, Reject};
use rand::Rng;
use redis::aio::{PubSubSink, PubSubStream};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{conn, Shared, SubscribeOutcome};

/// Channels per SUBSCRIBE / UNSUBSCRIBE command.
pub(crate) const CHUNK: usize = 1_000;
/// Bound on opening the subscriber connection.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound on one SUBSCRIBE / UNSUBSCRIBE round trip; beyond it the connection is declared dead.
const OP_TIMEOUT: Duration = Duration::from_secs(5);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Most commands applied per batch (keeps one batch's work bounded).
const MAX_BATCH: usize = 65_536;

pub(crate) enum Command {
    Subscribe {
        user_id: String,
        reply: oneshot::Sender<SubscribeOutcome>,
    },
    Unsubscribe {
        user_id: String,
    },
}

/// A live subscriber connection.
pub(crate) struct Conn {
    pub(crate) sink: PubSubSink,
    pub(crate) stream: PubSubStream,
}

/// Channel names of one node.
#[derive(Clone)]
pub(crate) struct Channels {
    /// `<prefix>user:`
    pub(crate) user_prefix: String,
    /// `<prefix>broadcast`
    pub(crate) broadcast: String,
    /// `<prefix>node:<node_id>`
    pub(crate) probe: String,
}

impl Channels {
    pub(crate) fn new(prefix: &str, node_id: &str) -> Channels {
        Channels {
            user_prefix: format!("{prefix}user:"),
            broadcast: format!("{prefix}broadcast"),
            probe: format!("{prefix}node:{node_id}"),
        }
    }

    pub(crate) fn user(&self, user_id: &str) -> String {
        format!("{}{user_id}", self.user_prefix)
    }
}

/// Opens a subscriber connection and subscribes the fixed channels plus `users` (chunked).
pub(crate) async fn connect(
    client: redis::Client,
    name: String,
    channels: Channels,
    users: Vec<String>,
) -> Result<Conn, String> {
    let pubsub = conn::open_pubsub(&client, &name, CONNECT_TIMEOUT).await?;
    let (mut sink, stream) = pubsub.split();
    let fixed = vec![channels.broadcast.clone(), channels.probe.clone()];
    subscribe_chunked(&mut sink, &fixed).await?;
    let user_channels: Vec<String> = users.iter().map(|u| channels.user(u)).collect();
    subscribe_chunked(&mut sink, &user_channels).await?;
    Ok(Conn { sink, stream })
}

async fn subscribe_chunked(sink: &mut PubSubSink, channels: &[String]) -> Result<(), String> {
    for chunk in channels.chunks(CHUNK) {
        match tokio::time::timeout(OP_TIMEOUT, sink.subscribe(chunk)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("SUBSCRIBE failed: {e}")),
            Err(_) => return Err(format!("SUBSCRIBE timed out after {OP_TIMEOUT:?}")),
        }
    }
    Ok(())
}

async fn unsubscribe_chunked(sink: &mut PubSubSink, channels: &[String]) -> Result<(), String> {
    for chunk in channels.chunks(CHUNK) {
        match tokio::time::timeout(OP_TIMEOUT, sink.unsubscribe(chunk)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("UNSUBSCRIBE failed: {e}")),
            Err(_) => return Err(format!("UNSUBSCRIBE timed out after {OP_TIMEOUT:?}")),
        }
    }
    Ok(())
}

/// Drops one reference to `user_id`'s channel; the last one removes the user. An unsubscribe
/// without a subscribe is logged and ignored.
pub(crate) fn release(refcounts: &mut HashMap<String, u64>, user_id: &str) {
    match refcounts.get_mut(user_id) {
        Some(n) if *n > 1 => *n -= 1,
        Some(_) => {
            refcounts.remove(user_id);
        }
        None => {
            tracing::warn!(user_id = %user_id, "bus unsubscribe without a matching subscribe; ignored");
        }
    }
}

/// Which user channels to add and remove, given the refcounts and the currently subscribed
/// set, looking only at `touched` users. Pure; sorted for determinism.
pub(crate) fn plan(
    refcounts: &HashMap<String, u64>,
    subscribed: &HashSet<String>,
    touched: &HashSet<String>,
) -> (Vec<String>, Vec<String>) {
    let mut add = Vec::new();
    let mut remove = Vec::new();
    for user in touched {
        let want = refcounts.get(user).is_some_and(|&n| n > 0);
        let have = subscribed.contains(user);
        if want && !have {
            add.push(user.clone());
        } else if !want && have {
            remove.push(user.clone());
        }
    }
    add.sort();
    remove.sort();
    (add, remove)
}

/// Why the connected phase ended.
enum Exit {
    Shutdown,
    Lost(String),
}

pub(crate) struct Backoff {
    next: Duration,
}

impl Backoff {
    pub(crate) fn new() -> Backoff {
        Backoff { next: BACKOFF_MIN }
    }

    /// Next delay: the current step with jitter in [step/2, step], then the step doubles up to
    /// the cap.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let step = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        let half = step / 2;
        let jitter_ms = rand::rng().random_range(0..=half.as_millis() as u64);
        half + Duration::from_millis(jitter_ms)
    }

    pub(crate) fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }
}

type ConnectFuture = Pin<Box<dyn Future<Output = Result<Conn, String>> + Send>>;

pub(crate) struct Actor {
    pub(crate) client: redis::Client,
    pub(crate) conn_name: String,
    pub(crate) channels: Channels,
    pub(crate) node_id: String,
    pub(crate) probe_interval: Duration,
    pub(crate) probe_timeout: Duration,
    pub(crate) pool: deadpool_redis::Pool,
    pub(crate) shared: Arc<Shared>,
    pub(crate) rx: mpsc::UnboundedReceiver<Command>,
    pub(crate) cancel: CancellationToken,
    /// Sockets per user on this node (entries are removed at 0).
    pub(crate) refcounts: HashMap<String, u64>,
    /// Users whose channel is subscribed on the current connection.
    pub(crate) subscribed: HashSet<String>,
    /// Subscribe calls waiting for their channel's confirmation.
    pub(crate) waiters: HashMap<String, Vec<oneshot::Sender<SubscribeOutcome>>>,
    /// Users whose refcount changed since the last sync.
    pub(crate) touched: HashSet<String>,
}

impl Actor {
    /// Runs until shutdown (or every `Bus` handle is dropped). `initial` is the connection
    /// opened by `Bus::start`, if that succeeded.
    pub(crate) async fn run(mut self, initial: Option<Conn>) {
        let mut conn = initial;
        let mut backoff = Backoff::new();
        loop {
            match conn.take() {
                Some(c) => match self.run_connected(c).await {
                    Exit::Shutdown => break,
                    Exit::Lost(why) => {
                        tracing::warn!(node_id = %self.node_id, reason = %why, "bus subscriber connection lost; reconnecting");
                        self.mark_disconnected();
                    }
                },
                None => match self.run_disconnected(&mut backoff).await {
                    Some(c) => {
                        self.shared.connected.store(true, Ordering::Release);
                        self.shared
                            .metrics
                            .reconnects
                            .fetch_add(1, Ordering::Relaxed);
                        self.shared.metrics.resyncs.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(node_id = %self.node_id, users = self.subscribed.len(), "bus subscriber reconnected and re-subscribed; resyncing all sockets");
                        self.shared.sink.resync_all();
                        conn = Some(c);
                    }
                    None => break,
                },
            }
        }
        self.shared.connected.store(false, Ordering::Release);
        self.resolve_all_waiters(SubscribeOutcome::Degraded);
        tracing::debug!(node_id = %self.node_id, "bus subscriber actor stopped");
    }

    fn mark_disconnected(&mut self) {
        self.shared.connected.store(false, Ordering::Release);
        self.subscribed.clear();
        self.resolve_all_waiters(SubscribeOutcome::Degraded);
    }

    fn resolve_all_waiters(&mut self, outcome: SubscribeOutcome) {
        for (_, ws) in self.waiters.drain() {
            for w in ws {
                let _ = w.send(outcome);
            }
        }
    }

    /// Applies one command to the refcounts. While disconnected, subscribe calls resolve
    /// `Degraded` right away.
    fn apply(&mut self, cmd: Command, connected: bool) {
        match cmd {
            Command::Subscribe { user_id, reply } => {
                *self.refcounts.entry(user_id.clone()).or_insert(0) += 1;
                self.publish_gauge();
                if connected {
                    self.waiters.entry(user_id.clone()).or_default().push(reply);
                } else {
                    let _ = reply.send(SubscribeOutcome::Degraded);
                }
                self.touched.insert(user_id);
            }
            Command::Unsubscribe { user_id } => {
                release(&mut self.refcounts, &user_id);
                self.publish_gauge();
                self.touched.insert(user_id);
            }
        }
    }

    fn publish_gauge(&self) {
        self.shared
            .subscribed_users
            .store(self.refcounts.len(), Ordering::Relaxed);
    }

    /// Applies `first` and everything already queued behind it (up to `MAX_BATCH`).
    fn apply_batch(&mut self, first: Command, connected: bool) {
        self.apply(first, connected);
        let mut n = 1;
        while n < MAX_BATCH {
            match self.rx.try_recv() {
                Ok(cmd) => {
                    self.apply(cmd, connected);
                    n += 1;
                }
                Err(_) => break,
            }
        }
    }

    /// Brings the connection's user subscriptions in line with the refcounts for touched
    /// users: one UNSUBSCRIBE, one SUBSCRIBE (chunked), then resolves waiters.
    async fn sync(&mut self, sink: &mut PubSubSink) -> Result<(), String> {
        let touched = std::mem::take(&mut self.touched);
        let (add, remove) = plan(&self.refcounts, &self.subscribed, &touched);
        if !remove.is_empty() {
            let chans: Vec<String> = remove.iter().map(|u| self.channels.user(u)).collect();
            unsubscribe_chunked(sink, &chans).await?;
            for u in &remove {
                self.subscribed.remove(u);
            }
        }
        if !add.is_empty() {
            let chans: Vec<String> = add.iter().map(|u| self.channels.user(u)).collect();
            subscribe_chunked(sink, &chans).await?;
            self.subscribed.extend(add);
        }
        // Every waiter's channel is now either subscribed or no longer wanted (its socket
        // already left), so all of them can be answered.
        self.resolve_all_waiters(SubscribeOutcome::Confirmed);
        Ok(())
    }

    async fn run_connected(&mut self, mut conn: Conn) -> Exit {
        self.shared.connected.store(true, Ordering::Release);

        let mut probe_tick = tokio::time::interval(self.probe_interval);
        probe_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // (nonce, deadline) of the probe in flight.
        let mut probe: Option<(u64, Instant)> = None;

        loop {
            let deadline = probe.map(|(_, d)| d);
            tokio::select! {
                _ = self.cancel.cancelled() => return Exit::Shutdown,
                cmd = self.rx.recv() => match cmd {
                    None => return Exit::Shutdown,
                    Some(cmd) => {
                        self.apply_batch(cmd, true);
                        if let Err(e) = self.sync(&mut conn.sink).await {
                            return Exit::Lost(e);
                        }
                    }
                },
                msg = conn.stream.next() => match msg {
                    None => return Exit::Lost("pub/sub stream ended".to_owned()),
                    Some(msg) => self.handle_msg(&msg, &mut probe),
                },
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    // The probe may be sitting in the stream already: drain what is ready.
                    while let Some(Some(msg)) = conn.stream.next().now_or_never() {
                        self.handle_msg(&msg, &mut probe);
                    }
                    if probe.is_some() {
                        self.shared.metrics.probe_failures.fetch_add(1, Ordering::Relaxed);
                        return Exit::Lost(format!(
                            "probe not received within {:?}",
                            self.probe_timeout
                        ));
                    }
                },
                _ = probe_tick.tick() => {
                    if probe.is_none() {
                        let nonce: u64 = rand::rng().random();
                        probe = Some((nonce, Instant::now() + self.probe_timeout));
                        self.send_probe(nonce);
                    }
                },
            }
        }
    }

    /// Publishes a probe on this node's channel from a separate task (the actor never waits on
    /// the publish pool). A failed publish simply lets the probe time out.
    fn send_probe(&self, nonce: u64) {
        let pool = self.pool.clone();
        let channel = self.channels.probe.clone();
        let payload = BusMessage::Probe {
            node_id: self.node_id.clone(),
            nonce,
        }
        .encode_for(&channel, self.shared.key.as_ref());
        let timeout = self.probe_timeout;
        tokio::spawn(async move {
            let fut = async {
                let mut c = pool.get().await.map_err(|e| e.to_string())?;
                redis::cmd("PUBLISH")
                    .arg(&channel)
                    .arg(payload)
                    .query_async::<u64>(&mut *c)
                    .await
                    .map_err(|e| e.to_string())
            };
            match tokio::time::timeout(timeout, fut).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::debug!(error = %e, "bus probe publish failed"),
                Err(_) => tracing::debug!("bus probe publish timed out"),
            }
        });
    }

    /// Checks and routes one message. Every check is cheap (a tag, a prefix comparison); the
    /// check that a far-ahead seq exists is the socket's, against PostgreSQL.
    fn handle_msg(&mut self, msg: &redis::Msg, probe: &mut Option<(u64, Instant)>) {
        let channel = msg.get_channel_name();
        let Some(payload) = open(&self.shared, channel, msg.get_payload_bytes()) else {
            return;
        };
        if route(&self.shared, &self.channels, channel, payload) {
            return;
        }
        if channel == self.channels.probe {
            match BusMessage::decode(payload) {
                Ok(BusMessage::Probe { node_id, nonce }) => {
                    if node_id == self.node_id && probe.is_some_and(|(n, _)| n == nonce) {
                        *probe = None;
                    }
                }
                Ok(_) | Err(_) => reject(&self.shared, Reject::Malformed, channel),
            }
        } else {
            tracing::debug!(%channel, "bus message on an unknown channel; dropped");
        }
    }

    /// Waits out the backoff and tries to connect, over and over, while still applying
    /// commands (subscribe calls resolve `Degraded`). Returns the connection once it is
    /// subscribed to everything wanted, or None on shutdown.
    async fn run_disconnected(&mut self, backoff: &mut Backoff) -> Option<Conn> {
        loop {
            let sleep = tokio::time::sleep(backoff.next_delay());
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    _ = self.cancel.cancelled() => return None,
                    cmd = self.rx.recv() => match cmd {
                        None => return None,
                        Some(cmd) => self.apply_batch(cmd, false),
                    },
                    _ = &mut sleep => break,
                }
            }

            let users: Vec<String> = self.refcounts.keys().cloned().collect();
            let mut attempt: ConnectFuture = Box::pin(connect(
                self.client.clone(),
                self.conn_name.clone(),
                self.channels.clone(),
                users.clone(),
            ));
            let result = loop {
                tokio::select! {
                    _ = self.cancel.cancelled() => return None,
                    cmd = self.rx.recv() => match cmd {
                        None => return None,
                        Some(cmd) => self.apply_batch(cmd, false),
                    },
                    res = &mut attempt => break res,
                }
            };
            match result {
                Ok(mut conn) => {
                    self.subscribed = users.into_iter().collect();
                    // Reconcile refcount changes applied while connecting, so that everything
                    // wanted is subscribed before the caller runs resync_all.
                    self.touched.extend(self.refcounts.keys().cloned());
                    self.touched.extend(self.subscribed.iter().cloned());
                    match self.sync(&mut conn.sink).await {
                        Ok(()) => {
                            backoff.reset();
                            return Some(conn);
                        }
                        Err(e) => {
                            tracing::warn!(node_id = %self.node_id, error = %e, "bus subscriber re-subscribe failed");
                            self.subscribed.clear();
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(node_id = %self.node_id, error = %e, "bus subscriber reconnect failed");
                }
            }
        }
    }
}

/// Drops a payload received on `channel`: counted here and reported to the sink, which
/// counts it by reason and logs sparingly.
pub(crate) fn reject(shared: &Shared, reason: Reject, channel: &str) {
    if reason == Reject::Malformed {
        shared.metrics.decode_errors.fetch_add(1, Ordering::Relaxed);
    }
    shared.sink.rejected(reason, channel);
}

/// The message in a payload received on `channel`: opened when the bus is sealed, as is
/// otherwise. `None` when it does not open (counted and reported by `reject`).
pub(crate) fn open<'a>(shared: &Shared, channel: &str, payload: &'a [u8]) -> Option<&'a [u8]> {
    match &shared.key {
        None => Some(payload),
        Some(key) => match key.open(channel, payload) {
            Ok(message) => Some(message),
            Err(reason) => {
                reject(shared, reason, channel);
                None
            }
        },
    }
}

/// Checks and hands to the sink one (opened) payload received on a user channel or the
/// broadcast channel; false when `channel` is neither. Shared by the single-Redis actor and
/// the cluster's shard connections.
pub(crate) fn route(shared: &Shared, channels: &Channels, channel: &str, payload: &[u8]) -> bool {
    let metrics = &shared.metrics;
    if let Some(user_id) = channel.strip_prefix(channels.user_prefix.as_str()) {
        match BusMessage::decode(payload) {
            Ok(BusMessage::Live(live)) => match live.check(user_id) {
                Ok(()) => {
                    metrics.messages_received.fetch_add(1, Ordering::Relaxed);
                    shared.sink.user_event(user_id, BusMessage::Live(live));
                }
                Err(reason) => reject(shared, reason, channel),
            },
            Ok(
                m @ (BusMessage::Read { .. } | BusMessage::Seen { .. } | BusMessage::Inbox { .. }),
            ) => {
                metrics.messages_received.fetch_add(1, Ordering::Relaxed);
                shared.sink.user_event(user_id, m);
            }
            Ok(_) | Err(_) => reject(shared, Reject::Malformed, channel),
        }
        true
    } else if channel == channels.broadcast {
        match BusMessage::decode(payload) {
            Ok(BusMessage::Broadcast { broadcast }) => {
                metrics.messages_received.fetch_add(1, Ordering::Relaxed);
                shared.sink.broadcast(Arc::new(broadcast));
            }
            Ok(BusMessage::Revoked { user_id }) => {
                metrics.messages_received.fetch_add(1, Ordering::Relaxed);
                shared.sink.revoked(&user_id);
            }
            Ok(_) | Err(_) => reject(shared, Reject::Malformed, channel),
        }
        true
    } else {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(xs: &[&str]) -> HashSet<String> {
        xs.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn plan_adds_and_removes_only_touched() {
        let mut rc = HashMap::new();
        rc.insert("a".to_owned(), 2);
        rc.insert("b".to_owned(), 1);
        let subscribed = set(&["b", "c", "d"]);
        let (add, remove) = plan(&rc, &subscribed, &set(&["a", "b", "c"]));
        assert_eq!(add, vec!["a".to_owned()]);
        assert_eq!(remove, vec!["c".to_owned()]);
    }

    struct NullSink;
    impl herald_core::FanoutSink for NullSink {
        fn user_event(&self, _: &str, _: BusMessage) {}
        fn broadcast(&self, _: Arc<herald_protocol::Broadcast>) {}
        fn resync_all(&self) {}
        fn rejected(&self, _: Reject, _: &str) {}
        fn revoked(&self, _: &str) {}
    }

    fn test_actor() -> (Actor, mpsc::UnboundedSender<Command>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let manager = deadpool_redis::Manager::new("redis://127.0.0.1:1/").unwrap();
        let pool = deadpool_redis::Pool::builder(manager).build().unwrap();
        let actor = Actor {
            client: redis::Client::open("redis://127.0.0.1:1/").unwrap(),
            conn_name: "herald-sub:test".into(),
            channels: Channels::new("p:", "n"),
            node_id: "n".into(),
            probe_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_secs(1),
            pool,
            shared: Arc::new(Shared {
                sink: Arc::new(NullSink),
                key: None,
                connected: Default::default(),
                subscribed_users: Default::default(),
                metrics: Default::default(),
            }),
            rx,
            cancel: CancellationToken::new(),
            refcounts: HashMap::new(),
            subscribed: HashSet::new(),
            waiters: HashMap::new(),
            touched: HashSet::new(),
        };
        (actor, tx)
    }

    #[tokio::test]
    async fn one_zero_one_in_a_batch_nets_to_nothing() {
        let (mut actor, tx) = test_actor();
        actor.refcounts.insert("u".into(), 1);
        actor.subscribed.insert("u".into());
        let (reply, _r) = oneshot::channel();
        tx.send(Command::Subscribe {
            user_id: "v".into(),
            reply,
        })
        .ok();
        tx.send(Command::Unsubscribe {
            user_id: "u".into(),
        })
        .ok();
        let (reply, _r2) = oneshot::channel();
        tx.send(Command::Subscribe {
            user_id: "u".into(),
            reply,
        })
        .ok();
        let (reply, _r3) = oneshot::channel();
        let first = Command::Subscribe {
            user_id: "w".into(),
            reply,
        };
        actor.apply_batch(first, true);
        assert!(actor.rx.try_recv().is_err(), "the whole queue is drained");
        let (add, remove) = plan(&actor.refcounts, &actor.subscribed, &actor.touched);
        assert_eq!(add, vec!["v".to_owned(), "w".to_owned()]);
        assert!(remove.is_empty());
        assert_eq!(actor.refcounts.get("u"), Some(&1));
        assert_eq!(actor.shared.subscribed_users.load(Ordering::Relaxed), 3);
    }

    #[tokio::test]
    async fn unsubscribe_never_goes_below_zero() {
        let (mut actor, _tx) = test_actor();
        actor.apply(
            Command::Unsubscribe {
                user_id: "u".into(),
            },
            true,
        );
        assert!(actor.refcounts.is_empty());
        let (reply, rx) = oneshot::channel();
        actor.apply(
            Command::Subscribe {
                user_id: "u".into(),
                reply,
            },
            false,
        );
        assert_eq!(actor.refcounts.get("u"), Some(&1));
        assert_eq!(rx.await.unwrap(), SubscribeOutcome::Degraded);
    }

    #[test]
    fn backoff_is_capped_and_jittered() {
        let mut b = Backoff::new();
        let mut last = Duration::ZERO;
        for _ in 0..20 {
            last = b.next_delay();
            assert!(last <= BACKOFF_MAX);
            assert!(last >= BACKOFF_MIN / 2);
        }
        assert!(last >= BACKOFF_MAX / 2);
        b.reset();
        assert!(b.next_delay() <= BACKOFF_MIN);
    }
}
