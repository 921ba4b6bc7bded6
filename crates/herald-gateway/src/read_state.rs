//! What the HTTP handlers and the socket commands share: a change to read state is written to
//! the store, then announced to every socket of the user on every node.

use herald_protocol::bus::BusMessage;
use herald_protocol::http::{MarkAllReadResult, MarkReadResult};
use herald_store::StoreError;

use crate::state::AppState;

impl AppState {
    /// Marks one notification read; `None` when it is not this user's. Sends a `read` event
    /// when something changed.
    pub async fn mark_read(
        &self,
        user: &str,
        id: uuid::Uuid,
    ) -> Result<Option<MarkReadResult>, StoreError> {
        let r = self.store.mark_read(user, id).await?;
        if let Some(r) = r.as_ref().filter(|r| r.changed) {
            self.announce_read(user, vec![r.id], None, r.read_at, r.unread_count, r.version)
                .await;
        }
        Ok(r)
    }

    /// Marks everything up to the watermark read; sends a `read` event when something changed.
    pub async fn mark_all_read(
        &self,
        user: &str,
        up_to_seq: Option<i64>,
    ) -> Result<MarkAllReadResult, StoreError> {
        let r = self.store.mark_all_read(user, up_to_seq).await?;
        if r.marked > 0 {
            self.announce_read(
                user,
                vec![],
                Some(r.up_to_seq),
                r.read_at,
                r.unread_count,
                r.version,
            )
            .await;
        }
        Ok(r)
    }

    /// Read events are best-effort over the bus: a failure is counted, and clients get the
    /// right count from their next event or reconnect.
    async fn announce_read(
        &self,
        user: &str,
        ids: Vec<uuid::Uuid>,
        up_to_seq: Option<i64>,
        read_at: chrono::DateTime<chrono::Utc>,
        unread_count: i64,
        version: i64,
    ) {
        let msg = BusMessage::Read {
            ids,
            up_to_seq,
            read_at,
            unread_count,
            version,
        };
        if let Err(e) = self.bus.publish(vec![(user.to_string(), msg)]).await {
            self.metrics.bus_publish_errors.inc();
            tracing::warn!(user, error = %e, "read event not fanned out");
        }
    }
}
