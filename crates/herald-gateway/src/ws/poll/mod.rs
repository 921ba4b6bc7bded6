//! Engine.IO HTTP long-polling (`/socket.io/?EIO=4&transport=polling`), for Socket.IO
//! clients with default options: they connect with long-polling, then upgrade to WebSocket.
//!
//! A polling session runs the same native session task as a WebSocket one
//! (`session::run`); only its transport differs. [`PollConn`] is that task's side: what the
//! session writes is queued in [`Shared`] for the next `GET` to take, and what a `POST`
//! carries reaches the session through a bounded channel, packet by packet, as a WebSocket's
//! text frames would. An upgrade (`upgrade.rs`) hands the probed WebSocket to the session
//! through the same channel; the session swaps its transport and writes what was still
//! queued on the WebSocket first, so nothing is lost or sent twice.
//!
//! Bounds: a session's outbound queue holds [`MAX_QUEUED_BYTES`] (or one packet of any
//! size); a write that does not fit waits for a `GET` to take the queue, for as long as a
//! WebSocket write may wait for the client to read (then the session ends as a slow
//! consumer, as a WebSocket one does). Inbound, [`INBOUND_PACKETS`] packets wait for the
//! session; a `POST` beyond waits (backpressure). The sessions themselves are sockets: each
//! holds a place in the node's socket cap and its address's, and the per-user cap applies
//! once it authenticates. A session ends when it is idle (no packet for pingInterval +
//! pingTimeout: a client that stopped polling never answers the ping), and its table entry
//! goes with it.

mod http;
mod upgrade;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use bytestring::ByteString;
use herald_protocol::socketio as sio;
use herald_protocol::CloseCode;
use tokio::sync::{mpsc, Notify};

use super::conn::{Closed, WsConn};
use crate::metrics::Metrics;

pub use http::{fallback, origin_gate};
pub use upgrade::probe_upgrade;

/// Outbound bytes a polling session may queue between two `GET`s (one packet of any size
/// always fits an empty queue). Beyond it a write waits for the client (see the module doc).
pub const MAX_QUEUED_BYTES: usize = 256 * 1024;

/// Inbound packets waiting for the session task; a `POST` beyond waits.
pub const INBOUND_PACKETS: usize = 16;

/// What reaches the session task from the HTTP side.
pub enum Inbound {
    /// One Engine.IO packet of a `POST`.
    Packet(ByteString),
    /// The client broke the protocol over HTTP (overlapping requests, oversized body): end
    /// the session with this code.
    Fail(CloseCode, String),
    /// The WebSocket the client upgraded to, probed, its `5` received.
    Upgrade(Box<WsConn>),
}

#[derive(Default)]
struct Inner {
    /// Packets for the next `GET`, in order.
    out: VecDeque<String>,
    bytes: usize,
    /// A `GET` is pending (only one at a time).
    getting: bool,
    /// A `POST` is being read (only one at a time).
    posting: bool,
    /// A WebSocket is probing this session (one at a time).
    probing: bool,
    /// A WebSocket probed this session: pending and later `GET`s return at once (`6`).
    upgrading: bool,
    /// The session moved to its WebSocket: this polling side is over.
    upgraded: bool,
    /// The session ended (or is ending): a `GET` gets what is left and the close packet.
    closed: bool,
}

/// The state a polling session shares between its task and its HTTP requests.
pub struct Shared {
    sid: Box<str>,
    inner: Mutex<Inner>,
    /// Wakes the pending `GET`: packets queued, the session closed, or an upgrade probed.
    ready: Notify,
    /// Wakes a write waiting for room, or a close waiting for the last `GET`.
    taken: Notify,
    tx: mpsc::Sender<Inbound>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves plain data behind: keep using it.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn sid(&self) -> &str {
        &self.sid
    }

    /// Ends the session from the HTTP side (a protocol error the client made over HTTP).
    fn fail(&self, code: CloseCode, why: &str) {
        if self.tx.try_send(Inbound::Fail(code, why.into())).is_err() {
            // The channel is full or the session gone: it ends at its next write instead.
            self.lock().closed = true;
        }
        self.ready.notify_one();
    }

    /// What a `GET` returns now, if anything: the queued packets, else `6` during an
    /// upgrade, else the close packet once the session is over.
    fn take(&self) -> Option<String> {
        let mut g = self.lock();
        if !g.out.is_empty() {
            let body = sio::payload(g.out.drain(..));
            g.bytes = 0;
            drop(g);
            self.taken.notify_one();
            return Some(body);
        }
        if g.upgrading || g.upgraded {
            return Some(sio::NOOP.to_string());
        }
        g.closed.then(|| sio::CLOSE.to_string())
    }
}

/// The node's polling sessions by `sid`. Bounded by the socket cap: an entry is added only
/// for an admitted session and removed when its task ends (or it upgrades).
#[derive(Default)]
pub struct Sessions(Mutex<HashMap<Box<str>, Arc<Shared>>>);

impl Sessions {
    fn map(&self) -> MutexGuard<'_, HashMap<Box<str>, Arc<Shared>>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn get(&self, sid: &str) -> Option<Arc<Shared>> {
        self.map().get(sid).cloned()
    }

    pub fn len(&self) -> usize {
        self.map().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn remove(&self, sid: &str) {
        self.map().remove(sid);
    }
}

/// The session task's side of a polling session (see the module doc).
pub struct PollConn {
    shared: Arc<Shared>,
    rx: mpsc::Receiver<Inbound>,
    sessions: Arc<Sessions>,
    metrics: Arc<Metrics>,
    /// Counted in `herald_socketio_connections{transport="polling"}` (authenticated).
    counted: bool,
}

impl PollConn {
    /// A new session under `sid`, entered in the node's table.
    pub fn open(sid: String, sessions: Arc<Sessions>, metrics: Arc<Metrics>) -> PollConn {
        let (tx, rx) = mpsc::channel(INBOUND_PACKETS);
        let shared = Arc::new(Shared {
            sid: sid.into(),
            inner: Mutex::new(Inner::default()),
            ready: Notify::new(),
            taken: Notify::new(),
            tx,
        });
        sessions.map().insert(shared.sid.clone(), shared.clone());
        PollConn {
            shared,
            rx,
            sessions,
            metrics,
            counted: false,
        }
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub fn sid(&self) -> &str {
        &self.shared.sid
    }

    /// The next thing the HTTP side sends; `None` never happens while the session holds its
    /// own `Shared` (which holds the sender). Cancel-safe.
    pub async fn next(&mut self) -> Option<Inbound> {
        self.rx.recv().await
    }

    /// Queues a packet if it fits (see [`MAX_QUEUED_BYTES`]): `Ok(false)` when the write must
    /// wait for a `GET`.
    pub fn try_push(&mut self, payload: &[u8]) -> Result<bool, Closed> {
        let mut g = self.shared.lock();
        if g.closed {
            return Err(Closed);
        }
        if !g.out.is_empty() && g.bytes + payload.len() > MAX_QUEUED_BYTES {
            return Ok(false);
        }
        g.bytes += payload.len();
        g.out
            .push_back(String::from_utf8_lossy(payload).into_owned());
        drop(g);
        self.shared.ready.notify_one();
        Ok(true)
    }

    /// Queues a packet, waiting for a `GET` to make room.
    pub async fn push(&mut self, payload: &[u8]) -> Result<(), Closed> {
        while !self.try_push(payload)? {
            self.shared.taken.notified().await;
        }
        Ok(())
    }

    /// Queues a small packet regardless of the bound (the Socket.IO `connected` and the
    /// farewell packets).
    pub fn queue(&mut self, text: &str) {
        let mut g = self.shared.lock();
        g.bytes += text.len();
        g.out.push_back(text.to_owned());
        drop(g);
        self.shared.ready.notify_one();
    }

    pub fn is_closed(&self) -> bool {
        self.shared.lock().closed
    }

    /// Ends the session: the close packet is queued after what is left, and this waits for
    /// a `GET` to take it (the caller bounds the wait).
    pub async fn close(&mut self) {
        {
            let mut g = self.shared.lock();
            if !g.closed {
                g.out.push_back(sio::CLOSE.to_string());
                g.closed = true;
            }
        }
        self.shared.ready.notify_one();
        while !self.shared.lock().out.is_empty() {
            self.shared.taken.notified().await;
        }
    }

    /// Counts the authenticated session in the transport metrics.
    pub fn count_open(&mut self) {
        self.counted = true;
    }

    /// Moves the session to its WebSocket: what is still queued goes out on it first (queued
    /// into its first write, in order), and this polling side ends.
    pub fn upgrade_into(&mut self, mut ws: WsConn) -> WsConn {
        let left: Vec<String> = {
            let mut g = self.shared.lock();
            g.upgraded = true;
            g.bytes = 0;
            g.out.drain(..).collect()
        };
        for p in &left {
            ws.queue_text(p);
        }
        self.shared.ready.notify_one();
        self.metrics.socketio_upgrades.inc();
        if self.counted {
            self.counted = false;
            self.metrics
                .socketio_connections
                .with_label_values(&["polling"])
                .dec();
            self.metrics
                .socketio_connections
                .with_label_values(&["websocket"])
                .inc();
        }
        tracing::debug!(sid = %self.shared.sid, queued = left.len(), "socket.io session upgraded to websocket");
        ws
    }
}

impl Drop for PollConn {
    fn drop(&mut self) {
        self.sessions.remove(&self.shared.sid);
        self.shared.lock().closed = true;
        self.shared.ready.notify_one();
        self.shared.taken.notify_one();
    }
}
