//! Messages between gateway nodes, carried as JSON over Redis pub/sub.
//! Channels: `<prefix>user:<user_id>`, `<prefix>broadcast`, `<prefix>node:<node_id>` (probes).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::notification::{Broadcast, Notification};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
pub enum BusMessage {
    /// A committed notification for the channel's user.
    Notification {
        notification: Notification,
        unread_count: i64,
        version: i64,
    },
    /// Read state changed for the channel's user.
    Read {
        ids: Vec<Uuid>,
        up_to_seq: Option<i64>,
        read_at: DateTime<Utc>,
        unread_count: i64,
        version: i64,
    },
    /// A broadcast to every connected socket.
    Broadcast { broadcast: Broadcast },
    /// A node's liveness probe of its own subscriber connection.
    Probe { node_id: String, nonce: u64 },
}

impl BusMessage {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Result<BusMessage, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}
