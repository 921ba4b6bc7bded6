//! `GET /v1/ws`: checks done before the upgrade (Origin, draining, capacity, header token,
//! resume cursor), then one task per socket (see [`session`]).

mod session;

use actix_web::http::header::ORIGIN;
use actix_web::{web, HttpRequest, HttpResponse};
use herald_protocol::ErrorCode;

use crate::auth::{bearer, TokenError};
use crate::error::ApiError;
use crate::state::AppState;

pub async fn upgrade(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let refuse = |e: ApiError| {
        state
            .metrics
            .handshake_refusals
            .with_label_values(&[e.code.as_str()])
            .inc();
        e
    };
    check_origin(&req, &state.config.allowed_origins).map_err(refuse)?;
    if state.is_draining() {
        return Err(refuse(ApiError::new(
            ErrorCode::ServiceUnavailable,
            "this node is draining; connect to another node",
        )));
    }
    if state.open_sockets() >= state.config.max_connections {
        return Err(refuse(ApiError::new(
            ErrorCode::ServiceUnavailable,
            "this node is at its connection limit; retry another node",
        )));
    }
    let pre_auth = match bearer(&req) {
        Some(token) => Some(
            state
                .verifier
                .verify(token)
                .map_err(|e| refuse(token_error(&e)))?,
        ),
        None => None,
    };
    let last_seq = resume_cursor(&req).map_err(refuse)?;
    let (resp, ws, stream) = actix_ws::handle(&req, body).map_err(|e| {
        refuse(ApiError::new(
            ErrorCode::InvalidParameter,
            format!("expected a WebSocket upgrade request: {e}"),
        ))
    })?;
    let stream = codec(stream, state.config.max_message_bytes);
    let guard = state.socket_opened();
    actix_web::rt::spawn(session::run(
        state.into_inner(),
        guard,
        ws,
        stream,
        pre_auth,
        last_seq,
    ));
    Ok(resp)
}

/// The production codec settings: frames and reassembled messages capped at the same size.
fn codec(stream: actix_ws::MessageStream, max: usize) -> actix_ws::AggregatedMessageStream {
    stream
        .max_frame_size(max)
        .aggregate_continuations()
        .max_continuation_size(max)
}

/// `GET /dev/echo` (dev endpoints only): echoes every message through the production codec
/// settings, for WebSocket conformance testing (Autobahn test cases).
pub async fn echo(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    use actix_ws::AggregatedMessage as M;
    let (resp, mut ws, stream) = actix_ws::handle(&req, body).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidParameter,
            format!("expected a WebSocket upgrade request: {e}"),
        )
    })?;
    let mut stream = codec(stream, state.config.max_message_bytes);
    actix_web::rt::spawn(async move {
        let reason = loop {
            let sent = match stream.recv().await {
                Some(Ok(M::Text(t))) => ws.text(t).await,
                Some(Ok(M::Binary(b))) => ws.binary(b).await,
                Some(Ok(M::Ping(p))) => ws.pong(&p).await,
                Some(Ok(M::Pong(_))) => Ok(()),
                Some(Ok(M::Close(r))) => break r,
                Some(Err(actix_ws::ProtocolError::Overflow)) => {
                    break Some(actix_ws::CloseCode::Size.into())
                }
                Some(Err(_)) => break Some(actix_ws::CloseCode::Protocol.into()),
                None => return,
            };
            if sent.is_err() {
                return;
            }
        };
        let _ = ws.close(reason).await;
    });
    Ok(resp)
}

/// Browsers always send `Origin`; it must be in the allow-list (exact match). A request
/// without `Origin` is accepted only when it authenticates with the `Authorization` header,
/// which a browser cannot set on a WebSocket: that is a server-side client.
pub fn check_origin(req: &HttpRequest, allowed: &[String]) -> Result<(), ApiError> {
    match req.headers().get(ORIGIN) {
        None if bearer(req).is_some() => Ok(()),
        None => Err(ApiError::new(
            ErrorCode::OriginNotAllowed,
            "an Origin header is required unless the Authorization header carries the token",
        )),
        Some(v) => {
            let o = v.to_str().unwrap_or("");
            if allowed.iter().any(|a| a == "*" || a == o) {
                Ok(())
            } else {
                Err(ApiError::new(
                    ErrorCode::OriginNotAllowed,
                    "this Origin is not allowed",
                ))
            }
        }
    }
}

fn resume_cursor(req: &HttpRequest) -> Result<Option<i64>, ApiError> {
    for (k, v) in url_pairs(req.query_string()) {
        if k == "last_seq" {
            return v
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .map(Some)
                .ok_or_else(|| {
                    ApiError::field(
                        ErrorCode::InvalidParameter,
                        "last_seq",
                        "last_seq must be a non-negative integer",
                    )
                });
        }
    }
    Ok(None)
}

/// Splits a query string into raw pairs (no decoding needed for the keys we look at).
pub fn url_pairs(q: &str) -> impl Iterator<Item = (&str, &str)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
}

pub fn token_error(e: &TokenError) -> ApiError {
    let code = if e.is_expired() {
        ErrorCode::TokenExpired
    } else {
        ErrorCode::Unauthorized
    };
    ApiError::new(code, e.to_string())
}
