//! Marshalling for [`crate::sql::PUBLISH_BATCH`]: publish requests into its parameter arrays,
//! and its result rows back into each request's created notifications.

use chrono::Utc;
use herald_core::NewNotification;
use herald_protocol::Notification;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::error::StoreError;
use crate::publish::{Committed, Published};
use crate::rows::get;

/// Turns one request's rows of [`crate::sql::PUBLISH_BATCH`] (ids, seqs and counters) and the
/// request's own content into its committed notifications, in recipient (byte) order.
fn created_from_rows(
    rows: &[Row],
    n: &NewNotification,
    recipients: &[String],
) -> Result<Committed, StoreError> {
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
                archived_at: None,
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
    Ok(Committed { items, created_at })
}

/// The arrays of one [`crate::sql::PUBLISH_BATCH`] call, one row per (request, recipient), and how
/// to split its result back per request.
pub(crate) struct BatchInput<'a> {
    /// Row ranges of `users` per request: that request's recipients, sorted and de-duplicated.
    spans: Vec<std::ops::Range<usize>>,
    reqs: Vec<i32>,
    pub(crate) users: Vec<String>,
    /// UUIDv7 per row: time-ordered, so `notifications_id_key` grows at its right edge
    /// instead of taking a random leaf per insert.
    ids: Vec<Uuid>,
    pub(crate) batch: Vec<&'a NewNotification>,
    kinds: Vec<&'a str>,
    titles: Vec<&'a str>,
    bodies: Vec<&'a str>,
    links: Vec<Option<&'a str>>,
    avatars: Vec<Option<&'a str>>,
    data: Vec<Option<&'a serde_json::Value>>,
    fallback: Vec<Option<serde_json::Value>>,
}

impl<'a> BatchInput<'a> {
    pub(crate) fn new(
        batch: &[&'a NewNotification],
        op: &str,
    ) -> Result<BatchInput<'a>, StoreError> {
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
            fallback: batch
                .iter()
                .map(|n| {
                    n.fallback
                        .as_ref()
                        .and_then(|f| serde_json::to_value(f).ok())
                })
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

    pub(crate) fn params(&self) -> [&(dyn ToSql + Sync); 10] {
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
            &self.fallback,
        ]
    }

    /// What a one-request input committed.
    pub(crate) fn single(&self, rows: Vec<Row>, op: &str) -> Result<Committed, StoreError> {
        self.split(rows, op)?
            .pop()
            .ok_or_else(|| StoreError::Internal(format!("{op}: no result for the request")))
    }

    /// What each request committed, in request order.
    pub(crate) fn split(&self, rows: Vec<Row>, op: &str) -> Result<Vec<Committed>, StoreError> {
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
