//! Coalesces the connect-time `user_state` reads: a handshake storm asks for thousands of
//! users' counters at once, and one `WHERE user_id = ANY(..)` statement per batch costs
//! PostgreSQL and the pool far less than one statement per socket. Like the publisher there
//! is no artificial wait: a lone read runs at once, and batches only grow while `IN_FLIGHT`
//! earlier ones are running. Each read still starts after its caller's Redis subscription
//! is confirmed (the caller enqueues only then), so the "subscribe before reading" invariant
//! holds. Overflow policy: when `QUEUE` reads are waiting, the caller reads on its own.

use std::sync::Arc;

use herald_store::{Store, StoreError, UserState};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::batching::next_batch;

const QUEUE: usize = 16_384;
const MAX_BATCH: usize = 1_000;
const IN_FLIGHT: usize = 2;

type Reply = oneshot::Sender<Result<UserState, StoreError>>;

#[derive(Clone)]
pub struct StateLoader {
    tx: mpsc::Sender<(Arc<str>, Reply)>,
    store: Store,
}

impl StateLoader {
    pub fn start(store: Store, stop: CancellationToken) -> StateLoader {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(rx, store.clone(), stop));
        StateLoader { tx, store }
    }

    /// The user's counters (all zero for an unknown user), read in a shared statement.
    pub async fn user_state(&self, user: &Arc<str>) -> Result<UserState, StoreError> {
        let (reply, answer) = oneshot::channel();
        match self.tx.try_send((user.clone(), reply)) {
            Ok(()) => match answer.await {
                Ok(r) => r,
                // The loader stopped (shutdown): read directly.
                Err(_) => self.store.user_state(user).await,
            },
            Err(_) => self.store.user_state(user).await,
        }
    }
}

async fn run(mut rx: mpsc::Receiver<(Arc<str>, Reply)>, store: Store, stop: CancellationToken) {
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    while let Some((permit, batch)) = next_batch(&mut rx, &stop, &permits, MAX_BATCH, |_| 1).await {
        let store = store.clone();
        tokio::spawn(async move {
            let users: Vec<&str> = batch.iter().map(|(u, _)| &**u).collect();
            match store.user_states(&users).await {
                Ok(states) => {
                    for (user, reply) in batch {
                        let _ = reply.send(Ok(states.get(&*user).copied().unwrap_or_default()));
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, users = batch.len(), "batched user_state read failed");
                    for (_, reply) in batch {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
            drop(permit);
        });
    }
}
