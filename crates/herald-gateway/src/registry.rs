//! The node's local registry of sockets, keyed by user.
//!
//! Fan-out never waits on a socket: each connection has a bounded queue and an event is
//! offered without waiting. A full queue means the client is not reading fast enough; the
//! connection is then cancelled (closed with 4100 `slow_consumer`) and catches up from
//! PostgreSQL when it reconnects. Every shard lock is held only for map operations and
//! non-blocking sends, never across an `.await`.

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicI64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytestring::ByteString;
use herald_core::FanoutSink;
use herald_protocol::bus::{BusMessage, LiveFrame, Reject};
use herald_protocol::ws::ServerMessage;
use herald_protocol::{Broadcast, CloseCode};
use tokio::sync::Notify;

use crate::metrics::Metrics;
use crate::revocation::{refuses, Revocations};

const SHARDS: usize = 64;

/// A live notification, serialised once per node and shared by every local socket of the user.
#[derive(Debug)]
pub struct RenderedNotification {
    pub seq: i64,
    pub frame: ByteString,
}

/// What the registry hands a socket task.
#[derive(Debug, Clone)]
pub enum SocketEvent {
    /// A live notification: the socket de-duplicates by seq and fills gaps from the store.
    Notification(Arc<RenderedNotification>),
    /// A ready-made event frame (`read`, `global_notification`).
    Frame(ByteString),
    /// Catch up from the store: the bus may have lost messages.
    Sync,
    /// The node is draining: tell the client to reconnect elsewhere.
    Drain,
}

/// What a socket's registry entry and its task share: one allocation per socket.
///
/// The queue is a `VecDeque` that is released (capacity 0) whenever the task empties it, so an
/// idle socket holds no queue memory; it is bounded by `cap`, and an offer to a full queue
/// kills the socket (overflow policy: close 4100 `slow_consumer`, the client catches up from
/// PostgreSQL when it reconnects).
struct ConnShared {
    queue: Mutex<VecDeque<SocketEvent>>,
    /// Wakes the socket task when the queue goes from empty to non-empty (one permit).
    ready: Notify,
    /// [`ALIVE`], or why the socket must close ([`SLOW`], [`REVOKED`]).
    killed: AtomicU8,
    /// The socket's token's `iat` (unix seconds; [`NO_IAT`] without one), for revocations.
    issued_at: AtomicI64,
    /// Wakes every waiter of [`ConnHandle::killed`].
    kill: Notify,
    /// Highest seq written to this socket; read by the reconcile loop.
    delivered: AtomicI64,
    cap: usize,
}

const ALIVE: u8 = 0;
const SLOW: u8 = 1;
const REVOKED: u8 = 2;
const NO_IAT: i64 = i64::MIN;

/// The registry's handle on one socket.
#[derive(Clone)]
pub struct ConnHandle {
    pub id: u64,
    shared: Arc<ConnShared>,
}

/// The socket task's end of its queue.
pub struct Inbox(Arc<ConnShared>);

/// What became of an offered event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Offered {
    Queued,
    /// The queue was full: this offer killed the socket (it closes with 4100).
    KilledNow,
    /// The socket was already killed: the event is dropped.
    Dropped,
}

impl ConnHandle {
    pub fn new(id: u64, queue: usize) -> (ConnHandle, Inbox) {
        let shared = Arc::new(ConnShared {
            queue: Mutex::new(VecDeque::new()),
            ready: Notify::new(),
            killed: AtomicU8::new(ALIVE),
            issued_at: AtomicI64::new(NO_IAT),
            kill: Notify::new(),
            delivered: AtomicI64::new(0),
            cap: queue.max(1),
        });
        (
            ConnHandle {
                id,
                shared: shared.clone(),
            },
            Inbox(shared),
        )
    }

    /// Offers an event without waiting.
    fn offer(&self, ev: SocketEvent) -> Offered {
        let s = &self.shared;
        if s.killed.load(Ordering::Relaxed) != ALIVE {
            return Offered::Dropped;
        }
        {
            let mut q = s.queue.lock().unwrap_or_else(|p| p.into_inner());
            if q.len() >= s.cap {
                drop(q);
                return if self.kill() {
                    Offered::KilledNow
                } else {
                    Offered::Dropped
                };
            }
            q.push_back(ev);
        }
        s.ready.notify_one();
        Offered::Queued
    }

    /// Marks the socket slow: its task closes it with 4100. True for the call that ended it.
    pub fn kill(&self) -> bool {
        self.end(SLOW)
    }

    /// Marks the socket revoked: its task closes it with 4006.
    pub fn revoke(&self) {
        self.end(REVOKED);
    }

    /// Ends the socket for `why`; true when this call ended it (the first reason stands).
    fn end(&self, why: u8) -> bool {
        let first = self
            .shared
            .killed
            .compare_exchange(ALIVE, why, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        self.shared.kill.notify_waiters();
        self.shared.ready.notify_one();
        first
    }

    pub fn is_killed(&self) -> bool {
        self.shared.killed.load(Ordering::Acquire) != ALIVE
    }

    /// The close code of a killed socket.
    pub fn end_code(&self) -> CloseCode {
        end_code(self.shared.killed.load(Ordering::Acquire))
    }

    /// Records the `iat` of the token the socket now runs on (at connect and on `refresh`).
    pub fn set_issued_at(&self, iat: Option<i64>) {
        self.shared
            .issued_at
            .store(iat.unwrap_or(NO_IAT), Ordering::Release);
    }

    fn issued_at(&self) -> Option<i64> {
        let iat = self.shared.issued_at.load(Ordering::Acquire);
        (iat != NO_IAT).then_some(iat)
    }

    /// Completes once the socket has been killed.
    pub async fn killed(&self) {
        let n = self.shared.kill.notified();
        tokio::pin!(n);
        n.as_mut().enable();
        if self.is_killed() {
            return;
        }
        n.await;
    }

    pub fn delivered(&self) -> i64 {
        self.shared.delivered.load(Ordering::Relaxed)
    }

    pub fn set_delivered(&self, seq: i64) {
        self.shared.delivered.store(seq, Ordering::Relaxed);
    }
}

/// What [`Inbox::recv`] yields.
#[derive(Debug)]
pub enum Recv {
    Event(SocketEvent),
    /// Close with this code: the queue overflowed (4100), or the user's sessions were revoked
    /// (4006).
    Killed(CloseCode),
}

fn end_code(killed: u8) -> CloseCode {
    if killed == REVOKED {
        CloseCode::Revoked
    } else {
        CloseCode::SlowConsumer
    }
}

impl Inbox {
    fn pop(&self) -> Option<SocketEvent> {
        let mut q = self.0.queue.lock().unwrap_or_else(|p| p.into_inner());
        let ev = q.pop_front();
        if q.is_empty() && q.capacity() > 0 {
            *q = VecDeque::new();
        }
        ev
    }

    /// The next event. Cancel-safe: an event is only taken from the queue when returned.
    pub async fn recv(&mut self) -> Recv {
        loop {
            let killed = self.0.killed.load(Ordering::Acquire);
            if killed != ALIVE {
                return Recv::Killed(end_code(killed));
            }
            if let Some(ev) = self.pop() {
                return Recv::Event(ev);
            }
            self.0.ready.notified().await;
        }
    }

    /// Takes an event if one is queued (tests).
    pub fn try_recv(&mut self) -> Option<SocketEvent> {
        self.pop()
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct TooManySockets;

type Shard = HashMap<Arc<str>, Vec<ConnHandle>>;

/// Rejected bus payloads are logged at most once per this interval, with the count since.
const REJECT_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Default)]
struct RejectLog {
    last: Option<std::time::Instant>,
    dropped: u64,
}

pub struct Registry {
    shards: Box<[Mutex<Shard>]>,
    reject_log: Mutex<RejectLog>,
    hasher: std::collections::hash_map::RandomState,
    total: AtomicUsize,
    max_per_user: usize,
    metrics: Arc<Metrics>,
    /// The cut-offs of revoked users (see [`crate::revocation`]).
    pub revocations: Revocations,
}

impl Registry {
    pub fn new(max_per_user: usize, metrics: Arc<Metrics>) -> Registry {
        Registry {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            reject_log: Mutex::new(RejectLog::default()),
            hasher: Default::default(),
            total: AtomicUsize::new(0),
            max_per_user,
            metrics,
            revocations: Revocations::default(),
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

    fn holds(&self, user: &str) -> bool {
        self.shard(user).contains_key(user)
    }

    fn offer_all<'a>(&self, conns: impl IntoIterator<Item = &'a ConnHandle>, ev: &SocketEvent) {
        for c in conns {
            // Each slow socket is counted once, when its queue overflows, not once for every
            // event offered to it after that.
            if c.offer(ev.clone()) == Offered::KilledNow {
                self.metrics
                    .closes
                    .with_label_values(&["slow_consumer_queue_full"])
                    .inc();
            }
        }
    }

    /// Offers `ev` to every socket of `user` (only those behind `behind`, when given) under its
    /// shard lock; offers never block.
    fn offer_user(&self, user: &str, ev: &SocketEvent, behind: Option<i64>) {
        if let Some(conns) = self.shard(user).get(user) {
            let targets = conns
                .iter()
                .filter(|c| behind.is_none_or(|latest| c.delivered() < latest));
            self.offer_all(targets, ev);
        }
    }

    /// Offers `ev` to every socket, under each shard lock in turn.
    fn offer_everyone(&self, ev: &SocketEvent) {
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            self.offer_all(shard.values().flatten(), ev);
        }
    }

    /// Every user held here with the lowest seq delivered to any of its sockets.
    pub fn delivered_watermarks(&self) -> Vec<(Arc<str>, i64)> {
        let mut out = Vec::with_capacity(self.total());
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            for (user, conns) in shard.iter() {
                let min = conns.iter().map(|c| c.delivered()).min().unwrap_or(0);
                out.push((user.clone(), min));
            }
        }
        out
    }

    /// Asks every socket of `user` that is behind `latest` to catch up from the store.
    pub fn sync_user_if_behind(&self, user: &str, latest: i64) {
        self.offer_user(user, &SocketEvent::Sync, Some(latest))
    }

    /// Closes (4006) every socket of `user` whose token a cut-off at `before_us` (unix
    /// microseconds) refuses; returns how many. Never waits.
    pub fn revoke(&self, user: &str, before_us: i64) -> usize {
        let shard = self.shard(user);
        let Some(conns) = shard.get(user) else {
            return 0;
        };
        let mut closed = 0;
        for c in conns {
            if !c.is_killed() && refuses(before_us, c.issued_at()) {
                c.revoke();
                closed += 1;
            }
        }
        closed
    }

    /// Tells every registered socket that the node is draining. Sockets that register later
    /// see [`crate::state::AppState::is_draining`] when their event loop starts.
    pub fn drain_all(&self) {
        self.offer_everyone(&SocketEvent::Drain);
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
        // Render (a read event) only for users held here; the frame is then shared by all
        // their sockets.
        if !self.holds(user_id) {
            return;
        }
        let ev = match msg {
            // Rendered once by the publishing node: forwarded as it is.
            BusMessage::Live(LiveFrame { seq, frame }) => {
                SocketEvent::Notification(Arc::new(RenderedNotification {
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
            } => SocketEvent::Frame(
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
            BusMessage::Inbox {
                action,
                ids,
                unread_count,
                version,
            } => SocketEvent::Frame(
                ServerMessage::Inbox {
                    action,
                    ids,
                    unread_count,
                    version,
                }
                .to_json()
                .into(),
            ),
            BusMessage::Seen { seen_seq, version } => {
                SocketEvent::Frame(ServerMessage::Seen { seen_seq, version }.to_json().into())
            }
            BusMessage::Broadcast { .. }
            | BusMessage::Probe { .. }
            | BusMessage::Revoked { .. } => return,
        };
        self.offer_user(user_id, &ev, None);
    }

    fn broadcast(&self, broadcast: Arc<Broadcast>) {
        let frame: ByteString = ServerMessage::Global {
            notification: (*broadcast).clone(),
        }
        .to_json()
        .into();
        self.offer_everyone(&SocketEvent::Frame(frame));
    }

    fn rejected(&self, reason: Reject, channel: &str) {
        self.metrics
            .bus_frames_rejected
            .with_label_values(&[reason.label()])
            .inc();
        let mut log = self.reject_log.lock().unwrap_or_else(|p| p.into_inner());
        log.dropped += 1;
        let now = std::time::Instant::now();
        if log
            .last
            .is_none_or(|t| now.duration_since(t) >= REJECT_LOG_EVERY)
        {
            tracing::warn!(
                reason = reason.label(),
                %channel,
                dropped_since_last_warning = log.dropped,
                "bus payload rejected and dropped (at most one warning per 10 s; herald_bus_frames_rejected_total counts them all)"
            );
            log.last = Some(now);
            log.dropped = 0;
        }
    }

    fn revoked(&self, user_id: &str) {
        tracing::debug!(user = %user_id, "revocation announced on the bus; refreshing cut-offs");
        self.revocations.wake();
    }

    fn resync_all(&self) {
        // A revocation announced while the bus was away is read now rather than at the next
        // refresh interval.
        self.revocations.wake();
        let conns = self.all_conns();
        tracing::info!(
            sockets = conns.len(),
            "bus resync: catching every socket up from the store"
        );
        self.offer_all(&conns, &SocketEvent::Sync);
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

    #[tokio::test]
    async fn a_drained_queue_holds_no_memory_and_a_kill_wakes_the_task() {
        let (conn, mut inbox) = ConnHandle::new(1, 8);
        for _ in 0..3 {
            assert_eq!(conn.offer(SocketEvent::Sync), Offered::Queued);
        }
        assert!(conn.shared.queue.lock().unwrap().capacity() >= 3);
        for _ in 0..3 {
            assert!(matches!(inbox.recv().await, Recv::Event(SocketEvent::Sync)));
        }
        // Emptied: the VecDeque's allocation is given back.
        assert_eq!(conn.shared.queue.lock().unwrap().capacity(), 0);
        // A waiting task is woken by the kill, even with nothing queued.
        let waiter = tokio::spawn(async move { inbox.recv().await });
        tokio::task::yield_now().await;
        assert!(conn.kill(), "the first kill");
        assert!(!conn.kill(), "a second kill is not a new close");
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("the kill woke the task")
            .expect("task");
        assert!(matches!(got, Recv::Killed(CloseCode::SlowConsumer)));
        // Offers to a killed socket are dropped, and are not another close.
        assert_eq!(conn.offer(SocketEvent::Sync), Offered::Dropped);
    }

    #[test]
    fn a_revocation_closes_only_the_sockets_it_refuses() {
        let r = reg(8);
        let u: Arc<str> = Arc::from("u");
        let (old, mut old_rx) = ConnHandle::new(1, 4);
        let (new, _new_rx) = ConnHandle::new(2, 4);
        let (none, _none_rx) = ConnHandle::new(3, 4);
        old.set_issued_at(Some(100));
        new.set_issued_at(Some(200));
        none.set_issued_at(None);
        for c in [&old, &new, &none] {
            r.register(&u, c.clone()).unwrap();
        }
        assert_eq!(r.revoke("u", 150 * 1_000_000), 2);
        assert_eq!(old.end_code(), CloseCode::Revoked);
        assert!(none.is_killed());
        assert!(!new.is_killed());
        assert_eq!(r.revoke("other", i64::MAX), 0);
        // A revoked socket stays revoked when its queue then overflows.
        old.kill();
        assert!(old_rx.try_recv().is_none());
        assert_eq!(old.end_code(), CloseCode::Revoked);
    }

    #[test]
    fn full_queue_kills_only_the_slow_socket() {
        let r = reg(8);
        let u: Arc<str> = Arc::from("u");
        let (slow, _slow_rx) = ConnHandle::new(1, 1);
        let (fast, mut fast_rx) = ConnHandle::new(2, 16);
        let slow_kill = slow.clone();
        let fast_kill = fast.clone();
        r.register(&u, slow).unwrap();
        r.register(&u, fast).unwrap();
        for _ in 0..3 {
            r.resync_all();
        }
        assert!(slow_kill.is_killed());
        assert!(!fast_kill.is_killed());
        // Three offers overflowed or followed the overflow: one close is counted.
        let closes = r
            .metrics
            .closes
            .with_label_values(&["slow_consumer_queue_full"])
            .get();
        assert_eq!(closes, 1, "each slow socket is counted once");
        let mut got = 0;
        while fast_rx.try_recv().is_some() {
            got += 1;
        }
        assert_eq!(got, 3);
    }
}
