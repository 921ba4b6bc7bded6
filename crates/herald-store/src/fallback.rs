//! The offline fallback's store side: planning (the cursor and the due jobs), claiming jobs
//! with a lease, recording how a send ended, and the user data the worker reads
//! (preferences, contact). The statements are in [`crate::fallback_sql`].

use std::time::Duration;

use chrono::{DateTime, Utc};
use herald_core::fallback::{Channel, FallbackOverride, Pending, UserPlan};
use herald_protocol::Notification;
use uuid::Uuid;

use crate::error::{pg_err, StoreError};
use crate::fallback_sql as q;
use crate::rows::{get, row_to_notification};
use crate::Store;

/// One user as the planner is given it.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanInput {
    pub user_id: String,
    pub cursor: i64,
    pub rows: Vec<Pending>,
    /// The database's time (the same for every user of one pass).
    pub now: DateTime<Utc>,
}

/// A claimed job: one attempt (`attempt`, 1-based) of one (notification, channel).
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedJob {
    pub notification_id: Uuid,
    pub channel: Channel,
    pub user_id: String,
    /// Send attempts so far, this one included (a quiet-hours deferral gives its one back).
    pub attempt: i32,
    /// This claim's fence: only the latest claim records an outcome.
    pub claim: i32,
}

/// What the worker needs to send one notification.
#[derive(Debug, Clone, PartialEq)]
pub struct JobDetails {
    pub notification: Notification,
    /// What the publish call asked for (`priority`, `fallback`).
    pub fallback: Option<FallbackOverride>,
    pub seen: bool,
    pub prefs: Option<serde_json::Value>,
    pub email: Option<String>,
    pub locale: Option<String>,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum JobEnd {
    Sent,
    /// Not sent and never will be: seen first, muted, no address, notification gone.
    Cancelled(String),
    /// Failed; try again at this time.
    Retry {
        at: DateTime<Utc>,
        error: String,
    },
    /// Not attempted (quiet hours): due again at this time, the attempt given back.
    Deferred(DateTime<Utc>),
    /// Failed for the last time.
    Dead(String),
}

impl Store {
    /// Up to `limit` users that have something to plan.
    pub async fn fallback_users_to_plan(&self, limit: i64) -> Result<Vec<String>, StoreError> {
        const OP: &str = "fallback_users_to_plan";
        let rows = self.query(OP, q::USERS_TO_PLAN, &[&limit]).await?;
        rows.iter().map(|r| get(r, OP, "user_id")).collect()
    }

    /// Plans `users` in one transaction: locks the cursor rows no other node is planning,
    /// reads up to `rows_per_user` rows after each cursor, asks `plan` what is due (telling it
    /// whether the page was full), creates
    /// those jobs and advances the cursors. Returns how many jobs were created.
    pub async fn fallback_plan(
        &self,
        users: &[String],
        rows_per_user: i64,
        plan: &(dyn Fn(&PlanInput, bool) -> UserPlan + Sync),
    ) -> Result<u64, StoreError> {
        const OP: &str = "fallback_plan";
        if users.is_empty() {
            return Ok(0);
        }
        let mut client = self.client(OP).await?;
        let tx = client.transaction().await.map_err(|e| pg_err(OP, e))?;
        let ensure = tx
            .prepare_cached(q::CURSOR_ENSURE)
            .await
            .map_err(|e| pg_err(OP, e))?;
        tx.execute(&ensure, &[&users])
            .await
            .map_err(|e| pg_err(OP, e))?;
        let lock = tx
            .prepare_cached(q::CURSOR_LOCK)
            .await
            .map_err(|e| pg_err(OP, e))?;
        let locked = tx
            .query(&lock, &[&users])
            .await
            .map_err(|e| pg_err(OP, e))?;
        if locked.is_empty() {
            return Ok(0);
        }
        let mut inputs = Vec::with_capacity(locked.len());
        let mut last_seqs = Vec::with_capacity(locked.len());
        for row in &locked {
            inputs.push(PlanInput {
                user_id: get(row, OP, "user_id")?,
                cursor: get(row, OP, "fallback_seq")?,
                rows: Vec::new(),
                now: get(row, OP, "now")?,
            });
            last_seqs.push(get::<i64>(row, OP, "last_seq")?);
        }
        let ids: Vec<String> = inputs.iter().map(|i| i.user_id.clone()).collect();
        let cursors: Vec<i64> = inputs.iter().map(|i| i.cursor).collect();
        let read = tx
            .prepare_cached(q::ROWS_AFTER_CURSOR)
            .await
            .map_err(|e| pg_err(OP, e))?;
        let rows = tx
            .query(&read, &[&ids, &cursors, &rows_per_user])
            .await
            .map_err(|e| pg_err(OP, e))?;
        for row in &rows {
            let user: String = get(row, OP, "user_id")?;
            let Some(input) = inputs.iter_mut().find(|i| i.user_id == user) else {
                continue;
            };
            input.rows.push(Pending {
                seq: get(row, OP, "seq")?,
                id: get(row, OP, "id")?,
                kind: get(row, OP, "type")?,
                created_at: get(row, OP, "created_at")?,
                seen: get(row, OP, "seen")?,
                fallback: parse_override(get(row, OP, "fallback")?),
            });
        }
        let (mut j_ids, mut j_channels, mut j_users, mut j_seqs, mut j_at) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut advance, mut planned, mut next_due) = (Vec::new(), Vec::new(), Vec::new());
        for (input, last_seq) in inputs.iter().zip(last_seqs) {
            let full = input.rows.len() as i64 >= rows_per_user;
            let p = plan(input, full);
            let last_read = input.rows.last().map_or(input.cursor, |r| r.seq);
            // Every row up to last_seq was read (or purged) unless the page was full.
            let seen_all = if full {
                last_read
            } else {
                last_read.max(last_seq)
            };
            let to = if p.next_due.is_none() {
                p.advance_to.max(seen_all)
            } else {
                p.advance_to
            };
            advance.push(to);
            planned.push(seen_all);
            next_due.push(p.next_due);
            for job in p.due {
                j_ids.push(job.id);
                j_channels.push(job.channel.as_str());
                j_users.push(input.user_id.as_str());
                j_seqs.push(job.seq);
                j_at.push(job.at);
            }
        }
        let mut created = 0;
        if !j_ids.is_empty() {
            let create = tx
                .prepare_cached(q::JOBS_CREATE)
                .await
                .map_err(|e| pg_err(OP, e))?;
            created = tx
                .execute(&create, &[&j_ids, &j_channels, &j_users, &j_seqs, &j_at])
                .await
                .map_err(|e| pg_err(OP, e))?;
        }
        let adv = tx
            .prepare_cached(q::CURSOR_ADVANCE)
            .await
            .map_err(|e| pg_err(OP, e))?;
        tx.execute(&adv, &[&ids, &advance, &planned, &next_due])
            .await
            .map_err(|e| pg_err(OP, e))?;
        tx.commit().await.map_err(|e| pg_err(OP, e))?;
        Ok(created)
    }

    /// Claims up to `limit` due jobs for `lease` on behalf of `owner`.
    pub async fn fallback_claim(
        &self,
        limit: i64,
        lease: Duration,
        owner: &str,
    ) -> Result<Vec<ClaimedJob>, StoreError> {
        const OP: &str = "fallback_claim";
        let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        let rows = self
            .query(OP, q::JOBS_CLAIM, &[&limit, &lease_ms, &owner])
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let channel: String = get(row, OP, "channel")?;
            let channel = Channel::parse(&channel)
                .ok_or_else(|| StoreError::Internal(format!("{OP}: channel {channel:?}")))?;
            out.push(ClaimedJob {
                notification_id: get(row, OP, "notification_id")?,
                channel,
                user_id: get(row, OP, "user_id")?,
                attempt: get(row, OP, "attempts")?,
                claim: get(row, OP, "claims")?,
            });
        }
        Ok(out)
    }

    /// The notifications (with seen state and the user's data) of claimed jobs; a purged
    /// notification is missing from the answer.
    pub async fn fallback_details(&self, ids: &[Uuid]) -> Result<Vec<JobDetails>, StoreError> {
        const OP: &str = "fallback_details";
        let rows = self.query(OP, q::JOB_DETAILS, &[&ids]).await?;
        rows.iter()
            .map(|row| {
                Ok(JobDetails {
                    notification: row_to_notification(row)?,
                    fallback: parse_override(get(row, OP, "fallback")?),
                    seen: get(row, OP, "seen")?,
                    prefs: get(row, OP, "prefs")?,
                    email: get(row, OP, "email")?,
                    locale: get(row, OP, "locale")?,
                })
            })
            .collect()
    }

    /// Records how claim `job.claim` ended. A no-op if a later claim took the job over
    /// (its lease ran out): that attempt records its own end.
    pub async fn fallback_finish(
        &self,
        job: &ClaimedJob,
        end: &JobEnd,
    ) -> Result<bool, StoreError> {
        const OP: &str = "fallback_finish";
        let (state, at, error, give_back): (&str, Option<DateTime<Utc>>, Option<&str>, i32) =
            match end {
                JobEnd::Sent => ("sent", None, None, 0),
                JobEnd::Cancelled(why) => ("cancelled", None, Some(why.as_str()), 0),
                JobEnd::Retry { at, error } => ("pending", Some(*at), Some(error.as_str()), 0),
                JobEnd::Deferred(at) => ("pending", Some(*at), None, 1),
                JobEnd::Dead(error) => ("dead", None, Some(error.as_str()), 0),
            };
        let client = self.client(OP).await?;
        let stmt = client
            .prepare_cached(q::JOB_FINISH)
            .await
            .map_err(|e| pg_err(OP, e))?;
        let n = client
            .execute(
                &stmt,
                &[
                    &job.notification_id,
                    &job.channel.as_str(),
                    &job.claim,
                    &state,
                    &at,
                    &error,
                    &give_back,
                ],
            )
            .await
            .map_err(|e| pg_err(OP, e))?;
        Ok(n == 1)
    }

    /// Deletes up to `limit` finished jobs older than `age`; returns how many.
    pub async fn fallback_purge_jobs(&self, age: Duration, limit: i64) -> Result<u64, StoreError> {
        const OP: &str = "fallback_purge_jobs";
        let age_ms = i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
        let client = self.client(OP).await?;
        let stmt = client
            .prepare_cached(q::JOBS_PURGE)
            .await
            .map_err(|e| pg_err(OP, e))?;
        client
            .execute(&stmt, &[&age_ms, &limit])
            .await
            .map_err(|e| pg_err(OP, e))
    }

    /// The user's stored preferences JSON, if any.
    pub async fn preferences(
        &self,
        user_id: &str,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        const OP: &str = "preferences";
        let rows = self.query(OP, q::PREFS_GET, &[&user_id]).await?;
        rows.first().map(|r| get(r, OP, "prefs")).transpose()
    }

    pub async fn set_preferences(
        &self,
        user_id: &str,
        prefs: &serde_json::Value,
    ) -> Result<(), StoreError> {
        const OP: &str = "set_preferences";
        self.query(OP, q::PREFS_PUT, &[&user_id, prefs]).await?;
        Ok(())
    }

    /// The user's email address and locale.
    pub async fn contact(
        &self,
        user_id: &str,
    ) -> Result<(Option<String>, Option<String>), StoreError> {
        const OP: &str = "contact";
        let rows = self.query(OP, q::CONTACT_GET, &[&user_id]).await?;
        match rows.first() {
            None => Ok((None, None)),
            Some(r) => Ok((get(r, OP, "email")?, get(r, OP, "locale")?)),
        }
    }

    pub async fn set_contact(
        &self,
        user_id: &str,
        email: Option<&str>,
        locale: Option<&str>,
    ) -> Result<(), StoreError> {
        const OP: &str = "set_contact";
        self.query(OP, q::CONTACT_PUT, &[&user_id, &email, &locale])
            .await?;
        Ok(())
    }
}

/// A stored `notifications.fallback`; one that no longer parses counts as none (the type's
/// rule applies), which only a hand edit of the column can cause.
fn parse_override(v: Option<serde_json::Value>) -> Option<FallbackOverride> {
    v.and_then(|v| serde_json::from_value(v).ok())
}
