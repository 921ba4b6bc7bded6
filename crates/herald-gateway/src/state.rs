//! What every handler and socket task shares.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use herald_bus::Bus;
use herald_store::Store;
use tokio_util::sync::CancellationToken;

use crate::auth::TokenVerifier;
use crate::config::Config;
use crate::delivery::DeliveryTracker;
use crate::edge::Edge;
use crate::metrics::Metrics;
use crate::publisher::Publisher;
use crate::read_coalescer::ReadCoalescer;
use crate::registry::Registry;

pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    pub bus: Bus,
    pub registry: Arc<Registry>,
    pub verifier: TokenVerifier,
    pub metrics: Arc<Metrics>,
    pub tracker: DeliveryTracker,
    pub publisher: Publisher,
    /// `user_state` and catch-up page reads, batched across concurrent sockets.
    pub reads: ReadCoalescer,
    /// Cancelled when the node starts draining (SIGTERM or [`crate::startup::NodeHandle::drain`]).
    pub drain: CancellationToken,
    /// Per-client and per-key limits (`crate::edge`).
    pub edge: Edge,
    /// The dependencies' last check, for readiness (`crate::health`).
    pub health: crate::health::Health,
    /// The Socket.IO long-polling sessions by Engine.IO `sid` (`crate::ws::poll`).
    pub polls: Arc<crate::ws::poll::Sessions>,
    open_sockets: Arc<AtomicUsize>,
    conn_ids: AtomicU64,
}

/// Counts a socket from upgrade to task end (authenticated or not).
pub struct SocketGuard(Arc<AtomicUsize>);

impl Drop for SocketGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What a node's state is built from (`startup.rs` makes each part).
pub struct Parts {
    pub config: Arc<Config>,
    pub store: Store,
    pub bus: Bus,
    pub registry: Arc<Registry>,
    pub verifier: TokenVerifier,
    pub metrics: Arc<Metrics>,
    pub tracker: DeliveryTracker,
    pub publisher: Publisher,
    pub reads: ReadCoalescer,
}

impl AppState {
    pub fn new(parts: Parts) -> AppState {
        let Parts {
            config,
            store,
            bus,
            registry,
            verifier,
            metrics,
            tracker,
            publisher,
            reads,
        } = parts;
        AppState {
            edge: Edge::new(&config.edge),
            health: crate::health::Health::default(),
            config,
            store,
            bus,
            registry,
            verifier,
            metrics,
            tracker,
            publisher,
            reads,
            drain: CancellationToken::new(),
            polls: Arc::default(),
            open_sockets: Arc::new(AtomicUsize::new(0)),
            conn_ids: AtomicU64::new(1),
        }
    }

    /// Verifies a user token and checks it against the in-memory revocation cut-offs (no
    /// query): what every header-token and HTTP-API check needs.
    pub fn verify_user(
        &self,
        token: &str,
    ) -> Result<crate::auth::VerifiedToken, crate::auth::TokenError> {
        let v = self.verifier.verify(token)?;
        if self
            .registry
            .revocations
            .is_revoked(&v.user_id, v.issued_at)
        {
            return Err(crate::auth::TokenError::Revoked);
        }
        Ok(v)
    }

    pub fn is_draining(&self) -> bool {
        self.drain.is_cancelled()
    }

    pub fn open_sockets(&self) -> usize {
        self.open_sockets.load(Ordering::Relaxed)
    }

    pub fn socket_opened(&self) -> SocketGuard {
        self.open_sockets.fetch_add(1, Ordering::Relaxed);
        SocketGuard(self.open_sockets.clone())
    }

    pub fn next_conn_id(&self) -> u64 {
        self.conn_ids.fetch_add(1, Ordering::Relaxed)
    }
}
