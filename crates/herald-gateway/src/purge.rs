//! Background purges: idempotency keys past their retention, and notifications past theirs
//! (`HERALD_RETENTION`, per type; off by default).

use std::time::Duration;

use actix_web::web;
use herald_protocol::inbox::InboxAction;
use herald_store::PurgeScope;
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

/// Runs `pass` every `every` until `stop`.
async fn every<F, Fut>(every: Duration, stop: CancellationToken, mut pass: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        pass().await;
    }
}

/// One pass of a batched delete: `batch` (which deletes at most `size` rows) runs until it
/// deletes fewer, fails (counted under `op`, retried next pass), or ran `max` times (overflow
/// policy: the rest waits for the next pass). Returns the rows deleted.
async fn batched<F, Fut>(
    state: &AppState,
    op: &'static str,
    size: i64,
    max: usize,
    mut batch: F,
) -> u64
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<u64, herald_store::StoreError>>,
{
    let mut total = 0;
    for _ in 0..max {
        match batch().await {
            Ok(n) => {
                total += n;
                if n < size as u64 {
                    break;
                }
            }
            Err(e) => {
                state.metrics.store_errors.with_label_values(&[op]).inc();
                tracing::warn!(op, error = %e, "purge skipped; retrying next pass");
                break;
            }
        }
    }
    total
}

/// Forgets idempotency keys older than the retention, every few minutes, in batches of
/// 5,000 so one pass never holds a long transaction. Every node runs it; concurrent deletes
/// of the same rows are harmless.
pub async fn purge_idempotency_loop(state: web::Data<AppState>, stop: CancellationToken) {
    const BATCH: i64 = 5_000;
    every(Duration::from_secs(300), stop, || async {
        let ttl = state.config.idempotency_ttl;
        let n = batched(&state, "purge_idempotency", BATCH, usize::MAX, || {
            state.store.purge_idempotency(ttl, BATCH)
        })
        .await;
        state.metrics.idempotency_purged.inc_by(n);
    })
    .await
}

/// Deletes finished fallback jobs (sent, cancelled, dead) older than
/// `HERALD_FALLBACK_JOB_RETENTION_HOURS`, every few minutes, in batches of 5,000, at most 100
/// a pass (the outbox would otherwise grow by a row per fallback forever). Not started when
/// the fallback is off.
pub async fn purge_fallback_jobs_loop(state: web::Data<AppState>, stop: CancellationToken) {
    const BATCH: i64 = 5_000;
    if !state.config.fallback.enabled() {
        return;
    }
    every(Duration::from_secs(300), stop, || async {
        let age = state.config.fallback.job_retention;
        let n = batched(&state, "fallback_purge_jobs", BATCH, 100, || {
            state.store.fallback_purge_jobs(age, BATCH)
        })
        .await;
        state.metrics.fallback_jobs_purged.inc_by(n);
    })
    .await
}

/// Rows per retention transaction: it locks only the users of these rows, for a few
/// milliseconds, so publishes to other users never wait and those to these users wait at most
/// one batch.
pub const RETENTION_BATCH: i64 = 500;
/// Pause between two batches of one pass, so a large backlog never monopolises the pool.
const RETENTION_PAUSE: Duration = Duration::from_millis(20);
/// Batches per pass at most (overflow policy: the rest waits for the next pass).
const RETENTION_MAX_BATCHES: usize = 200;

/// The purge scopes of a retention setting: one per listed type, then every other type.
pub fn retention_scopes(r: &herald_core::inbox::Retention) -> Vec<(PurgeScope, Duration)> {
    let mut out: Vec<(PurgeScope, Duration)> = r
        .per_type
        .iter()
        .map(|(k, age)| (PurgeScope::Type(k.clone()), *age))
        .collect();
    if let Some(age) = r.other {
        let listed = r.per_type.iter().map(|(k, _)| k.clone()).collect();
        out.push((PurgeScope::AllExcept(listed), age));
    }
    out
}

/// Deletes notifications older than their type's retention, every
/// `HERALD_RETENTION_INTERVAL_MS`, in batches of [`RETENTION_BATCH`]; the users concerned
/// get an `inbox` event (`delete`) with the new counts. Every node runs it; concurrent passes
/// delete disjoint or already-deleted rows (harmless). Not started when retention is off.
pub async fn purge_notifications_loop(state: web::Data<AppState>, stop: CancellationToken) {
    let scopes = retention_scopes(&state.config.retention);
    if scopes.is_empty() {
        return;
    }
    // Per scope: how far its scan got. Kept across passes (a restart scans once from the
    // start); a cursor only passes rows that were purged or are outside the scope.
    let mut cursors = vec![uuid::Uuid::nil(); scopes.len()];
    let mut tick = tokio::time::interval(state.config.retention_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        for ((scope, age), cursor) in scopes.iter().zip(cursors.iter_mut()) {
            for _ in 0..RETENTION_MAX_BATCHES {
                if stop.is_cancelled() {
                    return;
                }
                match state
                    .store
                    .purge_notifications(scope, *age, RETENTION_BATCH, *cursor)
                    .await
                {
                    Ok(batch) => {
                        *cursor = batch.cursor;
                        let deleted = !batch.purged.is_empty();
                        for p in batch.purged {
                            state
                                .metrics
                                .notifications_purged
                                .inc_by(p.ids.len() as u64);
                            state
                                .announce_inbox(
                                    &p.user_id,
                                    InboxAction::Delete,
                                    p.ids,
                                    p.unread_count,
                                    p.version,
                                )
                                .await;
                        }
                        if batch.exhausted {
                            break;
                        }
                        if deleted {
                            tokio::time::sleep(RETENTION_PAUSE).await;
                        }
                    }
                    Err(e) => {
                        state
                            .metrics
                            .store_errors
                            .with_label_values(&["purge_notifications"])
                            .inc();
                        tracing::warn!(error = %e, ?scope, "notification purge skipped");
                        break;
                    }
                }
            }
        }
    }
}
