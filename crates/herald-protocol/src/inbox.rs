//! The inbox lifecycle: archive, unarchive, mark unread / read, delete — one notification, a
//! list of ids, or everything matching a filter — and the counts per filter.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Most ids one bulk action may name.
pub const MAX_BULK_IDS: usize = 100;
/// Most notifications one filter action changes; `has_more` says to call again.
pub const MAX_BULK_ROWS: i64 = 1_000;
/// Most notification types listed in [`InboxCounts::by_type`] (the most numerous first).
pub const MAX_COUNT_TYPES: usize = 100;

/// What an inbox action does to each notification it selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum InboxAction {
    /// Moves it to the archive; an unread one is read too (archived notifications are never
    /// unread).
    Archive,
    /// Moves it back to the inbox; it stays read.
    Unarchive,
    /// Marks it read.
    Read,
    /// Marks it unread. Archived notifications are left as they are (unarchive first).
    Unread,
    /// Deletes it for good; its seq is never reused (catch-up skips it).
    Delete,
}

impl InboxAction {
    pub const ALL: [InboxAction; 5] = [
        InboxAction::Archive,
        InboxAction::Unarchive,
        InboxAction::Read,
        InboxAction::Unread,
        InboxAction::Delete,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            InboxAction::Archive => "archive",
            InboxAction::Unarchive => "unarchive",
            InboxAction::Read => "read",
            InboxAction::Unread => "unread",
            InboxAction::Delete => "delete",
        }
    }
}

/// Selects notifications by their state. Every field given must match; none given matches
/// every notification.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct InboxFilter {
    /// Only this notification type (exact match).
    #[serde(default, rename = "type")]
    #[cfg_attr(feature = "ts", ts(optional = nullable))]
    pub kind: Option<String>,
    /// `true`: only archived; `false`: only not archived.
    #[serde(default)]
    #[cfg_attr(feature = "ts", ts(optional = nullable))]
    pub archived: Option<bool>,
    /// `true`: only unread; `false`: only read.
    #[serde(default)]
    #[cfg_attr(feature = "ts", ts(optional = nullable))]
    pub unread: Option<bool>,
}

/// `POST /v1/notifications/bulk` body, and the `inbox` command's fields. Exactly one of `ids`
/// (1 to 100) and `filter`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BulkRequest {
    pub action: InboxAction,
    /// These notifications; ids that are not the user's are ignored.
    #[serde(default)]
    #[cfg_attr(feature = "ts", ts(optional = nullable))]
    pub ids: Option<Vec<Uuid>>,
    /// Every notification matching the filter with `seq <= up_to_seq`.
    #[serde(default)]
    #[cfg_attr(feature = "ts", ts(optional = nullable))]
    pub filter: Option<InboxFilter>,
    /// With `filter`: the watermark (default: the latest seq at the call), so notifications
    /// arriving meanwhile are never touched. Pass the answer's `up_to_seq` when repeating a
    /// call that answered `has_more`.
    #[serde(default)]
    #[cfg_attr(feature = "ts", ts(optional, type = "number | null"))]
    pub up_to_seq: Option<i64>,
}

/// The answer to an inbox action (HTTP and the `inbox` command's `ack`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InboxResult {
    pub action: InboxAction,
    /// The notifications this call changed, ascending by seq (one already in the requested
    /// state is not listed: the call is idempotent).
    pub ids: Vec<Uuid>,
    /// With a filter: the watermark applied.
    #[cfg_attr(feature = "ts", ts(type = "number | null"))]
    pub up_to_seq: Option<i64>,
    /// With a filter: more notifications match; call again with the same `up_to_seq`.
    pub has_more: bool,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub unread_count: i64,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub version: i64,
}

/// The counts of one notification type.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TypeCounts {
    /// Not archived.
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub inbox: i64,
    /// Unread (never archived).
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub unread: i64,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub archived: i64,
}

/// `GET /v1/notifications/counts`: the count behind each filter of the list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InboxCounts {
    /// Every stored notification.
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub total: i64,
    /// Not archived.
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub inbox: i64,
    /// Unread: equal to `unread_count`.
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub unread: i64,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub archived: i64,
    /// Per type, at most 100 types (the most numerous); `types_truncated` says when more exist.
    pub by_type: std::collections::BTreeMap<String, TypeCounts>,
    pub types_truncated: bool,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub latest_seq: i64,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub version: i64,
}
