//! Herald's wire contract: every type that crosses a process boundary.
//!
//! * [`ws`] — WebSocket client commands and server events (JSON text frames).
//! * [`http`] — HTTP request and response bodies.
//! * [`error`] — error codes shared by HTTP responses and WebSocket `error` events.
//! * [`close`] — WebSocket close codes, split into terminal and reconnect ranges.
//! * [`bus`] — messages between gateway nodes over Redis pub/sub.
//!
//! This is the only crate that derives `Serialize`/`Deserialize` for the outside world;
//! `docs/protocol.md` documents exactly these types.

pub mod bus;
pub mod close;
pub mod error;
pub mod http;
pub mod notification;
pub mod ws;

pub use close::CloseCode;
pub use error::{ErrorBody, ErrorCode};
pub use notification::{Broadcast, Notification};
