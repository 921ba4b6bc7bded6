//! Web Push subscriptions: the bodies of `POST`/`GET`/`DELETE /v1/me/push-subscriptions` (user
//! token) and `GET /v1/push/vapid-public-key`. What is accepted is decided in the gateway's
//! `fallback::push`; docs/channels.md.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// `POST /v1/me/push-subscriptions`: the browser's `PushSubscription.toJSON()` as is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PushSubscriptionRequest {
    /// The push service's URL for this subscription: `https://`, at most 2048 bytes.
    pub endpoint: String,
    /// Ignored (the push service's own expiry, in ms since the epoch, or null).
    #[serde(default, rename = "expirationTime")]
    pub expiration_time: Option<f64>,
    pub keys: PushKeys,
}

/// The subscription's keys, base64url (padding allowed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PushKeys {
    /// The browser's P-256 public key: 65 bytes, an uncompressed point on the curve.
    pub p256dh: String,
    /// The browser's authentication secret: 16 bytes.
    pub auth: String,
}

/// One stored subscription (its keys are not sent back).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PushSubscriptionInfo {
    pub id: Uuid,
    pub endpoint: String,
    /// The `User-Agent` of the request that registered it (at most 256 bytes).
    pub user_agent: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// `GET /v1/me/push-subscriptions`: the user's subscriptions, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PushSubscriptionList {
    pub subscriptions: Vec<PushSubscriptionInfo>,
}

/// `GET /v1/push/vapid-public-key`: the server's VAPID public key, the
/// `applicationServerKey` of `PushManager.subscribe`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VapidPublicKey {
    /// base64url (no padding) of the 65-byte uncompressed P-256 point.
    pub public_key: String,
}
