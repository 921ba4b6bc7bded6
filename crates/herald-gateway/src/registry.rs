//! The node's local registry of sockets, keyed by user.
//!
//! Fan-out never waits on a socket: each connection has a bounded queue and an event is
//! offered with `try_send`. A full queue means the client is not reading fast enough; the
//! connection is then cancelled (closed with 4100 `slow_consumer`) and catches up from
//! PostgreSQL when it reconnects. Every shard lock is held only for map operations and
//! non-blocking sends, never across an `.await`.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytestring::ByteString;
use herald_core::FanoutSink;
use herald_protocol::bus::BusMessage;
use herald_protocol::ws::ServerMessage;
use herald_protocol::Broadcast;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

const SHARDS: usize = 64;

/// A live notification, serialised once per node and shared by every local socket of the user.
#[derive(Debug)]
pub struct LiveNotification {
    pub seq: i64,
    pub frame: ByteString,
}

/// What the registry hands a socket task.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// A live notification: the socket de-duplicates by seq and fills gaps from the store.
    Live(Arc<LiveNotification>),
    /// A ready-made event frame (`read`, `global_notification`).
    Frame(ByteString),
    /// Catch up from the store: the bus may have lost messages.
    Sync,
}

/// The registry's handle on one socket.
#[derive(Clone)]
pub struct ConnHandle {
    pub id: u64,
    tx: mpsc::Sender<Outbound>,
    /// Cancelled when the queue overflows (slow consumer).
    pub kill: CancellationToken,
    /// Highest seq written to this socket; read by the reconcile loop.
    pub delivered: Arc<AtomicI64>,
}

impl ConnHandle {
    pub fn new(id: u64, queue: usize) -> (ConnHandle, mpsc::Receiver<Outbound>) {
        let (tx, rx) = mpsc::channel(queue);
        (
            ConnHandle {
                id,
                tx,
                kill: CancellationToken::new(),
                delivered: Arc::new(AtomicI64::new(0)),
            },
            rx,
        )
    }

    /// Offers an event without waiting. Returns false when the socket was killed as slow.
    fn offer(&self, ev: Outbound) -> bool {
        match self.tx.try_send(ev) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.kill.cancel();
                false
            }
            // The socket task is ending; it unregisters itself.
            Err(mpsc::error::TrySendError::Closed(_)) => true,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct TooManySockets;

type Shard = HashMap<Arc<str>, Vec<ConnHandle>>;

pub struct Registry {
    shards: Box<[Mutex<Shard>]>,
    hasher: std::collections::hash_map::RandomState,
    total: AtomicUsize,
    max_per_user: usize,
    metrics: Arc<Metrics>,
}

impl Registry {
    pub fn new(max_per_user: usize, metrics: Arc<Metrics>) -> Registry {
        Registry {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: Default::default(),
            total: AtomicUsize::new(0),
            max_per_user,
            metrics,
        }
    }

    fn shard(&self, user: &str) -> MutexGuard<'_, Shard> {
        let idx = (self.hasher.hash_one(user) as usize) % SHARDS;
        // A poisoned shard only means another thread panicked mid-operation on a plain map;
        // the map itself is still consistent, so keep serving.
        self.shards[idx].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a socket for `user`; refuses beyond the per-user cap.
    pub fn register(&self, user: &Arc<str>, conn: ConnHandle) -> Result<(), TooManySockets> {
        let mut shard = self.shard(user);
        let conns = shard.entry(user.clone()).or_default();
        if conns.len() >= self.max_per_user {
            return Err(TooManySockets);
        }
        conns.push(conn);
        self.total.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    pub fn unregister(&self, user: &str, conn_id: u64) {
        let mut shard = self.shard(user);
        if let Some(conns) = shard.get_mut(user) {
            let before = conns.len();
            conns.retain(|c| c.id != conn_id);
            if conns.len() < before {
                self.total.fetch_sub(1, Ordering::Relaxed);
            }
            if conns.is_empty() {
                shard.remove(user);
            }
        }
    }

    pub fn total(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    fn conns_of(&self, user: &str) -> Vec<ConnHandle> {
        self.shard(user).get(user).cloned().unwrap_or_default()
    }

    fn offer_all(&self, conns: &[ConnHandle], ev: &Outbound) {
        for c in conns {
            if !c.offer(ev.clone()) {
                self.metrics
                    .closes
                    .with_label_values(&["slow_consumer_queue_full"])
                    .inc();
            }
        }
    }

    /// Every user held here with the lowest seq delivered to any of its sockets.
    pub fn delivered_watermarks(&self) -> Vec<(Arc<str>, i64)> {
        let mut out = Vec::with_capacity(self.total());
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            for (user, conns) in shard.iter() {
                let min = conns
                    .iter()
                    .map(|c| c.delivered.load(Ordering::Relaxed))
                    .min()
                    .unwrap_or(0);
                out.push((user.clone(), min));
            }
        }
        out
    }

    /// Asks every socket of `user` that is behind `latest` to catch up from the store.
    pub fn sync_user_if_behind(&self, user: &str, latest: i64) -> usize {
        let conns: Vec<ConnHandle> = self
            .conns_of(user)
            .into_iter()
            .filter(|c| c.delivered.load(Ordering::Relaxed) < latest)
            .collect();
        self.offer_all(&conns, &Outbound::Sync);
        conns.len()
    }

    fn all_conns(&self) -> Vec<ConnHandle> {
        let mut out = Vec::with_capacity(self.total());
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            out.extend(shard.values().flatten().cloned());
        }
        out
    }
}

impl FanoutSink for Registry {
    fn user_event(&self, user_id: &str, msg: BusMessage) {
        let conns = self.conns_of(user_id);
        if conns.is_empty() {
            return;
        }
        let ev = match msg {
            BusMessage::Notification {
                notification,
                unread_count,
                version,
            } => {
                let seq = notification.seq;
                let frame = ServerMessage::Notification {
                    notification,
                    unread_count,
                    version,
                }
                .to_json();
                Outbound::Live(Arc::new(LiveNotification {
                    seq,
                    frame: frame.into(),
                }))
            }
            BusMessage::Read {
                ids,
                up_to_seq,
                read_at,
                unread_count,
                version,
            } => Outbound::Frame(
                ServerMessage::Read {
                    ids,
                    up_to_seq,
                    read_at,
                    unread_count,
                    version,
                }
                .to_json()
                .into(),
            ),
            BusMessage::Broadcast { .. } | BusMessage::Probe { .. } => return,
        };
        self.offer_all(&conns, &ev);
    }

    fn broadcast(&self, broadcast: Arc<Broadcast>) {
        let frame: ByteString = ServerMessage::Global {
            notification: (*broadcast).clone(),
        }
        .to_json()
        .into();
        let ev = Outbound::Frame(frame);
        // Offer under each shard lock in turn: try_send never blocks.
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            for c in shard.values().flatten() {
                if !c.offer(ev.clone()) {
                    self.metrics
                        .closes
                        .with_label_values(&["slow_consumer_queue_full"])
                        .inc();
                }
            }
        }
    }

    fn resync_all(&self) {
        let conns = self.all_conns();
        tracing::info!(
            sockets = conns.len(),
            "bus resync: catching every socket up from the store"
        );
        self.offer_all(&conns, &Outbound::Sync);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(max: usize) -> Registry {
        Registry::new(max, Arc::new(Metrics::new()))
    }

    #[test]
    fn per_user_cap_and_unregister() {
        let r = reg(2);
        let u: Arc<str> = Arc::from("u");
        let (a, _ra) = ConnHandle::new(1, 4);
        let (b, _rb) = ConnHandle::new(2, 4);
        let (c, _rc) = ConnHandle::new(3, 4);
        r.register(&u, a).unwrap();
        r.register(&u, b).unwrap();
        assert_eq!(r.register(&u, c), Err(TooManySockets));
        assert_eq!(r.total(), 2);
        r.unregister("u", 1);
        r.unregister("u", 2);
        r.unregister("u", 2);
        assert_eq!(r.total(), 0);
        assert!(r.delivered_watermarks().is_empty());
    }

    #[test]
    fn full_queue_kills_only_the_slow_socket() {
        let r = reg(8);
        let u: Arc<str> = Arc::from("u");
        let (slow, _slow_rx) = ConnHandle::new(1, 1);
        let (fast, mut fast_rx) = ConnHandle::new(2, 16);
        let slow_kill = slow.kill.clone();
        let fast_kill = fast.kill.clone();
        r.register(&u, slow).unwrap();
        r.register(&u, fast).unwrap();
        for _ in 0..3 {
            r.resync_all();
        }
        assert!(slow_kill.is_cancelled());
        assert!(!fast_kill.is_cancelled());
        let mut got = 0;
        while fast_rx.try_recv().is_ok() {
            got += 1;
        }
        assert_eq!(got, 3);
    }
}
