//! `GET /v1/ws`: checks done before the upgrade (token in the URL, Origin, draining,
//! capacity, header token, resume cursor), then one task per socket (see [`session`]).
//!
//! Every request carrying `Upgrade: websocket` is handed by actix-http to [`on_upgrade`]
//! together with its raw connection (the upgrade hook installed in `startup.rs`); the HTTP
//! dispatcher of that connection then ends and frees its buffers, and the socket runs on the
//! lean transport in [`conn`]. Refusals are written as the same JSON error responses the API
//! uses, followed by closing the connection.

mod conn;
pub mod frames;
pub mod poll;
mod session;
pub mod sio;
mod transport;

use std::borrow::Cow;
use std::sync::Arc;

use actix_codec::Framed;
use actix_http::body::{BodySize, BoxBody, MessageBody};
use actix_http::{h1, ConnectionType, HttpMessage as _, Request, Response};
use actix_web::http::header::{HeaderMap, ORIGIN};
use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use futures_util::SinkExt;
use herald_protocol::ErrorCode;

pub use conn::{Message, WsConn, WsError};

use crate::auth::{bearer_in, TokenError, VerifiedToken};
use crate::edge::conn::EdgeStream;
use crate::edge::table::{AddrSlot, Refusal};
use crate::error::ApiError;
use crate::state::AppState;

/// An upgrade request's connection, as actix-http hands it over.
pub type Upgraded = Framed<EdgeStream, h1::Codec>;

/// The most a socket's task future may take in a release build (`herald_socket_task_bytes`):
/// with the connection's buffers and registry entry, an idle socket stays within ~3 KiB.
/// Checked against a release node by the fault suite.
pub const RELEASE_TASK_BUDGET: i64 = 1_600;

/// Query parameters that look like credentials. A request carrying one is refused, and the
/// request log never records query strings, so such a token is never written anywhere.
const TOKEN_PARAMS: [&str; 6] = [
    "token",
    "access_token",
    "jwt",
    "auth",
    "authorization",
    "bearer",
];

/// Whether any parameter's name, once percent-decoded (`?%74oken=` is `token`) and trimmed,
/// is one of [`TOKEN_PARAMS`], in any case.
pub fn has_token_param(query: &str) -> bool {
    url_pairs(query).any(|(k, _)| {
        let k = k.trim();
        TOKEN_PARAMS.iter().any(|t| k.eq_ignore_ascii_case(t))
    })
}

pub fn token_in_url() -> ApiError {
    ApiError::new(
        ErrorCode::TokenInUrl,
        "tokens are never accepted in the URL; use the Authorization header or the auth message",
    )
}

/// A header token naming a `kid` the node does not hold, with a JWKS URL set: fetch the keys
/// (rate-limited) before the synchronous checks of [`admit`] verify it.
pub(crate) async fn refresh_keys_for(state: &AppState, headers: &HeaderMap) {
    if let Some(token) = bearer_in(headers) {
        if state.verifier.needs_refresh(token) {
            state.verifier.refresh_keys().await;
        }
    }
}

/// What the pre-upgrade checks let through.
pub(crate) struct Admitted {
    pre_auth: Option<VerifiedToken>,
    last_seq: Option<i64>,
    /// The socket's place in its client address's count (`None` when exempt or unknown).
    addr: Option<AddrSlot>,
}

fn addr_refusal(r: Refusal) -> ApiError {
    match r {
        Refusal::Sockets | Refusal::HttpConnections => {
            ApiError::new(ErrorCode::RateLimited, "too many sockets from this address")
        }
        Refusal::Handshakes(wait) => {
            ApiError::rate_limited("too many WebSocket handshakes from this address", wait)
        }
        Refusal::TableFull => ApiError::new(
            ErrorCode::ServiceUnavailable,
            "this node tracks too many client addresses; retry later",
        ),
    }
}

/// Counts a refused upgrade by its code.
fn refused(state: &AppState, e: ApiError) -> ApiError {
    state
        .metrics
        .handshake_refusals
        .with_label_values(&[e.code.as_str()])
        .inc();
    e
}

/// The checks before an upgrade, in order; every refusal is counted by its code. `client` is
/// the client's address (`None` only for a connection without one); a plain `GET` passes no
/// address, as it holds no socket.
pub(crate) fn admit(
    state: &AppState,
    headers: &HeaderMap,
    query: &str,
    client: Option<std::net::IpAddr>,
    socketio: bool,
) -> Result<Admitted, ApiError> {
    let refuse = |e: ApiError| refused(state, e);
    // Socket.IO: a browser always sends Origin, and it is checked; a request without one is
    // not a browser's, and its token travels in the CONNECT packet (no cookie is ever read),
    // so it proves nothing a missing Origin could forge (docs/socketio.md).
    if !(socketio && headers.get(ORIGIN).is_none()) {
        check_origin(headers, &state.config.allowed_origins).map_err(refuse)?;
    }
    if state.is_draining() {
        return Err(refuse(ApiError::new(
            ErrorCode::ServiceUnavailable,
            "this node is draining; connect to another node",
        )));
    }
    // A full node makes room by evicting its oldest unauthenticated socket, if it has one.
    if state.open_sockets() >= state.config.max_connections && !state.edge.preauth.evict_oldest() {
        return Err(refuse(ApiError::new(
            ErrorCode::ServiceUnavailable,
            "this node is at its connection limit; retry another node",
        )));
    }
    let addr = match client {
        Some(ip) => state.edge.addrs.open_socket(ip).map_err(|r| {
            let limit = match r {
                Refusal::Handshakes(_) => "addr_handshakes",
                Refusal::TableFull => "addr_table_full",
                _ => "addr_sockets",
            };
            state.metrics.limited.with_label_values(&[limit]).inc();
            refuse(addr_refusal(r))
        })?,
        None => None,
    };
    let pre_auth = match bearer_in(headers) {
        Some(token) => Some(
            state
                .verify_user(token)
                .map_err(|e| refuse(token_error(&e)))?,
        ),
        None => None,
    };
    let last_seq = resume_cursor(query).map_err(refuse)?;
    Ok(Admitted {
        pre_auth,
        last_seq,
        addr,
    })
}

fn not_a_handshake(state: &AppState, e: actix_http::ws::HandshakeError) -> ApiError {
    refused(
        state,
        ApiError::new(
            ErrorCode::InvalidParameter,
            format!("expected a WebSocket upgrade request: {e}"),
        ),
    )
}

/// `GET /v1/ws` without `Upgrade: websocket` (the actix-web route): the same checks as an
/// upgrade, then a 400, so a client sees the same refusal whichever way it asked. The refusal
/// closes the connection, as every refused upgrade does: a request that asked for an upgrade
/// (`Connection: Upgrade`, maybe `Upgrade: h2c`) would otherwise be answered
/// `Connection: upgrade`.
pub async fn plain_get(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    refresh_keys_for(&state, req.headers()).await;
    let e = match admit(&state, req.headers(), req.query_string(), None, false) {
        Err(e) => e,
        Ok(_) => {
            let why = actix_http::ws::verify_handshake(req.head())
                .err()
                .unwrap_or(actix_http::ws::HandshakeError::NoWebsocketUpgrade);
            not_a_handshake(&state, why)
        }
    };
    let mut resp = e.error_response();
    resp.head_mut().set_connection_type(ConnectionType::Close);
    resp
}

/// The upgrade hook: routes the request, refuses it with a JSON error or answers 101 and
/// spawns the socket task. The connection's HTTP dispatcher ends when this returns.
pub async fn on_upgrade(
    state: Arc<AppState>,
    req: Request,
    mut framed: Upgraded,
) -> Result<(), actix_web::Error> {
    let started = std::time::Instant::now();
    let query = req.uri().query().unwrap_or("");
    let client = state.edge.client_ip(req.peer_addr(), req.headers());
    let client_log = crate::edge::addr::ClientLog(client);
    let echo =
        cfg!(feature = "dev-endpoints") && req.path() == "/dev/echo" && state.config.dev_endpoints;
    let socketio = sio::is_sio_path(&state.config.socketio, req.path());
    // The WebSocket a long-polling session upgrades to: it joins that session.
    if socketio && req.method() == Method::GET && !has_token_param(query) {
        if let Ok(sio::EioQuery {
            polling: false,
            sid: Some(sid),
        }) = sio::check_query(query)
        {
            return poll::probe_upgrade(state, req, framed, sid).await;
        }
    }
    refresh_keys_for(&state, req.headers()).await;
    let decision = if has_token_param(query) {
        tracing::warn!(method = %req.method(), path = %req.path(), client = %client_log, "refused a token in the URL");
        Err(token_in_url())
    } else if req.path() != "/v1/ws" && !echo && !socketio {
        Err(ApiError::new(ErrorCode::NotFound, "no such endpoint"))
    } else if req.method() != Method::GET {
        Err(ApiError::new(
            ErrorCode::MethodNotAllowed,
            "method not allowed on this path",
        ))
    } else if echo {
        Ok(None)
    } else if socketio {
        sio::check_query(query)
            .and_then(|q| match q.polling {
                false => Ok(()),
                true => Err(ApiError::field(
                    ErrorCode::InvalidParameter,
                    "transport",
                    "transport=polling is plain HTTP GET/POST, not a WebSocket upgrade",
                )),
            })
            .map_err(|e| refused(&state, e))
            .and_then(|()| admit(&state, req.headers(), query, client, true))
            .map(Some)
    } else {
        admit(&state, req.headers(), query, client, false).map(Some)
    }
    .and_then(|admitted| match actix_http::ws::handshake(req.head()) {
        Ok(res) => Ok((admitted, res)),
        Err(e) => Err(not_a_handshake(&state, e)),
    });
    let status = match &decision {
        Ok(_) => 101,
        Err(e) => e.status_code().as_u16(),
    };
    tracing::info!(method = %req.method(), path = %req.path(), status,
        ms = started.elapsed().as_secs_f64() * 1000.0, client = %client_log, "request");
    let (admitted, mut res) = match decision {
        Ok(ok) => ok,
        Err(e) => {
            let _ = respond(&mut framed, e.error_response()).await;
            return Ok(());
        }
    };
    let guard = state.socket_opened();
    let switching = res.finish().drop_body();
    // A socket authenticated by its header writes `connected` before it reads anything: its
    // 101 is only encoded here and goes out in the same write as `connected` (and the first
    // batch). Every other socket waits for the client, so its 101 is sent now.
    // A Socket.IO socket writes Engine.IO's open packet first.
    let writes_first = socketio || matches!(&admitted, Some(a) if a.pre_auth.is_some());
    let item = h1::Message::Item((switching, BodySize::None));
    let sent = if writes_first {
        framed.feed(item).await
    } else {
        framed.send(item).await
    };
    if sent.is_err() {
        return Ok(());
    }
    let parts = framed.into_parts();
    // No longer an HTTP connection: its HTTP slot is released, the socket counts instead.
    let io = parts.io.into_inner();
    // Small frames go out at once: notifications are latency-sensitive, never bulk.
    let _ = io.set_nodelay(true);
    let ws = WsConn::new(
        io,
        parts.read_buf,
        &parts.write_buf,
        state.config.max_message_bytes,
    );
    match admitted {
        Some(a) => spawn_session(state, guard, a, transport::Conn::Ws(ws), socketio),
        None => {
            drop(guard);
            actix_web::rt::spawn(echo_loop(ws));
        }
    }
    Ok(())
}

/// Starts the task of an admitted socket (a WebSocket, or a long-polling session).
pub(crate) fn spawn_session(
    state: Arc<AppState>,
    guard: crate::state::SocketGuard,
    a: Admitted,
    conn: transport::Conn,
    socketio: bool,
) {
    let metrics = state.metrics.clone();
    let auth = match a.pre_auth {
        Some(token) => session::Auth::Header(token),
        None => {
            let (ticket, evicted) = state.edge.preauth.enter(state.next_conn_id());
            if evicted {
                metrics.preauth_evictions.inc();
            }
            session::Auth::Message(ticket)
        }
    };
    let held = session::Held {
        _guard: guard,
        _addr: a.addr,
    };
    let task = session::run(state, held, conn, auth, a.last_seq, socketio);
    metrics
        .socket_task_bytes
        .set(std::mem::size_of_val(&task) as i64);
    actix_web::rt::spawn(task);
}

/// Writes a complete response in one flush and marks the connection to be closed.
pub(crate) async fn respond(framed: &mut Upgraded, resp: HttpResponse) -> std::io::Result<()> {
    let mut resp: Response<BoxBody> = resp.into();
    resp.head_mut().set_connection_type(ConnectionType::Close);
    let (head, body) = resp.into_parts();
    let bytes = body
        .try_into_bytes()
        .unwrap_or_else(|_| actix_web::web::Bytes::new());
    framed
        .feed(h1::Message::Item((
            head,
            BodySize::Sized(bytes.len() as u64),
        )))
        .await?;
    framed.feed(h1::Message::Chunk(Some(bytes))).await?;
    framed.feed(h1::Message::Chunk(None)).await?;
    framed.flush().await
}

/// `GET /dev/echo` (dev endpoints only): echoes every message through the production
/// transport and limits, for WebSocket conformance testing (Autobahn test cases).
async fn echo_loop(mut ws: WsConn) {
    let reason: Option<(u16, String)> = loop {
        let sent = match ws.recv().await {
            Some(Ok(Message::Text(t))) => ws.text(&t).await,
            Some(Ok(Message::Binary(b))) => ws.binary(&b).await,
            Some(Ok(Message::Ping(p))) => ws.pong(&p).await,
            Some(Ok(Message::Pong | Message::Fragment)) => Ok(()),
            Some(Ok(Message::Close(r))) => {
                break r.map(|r| (u16::from(r.code), r.description.unwrap_or_default()))
            }
            Some(Err(WsError::Close(code, msg))) => break Some((code.code(), msg)),
            Some(Err(WsError::Gone)) | None => return,
        };
        if sent.is_err() {
            return;
        }
    };
    let _ = ws
        .close(reason.as_ref().map(|(c, m)| (*c, m.as_str())))
        .await;
}

/// Browsers always send `Origin`; it must be in the allow-list (exact match). A request
/// without `Origin` is accepted only when it authenticates with the `Authorization` header,
/// which a browser cannot set on a WebSocket: that is a server-side client.
pub fn check_origin(headers: &HeaderMap, allowed: &[String]) -> Result<(), ApiError> {
    match headers.get(ORIGIN) {
        None if bearer_in(headers).is_some() => Ok(()),
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

fn resume_cursor(query: &str) -> Result<Option<i64>, ApiError> {
    for (k, v) in url_pairs(query) {
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

/// Splits a query string into pairs, percent-decoded (and `+` as a space) as a browser or
/// any URL library would decode them, so an encoded name cannot slip past a check.
pub fn url_pairs(q: &str) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    form_urlencoded::parse(q.as_bytes())
}

/// 401 `token_revoked`: the token was issued before its user's sessions were revoked.
pub fn token_error(e: &TokenError) -> ApiError {
    ApiError::new(e.error_code(), e.to_string())
}
