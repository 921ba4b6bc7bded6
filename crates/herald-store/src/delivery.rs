//! Delivery marks: what each user's sockets have received, and which users are behind.

use crate::error::{pg_err, StoreError};
use crate::rows::get;
use crate::sql;
use crate::Store;

impl Store {
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
