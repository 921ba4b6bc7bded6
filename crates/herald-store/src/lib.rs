//! Herald's PostgreSQL store: the connection pool, the migrations runner and every SQL
//! statement the gateway runs (see [`sql`]).
//!
//! # The seq invariant
//!
//! Every notification has a per-user `seq`: 1, 2, 3, … with no gaps among committed rows.
//! A publish takes the next seq by incrementing `user_state.last_seq` (an
//! `INSERT … ON CONFLICT DO UPDATE`), which row-locks that user's `user_state` row until the
//! transaction ends. So two publishes to one user are serialised, their seqs commit in seq
//! order, and a rolled-back publish gives its seq back. A reader that has seen seq `n`
//! therefore never misses a row `< n` committing later: "everything after seq N" is a
//! complete catch-up. The same transaction keeps `user_state.unread_count` (= number of the
//! user's rows with `read_at IS NULL`) and bumps `user_state.version`.
//!
//! # Lock order
//!
//! Every writing transaction locks `user_state` rows **first**, several users always in
//! ascending byte order of `user_id` (`ORDER BY … COLLATE "C"`, which equals Rust's `str`
//! order, the order `NewNotification::recipients` is sorted in), and only then touches
//! `notifications` rows of those users:
//!
//! * publish: `user_state` upserts in sorted order, then the inserts;
//! * mark-read / mark-all-read: `SELECT … FOR UPDATE` of the user's `user_state` row, then the
//!   `UPDATE notifications`, then the counter update;
//! * mark-delivered: `SELECT … ORDER BY user_id FOR UPDATE` of the users' rows, then the
//!   `UPDATE notifications`.
//!
//! A keyed publish additionally claims its `publish_idempotency` row before any of that; a
//! transaction holds at most one such row. With one global order there are no deadlocks; the
//! publish transaction is still retried on SQLSTATE 40P01/40001 as a safety net.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::{
    Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime, TimeoutType,
};
use herald_core::NewNotification;
use herald_protocol::http::{MarkAllReadResult, MarkReadResult, PublishResponse, PublishedItem};
use herald_protocol::Notification;
use sha2::{Digest, Sha256};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};
use uuid::Uuid;

pub mod sql;

/// How the store connects to PostgreSQL.
#[derive(Clone)]
pub struct StoreConfig {
    /// libpq-style URL or key/value string, e.g. `postgres://herald@db:5432/herald`.
    pub url: String,
    /// Maximum number of pooled connections.
    pub pool_size: usize,
    /// `statement_timeout` set on every connection (0 = no timeout).
    pub statement_timeout_ms: u64,
    /// TCP connect timeout, and how long a caller waits for a pooled connection.
    pub connect_timeout_ms: u64,
}

impl fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may carry a password.
        f.debug_struct("StoreConfig")
            .field("url", &"<redacted>")
            .field("pool_size", &self.pool_size)
            .field("statement_timeout_ms", &self.statement_timeout_ms)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .finish()
    }
}

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

/// A user's counters; all zero for a user who never received anything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UserState {
    pub latest_seq: i64,
    pub delivered_seq: i64,
    pub unread_count: i64,
    pub version: i64,
}

/// One created notification with its recipient's counters right after the commit.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    pub notification: Notification,
    pub unread_count: i64,
    pub version: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PublishOutcome {
    /// New rows were committed; `items` are in recipient (sorted) order, like `response`.
    Created {
        response: PublishResponse,
        items: Vec<Published>,
    },
    /// The idempotency key was seen before with the same request: the stored response.
    Replayed(PublishResponse),
}

/// The PostgreSQL store. Cheap to clone (shares the pool).
#[derive(Clone)]
pub struct Store {
    pool: Pool,
    ping_timeout: Duration,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("pool", &self.pool.status())
            .finish()
    }
}

/// Embedded migrations, in version order: (version, name, SQL).
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "0001_init.sql",
        include_str!("../../../migrations/0001_init.sql"),
    ),
    (
        2,
        "0002_delivery_marks.sql",
        include_str!("../../../migrations/0002_delivery_marks.sql"),
    ),
];

/// Key of the transaction-level advisory lock that serialises concurrent migrators.
const MIGRATION_LOCK_KEY: i64 = 0x4845_5241_4c44_4d47; // "HERALDMG"

const PUBLISH_MAX_RETRIES: u32 = 3;

type Client = deadpool_postgres::Client;

// ---------------------------------------------------------------------------------------------
// Error mapping
// ---------------------------------------------------------------------------------------------

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

/// Locks the user's `user_state` row before touching their notifications — the same lock
/// order as publish, so mark-read and publish never deadlock. `None`: the user has no
/// notifications at all.
async fn lock_user_state(
    tx: &deadpool_postgres::Transaction<'_>,
    user_id: &str,
    op: &str,
) -> Result<Option<Row>, StoreError> {
    let lock = tx
        .prepare_cached(sql::LOCK_USER_STATE)
        .await
        .map_err(|e| pg_err(op, e))?;
    tx.query_opt(&lock, &[&user_id])
        .await
        .map_err(|e| pg_err(&format!("{op}: locking user_state"), e))
}

fn pg_err(op: &str, e: tokio_postgres::Error) -> StoreError {
    let detail = match e.as_db_error() {
        Some(db) => format!("{}: {} (SQLSTATE {})", op, db.message(), db.code().code()),
        None => format!("{op}: {e}"),
    };
    if is_unavailable_pg(&e) {
        StoreError::Unavailable(detail)
    } else {
        StoreError::Internal(detail)
    }
}

fn pool_err(op: &str, e: PoolError) -> StoreError {
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

fn is_retryable(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if c == &SqlState::T_R_DEADLOCK_DETECTED || c == &SqlState::T_R_SERIALIZATION_FAILURE
    )
}

// ---------------------------------------------------------------------------------------------
// Row mapping
// ---------------------------------------------------------------------------------------------

/// Maps a row selected with [`sql::NOTIFICATION_COLUMNS`] to the wire type.
fn row_to_notification(row: &Row) -> Result<Notification, StoreError> {
    let map = |e| pg_err("decoding a notification row", e);
    Ok(Notification {
        id: row.try_get("id").map_err(map)?,
        user_id: row.try_get("user_id").map_err(map)?,
        seq: row.try_get("seq").map_err(map)?,
        kind: row.try_get("type").map_err(map)?,
        title: row.try_get("title").map_err(map)?,
        body: row.try_get("body").map_err(map)?,
        link: row.try_get("link").map_err(map)?,
        avatar_url: row.try_get("avatar_url").map_err(map)?,
        data: row.try_get("data").map_err(map)?,
        created_at: row.try_get("created_at").map_err(map)?,
        delivered_at: row.try_get("delivered_at").map_err(map)?,
        read_at: row.try_get("read_at").map_err(map)?,
    })
}

fn get<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a Row,
    op: &str,
    col: &str,
) -> Result<T, StoreError> {
    row.try_get(col)
        .map_err(|e| pg_err(&format!("{op}: column {col}"), e))
}

// ---------------------------------------------------------------------------------------------
// Request hash
// ---------------------------------------------------------------------------------------------

fn put_field(buf: &mut Vec<u8>, tag: &str, value: Option<&[u8]>) {
    buf.extend_from_slice(tag.as_bytes());
    match value {
        None => buf.push(0),
        Some(v) => {
            buf.push(1);
            buf.extend_from_slice(&(v.len() as u64).to_be_bytes());
            buf.extend_from_slice(v);
        }
    }
}

/// JSON with object keys sorted at every level, independent of serde_json's map order.
fn canonical_json(v: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String((*k).clone()).to_string());
                out.push(':');
                if let Some(child) = map.get(*k) {
                    canonical_json(child, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_json(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// SHA-256 of a canonical, length-prefixed serialisation of everything but the key.
fn request_hash(recipients: &[String], n: &NewNotification) -> Vec<u8> {
    let mut buf = Vec::with_capacity(256);
    buf.extend_from_slice(b"herald.publish.v1");
    buf.extend_from_slice(&(recipients.len() as u64).to_be_bytes());
    for r in recipients {
        put_field(&mut buf, "r", Some(r.as_bytes()));
    }
    put_field(&mut buf, "type", Some(n.kind.as_bytes()));
    put_field(&mut buf, "title", Some(n.title.as_bytes()));
    put_field(&mut buf, "body", Some(n.body.as_bytes()));
    put_field(&mut buf, "link", n.link.as_deref().map(str::as_bytes));
    put_field(
        &mut buf,
        "avatar_url",
        n.avatar_url.as_deref().map(str::as_bytes),
    );
    let data = n.data.as_ref().filter(|d| !d.is_null()).map(|d| {
        let mut s = String::new();
        canonical_json(d, &mut s);
        s
    });
    put_field(&mut buf, "data", data.as_deref().map(str::as_bytes));
    Sha256::digest(&buf).to_vec()
}

// ---------------------------------------------------------------------------------------------
// Store
// ---------------------------------------------------------------------------------------------

fn describe_target(pg: &tokio_postgres::Config) -> String {
    let host = pg
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(s) => s.clone(),
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".to_owned());
    let port = pg.get_ports().first().copied().unwrap_or(5432);
    let db = pg.get_dbname().or(pg.get_user()).unwrap_or("postgres");
    format!("{host}:{port}/{db}")
}

enum PublishAttempt {
    Done(PublishOutcome),
    Retry(tokio_postgres::Error),
}

/// Turns one request's rows of [`sql::PUBLISH_BATCH`] (ids, seqs and counters) and the
/// request's own content into the response and the per-recipient items, both in recipient
/// (byte) order.
fn created_from_rows(
    rows: &[Row],
    n: &NewNotification,
    recipients: &[String],
) -> Result<(PublishResponse, Vec<Published>), StoreError> {
    const OP: &str = "publish";
    let data = n.data.as_ref().filter(|d| !d.is_null());
    let mut items = Vec::with_capacity(rows.len());
    for row in rows {
        items.push(Published {
            notification: Notification {
                id: get(row, OP, "id")?,
                user_id: get(row, OP, "user_id")?,
                seq: get(row, OP, "seq")?,
                kind: n.kind.clone(),
                title: n.title.clone(),
                body: n.body.clone(),
                link: n.link.clone(),
                avatar_url: n.avatar_url.clone(),
                data: data.cloned(),
                created_at: get(row, OP, "created_at")?,
                delivered_at: None,
                read_at: None,
            },
            unread_count: get(row, OP, "unread_count")?,
            version: get(row, OP, "version")?,
        });
    }
    items.sort_by(|a, b| a.notification.user_id.cmp(&b.notification.user_id));
    if items.len() != recipients.len()
        || items
            .iter()
            .zip(recipients)
            .any(|(p, r)| &p.notification.user_id != r)
    {
        return Err(StoreError::Internal(format!(
            "publish: inserted {} rows for {} recipients",
            items.len(),
            recipients.len()
        )));
    }
    let created_at = items
        .first()
        .map(|p| p.notification.created_at)
        .unwrap_or_else(Utc::now);
    let response = PublishResponse {
        notifications: items
            .iter()
            .map(|p| PublishedItem {
                user_id: p.notification.user_id.clone(),
                id: p.notification.id,
                seq: p.notification.seq,
            })
            .collect(),
        created_at,
    };
    Ok((response, items))
}

/// The arrays of one [`sql::PUBLISH_BATCH`] call, one row per (request, recipient), and how
/// to split its result back per request.
struct BatchInput<'a> {
    /// Row ranges of `users` per request: that request's recipients, sorted and de-duplicated.
    spans: Vec<std::ops::Range<usize>>,
    reqs: Vec<i32>,
    users: Vec<String>,
    /// UUIDv7 per row: time-ordered, so `notifications_id_key` grows at its right edge
    /// instead of taking a random leaf per insert.
    ids: Vec<Uuid>,
    batch: Vec<&'a NewNotification>,
    kinds: Vec<&'a str>,
    titles: Vec<&'a str>,
    bodies: Vec<&'a str>,
    links: Vec<Option<&'a str>>,
    avatars: Vec<Option<&'a str>>,
    data: Vec<Option<&'a serde_json::Value>>,
}

impl<'a> BatchInput<'a> {
    fn new(batch: &[&'a NewNotification], op: &str) -> Result<BatchInput<'a>, StoreError> {
        let mut input = BatchInput {
            spans: Vec::with_capacity(batch.len()),
            reqs: Vec::new(),
            users: Vec::new(),
            ids: Vec::new(),
            batch: batch.to_vec(),
            kinds: batch.iter().map(|n| n.kind.as_str()).collect(),
            titles: batch.iter().map(|n| n.title.as_str()).collect(),
            bodies: batch.iter().map(|n| n.body.as_str()).collect(),
            links: batch.iter().map(|n| n.link.as_deref()).collect(),
            avatars: batch.iter().map(|n| n.avatar_url.as_deref()).collect(),
            data: batch
                .iter()
                .map(|n| n.data.as_ref().filter(|d| !d.is_null()))
                .collect(),
        };
        for (i, n) in batch.iter().enumerate() {
            // Validation already sorts and de-duplicates; redo it cheaply so the result split
            // and the ON CONFLICT upsert can rely on it whoever the caller is.
            let mut r = n.recipients.clone();
            r.sort_unstable();
            r.dedup();
            if r.is_empty() {
                return Err(StoreError::Internal(format!(
                    "{op}: request {i} has no recipient"
                )));
            }
            let idx = i32::try_from(i)
                .map_err(|_| StoreError::Internal(format!("{op}: batch too large")))?;
            let start = input.users.len();
            input.reqs.extend(std::iter::repeat_n(idx, r.len()));
            input.ids.extend((0..r.len()).map(|_| Uuid::now_v7()));
            input.users.extend(r);
            input.spans.push(start..input.users.len());
        }
        Ok(input)
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 9] {
        [
            &self.reqs,
            &self.users,
            &self.ids,
            &self.kinds,
            &self.titles,
            &self.bodies,
            &self.links,
            &self.avatars,
            &self.data,
        ]
    }

    /// The response and items of a one-request input.
    fn single(
        &self,
        rows: Vec<Row>,
        op: &str,
    ) -> Result<(PublishResponse, Vec<Published>), StoreError> {
        self.split(rows, op)?
            .pop()
            .ok_or_else(|| StoreError::Internal(format!("{op}: no result for the request")))
    }

    /// Each request's response and items, in request order.
    fn split(
        &self,
        rows: Vec<Row>,
        op: &str,
    ) -> Result<Vec<(PublishResponse, Vec<Published>)>, StoreError> {
        let mut per_req: Vec<Vec<Row>> = self.spans.iter().map(|_| Vec::new()).collect();
        for row in rows {
            let req: i32 = get(&row, op, "req")?;
            let slot = usize::try_from(req)
                .ok()
                .and_then(|i| per_req.get_mut(i))
                .ok_or_else(|| {
                    StoreError::Internal(format!("{op}: unknown request index {req}"))
                })?;
            slot.push(row);
        }
        per_req
            .iter()
            .zip(&self.spans)
            .zip(&self.batch)
            .map(|((rows, span), n)| created_from_rows(rows, n, &self.users[span.clone()]))
            .collect()
    }
}

impl Store {
    /// Builds the pool and opens one connection to check the database is reachable.
    pub async fn connect(cfg: &StoreConfig) -> Result<Store, StoreError> {
        let mut pg = tokio_postgres::Config::from_str(&cfg.url)
            .map_err(|e| StoreError::Internal(format!("invalid database URL: {e}")))?;
        let connect_timeout = Duration::from_millis(cfg.connect_timeout_ms.max(1));
        pg.connect_timeout(connect_timeout);
        if pg.get_application_name().is_none() {
            pg.application_name("herald");
        }
        if cfg.statement_timeout_ms > 0 {
            let setting = format!("-c statement_timeout={}", cfg.statement_timeout_ms);
            let options = match pg.get_options() {
                Some(existing) if !existing.trim().is_empty() => format!("{existing} {setting}"),
                _ => setting,
            };
            pg.options(options);
        }
        let target = describe_target(&pg);
        let manager = Manager::from_config(
            pg,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(cfg.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(connect_timeout))
            .create_timeout(Some(connect_timeout))
            .recycle_timeout(Some(connect_timeout))
            .build()
            .map_err(|e| StoreError::Internal(format!("building the connection pool: {e}")))?;
        let store = Store {
            pool,
            ping_timeout: connect_timeout.min(Duration::from_secs(2)),
        };
        match store.pool.get().await {
            Ok(_client) => {}
            Err(e) => {
                let err = pool_err("connect", e);
                let msg = match &err {
                    StoreError::Unavailable(m) | StoreError::Internal(m) => m.clone(),
                    StoreError::IdempotencyKeyReused => String::new(),
                };
                return Err(StoreError::Unavailable(format!(
                    "cannot connect to PostgreSQL at {target}: {msg}"
                )));
            }
        }
        tracing::info!(target = %target, pool_size = cfg.pool_size, "connected to PostgreSQL");
        Ok(store)
    }

    async fn client(&self, op: &str) -> Result<Client, StoreError> {
        self.pool.get().await.map_err(|e| pool_err(op, e))
    }

    /// Applies the embedded migrations not yet recorded in `schema_migrations`, one
    /// transaction each, under a transaction-level advisory lock. Returns the versions applied
    /// by this call (empty when the schema is current).
    pub async fn migrate(&self) -> Result<Vec<i32>, StoreError> {
        const OP: &str = "migrate";
        let mut client = self.client(OP).await?;
        {
            let tx = client.transaction().await.map_err(|e| pg_err(OP, e))?;
            tx.batch_execute(&format!(
                "SET LOCAL statement_timeout = '5min'; SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY}); {}",
                sql::CREATE_SCHEMA_MIGRATIONS
            ))
            .await
            .map_err(|e| pg_err("migrate: creating schema_migrations", e))?;
            tx.commit().await.map_err(|e| pg_err(OP, e))?;
        }
        let mut applied = Vec::new();
        for &(version, name, text) in MIGRATIONS {
            let tx = client.transaction().await.map_err(|e| pg_err(OP, e))?;
            tx.batch_execute(&format!(
                "SET LOCAL statement_timeout = '5min'; SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})"
            ))
            .await
            .map_err(|e| pg_err("migrate: taking the migration lock", e))?;
            let check = tx
                .prepare_cached(sql::MIGRATION_APPLIED)
                .await
                .map_err(|e| pg_err(OP, e))?;
            let done = tx
                .query_opt(&check, &[&version])
                .await
                .map_err(|e| pg_err(OP, e))?
                .is_some();
            if done {
                tx.rollback().await.map_err(|e| pg_err(OP, e))?;
                continue;
            }
            tx.batch_execute(text)
                .await
                .map_err(|e| pg_err(&format!("migrate: applying {name}"), e))?;
            let record = tx
                .prepare_cached(sql::MIGRATION_RECORD)
                .await
                .map_err(|e| pg_err(OP, e))?;
            tx.execute(&record, &[&version, &name])
                .await
                .map_err(|e| pg_err(OP, e))?;
            tx.commit()
                .await
                .map_err(|e| pg_err(&format!("migrate: committing {name}"), e))?;
            tracing::info!(version, name, "applied migration");
            applied.push(version);
        }
        Ok(applied)
    }

    /// `SELECT 1` within a short timeout, for readiness checks.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let fut = async {
            let client = self.client("ping").await?;
            let stmt = client
                .prepare_cached(sql::PING)
                .await
                .map_err(|e| pg_err("ping", e))?;
            client
                .query_one(&stmt, &[])
                .await
                .map_err(|e| pg_err("ping", e))?;
            Ok(())
        };
        match tokio::time::timeout(self.ping_timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::Unavailable("ping: timed out".to_owned())),
        }
    }

    /// Stores one notification per recipient in one transaction (one statement assigns the
    /// seqs and inserts every row). With an idempotency key, a repeat of the same request
    /// returns the stored response and a different request under that key is refused.
    /// Group commit: publishes several notifications without idempotency keys in one statement
    /// and one transaction, so they share one WAL flush. Returns each request's response and
    /// items, in input order; the whole batch commits or fails together.
    pub async fn publish_batch(
        &self,
        batch: &[&NewNotification],
    ) -> Result<Vec<(PublishResponse, Vec<Published>)>, StoreError> {
        const OP: &str = "publish_batch";
        if batch.iter().any(|n| n.idempotency_key.is_some()) {
            return Err(StoreError::Internal(
                "publish_batch: keyed publishes must use publish()".to_owned(),
            ));
        }
        let input = BatchInput::new(batch, OP)?;
        let client = self.client(OP).await?;
        let stmt = client
            .prepare_cached(sql::PUBLISH_BATCH)
            .await
            .map_err(|e| pg_err(OP, e))?;
        let mut attempt = 0;
        let rows = loop {
            match client.query(&stmt, &input.params()).await {
                Ok(rows) => break rows,
                Err(e) if is_retryable(&e) && attempt < PUBLISH_MAX_RETRIES => {
                    attempt += 1;
                    tracing::warn!(attempt, error = %e, "publish_batch: retrying after a transient conflict");
                    tokio::time::sleep(Duration::from_millis(5 * u64::from(attempt))).await;
                }
                Err(e) => return Err(pg_err(OP, e)),
            }
        };
        input.split(rows, OP)
    }

    pub async fn publish(&self, n: &NewNotification) -> Result<PublishOutcome, StoreError> {
        const OP: &str = "publish";
        let batch = [n];
        let input = BatchInput::new(&batch, OP)?;
        let hash = n
            .idempotency_key
            .as_ref()
            .map(|_| request_hash(&input.users, n));
        let mut client = self.client(OP).await?;
        let mut attempt = 0;
        loop {
            match self
                .publish_attempt(&mut client, &input, hash.as_deref())
                .await?
            {
                PublishAttempt::Done(outcome) => return Ok(outcome),
                PublishAttempt::Retry(e) if attempt < PUBLISH_MAX_RETRIES => {
                    attempt += 1;
                    tracing::warn!(attempt, error = %e, "publish: retrying after a transient conflict");
                    tokio::time::sleep(Duration::from_millis(5 * u64::from(attempt))).await;
                }
                PublishAttempt::Retry(e) => return Err(pg_err(OP, e)),
            }
        }
    }

    async fn publish_attempt(
        &self,
        client: &mut Client,
        input: &BatchInput<'_>,
        hash: Option<&[u8]>,
    ) -> Result<PublishAttempt, StoreError> {
        const OP: &str = "publish";
        macro_rules! tri {
            ($op:expr, $e:expr) => {
                match $e {
                    Ok(v) => v,
                    Err(e) if is_retryable(&e) => return Ok(PublishAttempt::Retry(e)),
                    Err(e) => return Err(pg_err($op, e)),
                }
            };
        }
        let key = input
            .batch
            .first()
            .and_then(|n| n.idempotency_key.as_deref());
        let (Some(key), Some(hash)) = (key, hash) else {
            // Without a key the publish is one statement, which is its own transaction.
            let stmt = tri!(OP, client.prepare_cached(sql::PUBLISH_BATCH).await);
            let rows = tri!(
                "publish: inserting notifications",
                client.query(&stmt, &input.params()).await
            );
            let (response, items) = input.single(rows, OP)?;
            return Ok(PublishAttempt::Done(PublishOutcome::Created {
                response,
                items,
            }));
        };
        let tx = tri!(OP, client.transaction().await);
        let claim = tri!(OP, tx.prepare_cached(sql::IDEMPOTENCY_CLAIM).await);
        let claimed = tri!(
            "publish: claiming the idempotency key",
            tx.query_opt(&claim, &[&key, &hash]).await
        );
        if claimed.is_none() {
            // The key is taken (if another transaction held it, the INSERT waited for it to
            // commit): answer from the stored record.
            tri!(OP, tx.rollback().await);
            return self
                .replay(client, key, hash)
                .await
                .map(PublishAttempt::Done);
        }
        let stmt = tri!(OP, tx.prepare_cached(sql::PUBLISH_BATCH).await);
        let rows = tri!(
            "publish: inserting notifications",
            tx.query(&stmt, &input.params()).await
        );
        let (response, items) = input.single(rows, OP)?;
        let json = serde_json::to_value(&response)
            .map_err(|e| StoreError::Internal(format!("publish: serialising the response: {e}")))?;
        let store = tri!(OP, tx.prepare_cached(sql::IDEMPOTENCY_STORE).await);
        tri!(
            "publish: storing the idempotent response",
            tx.execute(&store, &[&key, &json]).await
        );
        tri!("publish: commit", tx.commit().await);
        Ok(PublishAttempt::Done(PublishOutcome::Created {
            response,
            items,
        }))
    }

    async fn replay(
        &self,
        client: &Client,
        key: &str,
        hash: &[u8],
    ) -> Result<PublishOutcome, StoreError> {
        const OP: &str = "publish: reading the idempotency record";
        let stmt = client
            .prepare_cached(sql::IDEMPOTENCY_LOOKUP)
            .await
            .map_err(|e| pg_err(OP, e))?;
        let row = client
            .query_opt(&stmt, &[&key])
            .await
            .map_err(|e| pg_err(OP, e))?
            .ok_or_else(|| {
                // Only possible if the record was deleted (expiry) in between.
                StoreError::Internal(format!("{OP}: the record vanished"))
            })?;
        let stored_hash: Vec<u8> = get(&row, OP, "request_hash")?;
        if stored_hash != hash {
            return Err(StoreError::IdempotencyKeyReused);
        }
        let response: serde_json::Value = get(&row, OP, "response")?;
        let response: PublishResponse = serde_json::from_value(response)
            .map_err(|e| StoreError::Internal(format!("{OP}: stored response unreadable: {e}")))?;
        Ok(PublishOutcome::Replayed(response))
    }

    /// The user's counters (all zero for an unknown user).
    pub async fn user_state(&self, user_id: &str) -> Result<UserState, StoreError> {
        Ok(self
            .user_states(&[user_id])
            .await?
            .remove(user_id)
            .unwrap_or_default())
    }

    /// The counters of each of `user_ids` that has a `user_state` row (missing users are
    /// all zero: [`UserState::default`]). One statement for the whole list.
    pub async fn user_states(
        &self,
        user_ids: &[&str],
    ) -> Result<std::collections::HashMap<String, UserState>, StoreError> {
        const OP: &str = "user_states";
        if user_ids.is_empty() {
            return Ok(Default::default());
        }
        let rows = self.query(OP, sql::USER_STATES, &[&user_ids]).await?;
        rows.iter()
            .map(|row| {
                Ok((
                    get(row, OP, "user_id")?,
                    UserState {
                        latest_seq: get(row, OP, "last_seq")?,
                        delivered_seq: get(row, OP, "delivered_seq")?,
                        unread_count: get(row, OP, "unread_count")?,
                        version: get(row, OP, "version")?,
                    },
                ))
            })
            .collect()
    }

    /// Runs one prepared (cached) statement on a pooled connection.
    async fn query(
        &self,
        op: &str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let client = self.client(op).await?;
        let stmt = client
            .prepare_cached(sql)
            .await
            .map_err(|e| pg_err(op, e))?;
        client.query(&stmt, params).await.map_err(|e| pg_err(op, e))
    }

    async fn query_notifications(
        &self,
        op: &str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Notification>, StoreError> {
        let rows = self.query(op, sql, params).await?;
        rows.iter().map(row_to_notification).collect()
    }

    /// Notifications with `seq > after`, oldest first, at most `limit`.
    pub async fn after_seq(
        &self,
        user_id: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<Notification>, StoreError> {
        let mut pages = self.after_seqs(&[(user_id, after, limit)]).await?;
        Ok(pages.pop().unwrap_or_default())
    }

    /// [`Store::after_seq`] for many `(user, after, limit)` readers in one statement: one
    /// page per reader, in the readers' order (a negative limit reads nothing).
    pub async fn after_seqs<U: AsRef<str>>(
        &self,
        readers: &[(U, i64, i64)],
    ) -> Result<Vec<Vec<Notification>>, StoreError> {
        const OP: &str = "after_seqs";
        let mut pages: Vec<Vec<Notification>> = readers.iter().map(|_| Vec::new()).collect();
        if readers.is_empty() {
            return Ok(pages);
        }
        let users: Vec<&str> = readers.iter().map(|(u, _, _)| u.as_ref()).collect();
        let afters: Vec<i64> = readers.iter().map(|r| r.1).collect();
        let limits: Vec<i64> = readers.iter().map(|r| r.2.max(0)).collect();
        let rows = self
            .query(OP, sql::AFTER_SEQS, &[&users, &afters, &limits])
            .await?;
        for row in &rows {
            let i: i64 = get(row, OP, "i")?;
            let page = usize::try_from(i - 1)
                .ok()
                .and_then(|i| pages.get_mut(i))
                .ok_or_else(|| StoreError::Internal(format!("{OP}: reader {i} out of range")))?;
            page.push(row_to_notification(row)?);
        }
        Ok(pages)
    }

    /// Newest first; only `seq < before` when given; only unread rows when `unread_only`.
    pub async fn list(
        &self,
        user_id: &str,
        before: Option<i64>,
        limit: i64,
        unread_only: bool,
    ) -> Result<Vec<Notification>, StoreError> {
        let limit = limit.max(0);
        let before = before.unwrap_or(i64::MAX);
        let (op, sql) = if unread_only {
            ("list (unread)", sql::LATEST_UNREAD_PAGE)
        } else {
            ("list", sql::LATEST_PAGE)
        };
        self.query_notifications(op, sql, &[&user_id, &before, &limit])
            .await
    }

    /// The notification if it exists and belongs to `user_id`.
    pub async fn get(&self, user_id: &str, id: Uuid) -> Result<Option<Notification>, StoreError> {
        let mut rows = self
            .query_notifications("get", sql::GET, &[&user_id, &id])
            .await?;
        Ok(rows.pop())
    }

    /// Marks one notification read. `None` when it does not exist or is another user's.
    /// Idempotent: an already-read notification gives `changed: false`, its original
    /// `read_at` and the current counters (no version bump).
    pub async fn mark_read(
        &self,
        user_id: &str,
        id: Uuid,
    ) -> Result<Option<MarkReadResult>, StoreError> {
        const OP: &str = "mark_read";
        let mut client = self.client(OP).await?;
        let tx = client.transaction().await.map_err(|e| pg_err(OP, e))?;
        let Some(state) = lock_user_state(&tx, user_id, OP).await? else {
            // No user_state row: the user has no notifications at all.
            tx.rollback().await.map_err(|e| pg_err(OP, e))?;
            return Ok(None);
        };
        let mark = tx
            .prepare_cached(sql::MARK_READ)
            .await
            .map_err(|e| pg_err(OP, e))?;
        let result = match tx
            .query_opt(&mark, &[&user_id, &id])
            .await
            .map_err(|e| pg_err("mark_read: updating", e))?
        {
            Some(row) => Some(MarkReadResult {
                id,
                seq: get(&row, OP, "seq")?,
                read_at: get(&row, OP, "read_at")?,
                changed: true,
                unread_count: get(&row, OP, "unread_count")?,
                version: get(&row, OP, "version")?,
            }),
            None => {
                let fetch = tx
                    .prepare_cached(sql::READ_STATUS)
                    .await
                    .map_err(|e| pg_err(OP, e))?;
                match tx
                    .query_opt(&fetch, &[&user_id, &id])
                    .await
                    .map_err(|e| pg_err(OP, e))?
                {
                    None => None,
                    Some(row) => {
                        let read_at: Option<DateTime<Utc>> = get(&row, OP, "read_at")?;
                        let read_at = read_at.ok_or_else(|| {
                            StoreError::Internal(format!(
                                "mark_read: {id} is unread but could not be marked"
                            ))
                        })?;
                        Some(MarkReadResult {
                            id,
                            seq: get(&row, OP, "seq")?,
                            read_at,
                            changed: false,
                            unread_count: get(&state, OP, "unread_count")?,
                            version: get(&state, OP, "version")?,
                        })
                    }
                }
            }
        };
        tx.commit()
            .await
            .map_err(|e| pg_err("mark_read: commit", e))?;
        Ok(result)
    }

    /// Marks every unread notification with `seq <= watermark` read, where the watermark is
    /// `up_to_seq` or the user's latest seq at the call. Rows committed later are never marked.
    pub async fn mark_all_read(
        &self,
        user_id: &str,
        up_to_seq: Option<i64>,
    ) -> Result<MarkAllReadResult, StoreError> {
        const OP: &str = "mark_all_read";
        let mut client = self.client(OP).await?;
        let tx = client.transaction().await.map_err(|e| pg_err(OP, e))?;
        let Some(state) = lock_user_state(&tx, user_id, OP).await? else {
            let now_stmt = tx
                .prepare_cached(sql::NOW)
                .await
                .map_err(|e| pg_err(OP, e))?;
            let row = tx
                .query_one(&now_stmt, &[])
                .await
                .map_err(|e| pg_err(OP, e))?;
            let read_at = get(&row, OP, "now")?;
            tx.rollback().await.map_err(|e| pg_err(OP, e))?;
            return Ok(MarkAllReadResult {
                marked: 0,
                up_to_seq: up_to_seq.unwrap_or(0),
                read_at,
                unread_count: 0,
                version: 0,
            });
        };
        let last_seq: i64 = get(&state, OP, "last_seq")?;
        let read_at: DateTime<Utc> = get(&state, OP, "now")?;
        let watermark = up_to_seq.unwrap_or(last_seq);
        let mark = tx
            .prepare_cached(sql::MARK_ALL_READ)
            .await
            .map_err(|e| pg_err(OP, e))?;
        let result = match tx
            .query_opt(&mark, &[&user_id, &watermark])
            .await
            .map_err(|e| pg_err("mark_all_read: updating", e))?
        {
            Some(row) => MarkAllReadResult {
                marked: get(&row, OP, "marked")?,
                up_to_seq: watermark,
                read_at,
                unread_count: get(&row, OP, "unread_count")?,
                version: get(&row, OP, "version")?,
            },
            None => MarkAllReadResult {
                marked: 0,
                up_to_seq: watermark,
                read_at,
                unread_count: get(&state, OP, "unread_count")?,
                version: get(&state, OP, "version")?,
            },
        };
        tx.commit()
            .await
            .map_err(|e| pg_err("mark_all_read: commit", e))?;
        Ok(result)
    }

    /// Deletes up to `limit` idempotency keys older than `older_than`; returns how many.
    pub async fn purge_idempotency(
        &self,
        older_than: Duration,
        limit: i64,
    ) -> Result<u64, StoreError> {
        const OP: &str = "purge_idempotency";
        let client = self.client(OP).await?;
        let stmt = client
            .prepare_cached(sql::PURGE_IDEMPOTENCY)
            .await
            .map_err(|e| pg_err(OP, e))?;
        client
            .execute(&stmt, &[&older_than.as_secs_f64(), &limit])
            .await
            .map_err(|e| pg_err(OP, e))
    }

    /// For each `(user, seq)`: the user's undelivered rows with `seq <= s` get
    /// `delivered_at = now()` and `delivered_seq` rises to `s` (never beyond `last_seq`).
    /// One statement for the whole batch.
    pub async fn mark_delivered(&self, marks: &[(String, i64)]) -> Result<(), StoreError> {
        const OP: &str = "mark_delivered";
        if marks.is_empty() {
            return Ok(());
        }
        let users: Vec<&str> = marks.iter().map(|(u, _)| u.as_str()).collect();
        let seqs: Vec<i64> = marks.iter().map(|(_, s)| *s).collect();
        let client = self.client(OP).await?;
        let stmt = client
            .prepare_cached(sql::MARK_DELIVERED)
            .await
            .map_err(|e| pg_err(OP, e))?;
        client
            .execute(&stmt, &[&users, &seqs])
            .await
            .map_err(|e| pg_err(OP, e))?;
        Ok(())
    }

    /// Of `marks` (user, highest seq delivered), the users whose `last_seq` is higher, with
    /// it. Users without a `user_state` row have nothing to catch up and are left out.
    pub async fn users_behind<U: AsRef<str>>(
        &self,
        marks: &[(U, i64)],
    ) -> Result<Vec<(String, i64)>, StoreError> {
        const OP: &str = "users_behind";
        if marks.is_empty() {
            return Ok(Vec::new());
        }
        let users: Vec<&str> = marks.iter().map(|(u, _)| u.as_ref()).collect();
        let delivered: Vec<i64> = marks.iter().map(|(_, s)| *s).collect();
        let rows = self
            .query(OP, sql::USERS_BEHIND, &[&users, &delivered])
            .await?;
        rows.iter()
            .map(|row| Ok((get(row, OP, "user_id")?, get(row, OP, "last_seq")?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(data: serde_json::Value) -> NewNotification {
        NewNotification {
            recipients: vec!["a".into(), "b".into()],
            kind: "k".into(),
            title: "t".into(),
            body: "b".into(),
            link: None,
            avatar_url: None,
            data: Some(data),
            idempotency_key: Some("key".into()),
        }
    }

    #[test]
    fn request_hash_is_canonical() {
        let a = n(serde_json::json!({"x": 1, "y": {"b": [1, 2], "a": null}}));
        let b = n(serde_json::json!({"y": {"a": null, "b": [1, 2]}, "x": 1}));
        assert_eq!(
            request_hash(&a.recipients, &a),
            request_hash(&b.recipients, &b)
        );
        let mut c = a.clone();
        c.idempotency_key = Some("other".into());
        assert_eq!(
            request_hash(&a.recipients, &a),
            request_hash(&c.recipients, &c)
        );
        let mut d = a.clone();
        d.title = "t2".into();
        assert_ne!(
            request_hash(&a.recipients, &a),
            request_hash(&d.recipients, &d)
        );
        // Field boundaries are unambiguous.
        let mut e = a.clone();
        e.title = "tb".into();
        e.body = "".into();
        let mut f = a.clone();
        f.title = "t".into();
        f.body = "bb".into();
        assert_ne!(
            request_hash(&e.recipients, &e),
            request_hash(&f.recipients, &f)
        );
    }

    #[tokio::test]
    async fn connections_get_the_statement_timeout() {
        let url = std::env::var("HERALD_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let store = Store::connect(&StoreConfig {
            url,
            pool_size: 1,
            statement_timeout_ms: 1234,
            connect_timeout_ms: 2000,
        })
        .await
        .unwrap();
        let client = store.pool.get().await.unwrap();
        let row = client
            .query_one("SHOW statement_timeout", &[])
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), "1234ms");
        let err = client
            .query_one("SELECT pg_sleep(2)", &[])
            .await
            .unwrap_err();
        assert!(matches!(
            pg_err("sleep", err),
            StoreError::Internal(m) if m.contains("57014")
        ));
        // Pool of one, still held: a waiter gives up after the connect timeout.
        let started = std::time::Instant::now();
        assert!(matches!(
            store.ping().await,
            Err(StoreError::Unavailable(_))
        ));
        assert!(started.elapsed() < Duration::from_secs(3));
        drop(client);
        store.ping().await.unwrap();
    }
}
