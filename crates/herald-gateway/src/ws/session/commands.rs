//! The client's commands and their `ack` / `error` answers.

use super::*;

impl Socket {
    pub(super) async fn error(
        &mut self,
        session: &Session,
        rid: Option<Rid>,
        code: ErrorCode,
        message: String,
    ) -> Result<(), End> {
        let frame = to_text(&ServerMessage::Error { rid, code, message });
        self.send_raw(frame, Some(&session.conn)).await
    }

    pub(super) async fn ack(
        &mut self,
        session: &Session,
        rid: Option<Rid>,
        result: AckResult,
    ) -> Result<(), End> {
        let frame = to_text(&ServerMessage::Ack { rid, result });
        self.send_raw(frame, Some(&session.conn)).await
    }

    pub(super) async fn command(
        &mut self,
        session: &mut Session,
        cmd: ClientMessage,
    ) -> Result<(), End> {
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
                match state.store.user_state(&session.user).await {
                    Ok(us) => Ok(AckResult::UnreadCount(UnreadCount {
                        unread_count: us.unread_count,
                        latest_seq: us.latest_seq,
                        version: us.version,
                    })),
                    Err(e) => Err(store_error(e)),
                }
            }
            ClientMessage::MarkRead { id, .. } => match state.mark_read(&session.user, id).await {
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
                    match state.mark_all_read(&session.user, up_to_seq).await {
                        Ok(r) => Ok(AckResult::MarkAllRead(r)),
                        Err(e) => Err(store_error(e)),
                    }
                }
            }
            ClientMessage::Seen { seq, .. } => match state.mark_seen(&session.user, seq).await {
                Ok(Ok(r)) => Ok(AckResult::Seen(r)),
                Ok(Err(refused)) => Err((ErrorCode::InvalidMessage, refused.message())),
                Err(e) => Err(store_error(e)),
            },
            ClientMessage::Inbox {
                action,
                ids,
                filter,
                up_to_seq,
                ..
            } => {
                let req = herald_protocol::inbox::BulkRequest {
                    action,
                    ids,
                    filter,
                    up_to_seq,
                };
                match herald_core::inbox::validate_bulk(req) {
                    Err(e) => Err((ErrorCode::InvalidMessage, e.to_string())),
                    Ok((action, target)) => {
                        match state.inbox_apply(&session.user, action, target).await {
                            Ok(r) => Ok(AckResult::Inbox(r)),
                            Err(e) => Err(store_error(e)),
                        }
                    }
                }
            }
            ClientMessage::Refresh { token, .. } => match refreshed(&state, &token).await {
                Ok(v)
                    if *v.user_id == *session.user
                        && state
                            .registry
                            .revocations
                            .is_revoked(&session.user, v.issued_at) =>
                {
                    Err((
                        ErrorCode::TokenRevoked,
                        crate::auth::TokenError::Revoked.to_string(),
                    ))
                }
                Ok(v) if *v.user_id == *session.user => {
                    session.conn.set_issued_at(v.issued_at);
                    // A revocation recorded between the check above and now missed the new
                    // `iat`: the socket now runs on a revoked token.
                    if state
                        .registry
                        .revocations
                        .is_revoked(&session.user, v.issued_at)
                    {
                        return Err(revoked_end());
                    }
                    session.set_token(&state.config, v.expires_at);
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
            Ok(r) => self.ack(session, rid, r).await,
            Err((code, message)) => self.error(session, rid, code, message).await,
        }
    }
}

/// Verifies a refresh token, fetching the JWKS first if it names an unknown `kid`.
async fn refreshed(
    state: &crate::state::AppState,
    token: &str,
) -> Result<crate::auth::VerifiedToken, crate::auth::TokenError> {
    if state.verifier.needs_refresh(token) {
        state.verifier.refresh_keys().await;
    }
    state.verifier.verify(token)
}
