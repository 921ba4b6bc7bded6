//! HTTP errors: every failure is `{code, message[, field]}` with the status from the code table.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use herald_protocol::{ErrorBody, ErrorCode};
use herald_store::StoreError;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub field: Option<String>,
    /// Seconds for `Retry-After` (429 and 503 carry one; 1 unless set).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
            field: None,
            retry_after: None,
        }
    }

    pub fn field(code: ErrorCode, field: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
            field: Some(field.to_string()),
            retry_after: None,
        }
    }

    /// 429 `rate_limited` with `Retry-After` from the bucket's wait.
    pub fn rate_limited(what: &str, wait: std::time::Duration) -> ApiError {
        ApiError {
            retry_after: Some(herald_core::rate::retry_after_secs(wait)),
            ..ApiError::new(ErrorCode::RateLimited, format!("{what}: retry later"))
        }
    }

    pub fn not_found() -> ApiError {
        ApiError::new(ErrorCode::NotFound, "notification not found")
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        let mut resp = HttpResponse::build(self.status_code());
        if self.code == ErrorCode::ServiceUnavailable || self.code == ErrorCode::RateLimited {
            resp.insert_header(("Retry-After", self.retry_after.unwrap_or(1).to_string()));
        }
        let mut resp = resp.json(ErrorBody {
            code: self.code,
            message: self.message.clone(),
            field: self.field.clone(),
        });
        if self.code == ErrorCode::RequestTimeout {
            // The rest of the body may still be arriving: never read it as a next request.
            resp.head_mut()
                .set_connection_type(actix_web::http::ConnectionType::Close);
        }
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Unavailable(m) => {
                tracing::warn!(error = %m, "postgres unavailable");
                ApiError::new(
                    ErrorCode::ServiceUnavailable,
                    "the notification store is unavailable; retry later",
                )
            }
            StoreError::IdempotencyKeyReused => ApiError::field(
                ErrorCode::IdempotencyKeyReused,
                "idempotency_key",
                "this idempotency key was already used with a different request",
            ),
            StoreError::Internal(m) => {
                tracing::error!(error = %m, "store error");
                ApiError::new(ErrorCode::Internal, "internal error")
            }
        }
    }
}

impl From<herald_core::ValidationError> for ApiError {
    fn from(e: herald_core::ValidationError) -> ApiError {
        ApiError::field(ErrorCode::ValidationFailed, e.field, e.to_string())
    }
}

/// Maps actix's JSON extractor failures to our codes.
pub fn json_error(
    err: actix_web::error::JsonPayloadError,
    _req: &actix_web::HttpRequest,
) -> actix_web::Error {
    use actix_web::error::JsonPayloadError as J;
    let api = match &err {
        J::ContentType => ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "Content-Type must be application/json",
        ),
        J::Overflow { limit } | J::OverflowKnownLength { limit, .. } => ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("body is larger than {limit} bytes"),
        ),
        J::Deserialize(e) if e.is_data() => {
            ApiError::new(ErrorCode::ValidationFailed, format!("invalid body: {e}"))
        }
        J::Deserialize(e) => ApiError::new(
            ErrorCode::InvalidJson,
            format!("body is not valid JSON: {e}"),
        ),
        other => ApiError::new(ErrorCode::InvalidJson, format!("cannot read body: {other}")),
    };
    api.into()
}

pub fn query_error(
    err: actix_web::error::QueryPayloadError,
    _req: &actix_web::HttpRequest,
) -> actix_web::Error {
    let msg = format!("invalid query: {err}");
    match backticked(&msg) {
        Some(name) => ApiError::field(ErrorCode::InvalidParameter, &name, msg),
        None => ApiError::new(ErrorCode::InvalidParameter, msg),
    }
    .into()
}

/// The first `name` quoted in backticks in a serde message ("duplicate field `limit`").
fn backticked(msg: &str) -> Option<String> {
    let start = msg.find('`')? + 1;
    let len = msg[start..].find('`')?;
    Some(msg[start..start + len].to_string())
}

/// Deserialises a JSON body already parsed by actix (content type, size and syntax checked
/// there) into `T`, naming the offending field of any data error: `validation_failed` with
/// `field` set to its path (`title`, `data.x`, or the unknown field's name).
pub fn from_json_value<T: serde::de::DeserializeOwned>(
    v: serde_json::Value,
) -> Result<T, ApiError> {
    if !v.is_object() {
        return Err(ApiError::field(
            ErrorCode::ValidationFailed,
            "body",
            "the body must be a JSON object",
        ));
    }
    serde_path_to_error::deserialize::<_, T>(v).map_err(|e| {
        let inner = e.inner().to_string();
        let path = e.path().to_string();
        let field = match backticked(&inner) {
            // A missing field's path is its parent's; add the name. (An unknown field's path
            // already ends with it.)
            Some(name) if inner.starts_with("missing field") => {
                if path == "." || path.is_empty() {
                    name
                } else {
                    format!("{path}.{name}")
                }
            }
            _ if path != "." && !path.is_empty() => path,
            _ => "body".to_string(),
        };
        ApiError::field(
            ErrorCode::ValidationFailed,
            &field,
            format!("{field}: {inner}"),
        )
    })
}

/// An optional JSON body: empty (or only whitespace) is `T::default()`, anything else must be
/// a valid JSON object deserialising into `T` (`invalid_json`, or `validation_failed` naming
/// the field, as [`from_json_value`]).
pub fn optional_json_body<T: serde::de::DeserializeOwned + Default>(
    body: &[u8],
) -> Result<T, ApiError> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(T::default());
    }
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidJson,
            format!("body is not valid JSON: {e}"),
        )
    })?;
    from_json_value(value)
}

/// The most an optional JSON body read as bytes (`read-all`, `revoke`) may be: actix's default
/// payload limit, which these endpoints always had.
pub const SMALL_BODY_LIMIT: usize = 256 * 1024;

/// Reads a small body whole, answering an oversized one with our 413 `payload_too_large`
/// (actix's `Bytes` extractor answers it with a plain-text body, not the error JSON).
pub async fn read_small_body(payload: actix_web::web::Payload) -> Result<bytes::Bytes, ApiError> {
    match payload.to_bytes_limited(SMALL_BODY_LIMIT).await {
        Ok(Ok(body)) => Ok(body),
        Ok(Err(e)) => Err(ApiError::new(
            ErrorCode::InvalidJson,
            format!("cannot read body: {e}"),
        )),
        Err(_) => Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("body is larger than {SMALL_BODY_LIMIT} bytes"),
        )),
    }
}

pub fn path_error(
    err: actix_web::error::PathError,
    _req: &actix_web::HttpRequest,
) -> actix_web::Error {
    ApiError::new(ErrorCode::InvalidParameter, format!("invalid path: {err}")).into()
}
