//! Forgetting idempotency keys past their retention.

use std::time::Duration;

use actix_web::web;
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

/// Forgets idempotency keys older than the retention, every few minutes, in batches of
/// `PURGE_BATCH` so one pass never holds a long transaction. Every node runs it; concurrent
/// deletes of the same rows are harmless.
pub async fn purge_idempotency_loop(state: web::Data<AppState>, stop: CancellationToken) {
    const EVERY: Duration = Duration::from_secs(300);
    const PURGE_BATCH: i64 = 5_000;
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        loop {
            match state
                .store
                .purge_idempotency(state.config.idempotency_ttl, PURGE_BATCH)
                .await
            {
                Ok(n) => {
                    state.metrics.idempotency_purged.inc_by(n);
                    if n < PURGE_BATCH as u64 {
                        break;
                    }
                }
                Err(e) => {
                    state
                        .metrics
                        .store_errors
                        .with_label_values(&["purge_idempotency"])
                        .inc();
                    tracing::warn!(error = %e, "idempotency purge skipped");
                    break;
                }
            }
        }
    }
}
