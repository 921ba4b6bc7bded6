//! The Socket.IO endpoint's upgrade checks (`GET /socket.io/?EIO=4&transport=websocket`,
//! path `HERALD_SOCKETIO_PATH`) and the per-socket state of a Socket.IO session. The packets
//! themselves are `herald_protocol::socketio`; the session is the native one
//! (`session::sio` adapts its frames).

use herald_protocol::ErrorCode;

use crate::config::SocketIoConfig;
use crate::error::ApiError;

/// Whether a request path is the Socket.IO endpoint (with or without its trailing slash).
pub fn is_sio_path(cfg: &SocketIoConfig, path: &str) -> bool {
    cfg.enabled && path.trim_end_matches('/') == cfg.path
}

/// The Engine.IO query of an upgrade: `EIO=4` and `transport=websocket`, without `sid` (no
/// session to upgrade: long-polling is not served).
pub fn check_query(query: &str) -> Result<(), ApiError> {
    let mut eio = None;
    let mut transport = None;
    let mut sid = false;
    for (k, v) in super::url_pairs(query) {
        match k.as_ref() {
            "EIO" => eio = Some(v.into_owned()),
            "transport" => transport = Some(v.into_owned()),
            "sid" => sid = true,
            _ => {}
        }
    }
    let refuse = |field: &str, m: &str| Err(ApiError::field(ErrorCode::InvalidParameter, field, m));
    match eio.as_deref() {
        Some(herald_protocol::socketio::ENGINE_IO_VERSION) => {}
        Some("3") => {
            return refuse(
                "EIO",
                "Engine.IO 3 (socket.io-client 2.x) is not supported: use socket.io-client 3.x or 4.x (EIO=4)",
            )
        }
        Some(_) => return refuse("EIO", "unsupported Engine.IO version: only EIO=4 is served"),
        None => return refuse("EIO", "EIO=4 is required (a Socket.IO v3/v4 client sends it)"),
    }
    match transport.as_deref() {
        Some("websocket") => {}
        Some("polling") => return refuse(
            "transport",
            "HTTP long-polling is not served: connect with io(url, { transports: ['websocket'] })",
        ),
        _ => {
            return refuse(
                "transport",
                "unknown transport: only transport=websocket is served",
            )
        }
    }
    if sid {
        return refuse(
            "sid",
            "no Engine.IO session to upgrade (long-polling is not served): connect with transports: ['websocket']",
        );
    }
    Ok(())
}

/// The public listener's fallback: a request to the Socket.IO path that is not a WebSocket
/// upgrade (a long-polling client's `GET`/`POST`) gets the Engine.IO query's refusal (400
/// `invalid_parameter`: long-polling is not served), anything else 404.
pub async fn fallback(
    req: actix_web::HttpRequest,
    state: actix_web::web::Data<crate::state::AppState>,
) -> Result<actix_web::HttpResponse, ApiError> {
    if !is_sio_path(&state.config.socketio, req.path()) {
        return crate::routes::not_found().await;
    }
    check_query(req.query_string())?;
    Err(ApiError::new(
        ErrorCode::InvalidParameter,
        "expected a WebSocket upgrade (Upgrade: websocket): long-polling is not served",
    ))
}

/// What a Socket.IO session adds to a socket (boxed: a native socket holds one pointer).
#[derive(Debug, Default)]
pub struct SioState {
    /// The recovery session id answered in CONNECT (the client's own when it recovers).
    pub pid: String,
    /// The client sent a recovery offset: missed notifications go out as single events.
    pub recovering: bool,
    /// The CONNECT answer was written: a refusal from now on is a DISCONNECT, before it a
    /// CONNECT_ERROR.
    pub connected: bool,
    /// The connect-time catch-up ended (its last batch was written): later batches are
    /// mid-session catch-ups and go out as single events.
    pub caught_up: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_engine_io_4_over_websocket() {
        assert!(check_query("EIO=4&transport=websocket").is_ok());
        assert!(check_query("EIO=4&transport=websocket&t=abc").is_ok());
        let e = check_query("EIO=3&transport=websocket").unwrap_err();
        assert!(e.message.contains("socket.io-client 2.x"), "{}", e.message);
        assert!(check_query("transport=websocket").is_err());
        assert!(check_query("EIO=5&transport=websocket").is_err());
        let e = check_query("EIO=4&transport=polling").unwrap_err();
        assert!(e.message.contains("long-polling"));
        assert!(check_query("EIO=4").is_err());
        assert!(check_query("EIO=4&transport=websocket&sid=x").is_err());
    }
}
