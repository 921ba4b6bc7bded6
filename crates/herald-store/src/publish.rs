//! Publishing: the group-commit batch, the keyed (idempotent) publish in its own transaction,
//! the replay of a stored idempotency record, and the purge of old idempotency keys.
//!
//! The store returns store types ([`Committed`]); the caller builds its answer from them. The
//! idempotency record is the caller's too: [`Store::publish`] asks the caller for it (a JSON
//! value, built from what was committed), stores it in the same transaction, and gives it back
//! untouched on a replay, so the store never needs to know what the caller answers.

use std::time::Duration;

use chrono::{DateTime, Utc};
use herald_core::NewNotification;
use herald_protocol::Notification;

use crate::batch::BatchInput;
use crate::error::{is_retryable, pg_err, StoreError};
use crate::hash::request_hash;
use crate::pool::Client;
use crate::rows::get;
use crate::sql;
use crate::Store;

/// One created notification with its recipient's counters right after the commit.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    pub notification: Notification,
    pub unread_count: i64,
    pub version: i64,
}

/// What one publish request committed: one row per recipient, in recipient (byte) order.
#[derive(Debug, Clone, PartialEq)]
pub struct Committed {
    pub items: Vec<Published>,
    /// The rows' `created_at`: the transaction's `now()`, the same for every row.
    pub created_at: DateTime<Utc>,
}

/// Builds the idempotency record of a keyed publish from what it committed. It is stored with
/// the key and returned as is ([`PublishOutcome::Replayed`]) to a retry of the same request.
pub type IdempotencyRecord = dyn Fn(&Committed) -> serde_json::Result<serde_json::Value> + Sync;

#[derive(Debug, Clone, PartialEq)]
pub enum PublishOutcome {
    /// New rows were committed.
    Created(Committed),
    /// The idempotency key was seen before with the same request: the record stored then.
    Replayed(serde_json::Value),
}

const PUBLISH_MAX_RETRIES: u32 = 3;

enum PublishAttempt {
    Done(PublishOutcome),
    Retry(tokio_postgres::Error),
}

impl Store {
    /// Group commit: publishes several notifications without idempotency keys in one statement
    /// and one transaction, so they share one WAL flush. Returns what each request committed,
    /// in input order; the whole batch commits or fails together.
    pub async fn publish_batch(
        &self,
        batch: &[&NewNotification],
    ) -> Result<Vec<Committed>, StoreError> {
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

    /// Stores one notification per recipient in one transaction (one statement assigns the
    /// seqs and inserts every row). With an idempotency key, a repeat of the same request
    /// returns the record `record` built the first time, and a different request under that
    /// key is refused. `record` is called (only with a key) inside the transaction.
    pub async fn publish(
        &self,
        n: &NewNotification,
        record: &IdempotencyRecord,
    ) -> Result<PublishOutcome, StoreError> {
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
                .publish_attempt(&mut client, &input, hash.as_deref(), record)
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
        record: &IdempotencyRecord,
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
            let committed = input.single(rows, OP)?;
            return Ok(PublishAttempt::Done(PublishOutcome::Created(committed)));
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
        let committed = input.single(rows, OP)?;
        let json = record(&committed).map_err(|e| {
            StoreError::Internal(format!("publish: building the idempotency record: {e}"))
        })?;
        let store = tri!(OP, tx.prepare_cached(sql::IDEMPOTENCY_STORE).await);
        tri!(
            "publish: storing the idempotent response",
            tx.execute(&store, &[&key, &json]).await
        );
        tri!("publish: commit", tx.commit().await);
        Ok(PublishAttempt::Done(PublishOutcome::Created(committed)))
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
        Ok(PublishOutcome::Replayed(response))
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
}
