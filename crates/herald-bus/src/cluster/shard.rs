//! One subscriber connection to one master (shard) of the cluster.
//!
//! The task owns the TCP connection: it names it (`CLIENT SETNAME`), sends the SSUBSCRIBE and
//! SUNSUBSCRIBE commands the cluster actor asks for (one command per slot, as Redis requires
//! every channel of one command to share a slot), hands every `smessage` to the sink itself
//! (the actor never sees payloads), PINGs to find a dead or stalled link, and reports to the
//! actor: connected, confirmed, dropped by the server (its slot moved), refused (`MOVED`),
//! lost. It reconnects with a jittered backoff until the actor cancels it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::resp::{self, Value};
use super::slots::key_slot;
use crate::actor::{Backoff, Channels};
use crate::Shared;

/// Channels per SSUBSCRIBE / SUNSUBSCRIBE command (all of one slot).
const CHUNK: usize = 1_000;
/// Commands the actor may queue for one shard; when full the actor restarts the shard's
/// connection instead of waiting (see `ClusterActor::send`).
pub(crate) const QUEUE: usize = 1_024;
/// Bound on connecting and naming the connection.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound on writing one batch of commands.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// A read buffer larger than this is given back once it is drained.
const KEEP_BUFFER: usize = 64 << 10;

/// What the actor asks of a shard connection.
#[derive(Debug)]
pub(crate) enum ShardCmd {
    Subscribe(Vec<String>),
    Unsubscribe(Vec<String>),
}

/// What a shard connection reports, tagged with the shard's id.
#[derive(Debug)]
pub(crate) enum ShardEvent {
    /// Connected and named; nothing subscribed yet.
    Up { id: u64 },
    /// The server confirmed `channel`.
    Subscribed { id: u64, channel: String },
    /// The server unsubscribed `channel` on its own: its slot moved to another shard.
    Dropped { id: u64, channel: String },
    /// The server refused a command (e.g. `MOVED`: the slot is not served there).
    Refused {
        id: u64,
        channels: Vec<String>,
        error: String,
    },
    /// The connection is gone (it reconnects by itself).
    Lost { id: u64, reason: String },
    /// A slot-map refresh the actor started finished (`None`: no node answered).
    Topology(Option<std::sync::Arc<super::slots::SlotMap>>),
}

/// What a shard task needs.
pub(crate) struct ShardSpec {
    pub(crate) id: u64,
    pub(crate) addr: String,
    pub(crate) conn_name: String,
    pub(crate) ping_interval: Duration,
    pub(crate) ping_timeout: Duration,
    pub(crate) channels: Channels,
    pub(crate) shared: Arc<Shared>,
    pub(crate) events: mpsc::Sender<ShardEvent>,
    pub(crate) cancel: CancellationToken,
}

/// Spawns the shard task; returns its command queue.
pub(crate) fn spawn(spec: ShardSpec) -> mpsc::Sender<ShardCmd> {
    let (tx, rx) = mpsc::channel(QUEUE);
    tokio::spawn(run(spec, rx));
    tx
}

async fn run(spec: ShardSpec, mut rx: mpsc::Receiver<ShardCmd>) {
    let mut backoff = Backoff::new();
    let mut first = true;
    loop {
        if !first {
            tokio::select! {
                _ = spec.cancel.cancelled() => return,
                _ = tokio::time::sleep(backoff.next_delay()) => {}
            }
        }
        first = false;
        let stream = tokio::select! {
            _ = spec.cancel.cancelled() => return,
            r = open(&spec.addr, &spec.conn_name) => r,
        };
        let (reader, writer) = match stream {
            Ok(s) => s.into_split(),
            Err(e) => {
                tracing::debug!(shard = %spec.addr, error = %e, "cluster shard connect failed");
                continue;
            }
        };
        // Commands queued for the previous connection are stale: the actor sends everything
        // this shard owns again when it hears `Up`.
        while rx.try_recv().is_ok() {}
        if spec
            .events
            .send(ShardEvent::Up { id: spec.id })
            .await
            .is_err()
        {
            return;
        }
        backoff.reset();
        tracing::debug!(shard = %spec.addr, "cluster shard connected");
        let mut conn = Conn {
            spec: &spec,
            reader,
            writer,
            buf: Vec::new(),
            pending: VecDeque::new(),
        };
        let reason = conn.serve(&mut rx).await;
        match reason {
            None => return,
            Some(reason) => {
                tracing::warn!(shard = %spec.addr, reason = %reason, "cluster shard connection lost; reconnecting");
                if spec
                    .events
                    .send(ShardEvent::Lost {
                        id: spec.id,
                        reason,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

/// Connects and names the connection (a refused name is only logged).
async fn open(addr: &str, name: &str) -> Result<TcpStream, String> {
    let fut = async {
        let mut s = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let _ = s.set_nodelay(true);
        let mut cmd = Vec::new();
        resp::encode(&mut cmd, &["CLIENT", "SETNAME", name]);
        s.write_all(&cmd).await.map_err(|e| format!("write: {e}"))?;
        let mut buf = Vec::with_capacity(64);
        loop {
            if let Some((v, _)) = resp::parse(&buf, &resp::SUBSCRIBER).map_err(|e| e.to_string())? {
                if let Value::Error(e) = v {
                    if crate::is_refusal(&e) {
                        return Err(format!("redis refused the connection: {e} (passwords are not supported in cluster mode)"));
                    }
                    tracing::warn!(shard = %addr, reply = %e, "CLIENT SETNAME refused on a cluster subscriber connection");
                }
                return Ok(s);
            }
            if s.read_buf(&mut buf)
                .await
                .map_err(|e| format!("read: {e}"))?
                == 0
            {
                return Err("closed during setup".to_owned());
            }
        }
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, fut).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "connect to {addr} timed out after {CONNECT_TIMEOUT:?}"
        )),
    }
}

/// A command sent and not yet answered in full.
struct Pending {
    subscribe: bool,
    channels: Vec<String>,
    /// Replies still to come (one per channel).
    left: usize,
}

struct Conn<'a> {
    spec: &'a ShardSpec,
    reader: OwnedReadHalf,
    writer: OwnedWriteHalf,
    buf: Vec<u8>,
    pending: VecDeque<Pending>,
}

impl Conn<'_> {
    /// Serves until cancelled (`None`) or the connection is unusable (`Some(why)`).
    async fn serve(&mut self, rx: &mut mpsc::Receiver<ShardCmd>) -> Option<String> {
        let mut ping_tick = tokio::time::interval(self.spec.ping_interval);
        ping_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ping_deadline: Option<Instant> = None;
        loop {
            tokio::select! {
                _ = self.spec.cancel.cancelled() => return None,
                cmd = rx.recv() => match cmd {
                    None => return None,
                    Some(cmd) => {
                        let mut out = Vec::new();
                        self.queue(cmd, &mut out);
                        while out.len() < (1 << 20) {
                            match rx.try_recv() {
                                Ok(cmd) => self.queue(cmd, &mut out),
                                Err(_) => break,
                            }
                        }
                        if let Err(e) = self.write(&out).await {
                            return Some(e);
                        }
                    }
                },
                read = self.reader.read_buf(&mut self.buf) => match read {
                    Ok(0) => return Some("closed by the server".to_owned()),
                    Err(e) => return Some(format!("read: {e}")),
                    Ok(_) => {
                        if let Err(e) = self.drain_frames(&mut ping_deadline).await {
                            return Some(e);
                        }
                    }
                },
                _ = tokio::time::sleep_until(ping_deadline.unwrap_or_else(Instant::now)), if ping_deadline.is_some() => {
                    self.spec.shared.metrics.probe_failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return Some(format!("no PING reply within {:?}", self.spec.ping_timeout));
                },
                _ = ping_tick.tick() => {
                    if ping_deadline.is_none() {
                        let mut out = Vec::new();
                        resp::encode(&mut out, &["PING"]);
                        if let Err(e) = self.write(&out).await {
                            return Some(e);
                        }
                        ping_deadline = Some(Instant::now() + self.spec.ping_timeout);
                    }
                },
            }
        }
    }

    /// Encodes `cmd` into `out`: one command per slot (and per `CHUNK` channels).
    fn queue(&mut self, cmd: ShardCmd, out: &mut Vec<u8>) {
        let (subscribe, channels) = match cmd {
            ShardCmd::Subscribe(c) => (true, c),
            ShardCmd::Unsubscribe(c) => (false, c),
        };
        let mut by_slot: BTreeMap<u16, Vec<String>> = BTreeMap::new();
        for c in channels {
            by_slot.entry(key_slot(c.as_bytes())).or_default().push(c);
        }
        let verb = if subscribe {
            "SSUBSCRIBE"
        } else {
            "SUNSUBSCRIBE"
        };
        for (_, group) in by_slot {
            for chunk in group.chunks(CHUNK) {
                let mut args: Vec<&str> = Vec::with_capacity(chunk.len() + 1);
                args.push(verb);
                args.extend(chunk.iter().map(String::as_str));
                resp::encode(out, &args);
                self.pending.push_back(Pending {
                    subscribe,
                    channels: chunk.to_vec(),
                    left: chunk.len(),
                });
            }
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        match tokio::time::timeout(WRITE_TIMEOUT, self.writer.write_all(bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("write: {e}")),
            Err(_) => Err(format!("write timed out after {WRITE_TIMEOUT:?}")),
        }
    }

    async fn drain_frames(&mut self, ping_deadline: &mut Option<Instant>) -> Result<(), String> {
        let mut used = 0;
        loop {
            match resp::parse(&self.buf[used..], &resp::SUBSCRIBER) {
                Ok(Some((v, n))) => {
                    used += n;
                    self.handle(v, ping_deadline).await?;
                }
                Ok(None) => break,
                Err(e) => return Err(e.to_string()),
            }
        }
        self.buf.drain(..used);
        if self.buf.is_empty() && self.buf.capacity() > KEEP_BUFFER {
            self.buf = Vec::new();
        }
        Ok(())
    }

    async fn report(&self, ev: ShardEvent) -> Result<(), String> {
        self.spec
            .events
            .send(ev)
            .await
            .map_err(|_| "cluster actor stopped".to_owned())
    }

    async fn handle(
        &mut self,
        v: Value,
        ping_deadline: &mut Option<Instant>,
    ) -> Result<(), String> {
        let id = self.spec.id;
        match v {
            Value::Error(error) => {
                let Some(p) = self.pending.pop_front() else {
                    return Err(format!("unexpected error reply: {error}"));
                };
                self.report(ShardEvent::Refused {
                    id,
                    channels: p.channels,
                    error,
                })
                .await
            }
            Value::Simple(s) if s.eq_ignore_ascii_case("PONG") => {
                *ping_deadline = None;
                Ok(())
            }
            Value::Array(Some(items)) => {
                let kind = items.first().and_then(Value::as_bytes).unwrap_or_default();
                let channel = items.get(1).and_then(Value::as_str).unwrap_or_default();
                if kind.eq_ignore_ascii_case(b"smessage") {
                    let payload = items.get(2).and_then(Value::as_bytes).unwrap_or_default();
                    deliver(&self.spec.shared, &self.spec.channels, channel, payload);
                    Ok(())
                } else if kind.eq_ignore_ascii_case(b"pong") {
                    *ping_deadline = None;
                    Ok(())
                } else if kind.eq_ignore_ascii_case(b"ssubscribe") {
                    self.answered(true, channel);
                    self.report(ShardEvent::Subscribed {
                        id,
                        channel: channel.to_owned(),
                    })
                    .await
                } else if kind.eq_ignore_ascii_case(b"sunsubscribe") {
                    if self.answered(false, channel) {
                        Ok(())
                    } else {
                        // Not asked for: the server dropped it because its slot moved.
                        self.report(ShardEvent::Dropped {
                            id,
                            channel: channel.to_owned(),
                        })
                        .await
                    }
                } else {
                    tracing::debug!(shard = %self.spec.addr, kind = %String::from_utf8_lossy(kind), "unexpected frame on a cluster subscriber connection");
                    Ok(())
                }
            }
            other => {
                tracing::debug!(shard = %self.spec.addr, frame = ?other, "unexpected frame on a cluster subscriber connection");
                Ok(())
            }
        }
    }

    /// Counts one reply against the oldest pending command if it is of this kind and names
    /// `channel`; whether it did.
    fn answered(&mut self, subscribe: bool, channel: &str) -> bool {
        let Some(front) = self.pending.front_mut() else {
            return false;
        };
        if front.subscribe != subscribe || !front.channels.iter().any(|c| c == channel) {
            return false;
        }
        front.left = front.left.saturating_sub(1);
        if front.left == 0 {
            self.pending.pop_front();
        }
        true
    }
}

/// Opens (when sealed) and routes one shard message on a user or the broadcast channel.
fn deliver(shared: &Shared, channels: &Channels, channel: &str, payload: &[u8]) {
    let Some(payload) = crate::actor::open(shared, channel, payload) else {
        return;
    };
    if !crate::actor::route(shared, channels, channel, payload) {
        tracing::debug!(%channel, "cluster bus message on an unknown channel; dropped");
    }
}
