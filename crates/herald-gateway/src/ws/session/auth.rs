//! Phase 1: the token from the upgrade header, or a first `auth` message within the
//! timeout.

use super::*;

impl Socket {
    /// Phase 1: the token from the header, or a first `auth` message within the timeout.
    pub(super) async fn authenticate(
        &mut self,
        auth: Auth,
        query_last_seq: Option<i64>,
    ) -> Result<(VerifiedToken, Option<i64>), End> {
        if self.sio.is_some() {
            return Box::pin(self.authenticate_sio(auth)).await;
        }
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
                            if self.state.verifier.needs_refresh(&token) {
                                self.state.verifier.refresh_keys().await;
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
}
