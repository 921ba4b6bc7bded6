//! Session revocations: one cut-off per user (`migrations/0003_revocations.sql`).

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::error::{pg_err, StoreError};
use crate::rows::get;
use crate::sql;
use crate::Store;

/// A user's cut-off as stored: tokens issued before `revoked_before` are refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub user_id: String,
    pub revoked_before: DateTime<Utc>,
    /// When the row last changed (the database's clock).
    pub revoked_at: DateTime<Utc>,
}

impl Store {
    /// Revokes `user_id`'s tokens issued before `before` (`None`: before the database's now).
    /// The stored cut-off never goes back. Returns the cut-off in force.
    pub async fn revoke(
        &self,
        user_id: &str,
        before: Option<DateTime<Utc>>,
    ) -> Result<DateTime<Utc>, StoreError> {
        const OP: &str = "revoke";
        let client = self.client(OP).await?;
        let stmt = client
            .prepare_cached(sql::REVOKE)
            .await
            .map_err(|e| pg_err(OP, e))?;
        let row = client
            .query_one(&stmt, &[&user_id, &before])
            .await
            .map_err(|e| pg_err(OP, e))?;
        get(&row, OP, "revoked_before")
    }

    /// The revocations changed after `after`, within `retention` of now, oldest change first.
    pub async fn revocations_since(
        &self,
        after: DateTime<Utc>,
        retention: Duration,
    ) -> Result<Vec<Revocation>, StoreError> {
        const OP: &str = "revocations_since";
        let client = self.client(OP).await?;
        let stmt = client
            .prepare_cached(sql::REVOCATIONS_SINCE)
            .await
            .map_err(|e| pg_err(OP, e))?;
        let rows = client
            .query(&stmt, &[&after, &retention.as_secs_f64()])
            .await
            .map_err(|e| pg_err(OP, e))?;
        rows.iter()
            .map(|r| {
                Ok(Revocation {
                    user_id: get(r, OP, "user_id")?,
                    revoked_before: get(r, OP, "revoked_before")?,
                    revoked_at: get(r, OP, "revoked_at")?,
                })
            })
            .collect()
    }

    /// Deletes revocations last changed longer than `retention` ago; returns how many.
    pub async fn purge_revocations(&self, retention: Duration) -> Result<u64, StoreError> {
        const OP: &str = "purge_revocations";
        let client = self.client(OP).await?;
        let stmt = client
            .prepare_cached(sql::PURGE_REVOCATIONS)
            .await
            .map_err(|e| pg_err(OP, e))?;
        client
            .execute(&stmt, &[&retention.as_secs_f64()])
            .await
            .map_err(|e| pg_err(OP, e))
    }
}
