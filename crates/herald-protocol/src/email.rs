//! The email channel's HTTP bodies: the suppression list (`/v1/email/suppressions`, service
//! key) and the one-click unsubscribe answer (`POST /v1/email/unsubscribe`, no login: the
//! signed token in the link is the authority). docs/channels.md.

use serde::{Deserialize, Serialize};

/// `POST /v1/email/suppressions`: an address no email may go to (e.g. from a provider's
/// bounce report).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AddSuppression {
    pub email: String,
    /// Why (at most 200 characters); default `added by API`.
    #[serde(default)]
    pub reason: Option<String>,
}

/// One suppressed address (stored in lower case).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Suppression {
    pub email: String,
    pub reason: String,
    /// `bounce` (an SMTP 5xx at send time) or `api`.
    pub source: String,
    /// RFC 3339.
    pub created_at: String,
}

/// `GET /v1/email/suppressions`: a page by address; `next_after` is the `after` of the next
/// page (absent on the last one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SuppressionPage {
    pub suppressions: Vec<Suppression>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_after: Option<String>,
}

/// `POST /v1/email/unsubscribe`: what was turned off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UnsubscribeResult {
    /// `email`.
    pub channel: String,
    /// The notification type, or `*` for every type.
    pub scope: String,
}
