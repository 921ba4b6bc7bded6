//! Open-file descriptors. Every socket is one, so a node must size itself to its limit and
//! survive reaching it:
//!
//! - `serve` raises the soft `RLIMIT_NOFILE` to the hard limit at start;
//! - the socket cap (`HERALD_MAX_CONNECTIONS`) is clamped, with a warning, to what the limit
//!   leaves after [`reserved`] descriptors for the pools, the listener and plain HTTP;
//!   sockets beyond the cap are refused with 503 before the upgrade;
//! - if descriptors still run out (a flood of plain HTTP connections, another process
//!   sharing the limit), actix-server's accept loop logs the error and stops accepting for
//!   500 ms instead of spinning; [`AcceptErrors`] counts those events for
//!   `herald_accept_errors_total`, and `/metrics` shows `process_open_fds` / `process_max_fds`.

use std::sync::atomic::{AtomicU64, Ordering};

/// Descriptors kept free for everything that is not a WebSocket: database and Redis pools,
/// the listener and files (16), and plain HTTP connections up to their cap.
pub fn reserved(database_pool_size: usize, max_http_connections: usize) -> usize {
    database_pool_size + 16 + max_http_connections
}

fn nofile() -> Option<libc::rlimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct passed by pointer.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0).then_some(lim)
}

/// Raises the soft open-file limit to the hard limit; returns the soft limit now in force.
pub fn raise_soft_limit() -> Option<u64> {
    let lim = nofile()?;
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct passed by pointer.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return Some(lim.rlim_max);
        }
    }
    Some(lim.rlim_cur)
}

/// The soft open-file limit.
pub fn limit() -> Option<u64> {
    nofile().map(|l| l.rlim_cur)
}

/// Descriptors open in this process (Linux: entries of /proc/self/fd).
pub fn open_count() -> Option<u64> {
    std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| d.count() as u64)
}

/// The socket cap that fits the limit: `configured`, or less when the limit is lower.
pub fn effective_max_connections(configured: usize, limit: Option<u64>, reserve: usize) -> usize {
    match limit {
        Some(l) => configured.min((l as usize).saturating_sub(reserve).max(1)),
        None => configured,
    }
}

/// Counts accept-loop errors (EMFILE, ENFILE, ENOBUFS, ...) logged by actix-server.
pub struct AcceptErrors;

static ACCEPT_ERRORS: AtomicU64 = AtomicU64::new(0);

impl AcceptErrors {
    pub fn total() -> u64 {
        ACCEPT_ERRORS.load(Ordering::Relaxed)
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for AcceptErrors {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let meta = event.metadata();
        if *meta.level() == tracing::Level::ERROR
            && meta.target().starts_with("actix_server::accept")
        {
            ACCEPT_ERRORS.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_the_reserve_free() {
        assert_eq!(effective_max_connections(10_000, Some(20_000), 300), 10_000);
        assert_eq!(effective_max_connections(30_000, Some(20_000), 300), 19_700);
        assert_eq!(effective_max_connections(10_000, Some(100), 300), 1);
        assert_eq!(effective_max_connections(10_000, None, 300), 10_000);
    }

    #[test]
    fn limit_and_count_are_readable_here() {
        let l = limit().expect("getrlimit");
        let n = open_count().expect("/proc/self/fd");
        assert!(n >= 3 && n <= l, "open {n}, limit {l}");
    }
}
