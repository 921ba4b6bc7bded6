//! Herald's wire contract: every type that crosses a process boundary.
//!
//! * [`ws`] — WebSocket client commands and server events (JSON text frames).
//! * [`http`] — HTTP request and response bodies.
//! * [`inbox`] — the inbox lifecycle's requests, answers and counts.
//! * [`push`] — Web Push subscriptions and the VAPID public key.
//! * [`error`] — error codes shared by HTTP responses and WebSocket `error` events.
//! * [`close`] — WebSocket close codes, split into terminal and reconnect ranges.
//! * [`bus`] — messages between gateway nodes over Redis pub/sub.
//! * [`socketio`] — Engine.IO v4 / Socket.IO v5 packets and the Socket.IO rendering of events.
//!
//! This is the only crate that derives `Serialize`/`Deserialize` for the outside world;
//! `docs/protocol.md` documents exactly these types.

pub mod bus;
pub mod close;
pub mod email;
pub mod error;
pub mod http;
pub mod inbox;
pub mod notification;
pub mod prefs;
pub mod push;
pub mod socketio;
pub mod ws;

/// The protocol version `docs/protocol.md` documents (its "**Protocol version X.Y.**" line and
/// changelog); the OpenAPI document's `info.version`. Bump both together.
pub const PROTOCOL_VERSION: &str = "1.5";

pub use close::CloseCode;
pub use error::{ErrorBody, ErrorCode};
pub use notification::{Broadcast, Notification};

#[cfg(test)]
mod tests {
    #[test]
    fn protocol_version_matches_docs_protocol_md() {
        let doc = include_str!("../../../docs/protocol.md");
        let line = format!("**Protocol version {}.**", super::PROTOCOL_VERSION);
        assert!(doc.contains(&line), "docs/protocol.md must say {line}");
    }
}
