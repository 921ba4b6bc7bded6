//! Web Push subscriptions (`migrations/0007_push.sql`): registering one (bounded per user,
//! the oldest replaced), listing, removing by the user or when the push service says it is
//! gone.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::{pg_err, StoreError};
use crate::rows::get;
use crate::Store;

/// `$1` user: serialises registrations of one user, so the bound holds under concurrency.
const LOCK_USER: &str = "SELECT pg_advisory_xact_lock(hashtextextended('herald.push:' || $1, 0))";

/// `$1` id, `$2` user, `$3` endpoint, `$4` p256dh, `$5` auth, `$6` user agent. A known
/// endpoint is taken over (new keys, new owner, new age).
const UPSERT: &str =
    "INSERT INTO push_subscriptions (id, user_id, endpoint, p256dh, auth, user_agent) \
     VALUES ($1, $2, $3, $4, $5, $6) \
     ON CONFLICT (endpoint) DO UPDATE SET user_id = EXCLUDED.user_id, p256dh = EXCLUDED.p256dh, \
       auth = EXCLUDED.auth, user_agent = EXCLUDED.user_agent, created_at = now() \
     RETURNING id, user_id, endpoint, p256dh, auth, user_agent, created_at";

/// `$1` user, `$2` how many to keep: removes the oldest beyond the bound.
const TRIM: &str = "DELETE FROM push_subscriptions WHERE id IN ( \
       SELECT id FROM push_subscriptions WHERE user_id = $1 \
       ORDER BY created_at DESC, id DESC OFFSET $2)";

/// `$1` user.
const LIST: &str = "SELECT id, user_id, endpoint, p256dh, auth, user_agent, created_at \
     FROM push_subscriptions WHERE user_id = $1 ORDER BY created_at, id";

/// `$1` user, `$2` endpoint.
const DELETE_OWN: &str = "DELETE FROM push_subscriptions WHERE user_id = $1 AND endpoint = $2";

/// `$1` id, `$2` endpoint (both: a subscription re-registered since is not removed).
const DELETE_GONE: &str = "DELETE FROM push_subscriptions WHERE id = $1 AND endpoint = $2";

/// One stored subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushSubscription {
    pub id: Uuid,
    pub user_id: String,
    pub endpoint: String,
    pub p256dh: Vec<u8>,
    pub auth: Vec<u8>,
    pub user_agent: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A subscription to store (already validated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPushSubscription<'a> {
    pub user_id: &'a str,
    pub endpoint: &'a str,
    pub p256dh: &'a [u8],
    pub auth: &'a [u8],
    pub user_agent: Option<&'a str>,
}

fn row_to_sub(row: &tokio_postgres::Row, op: &str) -> Result<PushSubscription, StoreError> {
    Ok(PushSubscription {
        id: get(row, op, "id")?,
        user_id: get(row, op, "user_id")?,
        endpoint: get(row, op, "endpoint")?,
        p256dh: get(row, op, "p256dh")?,
        auth: get(row, op, "auth")?,
        user_agent: get(row, op, "user_agent")?,
        created_at: get(row, op, "created_at")?,
    })
}

impl Store {
    /// Stores `sub` (or takes over its endpoint) and keeps the user's newest `max_per_user`
    /// subscriptions: overflow policy "replace the oldest".
    pub async fn push_subscribe(
        &self,
        sub: &NewPushSubscription<'_>,
        max_per_user: i64,
    ) -> Result<PushSubscription, StoreError> {
        const OP: &str = "push_subscribe";
        let mut client = self.client(OP).await?;
        let tx = client.transaction().await.map_err(|e| pg_err(OP, e))?;
        tx.execute(LOCK_USER, &[&sub.user_id])
            .await
            .map_err(|e| pg_err(OP, e))?;
        let row = tx
            .query_one(
                UPSERT,
                &[
                    &Uuid::new_v4(),
                    &sub.user_id,
                    &sub.endpoint,
                    &sub.p256dh,
                    &sub.auth,
                    &sub.user_agent,
                ],
            )
            .await
            .map_err(|e| pg_err(OP, e))?;
        let stored = row_to_sub(&row, OP)?;
        tx.execute(TRIM, &[&sub.user_id, &max_per_user])
            .await
            .map_err(|e| pg_err(OP, e))?;
        tx.commit().await.map_err(|e| pg_err(OP, e))?;
        Ok(stored)
    }

    /// The user's subscriptions, oldest first.
    pub async fn push_subscriptions(
        &self,
        user_id: &str,
    ) -> Result<Vec<PushSubscription>, StoreError> {
        const OP: &str = "push_subscriptions";
        let rows = self.query(OP, LIST, &[&user_id]).await?;
        rows.iter().map(|r| row_to_sub(r, OP)).collect()
    }

    /// Removes the user's subscription with this endpoint; whether there was one.
    pub async fn push_unsubscribe(
        &self,
        user_id: &str,
        endpoint: &str,
    ) -> Result<bool, StoreError> {
        const OP: &str = "push_unsubscribe";
        let client = self.client(OP).await?;
        let n = client
            .execute(DELETE_OWN, &[&user_id, &endpoint])
            .await
            .map_err(|e| pg_err(OP, e))?;
        Ok(n > 0)
    }

    /// Removes a subscription the push service said is gone (404/410).
    pub async fn push_remove_gone(&self, id: Uuid, endpoint: &str) -> Result<bool, StoreError> {
        const OP: &str = "push_remove_gone";
        let client = self.client(OP).await?;
        let n = client
            .execute(DELETE_GONE, &[&id, &endpoint])
            .await
            .map_err(|e| pg_err(OP, e))?;
        Ok(n > 0)
    }
}
