//! Records first delivery (`delivered_at`, `user_state.delivered_seq`) off the socket path:
//! sockets report (user, seq) into a bounded queue; a task coalesces to the highest seq per
//! user and writes a batch every flush interval (`HERALD_DELIVERY_FLUSH_MS`). Overflow policy:
//! drop the mark (counted in `herald_delivery_marks_dropped_total`); a later delivery to the
//! same user covers it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use herald_store::Store;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

const QUEUE: usize = 65_536;
const MAX_BATCH: usize = 5_000;
/// Users per statement (and transaction): each statement holds its users' `user_state` row
/// locks until it commits, and publishes to those users wait for them; short statements keep
/// that wait short.
const STATEMENT_USERS: usize = 500;

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
    ) -> DeliveryTracker {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(rx, store, metrics.clone(), every, stop));
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
    let mut pending: HashMap<Arc<str>, i64> = HashMap::new();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Some((user, seq)) => {
                    let e = pending.entry(user).or_insert(seq);
                    *e = (*e).max(seq);
                    if pending.len() >= MAX_BATCH {
                        flush(&store, &metrics, &mut pending).await;
                    }
                }
                None => break,
            },
            _ = tick.tick() => flush(&store, &metrics, &mut pending).await,
            _ = stop.cancelled() => break,
        }
    }
    flush(&store, &metrics, &mut pending).await;
}

async fn flush(store: &Store, metrics: &Metrics, pending: &mut HashMap<Arc<str>, i64>) {
    if pending.is_empty() {
        return;
    }
    let batch: Vec<(String, i64)> = pending.drain().map(|(u, s)| (u.to_string(), s)).collect();
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
