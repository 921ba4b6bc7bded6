//! One task per socket: authenticate, register, subscribe, catch up, then serve.
//!
//! Delivery invariant: a socket receives its user's notifications in strictly increasing seq
//! order with no gap and no duplicate. What to write is decided by the socket's pure
//! [`Cursor`] (`herald_core::cursor`): this task feeds it live frames and the answers of the
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

use super::conn::{Closed, Message, WsConn, WsError};
use crate::auth::VerifiedToken;
use crate::edge::preauth::PreAuthTicket;
use crate::edge::table::AddrSlot;
use crate::registry::{ConnHandle, Inbound, Inbox, LiveNotification, Outbound};
use crate::state::{AppState, SocketGuard};
use herald_core::rate::{Rate, TokenBucket};

/// How long a single write may wait for the client to read before it counts as slow.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the close handshake may take before the connection is simply dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

const OP_TEXT: u8 = 0x1;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

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

/// Runs one write to the socket, bounded: a client that does not read within
/// [`WRITE_TIMEOUT`], or whose queue overflowed meanwhile (`kill`), is a slow consumer.
async fn guarded(
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

/// Serialises a message into a frame. Building frames in a plain function (not inline in an
/// async one) keeps the message itself out of the session future while the frame is written.
fn frame(msg: &ServerMessage) -> ByteString {
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
    ws: WsConn,
    auth: Auth,
    query_last_seq: Option<i64>,
) {
    let mut s = Socket {
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
    ws: WsConn,
    last_seen: Instant,
    bucket: TokenBucket,
}

/// The answer to a cursor's store read.
enum Answer {
    Rows(Vec<Notification>),
    Latest(i64),
}

/// The cursor's store read in flight, polled by the event loop beside the socket's queue.
type InFlight = Option<Pin<Box<dyn Future<Output = Result<Answer, StoreError>> + Send>>>;

/// Waits for the read in flight; never completes without one.
async fn answered(read: &mut InFlight) -> Result<Answer, StoreError> {
    match read {
        Some(r) => r.await,
        None => std::future::pending().await,
    }
}

/// State of an authenticated session.
struct Live {
    user: Arc<str>,
    conn: ConnHandle,
    rx: Inbox,
    /// Which notifications the socket still needs; `cursor.last()` is the highest seq written.
    cursor: Cursor<Arc<LiveNotification>>,
    token_expires_at: i64,
    /// Close 4103 at this instant (token expiry plus leeway).
    expiry_at: Instant,
    /// Send `token_expiring` at this instant; `None` once sent or when warnings are off.
    warn_at: Option<Instant>,
    /// Next server ping (and idle check).
    next_ping: Instant,
    drain_at: Option<Instant>,
}

impl Live {
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

impl Socket {
    async fn close(mut self, end: End) {
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
                (code, text)
            }
            End::Evicted => (
                CloseCode::AuthTimeout,
                format!(
                    "{}: evicted unauthenticated to make room; send auth at once",
                    CloseCode::AuthTimeout.reason()
                ),
            ),
        };

        if self.ws.is_broken() {
            // Half a frame is on the wire: a close frame now would be garbage.
            return;
        }
        let reason = Some((code.code(), text.as_str()));
        let sent = tokio::time::timeout(CLOSE_TIMEOUT, self.ws.close(reason)).await;
        if !matches!(sent, Ok(Ok(()))) || !linger {
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
    fn admit(&mut self) -> Result<(), End> {
        self.last_seen = Instant::now();
        let rate = frame_rate(&self.state);
        self.bucket
            .take(&rate, self.last_seen.into_std())
            .map_err(|_| End::code(CloseCode::RateLimited))
    }

    async fn send_raw(&mut self, text: ByteString, kill: Option<&ConnHandle>) -> Result<(), End> {
        self.write(OP_TEXT, text.as_bytes(), kill).await
    }

    /// Writes one frame: synchronously when the socket takes it at once (no future state, no
    /// buffer), otherwise in a boxed, bounded slow path (see [`guarded`]).
    async fn write(
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

    async fn control(
        &mut self,
        pong: bool,
        payload: &[u8],
        kill: Option<&ConnHandle>,
    ) -> Result<(), End> {
        self.write(if pong { OP_PONG } else { OP_PING }, payload, kill)
            .await
    }

    /// Phase 1: the token from the header, or a first `auth` message within the timeout.
    async fn authenticate(
        &mut self,
        auth: Auth,
        query_last_seq: Option<i64>,
    ) -> Result<(VerifiedToken, Option<i64>), End> {
        // The ticket is dropped (the socket leaves the pre-auth budget) when this returns.
        let ticket = match auth {
            Auth::Header(t) => return Ok((t, query_last_seq)),
            Auth::Message(ticket) => ticket,
        };
        let deadline = Instant::now() + self.state.config.auth_timeout;
        loop {
            let msg = tokio::select! {
                _ = sleep_until(deadline) => return Err(End::code(CloseCode::AuthTimeout)),
                _ = self.state.drain.cancelled() => return Err(End::code(CloseCode::Draining)),
                _ = ticket.evicted.cancelled() => return Err(End::Evicted),
                m = self.ws.recv() => m,
            };
            match msg {
                None => return Err(End::Gone),
                Some(Err(e)) => return Err(protocol_end(e)),
                Some(Ok(Message::Text(text))) => {
                    self.admit()?;
                    return match parse_client_message(&text) {
                        Ok(ClientMessage::Auth {
                            token, last_seq, ..
                        }) => {
                            if last_seq.is_some_and(|n| n < 0) {
                                return Err(End::Close(
                                    CloseCode::BadRequest,
                                    Some("last_seq must be non-negative".into()),
                                ));
                            }
                            match self.state.verifier.verify(&token) {
                                Ok(v) => Ok((v, last_seq.or(query_last_seq))),
                                Err(e) if e.is_expired() => {
                                    Err(End::Close(CloseCode::TokenExpired, Some(e.to_string())))
                                }
                                Err(e) => {
                                    Err(End::Close(CloseCode::Unauthorized, Some(e.to_string())))
                                }
                            }
                        }
                        Ok(_) => Err(End::Close(
                            CloseCode::BadRequest,
                            Some("the first message must be auth".into()),
                        )),
                        Err(e) => Err(End::Close(CloseCode::BadRequest, Some(e.message))),
                    };
                }
                Some(Ok(Message::Ping(b))) => {
                    self.admit()?;
                    self.control(true, &b, None).await?;
                }
                // Every frame counts against the rate limit, unsolicited pongs and fragments too.
                Some(Ok(Message::Pong | Message::Fragment)) => self.admit()?,
                Some(Ok(Message::Binary(_))) => return Err(End::code(CloseCode::UnsupportedData)),
                Some(Ok(Message::Close(_))) => return Err(End::ClientClosed),
            }
        }
    }

    /// Phase 2 and 3: register, subscribe, catch up, serve; always unregisters.
    async fn authenticated(&mut self, token: VerifiedToken, last_seq: Option<i64>) -> End {
        let state = self.state.clone();
        let user: Arc<str> = Arc::from(token.user_id.as_str());
        let conn_id = state.next_conn_id();
        let (conn, rx) = ConnHandle::new(conn_id, state.config.outbound_queue);
        conn.set_issued_at(token.issued_at);
        if state.registry.register(&user, conn.clone()).is_err() {
            return End::Close(
                CloseCode::TooManyConnections,
                Some(format!(
                    "at most {} sockets per user",
                    state.config.max_sockets_per_user
                )),
            );
        }
        // Checked after registering: a revocation recorded before this check is seen here, and
        // one recorded after it finds the socket in the registry and closes it.
        if state
            .registry
            .revocations
            .is_revoked(&user, token.issued_at)
        {
            state.registry.unregister(&user, conn_id);
            return revoked_end();
        }
        state.metrics.connections.inc();
        state.metrics.connections_total.inc();
        let outcome = Box::pin(state.bus.subscribe(&user)).await;
        tracing::debug!(user = %user, conn = conn_id, ?outcome, "socket subscribed");
        let mut live = Live {
            user: user.clone(),
            conn,
            rx,
            cursor: Cursor::new(0, state.config.outbound_queue, state.config.max_resume_gap),
            token_expires_at: token.expires_at,
            expiry_at: Instant::now(),
            warn_at: None,
            next_ping: Instant::now() + state.config.heartbeat_interval,
            drain_at: None,
        };
        live.set_token(&state.config, token.expires_at);
        let end = match Box::pin(self.start(&mut live, last_seq)).await {
            Ok(()) => self.serve(&mut live).await,
            Err(end) => end,
        };
        state.registry.unregister(&user, conn_id);
        state.bus.unsubscribe(&user);
        state.metrics.connections.dec();
        end
    }

    /// Sends `connected` and the initial catch-up.
    async fn start(&mut self, live: &mut Live, last_seq: Option<i64>) -> Result<(), End> {
        let state = self.state.clone();
        if cfg!(feature = "fault-injection") && !state.config.fault_catch_up_delay.is_zero() {
            tokio::time::sleep(state.config.fault_catch_up_delay).await;
        }
        let us = state
            .loader
            .user_state(&live.user)
            .await
            .map_err(|e| store_end("user_state", e))?;
        let cfg = &state.config;
        let start = cursor::start(
            last_seq,
            us.delivered_seq,
            us.latest_seq,
            cfg.max_resume_gap,
        );
        let connected = ServerMessage::Connected {
            user_id: live.user.to_string(),
            node_id: cfg.node_id.clone(),
            session_id: uuid::Uuid::new_v4(),
            latest_seq: us.latest_seq,
            unread_count: us.unread_count,
            version: us.version,
            resume_from: start.resume_from,
            token_expires_at: live.token_expires_at,
            heartbeat_interval_ms: cfg.heartbeat_interval.as_millis() as u32,
            limits: ConnectionLimits {
                max_message_bytes: cfg.max_message_bytes as u32,
                messages_per_second: cfg.rate_limit_per_sec,
                message_burst: cfg.rate_limit_burst,
                max_sockets_per_user: cfg.max_sockets_per_user as u32,
                max_resume_gap: cfg.max_resume_gap,
            },
        };
        // Queued: it goes out with the first frame that follows (resync or batch), in one
        // write together with the 101 when the socket authenticated by header.
        self.ws.queue_text(&connected.to_json());
        match start.resync {
            Some(why) => {
                let reason = match why {
                    cursor::Resync::CursorAhead => ResyncReason::CursorAhead,
                    cursor::Resync::GapTooLarge => ResyncReason::GapTooLarge,
                };
                self.resync(live, reason, start.last).await?;
            }
            None => {
                // The client holds everything up to its cursor: that is its delivered watermark.
                live.cursor.advance_to(start.last);
                live.conn.set_delivered(start.last);
            }
        }
        if live.cursor.last() >= us.latest_seq {
            // Nothing to fetch: seqs are gapless and `latest_seq` was read after subscribing,
            // so anything newer arrives live (a gap there is filled from the store). This
            // saves the catch-up query for every fresh or up-to-date connect.
            let frame = frame(&ServerMessage::Batch {
                notifications: Vec::new(),
                complete: true,
                unread_count: Some(us.unread_count),
                version: Some(us.version),
            });
            return self.send_raw(frame, Some(&live.conn)).await;
        }
        self.catch_up(live, Some((us.unread_count, us.version)), true)
            .await
    }

    async fn resync(
        &mut self,
        live: &mut Live,
        reason: ResyncReason,
        latest: i64,
    ) -> Result<(), End> {
        let frame = frame(&ServerMessage::Resync {
            reason,
            latest_seq: latest,
        });
        self.send_raw(frame, Some(&live.conn)).await?;
        self.advance(live, latest);
        Ok(())
    }

    /// The socket wrote everything up to `seq` on its own (catch-up, sync, resync).
    fn advance(&self, live: &mut Live, seq: i64) {
        live.cursor.advance_to(seq);
        self.delivered(live, seq);
    }

    /// Records `seq` as delivered (for the reconcile loop and the user's delivery watermark).
    fn delivered(&self, live: &Live, seq: i64) {
        if seq > live.conn.delivered() {
            live.conn.set_delivered(seq);
            self.state.tracker.record(&live.user, seq);
        }
    }

    /// Sends everything after `live.last_seq` in pages. With `always`, the final (possibly
    /// empty) page is sent even when there is nothing to send, so the client sees the end of
    /// the initial catch-up.
    async fn catch_up(
        &mut self,
        live: &mut Live,
        counts: Option<(i64, i64)>,
        always: bool,
    ) -> Result<(), End> {
        let state = self.state.clone();
        let page = i64::from(state.config.batch_page_size);
        loop {
            let rows = state
                .loader
                .after_seq(&live.user, live.cursor.last(), page)
                .await
                .map_err(|e| store_end("after_seq", e))?;
            let complete = (rows.len() as i64) < page;
            let last = rows.last().map(|n| n.seq);
            if !rows.is_empty() || (complete && always) {
                let n = rows.len() as u64;
                let frame = frame(&ServerMessage::Batch {
                    notifications: rows,
                    complete,
                    unread_count: counts.map(|c| c.0),
                    version: counts.map(|c| c.1),
                });
                self.send_raw(frame, Some(&live.conn)).await?;
                state
                    .metrics
                    .deliveries
                    .with_label_values(&["catch_up"])
                    .inc_by(n);
            }
            if let Some(seq) = last {
                self.advance(live, seq);
            }
            if complete {
                return Ok(());
            }
        }
    }

    /// Phase 3: the event loop. It waits on three things only — the socket's queue (events,
    /// drain, kill), the socket's input, and one timer for every deadline — so the future an
    /// idle socket keeps alive stays small, and nothing is registered anew per iteration.
    async fn serve(&mut self, live: &mut Live) -> End {
        // A drain that began before this socket registered reached no queue of ours.
        if self.state.is_draining() {
            if let Err(end) = self.start_drain(live).await {
                return end;
            }
        }
        // The cursor's store read, while one is in flight (boxed: an idle socket holds none).
        let mut read: InFlight = None;
        loop {
            let timer = live.next_deadline();
            let step: Result<(), End> = tokio::select! {
                biased;
                out = live.rx.recv() => match out {
                    Inbound::Event(o) => self.on_outbound(live, o, &mut read).await,
                    Inbound::Killed(code) => Err(End::code(code)),
                },
                answer = answered(&mut read) => {
                    read = None;
                    Box::pin(self.on_answer(live, answer, &mut read)).await
                }
                _ = sleep_until(timer) => self.on_timer(live).await,
                msg = self.ws.recv() => self.on_inbound(live, msg).await,
            };
            if let Err(end) = step {
                return end;
            }
        }
    }

    async fn on_timer(&mut self, live: &mut Live) -> Result<(), End> {
        let now = Instant::now();
        if live.drain_at.is_some_and(|d| d <= now) {
            return Err(End::code(CloseCode::Draining));
        }
        if now >= live.expiry_at {
            return Err(End::code(CloseCode::TokenExpired));
        }
        if live.warn_at.is_some_and(|w| w <= now) {
            live.warn_at = None;
            let frame = frame(&ServerMessage::TokenExpiring {
                expires_at: live.token_expires_at,
            });
            self.send_raw(frame, Some(&live.conn)).await?;
        }
        if now >= live.next_ping {
            if self.last_seen.elapsed() > self.state.config.idle_timeout {
                return Err(End::code(CloseCode::IdleTimeout));
            }
            live.next_ping = now + self.state.config.heartbeat_interval;
            self.control(false, b"", Some(&live.conn)).await?;
        }
        Ok(())
    }

    /// Tells the client to reconnect elsewhere and schedules the close after a random delay
    /// within the drain spread, so a node's sockets do not all reconnect at once.
    async fn start_drain(&mut self, live: &mut Live) -> Result<(), End> {
        if live.drain_at.is_some() {
            return Ok(());
        }
        let spread = self.state.config.drain_spread.as_millis() as u32;
        let after_ms = if spread == 0 {
            0
        } else {
            rand::rng().random_range(0..=spread)
        };
        live.drain_at = Some(Instant::now() + Duration::from_millis(after_ms.into()));
        let frame = frame(&ServerMessage::Reconnect {
            reason: "draining".into(),
            after_ms,
        });
        self.send_raw(frame, Some(&live.conn)).await
    }

    async fn on_outbound(
        &mut self,
        live: &mut Live,
        out: Outbound,
        read: &mut InFlight,
    ) -> Result<(), End> {
        let metrics = self.state.metrics.clone();
        match out {
            Outbound::Frame(f) => {
                self.send_raw(f, Some(&live.conn)).await?;
                metrics.deliveries.with_label_values(&["event"]).inc();
            }
            Outbound::Live(n) => match live.cursor.live(n.seq, n) {
                OnLive::Write(n) => {
                    self.send_raw(n.frame.clone(), Some(&live.conn)).await?;
                    metrics.deliveries.with_label_values(&["live"]).inc();
                    self.delivered(live, n.seq);
                }
                OnLive::Duplicate => metrics.duplicates_dropped.inc(),
                OnLive::Held => {}
                OnLive::Read(r) => self.start_read(live, r, read),
            },
            Outbound::Drain => self.start_drain(live).await?,
            Outbound::Sync => {
                metrics.syncs.inc();
                Box::pin(self.sync(live)).await?;
            }
        }
        Ok(())
    }

    /// Catches up from the store after the bus may have lost messages.
    async fn sync(&mut self, live: &mut Live) -> Result<(), End> {
        let us = match self.state.loader.user_state(&live.user).await {
            Ok(us) => us,
            Err(e) => {
                // Nothing is lost: the reconcile loop asks again later.
                tracing::warn!(user = %live.user, error = %e, "sync skipped: store unavailable");
                return Ok(());
            }
        };
        if us.latest_seq <= live.cursor.last() {
            return Ok(());
        }
        if us.latest_seq - live.cursor.last() > i64::from(self.state.config.max_resume_gap) {
            self.resync(live, ResyncReason::GapTooLarge, us.latest_seq)
                .await?;
        }
        self.catch_up(live, Some((us.unread_count, us.version)), false)
            .await
    }

    /// Starts the store read the cursor asked for; the event loop polls it.
    fn start_read(&self, live: &Live, r: Read, read: &mut InFlight) {
        self.state.metrics.gap_fills.inc();
        let state = self.state.clone();
        let user = live.user.clone();
        *read = Some(match r {
            Read::Rows { after, through } => Box::pin(async move {
                state
                    .loader
                    .after_seq(&user, after, through - after)
                    .await
                    .map(Answer::Rows)
            }),
            Read::Latest { .. } => Box::pin(async move {
                state
                    .loader
                    .user_state(&user)
                    .await
                    .map(|us| Answer::Latest(us.latest_seq))
            }),
        });
    }

    /// Hands a read's answer to the cursor and carries out what it decides. A failed gap read
    /// closes the socket (1011; the client reconnects and catches up); a failed check of a
    /// seq far ahead drops that frame (a later sync catches the socket up).
    async fn on_answer(
        &mut self,
        live: &mut Live,
        answer: Result<Answer, StoreError>,
        read: &mut InFlight,
    ) -> Result<(), End> {
        let steps = match answer {
            Ok(Answer::Rows(rows)) => live.cursor.rows(rows, |n| n.seq),
            Ok(Answer::Latest(latest)) => live.cursor.latest(latest),
            Err(e) => match live.cursor.reading() {
                Some(Read::Latest { seq }) => {
                    tracing::warn!(user = %live.user, seq, error = %e, "a live seq far ahead could not be checked: store unavailable; dropped");
                    live.cursor.latest_failed()
                }
                _ => return Err(store_end("gap_fill", e)),
            },
        };
        let metrics = self.state.metrics.clone();
        for step in steps {
            match step {
                Step::Write { seq, frame } => {
                    self.send_raw(frame.frame.clone(), Some(&live.conn)).await?;
                    metrics.deliveries.with_label_values(&["live"]).inc();
                    self.delivered(live, seq);
                }
                Step::Batch(rows) => {
                    let last = rows.last().map_or(0, |r| r.seq);
                    let frame = frame(&ServerMessage::Batch {
                        notifications: rows,
                        complete: true,
                        unread_count: None,
                        version: None,
                    });
                    self.send_raw(frame, Some(&live.conn)).await?;
                    self.delivered(live, last);
                }
                Step::Resync { latest } => {
                    let frame = frame(&ServerMessage::Resync {
                        reason: ResyncReason::GapTooLarge,
                        latest_seq: latest,
                    });
                    self.send_raw(frame, Some(&live.conn)).await?;
                    self.delivered(live, latest);
                }
                Step::NotCommitted { .. } => self.seq_not_committed(live),
                Step::Duplicate => metrics.duplicates_dropped.inc(),
                Step::Read(r) => self.start_read(live, r, read),
            }
        }
        Ok(())
    }

    fn seq_not_committed(&self, live: &Live) {
        let channel = format!("{}user:{}", self.state.config.redis_prefix, live.user);
        self.state
            .registry
            .rejected(Reject::SeqNotCommitted, &channel);
    }

    async fn on_inbound(
        &mut self,
        live: &mut Live,
        msg: Option<Result<Message, WsError>>,
    ) -> Result<(), End> {
        match msg {
            None => Err(End::Gone),
            Some(Err(e)) => Err(protocol_end(e)),
            // Every frame counts against the rate limit, unsolicited pongs and fragments too.
            Some(Ok(Message::Pong | Message::Fragment)) => self.admit(),
            Some(Ok(Message::Ping(b))) => {
                self.admit()?;
                self.control(true, &b, Some(&live.conn)).await
            }
            Some(Ok(Message::Binary(_))) => Err(End::code(CloseCode::UnsupportedData)),
            Some(Ok(Message::Close(_))) => Err(End::ClientClosed),
            Some(Ok(Message::Text(text))) => {
                self.admit()?;
                let parsed = parse_client_message(&text);
                drop(text);
                // Commands and error replies are boxed: the idle event loop stays small.
                let reply: std::pin::Pin<
                    Box<dyn std::future::Future<Output = Result<(), End>> + '_>,
                > = match parsed {
                    Ok(cmd) => Box::pin(self.command(live, cmd)),
                    Err(e) => Box::pin(self.error(live, e.rid, e.code, e.message)),
                };
                reply.await
            }
        }
    }

    async fn error(
        &mut self,
        live: &Live,
        rid: Option<Rid>,
        code: ErrorCode,
        message: String,
    ) -> Result<(), End> {
        let frame = frame(&ServerMessage::Error { rid, code, message });
        self.send_raw(frame, Some(&live.conn)).await
    }

    async fn ack(&mut self, live: &Live, rid: Option<Rid>, result: AckResult) -> Result<(), End> {
        let frame = frame(&ServerMessage::Ack { rid, result });
        self.send_raw(frame, Some(&live.conn)).await
    }

    async fn command(&mut self, live: &mut Live, cmd: ClientMessage) -> Result<(), End> {
        let state = self.state.clone();
        let rid = cmd.rid().cloned();
        let result: Result<AckResult, (ErrorCode, String)> = match cmd {
            ClientMessage::Auth { .. } => Err((
                ErrorCode::InvalidState,
                "already authenticated; use refresh to extend the session".into(),
            )),
            ClientMessage::Ping { .. } => Ok(AckResult::Pong {
                server_time: chrono::Utc::now(),
            }),
            ClientMessage::GetUnreadCount { .. } => {
                match state.store.user_state(&live.user).await {
                    Ok(us) => Ok(AckResult::UnreadCount(UnreadCount {
                        unread_count: us.unread_count,
                        latest_seq: us.latest_seq,
                        version: us.version,
                    })),
                    Err(e) => Err(store_error(e)),
                }
            }
            ClientMessage::MarkRead { id, .. } => match state.mark_read(&live.user, id).await {
                Ok(Some(r)) => Ok(AckResult::MarkRead(r)),
                Ok(None) => Err((ErrorCode::NotFound, "notification not found".into())),
                Err(e) => Err(store_error(e)),
            },
            ClientMessage::MarkAllRead { up_to_seq, .. } => {
                if up_to_seq.is_some_and(|s| s < 0) {
                    Err((
                        ErrorCode::InvalidMessage,
                        "up_to_seq must be non-negative".into(),
                    ))
                } else {
                    match state.mark_all_read(&live.user, up_to_seq).await {
                        Ok(r) => Ok(AckResult::MarkAllRead(r)),
                        Err(e) => Err(store_error(e)),
                    }
                }
            }
            ClientMessage::Refresh { token, .. } => match state.verifier.verify(&token) {
                Ok(v)
                    if *v.user_id == *live.user
                        && state
                            .registry
                            .revocations
                            .is_revoked(&live.user, v.issued_at) =>
                {
                    Err((
                        ErrorCode::TokenRevoked,
                        crate::auth::TokenError::Revoked.to_string(),
                    ))
                }
                Ok(v) if *v.user_id == *live.user => {
                    live.conn.set_issued_at(v.issued_at);
                    // A revocation recorded between the check above and now missed the new
                    // `iat`: the socket now runs on a revoked token.
                    if state
                        .registry
                        .revocations
                        .is_revoked(&live.user, v.issued_at)
                    {
                        return Err(revoked_end());
                    }
                    live.set_token(&state.config, v.expires_at);
                    Ok(AckResult::Refresh {
                        expires_at: v.expires_at,
                    })
                }
                Ok(_) => {
                    return Err(End::Close(
                        CloseCode::Forbidden,
                        Some("refresh token is for a different user".into()),
                    ))
                }
                Err(e) if e.is_expired() => Err((ErrorCode::TokenExpired, e.to_string())),
                Err(e) => Err((ErrorCode::Unauthorized, e.to_string())),
            },
        };
        match result {
            Ok(r) => self.ack(live, rid, r).await,
            Err((code, message)) => self.error(live, rid, code, message).await,
        }
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
