//! Session revocation on this node: the cut-offs in memory, and the loop that keeps them in
//! step with PostgreSQL.
//!
//! PostgreSQL holds one cut-off per user (`revocations`). Every node keeps all of them in
//! memory ([`Revocations`]), so checking a token costs a map lookup and never a query. The map
//! is loaded before the node serves and refreshed by [`refresh_loop`]: every
//! `HERALD_REVOCATION_REFRESH_MS`, and at once when the bus says a user was revoked
//! ([`herald_protocol::bus::BusMessage::Revoked`], a wake-up only: the cut-off is always read
//! from PostgreSQL) or when the bus reconnected (it may have lost such a message). A refresh
//! that learns a new or later cut-off closes the user's sockets it refuses (4006).
//!
//! *Bound:* the map holds one entry per user revoked within `HERALD_REVOCATION_RETENTION_HOURS`
//! (the same rows PostgreSQL keeps; older ones are evicted here and purged there), about 100
//! bytes each.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use actix_web::web;
use chrono::{DateTime, Utc};
use herald_store::Revocation;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

/// Each refresh reads again the rows changed this long before the latest it saw, so a row
/// whose `revoked_at` (its statement's start) is older than a row committed before it is
/// not missed.
const SLACK: Duration = Duration::from_secs(60);
/// How often expired revocations are purged from PostgreSQL.
const PURGE_EVERY: Duration = Duration::from_secs(300);

/// Whether a token issued at `iat` (unix seconds; `None`: no `iat` claim) is refused by a
/// cut-off at `before_us` (unix microseconds). A token without `iat` is refused: its issue
/// time is unknown.
pub fn refuses(before_us: i64, iat: Option<i64>) -> bool {
    iat.is_none_or(|s| s.saturating_mul(1_000_000) < before_us)
}

#[derive(Debug, Clone, Copy)]
struct Cut {
    /// Unix microseconds.
    before_us: i64,
    /// When the row last changed, unix microseconds (for eviction).
    at_us: i64,
}

/// The cut-offs this node knows, by user.
#[derive(Default)]
pub struct Revocations {
    cuts: RwLock<HashMap<Box<str>, Cut>>,
    /// Entries in `cuts`: with none, a check takes no lock.
    len: AtomicUsize,
    wake: Notify,
}

impl Revocations {
    /// Whether `user`'s token issued at `iat` is revoked.
    pub fn is_revoked(&self, user: &str, iat: Option<i64>) -> bool {
        if self.len.load(Ordering::Acquire) == 0 {
            return false;
        }
        let cuts = self.cuts.read().unwrap_or_else(|p| p.into_inner());
        cuts.get(user).is_some_and(|c| refuses(c.before_us, iat))
    }

    pub fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records `user`'s cut-off (never lowering one already known). Returns the cut-off in
    /// force when it is new or later than the one known, in unix microseconds.
    pub fn record(&self, user: &str, before: DateTime<Utc>, at: DateTime<Utc>) -> Option<i64> {
        let cut = Cut {
            before_us: before.timestamp_micros(),
            at_us: at.timestamp_micros(),
        };
        let mut cuts = self.cuts.write().unwrap_or_else(|p| p.into_inner());
        let raised = match cuts.get_mut(user) {
            Some(known) => {
                known.at_us = known.at_us.max(cut.at_us);
                let raised = cut.before_us > known.before_us;
                known.before_us = known.before_us.max(cut.before_us);
                raised
            }
            None => {
                cuts.insert(user.into(), cut);
                true
            }
        };
        self.len.store(cuts.len(), Ordering::Release);
        raised.then_some(cut.before_us)
    }

    /// Forgets revocations last changed before `older_than` (past the retention).
    fn evict(&self, older_than: DateTime<Utc>) {
        let limit = older_than.timestamp_micros();
        let mut cuts = self.cuts.write().unwrap_or_else(|p| p.into_inner());
        cuts.retain(|_, c| c.at_us >= limit);
        self.len.store(cuts.len(), Ordering::Release);
    }

    /// Asks the refresh loop to read PostgreSQL now (a revocation was announced, or the bus
    /// may have lost one). Never blocks; wake-ups coalesce into one refresh.
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

/// Applies rows read from PostgreSQL: records each and closes the local sockets a new or
/// later cut-off refuses. Returns the latest `revoked_at` seen.
pub fn apply(state: &AppState, rows: &[Revocation]) -> Option<DateTime<Utc>> {
    let revocations = &state.registry.revocations;
    for r in rows {
        if let Some(before_us) = revocations.record(&r.user_id, r.revoked_before, r.revoked_at) {
            let closed = state.registry.revoke(&r.user_id, before_us);
            if closed > 0 {
                tracing::info!(user = %r.user_id, sockets = closed, "sessions revoked; closing the user's sockets on this node");
            }
        }
    }
    rows.iter().map(|r| r.revoked_at).max()
}

/// Reads the revocations changed after `since` (less [`SLACK`]) and applies them; returns the
/// new watermark.
pub async fn refresh(
    state: &AppState,
    since: DateTime<Utc>,
) -> Result<DateTime<Utc>, herald_store::StoreError> {
    let after = since - SLACK;
    let rows = state
        .store
        .revocations_since(after, state.config.revocation_retention)
        .await?;
    let latest = apply(state, &rows).map_or(since, |t| t.max(since));
    let retention = chrono::Duration::from_std(state.config.revocation_retention)
        .unwrap_or(chrono::Duration::MAX);
    if let Some(limit) = Utc::now().checked_sub_signed(retention) {
        state.registry.revocations.evict(limit);
    }
    state
        .metrics
        .revocations_known
        .set(state.registry.revocations.len() as i64);
    Ok(latest)
}

/// Keeps the node's cut-offs current: a refresh every `HERALD_REVOCATION_REFRESH_MS` and on
/// every wake-up; purges expired rows every 5 minutes.
pub async fn refresh_loop(
    state: web::Data<AppState>,
    since: DateTime<Utc>,
    stop: CancellationToken,
) {
    let mut since = since;
    let mut last_purge = Instant::now();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(state.config.revocation_refresh) => {}
            _ = state.registry.revocations.wake.notified() => {}
        }
        match refresh(&state, since).await {
            Ok(latest) => since = latest,
            Err(e) => {
                state
                    .metrics
                    .store_errors
                    .with_label_values(&["revocations"])
                    .inc();
                tracing::warn!(error = %e, "revocation refresh skipped; retrying next interval");
            }
        }
        if last_purge.elapsed() >= PURGE_EVERY {
            last_purge = Instant::now();
            if let Err(e) = state
                .store
                .purge_revocations(state.config.revocation_retention)
                .await
            {
                tracing::warn!(error = %e, "revocation purge skipped");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).expect("valid time")
    }

    #[test]
    fn a_cut_off_refuses_earlier_iat_and_tokens_without_one() {
        let before = t(1_000).timestamp_micros() + 500_000; // 1000.5 s
        assert!(refuses(before, Some(999)));
        // iat is whole seconds: a token of the cut-off's own second is refused too.
        assert!(refuses(before, Some(1_000)));
        assert!(!refuses(before, Some(1_001)));
        assert!(refuses(before, None));
        assert!(!refuses(before, Some(i64::MAX)));
        assert!(refuses(before, Some(i64::MIN)));
        // A cut-off on a whole second accepts a token of that second.
        assert!(!refuses(t(1_000).timestamp_micros(), Some(1_000)));
    }

    #[test]
    fn cut_offs_only_rise_and_expire_with_the_retention() {
        let r = Revocations::default();
        assert!(!r.is_revoked("alice", None));
        assert_eq!(
            r.record("alice", t(100), t(100)),
            Some(t(100).timestamp_micros())
        );
        assert!(r.is_revoked("alice", Some(99)));
        assert!(r.is_revoked("alice", None));
        assert!(!r.is_revoked("alice", Some(100)));
        assert!(!r.is_revoked("bob", None));
        // An earlier cut-off does not lower it (and is not news).
        assert_eq!(r.record("alice", t(50), t(200)), None);
        assert!(r.is_revoked("alice", Some(99)));
        assert_eq!(
            r.record("alice", t(300), t(300)),
            Some(t(300).timestamp_micros())
        );
        assert!(r.is_revoked("alice", Some(299)));
        r.record("bob", t(10), t(10));
        assert_eq!(r.len(), 2);
        r.evict(t(250));
        assert_eq!(r.len(), 1);
        assert!(!r.is_revoked("bob", None));
        assert!(r.is_revoked("alice", None));
    }
}
