//! The long-polling requests on the Socket.IO path: the handshake `GET` (no `sid`), the
//! long-poll `GET`, the packets `POST`, and the Origin gate in front of them (CORS itself is
//! the app's `actix-cors`, fed by `HERALD_ALLOWED_ORIGINS`).

use std::future::Future;
use std::sync::Arc;

use actix_http::ConnectionType;
use actix_web::body::EitherBody;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse};
use actix_web::http::header::{CONTENT_LENGTH, ORIGIN};
use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use bytestring::ByteString;
use futures_util::StreamExt;
use herald_protocol::socketio as sio;
use herald_protocol::{CloseCode, ErrorCode};
use tokio::time::{sleep_until, Instant};

use super::{Inbound, PollConn, Shared};
use crate::error::ApiError;
use crate::state::AppState;
use crate::ws::sio::{check_query, is_sio_path};
use crate::ws::transport::Conn;

/// An Engine.IO error body, as the reference server writes it (`{"code":1,...}`), 400.
pub(super) fn engine_error(code: u8, message: &str) -> HttpResponse {
    HttpResponse::BadRequest()
        .content_type("application/json")
        .body(serde_json::json!({ "code": code, "message": message }).to_string())
}

/// 400 `{"code":1,"message":"Session ID unknown"}`: no such session on this node (over,
/// upgraded, or another node's: the balancer must route on the sid's node prefix).
pub(super) fn unknown_sid(state: &AppState, sid: &str) -> HttpResponse {
    let node = sid.split_once('~').map(|(node, _)| node);
    if node.is_some_and(|n| n != state.config.node_id) {
        // Only the node prefix: a live session's full sid would let a log reader poll it.
        tracing::info!(
            sid_node = node.unwrap_or_default(),
            "socket.io request for another node's session: the balancer must route on the sid's node prefix"
        );
    }
    engine_error(1, "Session ID unknown")
}

/// 400 `{"code":3,"message":"Bad request"}`: the client broke the protocol (overlapping
/// requests); the session is closed, as the reference server does.
fn overlap(shared: &Shared, what: &str) -> HttpResponse {
    shared.fail(CloseCode::BadRequest, what);
    engine_error(3, "Bad request")
}

/// Whether a request carries an Origin outside `HERALD_ALLOWED_ORIGINS` (`*` allows any).
/// Without Origin (not a browser) nothing is checked: no cookie is ever read, the token
/// travels in the CONNECT packet.
fn origin_refused(req: &ServiceRequest, allowed: &[String]) -> bool {
    match req.headers().get(ORIGIN) {
        None => false,
        Some(v) => {
            let o = v.to_str().unwrap_or("");
            !allowed.iter().any(|a| a == "*" || a == o)
        }
    }
}

/// In front of CORS: a Socket.IO request (long-polling or its preflight) from an Origin
/// that is not allowed gets 403 `origin_not_allowed`, as the WebSocket upgrade does.
pub fn origin_gate<S, B>(
    req: ServiceRequest,
    srv: &S,
    state: &AppState,
) -> impl Future<Output = Result<ServiceResponse<EitherBody<B>>, actix_web::Error>> + 'static
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
    S::Future: 'static,
    B: 'static,
{
    let refused = is_sio_path(&state.config.socketio, req.path())
        && origin_refused(&req, &state.config.allowed_origins);
    let step = if refused {
        let e = ApiError::new(ErrorCode::OriginNotAllowed, "this Origin is not allowed");
        Err(req.into_response(e.error_response()).map_into_right_body())
    } else {
        Ok(srv.call(req))
    };
    async move {
        match step {
            Err(refusal) => Ok(refusal),
            Ok(call) => call.await.map(ServiceResponse::map_into_left_body),
        }
    }
}

/// The public listener's fallback: the Socket.IO path's plain HTTP requests (long-polling),
/// anything else 404.
pub async fn fallback(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    if !is_sio_path(&state.config.socketio, req.path()) {
        return crate::routes::not_found().await;
    }
    let q = check_query(req.query_string())?;
    if !q.polling {
        return Err(ApiError::new(
            ErrorCode::InvalidParameter,
            "transport=websocket expects a WebSocket upgrade (Upgrade: websocket)",
        ));
    }
    let state = state.into_inner();
    match (req.method(), q.sid) {
        (&Method::GET, None) => handshake(&req, state).await,
        (&Method::GET, Some(sid)) => Ok(match state.polls.get(&sid) {
            Some(shared) => long_poll(&state, &shared).await,
            None => unknown_sid(&state, &sid),
        }),
        (&Method::POST, Some(sid)) => Ok(post(&req, body, &state, &sid).await),
        (&Method::POST, None) => Err(ApiError::field(
            ErrorCode::InvalidParameter,
            "sid",
            "a long-polling POST needs its session's sid (from the handshake)",
        )),
        _ => Err(ApiError::new(
            ErrorCode::MethodNotAllowed,
            "long-polling takes GET and POST",
        )),
    }
}

/// The handshake: the same admission as a WebSocket upgrade (Origin, draining, the node's
/// socket cap, the address's), then a session task on a polling transport; this request
/// returns its open packet as the first long-poll.
async fn handshake(req: &HttpRequest, state: Arc<AppState>) -> Result<HttpResponse, ApiError> {
    crate::ws::refresh_keys_for(&state, req.headers()).await;
    let client = state.edge.client_ip(req.peer_addr(), req.headers());
    let admitted = crate::ws::admit(&state, req.headers(), req.query_string(), client, true)?;
    let guard = state.socket_opened();
    let sid = format!("{}~{}", state.config.node_id, uuid::Uuid::new_v4().simple());
    let conn = PollConn::open(sid, state.polls.clone(), state.metrics.clone());
    let shared = conn.shared().clone();
    crate::ws::spawn_session(
        state.clone(),
        guard,
        admitted,
        Conn::Poll(Box::new(conn)),
        true,
    );
    Ok(long_poll(&state, &shared).await)
}

/// Clears a flag of the session when the request ends (answered or dropped).
struct Pending<'a>(&'a Shared, fn(&mut super::Inner));

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        (self.1)(&mut self.0.lock());
    }
}

fn packets(body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=UTF-8")
        .insert_header(("Cache-Control", "no-store"))
        .body(body)
}

/// A long-poll `GET`: what is queued, or waits until something is (the server's ping comes
/// every pingInterval), at most pingInterval (bounded below the request timeout), then `6`.
async fn long_poll(state: &AppState, shared: &Shared) -> HttpResponse {
    {
        let mut g = shared.lock();
        if g.getting {
            drop(g);
            return overlap(shared, "overlapping long-polling GET requests");
        }
        g.getting = true;
    }
    let _pending = Pending(shared, |g| g.getting = false);
    let cfg = &state.config;
    let wait = cfg
        .heartbeat_interval
        .min(cfg.edge.request_timeout.mul_f64(0.9));
    let deadline = Instant::now() + wait;
    loop {
        if let Some(body) = shared.take() {
            return packets(body);
        }
        tokio::select! {
            _ = shared.ready.notified() => {}
            _ = sleep_until(deadline) => return packets(sio::NOOP.to_string()),
        }
    }
}

/// The declared body length, if any.
fn declared_length(req: &HttpRequest) -> Option<u64> {
    req.headers()
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// A `POST`: its packets, in order, to the session. The body is bounded by maxPayload
/// (`HERALD_MAX_MESSAGE_BYTES`): a declared length above it is refused before anything is
/// read, a streamed (chunked) one as soon as it passes it. Either ends the session (the
/// client was told the limit), and the connection is closed, as the body is not read.
async fn post(
    req: &HttpRequest,
    mut body: web::Payload,
    state: &AppState,
    sid: &str,
) -> HttpResponse {
    let max = state.config.max_message_bytes;
    let shared = state.polls.get(sid);
    let too_large = |shared: Option<&Shared>| {
        if let Some(s) = shared {
            s.fail(
                CloseCode::MessageTooBig,
                "long-polling POST over maxPayload",
            );
        }
        let e = ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("a long-polling POST carries at most maxPayload ({max} bytes)"),
        );
        let mut resp = e.error_response();
        resp.head_mut().set_connection_type(ConnectionType::Close);
        resp
    };
    if declared_length(req).is_some_and(|n| n > max as u64) {
        return too_large(shared.as_deref());
    }
    let Some(shared) = shared else {
        return unknown_sid(state, sid);
    };
    {
        let mut g = shared.lock();
        if g.posting {
            drop(g);
            return overlap(&shared, "overlapping long-polling POST requests");
        }
        g.posting = true;
    }
    let _pending = Pending(&shared, |g| g.posting = false);
    let mut buf = web::BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                return ApiError::new(
                    ErrorCode::InvalidParameter,
                    format!("reading the body: {e}"),
                )
                .error_response()
            }
        };
        if buf.len() + chunk.len() > max {
            return too_large(Some(&shared));
        }
        buf.extend_from_slice(&chunk);
    }
    let Ok(text) = std::str::from_utf8(&buf) else {
        shared.fail(CloseCode::UnsupportedData, "binary long-polling payload");
        return ApiError::new(
            ErrorCode::InvalidParameter,
            "a long-polling payload is UTF-8 text (binary packets are not served)",
        )
        .error_response();
    };
    for p in sio::split_payload(text) {
        let packet = Inbound::Packet(ByteString::from(p));
        if shared.tx.send(packet).await.is_err() {
            return unknown_sid(state, sid);
        }
    }
    HttpResponse::Ok()
        .content_type("text/html; charset=UTF-8")
        .body("ok")
}
