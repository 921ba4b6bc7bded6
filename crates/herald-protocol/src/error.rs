//! Error codes: one table maps each code to its HTTP status. The same codes appear in
//! WebSocket `error` events (where the HTTP status is not used).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request body is not valid JSON (or not a JSON object where one is required).
    InvalidJson,
    /// A field failed validation; `field` names it.
    ValidationFailed,
    /// A query or path parameter is malformed (bad cursor, bad id, out-of-range limit).
    InvalidParameter,
    /// The body is larger than the endpoint accepts.
    PayloadTooLarge,
    /// The body is not `application/json`.
    UnsupportedMediaType,
    /// Missing or invalid credentials (service key or user token).
    Unauthorized,
    /// The token has expired.
    TokenExpired,
    /// The token was issued before a revocation of its user's sessions (or has no `iat` and
    /// its user has a revocation); a new token is needed.
    TokenRevoked,
    /// A token was sent in the URL; tokens are accepted only in headers or the `auth` message.
    TokenInUrl,
    /// The `Origin` header is missing or not in the allow-list.
    OriginNotAllowed,
    /// The credentials are valid but do not allow this call (a service key without the
    /// endpoint's scope).
    Forbidden,
    /// The resource does not exist, or belongs to another user.
    NotFound,
    /// The HTTP method is not allowed on this path.
    MethodNotAllowed,
    /// The request (head and body) was not complete within the server's request timeout.
    RequestTimeout,
    /// The idempotency key was already used with a different request body.
    IdempotencyKeyReused,
    /// The WebSocket message is not a known command.
    UnknownCommand,
    /// The WebSocket message is JSON but not a valid command (missing or bad fields).
    InvalidMessage,
    /// A command that needs authentication arrived before `auth`, or `auth` arrived twice.
    InvalidState,
    /// Too many requests or messages.
    RateLimited,
    /// A dependency (PostgreSQL) is unavailable; retry later.
    ServiceUnavailable,
    /// An unexpected server error.
    Internal,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 21] = [
        ErrorCode::InvalidJson,
        ErrorCode::ValidationFailed,
        ErrorCode::InvalidParameter,
        ErrorCode::PayloadTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::Unauthorized,
        ErrorCode::TokenExpired,
        ErrorCode::TokenRevoked,
        ErrorCode::TokenInUrl,
        ErrorCode::OriginNotAllowed,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::RequestTimeout,
        ErrorCode::IdempotencyKeyReused,
        ErrorCode::UnknownCommand,
        ErrorCode::InvalidMessage,
        ErrorCode::InvalidState,
        ErrorCode::RateLimited,
        ErrorCode::ServiceUnavailable,
        ErrorCode::Internal,
    ];

    /// The HTTP status this code is sent with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidJson
            | ErrorCode::ValidationFailed
            | ErrorCode::InvalidParameter
            | ErrorCode::TokenInUrl
            | ErrorCode::UnknownCommand
            | ErrorCode::InvalidMessage
            | ErrorCode::InvalidState => 400,
            ErrorCode::Unauthorized | ErrorCode::TokenExpired | ErrorCode::TokenRevoked => 401,
            ErrorCode::OriginNotAllowed | ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::RequestTimeout => 408,
            ErrorCode::IdempotencyKeyReused => 409,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::RateLimited => 429,
            ErrorCode::Internal => 500,
            ErrorCode::ServiceUnavailable => 503,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::ValidationFailed => "validation_failed",
            ErrorCode::InvalidParameter => "invalid_parameter",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::TokenExpired => "token_expired",
            ErrorCode::TokenRevoked => "token_revoked",
            ErrorCode::TokenInUrl => "token_in_url",
            ErrorCode::OriginNotAllowed => "origin_not_allowed",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::IdempotencyKeyReused => "idempotency_key_reused",
            ErrorCode::UnknownCommand => "unknown_command",
            ErrorCode::InvalidMessage => "invalid_message",
            ErrorCode::InvalidState => "invalid_state",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::ServiceUnavailable => "service_unavailable",
            ErrorCode::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The JSON body of every HTTP error response: `{"code": "...", "message": "...", "field": "..."}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
    /// For `validation_failed` and `invalid_parameter`: the offending field or parameter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_name_matches_as_str() {
        for c in ErrorCode::ALL {
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(json, format!("\"{}\"", c.as_str()));
            assert!((400..600).contains(&c.http_status()));
        }
    }
}
