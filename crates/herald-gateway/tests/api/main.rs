//! Gateway integration tests: real nodes, real PostgreSQL, real Redis, real WebSockets.
//! One binary with modules keeps link time down.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test harness: a panic is a failed test

mod helpers;

mod abuse;
mod bus_trust;
mod cluster;
mod contract;
mod delivery;
mod email;
mod fallback;
mod faults;
mod http_api;
mod inbox;
mod jwks;
mod openapi;
mod preferences;
mod push;
mod read_sync;
mod refusals;
mod resilience;
mod revocation;
mod schema;
mod seen;
mod socketio;
mod tls;
