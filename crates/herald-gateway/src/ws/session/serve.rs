//! Phase 3: the event loop, and the store read its cursor asked for.

use super::*;

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

impl Socket {
    /// Phase 3: the event loop. It waits on three things only — the socket's queue (events,
    /// drain, kill), the socket's input, and one timer for every deadline — so the future an
    /// idle socket keeps alive stays small, and nothing is registered anew per iteration.
    pub(super) async fn serve(&mut self, session: &mut Session) -> End {
        // A drain that began before this socket registered reached no queue of ours.
        if self.state.is_draining() {
            if let Err(end) = self.start_drain(session).await {
                return end;
            }
        }
        // The cursor's store read, while one is in flight (boxed: an idle socket holds none).
        let mut read: InFlight = None;
        loop {
            let timer = session.next_deadline();
            let step: Result<(), End> = tokio::select! {
                biased;
                out = session.rx.recv() => match out {
                    Recv::Event(o) => self.on_outbound(session, o, &mut read).await,
                    Recv::Killed(code) => Err(End::code(code)),
                },
                answer = answered(&mut read) => {
                    read = None;
                    Box::pin(self.on_answer(session, answer, &mut read)).await
                }
                _ = sleep_until(timer) => self.on_timer(session).await,
                msg = self.ws.recv() => self.on_inbound(session, msg).await,
            };
            if let Err(end) = step {
                return end;
            }
        }
    }

    async fn on_timer(&mut self, session: &mut Session) -> Result<(), End> {
        let now = Instant::now();
        if session.drain_at.is_some_and(|d| d <= now) {
            return Err(End::code(CloseCode::Draining));
        }
        if now >= session.expiry_at {
            return Err(End::code(CloseCode::TokenExpired));
        }
        if session.warn_at.is_some_and(|w| w <= now) {
            session.warn_at = None;
            let frame = to_text(&ServerMessage::TokenExpiring {
                expires_at: session.token_expires_at,
            });
            self.send_raw(frame, Some(&session.conn)).await?;
        }
        if now >= session.next_ping {
            if self.last_seen.elapsed() > self.state.config.idle_timeout {
                return Err(End::code(CloseCode::IdleTimeout));
            }
            session.next_ping = now + self.state.config.heartbeat_interval;
            self.control(false, b"", Some(&session.conn)).await?;
        }
        Ok(())
    }

    /// Tells the client to reconnect elsewhere and schedules the close after a random delay
    /// within the drain spread, so a node's sockets do not all reconnect at once.
    async fn start_drain(&mut self, session: &mut Session) -> Result<(), End> {
        if session.drain_at.is_some() {
            return Ok(());
        }
        let spread = self.state.config.drain_spread.as_millis() as u32;
        let after_ms = if spread == 0 {
            0
        } else {
            rand::rng().random_range(0..=spread)
        };
        session.drain_at = Some(Instant::now() + Duration::from_millis(after_ms.into()));
        let frame = to_text(&ServerMessage::Reconnect {
            reason: "draining".into(),
            after_ms,
        });
        self.send_raw(frame, Some(&session.conn)).await
    }

    async fn on_outbound(
        &mut self,
        session: &mut Session,
        out: SocketEvent,
        read: &mut InFlight,
    ) -> Result<(), End> {
        let metrics = self.state.metrics.clone();
        match out {
            SocketEvent::Frame(f) => {
                self.send_raw(f, Some(&session.conn)).await?;
                metrics.deliveries.with_label_values(&["event"]).inc();
            }
            SocketEvent::Notification(n) => match session.cursor.live(n.seq, n) {
                OnLive::Write(n) => self.write_live(session, &n).await?,
                OnLive::Duplicate => metrics.duplicates_dropped.inc(),
                OnLive::Held => {}
                OnLive::Read(r) => self.start_read(session, r, read),
            },
            SocketEvent::Drain => self.start_drain(session).await?,
            SocketEvent::Sync => {
                metrics.syncs.inc();
                Box::pin(self.sync(session)).await?;
            }
        }
        Ok(())
    }

    /// Catches up from the store after the bus may have lost messages.
    async fn sync(&mut self, session: &mut Session) -> Result<(), End> {
        let us = match self.state.reads.user_state(&session.user).await {
            Ok(us) => us,
            Err(e) => {
                // Nothing is lost: the reconcile loop asks again later.
                tracing::warn!(user = %session.user, error = %e, "sync skipped: store unavailable");
                return Ok(());
            }
        };
        if us.latest_seq <= session.cursor.last() {
            return Ok(());
        }
        if us.latest_seq - session.cursor.last() > i64::from(self.state.config.max_resume_gap) {
            self.resync(session, ResyncReason::GapTooLarge, us.latest_seq)
                .await?;
        }
        self.catch_up(
            session,
            Some((us.unread_count, us.version)),
            false,
            us.latest_seq,
        )
        .await
    }

    /// Starts the store read the cursor asked for; the event loop polls it.
    fn start_read(&self, session: &Session, r: Read, read: &mut InFlight) {
        self.state.metrics.gap_fills.inc();
        let state = self.state.clone();
        let user = session.user.clone();
        *read = Some(match r {
            Read::Rows { after, through } => Box::pin(async move {
                state
                    .reads
                    .after_seq(&user, after, through - after)
                    .await
                    .map(Answer::Rows)
            }),
            Read::Latest { .. } => Box::pin(async move {
                state
                    .reads
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
        session: &mut Session,
        answer: Result<Answer, StoreError>,
        read: &mut InFlight,
    ) -> Result<(), End> {
        let steps = match answer {
            Ok(Answer::Rows(rows)) => session.cursor.rows(rows, |n| n.seq),
            Ok(Answer::Latest(latest)) => session.cursor.latest(latest),
            Err(e) => match session.cursor.reading() {
                Some(Read::Latest { seq }) => {
                    tracing::warn!(user = %session.user, seq, error = %e, "a session seq far ahead could not be checked: store unavailable; dropped");
                    session.cursor.latest_failed()
                }
                _ => return Err(store_end("gap_fill", e)),
            },
        };
        let metrics = self.state.metrics.clone();
        for step in steps {
            match step {
                Step::Write { frame, .. } => self.write_live(session, &frame).await?,
                Step::Batch(rows) => {
                    let last = rows.last().map_or(0, |r| r.seq);
                    let frame = to_text(&ServerMessage::Batch {
                        notifications: rows,
                        complete: true,
                        unread_count: None,
                        version: None,
                    });
                    self.send_raw(frame, Some(&session.conn)).await?;
                    self.delivered(session, last);
                }
                Step::Resync { latest } => {
                    let frame = to_text(&ServerMessage::Resync {
                        reason: ResyncReason::GapTooLarge,
                        latest_seq: latest,
                    });
                    self.send_raw(frame, Some(&session.conn)).await?;
                    self.delivered(session, latest);
                }
                Step::NotCommitted { .. } => self.seq_not_committed(session),
                Step::Duplicate => metrics.duplicates_dropped.inc(),
                Step::Read(r) => self.start_read(session, r, read),
            }
        }
        Ok(())
    }

    /// Writes a live notification the cursor let through.
    async fn write_live(&mut self, session: &Session, n: &RenderedNotification) -> Result<(), End> {
        self.send_raw(n.frame.clone(), Some(&session.conn)).await?;
        self.state
            .metrics
            .deliveries
            .with_label_values(&["live"])
            .inc();
        self.delivered(session, n.seq);
        Ok(())
    }

    fn seq_not_committed(&self, session: &Session) {
        let channel = format!("{}user:{}", self.state.config.redis_prefix, session.user);
        self.state
            .registry
            .rejected(Reject::SeqNotCommitted, &channel);
    }

    async fn on_inbound(
        &mut self,
        session: &mut Session,
        msg: Option<Result<Message, WsError>>,
    ) -> Result<(), End> {
        match msg {
            None => Err(End::Gone),
            Some(Err(e)) => Err(protocol_end(e)),
            // Every frame counts against the rate limit, unsolicited pongs and fragments too.
            Some(Ok(Message::Pong | Message::Fragment)) => self.admit(),
            Some(Ok(Message::Ping(b))) => {
                self.admit()?;
                self.control(true, &b, Some(&session.conn)).await
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
                    Ok(cmd) => Box::pin(self.command(session, cmd)),
                    Err(e) => Box::pin(self.error(session, e.rid, e.code, e.message)),
                };
                reply.await
            }
        }
    }
}
