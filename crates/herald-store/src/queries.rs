//! Reading notifications: catch-up pages after a seq, history pages, one by id.

use herald_protocol::Notification;
use uuid::Uuid;

use crate::error::StoreError;
use crate::rows::{get, row_to_notification};
use crate::sql;
use crate::Store;

impl Store {
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
}
