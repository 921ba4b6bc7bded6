//! [`StoreError`] and how PostgreSQL and pool failures map onto it: unavailable (HTTP 503),
//! internal (500) or a reused idempotency key (409); and which failures a publish retries.

use deadpool_postgres::{PoolError, TimeoutType};
use tokio_postgres::error::SqlState;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// PostgreSQL cannot be reached or is shutting down (HTTP 503).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The idempotency key was used before for a different request (HTTP 409).
    #[error("idempotency key was already used for a different request")]
    IdempotencyKeyReused,
    /// Anything else, with the operation that failed.
    #[error("database error: {0}")]
    Internal(String),
}

fn is_unavailable_pg(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if let Some(code) = e.code() {
        let c = code.code();
        return c.starts_with("08")
            || code == &SqlState::ADMIN_SHUTDOWN
            || code == &SqlState::CRASH_SHUTDOWN
            || code == &SqlState::CANNOT_CONNECT_NOW
            || code == &SqlState::TOO_MANY_CONNECTIONS;
    }
    // No SQLSTATE: a client-side failure. IO errors (refused, reset, timed out) are
    // availability problems; anything else (decoding, bad parameters) is internal.
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.is::<std::io::Error>() {
            return true;
        }
        source = s.source();
    }
    false
}

pub(crate) fn pg_err(op: &str, e: tokio_postgres::Error) -> StoreError {
    let detail = match e.as_db_error() {
        Some(db) => format!("{}: {} (SQLSTATE {})", op, db.message(), db.code().code()),
        None => {
            // tokio-postgres's own message ("error performing TLS handshake", "error
            // connecting to server") leaves out the cause: append the chain.
            let mut detail = format!("{op}: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                let text = s.to_string();
                if !detail.ends_with(&text) {
                    detail.push_str(": ");
                    detail.push_str(&text);
                }
                source = s.source();
            }
            detail
        }
    };
    if is_unavailable_pg(&e) {
        StoreError::Unavailable(detail)
    } else {
        StoreError::Internal(detail)
    }
}

pub(crate) fn pool_err(op: &str, e: PoolError) -> StoreError {
    match e {
        PoolError::Timeout(TimeoutType::Wait) => StoreError::Unavailable(format!(
            "{op}: timed out waiting for a database connection (pool exhausted or database down)"
        )),
        PoolError::Timeout(_) => {
            StoreError::Unavailable(format!("{op}: timed out connecting to the database"))
        }
        PoolError::Backend(e) => {
            // Failing to open a connection is an availability problem whatever the cause
            // (refused, auth rejected while starting up, …), except a clear config error.
            let mapped = pg_err(op, e);
            match mapped {
                StoreError::Internal(m) => StoreError::Unavailable(m),
                other => other,
            }
        }
        PoolError::Closed => StoreError::Unavailable(format!("{op}: the pool is closed")),
        PoolError::PostCreateHook(e) => {
            StoreError::Unavailable(format!("{op}: connection setup failed: {e}"))
        }
        PoolError::NoRuntimeSpecified => {
            StoreError::Internal(format!("{op}: the pool has no async runtime"))
        }
    }
}

pub(crate) fn is_retryable(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if c == &SqlState::T_R_DEADLOCK_DETECTED || c == &SqlState::T_R_SERIALIZATION_FAILURE
    )
}
