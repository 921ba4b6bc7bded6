//! Phase 2: register, subscribe, `connected`, and catching up from the store (at connect,
//! after a bus loss, and on a resync).

use super::*;

impl Socket {
    /// Phase 2 and 3: register, subscribe, catch up, serve; always unregisters.
    pub(super) async fn authenticated(
        &mut self,
        token: VerifiedToken,
        last_seq: Option<i64>,
    ) -> End {
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
        if self.sio.is_some() {
            self.ws.count_open(&state.metrics);
        }
        let outcome = Box::pin(state.bus.subscribe(&user)).await;
        tracing::debug!(user = %user, conn = conn_id, ?outcome, "socket subscribed");
        let mut session = Session {
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
        session.set_token(&state.config, token.expires_at);
        let end = match Box::pin(self.start(&mut session, last_seq)).await {
            Ok(()) => self.serve(&mut session).await,
            Err(end) => end,
        };
        state.registry.unregister(&user, conn_id);
        state.bus.unsubscribe(&user);
        state.metrics.connections.dec();
        if self.sio.is_some() {
            // Under the transport it ends on: an upgrade moved it to `websocket`.
            self.ws.count_closed(&state.metrics);
        }
        end
    }

    /// Sends `connected` and the initial catch-up.
    pub(super) async fn start(
        &mut self,
        session: &mut Session,
        last_seq: Option<i64>,
    ) -> Result<(), End> {
        let state = self.state.clone();
        if cfg!(feature = "fault-injection") && !state.config.fault_catch_up_delay.is_zero() {
            tokio::time::sleep(state.config.fault_catch_up_delay).await;
        }
        let us = state
            .reads
            .user_state(&session.user)
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
            user_id: session.user.to_string(),
            node_id: cfg.node_id.clone(),
            session_id: uuid::Uuid::new_v4(),
            latest_seq: us.latest_seq,
            unread_count: us.unread_count,
            version: us.version,
            seen_seq: us.seen_seq,
            resume_from: start.resume_from,
            token_expires_at: session.token_expires_at,
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
        self.queue_message(&connected);
        match start.resync {
            Some(why) => {
                let reason = match why {
                    cursor::Resync::CursorAhead => ResyncReason::CursorAhead,
                    cursor::Resync::GapTooLarge => ResyncReason::GapTooLarge,
                };
                self.resync(session, reason, start.last).await?;
            }
            None => {
                // The client holds everything up to its cursor: that is its delivered watermark.
                session.cursor.advance_to(start.last);
                session.conn.set_delivered(start.last);
            }
        }
        if session.cursor.last() >= us.latest_seq {
            // Nothing to fetch: seqs are gapless and `latest_seq` was read after subscribing,
            // so anything newer arrives session (a gap there is filled from the store). This
            // saves the catch-up query for every fresh or up-to-date connect.
            let frame = to_text(&ServerMessage::Batch {
                notifications: Vec::new(),
                complete: true,
                unread_count: Some(us.unread_count),
                version: Some(us.version),
            });
            return self.send_raw(frame, Some(&session.conn)).await;
        }
        self.catch_up(
            session,
            Some((us.unread_count, us.version)),
            true,
            us.latest_seq,
        )
        .await
    }

    pub(super) async fn resync(
        &mut self,
        session: &mut Session,
        reason: ResyncReason,
        latest: i64,
    ) -> Result<(), End> {
        let frame = to_text(&ServerMessage::Resync {
            reason,
            latest_seq: latest,
        });
        self.send_raw(frame, Some(&session.conn)).await?;
        self.advance(session, latest);
        Ok(())
    }

    /// The socket wrote everything up to `seq` on its own (catch-up, sync, resync).
    pub(super) fn advance(&self, session: &mut Session, seq: i64) {
        session.cursor.advance_to(seq);
        self.delivered(session, seq);
    }

    /// Records `seq` as delivered (for the reconcile loop and the user's delivery watermark).
    pub(super) fn delivered(&self, session: &Session, seq: i64) {
        if seq > session.conn.delivered() {
            session.conn.set_delivered(seq);
            self.state.tracker.record(&session.user, seq);
        }
    }

    /// Sends everything after `session.last_seq` in pages. With `always`, the final (possibly
    /// empty) page is sent even when there is nothing to send, so the client sees the end of
    /// the initial catch-up.
    ///
    /// `through` is the user's latest seq, read before the pages: every seq up to it had
    /// committed then, so one the complete catch-up did not return was deleted (by the user or
    /// the retention purge) and is skipped explicitly — the cursor moves to `through`, and the
    /// next live notification follows without a gap read.
    pub(super) async fn catch_up(
        &mut self,
        session: &mut Session,
        counts: Option<(i64, i64)>,
        always: bool,
        through: i64,
    ) -> Result<(), End> {
        let state = self.state.clone();
        let page = i64::from(state.config.batch_page_size);
        loop {
            let rows = state
                .reads
                .after_seq(&session.user, session.cursor.last(), page)
                .await
                .map_err(|e| store_end("after_seq", e))?;
            let complete = (rows.len() as i64) < page;
            let last = rows.last().map(|n| n.seq);
            if !rows.is_empty() || (complete && always) {
                let n = rows.len() as u64;
                let frame = to_text(&ServerMessage::Batch {
                    notifications: rows,
                    complete,
                    unread_count: counts.map(|c| c.0),
                    version: counts.map(|c| c.1),
                });
                self.send_raw(frame, Some(&session.conn)).await?;
                state
                    .metrics
                    .deliveries
                    .with_label_values(&["catch_up"])
                    .inc_by(n);
            }
            if let Some(seq) = last {
                self.advance(session, seq);
            }
            if complete {
                if through > session.cursor.last() {
                    self.advance(session, through);
                }
                return Ok(());
            }
        }
    }
}
