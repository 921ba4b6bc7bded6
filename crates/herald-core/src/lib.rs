//! Herald's domain: validated inputs and the seam between the bus and the gateway.
//! No IO lives here.

pub mod cursor;
pub mod fallback;
pub mod inbox;
pub mod rate;
pub mod validate;

use std::sync::Arc;

use herald_protocol::bus::{BusMessage, Reject};
use herald_protocol::Broadcast;

pub use validate::{
    validate_broadcast, validate_publish, validate_user_id, NewNotification, ValidationError,
};

/// Where a bus hands what it receives: implemented by the gateway's local socket registry.
/// Calls must not block: implementations enqueue and return.
pub trait FanoutSink: Send + Sync + 'static {
    /// A message on the channel of `user_id` (notification or read event).
    fn user_event(&self, user_id: &str, msg: BusMessage);
    /// A broadcast to every local socket.
    fn broadcast(&self, broadcast: Arc<Broadcast>);
    /// The bus lost messages (reconnected, or a probe failed): every local socket must
    /// catch up from the store.
    fn resync_all(&self);
    /// A payload received on `channel` was dropped for `reason` (count it; log sparingly).
    fn rejected(&self, reason: Reject, channel: &str);
    /// `user_id`'s sessions were revoked somewhere in the cluster: read the cut-off from the
    /// store and close the sockets it refuses. Must not block.
    fn revoked(&self, user_id: &str);
}
