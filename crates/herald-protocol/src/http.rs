//! HTTP request and response bodies.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::notification::Notification;

/// `POST /v1/notifications` (service key). Exactly one of `recipient` / `recipients`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    #[serde(default)]
    #[cfg_attr(feature = "ts", ts(optional = nullable))]
    pub recipient: Option<String>,
    #[serde(default)]
    #[cfg_attr(feature = "ts", ts(optional = nullable))]
    pub recipients: Option<Vec<String>>,
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    #[cfg_attr(feature = "ts", ts(optional = nullable))]
    pub link: Option<String>,
    #[serde(default)]
    #[cfg_attr(feature = "ts", ts(optional = nullable))]
    pub avatar_url: Option<String>,
    #[serde(default)]
    #[cfg_attr(feature = "ts", ts(optional, type = "Record<string, unknown> | null"))]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub data: Option<serde_json::Value>,
    #[serde(default)]
    #[cfg_attr(feature = "ts", ts(optional = nullable))]
    pub idempotency_key: Option<String>,
    /// `critical`: the offline fallback is due at once (unless `fallback.after` says
    /// otherwise) and ignores the user's quiet hours. Default `normal`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional = nullable))]
    pub priority: Option<Priority>,
    /// Replaces the type's fallback rule for this notification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional = nullable))]
    pub fallback: Option<PublishFallback>,
}

/// A publish's `priority`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Normal,
    Critical,
}

/// A publish's `fallback`: what replaces the type's rule (`HERALD_FALLBACK_TYPES`) for this
/// notification. A field left out keeps the rule's value; `channels: []` turns the fallback
/// off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PublishFallback {
    /// `webhook`, `email`, `push`: each must be configured on the server.
    #[serde(default)]
    #[cfg_attr(feature = "ts", ts(optional = nullable))]
    pub channels: Option<Vec<String>>,
    /// How long the user has to see it first: `250ms`, `30s`, `15m`, `2h` (at most `24h`).
    #[serde(default)]
    #[cfg_attr(feature = "ts", ts(optional = nullable))]
    pub after: Option<String>,
}

/// One created notification in a publish response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PublishedItem {
    pub user_id: String,
    pub id: Uuid,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub seq: i64,
}

/// `201 Created` (or `200 OK` with `Idempotent-Replayed: true` for a replay).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PublishResponse {
    pub notifications: Vec<PublishedItem>,
    pub created_at: DateTime<Utc>,
}

/// `POST /v1/broadcasts` (service key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BroadcastRequest {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    #[cfg_attr(feature = "ts", ts(optional = nullable))]
    pub link: Option<String>,
    #[serde(default)]
    #[cfg_attr(feature = "ts", ts(optional, type = "Record<string, unknown> | null"))]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub data: Option<serde_json::Value>,
}

/// `202 Accepted` for a broadcast.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BroadcastResponse {
    pub id: Uuid,
    /// How many gateway nodes received it (Redis `PUBLISH` count; 1 in single-node mode).
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub nodes: u64,
}

/// `GET /v1/notifications` response: newest first (or oldest first with `after`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NotificationPage {
    pub notifications: Vec<Notification>,
    /// Pass as `before` (or `after` in ascending mode) to get the next page; `null` at the end.
    pub next_cursor: Option<String>,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub unread_count: i64,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub latest_seq: i64,
}

/// `GET /v1/notifications/unread-count` and the `get_unread_count` acknowledgement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UnreadCount {
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub unread_count: i64,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub latest_seq: i64,
    /// Increases with every change to the user's notifications; newer state wins.
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub version: i64,
}

/// `POST /v1/notifications/{id}/read` and the `mark_read` acknowledgement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MarkReadResult {
    pub id: Uuid,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub seq: i64,
    pub read_at: DateTime<Utc>,
    /// False when it was already read (the call is idempotent).
    pub changed: bool,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub unread_count: i64,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub version: i64,
}

/// `POST /v1/notifications/read-all` body (optional).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ReadAllRequest {
    #[serde(default)]
    #[cfg_attr(feature = "ts", ts(optional, type = "number | null"))]
    pub up_to_seq: Option<i64>,
}

/// `POST /v1/notifications/read-all` and the `mark_all_read` acknowledgement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MarkAllReadResult {
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub marked: i64,
    /// The watermark actually applied: the request's `up_to_seq`, or the latest seq at the call.
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub up_to_seq: i64,
    pub read_at: DateTime<Utc>,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub unread_count: i64,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub version: i64,
}

/// `POST /v1/notifications/seen` body: raise the seen watermark to `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SeenRequest {
    /// From 0 to the user's latest seq.
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub seq: i64,
}

/// `POST /v1/notifications/seen` and the `seen` acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SeenResult {
    /// The watermark now in force: every notification with `seq <= seen_seq` is seen.
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub seen_seq: i64,
    /// False when the watermark was already at or above the request (the call is idempotent).
    pub changed: bool,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub version: i64,
}

/// `GET /healthz` and `GET /readyz`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Health {
    pub status: String,
    pub node_id: String,
    pub postgres: Option<bool>,
    pub redis: Option<bool>,
}

/// `POST /v1/users/{user_id}/revoke` body (service key with the `revoke` scope). `{}` (or an
/// empty body) revokes every token issued up to the server's time of the call.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    /// RFC 3339 time: tokens whose `iat` is earlier are refused. At most 60 s in the future.
    #[serde(default)]
    #[cfg_attr(feature = "ts", ts(optional = nullable))]
    pub issued_before: Option<String>,
}

/// `200 OK` for a revocation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RevokeResponse {
    pub user_id: String,
    /// The user's cut-off now in force: the later of this call's and any earlier one's.
    pub revoked_before: DateTime<Utc>,
}
