//! A Socket.IO socket runs the native session; this file adapts its edges: the Engine.IO
//! open packet and the CONNECT that authenticates (instead of `auth`), every outbound frame
//! rendered as Socket.IO packets, inbound Engine.IO / Socket.IO packets turned into the
//! native commands, and refusals as CONNECT_ERROR or DISCONNECT before the close.

use herald_protocol::socketio::render::{self, Dialect};
use herald_protocol::socketio::{self as sio, EnginePacket, PacketError, SocketPacket};
use serde_json::Value;

use super::*;
use crate::ws::sio::SioState;

/// The longest recovery `pid` taken from a client (ours are 32 hex digits).
const MAX_PID_LEN: usize = 64;

fn packet_end(e: &PacketError) -> End {
    match e {
        PacketError::Binary => End::Close(CloseCode::UnsupportedData, Some(e.message().into())),
        PacketError::Malformed(m) => End::Close(CloseCode::BadRequest, Some((*m).into())),
    }
}

/// The recovery offset a reconnecting client sends: our seq as a decimal string.
fn offset_of(auth: Option<&Value>) -> Option<(i64, Option<String>)> {
    let a = auth?;
    let seq = a
        .get("offset")?
        .as_str()?
        .parse::<i64>()
        .ok()
        .filter(|n| *n >= 0)?;
    let pid = a
        .get("pid")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty() && p.len() <= MAX_PID_LEN)
        .map(str::to_string);
    Some((seq, pid))
}

impl Socket {
    fn dialect<'a>(&'a self, s: &'a SioState) -> Dialect<'a> {
        let cfg = &self.state.config.socketio;
        Dialect {
            nsp: &cfg.namespace,
            names: cfg.events,
            // After the connect-time batch, a batch is a mid-session catch-up (after a bus
            // loss): its rows go out as single events, as after a recovery, so a hook that
            // replaces its list with `notifications:batch` never loses what it shows.
            recovering: s.recovering || s.caught_up,
            pid: &s.pid,
        }
    }

    /// Writes a native frame as the Socket.IO frames it renders to.
    pub(super) async fn send_sio(
        &mut self,
        text: &str,
        kill: Option<&ConnHandle>,
    ) -> Result<(), End> {
        let Some(s) = &self.sio else {
            return Ok(());
        };
        let Ok(msg) = serde_json::from_str::<ServerMessage>(text) else {
            return Ok(());
        };
        let frames = render::render(&self.dialect(s), &msg);
        if let (ServerMessage::Batch { complete: true, .. }, Some(s)) = (&msg, self.sio.as_mut()) {
            s.caught_up = true;
        }
        if frames.is_empty() {
            // Nothing to write (an empty batch): what is queued (`connected`) goes out alone.
            return write::guarded(kill, self.ws.flush_queued()).await;
        }
        for f in frames {
            self.write(write::OP_TEXT, f.as_bytes(), kill).await?;
        }
        Ok(())
    }

    /// Queues a message to go out with the next write (`connected`), in either protocol.
    pub(super) fn queue_message(&mut self, msg: &ServerMessage) {
        let frames = match &self.sio {
            None => {
                self.ws.queue_text(&msg.to_json());
                return;
            }
            Some(s) => render::render(&self.dialect(s), msg),
        };
        for f in &frames {
            self.ws.queue_text(f);
        }
        if let (Some(s), ServerMessage::Connected { .. }) = (&mut self.sio, msg) {
            s.connected = true;
        }
    }

    /// Before the close frame: CONNECT_ERROR (not yet connected) or DISCONNECT (a terminal
    /// close: the client must not reconnect with the same token), so `socket.io-client`
    /// reports the reason; reconnect-range closes end the transport only, and the client
    /// reconnects and recovers.
    pub(super) fn sio_farewell(&mut self, code: CloseCode, text: &str) {
        let Some(s) = &self.sio else { return };
        let nsp = &self.state.config.socketio.namespace;
        let frame = if !s.connected {
            let data = serde_json::json!({ "code": code.reason(), "close": code.code() });
            sio::connect_error(nsp, text, Some(data))
        } else if code != CloseCode::Normal && !code.should_reconnect() {
            sio::disconnect(nsp)
        } else {
            return;
        };
        self.ws.queue_text(&frame);
    }

    /// Phase 1 of a Socket.IO socket: the Engine.IO open packet, then a CONNECT to the
    /// namespace within the auth timeout, carrying `auth.token` (or relying on the upgrade's
    /// `Authorization` header) and, when recovering, `pid` and `offset`.
    pub(super) async fn authenticate_sio(
        &mut self,
        auth: Auth,
    ) -> Result<(VerifiedToken, Option<i64>), End> {
        let cfg = self.state.config.clone();
        let ping_ms = cfg.heartbeat_interval.as_millis() as u64;
        // The client gives up after pingInterval + pingTimeout without a ping: our idle timeout.
        let timeout_ms = (cfg.idle_timeout.as_millis() as u64).saturating_sub(ping_ms);
        // The node's id leads the sid, so a balancer can route a session's requests on it.
        let polling = self.ws.poll_sid().is_some();
        let sid = match self.ws.poll_sid() {
            Some(sid) => sid.to_owned(),
            None => format!("{}~{}", cfg.node_id, uuid::Uuid::new_v4().simple()),
        };
        let max_payload = cfg.max_message_bytes as u64;
        let open = sio::open(&sid, ping_ms, timeout_ms, max_payload, polling);
        self.write(write::OP_TEXT, open.as_bytes(), None).await?;
        let (mut header, ticket) = match auth {
            Auth::Header(t) => (Some(t), None),
            Auth::Message(t) => (None, Some(t)),
        };
        let deadline = Instant::now() + cfg.auth_timeout;
        loop {
            let evicted = async {
                match &ticket {
                    Some(t) => t.evicted.cancelled().await,
                    None => std::future::pending().await,
                }
            };
            let msg = tokio::select! {
                _ = sleep_until(deadline) => return Err(End::Close(CloseCode::AuthTimeout,
                    Some("no CONNECT with a token in time".into()))),
                _ = self.state.drain.cancelled() => return Err(End::code(CloseCode::Draining)),
                _ = evicted => return Err(End::Evicted),
                m = self.ws.recv() => m,
            };
            let text = match msg {
                None => return Err(End::Gone),
                Some(Err(e)) => return Err(protocol_end(e)),
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Ping(b))) => {
                    self.admit()?;
                    self.control(true, &b, None).await?;
                    continue;
                }
                Some(Ok(Message::Pong | Message::Fragment)) => {
                    self.admit()?;
                    continue;
                }
                Some(Ok(Message::Binary(_))) => {
                    return Err(packet_end(&PacketError::Binary));
                }
                Some(Ok(Message::Close(_))) => return Err(End::ClientClosed),
            };
            self.admit()?;
            let packet = match sio::parse_engine(&text) {
                Ok(EnginePacket::Message(p)) => sio::parse_socket(p),
                Ok(EnginePacket::Ping(p)) => {
                    let pong = format!("3{p}");
                    self.write(write::OP_TEXT, pong.as_bytes(), None).await?;
                    continue;
                }
                Ok(EnginePacket::Close) => return Err(End::ClientClosed),
                Ok(_) => continue,
                Err(e) => return Err(packet_end(&e)),
            };
            match packet {
                Ok(SocketPacket::Connect { nsp, auth }) if nsp == cfg.socketio.namespace => {
                    return self.sio_connect(auth, header.take()).await;
                }
                Ok(SocketPacket::Connect { nsp, .. }) => {
                    // As socket.io answers a namespace it does not serve; the engine stays open.
                    let refusal = sio::connect_error(&nsp, "Invalid namespace", None);
                    self.write(write::OP_TEXT, refusal.as_bytes(), None).await?;
                }
                Ok(_) => {
                    return Err(End::Close(
                        CloseCode::BadRequest,
                        Some(format!("send CONNECT to {} first", cfg.socketio.namespace)),
                    ))
                }
                Err(e) => return Err(packet_end(&e)),
            }
        }
    }

    async fn sio_connect(
        &mut self,
        auth: Option<Value>,
        header: Option<VerifiedToken>,
    ) -> Result<(VerifiedToken, Option<i64>), End> {
        let token = auth
            .as_ref()
            .and_then(|a| a.get("token"))
            .and_then(Value::as_str);
        let verified = match (token, header) {
            (Some(t), _) => {
                if self.state.verifier.needs_refresh(t) {
                    self.state.verifier.refresh_keys().await;
                }
                match self.state.verifier.verify(t) {
                    Ok(v) => v,
                    Err(e) if e.is_expired() => {
                        return Err(End::Close(CloseCode::TokenExpired, Some(e.to_string())))
                    }
                    Err(e) => return Err(End::Close(CloseCode::Unauthorized, Some(e.to_string()))),
                }
            }
            (None, Some(v)) => v,
            (None, None) => {
                return Err(End::Close(
                    CloseCode::Unauthorized,
                    Some("no token: connect with io(url, { auth: { token } })".into()),
                ))
            }
        };
        let recovery = offset_of(auth.as_ref());
        let last_seq = recovery.as_ref().map(|(seq, _)| *seq);
        if let Some(s) = &mut self.sio {
            s.recovering = recovery.is_some();
            s.pid = match recovery {
                Some((_, Some(pid))) => pid,
                _ => uuid::Uuid::new_v4().simple().to_string(),
            };
        }
        Ok((verified, last_seq))
    }

    /// An inbound text frame of an authenticated Socket.IO socket (already counted).
    pub(super) async fn on_sio_text(
        &mut self,
        session: &mut Session,
        text: &str,
    ) -> Result<(), End> {
        let packet = match sio::parse_engine(text) {
            Ok(EnginePacket::Message(p)) => sio::parse_socket(p).map_err(|e| packet_end(&e))?,
            Ok(EnginePacket::Ping(p)) => {
                let pong = format!("3{p}");
                return self
                    .write(write::OP_TEXT, pong.as_bytes(), Some(&session.conn))
                    .await;
            }
            Ok(EnginePacket::Close) => return Err(End::ClientClosed),
            Ok(_) => return Ok(()),
            Err(e) => return Err(packet_end(&e)),
        };
        let cfg = self.state.config.clone();
        let nsp = &cfg.socketio.namespace;
        match packet {
            SocketPacket::Event {
                nsp: n,
                id,
                name,
                args,
            } if n == *nsp => match render::command(&name, id, &args) {
                Ok(cmd) => self.command(session, cmd).await,
                Err((code, message)) => self.error(session, id.map(Rid::Num), code, message).await,
            },
            SocketPacket::Disconnect { nsp: n } if n == *nsp => Err(End::ClientClosed),
            // Acks of events we never asked acks for, and packets for other namespaces.
            SocketPacket::Ack { .. } => Ok(()),
            SocketPacket::Connect { .. } => Err(End::Close(
                CloseCode::BadRequest,
                Some("already connected".into()),
            )),
            _ => Err(End::Close(
                CloseCode::BadRequest,
                Some(format!("only the namespace {nsp} is served")),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_non_negative_seqs_as_strings() {
        let a = serde_json::json!({"token": "t", "pid": "p", "offset": "12"});
        assert_eq!(offset_of(Some(&a)), Some((12, Some("p".into()))));
        let a = serde_json::json!({"offset": 12});
        assert_eq!(offset_of(Some(&a)), None);
        let a = serde_json::json!({"offset": "-1", "pid": "p"});
        assert_eq!(offset_of(Some(&a)), None);
        let long = "x".repeat(MAX_PID_LEN + 1);
        let a = serde_json::json!({"offset": "3", "pid": long});
        assert_eq!(offset_of(Some(&a)), Some((3, None)));
        assert_eq!(offset_of(None), None);
    }
}
