//! Records first delivery (`delivered_at`, `user_state.delivered_seq`) off the socket path:
//! sockets report (user, seq) into a bounded queue; a task coalesces to the highest seq per
//! user and writes a batch every flush interval (`HERALD_DELIVERY_FLUSH_MS`). A busy user, one
//! marked within the last second, is marked at most once a second: [`Marks`] spreads busy users
//! over the intervals of that second by a hash of their id, so their marks never leave as one
//! burst. Overflow policy: drop the mark (counted in `herald_delivery_marks_dropped_total`); a
//! later delivery to the same user covers it.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::Duration;

use herald_store::Store;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics::Metrics;

const QUEUE: usize = 65_536;
/// A flush starts early once this many users have come into the pending set since the last
/// one (busy users held back for their turn do not count: they would start one flush after
/// another).
const MAX_BATCH: usize = 5_000;
/// Users per statement (and transaction): each statement holds its users' `user_state` row
/// locks until it commits, and publishes to those users wait for them; short statements keep
/// that wait short.
const STATEMENT_USERS: usize = 500;
/// A user marked within this window is busy and is marked at most once per window. At the max
/// rate every user gets a notification every interval, and one mark per user per interval
/// makes the delivery marks a large share of PostgreSQL's CPU (docs/performance.md, "What
/// limits each figure" and "Measured choices in the code").
const BUSY_WINDOW: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct DeliveryTracker {
    tx: mpsc::Sender<(Arc<str>, i64)>,
    metrics: Arc<Metrics>,
}

impl DeliveryTracker {
    pub fn start(
        store: Store,
        metrics: Arc<Metrics>,
        every: Duration,
        stop: CancellationToken,
        tasks: &TaskTracker,
    ) -> DeliveryTracker {
        let (tx, rx) = mpsc::channel(QUEUE);
        tasks.spawn(run(rx, store, metrics.clone(), every, stop));
        DeliveryTracker { tx, metrics }
    }

    pub fn record(&self, user: &Arc<str>, seq: i64) {
        if self.tx.try_send((user.clone(), seq)).is_err() {
            self.metrics.delivery_marks_dropped.inc();
        }
    }
}

async fn run(
    mut rx: mpsc::Receiver<(Arc<str>, i64)>,
    store: Store,
    metrics: Arc<Metrics>,
    every: Duration,
    stop: CancellationToken,
) {
    let mut marks = Marks::new(every);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Some((user, seq)) => {
                    marks.record(user, seq);
                    if marks.overflowing() {
                        flush(&store, &metrics, marks.take(false)).await;
                    }
                }
                None => break,
            },
            _ = tick.tick() => {
                marks.next_tick();
                flush(&store, &metrics, marks.take(false)).await;
                metrics.delivery_flushes.inc();
            }
            _ = stop.cancelled() => break,
        }
    }
    // Shutting down (the sockets are closed by now): every mark still queued is written too.
    while let Ok((user, seq)) = rx.try_recv() {
        marks.record(user, seq);
    }
    flush(&store, &metrics, marks.take(true)).await;
}

async fn flush(store: &Store, metrics: &Metrics, batch: Vec<(String, i64)>) {
    for chunk in batch.chunks(STATEMENT_USERS) {
        if let Err(e) = store.mark_delivered(chunk).await {
            metrics
                .store_errors
                .with_label_values(&["mark_delivered"])
                .inc();
            tracing::warn!(error = %e, users = chunk.len(), "could not record deliveries; dropped");
        }
    }
}

/// The marks waiting for a flush, and which of them a flush takes: every user not marked
/// within the last [`BUSY_WINDOW`]; a busy user only on its turn, one interval of the window
/// chosen by a hash of its id.
struct Marks {
    /// Highest delivered seq per user since that user's last mark.
    pending: HashMap<Arc<str>, i64>,
    /// Users marked within the last `window` ticks, with the tick of their last mark.
    recent: HashMap<Arc<str>, u64>,
    /// Ticks in [`BUSY_WINDOW`]; 1 (nobody is held back) when the interval is that long.
    window: u64,
    tick: u64,
    /// Pending users the last flush held back.
    held: usize,
}

impl Marks {
    fn new(every: Duration) -> Marks {
        let window = BUSY_WINDOW.as_millis() / every.as_millis().max(1);
        Marks {
            pending: HashMap::new(),
            recent: HashMap::new(),
            window: u64::try_from(window).unwrap_or(u64::MAX).max(1),
            tick: 0,
            held: 0,
        }
    }

    fn record(&mut self, user: Arc<str>, seq: i64) {
        let e = self.pending.entry(user).or_insert(seq);
        *e = (*e).max(seq);
    }

    /// [`MAX_BATCH`] users came into the pending set since the last flush.
    fn overflowing(&self) -> bool {
        self.pending.len() >= self.held + MAX_BATCH
    }

    /// A flush interval has passed: forget marks older than the window.
    fn next_tick(&mut self) {
        self.tick += 1;
        let (tick, window) = (self.tick, self.window);
        self.recent.retain(|_, at| tick - *at < window);
    }

    /// The marks to write now, taken out of the pending set: every pending one with `all`
    /// (shutdown), else those of users who are not busy, or whose turn it is and who were not
    /// marked in this interval already (an early flush can come between two ticks).
    fn take(&mut self, all: bool) -> Vec<(String, i64)> {
        let (tick, window) = (self.tick, self.window);
        let turn = self.recent.hasher().clone();
        let recent = &mut self.recent;
        let mut due = Vec::new();
        self.pending.retain(|user, seq| {
            let now = all
                || match recent.get(user) {
                    None => true,
                    Some(&at) => at != tick && turn.hash_one(user).wrapping_add(tick) % window == 0,
                };
            if now {
                due.push((user.to_string(), *seq));
                recent.insert(user.clone(), tick);
            }
            !now
        });
        self.held = self.pending.len();
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take_users(m: &mut Marks) -> Vec<String> {
        let mut users: Vec<String> = m.take(false).into_iter().map(|(u, _)| u).collect();
        users.sort();
        users
    }

    #[test]
    fn a_user_not_marked_within_the_window_is_marked_at_the_next_flush() {
        let mut m = Marks::new(Duration::from_millis(200));
        assert_eq!(m.window, 5);
        m.record("a".into(), 1);
        m.record("a".into(), 3);
        m.record("a".into(), 2);
        m.next_tick();
        assert_eq!(
            m.take(false),
            vec![("a".to_string(), 3)],
            "highest seq wins"
        );
        assert_eq!(m.pending.len(), 0);
        // Quiet for a whole window: no longer busy, so marked at once again.
        for _ in 0..5 {
            m.next_tick();
        }
        m.record("a".into(), 4);
        assert_eq!(m.take(false), vec![("a".to_string(), 4)]);
    }

    #[test]
    fn a_busy_user_is_marked_once_per_window_and_never_loses_its_mark() {
        let mut m = Marks::new(Duration::from_millis(200));
        let users: Vec<String> = (0..1000).map(|i| format!("user-{i}")).collect();
        // Every user gets a delivery in every interval for 5 s (25 intervals).
        let mut marks: HashMap<String, u32> = HashMap::new();
        let mut per_flush = Vec::new();
        for t in 0..25 {
            for u in &users {
                m.record(Arc::from(u.as_str()), t + 1);
            }
            m.next_tick();
            let due = m.take(false);
            per_flush.push(due.len());
            for (u, seq) in due {
                assert_eq!(seq, t + 1, "a mark carries the latest seq");
                *marks.entry(u).or_default() += 1;
            }
        }
        // First interval: everybody (nobody was busy). Then each user once per window, with
        // one extra at most when its first turn came right after its first mark.
        assert_eq!(per_flush[0], 1000);
        for u in &users {
            let n = marks[u];
            assert!((5..=6).contains(&n), "{u}: {n} marks in 25 intervals");
        }
        // Spread: no interval after the first writes more than ~1/5 of the users (hash
        // buckets of 1,000 users vary; 300 is far from the 1,000 of a burst).
        assert!(
            per_flush[1..].iter().all(|&n| (100..=300).contains(&n)),
            "{per_flush:?}"
        );
        // What is still pending goes out with `all` (shutdown): nothing is lost.
        let rest = m.take(true);
        assert_eq!(rest.len(), 1000 - per_flush[24]);
        assert!(rest.iter().all(|(_, seq)| *seq == 25));
        assert_eq!(m.pending.len(), 0);
    }

    /// More busy users than [`MAX_BATCH`] on one node: the early flush fires for users coming
    /// in, not for the busy ones held back, and nobody is marked twice in one interval.
    #[test]
    fn held_back_users_do_not_start_early_flushes() {
        let mut m = Marks::new(Duration::from_millis(200));
        let users: Vec<Arc<str>> = (0..20_000).map(|i| Arc::from(format!("u{i}"))).collect();
        let mut marks: HashMap<String, u32> = HashMap::new();
        let mut early = Vec::new();
        for t in 0..10 {
            let mut flushes = 0;
            for u in &users {
                m.record(u.clone(), t + 1);
                if m.overflowing() {
                    flushes += 1;
                    for (u, _) in m.take(false) {
                        *marks.entry(u).or_default() += 1;
                    }
                }
            }
            early.push(flushes);
            m.next_tick();
            for (u, _) in m.take(false) {
                *marks.entry(u).or_default() += 1;
            }
        }
        // All 20,000 are new in the first interval: four early flushes of 5,000. In the next
        // ones the busy users come back into an emptied pending set, and an early flush takes
        // only those whose turn it is; once the held ones fill the set, none fire.
        assert_eq!(early[0], 4, "{early:?}");
        assert!(early.iter().all(|&n| n <= 4), "{early:?}");
        assert!(early[3..].iter().all(|&n| n == 0), "{early:?}");
        // 10 intervals are two windows: the first mark, then one or two turns.
        assert!(
            marks.values().all(|&n| (2..=3).contains(&n)),
            "{:?}",
            marks.values().max()
        );
    }

    #[test]
    fn an_interval_as_long_as_the_window_holds_nobody_back() {
        let mut m = Marks::new(Duration::from_secs(5));
        assert_eq!(m.window, 1);
        for t in 1..=3 {
            m.record("a".into(), t);
            m.next_tick();
            assert_eq!(take_users(&mut m), vec!["a".to_string()]);
        }
    }
}
