//! WebSocket close codes. 4000–4099 are terminal: reconnecting with the same inputs fails
//! again, so a client stops and surfaces the error (or first obtains a new token).
//! 4100–4199 ask the client to reconnect (with backoff) and resume from its last seq.

/// Every close code the gateway sends, with its reason text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseCode {
    /// 1000: normal closure (the client asked to close).
    Normal,
    /// 1002: a WebSocket framing error (bad opcode, unmasked frame, fragmented control frame…).
    ProtocolError,
    /// 1003: the client sent a binary frame; the protocol is JSON text only.
    UnsupportedData,
    /// 1007: a text message that is not valid UTF-8.
    InvalidPayload,
    /// 1009: a frame or a reassembled message exceeded the maximum message size.
    MessageTooBig,
    /// 4000: protocol violation (e.g. first message was not `auth`, malformed `auth`).
    BadRequest,
    /// 4001: missing, malformed, badly signed or otherwise invalid token.
    Unauthorized,
    /// 4003: a `refresh` token for a different user.
    Forbidden,
    /// 4005: the user already holds the maximum number of sockets.
    TooManyConnections,
    /// 4006: the user's sessions were revoked (`POST /v1/users/{id}/revoke`) and this socket's
    /// token was issued before the cut-off. Terminal: the client needs a new token.
    Revoked,
    /// 4100: the client did not read fast enough; its outbound queue overflowed.
    SlowConsumer,
    /// 4101: nothing received from the client (not even a pong) within the idle timeout.
    IdleTimeout,
    /// 4102: no `auth` message within the authentication timeout.
    AuthTimeout,
    /// 4103: the token expired and was not refreshed.
    TokenExpired,
    /// 4104: more messages than the per-connection rate limit allows.
    RateLimited,
    /// 4105: the node is draining (shutdown or rolling restart); reconnect elsewhere.
    Draining,
    /// 4106: an internal error on the node; reconnect with backoff.
    InternalError,
}

impl CloseCode {
    pub const ALL: [CloseCode; 17] = [
        CloseCode::Normal,
        CloseCode::ProtocolError,
        CloseCode::UnsupportedData,
        CloseCode::InvalidPayload,
        CloseCode::MessageTooBig,
        CloseCode::BadRequest,
        CloseCode::Unauthorized,
        CloseCode::Forbidden,
        CloseCode::TooManyConnections,
        CloseCode::Revoked,
        CloseCode::SlowConsumer,
        CloseCode::IdleTimeout,
        CloseCode::AuthTimeout,
        CloseCode::TokenExpired,
        CloseCode::RateLimited,
        CloseCode::Draining,
        CloseCode::InternalError,
    ];

    pub fn code(self) -> u16 {
        match self {
            CloseCode::Normal => 1000,
            CloseCode::ProtocolError => 1002,
            CloseCode::UnsupportedData => 1003,
            CloseCode::InvalidPayload => 1007,
            CloseCode::MessageTooBig => 1009,
            CloseCode::BadRequest => 4000,
            CloseCode::Unauthorized => 4001,
            CloseCode::Forbidden => 4003,
            CloseCode::TooManyConnections => 4005,
            CloseCode::Revoked => 4006,
            CloseCode::SlowConsumer => 4100,
            CloseCode::IdleTimeout => 4101,
            CloseCode::AuthTimeout => 4102,
            CloseCode::TokenExpired => 4103,
            CloseCode::RateLimited => 4104,
            CloseCode::Draining => 4105,
            CloseCode::InternalError => 4106,
        }
    }

    /// The short machine-readable reason sent with the code.
    pub fn reason(self) -> &'static str {
        match self {
            CloseCode::Normal => "normal",
            CloseCode::ProtocolError => "protocol_error",
            CloseCode::UnsupportedData => "unsupported_data",
            CloseCode::InvalidPayload => "invalid_payload",
            CloseCode::MessageTooBig => "message_too_big",
            CloseCode::BadRequest => "bad_request",
            CloseCode::Unauthorized => "unauthorized",
            CloseCode::Forbidden => "forbidden",
            CloseCode::TooManyConnections => "too_many_connections",
            CloseCode::Revoked => "revoked",
            CloseCode::SlowConsumer => "slow_consumer",
            CloseCode::IdleTimeout => "idle_timeout",
            CloseCode::AuthTimeout => "auth_timeout",
            CloseCode::TokenExpired => "token_expired",
            CloseCode::RateLimited => "rate_limited",
            CloseCode::Draining => "draining",
            CloseCode::InternalError => "internal_error",
        }
    }

    /// Whether a client should reconnect (with backoff) after this code.
    pub fn should_reconnect(self) -> bool {
        matches!(self.code(), 4100..=4199)
    }

    pub fn from_code(code: u16) -> Option<CloseCode> {
        CloseCode::ALL.into_iter().find(|c| c.code() == code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for c in CloseCode::ALL {
            assert!(seen.insert(c.code()), "duplicate code {}", c.code());
            assert_eq!(CloseCode::from_code(c.code()), Some(c));
            assert!(
                c.reason().len() <= 123,
                "close reason must fit a control frame"
            );
        }
    }

    #[test]
    fn reconnect_range_is_4100s() {
        assert!(CloseCode::SlowConsumer.should_reconnect());
        assert!(CloseCode::Draining.should_reconnect());
        assert!(!CloseCode::Unauthorized.should_reconnect());
        assert!(!CloseCode::Revoked.should_reconnect());
        assert!(!CloseCode::MessageTooBig.should_reconnect());
    }
}
