//! The upgrade of a long-polling session to WebSocket
//! (`GET /socket.io/?EIO=4&transport=websocket&sid=...` with `Upgrade: websocket`): the
//! client sends `2probe`, we answer `3probe` and end the pending long-poll with a `6` so the
//! client pauses polling; its `5` completes the upgrade, and the WebSocket is handed to the
//! session task (`transport::Conn` swaps it in and writes what was still queued first).

use std::sync::Arc;
use std::time::Duration;

use actix_http::body::BodySize;
use actix_http::{h1, HttpMessage as _, Request};
use actix_web::http::header::ORIGIN;
use actix_web::ResponseError;
use futures_util::SinkExt;
use herald_protocol::socketio as sio;

use super::http::{engine_error, unknown_sid};
use super::{Inbound, Shared};
use crate::state::AppState;
use crate::ws::conn::{Message, WsConn};
use crate::ws::Upgraded;

/// How long the probe and the `5` may take before the WebSocket is dropped and the session
/// stays on long-polling (the reference server's `upgradeTimeout`).
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(10);

/// Answers an upgrade request for the session `sid`: refused (400 unknown sid, 403 Origin,
/// 400 a second probe or not a WebSocket handshake) or 101 and the probe task.
pub async fn probe_upgrade(
    state: Arc<AppState>,
    req: Request,
    mut framed: Upgraded,
    sid: String,
) -> Result<(), actix_web::Error> {
    let decision = match state.polls.get(&sid) {
        None => Err(Box::new(unknown_sid(&state, &sid))),
        Some(shared) => admit_probe(&state, &req, shared),
    };
    let status = match &decision {
        Ok(_) => 101,
        Err(resp) => resp.status().as_u16(),
    };
    tracing::info!(path = %req.path(), status, "socket.io upgrade of a long-polling session");
    let (shared, mut res) = match decision {
        Ok(ok) => ok,
        Err(resp) => {
            let _ = crate::ws::respond(&mut framed, *resp).await;
            return Ok(());
        }
    };
    let switching = res.finish().drop_body();
    if framed
        .send(h1::Message::Item((switching, BodySize::None)))
        .await
        .is_err()
    {
        clear_probe(&shared);
        return Ok(());
    }
    let parts = framed.into_parts();
    let io = parts.io.into_inner();
    let _ = io.set_nodelay(true);
    let ws = WsConn::new(io, parts.read_buf, &[], state.config.max_message_bytes);
    actix_web::rt::spawn(run_probe(shared, ws));
    Ok(())
}

type Admitted = (Arc<Shared>, actix_http::ResponseBuilder);

fn admit_probe(
    state: &AppState,
    req: &Request,
    shared: Arc<Shared>,
) -> Result<Admitted, Box<actix_web::HttpResponse>> {
    if req.headers().get(ORIGIN).is_some() {
        crate::ws::check_origin(req.headers(), &state.config.allowed_origins)
            .map_err(|e| Box::new(e.error_response()))?;
    }
    let res = actix_http::ws::handshake(req.head()).map_err(|e| {
        Box::new(
            crate::error::ApiError::new(
                herald_protocol::ErrorCode::InvalidParameter,
                format!("expected a WebSocket upgrade request: {e}"),
            )
            .error_response(),
        )
    })?;
    {
        let mut g = shared.lock();
        // One probe at a time, and only for a live polling session.
        if g.probing || g.upgraded || g.closed {
            return Err(Box::new(engine_error(3, "Bad request")));
        }
        g.probing = true;
    }
    Ok((shared, res))
}

fn clear_probe(shared: &Shared) {
    let mut g = shared.lock();
    g.probing = false;
    g.upgrading = false;
}

async fn run_probe(shared: Arc<Shared>, mut ws: WsConn) {
    let why = match tokio::time::timeout(UPGRADE_TIMEOUT, probe(&shared, &mut ws)).await {
        Ok(Ok(())) => {
            // The session swaps it in at its next read; if it is gone, so is the WebSocket.
            let _ = shared.tx.send(Inbound::Upgrade(Box::new(ws))).await;
            return;
        }
        Ok(Err(why)) => why,
        Err(_) => "no 2probe and 5 in time",
    };
    tracing::debug!(sid = %shared.sid, why, "socket.io upgrade abandoned; the session stays on long-polling");
    clear_probe(&shared);
    let _ = ws.close(Some((1002, why))).await;
}

/// `2probe` answered with `3probe` (the pending long-poll then returns `6`), then `5`.
async fn probe(shared: &Shared, ws: &mut WsConn) -> Result<(), &'static str> {
    let mut probed = false;
    loop {
        match ws.recv().await {
            Some(Ok(Message::Text(t))) if !probed && &*t == sio::PROBE => {
                ws.text(sio::PROBE_ANSWER)
                    .await
                    .map_err(|_| "connection lost")?;
                probed = true;
                shared.lock().upgrading = true;
                shared.ready.notify_one();
            }
            Some(Ok(Message::Text(t))) if probed && &*t == sio::UPGRADE => return Ok(()),
            Some(Ok(Message::Ping(p))) => ws.pong(&p).await.map_err(|_| "connection lost")?,
            Some(Ok(Message::Pong | Message::Fragment)) => {}
            Some(Ok(_)) => return Err("expected 2probe, then 5"),
            Some(Err(_)) | None => return Err("connection lost"),
        }
    }
}
