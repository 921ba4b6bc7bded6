//! The Herald gateway node: HTTP API, WebSocket sessions, local socket registry,
//! configuration and metrics. `main.rs` only parses the command line and calls in here.

pub mod auth;
pub mod batching;
pub mod config;
pub mod delivery;
pub mod edge;
pub mod error;
pub mod fallback;
pub mod fds;
pub mod health;
pub mod inbox;
pub mod jwks;
pub mod metrics;
pub mod openapi;
pub mod publisher;
pub mod purge;
pub mod read_coalescer;
pub mod read_state;
pub mod reconcile;
pub mod registry;
pub mod revocation;
pub mod routes;
pub mod seen;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod ws;

pub use config::Config;
pub use startup::{Application, NodeHandle};
