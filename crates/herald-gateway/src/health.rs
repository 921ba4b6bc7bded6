//! Readiness from state the node already holds: a background check pings PostgreSQL and
//! Redis every [`CHECK_EVERY`] (each bounded by its own timeout) and records the outcome, so
//! `/readyz` answers at once, never waiting on a dependency (a balancer with a 1 s check
//! timeout must not take every node out while Redis hangs).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix_web::web;
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

/// How often the dependencies are checked. A hung dependency is reported at most this plus
/// its ping timeout after it hangs.
pub const CHECK_EVERY: Duration = Duration::from_millis(500);

/// The last outcome of each dependency's check. Both start healthy: the node connected to
/// both before it began serving.
pub struct Health {
    postgres: AtomicBool,
    redis: AtomicBool,
}

impl Default for Health {
    fn default() -> Health {
        Health {
            postgres: AtomicBool::new(true),
            redis: AtomicBool::new(true),
        }
    }
}

impl Health {
    pub fn postgres(&self) -> bool {
        self.postgres.load(Ordering::Relaxed)
    }

    pub fn redis(&self) -> bool {
        self.redis.load(Ordering::Relaxed)
    }
}

/// Checks both dependencies every [`CHECK_EVERY`], concurrently, until `stop`.
pub async fn check_loop(state: web::Data<AppState>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let (pg, redis) = tokio::join!(state.store.ping(), state.bus.ping());
        let h = &state.health;
        if h.postgres.swap(pg.is_ok(), Ordering::Relaxed) != pg.is_ok() {
            tracing::warn!(ok = pg.is_ok(), error = ?pg.err(), "PostgreSQL check changed");
        }
        if h.redis.swap(redis.is_ok(), Ordering::Relaxed) != redis.is_ok() {
            tracing::warn!(ok = redis.is_ok(), error = ?redis.err(), "Redis check changed");
        }
    }
}
