//! Process-level chaos harness for Herald.
//!
//! Everything here runs as real processes on 127.0.0.1: the release `herald` binary (2–3
//! nodes), a private `redis-server`, `haproxy` in front, and PostgreSQL (a database of its own
//! per test, `herald_chaos_<uuid>`). Clients are real WebSockets (one tokio task each) that
//! authenticate with a header, resume with `?last_seq=N`, reconnect with full-jitter
//! exponential backoff (base 100 ms, cap 2 s) on any close, de-duplicate by id and record
//! exactly what they hold.
//!
//! Every child process is killed when its guard drops (also on panic) and additionally gets
//! `PR_SET_PDEATHSIG`, so a killed test process does not leave nodes behind. Every wait is
//! bounded.
//!
//! One file per part of the suite, all re-exported here so tests `use herald_chaos::*`:
//! `settings` (keys, timings, variant, paths), `process` (the binary, the suite lock, ports,
//! child processes), `cluster` (Redis, PostgreSQL, nodes, HAProxy), `fault_proxy` (cutting
//! PostgreSQL off), `publisher` (tokens, publish load), `clients` (WebSocket clients) and
//! `verify` (verification and figures).

mod clients;
mod cluster;
mod fault_proxy;
mod process;
mod publisher;
mod settings;
mod verify;

pub use clients::*;
pub use cluster::*;
pub use fault_proxy::*;
pub use process::*;
pub use publisher::*;
pub use settings::*;
pub use verify::*;
