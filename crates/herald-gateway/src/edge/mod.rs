//! Limits at every door: what a client, signed in or not, may hold and how fast it may ask.
//!
//! | limit | scope | setting | beyond it |
//! |---|---|---|---|
//! | HTTP connections | node | `HERALD_MAX_HTTP_CONNECTIONS` | 503 at accept |
//! | HTTP connections | client address, node | `HERALD_MAX_HTTP_CONNECTIONS_PER_ADDR` | 429 at accept |
//! | whole request (head and body) | request | `HERALD_REQUEST_TIMEOUT_MS` | 408, connection closed |
//! | sockets | client address, node | `HERALD_MAX_SOCKETS_PER_ADDR` | 429 before the upgrade |
//! | handshakes per second | client address, node | `HERALD_HANDSHAKES_PER_ADDR_PER_SEC` / `_BURST` | 429 before the upgrade |
//! | unauthenticated sockets | node | `HERALD_MAX_PREAUTH_SOCKETS` | the oldest is evicted (4102) |
//! | user API requests | user, node | `HERALD_USER_API_RATE_PER_SEC` / `_BURST` | 429 `rate_limited` |
//! | publishes | service key, node | `HERALD_PUBLISH_RATE_PER_SEC` / `_BURST` | 429 `rate_limited` |
//! | broadcasts | service key, node | `HERALD_BROADCAST_RATE_PER_SEC` / `_BURST` | 429 `rate_limited` |
//!
//! Per-address limits skip the addresses in `HERALD_LIMIT_EXEMPT`. The client address comes
//! from [`addr`] (PROXY protocol, or `X-Forwarded-For` from `HERALD_TRUSTED_PROXIES`).

pub mod addr;
pub mod conn;
pub mod http;
pub mod keyed;
pub mod preauth;
pub mod proxy;
pub mod table;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use herald_core::rate::Rate;

use self::addr::Cidrs;
use self::conn::HttpConnections;
use self::keyed::KeyedLimiter;
use self::preauth::PreAuthBudget;
use self::table::{AddrLimitsConfig, AddrTable};

/// Keys a per-user or per-service-key table tracks at most (see [`keyed`]).
const KEYED_CAPACITY: usize = 100_000;

/// The edge settings (part of [`crate::config::Config`]).
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    pub proxy_protocol: bool,
    pub trusted_proxies: Cidrs,
    pub limit_exempt: Cidrs,
    pub max_http_connections: usize,
    pub max_http_connections_per_addr: u32,
    pub request_timeout: Duration,
    pub max_sockets_per_addr: u32,
    pub handshakes_per_addr: Rate,
    pub max_preauth_sockets: usize,
    /// Client addresses tracked at most.
    pub max_tracked_addrs: usize,
    pub user_api: Rate,
    pub publish: Rate,
    pub broadcast: Rate,
}

/// The edge's shared state: counts, budgets and buckets.
pub struct Edge {
    pub connections: Arc<HttpConnections>,
    pub addrs: Arc<AddrTable>,
    pub preauth: Arc<PreAuthBudget>,
    pub user_api: KeyedLimiter<String>,
    /// By service key index.
    pub publish: KeyedLimiter<usize>,
    pub broadcast: KeyedLimiter<usize>,
    pub trusted_proxies: Cidrs,
}

impl Edge {
    pub fn new(cfg: &EdgeConfig) -> Edge {
        Edge {
            connections: HttpConnections::new(cfg.max_http_connections),
            addrs: AddrTable::new(
                AddrLimitsConfig {
                    max_http_connections: cfg.max_http_connections_per_addr,
                    max_sockets: cfg.max_sockets_per_addr,
                    handshakes: cfg.handshakes_per_addr,
                    capacity: cfg.max_tracked_addrs,
                },
                cfg.limit_exempt.clone(),
            ),
            preauth: PreAuthBudget::new(cfg.max_preauth_sockets),
            user_api: KeyedLimiter::new(cfg.user_api, KEYED_CAPACITY),
            publish: KeyedLimiter::new(cfg.publish, KEYED_CAPACITY),
            broadcast: KeyedLimiter::new(cfg.broadcast, KEYED_CAPACITY),
            trusted_proxies: cfg.trusted_proxies.clone(),
        }
    }

    /// The client address of a request from `peer` (see [`addr::client_ip`]).
    pub fn client_ip(
        &self,
        peer: Option<std::net::SocketAddr>,
        headers: &actix_web::http::header::HeaderMap,
    ) -> Option<IpAddr> {
        peer.map(|p| addr::client_ip(p.ip(), headers, &self.trusted_proxies))
    }
}
