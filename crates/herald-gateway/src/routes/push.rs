//! Web Push subscriptions (user token) and the server's VAPID public key (public): what the
//! browser SDK needs to subscribe and register (docs/channels.md, Web Push).

use actix_web::{web, HttpRequest, HttpResponse};
use herald_protocol::push::{
    PushSubscriptionInfo, PushSubscriptionList, PushSubscriptionRequest, VapidPublicKey,
};
use herald_protocol::ErrorCode;
use herald_store::{NewPushSubscription, PushSubscription};

use crate::error::{from_json_value, read_small_body, ApiError};
use crate::fallback::push::{check_subscription, PushConfig, MAX_USER_AGENT};
use crate::routes::extract::User;
use crate::state::AppState;

fn configured(state: &AppState) -> Result<&PushConfig, ApiError> {
    state.config.fallback.push.as_ref().ok_or_else(|| {
        ApiError::new(
            ErrorCode::NotFound,
            "web push is not configured on this server",
        )
    })
}

fn info(s: PushSubscription) -> PushSubscriptionInfo {
    PushSubscriptionInfo {
        id: s.id,
        endpoint: s.endpoint,
        user_agent: s.user_agent,
        created_at: s.created_at,
    }
}

/// `GET /v1/push/vapid-public-key`: the `applicationServerKey` for `PushManager.subscribe`.
pub async fn vapid_public_key(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let cfg = configured(&state)?;
    Ok(HttpResponse::Ok().json(VapidPublicKey {
        public_key: cfg.vapid.public_b64().to_owned(),
    }))
}

/// `POST /v1/me/push-subscriptions`: stores the browser's subscription (a known endpoint is
/// taken over); the user's oldest is removed beyond `HERALD_PUSH_MAX_SUBSCRIPTIONS`.
pub async fn subscribe(
    user: User,
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let cfg = configured(&state)?;
    let body = read_small_body(body).await?;
    let value: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidJson,
            format!("body is not valid JSON: {e}"),
        )
    })?;
    let sub: PushSubscriptionRequest = from_json_value(value)?;
    let valid = check_subscription(&sub, cfg.allow_http_loopback)
        .map_err(|(field, message)| ApiError::field(ErrorCode::ValidationFailed, field, message))?;
    let user_agent = req
        .headers()
        .get(actix_web::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|ua| {
            let end = (0..=ua.len().min(MAX_USER_AGENT))
                .rev()
                .find(|&i| ua.is_char_boundary(i))
                .unwrap_or(0);
            &ua[..end]
        });
    let stored = state
        .store
        .push_subscribe(
            &NewPushSubscription {
                user_id: &user.id,
                endpoint: &valid.endpoint,
                p256dh: &valid.p256dh,
                auth: &valid.auth,
                user_agent,
            },
            cfg.max_subscriptions,
        )
        .await?;
    Ok(HttpResponse::Created().json(info(stored)))
}

/// `GET /v1/me/push-subscriptions`: the user's subscriptions, oldest first.
pub async fn list(user: User, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let subs = state.store.push_subscriptions(&user.id).await?;
    Ok(HttpResponse::Ok().json(PushSubscriptionList {
        subscriptions: subs.into_iter().map(info).collect(),
    }))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointQuery {
    endpoint: String,
}

/// `DELETE /v1/me/push-subscriptions?endpoint=<url>`: removes the user's subscription with
/// that endpoint (404 `not_found` if the user has none).
pub async fn unsubscribe(
    user: User,
    state: web::Data<AppState>,
    q: web::Query<EndpointQuery>,
) -> Result<HttpResponse, ApiError> {
    if state.store.push_unsubscribe(&user.id, &q.endpoint).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::new(
            ErrorCode::NotFound,
            "no push subscription with this endpoint",
        ))
    }
}
