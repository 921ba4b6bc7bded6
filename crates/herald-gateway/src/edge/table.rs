//! Per-client-address limits: open HTTP connections, open sockets and WebSocket handshakes
//! per second, per node.
//!
//! Each address has one entry while it holds a connection or a socket, or its handshake
//! bucket is not yet full again; an entry that says nothing a fresh one would not is
//! forgotten. The table is bounded: past [`AddrTable::new`]'s capacity, idle entries are
//! swept, and if none can go, a new address is refused (overflow policy: refuse the newcomer,
//! keep the counts of those already in). Exempt addresses (monitoring, a customer's NAT, the
//! project's own load tests) are not tracked at all.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use herald_core::rate::{Rate, TokenBucket};

use super::addr::{canonical, Cidrs};

const SHARDS: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The address holds its maximum of HTTP connections.
    HttpConnections,
    /// The address holds its maximum of sockets.
    Sockets,
    /// The address opened sockets faster than its handshake rate; retry after this long.
    Handshakes(Duration),
    /// The table holds its maximum of addresses, all in use.
    TableFull,
}

#[derive(Debug, Clone, Copy)]
pub struct AddrLimitsConfig {
    pub max_http_connections: u32,
    pub max_sockets: u32,
    pub handshakes: Rate,
    /// Addresses tracked at most (over all shards).
    pub capacity: usize,
}

struct Entry {
    http: u32,
    sockets: u32,
    handshakes: TokenBucket,
}

pub struct AddrTable {
    shards: Vec<Mutex<HashMap<IpAddr, Entry>>>,
    exempt: Cidrs,
    cfg: AddrLimitsConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Http,
    Socket,
}

/// A held HTTP connection or socket of one address; released on drop.
pub struct AddrSlot {
    table: Arc<AddrTable>,
    ip: IpAddr,
    kind: Kind,
}

impl Drop for AddrSlot {
    fn drop(&mut self) {
        self.table.release(self.ip, self.kind);
    }
}

impl AddrTable {
    pub fn new(cfg: AddrLimitsConfig, exempt: Cidrs) -> Arc<AddrTable> {
        Arc::new(AddrTable {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            exempt,
            cfg,
        })
    }

    fn shard(&self, ip: &IpAddr) -> MutexGuard<'_, HashMap<IpAddr, Entry>> {
        let mix = |octets: &[u8]| {
            octets
                .iter()
                .fold(0usize, |a, b| a.wrapping_mul(31) ^ usize::from(*b))
        };
        let idx = match ip {
            IpAddr::V4(v4) => mix(&v4.octets()),
            IpAddr::V6(v6) => mix(&v6.octets()),
        } % SHARDS;
        self.shards[idx]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn is_exempt(&self, ip: &IpAddr) -> bool {
        self.exempt.contains(ip)
    }

    /// Holds one HTTP connection of `ip`; `Ok(None)` for an exempt address.
    pub fn open_http(self: &Arc<Self>, ip: IpAddr) -> Result<Option<AddrSlot>, Refusal> {
        self.open(ip, Kind::Http, Instant::now())
    }

    /// Takes a handshake token and holds one socket of `ip`; `Ok(None)` when exempt.
    pub fn open_socket(self: &Arc<Self>, ip: IpAddr) -> Result<Option<AddrSlot>, Refusal> {
        self.open(ip, Kind::Socket, Instant::now())
    }

    fn open(
        self: &Arc<Self>,
        ip: IpAddr,
        kind: Kind,
        now: Instant,
    ) -> Result<Option<AddrSlot>, Refusal> {
        let ip = canonical(ip);
        if self.exempt.contains(&ip) {
            return Ok(None);
        }
        let per_shard = self.cfg.capacity.div_ceil(SHARDS).max(1);
        let mut shard = self.shard(&ip);
        if !shard.contains_key(&ip) && shard.len() >= per_shard {
            let rate = self.cfg.handshakes;
            shard.retain(|_, e| e.http > 0 || e.sockets > 0 || !e.handshakes.is_full(&rate, now));
            if shard.len() >= per_shard {
                return Err(Refusal::TableFull);
            }
        }
        let rate = self.cfg.handshakes;
        let e = shard.entry(ip).or_insert_with(|| Entry {
            http: 0,
            sockets: 0,
            handshakes: TokenBucket::full(&rate, now),
        });
        match kind {
            Kind::Http => {
                if e.http >= self.cfg.max_http_connections {
                    return Err(Refusal::HttpConnections);
                }
                e.http += 1;
            }
            Kind::Socket => {
                if e.sockets >= self.cfg.max_sockets {
                    return Err(Refusal::Sockets);
                }
                e.handshakes.take(&rate, now).map_err(Refusal::Handshakes)?;
                e.sockets += 1;
            }
        }
        Ok(Some(AddrSlot {
            table: self.clone(),
            ip,
            kind,
        }))
    }

    fn release(&self, ip: IpAddr, kind: Kind) {
        let now = Instant::now();
        let mut shard = self.shard(&ip);
        let Some(e) = shard.get_mut(&ip) else {
            return;
        };
        match kind {
            Kind::Http => e.http = e.http.saturating_sub(1),
            Kind::Socket => e.sockets = e.sockets.saturating_sub(1),
        }
        if e.http == 0 && e.sockets == 0 && e.handshakes.is_full(&self.cfg.handshakes, now) {
            shard.remove(&ip);
        }
    }

    /// Addresses tracked now (for metrics and tests).
    pub fn tracked(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .len()
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(capacity: usize) -> Arc<AddrTable> {
        AddrTable::new(
            AddrLimitsConfig {
                max_http_connections: 2,
                max_sockets: 3,
                handshakes: Rate::new(1, 2),
                capacity,
            },
            Cidrs::parse(&["127.0.0.0/8"]).expect("cidrs"),
        )
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn counts_per_address_and_releases_on_drop() {
        let t = table(1000);
        let a = ip("203.0.113.1");
        let c1 = t.open_http(a).expect("first");
        let _c2 = t.open_http(a).expect("second");
        assert_eq!(t.open_http(a).err(), Some(Refusal::HttpConnections));
        // Another address is not affected.
        assert!(t.open_http(ip("203.0.113.2")).is_ok());
        drop(c1);
        assert!(
            t.open_http(a).is_ok(),
            "a released connection frees its slot"
        );
        // Exempt addresses are not tracked.
        for _ in 0..10 {
            assert!(t.open_http(ip("127.0.0.9")).expect("exempt").is_none());
        }
        assert!(t
            .open_http(ip("::ffff:127.0.0.9"))
            .expect("mapped exempt")
            .is_none());
    }

    #[test]
    fn handshakes_are_rate_limited_and_sockets_capped() {
        let t = table(1000);
        let a = ip("198.51.100.1");
        let s1 = t.open_socket(a).expect("1");
        let s2 = t.open_socket(a).expect("2");
        // Burst of 2 spent: the third handshake must wait about a second.
        match t.open_socket(a) {
            Err(Refusal::Handshakes(wait)) => assert!(wait <= Duration::from_secs(1)),
            other => panic!(
                "expected a handshake refusal, got {:?}",
                other.map(|s| s.is_some())
            ),
        }
        // Closing sockets does not give handshakes back: the entry (and its bucket) stays.
        drop((s1, s2));
        assert!(matches!(t.open_socket(a), Err(Refusal::Handshakes(_))));
        assert_eq!(t.tracked(), 1);
    }

    #[test]
    fn a_full_table_sweeps_idle_entries_then_refuses_newcomers() {
        let t = table(SHARDS); // one entry per shard
        let held: Vec<_> = (0..64u8)
            .filter_map(|i| t.open_http(IpAddr::from([198, 18, 0, i])).ok().flatten())
            .collect();
        assert!(
            held.len() <= SHARDS,
            "at most one address per shard: {}",
            held.len()
        );
        assert!(!held.is_empty());
        drop(held);
        assert_eq!(
            t.tracked(),
            0,
            "released HTTP entries with full buckets are forgotten"
        );
    }
}
