//! A user's fallback preferences and a user's contact data: the bodies of
//! `GET`/`PUT /v1/me/preferences` (user token) and `PUT /v1/users/{user_id}/contact` (service
//! key). What they mean is decided in `herald_core::fallback::prefs`; docs/channels.md.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Per type (or `*`) × channel (`webhook`, `email`, `push`) on/off, quiet hours, digest
/// window. A channel not mentioned is on; a type's own entry wins over `*`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Preferences {
    #[serde(default)]
    #[cfg_attr(feature = "ts", ts(type = "Record<string, Record<string, boolean>>"))]
    pub channels: BTreeMap<String, BTreeMap<String, bool>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub quiet_hours: Option<QuietHours>,
    /// Email digest: at most one email per this many seconds (60–86400).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub digest_window_secs: Option<u32>,
}

/// Local `start` (inclusive) to `end` (exclusive), `HH:MM`, in an IANA time zone; wraps past
/// midnight when `end` is earlier than `start`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct QuietHours {
    pub start: String,
    pub end: String,
    pub time_zone: String,
}

/// `GET /v1/me/preferences/schema`: what a preferences form can offer — the server's
/// fallback rules (`HERALD_FALLBACK_TYPES`), i.e. the types that fall back, their default
/// channels and delay, and the digest window's bounds. A channel a type's rule does not name
/// is never used for it, whatever the preferences say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PreferencesSchema {
    /// Every channel some rule names, in the order `webhook`, `email`, `push`.
    pub channels: Vec<String>,
    /// One entry per configured type, sorted by type; `*` (every other type) last when set.
    pub types: Vec<TypeDefaults>,
    /// The allowed `digest_window_secs`, inclusive.
    pub digest_window_secs: DigestBounds,
}

/// One rule of `HERALD_FALLBACK_TYPES`: `type` falls back to `channels` after `after_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TypeDefaults {
    #[serde(rename = "type")]
    pub kind: String,
    pub channels: Vec<String>,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub after_ms: u64,
}

/// An inclusive range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DigestBounds {
    pub min: u32,
    pub max: u32,
}

/// `PUT /v1/users/{user_id}/contact`: where email fallbacks go, and in which language. A
/// missing or null field clears it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Contact {
    #[serde(default)]
    pub email: Option<String>,
    /// A BCP 47 language tag, e.g. `de-CH`.
    #[serde(default)]
    pub locale: Option<String>,
}

/// The answer of `PUT /v1/users/{user_id}/contact`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ContactResponse {
    pub user_id: String,
    pub email: Option<String>,
    pub locale: Option<String>,
}
