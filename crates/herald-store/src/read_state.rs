//! Read state: a user's counters, and marking one or all notifications read.

use chrono::{DateTime, Utc};
use herald_protocol::http::{MarkAllReadResult, MarkReadResult};
use tokio_postgres::Row;
use uuid::Uuid;

use crate::error::{pg_err, StoreError};
use crate::rows::get;
use crate::sql;
use crate::Store;

/// A user's counters; all zero for a user who never received anything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UserState {
    pub latest_seq: i64,
    pub delivered_seq: i64,
    pub unread_count: i64,
    pub version: i64,
    /// The seen watermark (`migrations/0004_inbox.sql`).
    pub seen_seq: i64,
}

/// Locks the user's `user_state` row before touching their notifications — the same lock
/// order as publish, so mark-read and publish never deadlock. `None`: the user has no
/// notifications at all.
pub(crate) async fn lock_user_state(
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

impl Store {
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
                        seen_seq: get(row, OP, "seen_seq")?,
                    },
                ))
            })
            .collect()
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
}
