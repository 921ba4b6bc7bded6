//! What a session task reads from and writes to: a WebSocket, or an Engine.IO long-polling
//! session (`poll`) that may upgrade to one. The session sees the same frames either way;
//! on a polling session a text frame is one Engine.IO packet, and there are no WebSocket
//! control frames.

use super::conn::{Closed, Message, WsConn, WsError};
use super::poll::{Inbound, PollConn};
use crate::metrics::Metrics;

const OP_TEXT: u8 = 0x1;

pub enum Conn {
    Ws(WsConn),
    Poll(Box<PollConn>),
}

impl Conn {
    /// The `transport` label of the Socket.IO metrics.
    pub fn transport(&self) -> &'static str {
        match self {
            Conn::Ws(_) => "websocket",
            Conn::Poll(_) => "polling",
        }
    }

    /// The Engine.IO `sid` a polling session was opened under (a WebSocket one makes its own).
    pub fn poll_sid(&self) -> Option<&str> {
        match self {
            Conn::Ws(_) => None,
            Conn::Poll(p) => Some(p.sid()),
        }
    }

    /// Counts an authenticated Socket.IO session under its transport.
    pub fn count_open(&mut self, metrics: &Metrics) {
        let t = self.transport();
        metrics.socketio_connections.with_label_values(&[t]).inc();
        metrics
            .socketio_connections_total
            .with_label_values(&[t])
            .inc();
        if let Conn::Poll(p) = self {
            p.count_open();
        }
    }

    /// Uncounts it, under the transport it ends on.
    pub fn count_closed(&self, metrics: &Metrics) {
        metrics
            .socketio_connections
            .with_label_values(&[self.transport()])
            .dec();
    }

    /// The next complete message, `None` once the connection is gone. Cancel-safe, except
    /// right after an upgrade: the packets still queued for polling are written to the new
    /// WebSocket before it is read, and a write cut short there marks it broken (the
    /// session then ends and the client reconnects and recovers).
    pub async fn recv(&mut self) -> Option<Result<Message, WsError>> {
        loop {
            let p = match self {
                Conn::Ws(ws) => return ws.recv().await,
                Conn::Poll(p) => p,
            };
            // Boxed: only a polling session pays for this future, not every idle WebSocket.
            match Box::pin(p.next()).await? {
                Inbound::Packet(t) => return Some(Ok(Message::Text(t))),
                Inbound::Fail(code, why) => return Some(Err(WsError::Close(code, why))),
                Inbound::Upgrade(ws) => {
                    let ws = p.upgrade_into(*ws);
                    *self = Conn::Ws(ws);
                    if let Conn::Ws(ws) = self {
                        if Box::pin(ws.flush_queued()).await.is_err() {
                            return None;
                        }
                    }
                }
            }
        }
    }

    /// See [`WsConn::try_frame`]. A polling session queues text frames (Engine.IO packets)
    /// and has no WebSocket control frames to send.
    pub fn try_frame(&mut self, opcode: u8, payload: &[u8]) -> Result<Option<usize>, Closed> {
        match self {
            Conn::Ws(ws) => ws.try_frame(opcode, payload),
            Conn::Poll(_) if opcode != OP_TEXT => Ok(None),
            Conn::Poll(p) => Ok((!p.try_push(payload)?).then_some(0)),
        }
    }

    /// See [`WsConn::finish_frame`]; on a polling session, waits for room in the queue.
    pub async fn finish_frame(
        &mut self,
        opcode: u8,
        payload: &[u8],
        written: usize,
    ) -> Result<(), Closed> {
        match self {
            Conn::Ws(ws) => ws.finish_frame(opcode, payload, written).await,
            Conn::Poll(p) => p.push(payload).await,
        }
    }

    pub fn queue_text(&mut self, text: &str) {
        match self {
            Conn::Ws(ws) => ws.queue_text(text),
            Conn::Poll(p) => p.queue(text),
        }
    }

    pub async fn flush_queued(&mut self) -> Result<(), Closed> {
        match self {
            Conn::Ws(ws) => ws.flush_queued().await,
            Conn::Poll(p) if p.is_closed() => Err(Closed),
            Conn::Poll(_) => Ok(()),
        }
    }

    /// Closes the connection: a close frame, or the close packet for the last `GET` to take.
    pub async fn close(&mut self, reason: Option<(u16, &str)>) -> Result<(), Closed> {
        match self {
            Conn::Ws(ws) => ws.close(reason).await,
            Conn::Poll(p) => {
                p.close().await;
                Ok(())
            }
        }
    }

    /// Whether to wait for the client's answering close frame (a WebSocket's).
    pub fn lingers(&self) -> bool {
        matches!(self, Conn::Ws(_))
    }

    pub fn is_broken(&self) -> bool {
        match self {
            Conn::Ws(ws) => ws.is_broken(),
            Conn::Poll(p) => p.is_closed(),
        }
    }
}
