//! The inbox lifecycle: an action is written to the store, then announced to every socket of
//! the user on every node as an `inbox` event with the new version (like `read`).

use herald_core::inbox::BulkTarget;
use herald_protocol::bus::BusMessage;
use herald_protocol::inbox::{InboxAction, InboxResult};
use herald_store::{StoreError, Target};
use uuid::Uuid;

use crate::state::AppState;

impl AppState {
    /// Applies a validated action; sends an `inbox` event when it changed something.
    pub async fn inbox_apply(
        &self,
        user: &str,
        action: InboxAction,
        target: BulkTarget,
    ) -> Result<InboxResult, StoreError> {
        let target = match target {
            BulkTarget::Ids(ids) => Target::Ids(ids),
            BulkTarget::Filter { filter, up_to_seq } => Target::Filter { filter, up_to_seq },
        };
        let r = self.store.inbox_apply(user, action, &target).await?;
        self.metrics
            .inbox_changes
            .with_label_values(&[action.as_str()])
            .inc_by(r.ids.len() as u64);
        if !r.ids.is_empty() {
            self.announce_inbox(user, action, r.ids.clone(), r.unread_count, r.version)
                .await;
        }
        Ok(r)
    }

    /// One notification: `None` when it is not this user's (nothing changed).
    pub async fn inbox_apply_one(
        &self,
        user: &str,
        action: InboxAction,
        id: Uuid,
    ) -> Result<Option<InboxResult>, StoreError> {
        let r = self
            .inbox_apply(user, action, BulkTarget::Ids(vec![id]))
            .await?;
        if r.ids.is_empty() && !self.store.exists(user, id).await? {
            return Ok(None);
        }
        Ok(Some(r))
    }

    /// Best-effort over the bus like read events: a failure is counted, and clients get the
    /// state from their next event, list or reconnect.
    pub async fn announce_inbox(
        &self,
        user: &str,
        action: InboxAction,
        ids: Vec<Uuid>,
        unread_count: i64,
        version: i64,
    ) {
        let msg = BusMessage::Inbox {
            action,
            ids,
            unread_count,
            version,
        };
        if let Err(e) = self.bus.publish(vec![(user.to_string(), msg)]).await {
            self.metrics.bus_publish_errors.inc();
            tracing::warn!(user, action = action.as_str(), error = %e, "inbox event not fanned out");
        }
    }
}
