//! The Socket.IO endpoint's query checks (`/socket.io/?EIO=4&transport=websocket|polling`,
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

/// An Engine.IO request's query, checked.
#[derive(Debug, PartialEq, Eq)]
pub struct EioQuery {
    /// `transport=polling` (else `websocket`).
    pub polling: bool,
    /// The session a request belongs to: a long-polling `GET`/`POST`, or the WebSocket that
    /// upgrades it. Without one, a new session.
    pub sid: Option<String>,
}

/// The Engine.IO query: `EIO=4`, `transport=websocket|polling`, and `sid` when the request
/// belongs to a session.
pub fn check_query(query: &str) -> Result<EioQuery, ApiError> {
    let mut eio = None;
    let mut transport = None;
    let mut sid = None;
    for (k, v) in super::url_pairs(query) {
        match k.as_ref() {
            "EIO" => eio = Some(v.into_owned()),
            "transport" => transport = Some(v.into_owned()),
            "sid" => sid = Some(v.into_owned()),
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
    let polling = match transport.as_deref() {
        Some("websocket") => false,
        Some("polling") => true,
        _ => {
            return refuse(
                "transport",
                "unknown transport: transport=polling or transport=websocket",
            )
        }
    };
    if sid.as_deref().is_some_and(str::is_empty) {
        return refuse("sid", "sid is empty");
    }
    Ok(EioQuery { polling, sid })
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
    fn accepts_only_engine_io_4_over_websocket_or_polling() {
        let q = |polling, sid: Option<&str>| EioQuery {
            polling,
            sid: sid.map(str::to_string),
        };
        assert_eq!(
            check_query("EIO=4&transport=websocket").unwrap(),
            q(false, None)
        );
        assert_eq!(
            check_query("EIO=4&transport=websocket&t=abc").unwrap(),
            q(false, None)
        );
        assert_eq!(
            check_query("EIO=4&transport=polling&t=x").unwrap(),
            q(true, None)
        );
        assert_eq!(
            check_query("EIO=4&transport=polling&sid=n~1").unwrap(),
            q(true, Some("n~1"))
        );
        assert_eq!(
            check_query("EIO=4&transport=websocket&sid=n%7E1").unwrap(),
            q(false, Some("n~1"))
        );
        let e = check_query("EIO=3&transport=websocket").unwrap_err();
        assert!(e.message.contains("socket.io-client 2.x"), "{}", e.message);
        assert!(check_query("transport=websocket").is_err());
        assert!(check_query("EIO=5&transport=websocket").is_err());
        assert!(check_query("EIO=4&transport=flash").is_err());
        assert!(check_query("EIO=4").is_err());
        assert!(check_query("EIO=4&transport=polling&sid=").is_err());
    }
}
