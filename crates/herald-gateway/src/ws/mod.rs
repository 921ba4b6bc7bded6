//! `GET /v1/ws`: checks done before the upgrade (Origin, draining, capacity, header token,
//! resume cursor), then one task per socket (see [`session`]).

mod session;

use actix_web::http::header::ORIGIN;
use actix_web::{web, HttpRequest, HttpResponse};
use herald_protocol::{CloseCode, ErrorCode};

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

/// The close code for an error from the WebSocket codec, shared by sessions and `/dev/echo`;
/// `None` when the connection itself is gone. actix-ws reports an oversized reassembled
/// message and invalid UTF-8 as IO errors; the unit tests below pin that down, so an upgrade
/// that changes it fails loudly instead of silently changing the close codes.
pub(crate) fn close_for(e: &actix_ws::ProtocolError) -> Option<CloseCode> {
    use actix_ws::ProtocolError as P;
    match e {
        P::Overflow => Some(CloseCode::MessageTooBig),
        P::Io(io) if io.to_string().contains("maximum continuation size") => {
            Some(CloseCode::MessageTooBig)
        }
        // Invalid UTF-8 wraps a `Utf8Error` (single frame) or its text (reassembled message);
        // other InvalidData errors are framing errors, e.g. reserved bits set.
        P::Io(io) if io.kind() == std::io::ErrorKind::InvalidData => {
            let utf8 = io
                .get_ref()
                .is_some_and(|inner| inner.is::<std::str::Utf8Error>())
                || io.to_string().contains("utf-8");
            Some(if utf8 {
                CloseCode::InvalidPayload
            } else {
                CloseCode::ProtocolError
            })
        }
        P::Io(_) => None,
        _ => Some(CloseCode::ProtocolError),
    }
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
                Some(Err(e)) => match close_for(&e) {
                    Some(code) => break Some(actix_ws::CloseCode::from(code.code()).into()),
                    None => return,
                },
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

#[cfg(test)]
mod tests {
    use super::*;
    use actix_ws::{AggregatedMessage, ProtocolError};
    use futures_util::StreamExt;

    /// Feeds raw client frames through the real actix-ws codec with the production settings
    /// and returns the first error.
    async fn first_error(raw: Vec<u8>, max: usize) -> ProtocolError {
        use actix_web::FromRequest;
        let (req, mut payload) = actix_web::test::TestRequest::default()
            .insert_header(("upgrade", "websocket"))
            .insert_header(("connection", "upgrade"))
            .insert_header(("sec-websocket-version", "13"))
            .insert_header(("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="))
            .set_payload(raw)
            .to_http_parts();
        let body = web::Payload::from_request(&req, &mut payload)
            .await
            .expect("payload");
        let (_resp, _session, stream) = actix_ws::handle(&req, body).expect("handshake");
        let mut stream = codec(stream, max);
        loop {
            match stream.next().await {
                Some(Err(e)) => return e,
                Some(Ok(AggregatedMessage::Close(_))) | None => panic!("no error"),
                Some(Ok(_)) => continue,
            }
        }
    }

    /// A masked client frame.
    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![(if fin { 0x80 } else { 0 }) | opcode];
        let len = payload.len();
        if len < 126 {
            f.push(0x80 | len as u8);
        } else {
            f.push(0x80 | 126);
            f.extend_from_slice(&(len as u16).to_be_bytes());
        }
        let mask = [1u8, 2, 3, 4];
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    }

    #[actix_web::test]
    async fn codec_errors_map_to_their_close_codes() {
        let big = first_error(frame(true, 0x1, &[b'a'; 300]), 256).await;
        assert_eq!(close_for(&big), Some(CloseCode::MessageTooBig));

        let mut pieces = frame(false, 0x1, &[b'a'; 200]);
        pieces.extend(frame(true, 0x0, &[b'a'; 200]));
        let reassembled = first_error(pieces, 256).await;
        assert_eq!(close_for(&reassembled), Some(CloseCode::MessageTooBig));

        let utf8 = first_error(frame(true, 0x1, &[0xce, 0xba, 0xff, 0xfe]), 256).await;
        assert_eq!(close_for(&utf8), Some(CloseCode::InvalidPayload));

        let mut utf8_pieces = frame(false, 0x1, &[b'a', 0xce]);
        utf8_pieces.extend(frame(true, 0x0, &[0xff]));
        let utf8_reassembled = first_error(utf8_pieces, 256).await;
        assert_eq!(
            close_for(&utf8_reassembled),
            Some(CloseCode::InvalidPayload)
        );

        let mut rsv = frame(true, 0x1, b"x");
        rsv[0] |= 0x40;
        let rsv = first_error(rsv, 256).await;
        assert_eq!(close_for(&rsv), Some(CloseCode::ProtocolError));

        let bad_opcode = first_error(frame(true, 0x3, b"x"), 256).await;
        assert_eq!(close_for(&bad_opcode), Some(CloseCode::ProtocolError));
    }
}
