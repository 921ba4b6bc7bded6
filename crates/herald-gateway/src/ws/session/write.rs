//! Writing to the socket: every write bounded, the close handshake, and the inbound rate
//! limit.

use super::*;

/// How long a single write may wait for the client to read before it counts as slow.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the close handshake may take before the connection is simply dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

pub(super) const OP_TEXT: u8 = 0x1;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// Runs one write to the socket, bounded: a client that does not read within
/// [`WRITE_TIMEOUT`], or whose queue overflowed meanwhile (`kill`), is a slow consumer.
pub(super) async fn guarded(
    kill: Option<&ConnHandle>,
    write: impl std::future::Future<Output = Result<(), Closed>>,
) -> Result<(), End> {
    let killed = async {
        match kill {
            Some(k) => k.killed().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        biased;
        _ = killed => Err(End::code(kill.map_or(CloseCode::SlowConsumer, ConnHandle::end_code))),
        r = tokio::time::timeout(WRITE_TIMEOUT, write) => match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_closed)) => Err(End::Gone),
            Err(_elapsed) => Err(End::code(CloseCode::SlowConsumer)),
        }
    }
}

impl Socket {
    pub(super) async fn close(mut self, end: End) {
        // An evicted socket does not wait for the client's answering close frame.
        let linger = !matches!(end, End::Evicted);
        let (code, text) = match end {
            End::Gone => return,
            End::ClientClosed => (CloseCode::Normal, String::new()),
            End::Close(code, msg) => {
                let text = match msg {
                    Some(m) => format!("{}: {m}", code.reason()),
                    None => code.reason().to_string(),
                };
                self.sio_farewell(code, &text);
                (code, text)
            }
            End::Evicted => {
                let text = format!(
                    "{}: evicted unauthenticated to make room; send auth at once",
                    CloseCode::AuthTimeout.reason()
                );
                self.sio_farewell(CloseCode::AuthTimeout, &text);
                (CloseCode::AuthTimeout, text)
            }
        };

        if self.ws.is_broken() {
            // Half a frame is on the wire: a close frame now would be garbage.
            return;
        }
        let reason = Some((code.code(), text.as_str()));
        let sent = tokio::time::timeout(CLOSE_TIMEOUT, self.ws.close(reason)).await;
        if !matches!(sent, Ok(Ok(()))) || !linger || !self.ws.lingers() {
            return;
        }
        // Give the client a moment to answer the close frame, without waiting on a dead peer.
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
            while let Some(Ok(m)) = self.ws.recv().await {
                if matches!(m, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }

    /// Counts an inbound frame against the rate limit.
    pub(super) fn admit(&mut self) -> Result<(), End> {
        self.last_seen = Instant::now();
        let rate = frame_rate(&self.state);
        self.bucket
            .take(&rate, self.last_seen.into_std())
            .map_err(|_| End::code(CloseCode::RateLimited))
    }

    pub(super) async fn send_raw(
        &mut self,
        text: ByteString,
        kill: Option<&ConnHandle>,
    ) -> Result<(), End> {
        if self.sio.is_some() {
            return Box::pin(self.send_sio(&text, kill)).await;
        }
        self.write(OP_TEXT, text.as_bytes(), kill).await
    }

    /// Writes one frame: synchronously when the socket takes it at once (no future state, no
    /// buffer), otherwise in a boxed, bounded slow path (see [`guarded`]).
    pub(super) async fn write(
        &mut self,
        op: u8,
        payload: &[u8],
        kill: Option<&ConnHandle>,
    ) -> Result<(), End> {
        match self.ws.try_frame(op, payload) {
            Ok(None) => Ok(()),
            Ok(Some(written)) => {
                Box::pin(guarded(kill, self.ws.finish_frame(op, payload, written))).await
            }
            Err(Closed) => Err(End::Gone),
        }
    }

    pub(super) async fn control(
        &mut self,
        pong: bool,
        payload: &[u8],
        kill: Option<&ConnHandle>,
    ) -> Result<(), End> {
        if !pong && self.sio.is_some() {
            // Engine.IO's heartbeat is its own ping packet, answered by a `3` (pong).
            return self
                .write(OP_TEXT, herald_protocol::socketio::PING.as_bytes(), kill)
                .await;
        }
        self.write(if pong { OP_PONG } else { OP_PING }, payload, kill)
            .await
    }
}
