use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A stored notification as clients see it (WebSocket events and HTTP responses).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Notification {
    pub id: Uuid,
    pub user_id: String,
    /// Per-user sequence number: 1, 2, 3, … with no gaps among committed notifications.
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub seq: i64,
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub body: String,
    pub link: Option<String>,
    pub avatar_url: Option<String>,
    #[cfg_attr(feature = "ts", ts(type = "Record<string, unknown> | null"))]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub data: Option<serde_json::Value>,
    pub created_at: DateTime<Utc>,
    /// First delivery to any device; `null` until then (and in live events).
    pub delivered_at: Option<DateTime<Utc>>,
    pub read_at: Option<DateTime<Utc>>,
    /// When it was archived; absent while it is not (never set in live events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub archived_at: Option<DateTime<Utc>>,
}

/// An ephemeral message to every connected user (`global_notification`); never stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct Broadcast {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub body: String,
    pub link: Option<String>,
    #[cfg_attr(feature = "ts", ts(type = "Record<string, unknown> | null"))]
    pub data: Option<serde_json::Value>,
    pub created_at: DateTime<Utc>,
}
