//! The safety net behind Redis: sockets compared with PostgreSQL every interval.

use actix_web::web;
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

/// Users per `USERS_BEHIND` statement in a reconcile pass.
const RECONCILE_CHUNK: usize = 250;

/// The safety net behind Redis: every interval, compare each local user's delivered seq
/// with PostgreSQL and make lagging sockets catch up. It bounds the delay of anything the
/// fast path lost (a crash between commit and publish, a Redis outage on the publisher).
///
/// A pass is paced over its interval, one chunk of `RECONCILE_CHUNK` users at a time, rather
/// than run back to back, so the statement rate on PostgreSQL is flat instead of a burst of
/// every node's chunks each interval (no latency gain was measurable; see docs/performance.md,
/// "Measured choices in the code").
/// Each user is still compared once per interval. The watermarks are read at the start of
/// the pass; a socket that advanced since is filtered by `sync_user_if_behind`, which
/// compares with its current delivered seq.
pub async fn reconcile_loop(state: web::Data<AppState>, stop: CancellationToken) {
    let interval = state.config.reconcile_interval;
    loop {
        let pass = tokio::time::Instant::now();
        let marks = state.registry.delivered_watermarks();
        let chunks = marks.len().div_ceil(RECONCILE_CHUNK).max(1);
        let step = interval / chunks as u32;
        for (i, chunk) in marks.chunks(RECONCILE_CHUNK).enumerate() {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep_until(pass + step * i as u32) => {}
            }
            match state.store.users_behind(chunk).await {
                Ok(behind) => {
                    for (user, latest) in behind {
                        state.registry.sync_user_if_behind(&user, latest);
                    }
                }
                Err(e) => {
                    state
                        .metrics
                        .store_errors
                        .with_label_values(&["reconcile"])
                        .inc();
                    tracing::warn!(error = %e, "reconcile skipped: store unavailable");
                    break;
                }
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep_until(pass + interval) => {}
        }
    }
}
