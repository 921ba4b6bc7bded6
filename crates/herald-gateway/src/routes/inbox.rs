//! The inbox lifecycle over HTTP (user token): the seen watermark, per-notification actions,
//! bulk actions and the counts per filter.

use actix_web::{web, HttpResponse};
use herald_core::inbox::{validate_bulk, BulkTarget};
use herald_protocol::http::SeenRequest;
use herald_protocol::inbox::{BulkRequest, InboxAction};
use herald_protocol::ErrorCode;

use crate::error::{from_json_value, read_small_body, ApiError};
use crate::routes::extract::User;
use crate::state::AppState;

/// A required JSON object body (read whole, at most [`crate::error::SMALL_BODY_LIMIT`]).
pub(crate) fn required_json_body<T: serde::de::DeserializeOwned>(
    body: &[u8],
) -> Result<T, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidJson,
            format!("body is not valid JSON: {e}"),
        )
    })?;
    from_json_value(value)
}

/// `POST /v1/notifications/seen` with `{"seq": N}`.
pub async fn seen(
    user: User,
    state: web::Data<AppState>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_small_body(body).await?;
    let req: SeenRequest = required_json_body(&body)?;
    match state.mark_seen(&user.id, req.seq).await? {
        Ok(r) => Ok(HttpResponse::Ok().json(r)),
        Err(refused) => Err(ApiError::field(
            ErrorCode::ValidationFailed,
            "seq",
            refused.message(),
        )),
    }
}

fn parse_id(raw: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(raw)
        .map_err(|_| ApiError::field(ErrorCode::InvalidParameter, "id", "id must be a UUID"))
}

async fn one(
    user: User,
    state: web::Data<AppState>,
    path: web::Path<String>,
    action: InboxAction,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path)?;
    let r = state
        .inbox_apply_one(&user.id, action, id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(HttpResponse::Ok().json(r))
}

/// `POST /v1/notifications/{id}/archive`.
pub async fn archive(
    user: User,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    one(user, state, path, InboxAction::Archive).await
}

/// `POST /v1/notifications/{id}/unarchive`.
pub async fn unarchive(
    user: User,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    one(user, state, path, InboxAction::Unarchive).await
}

/// `POST /v1/notifications/{id}/unread`.
pub async fn unread(
    user: User,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    one(user, state, path, InboxAction::Unread).await
}

/// `DELETE /v1/notifications/{id}`.
pub async fn delete(
    user: User,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    one(user, state, path, InboxAction::Delete).await
}

/// `POST /v1/notifications/bulk` with a [`BulkRequest`].
pub async fn bulk(
    user: User,
    state: web::Data<AppState>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_small_body(body).await?;
    let req: BulkRequest = required_json_body(&body)?;
    let (action, target): (InboxAction, BulkTarget) = validate_bulk(req)
        .map_err(|e| ApiError::field(ErrorCode::ValidationFailed, e.field, e.message))?;
    let r = state.inbox_apply(&user.id, action, target).await?;
    Ok(HttpResponse::Ok().json(r))
}

/// `GET /v1/notifications/counts`.
pub async fn counts(user: User, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(state.store.inbox_counts(&user.id).await?))
}
