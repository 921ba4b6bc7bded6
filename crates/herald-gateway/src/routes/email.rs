//! The email channel's endpoints:
//!
//! * `GET /v1/email/unsubscribe?t=…`: a small confirmation page with a button. It changes
//!   nothing (mail scanners and link previews fetch links).
//! * `POST /v1/email/unsubscribe?t=…` with the body `List-Unsubscribe=One-Click` (RFC 8058,
//!   what mail clients send; the page's button sends the same): email off for the token's
//!   user and scope, recorded in the user's preferences. No login: the signed token is the
//!   authority (`crate::fallback::unsubscribe`). The parameter is `t`, not `token`: Herald
//!   refuses credentials in URLs, and this link is a capability limited to unsubscribing.
//! * `GET`/`POST /v1/email/suppressions`, `DELETE /v1/email/suppressions/{email}` (service
//!   key, `publish` scope): the suppression list, e.g. fed from a provider's bounce reports.

use actix_web::{web, HttpResponse};
use herald_protocol::email::{AddSuppression, Suppression, SuppressionPage, UnsubscribeResult};
use herald_protocol::ErrorCode;
use secrecy::ExposeSecret;
use serde::Deserialize;

use crate::auth::Scope;
use crate::error::{from_json_value, read_small_body, ApiError};
use crate::fallback::email::EmailConfig;
use crate::fallback::unsubscribe::{self, TokenError};
use crate::routes::extract::Service;
use crate::routes::preferences::check_email;
use crate::state::AppState;

/// The longest `reason`.
const MAX_REASON: usize = 200;
/// Suppressions per page: default and most.
const PAGE: (i64, i64) = (100, 1_000);

#[derive(Debug, Deserialize)]
pub struct TokenQuery {
    #[serde(default)]
    t: Option<String>,
}

fn email_cfg(state: &AppState) -> Result<&EmailConfig, ApiError> {
    state
        .config
        .fallback
        .email
        .as_ref()
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "the email channel is not set up"))
}

/// The (user, scope) of the query's token: 400 `invalid_parameter` when it is missing or not
/// a token, 403 `forbidden` when this server did not sign it.
fn check_token(cfg: &EmailConfig, q: &TokenQuery) -> Result<(String, String), ApiError> {
    let t = q.t.as_deref().ok_or_else(|| {
        ApiError::field(
            ErrorCode::InvalidParameter,
            "t",
            "t: the unsubscribe token is missing",
        )
    })?;
    unsubscribe::verify(cfg.unsubscribe_key.expose_secret(), t).map_err(|e| match e {
        TokenError::Malformed => ApiError::field(
            ErrorCode::InvalidParameter,
            "t",
            "t: not an unsubscribe token",
        ),
        TokenError::Forged => ApiError::new(
            ErrorCode::Forbidden,
            "the unsubscribe token was not issued by this server",
        ),
    })
}

/// `GET /v1/email/unsubscribe`: the confirmation page; never unsubscribes.
pub async fn unsubscribe_page(
    state: web::Data<AppState>,
    q: web::Query<TokenQuery>,
) -> Result<HttpResponse, ApiError> {
    let cfg = email_cfg(&state)?;
    check_token(cfg, &q)?;
    let t = herald_core::fallback::template::escape_html(q.t.as_deref().unwrap_or_default());
    let html = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Unsubscribe</title></head><body>\n\
<p>Stop notification emails?</p>\n\
<form method=\"post\" action=\"?t={t}\">\n\
<input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">\n\
<button type=\"submit\">Unsubscribe</button>\n</form>\n</body></html>\n"
    );
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("cache-control", "no-store"))
        .insert_header(("x-robots-tag", "noindex"))
        .body(html))
}

/// `POST /v1/email/unsubscribe`: RFC 8058 one-click.
pub async fn unsubscribe(
    state: web::Data<AppState>,
    q: web::Query<TokenQuery>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let cfg = email_cfg(&state)?;
    let (user, scope) = check_token(cfg, &q)?;
    let body = read_small_body(body).await?;
    let one_click =
        form_urlencoded::parse(&body).any(|(k, v)| k == "List-Unsubscribe" && v == "One-Click");
    if !one_click {
        return Err(ApiError::field(
            ErrorCode::InvalidParameter,
            "List-Unsubscribe",
            "the body must be the form List-Unsubscribe=One-Click (RFC 8058)",
        ));
    }
    state.store.email_opt_out(&user, &scope).await?;
    tracing::info!(user_id = %user, %scope, "email unsubscribe");
    Ok(HttpResponse::Ok().json(UnsubscribeResult {
        channel: "email".to_owned(),
        scope,
    }))
}

#[derive(Debug, Deserialize)]
pub struct PageQuery {
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    limit: Option<i64>,
}

/// `GET /v1/email/suppressions?after=&limit=`.
pub async fn list(
    service: Service,
    state: web::Data<AppState>,
    q: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    service.require(&state, Scope::Publish)?;
    let limit = q.limit.unwrap_or(PAGE.0);
    if !(1..=PAGE.1).contains(&limit) {
        return Err(ApiError::field(
            ErrorCode::InvalidParameter,
            "limit",
            format!("limit must be between 1 and {}", PAGE.1),
        ));
    }
    let rows = state
        .store
        .suppressions(q.after.as_deref().unwrap_or(""), limit)
        .await?;
    let next_after = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| r.email.clone()))
        .flatten();
    Ok(HttpResponse::Ok().json(SuppressionPage {
        suppressions: rows
            .into_iter()
            .map(|r| Suppression {
                email: r.email,
                reason: r.reason,
                source: r.source,
                created_at: r
                    .created_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            })
            .collect(),
        next_after,
    }))
}

fn bad_email(m: &str) -> ApiError {
    ApiError::field(ErrorCode::ValidationFailed, "email", format!("email {m}"))
}

/// `POST /v1/email/suppressions`: 201 when added, 200 when it was already there.
pub async fn add(
    service: Service,
    state: web::Data<AppState>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    service.require(&state, Scope::Publish)?;
    let body = read_small_body(body).await?;
    let value: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidJson,
            format!("body is not valid JSON: {e}"),
        )
    })?;
    let req: AddSuppression = from_json_value(value)?;
    check_email(&req.email).map_err(bad_email)?;
    let reason = req.reason.unwrap_or_else(|| "added by API".to_owned());
    if reason.is_empty()
        || reason.chars().count() > MAX_REASON
        || reason.chars().any(char::is_control)
    {
        return Err(ApiError::field(
            ErrorCode::ValidationFailed,
            "reason",
            format!("reason must be 1 to {MAX_REASON} characters without control characters"),
        ));
    }
    let added = state.store.suppress(&req.email, &reason, "api").await?;
    let status = if added {
        actix_web::http::StatusCode::CREATED
    } else {
        actix_web::http::StatusCode::OK
    };
    Ok(HttpResponse::build(status).json(serde_json::json!({
        "email": req.email.to_lowercase(),
        "added": added,
    })))
}

/// `DELETE /v1/email/suppressions/{email}`: 204, or 404 when it was not suppressed.
pub async fn remove(
    service: Service,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    service.require(&state, Scope::Publish)?;
    let email = path.into_inner();
    check_email(&email)
        .map_err(|m| ApiError::field(ErrorCode::InvalidParameter, "email", format!("email {m}")))?;
    if state.store.unsuppress(&email).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::new(
            ErrorCode::NotFound,
            "that address is not suppressed",
        ))
    }
}
