//! The email channel's store side: the per-user digest slot (at most one email per window,
//! across nodes), the suppression list, and the one-click unsubscribe. The statements are in
//! [`crate::email_sql`].

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::email_sql as q;
use crate::error::StoreError;
use crate::rows::get;
use crate::Store;

/// One suppressed address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppression {
    pub email: String,
    pub reason: String,
    /// `bounce` or `api`.
    pub source: String,
    pub created_at: DateTime<Utc>,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Store {
    /// When `user_id` was last emailed.
    pub async fn email_last_sent(
        &self,
        user_id: &str,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        const OP: &str = "email_last_sent";
        let rows = self.query(OP, q::DIGEST_LAST_SENT, &[&user_id]).await?;
        rows.first().map(|r| get(r, OP, "last_sent_at")).transpose()
    }

    /// Takes the user's email slot (`Some(the time taken)`), or `None` when the user was
    /// emailed less than `window` ago.
    pub async fn email_reserve(
        &self,
        user_id: &str,
        window: Duration,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        const OP: &str = "email_reserve";
        let rows = self
            .query(OP, q::DIGEST_RESERVE, &[&user_id, &ms(window)])
            .await?;
        rows.first().map(|r| get(r, OP, "last_sent_at")).transpose()
    }

    /// Gives a slot taken at `reserved` back (the send failed): the user's last email is
    /// `previous` again.
    pub async fn email_release(
        &self,
        user_id: &str,
        reserved: DateTime<Utc>,
        previous: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        const OP: &str = "email_release";
        match previous {
            Some(_) => {
                self.query(OP, q::DIGEST_RELEASE, &[&user_id, &reserved, &previous])
                    .await?
            }
            None => {
                self.query(OP, q::DIGEST_RELEASE_NEW, &[&user_id, &reserved])
                    .await?
            }
        };
        Ok(())
    }

    /// Why `email` is suppressed, if it is (compared in lower case).
    pub async fn suppressed(&self, email: &str) -> Result<Option<String>, StoreError> {
        const OP: &str = "suppressed";
        let rows = self
            .query(OP, q::SUPPRESSION_GET, &[&email.to_lowercase()])
            .await?;
        rows.first().map(|r| get(r, OP, "reason")).transpose()
    }

    /// Adds `email` to the suppression list; `false` if it was already there (the first
    /// reason is kept).
    pub async fn suppress(
        &self,
        email: &str,
        reason: &str,
        source: &str,
    ) -> Result<bool, StoreError> {
        const OP: &str = "suppress";
        let client = self.client(OP).await?;
        let stmt = client
            .prepare_cached(q::SUPPRESSION_ADD)
            .await
            .map_err(|e| crate::error::pg_err(OP, e))?;
        let n = client
            .execute(&stmt, &[&email.to_lowercase(), &reason, &source])
            .await
            .map_err(|e| crate::error::pg_err(OP, e))?;
        Ok(n == 1)
    }

    /// Removes `email`; `false` if it was not suppressed.
    pub async fn unsuppress(&self, email: &str) -> Result<bool, StoreError> {
        const OP: &str = "unsuppress";
        let client = self.client(OP).await?;
        let stmt = client
            .prepare_cached(q::SUPPRESSION_REMOVE)
            .await
            .map_err(|e| crate::error::pg_err(OP, e))?;
        let n = client
            .execute(&stmt, &[&email.to_lowercase()])
            .await
            .map_err(|e| crate::error::pg_err(OP, e))?;
        Ok(n == 1)
    }

    /// Up to `limit` suppressions after the address `after`, by address.
    pub async fn suppressions(
        &self,
        after: &str,
        limit: i64,
    ) -> Result<Vec<Suppression>, StoreError> {
        const OP: &str = "suppressions";
        let rows = self
            .query(OP, q::SUPPRESSION_LIST, &[&after, &limit])
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Suppression {
                    email: get(r, OP, "email")?,
                    reason: get(r, OP, "reason")?,
                    source: get(r, OP, "source")?,
                    created_at: get(r, OP, "created_at")?,
                })
            })
            .collect()
    }

    /// One-click unsubscribe: email off for `scope` (a type, or `*` for every type) in the
    /// user's preferences. Returns the preferences as now stored.
    pub async fn email_opt_out(
        &self,
        user_id: &str,
        scope: &str,
    ) -> Result<serde_json::Value, StoreError> {
        const OP: &str = "email_opt_out";
        let rows = self
            .query(OP, q::PREFS_EMAIL_OFF, &[&user_id, &scope])
            .await?;
        let row = rows
            .first()
            .ok_or_else(|| StoreError::Internal(format!("{OP}: no row returned")))?;
        get(row, OP, "prefs")
    }
}
