//! The user API: the same tokens as the WebSocket; a user only ever sees their own rows.

use actix_web::{web, HttpResponse};
use herald_protocol::http::{NotificationPage, ReadAllRequest, UnreadCount};
use herald_protocol::ErrorCode;
use serde::Deserialize;

use crate::error::{optional_json_body, read_small_body, ApiError};
use crate::routes::extract::User;
use crate::state::AppState;

const DEFAULT_LIMIT: i64 = 20;
const MAX_LIMIT: i64 = 100;

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    limit: Option<String>,
    before: Option<String>,
    after: Option<String>,
    unread_only: Option<String>,
    archived: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

fn param_i64(name: &str, v: &Option<String>, min: i64, max: i64) -> Result<Option<i64>, ApiError> {
    match v {
        None => Ok(None),
        Some(s) => s
            .parse::<i64>()
            .ok()
            .filter(|n| (min..=max).contains(n))
            .map(Some)
            .ok_or_else(|| {
                ApiError::field(
                    ErrorCode::InvalidParameter,
                    name,
                    format!("{name} must be an integer from {min} to {max}"),
                )
            }),
    }
}

fn param_bool(name: &str, v: &Option<String>) -> Result<bool, ApiError> {
    match v.as_deref() {
        None | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") => Ok(true),
        Some(_) => Err(ApiError::field(
            ErrorCode::InvalidParameter,
            name,
            format!("{name} must be true or false"),
        )),
    }
}

/// `GET /v1/notifications?limit=&before=|after=&unread_only=&archived=&type=`: newest first
/// with `before` (the default), oldest first with `after`. Cursors are opaque strings from
/// `next_cursor`. `archived` (true/false) and `type` filter the history (not with `after`).
pub async fn list(
    user: User,
    state: web::Data<AppState>,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = param_i64("limit", &q.limit, 1, MAX_LIMIT)?.unwrap_or(DEFAULT_LIMIT);
    let before = param_i64("before", &q.before, 0, i64::MAX)?;
    let after = param_i64("after", &q.after, 0, i64::MAX)?;
    let unread_only = param_bool("unread_only", &q.unread_only)?;
    let archived = match q.archived {
        None => None,
        Some(_) => Some(param_bool("archived", &q.archived)?),
    };
    if let Some(kind) = &q.kind {
        let filter = herald_protocol::inbox::InboxFilter {
            kind: Some(kind.clone()),
            ..Default::default()
        };
        herald_core::inbox::validate_filter(&filter)
            .map_err(|e| ApiError::field(ErrorCode::InvalidParameter, "type", e.message))?;
    }
    let filtered = archived.is_some() || q.kind.is_some();
    if before.is_some() && after.is_some() {
        return Err(ApiError::field(
            ErrorCode::InvalidParameter,
            "after",
            "give before or after, not both",
        ));
    }
    if after.is_some() && unread_only {
        return Err(ApiError::field(
            ErrorCode::InvalidParameter,
            "unread_only",
            "unread_only cannot be combined with after",
        ));
    }
    if after.is_some() && filtered {
        return Err(ApiError::field(
            ErrorCode::InvalidParameter,
            if archived.is_some() {
                "archived"
            } else {
                "type"
            },
            "archived and type cannot be combined with after",
        ));
    }
    let rows = match after {
        Some(a) => state.store.after_seq(&user.id, a, limit).await?,
        None if filtered => {
            let filter = herald_store::ListFilter {
                kind: q.kind.clone(),
                archived,
                unread_only,
            };
            state
                .store
                .list_filtered(&user.id, before, limit, &filter)
                .await?
        }
        None => {
            state
                .store
                .list(&user.id, before, limit, unread_only)
                .await?
        }
    };
    let us = state.store.user_state(&user.id).await?;
    let next_cursor = if rows.len() as i64 == limit {
        rows.last().map(|n| n.seq.to_string())
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(NotificationPage {
        notifications: rows,
        next_cursor,
        unread_count: us.unread_count,
        latest_seq: us.latest_seq,
    }))
}

pub async fn unread_count(
    user: User,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let us = state.store.user_state(&user.id).await?;
    Ok(HttpResponse::Ok().json(UnreadCount {
        unread_count: us.unread_count,
        latest_seq: us.latest_seq,
        version: us.version,
    }))
}

fn parse_id(raw: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(raw)
        .map_err(|_| ApiError::field(ErrorCode::InvalidParameter, "id", "id must be a UUID"))
}

pub async fn get_one(
    user: User,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path)?;
    match state.store.get(&user.id, id).await? {
        Some(n) => Ok(HttpResponse::Ok().json(n)),
        None => Err(ApiError::not_found()),
    }
}

pub async fn mark_read(
    user: User,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path)?;
    let r = state
        .mark_read(&user.id, id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(HttpResponse::Ok().json(r))
}

/// `POST /v1/notifications/read-all` with an optional JSON body `{"up_to_seq": N}`.
pub async fn read_all(
    user: User,
    state: web::Data<AppState>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_small_body(body).await?;
    let req: ReadAllRequest = optional_json_body(&body)?;
    if req.up_to_seq.is_some_and(|s| s < 0) {
        return Err(ApiError::field(
            ErrorCode::ValidationFailed,
            "up_to_seq",
            "up_to_seq must be non-negative",
        ));
    }
    let r = state.mark_all_read(&user.id, req.up_to_seq).await?;
    Ok(HttpResponse::Ok().json(r))
}
