//! Coalesces the reads of a handshake storm: thousands of sockets ask for their user's
//! counters (`USER_STATES`) and then for the page after their cursor (`AFTER_SEQS`) at once,
//! and one array statement per batch (a primary-key probe per element) costs PostgreSQL and
//! the pool far less than one statement per socket. Like the publisher there is no
//! artificial wait: a lone read runs at once, and batches only grow while `IN_FLIGHT`
//! earlier ones are running. Each counter read still starts after its caller's Redis
//! subscription is confirmed (the caller enqueues only then), so the "subscribe before
//! reading" invariant holds. Overflow policy: when `QUEUE` reads of a kind are waiting, the
//! caller reads on its own.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use herald_protocol::Notification;
use herald_store::{Store, StoreError, UserState};
use prometheus::Histogram;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::batching::next_batch;
use crate::metrics::Metrics;

const QUEUE: usize = 16_384;
const IN_FLIGHT: usize = 2;
/// Users per counter read.
const MAX_STATES: usize = 1_000;
/// Rows a page read may return at most (the sum of its readers' limits): with the default
/// page of 100, 200 readers per statement.
const MAX_PAGE_ROWS: usize = 20_000;

type Reply<V> = oneshot::Sender<Result<V, StoreError>>;
type ReadFuture<V> = Pin<Box<dyn Future<Output = Result<Vec<V>, StoreError>> + Send>>;
/// Reads a batch: one value per key, in the keys' order.
type ReadMany<K, V> = Arc<dyn Fn(Store, Vec<K>) -> ReadFuture<V> + Send + Sync>;

/// One batched read kind: a queue in front of a `ReadMany`.
struct Coalescer<K, V> {
    tx: mpsc::Sender<(K, Reply<V>)>,
    store: Store,
    read: ReadMany<K, V>,
}

impl<K, V> Clone for Coalescer<K, V> {
    fn clone(&self) -> Self {
        Coalescer {
            tx: self.tx.clone(),
            store: self.store.clone(),
            read: self.read.clone(),
        }
    }
}

impl<K: Clone + Send + 'static, V: Send + 'static> Coalescer<K, V> {
    fn start(
        store: Store,
        stop: CancellationToken,
        max: usize,
        weight: fn(&K) -> usize,
        read: ReadMany<K, V>,
        sizes: Histogram,
    ) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let batches = run(rx, store.clone(), stop, max, weight, read.clone(), sizes);
        tokio::spawn(batches);
        Coalescer { tx, store, read }
    }

    async fn get(&self, key: K) -> Result<V, StoreError> {
        let (reply, answer) = oneshot::channel();
        let key = match self.tx.try_send((key.clone(), reply)) {
            Ok(()) => match answer.await {
                Ok(r) => return r,
                // The batch task stopped (shutdown) with our request: read on our own.
                Err(_) => key,
            },
            // Queue full (or closed): read on our own.
            Err(e) => e.into_inner().0,
        };
        let mut one = (self.read)(self.store.clone(), vec![key]).await?;
        one.pop()
            .ok_or_else(|| StoreError::Internal("batched read returned nothing".into()))
    }
}

async fn run<K: Send + 'static, V: Send + 'static>(
    mut rx: mpsc::Receiver<(K, Reply<V>)>,
    store: Store,
    stop: CancellationToken,
    max: usize,
    weight: fn(&K) -> usize,
    read: ReadMany<K, V>,
    sizes: Histogram,
) {
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    while let Some((permit, batch)) =
        next_batch(&mut rx, &stop, &permits, max, |(k, _)| weight(k)).await
    {
        let (keys, replies): (Vec<K>, Vec<Reply<V>>) = batch.into_iter().unzip();
        let n = keys.len();
        sizes.observe(n as f64);
        let fut = read(store.clone(), keys);
        tokio::spawn(async move {
            match fut.await {
                Ok(values) if values.len() == n => {
                    for (reply, v) in replies.into_iter().zip(values) {
                        let _ = reply.send(Ok(v));
                    }
                }
                Ok(values) => {
                    let e = StoreError::Internal(format!(
                        "batched read returned {} values for {n} keys",
                        values.len()
                    ));
                    for reply in replies {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, keys = n, "batched read failed");
                    for reply in replies {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
            drop(permit);
        });
    }
}

/// A page request: user, after seq, limit.
type PageKey = (Arc<str>, i64, i64);

/// The gateway's batched store reads for sockets: counters and catch-up pages (on connect,
/// on `sync`, on a gap).
#[derive(Clone)]
pub struct ReadCoalescer {
    states: Coalescer<Arc<str>, UserState>,
    pages: Coalescer<PageKey, Vec<Notification>>,
}

impl ReadCoalescer {
    pub fn start(store: Store, metrics: &Metrics, stop: CancellationToken) -> ReadCoalescer {
        let sizes = |read: &str| metrics.read_batch_keys.with_label_values(&[read]);
        let read_states: ReadMany<Arc<str>, UserState> = Arc::new(|store, users| {
            Box::pin(async move {
                let refs: Vec<&str> = users.iter().map(|u| &**u).collect();
                let states = store.user_states(&refs).await?;
                Ok(users
                    .iter()
                    .map(|u| states.get(&**u).copied().unwrap_or_default())
                    .collect())
            })
        });
        let read_pages: ReadMany<PageKey, Vec<Notification>> =
            Arc::new(|store, readers| Box::pin(async move { store.after_seqs(&readers).await }));
        ReadCoalescer {
            states: Coalescer::start(
                store.clone(),
                stop.clone(),
                MAX_STATES,
                |_| 1,
                read_states,
                sizes("user_states"),
            ),
            pages: Coalescer::start(
                store,
                stop,
                MAX_PAGE_ROWS,
                |(_, _, limit)| usize::try_from(*limit).unwrap_or(0).max(1),
                read_pages,
                sizes("after_seqs"),
            ),
        }
    }

    /// The user's counters (all zero for an unknown user), read in a shared statement.
    pub async fn user_state(&self, user: &Arc<str>) -> Result<UserState, StoreError> {
        self.states.get(user.clone()).await
    }

    /// The user's notifications after `after`, oldest first, at most `limit`, read in a
    /// shared statement.
    pub async fn after_seq(
        &self,
        user: &Arc<str>,
        after: i64,
        limit: i64,
    ) -> Result<Vec<Notification>, StoreError> {
        self.pages.get((user.clone(), after, limit)).await
    }
}
