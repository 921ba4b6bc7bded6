//! One task per socket: authenticate, register, subscribe, catch up, then serve.
//!
//! Delivery invariant: a socket receives its user's notifications in strictly increasing seq
//! order with no gap and no duplicate. What to write is decided by the socket's pure
//! [`Cursor`] (`herald_core::cursor`): this task feeds it session frames and the answers of the
//! one store read it asks for at a time, and carries out its steps. The read runs beside the
//! event loop, so the socket's queue keeps draining (into the cursor's reorder buffer) while a
//! gap is filled. The socket subscribes *before* the catch-up query, so a notification
//! committed during the connect arrives by one path or both, and is written once.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytestring::ByteString;
use herald_core::cursor::{self, Cursor, OnLive, Read, Step};
use herald_core::FanoutSink as _;
use herald_protocol::bus::Reject;
use herald_protocol::http::UnreadCount;
use herald_protocol::ws::{
    parse_client_message, AckResult, ClientMessage, ConnectionLimits, ResyncReason, Rid,
    ServerMessage,
};
use herald_protocol::{CloseCode, ErrorCode, Notification};
use herald_store::StoreError;
use rand::Rng;
use tokio::time::{sleep_until, Instant};

use super::conn::{Closed, Message, WsError};
use super::transport::Conn;
use crate::auth::VerifiedToken;
use crate::edge::preauth::PreAuthTicket;
use crate::edge::table::AddrSlot;
use crate::registry::{ConnHandle, Inbox, Recv, RenderedNotification, SocketEvent};
use crate::state::{AppState, SocketGuard};
use herald_core::rate::{Rate, TokenBucket};

mod auth;
mod commands;
mod connect;
mod serve;
mod sio;
mod write;

/// Why a session ended.
#[derive(Debug)]
enum End {
    /// Close with this code and an optional human message (truncated to fit the frame).
    Close(CloseCode, Option<String>),
    /// The client sent a close frame: answer it with 1000.
    ClientClosed,
    /// The connection is gone; nothing more can be sent.
    Gone,
    /// Evicted before authenticating, to make room (4102): closed without waiting for the
    /// client's answer, so the slot is free at once.
    Evicted,
}

impl End {
    fn code(c: CloseCode) -> End {
        End::Close(c, None)
    }

    fn label(&self) -> &'static str {
        match self {
            End::Close(c, _) => c.reason(),
            End::ClientClosed => "client_closed",
            End::Gone => "connection_lost",
            End::Evicted => "preauth_evicted",
        }
    }
}

/// The per-socket frame rate (`HERALD_RATE_LIMIT_PER_SEC`, `_BURST`).
fn frame_rate(state: &AppState) -> Rate {
    Rate::new(
        state.config.rate_limit_per_sec,
        state.config.rate_limit_burst,
    )
}

fn protocol_end(e: WsError) -> End {
    match e {
        WsError::Close(code, msg) => End::Close(code, Some(msg)),
        WsError::Gone => End::Gone,
    }
}

/// Serialises a message into a frame. Building frames in a plain function (not inline in an
/// async one) keeps the message itself out of the session future while the frame is written.
fn to_text(msg: &ServerMessage) -> ByteString {
    msg.to_json().into()
}

fn store_end(op: &str, e: StoreError) -> End {
    tracing::warn!(op, error = %e, "store error on a socket; closing with internal_error");
    End::code(CloseCode::InternalError)
}

/// What a socket holds from its admission until it ends, for their `Drop`: its place in
/// the node's socket count and in its client address's.
pub(super) struct Held {
    pub _guard: SocketGuard,
    pub _addr: Option<AddrSlot>,
}

/// How a socket authenticates: with its upgrade's header token, or with a first `auth`
/// message while holding a place in the pre-auth budget.
pub(super) enum Auth {
    Header(VerifiedToken),
    Message(PreAuthTicket),
}

pub(super) async fn run(
    state: Arc<AppState>,
    _held: Held,
    ws: Conn,
    auth: Auth,
    query_last_seq: Option<i64>,
    socketio: bool,
) {
    let mut s = Socket {
        sio: socketio.then(Box::default),
        bucket: TokenBucket::full(&frame_rate(&state), Instant::now().into_std()),
        state,
        ws,
        last_seen: Instant::now(),
    };
    // The cold phases (authentication, catch-up, store-backed commands, close) are boxed, so
    // the future every idle socket keeps alive holds only the event loop: its size is the
    // largest part of a socket's memory (`ws::on_upgrade` reports it as the
    // `herald_socket_task_bytes` gauge; the `health_ready_and_metrics` api test bounds it).
    let end = match Box::pin(s.authenticate(auth, query_last_seq)).await {
        Ok((token, last_seq)) => s.authenticated(token, last_seq).await,
        Err(end) => end,
    };
    s.state
        .metrics
        .closes
        .with_label_values(&[end.label()])
        .inc();
    Box::pin(s.close(end)).await;
}

struct Socket {
    state: Arc<AppState>,
    /// A WebSocket, or a long-polling session until it upgrades (Socket.IO).
    ws: Conn,
    last_seen: Instant,
    bucket: TokenBucket,
    /// Set for a Socket.IO socket (`/socket.io/`): its frames are rendered as Socket.IO packets.
    sio: Option<Box<crate::ws::sio::SioState>>,
}

/// State of an authenticated session.
struct Session {
    user: Arc<str>,
    conn: ConnHandle,
    rx: Inbox,
    /// Which notifications the socket still needs; `cursor.last()` is the highest seq written.
    cursor: Cursor<Arc<RenderedNotification>>,
    token_expires_at: i64,
    /// Close 4103 at this instant (token expiry plus leeway).
    expiry_at: Instant,
    /// Send `token_expiring` at this instant; `None` once sent or when warnings are off.
    warn_at: Option<Instant>,
    /// Next server ping (and idle check).
    next_ping: Instant,
    drain_at: Option<Instant>,
}

impl Session {
    /// Sets the token's expiry and recomputes its deadlines (on connect and on refresh).
    fn set_token(&mut self, cfg: &crate::config::Config, expires_at: i64) {
        // Saturating throughout: the verifier bounds `exp`, and an overflow here would turn a
        // far-future expiry into an immediate close.
        let now_ms = chrono::Utc::now().timestamp_millis();
        let now = Instant::now();
        let far = now + Duration::from_secs(100 * 365 * 24 * 3600);
        let at = |unix_ms: i64| {
            let wait = Duration::from_millis(unix_ms.saturating_sub(now_ms).max(0) as u64);
            now.checked_add(wait).map_or(far, |t| t.min(far))
        };
        let exp_ms = expires_at.saturating_mul(1000);
        let leeway_ms = i64::try_from(cfg.jwt.leeway_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        let warning_ms = i64::try_from(cfg.token_expiry_warning.as_millis()).unwrap_or(i64::MAX);
        self.token_expires_at = expires_at;
        self.expiry_at = at(exp_ms.saturating_add(leeway_ms));
        self.warn_at =
            (!cfg.token_expiry_warning.is_zero()).then(|| at(exp_ms.saturating_sub(warning_ms)));
    }

    /// The earliest of: drain close, token expiry, expiry warning, next ping.
    fn next_deadline(&self) -> Instant {
        let mut next = self.expiry_at.min(self.next_ping);
        if let Some(w) = self.warn_at {
            next = next.min(w);
        }
        if let Some(d) = self.drain_at {
            next = next.min(d);
        }
        next
    }
}

/// Why a revoked token is refused, on the socket and over HTTP.
fn revoked_end() -> End {
    End::Close(
        CloseCode::Revoked,
        Some("the user's sessions were revoked; get a new token".into()),
    )
}

fn store_error(e: StoreError) -> (ErrorCode, String) {
    match e {
        StoreError::Unavailable(_) => (
            ErrorCode::ServiceUnavailable,
            "the notification store is unavailable; retry later".into(),
        ),
        other => {
            tracing::error!(error = %other, "store error in a socket command");
            (ErrorCode::Internal, "internal error".into())
        }
    }
}
