//! Development-only endpoints for the local demo (`HERALD_DEV_ENDPOINTS=true`): mint a token
//! for any user and publish without the service key. Never enable them in production.

use actix_web::{web, HttpResponse};
use herald_protocol::http::PublishRequest;
use herald_protocol::ErrorCode;
use serde::{Deserialize, Serialize};

use crate::auth::mint_dev_token;
use crate::error::{from_json_value, ApiError};
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    user_id: String,
    #[serde(default)]
    ttl_secs: Option<i64>,
}

#[derive(Serialize)]
struct TokenResponse {
    token: String,
    expires_at: i64,
}

pub async fn token(
    state: web::Data<AppState>,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse, ApiError> {
    let body: TokenRequest = from_json_value(body.into_inner())?;
    let ttl = body.ttl_secs.unwrap_or(3600);
    if !(1..=86_400).contains(&ttl) {
        return Err(ApiError::field(
            ErrorCode::ValidationFailed,
            "ttl_secs",
            "ttl_secs must be from 1 to 86400",
        ));
    }
    herald_core::validate_user_id(&body.user_id)?;
    let (token, expires_at) = mint_dev_token(&state.config.jwt, &body.user_id, ttl)
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
    Ok(HttpResponse::Ok().json(TokenResponse { token, expires_at }))
}

pub async fn publish(
    state: web::Data<AppState>,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse, ApiError> {
    let req: PublishRequest = from_json_value(body.into_inner())?;
    super::publish::publish_validated(&state, req, Some("dev")).await
}
