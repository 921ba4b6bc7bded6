//! Group commit for the publish API. Publishes without an idempotency key go through one
//! queue; a task takes whatever is queued (up to `MAX_ROWS` recipients) and commits it as one
//! statement, so concurrent publishes share one transaction and one WAL flush, then fans the
//! whole batch out in one Redis pipeline (one round trip instead of one per call). There is no
//! artificial wait: a lone publish is committed at once, and batches only grow while up to
//! [`in_flight_for_pool`] earlier batches are still committing. Each caller is answered after
//! its batch is committed and its fan-out has finished or the fan-out wait has passed
//! ([`Fanout::send`]). Overflow policy: when `QUEUE` publishes are already waiting, a new one
//! is refused with 503 `service_unavailable` (the caller retries).

use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_bus::Bus;
use herald_core::NewNotification;
use herald_protocol::bus::{BusMessage, LiveFrame};
use herald_protocol::http::{PublishResponse, PublishedItem};
use herald_store::{Committed, Published, Store, StoreError};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::batching::next_batch;
use crate::metrics::Metrics;

const QUEUE: usize = 8_192;
const MAX_ROWS: usize = 2_000;
/// Batches committing at once, at most. Fewer, larger batches mean fewer statements and WAL
/// flushes, but one batch at a time leaves PostgreSQL idle while the node encodes and fans
/// out. 2 beat 4 with a small pool and matched it with the default one; 1 lost with many
/// recipients per call (docs/performance.md, "Measured choices in the code").
const IN_FLIGHT: usize = 2;

/// In-flight batches for a database pool of `pool_size` connections: [`IN_FLIGHT`], and
/// always at least one connection fewer than the pool, so a batch never holds its slot while
/// waiting for a connection and the connect-time reads and delivery marks still get one.
pub fn in_flight_for_pool(pool_size: usize) -> usize {
    IN_FLIGHT.min(pool_size.saturating_sub(1)).max(1)
}

/// The response and how many notifications it created (already fanned out).
type Created = (PublishResponse, usize);

/// The publish response body for what one request committed. A keyed publish also stores it
/// as its idempotency record, replayed byte for byte to a retry: do not change its shape.
pub fn response_body(c: &Committed) -> PublishResponse {
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

struct Job {
    n: NewNotification,
    queued: Instant,
    /// The answer, with when it was sent (the `reply` stage: until the caller's task runs).
    reply: oneshot::Sender<(Result<Created, StoreError>, Instant)>,
}

/// Fan-outs still running after their publishes were answered, at most. Each ends within the
/// bus's publish timeout; past this many (Redis hung under load), a late fan-out is abandoned
/// and its notifications reach their sockets through reconcile.
const LATE_FANOUTS: usize = 256;

/// Hands committed notifications to the bus. Best-effort: the rows are durable, so a failed
/// Redis publish is counted and logged, and receivers catch up through reconcile or their
/// next connect.
#[derive(Clone)]
pub struct Fanout {
    pub bus: Bus,
    pub metrics: Arc<Metrics>,
    /// `HERALD_FAULT_SKIP_FANOUT`: commit but never publish (fault-injection tests).
    pub skip: bool,
    /// `HERALD_FANOUT_WAIT_MS`: how long [`Fanout::send`] waits for the bus.
    pub wait: Duration,
    /// Places for late fan-outs ([`LATE_FANOUTS`]).
    pub late: Arc<Semaphore>,
    /// The node's background tasks: a late fan-out is one, so shutdown waits for it.
    pub tasks: TaskTracker,
}

impl Fanout {
    pub fn late_budget() -> Arc<Semaphore> {
        Arc::new(Semaphore::new(LATE_FANOUTS))
    }

    /// Publishes committed notifications on the bus, waiting at most the fan-out wait: a
    /// hung Redis must not hold the publish acknowledgements of rows already committed.
    /// A fan-out still running then finishes in the background (`continued`), or, with
    /// [`LATE_FANOUTS`] already late, is abandoned (`abandoned`); either way the
    /// notifications reach their sockets at the latest at the next reconcile pass.
    pub async fn send(&self, items: Vec<Published>) {
        let n = items.len() as u64;
        self.metrics.published.inc_by(n);
        if self.skip {
            tracing::warn!("fault injection: fan-out skipped after commit");
            return;
        }
        let msgs = items
            .into_iter()
            .map(|p| {
                (
                    p.notification.user_id.clone(),
                    BusMessage::Live(LiveFrame::render(p.notification, p.unread_count, p.version)),
                )
            })
            .collect();
        // Polled here first; moved to a task of its own only if it outlasts the wait (so the
        // common case spawns nothing). Boxed, so it can move while in progress.
        let bus = self.bus.clone();
        let metrics = self.metrics.clone();
        let mut publish = Box::pin(async move {
            if let Err(e) = bus.publish(msgs).await {
                metrics.bus_publish_errors.inc();
                tracing::warn!(error = %e, "fan-out failed after commit; receivers will catch up from the store");
            }
        });
        if tokio::time::timeout(self.wait, &mut publish).await.is_ok() {
            return;
        }
        match self.late.clone().try_acquire_owned() {
            Ok(place) => {
                self.metrics
                    .fanout_late
                    .with_label_values(&["continued"])
                    .inc_by(n);
                self.tasks.spawn(async move {
                    publish.await;
                    drop(place);
                });
            }
            Err(_) => {
                self.metrics
                    .fanout_late
                    .with_label_values(&["abandoned"])
                    .inc_by(n);
                tracing::warn!(
                    notifications = n,
                    "fan-out abandoned: too many late fan-outs (Redis hung?); reconcile delivers"
                );
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the publish queue is full")]
    QueueFull,
    #[error("the publisher has stopped")]
    Stopped,
}

#[derive(Clone)]
pub struct Publisher {
    tx: mpsc::Sender<Job>,
    fanout: Fanout,
}

impl Publisher {
    /// `in_flight`: batches committing at once ([`in_flight_for_pool`]).
    pub fn start(
        store: Store,
        fanout: Fanout,
        in_flight: usize,
        stop: CancellationToken,
    ) -> Publisher {
        let (tx, rx) = mpsc::channel(QUEUE);
        fanout
            .tasks
            .spawn(run(rx, store, fanout.clone(), in_flight, stop));
        Publisher { tx, fanout }
    }

    /// The fan-out the batches use, for publishes that commit elsewhere (keyed ones).
    pub fn fanout(&self) -> &Fanout {
        &self.fanout
    }

    pub async fn publish(&self, n: NewNotification) -> Result<Created, PublishError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .try_send(Job {
                n,
                queued: Instant::now(),
                reply,
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => PublishError::QueueFull,
                mpsc::error::TrySendError::Closed(_) => PublishError::Stopped,
            })?;
        let (result, answered) = answer.await.map_err(|_| PublishError::Stopped)?;
        self.fanout
            .metrics
            .publish_stages
            .reply
            .observe(answered.elapsed().as_secs_f64());
        Ok(result?)
    }
}

async fn run(
    mut rx: mpsc::Receiver<Job>,
    store: Store,
    fanout: Fanout,
    in_flight: usize,
    stop: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(in_flight.max(1)));
    while let Some((permit, jobs)) =
        next_batch(&mut rx, &stop, &permits, MAX_ROWS, |j| j.n.recipients.len()).await
    {
        let store = store.clone();
        let fanout = fanout.clone();
        tokio::spawn(async move {
            let m = &fanout.metrics;
            let stages = &m.publish_stages;
            let started = Instant::now();
            let mut rows = 0;
            for job in &jobs {
                stages
                    .queue
                    .observe(started.duration_since(job.queued).as_secs_f64());
                rows += job.n.recipients.len();
            }
            m.publish_batch_rows.observe(rows as f64);
            let refs: Vec<&NewNotification> = jobs.iter().map(|j| &j.n).collect();
            let result = store.publish_batch(&refs).await;
            stages.commit.observe(started.elapsed().as_secs_f64());
            match result {
                Ok(created) => {
                    let mut all = Vec::new();
                    let mut replies = Vec::with_capacity(jobs.len());
                    for (job, committed) in jobs.into_iter().zip(created) {
                        let response = response_body(&committed);
                        replies.push((job.reply, response, committed.items.len()));
                        all.extend(committed.items);
                    }
                    let sending = Instant::now();
                    fanout.send(all).await;
                    stages.fanout.observe(sending.elapsed().as_secs_f64());
                    for (reply, response, n) in replies {
                        let _ = reply.send((Ok((response, n)), Instant::now()));
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, publishes = jobs.len(), "publish batch failed");
                    for job in jobs {
                        let _ = job.reply.send((Err(e.clone()), Instant::now()));
                    }
                }
            }
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::in_flight_for_pool;

    #[test]
    fn in_flight_batches_leave_a_pool_connection_free() {
        assert_eq!(in_flight_for_pool(1), 1, "a pool of one still commits");
        assert_eq!(in_flight_for_pool(2), 1);
        assert_eq!(in_flight_for_pool(3), 2);
        assert_eq!(in_flight_for_pool(16), 2);
    }
}
