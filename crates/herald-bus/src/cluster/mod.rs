//! The cluster bus: Redis Cluster with sharded pub/sub (Redis 7 `SSUBSCRIBE`/`SPUBLISH`).
//!
//! A user's channel `<prefix>user:<id>` lives in one slot, so a message is published only on
//! the master that owns it (`publish.rs`) and reaches only that shard, not every node of the
//! cluster. Each gateway node keeps one subscriber connection per master (`shard.rs`) and
//! SSUBSCRIBEs there the channels of its users whose slots that master owns, plus the
//! broadcast channel on its owner. The cluster actor (this file) owns the refcounts, exactly
//! like the single-Redis actor, and the slot map (`slots.rs`, from `CLUSTER SLOTS`).
//!
//! Nothing is lost: whenever a shard's connection drops, a failover promotes a replica, or the
//! server unsubscribes a channel because its slot moved, the actor refreshes the slot map,
//! subscribes every wanted channel at its (new) owner and, once every shard is connected and
//! every wanted channel confirmed, calls [`FanoutSink::resync_all`](herald_core::FanoutSink):
//! every socket of the node catches up from PostgreSQL (all users, not only the shard's: one
//! path, the same as the single-Redis reconnect). The connections speak RESP2 through
//! `resp.rs`, whose reader refuses an over-long frame on its header.
//!
//! Not supported in cluster mode: TLS and passwords (the configuration refuses them).

pub(crate) mod publish;
pub(crate) mod resp;
pub(crate) mod shard;
pub(crate) mod slots;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::actor::{release, Channels, Command};
use crate::{Shared, SubscribeOutcome};
use publish::{Publisher, Topology};
use shard::{ShardCmd, ShardEvent, ShardSpec};
use slots::SlotMap;

/// Events from the shard connections and refreshes that may wait for the actor; a shard's
/// reader waits (backpressure on that shard) when it is full.
const EVENTS: usize = 8_192;
/// Most refcount commands applied per batch.
const MAX_BATCH: usize = 65_536;
/// How often the slot map is refreshed while the bus is whole.
const REFRESH_HEALTHY: Duration = Duration::from_secs(10);
/// How often while a shard is missing or a channel is not where it belongs.
const REFRESH_HEALING: Duration = Duration::from_millis(250);
/// How long `Bus::start` waits for every shard before starting degraded.
pub(crate) const START_WAIT: Duration = Duration::from_secs(3);

/// What `Bus::start` gets back.
pub(crate) struct Started {
    pub(crate) tx: mpsc::UnboundedSender<Command>,
    pub(crate) publisher: Arc<Publisher>,
}

/// Starts the cluster actor; waits (bounded) until every shard is subscribed.
pub(crate) async fn start(
    cfg: &crate::BusConfig,
    channels: Channels,
    shared: Arc<Shared>,
    cancel: CancellationToken,
) -> Started {
    let node_id = cfg.node_id.clone();
    let seeds = cfg.cluster_nodes.clone();
    let topo = Arc::new(Topology::new(seeds));
    let map = match topo.refresh().await {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(node_id = %node_id, error = %e, "redis cluster unreachable at start; bus starts degraded and keeps trying");
            topo.current()
        }
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let (events_tx, events_rx) = mpsc::channel(EVENTS);
    let (whole_tx, mut whole_rx) = watch::channel(false);
    let mut actor = ClusterActor {
        topo: topo.clone(),
        map,
        channels,
        conn_name: crate::conn::subscriber_name(&cfg.node_id),
        node_id: node_id.clone(),
        ping_interval: cfg.probe_interval.max(Duration::from_millis(10)),
        ping_timeout: cfg.probe_timeout.max(Duration::from_millis(10)),
        shared,
        rx,
        events_tx,
        events_rx,
        cancel,
        refcounts: HashMap::new(),
        waiters: HashMap::new(),
        touched: HashSet::new(),
        shards: HashMap::new(),
        next_id: 0,
        healing: false,
        initial: true,
        refreshing: false,
        next_refresh: Instant::now() + REFRESH_HEALING,
        whole_tx,
    };
    actor.reconcile_shards();
    tokio::spawn(actor.run());
    if tokio::time::timeout(START_WAIT, whole_rx.wait_for(|w| *w))
        .await
        .is_err()
    {
        tracing::warn!(node_id = %node_id, "redis cluster not fully subscribed at start; bus starts degraded and keeps trying");
    }
    Started {
        tx,
        publisher: Arc::new(Publisher::new(topo)),
    }
}

/// One master's subscriber connection, as the actor sees it.
struct Shard {
    id: u64,
    tx: mpsc::Sender<ShardCmd>,
    cancel: CancellationToken,
    up: bool,
    /// Channels the server confirmed.
    subscribed: HashSet<String>,
    /// Channels asked for, not yet confirmed.
    pending: HashSet<String>,
}

struct ClusterActor {
    topo: Arc<Topology>,
    map: Arc<SlotMap>,
    channels: Channels,
    conn_name: String,
    node_id: String,
    ping_interval: Duration,
    ping_timeout: Duration,
    shared: Arc<Shared>,
    rx: mpsc::UnboundedReceiver<Command>,
    events_tx: mpsc::Sender<ShardEvent>,
    events_rx: mpsc::Receiver<ShardEvent>,
    cancel: CancellationToken,
    refcounts: HashMap<String, u64>,
    waiters: HashMap<String, Vec<oneshot::Sender<SubscribeOutcome>>>,
    touched: HashSet<String>,
    /// By master address.
    shards: HashMap<String, Shard>,
    next_id: u64,
    /// Something may have been missed since the bus was last whole: resync when it is again.
    healing: bool,
    /// Not yet whole since the start (the first time needs every channel confirmed, but no
    /// resync unless a subscribe was answered `Degraded`).
    initial: bool,
    refreshing: bool,
    next_refresh: Instant,
    whole_tx: watch::Sender<bool>,
}

impl ClusterActor {
    async fn run(mut self) {
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => break,
                cmd = self.rx.recv() => match cmd {
                    None => break,
                    Some(cmd) => {
                        self.apply(cmd);
                        let mut n = 1;
                        while n < MAX_BATCH {
                            match self.rx.try_recv() {
                                Ok(cmd) => { self.apply(cmd); n += 1; }
                                Err(_) => break,
                            }
                        }
                        self.sync_touched();
                    }
                },
                ev = self.events_rx.recv() => match ev {
                    None => break,
                    Some(ev) => self.event(ev),
                },
                _ = tokio::time::sleep_until(self.next_refresh), if !self.refreshing => self.start_refresh(),
            }
            self.check_whole();
        }
        for shard in self.shards.values() {
            shard.cancel.cancel();
        }
        self.shared.connected.store(false, Ordering::Release);
        for (_, ws) in self.waiters.drain() {
            for w in ws {
                let _ = w.send(SubscribeOutcome::Degraded);
            }
        }
        tracing::debug!(node_id = %self.node_id, "cluster bus actor stopped");
    }

    /// Every wanted channel: the broadcast channel and the channel of every user with a socket.
    fn wanted(&self, channel: &str) -> bool {
        channel == self.channels.broadcast
            || channel
                .strip_prefix(self.channels.user_prefix.as_str())
                .is_some_and(|u| self.refcounts.contains_key(u))
    }

    fn owner(&self, channel: &str) -> Option<String> {
        self.map.owner_of(channel).map(str::to_owned)
    }

    fn apply(&mut self, cmd: Command) {
        match cmd {
            Command::Subscribe { user_id, reply } => {
                *self.refcounts.entry(user_id.clone()).or_insert(0) += 1;
                self.waiters.entry(user_id.clone()).or_default().push(reply);
                self.touched.insert(user_id);
            }
            Command::Unsubscribe { user_id } => {
                release(&mut self.refcounts, &user_id);
                self.touched.insert(user_id);
            }
        }
        self.shared
            .subscribed_users
            .store(self.refcounts.len(), Ordering::Relaxed);
    }

    fn resolve(&mut self, user_id: &str, outcome: SubscribeOutcome) {
        if outcome == SubscribeOutcome::Degraded && self.waiters.contains_key(user_id) {
            // That socket may miss messages until the shard is back: resync then.
            self.healing = true;
        }
        for w in self.waiters.remove(user_id).unwrap_or_default() {
            let _ = w.send(outcome);
        }
    }

    /// Subscribes or unsubscribes the touched users' channels at their owners.
    fn sync_touched(&mut self) {
        let touched = std::mem::take(&mut self.touched);
        let mut subs: HashMap<String, Vec<String>> = HashMap::new();
        let mut unsubs: HashMap<String, Vec<String>> = HashMap::new();
        for user in touched {
            let channel = self.channels.user(&user);
            let want = self.refcounts.contains_key(&user);
            let owner = self.owner(&channel);
            if want {
                match owner
                    .as_deref()
                    .and_then(|o| self.shards.get_mut(o).map(|s| (o, s)))
                {
                    Some((_, shard)) if shard.up && shard.subscribed.contains(&channel) => {
                        self.resolve(&user, SubscribeOutcome::Confirmed)
                    }
                    Some((_, shard)) if shard.up && shard.pending.contains(&channel) => {}
                    Some((o, shard)) if shard.up => {
                        shard.pending.insert(channel.clone());
                        subs.entry(o.to_owned()).or_default().push(channel);
                    }
                    _ => self.resolve(&user, SubscribeOutcome::Degraded),
                }
            } else {
                // Wherever it is subscribed (its owner, or a shard it moved away from).
                for (addr, shard) in self.shards.iter_mut() {
                    let had = shard.subscribed.remove(&channel) | shard.pending.remove(&channel);
                    if had && shard.up {
                        unsubs
                            .entry(addr.clone())
                            .or_default()
                            .push(channel.clone());
                    }
                }
                // A waiter whose socket already left: nothing to wait for.
                self.resolve(&user, SubscribeOutcome::Confirmed);
            }
        }
        for (addr, chans) in unsubs {
            self.send(&addr, ShardCmd::Unsubscribe(chans));
        }
        for (addr, chans) in subs {
            self.send(&addr, ShardCmd::Subscribe(chans));
        }
    }

    /// Queues a command for a shard without waiting. A full queue (the connection cannot keep
    /// up) restarts that shard's connection: everything it owns is subscribed again and the
    /// bus resyncs once whole.
    fn send(&mut self, addr: &str, cmd: ShardCmd) {
        let Some(shard) = self.shards.get(addr) else {
            return;
        };
        if shard.tx.try_send(cmd).is_err() {
            tracing::warn!(node_id = %self.node_id, shard = %addr, "cluster shard command queue full or closed; restarting its connection");
            self.restart_shard(addr);
        }
    }

    fn spawn_shard(&mut self, addr: &str) -> Shard {
        self.next_id += 1;
        let cancel = self.cancel.child_token();
        let tx = shard::spawn(ShardSpec {
            id: self.next_id,
            addr: addr.to_owned(),
            conn_name: self.conn_name.clone(),
            ping_interval: self.ping_interval,
            ping_timeout: self.ping_timeout,
            channels: self.channels.clone(),
            shared: self.shared.clone(),
            events: self.events_tx.clone(),
            cancel: cancel.clone(),
        });
        Shard {
            id: self.next_id,
            tx,
            cancel,
            up: false,
            subscribed: HashSet::new(),
            pending: HashSet::new(),
        }
    }

    fn restart_shard(&mut self, addr: &str) {
        if let Some(old) = self.shards.remove(addr) {
            old.cancel.cancel();
        }
        let shard = self.spawn_shard(addr);
        self.shards.insert(addr.to_owned(), shard);
        self.shard_down(addr);
    }

    /// A shard is not serving: its waiters answer `Degraded`, and the bus heals.
    fn shard_down(&mut self, addr: &str) {
        self.healing = true;
        self.next_refresh = self.next_refresh.min(Instant::now());
        let users: Vec<String> = self
            .waiters
            .keys()
            .filter(|u| self.owner(&self.channels.user(u)).as_deref() == Some(addr))
            .cloned()
            .collect();
        for u in users {
            self.resolve(&u, SubscribeOutcome::Degraded);
        }
    }

    /// One connection per master of the current map; connections to addresses that are no
    /// longer masters are closed; every wanted channel is subscribed at its owner.
    fn reconcile_shards(&mut self) {
        let masters: Vec<String> = self.map.masters().to_vec();
        let gone: Vec<String> = self
            .shards
            .keys()
            .filter(|a| !masters.contains(a))
            .cloned()
            .collect();
        for addr in gone {
            if let Some(s) = self.shards.remove(&addr) {
                s.cancel.cancel();
                if !s.subscribed.is_empty() || !s.pending.is_empty() {
                    self.healing = true;
                }
            }
        }
        for addr in masters {
            if !self.shards.contains_key(&addr) {
                let shard = self.spawn_shard(&addr);
                self.shards.insert(addr, shard);
            }
        }
        self.sync_all();
    }

    /// Moves every wanted channel to its owner: unsubscribed where it no longer belongs,
    /// subscribed where it is missing.
    fn sync_all(&mut self) {
        let mut wanted: Vec<String> = self
            .refcounts
            .keys()
            .map(|u| self.channels.user(u))
            .collect();
        wanted.push(self.channels.broadcast.clone());
        let mut subs: HashMap<String, Vec<String>> = HashMap::new();
        let mut unsubs: HashMap<String, Vec<String>> = HashMap::new();
        let map = self.map.clone();
        for (addr, shard) in self.shards.iter_mut() {
            let misplaced: Vec<String> = shard
                .subscribed
                .iter()
                .chain(shard.pending.iter())
                .filter(|c| map.owner_of(c) != Some(addr.as_str()))
                .cloned()
                .collect();
            for c in misplaced {
                shard.subscribed.remove(&c);
                shard.pending.remove(&c);
                if shard.up {
                    unsubs.entry(addr.clone()).or_default().push(c);
                }
            }
        }
        for channel in wanted {
            let Some(owner) = map.owner_of(&channel) else {
                continue;
            };
            if let Some(shard) = self.shards.get_mut(owner) {
                if shard.up
                    && !shard.subscribed.contains(&channel)
                    && !shard.pending.contains(&channel)
                {
                    shard.pending.insert(channel.clone());
                    subs.entry(owner.to_owned()).or_default().push(channel);
                }
            }
        }
        for (addr, chans) in unsubs {
            self.send(&addr, ShardCmd::Unsubscribe(chans));
        }
        for (addr, chans) in subs {
            self.send(&addr, ShardCmd::Subscribe(chans));
        }
    }

    fn addr_of(&self, id: u64) -> Option<String> {
        self.shards
            .iter()
            .find(|(_, s)| s.id == id)
            .map(|(a, _)| a.clone())
    }

    fn event(&mut self, ev: ShardEvent) {
        match ev {
            ShardEvent::Topology(map) => {
                self.refreshing = false;
                let period = if self.healing || !self.shared.connected.load(Ordering::Acquire) {
                    REFRESH_HEALING
                } else {
                    REFRESH_HEALTHY
                };
                self.next_refresh = Instant::now() + period;
                if let Some(map) = map {
                    if map != self.map {
                        tracing::info!(node_id = %self.node_id, masters = ?map.masters(), "cluster slot map changed");
                        self.map = map;
                    }
                }
                self.reconcile_shards();
            }
            ShardEvent::Up { id } => {
                let Some(addr) = self.addr_of(id) else { return };
                if let Some(s) = self.shards.get_mut(&addr) {
                    s.up = true;
                    s.subscribed.clear();
                    s.pending.clear();
                }
                self.sync_all();
            }
            ShardEvent::Subscribed { id, channel } => {
                let Some(addr) = self.addr_of(id) else { return };
                let belongs =
                    self.wanted(&channel) && self.owner(&channel).as_deref() == Some(addr.as_str());
                if let Some(s) = self.shards.get_mut(&addr) {
                    s.pending.remove(&channel);
                    if belongs {
                        s.subscribed.insert(channel.clone());
                    }
                }
                if belongs {
                    if let Some(user) = channel.strip_prefix(self.channels.user_prefix.as_str()) {
                        let user = user.to_owned();
                        self.resolve(&user, SubscribeOutcome::Confirmed);
                    }
                } else {
                    self.send(&addr, ShardCmd::Unsubscribe(vec![channel]));
                }
            }
            ShardEvent::Dropped { id, channel } => {
                let Some(addr) = self.addr_of(id) else { return };
                if let Some(s) = self.shards.get_mut(&addr) {
                    s.subscribed.remove(&channel);
                    s.pending.remove(&channel);
                }
                if self.wanted(&channel) {
                    tracing::info!(node_id = %self.node_id, shard = %addr, %channel, "cluster unsubscribed a channel (its slot moved); refreshing the slot map");
                    self.healing = true;
                    self.next_refresh = Instant::now();
                }
            }
            ShardEvent::Refused {
                id,
                channels,
                error,
            } => {
                let Some(addr) = self.addr_of(id) else { return };
                tracing::warn!(node_id = %self.node_id, shard = %addr, error = %error, channels = channels.len(), "cluster refused a subscription; refreshing the slot map");
                if let Some(s) = self.shards.get_mut(&addr) {
                    for c in &channels {
                        s.pending.remove(c);
                    }
                }
                for c in &channels {
                    if let Some(user) = c.strip_prefix(self.channels.user_prefix.as_str()) {
                        let user = user.to_owned();
                        self.resolve(&user, SubscribeOutcome::Degraded);
                    }
                }
                self.healing = true;
                // Not at once: a refusal that persists must not spin.
                self.next_refresh = self.next_refresh.min(Instant::now() + REFRESH_HEALING);
            }
            ShardEvent::Lost { id, reason } => {
                let Some(addr) = self.addr_of(id) else { return };
                tracing::warn!(node_id = %self.node_id, shard = %addr, reason = %reason, "cluster shard connection lost; resubscribing and resyncing when whole");
                if let Some(s) = self.shards.get_mut(&addr) {
                    s.up = false;
                    s.subscribed.clear();
                    s.pending.clear();
                }
                self.shard_down(&addr);
            }
        }
    }

    /// Refreshes the slot map in a task of its own; the result comes back as an event.
    fn start_refresh(&mut self) {
        self.refreshing = true;
        let topo = self.topo.clone();
        let events = self.events_tx.clone();
        let node_id = self.node_id.clone();
        tokio::spawn(async move {
            let map = match topo.refresh().await {
                Ok(m) => Some(m),
                Err(e) => {
                    tracing::debug!(node_id = %node_id, error = %e, "cluster slot map refresh failed");
                    None
                }
            };
            let _ = events.send(ShardEvent::Topology(map)).await;
        });
    }

    /// Connected: every slot has a master and every master's connection is up. Healed: also
    /// every wanted channel confirmed at its owner (checked only while healing, and only once
    /// nothing is pending). Healing ends with a resync of every socket.
    fn check_whole(&mut self) {
        let connected = self.map.is_complete()
            && self
                .map
                .masters()
                .iter()
                .all(|m| self.shards.get(m).is_some_and(|s| s.up));
        let whole = connected
            && ((!self.healing && !self.initial)
                || (!self.shards.values().any(|s| !s.pending.is_empty())
                    && self.all_wanted_confirmed()));
        if whole {
            self.initial = false;
        }
        if whole && self.healing {
            self.healing = false;
            self.shared
                .metrics
                .reconnects
                .fetch_add(1, Ordering::Relaxed);
            self.shared.metrics.resyncs.fetch_add(1, Ordering::Relaxed);
            tracing::info!(node_id = %self.node_id, users = self.refcounts.len(), "cluster bus whole again (every shard connected and re-subscribed); resyncing all sockets");
            self.shared.sink.resync_all();
        }
        self.shared.connected.store(whole, Ordering::Release);
        if *self.whole_tx.borrow() != whole {
            let _ = self.whole_tx.send(whole);
        }
    }

    fn all_wanted_confirmed(&self) -> bool {
        let ok = |c: &str| {
            self.map
                .owner_of(c)
                .and_then(|o| self.shards.get(o))
                .is_some_and(|s| s.subscribed.contains(c))
        };
        ok(&self.channels.broadcast) && self.refcounts.keys().all(|u| ok(&self.channels.user(u)))
    }
}
