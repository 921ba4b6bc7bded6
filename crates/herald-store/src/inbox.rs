//! The inbox lifecycle (`migrations/0004_inbox.sql`): archive, unarchive, read, unread and
//! delete by ids or by filter, filtered history pages, counts per filter, and the retention
//! purge. Every change runs under the user's `user_state` row lock and moves
//! `unread_count` and `version` in the same transaction.

use herald_protocol::inbox::{
    InboxAction, InboxCounts, InboxFilter, InboxResult, TypeCounts, MAX_BULK_ROWS, MAX_COUNT_TYPES,
};
use herald_protocol::Notification;
use uuid::Uuid;

use crate::error::{pg_err, StoreError};
use crate::inbox_sql::{self, By};
use crate::read_state::lock_user_state;
use crate::rows::get;
use crate::sql;
use crate::Store;

/// What an inbox action selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// These ids (ids that are not the user's are ignored).
    Ids(Vec<Uuid>),
    /// Every notification matching the filter with `seq <= up_to_seq` (default: the latest
    /// seq at the call), at most [`MAX_BULK_ROWS`] per call, newest first.
    Filter {
        filter: InboxFilter,
        up_to_seq: Option<i64>,
    },
}

/// A filtered history page request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    pub kind: Option<String>,
    pub archived: Option<bool>,
    pub unread_only: bool,
}

/// One user's rows removed by the retention purge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purged {
    pub user_id: String,
    pub ids: Vec<Uuid>,
    pub unread_count: i64,
    pub version: i64,
}

/// One batch of the retention purge: what it removed, and how far its scope's scan got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgeBatch {
    pub purged: Vec<Purged>,
    /// Every row up to this id has been looked at: the next batch starts after it.
    pub cursor: Uuid,
    /// Nothing more to look at now (the scan reached the age limit).
    pub exhausted: bool,
}

/// The retention purge's selection: one type, or every type not in `except`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PurgeScope {
    Type(String),
    AllExcept(Vec<String>),
}

/// The largest UUIDv7 whose timestamp is `ms` (milliseconds since the Unix epoch): every id
/// generated before `ms + 1` is at most this.
pub fn uuid_v7_ceiling(ms: u64) -> Uuid {
    let mut b = [0xffu8; 16];
    let ts = ms.to_be_bytes();
    b[..6].copy_from_slice(&ts[2..8]);
    Uuid::from_bytes(b)
}

impl Store {
    /// Applies `action` to `target` for `user_id`. Idempotent per row: a row already in the
    /// target state is not changed (nor listed). Nothing changed: no version bump.
    pub async fn inbox_apply(
        &self,
        user_id: &str,
        action: InboxAction,
        target: &Target,
    ) -> Result<InboxResult, StoreError> {
        const OP: &str = "inbox_apply";
        let mut client = self.client(OP).await?;
        let tx = client.transaction().await.map_err(|e| pg_err(OP, e))?;
        let Some(state) = lock_user_state(&tx, user_id, OP).await? else {
            tx.rollback().await.map_err(|e| pg_err(OP, e))?;
            let up_to_seq = match target {
                Target::Ids(_) => None,
                Target::Filter { up_to_seq, .. } => Some(up_to_seq.unwrap_or(0)),
            };
            return Ok(InboxResult {
                action,
                ids: vec![],
                up_to_seq,
                has_more: false,
                unread_count: 0,
                version: 0,
            });
        };
        let last_seq: i64 = get(&state, OP, "last_seq")?;
        let (row, up_to_seq, has_more) = match target {
            Target::Ids(ids) => {
                let stmt = tx
                    .prepare_cached(&inbox_sql::apply(action, By::Ids))
                    .await
                    .map_err(|e| pg_err(OP, e))?;
                let row = tx
                    .query_one(&stmt, &[&user_id, ids])
                    .await
                    .map_err(|e| pg_err("inbox_apply: by ids", e))?;
                (row, None, false)
            }
            Target::Filter { filter, up_to_seq } => {
                let watermark = up_to_seq.unwrap_or(last_seq);
                let stmt = tx
                    .prepare_cached(&inbox_sql::apply(action, By::Filter))
                    .await
                    .map_err(|e| pg_err(OP, e))?;
                let row = tx
                    .query_one(
                        &stmt,
                        &[
                            &user_id,
                            &watermark,
                            &filter.kind,
                            &filter.archived,
                            &filter.unread,
                            &MAX_BULK_ROWS,
                        ],
                    )
                    .await
                    .map_err(|e| pg_err("inbox_apply: by filter", e))?;
                let more_stmt = tx
                    .prepare_cached(&inbox_sql::remaining(action))
                    .await
                    .map_err(|e| pg_err(OP, e))?;
                let more = tx
                    .query_one(
                        &more_stmt,
                        &[
                            &user_id,
                            &watermark,
                            &filter.kind,
                            &filter.archived,
                            &filter.unread,
                        ],
                    )
                    .await
                    .map_err(|e| pg_err("inbox_apply: remaining", e))?;
                (row, Some(watermark), get::<bool>(&more, OP, "more")?)
            }
        };
        let ids: Option<Vec<Uuid>> = get(&row, OP, "ids")?;
        let unread: Option<i64> = get(&row, OP, "unread_count")?;
        let version: Option<i64> = get(&row, OP, "version")?;
        let result = InboxResult {
            action,
            ids: ids.unwrap_or_default(),
            up_to_seq,
            has_more,
            unread_count: match unread {
                Some(u) => u,
                None => get(&state, OP, "unread_count")?,
            },
            version: match version {
                Some(v) => v,
                None => get(&state, OP, "version")?,
            },
        };
        tx.commit()
            .await
            .map_err(|e| pg_err("inbox_apply: commit", e))?;
        Ok(result)
    }

    /// Whether the notification exists and is the user's.
    pub async fn exists(&self, user_id: &str, id: Uuid) -> Result<bool, StoreError> {
        let rows = self
            .query("exists", sql::READ_STATUS, &[&user_id, &id])
            .await?;
        Ok(!rows.is_empty())
    }

    /// A filtered history page, newest first, `seq < before`.
    pub async fn list_filtered(
        &self,
        user_id: &str,
        before: Option<i64>,
        limit: i64,
        filter: &ListFilter,
    ) -> Result<Vec<Notification>, StoreError> {
        let before = before.unwrap_or(i64::MAX);
        let limit = limit.max(0);
        let (op, stmt) = if filter.archived == Some(true) {
            ("list (archived)", inbox_sql::ARCHIVED_PAGE)
        } else {
            ("list (filtered)", inbox_sql::FILTERED_PAGE)
        };
        self.query_notifications(
            op,
            stmt,
            &[
                &user_id,
                &before,
                &filter.kind,
                &filter.archived,
                &filter.unread_only,
                &limit,
            ],
        )
        .await
    }

    /// The counts behind each filter of the list, per type (at most [`MAX_COUNT_TYPES`]
    /// types, the most numerous).
    pub async fn inbox_counts(&self, user_id: &str) -> Result<InboxCounts, StoreError> {
        const OP: &str = "inbox_counts";
        let rows = self.query(OP, inbox_sql::COUNTS, &[&user_id]).await?;
        let us = self.user_state(user_id).await?;
        let mut per: Vec<(String, TypeCounts)> = Vec::with_capacity(rows.len());
        let mut out = InboxCounts {
            latest_seq: us.latest_seq,
            version: us.version,
            ..InboxCounts::default()
        };
        for row in &rows {
            let c = TypeCounts {
                inbox: get(row, OP, "inbox")?,
                unread: get(row, OP, "unread")?,
                archived: get(row, OP, "archived")?,
            };
            out.inbox += c.inbox;
            out.unread += c.unread;
            out.archived += c.archived;
            per.push((get(row, OP, "type")?, c));
        }
        out.total = out.inbox + out.archived;
        per.sort_by(|a, b| {
            (b.1.inbox + b.1.archived)
                .cmp(&(a.1.inbox + a.1.archived))
                .then_with(|| a.0.cmp(&b.0))
        });
        out.types_truncated = per.len() > MAX_COUNT_TYPES;
        out.by_type = per.into_iter().take(MAX_COUNT_TYPES).collect();
        Ok(out)
    }

    /// Looks at the next `batch` rows after `cursor` (oldest first) and deletes those of
    /// `scope` older than `max_age`, in one short transaction that locks only the users
    /// concerned (in byte order), and moves their counters. Returns what it removed per user
    /// and the new cursor.
    pub async fn purge_notifications(
        &self,
        scope: &PurgeScope,
        max_age: std::time::Duration,
        batch: i64,
        cursor: Uuid,
    ) -> Result<PurgeBatch, StoreError> {
        const OP: &str = "purge_notifications";
        let now_ms = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0);
        let age_ms = u64::try_from(max_age.as_millis()).unwrap_or(u64::MAX);
        let ceiling = uuid_v7_ceiling(now_ms.saturating_sub(age_ms));
        let secs = max_age.as_secs_f64();
        let (one, except): (Option<&str>, Vec<&str>) = match scope {
            PurgeScope::Type(t) => (Some(t.as_str()), vec![]),
            PurgeScope::AllExcept(ts) => (None, ts.iter().map(String::as_str).collect()),
        };
        let mut client = self.client(OP).await?;
        let tx = client.transaction().await.map_err(|e| pg_err(OP, e))?;
        let scan = tx
            .prepare_cached(inbox_sql::PURGE_SCAN)
            .await
            .map_err(|e| pg_err(OP, e))?;
        let rows = tx
            .query(&scan, &[&ceiling, &secs, &one, &except, &batch, &cursor])
            .await
            .map_err(|e| pg_err("purge_notifications: scan", e))?;
        let mut next = PurgeBatch {
            purged: Vec::new(),
            cursor,
            exhausted: (rows.len() as i64) < batch,
        };
        let mut users = Vec::with_capacity(rows.len());
        let mut seqs = Vec::with_capacity(rows.len());
        for r in &rows {
            let (in_scope, old): (bool, bool) = (get(r, OP, "in_scope")?, get(r, OP, "old")?);
            if in_scope && !old {
                // Below the id ceiling yet not old by `created_at` (the publishing node's
                // clock ran ahead): the cursor stops before it, the next pass looks again.
                next.exhausted = true;
                break;
            }
            next.cursor = get(r, OP, "id")?;
            if in_scope {
                users.push(get::<String>(r, OP, "user_id")?);
                seqs.push(get::<i64>(r, OP, "seq")?);
            }
        }
        if users.is_empty() {
            tx.rollback().await.map_err(|e| pg_err(OP, e))?;
            return Ok(next);
        }
        let mut distinct = users.clone();
        distinct.sort_unstable();
        distinct.dedup();
        let lock = tx
            .prepare_cached(inbox_sql::PURGE_LOCK_USERS)
            .await
            .map_err(|e| pg_err(OP, e))?;
        tx.query(&lock, &[&distinct])
            .await
            .map_err(|e| pg_err("purge_notifications: locking users", e))?;
        let del = tx
            .prepare_cached(inbox_sql::PURGE_DELETE)
            .await
            .map_err(|e| pg_err(OP, e))?;
        let out = tx
            .query(&del, &[&users, &seqs])
            .await
            .map_err(|e| pg_err("purge_notifications: deleting", e))?;
        let purged = out
            .iter()
            .map(|r| {
                Ok(Purged {
                    user_id: get(r, OP, "user_id")?,
                    ids: get(r, OP, "ids")?,
                    unread_count: get(r, OP, "unread_count")?,
                    version: get(r, OP, "version")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        tx.commit()
            .await
            .map_err(|e| pg_err("purge_notifications: commit", e))?;
        next.purged = purged;
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_v7_ceiling_bounds_every_id_of_that_millisecond() {
        let ms = 1_764_000_000_123u64;
        let c = uuid_v7_ceiling(ms);
        let ts = uuid::Timestamp::from_unix(
            uuid::NoContext,
            ms / 1000,
            ((ms % 1000) * 1_000_000) as u32,
        );
        for _ in 0..100 {
            let id = Uuid::new_v7(ts);
            assert!(id <= c);
        }
        let later = uuid::Timestamp::from_unix(
            uuid::NoContext,
            (ms + 1) / 1000,
            (((ms + 1) % 1000) * 1_000_000) as u32,
        );
        assert!(Uuid::new_v7(later) > c);
    }
}
