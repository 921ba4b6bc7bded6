//! The queue shape shared by the publisher's group commit and the read loader: wait for one
//! item, then take whatever is already queued, so batches grow only while earlier batches
//! are still running (no artificial wait for a lone item).

use std::sync::Arc;

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// The next batch, with the in-flight permit its caller holds until the batch is done.
/// `weight` sizes an item (recipients, rows); taking stops once the batch weighs `max` or
/// more. `None` when the queue closes, `stop` is cancelled or `permits` is closed.
pub async fn next_batch<T>(
    rx: &mut mpsc::Receiver<T>,
    stop: &CancellationToken,
    permits: &Arc<Semaphore>,
    max: usize,
    weight: impl Fn(&T) -> usize,
) -> Option<(OwnedSemaphorePermit, Vec<T>)> {
    let first = tokio::select! {
        item = rx.recv() => item?,
        _ = stop.cancelled() => return None,
    };
    // While every permit is taken, later items queue up behind this one.
    let permit = permits.clone().acquire_owned().await.ok()?;
    let mut total = weight(&first);
    let mut batch = vec![first];
    while total < max {
        match rx.try_recv() {
            Ok(item) => {
                total += weight(&item);
                batch.push(item);
            }
            Err(_) => break,
        }
    }
    Some((permit, batch))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn takes_what_is_queued_up_to_the_weight() {
        let (tx, mut rx) = mpsc::channel(16);
        let stop = CancellationToken::new();
        let permits = Arc::new(Semaphore::new(1));
        for w in [2, 2, 2, 2] {
            tx.send(w).await.unwrap();
        }
        let (permit, batch) = next_batch(&mut rx, &stop, &permits, 5, |w| *w)
            .await
            .unwrap();
        assert_eq!(batch, vec![2, 2, 2], "stops once the weight reaches 5");
        drop(permit);
        let (_, batch) = next_batch(&mut rx, &stop, &permits, 5, |w| *w)
            .await
            .unwrap();
        assert_eq!(batch, vec![2]);
        stop.cancel();
        assert!(next_batch(&mut rx, &stop, &permits, 5, |w| *w)
            .await
            .is_none());
    }
}
