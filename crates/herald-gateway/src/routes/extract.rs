//! Authentication extractors: a handler that takes one cannot forget to authenticate.

use std::future::{ready, Ready};

use actix_web::{web, FromRequest, HttpMessage as _, HttpRequest};
use futures_util::future::LocalBoxFuture;
use herald_protocol::ErrorCode;

use crate::auth::{bearer, service_key_index, service_key_scope, Scope};
use crate::error::ApiError;
use crate::state::AppState;
use crate::ws::token_error;

/// A request carrying a valid service API key (`Authorization: Bearer <key>`).
pub struct Service {
    /// The key's position in the configured list.
    key: usize,
}

impl Service {
    /// 403 `forbidden` unless this key holds `scope`. Handlers call it first, before any rate
    /// limit or body parsing, so a refused call changes nothing.
    pub fn require(&self, state: &AppState, scope: Scope) -> Result<(), ApiError> {
        let allowed = state
            .config
            .service_key_scopes
            .get(self.key)
            .is_some_and(|s| s.allows(scope));
        if allowed {
            return Ok(());
        }
        state.metrics.limited.with_label_values(&["scope"]).inc();
        Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("this service key does not have the {} scope", scope.name()),
        ))
    }

    /// Takes a token from this key's publish bucket (429 beyond).
    pub fn check_publish(&self, state: &AppState) -> Result<(), ApiError> {
        state.edge.publish.check(self.key).map_err(|wait| {
            state.metrics.limited.with_label_values(&["publish"]).inc();
            ApiError::rate_limited("too many publishes for this service key", wait)
        })
    }

    /// Takes a token from this key's broadcast bucket (429 beyond).
    pub fn check_broadcast(&self, state: &AppState) -> Result<(), ApiError> {
        state.edge.broadcast.check(self.key).map_err(|wait| {
            state
                .metrics
                .limited
                .with_label_values(&["broadcast"])
                .inc();
            ApiError::rate_limited("too many broadcasts for this service key", wait)
        })
    }

    /// The key's non-secret scope (see [`service_key_scope`]); computed only when needed.
    pub fn scope(&self, state: &AppState) -> String {
        state
            .config
            .service_keys
            .get(self.key)
            .map_or_else(String::new, service_key_scope)
    }
}

/// A request carrying a valid user token; the user id comes from the token only.
pub struct User {
    pub id: String,
}

fn state(req: &HttpRequest) -> Result<&web::Data<AppState>, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::new(ErrorCode::Internal, "application state missing"))
}

impl FromRequest for Service {
    type Error = ApiError;
    type Future = Ready<Result<Service, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        ready((|| {
            let st = state(req)?;
            let key = bearer(req).ok_or_else(|| {
                ApiError::new(
                    ErrorCode::Unauthorized,
                    "a service API key is required: Authorization: Bearer <key>",
                )
            })?;
            if let Some(key) = service_key_index(&st.config.service_keys, key) {
                Ok(Service { key })
            } else {
                Err(ApiError::new(
                    ErrorCode::Unauthorized,
                    "invalid service API key",
                ))
            }
        })())
    }
}

impl FromRequest for User {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<User, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let st = state(&req)?;
            let token = bearer(&req).ok_or_else(|| {
                ApiError::new(
                    ErrorCode::Unauthorized,
                    "a user token is required: Authorization: Bearer <jwt>",
                )
            })?;
            // A key rotated in at the identity provider: fetch the JWKS first (rate-limited).
            if st.verifier.needs_refresh(token) {
                st.verifier.refresh_keys().await;
            }
            let v = st.verify_user(token).map_err(|e| token_error(&e))?;
            req.extensions_mut()
                .insert(crate::edge::http::LoggedUser(v.user_id.clone()));
            st.edge.user_api.check(v.user_id.clone()).map_err(|wait| {
                st.metrics.limited.with_label_values(&["user_api"]).inc();
                ApiError::rate_limited("too many requests for this user", wait)
            })?;
            Ok(User { id: v.user_id })
        })
    }
}

/// The `{user_id}` of a service route, checked like a token's `sub`: 400 `invalid_parameter`
/// naming `user_id` otherwise.
pub fn path_user_id(path: web::Path<String>) -> Result<String, ApiError> {
    let user_id = path.into_inner();
    herald_core::validate_user_id(&user_id).map_err(|e| {
        ApiError::field(
            ErrorCode::InvalidParameter,
            "user_id",
            format!("user_id: {e}"),
        )
    })?;
    Ok(user_id)
}
