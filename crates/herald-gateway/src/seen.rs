//! The seen watermark: raised in the store, then announced to every socket of the user on
//! every node (like a read). Shared by `POST /v1/notifications/seen` and the `seen` command.

use herald_protocol::bus::BusMessage;
use herald_protocol::http::SeenResult;
use herald_store::{SeenOutcome, StoreError};

use crate::state::AppState;

/// Why a `seen` request was refused (nothing changed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeenRefused {
    Negative,
    /// Above the user's latest seq.
    Ahead {
        latest: i64,
    },
}

impl SeenRefused {
    pub fn message(&self) -> String {
        match self {
            SeenRefused::Negative => "seq must be non-negative".to_owned(),
            SeenRefused::Ahead { latest } => {
                format!("seq is above the latest seq ({latest}); it must be from 0 to {latest}")
            }
        }
    }
}

impl AppState {
    /// Raises the user's seen watermark to `seq`; sends a `seen` event when it rose.
    pub async fn mark_seen(
        &self,
        user: &str,
        seq: i64,
    ) -> Result<Result<SeenResult, SeenRefused>, StoreError> {
        if seq < 0 {
            return Ok(Err(SeenRefused::Negative));
        }
        let r = match self.store.mark_seen(user, seq).await? {
            SeenOutcome::Ahead { latest } => return Ok(Err(SeenRefused::Ahead { latest })),
            SeenOutcome::Done(r) => r,
        };
        if r.changed {
            let msg = BusMessage::Seen {
                seen_seq: r.seen_seq,
                version: r.version,
            };
            // Best-effort like read events: clients get the watermark from their next
            // `connected` otherwise.
            if let Err(e) = self.bus.publish(vec![(user.to_string(), msg)]).await {
                self.metrics.bus_publish_errors.inc();
                tracing::warn!(user, error = %e, "seen event not fanned out");
            }
        }
        Ok(Ok(r))
    }
}
