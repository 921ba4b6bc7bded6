//! Publishing on the cluster: SPUBLISH routed by slot to the master that owns it, pipelined
//! per master, with bounded retries on redirections and outages; and the slot map both the
//! publisher and the subscriber side read.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures_util::future::join_all;
use redis::aio::MultiplexedConnection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::resp;
use super::slots::SlotMap;

/// Most rounds one publish takes (a round: route by the current map, send, collect what
/// must be retried).
pub(crate) const MAX_ROUNDS: u32 = 12;
/// Bound on one publish, all rounds together.
pub(crate) const PUBLISH_BUDGET: Duration = Duration::from_secs(3);
/// Bound on asking one node for the slot map.
const TOPOLOGY_TIMEOUT: Duration = Duration::from_secs(1);
/// Bound on connecting a publish connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Bound on one pipeline round trip.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// A refresh asked for within this long after the last one reuses its result.
const REFRESH_COALESCE: Duration = Duration::from_millis(100);
/// Most seed addresses (`HERALD_REDIS_CLUSTER_NODES` refuses more).
pub const MAX_SEEDS: usize = 64;

/// The current slot map, shared by the publisher and the cluster actor.
pub(crate) struct Topology {
    seeds: Vec<String>,
    map: RwLock<Arc<SlotMap>>,
    /// When the last refresh finished; held across the refresh so refreshes do not pile up.
    last: tokio::sync::Mutex<Option<Instant>>,
}

impl Topology {
    pub(crate) fn new(seeds: Vec<String>) -> Topology {
        Topology {
            seeds,
            map: RwLock::new(Arc::new(SlotMap::default())),
            last: tokio::sync::Mutex::new(None),
        }
    }

    pub(crate) fn current(&self) -> Arc<SlotMap> {
        self.map
            .read()
            .map(|m| m.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Asks the known masters, then the seeds, for `CLUSTER SLOTS`; the first complete map
    /// wins (else the first answer at all). Coalesced: callers within 100 ms of a refresh get
    /// its result.
    pub(crate) async fn refresh(&self) -> Result<Arc<SlotMap>, String> {
        let mut last = self.last.lock().await;
        if last.is_some_and(|t| t.elapsed() < REFRESH_COALESCE) {
            return Ok(self.current());
        }
        let current = self.current();
        let mut candidates: Vec<String> = current.masters().to_vec();
        candidates.extend(
            self.seeds
                .iter()
                .filter(|s| !current.masters().contains(s))
                .cloned(),
        );
        let mut partial: Option<SlotMap> = None;
        let mut errors = Vec::new();
        for addr in &candidates {
            match fetch_slots(addr).await {
                Ok(map) if map.is_complete() => {
                    partial = Some(map);
                    break;
                }
                Ok(map) => {
                    partial.get_or_insert(map);
                }
                Err(e) => errors.push(e),
            }
        }
        *last = Some(Instant::now());
        match partial {
            Some(map) => {
                let map = Arc::new(map);
                match self.map.write() {
                    Ok(mut m) => *m = map.clone(),
                    Err(p) => *p.into_inner() = map.clone(),
                }
                Ok(map)
            }
            None => Err(format!(
                "no cluster node answered CLUSTER SLOTS: {}",
                errors.join("; ")
            )),
        }
    }
}

/// `CLUSTER SLOTS` from one node over a short-lived connection.
async fn fetch_slots(addr: &str) -> Result<SlotMap, String> {
    let host = addr
        .rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or(addr)
        .to_owned();
    let fut = async {
        let mut s = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let mut cmd = Vec::new();
        resp::encode(&mut cmd, &["CLUSTER", "SLOTS"]);
        s.write_all(&cmd)
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        let mut buf = Vec::with_capacity(4096);
        loop {
            match resp::parse(&buf, &resp::TOPOLOGY).map_err(|e| format!("{addr}: {e}"))? {
                Some((resp::Value::Error(e), _)) => return Err(format!("{addr}: {e}")),
                Some((v, _)) => {
                    return SlotMap::from_cluster_slots(&v, &host)
                        .map_err(|e| format!("{addr}: {e}"))
                }
                None => {
                    // Bounded by the reply limits: at most 16,384 ranges of small entries.
                    if buf.len() > (8 << 20) {
                        return Err(format!("{addr}: CLUSTER SLOTS reply too large"));
                    }
                    if s.read_buf(&mut buf)
                        .await
                        .map_err(|e| format!("{addr}: {e}"))?
                        == 0
                    {
                        return Err(format!("{addr}: closed"));
                    }
                }
            }
        }
    };
    match tokio::time::timeout(TOPOLOGY_TIMEOUT, fut).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "{addr}: CLUSTER SLOTS timed out after {TOPOLOGY_TIMEOUT:?}"
        )),
    }
}

/// Whether a server error means "ask again, elsewhere or later".
fn retryable(code: Option<&str>) -> bool {
    matches!(
        code,
        Some("MOVED" | "ASK" | "TRYAGAIN" | "CLUSTERDOWN" | "LOADING" | "MASTERDOWN")
    )
}

/// SPUBLISH by slot over one multiplexed connection per master.
pub(crate) struct Publisher {
    pub(crate) topo: Arc<Topology>,
    conns: Mutex<HashMap<String, MultiplexedConnection>>,
}

impl Publisher {
    pub(crate) fn new(topo: Arc<Topology>) -> Publisher {
        Publisher {
            topo,
            conns: Mutex::new(HashMap::new()),
        }
    }

    fn cached(&self, addr: &str) -> Option<MultiplexedConnection> {
        crate::lock(&self.conns).get(addr).cloned()
    }

    fn forget(&self, addr: &str) {
        crate::lock(&self.conns).remove(addr);
    }

    async fn conn(&self, addr: &str) -> Result<MultiplexedConnection, String> {
        if let Some(c) = self.cached(addr) {
            return Ok(c);
        }
        let client =
            redis::Client::open(format!("redis://{addr}/")).map_err(|e| format!("{addr}: {e}"))?;
        let cfg = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        let c = client
            .get_multiplexed_async_connection_with_config(&cfg)
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        crate::lock(&self.conns).insert(addr.to_owned(), c.clone());
        Ok(c)
    }

    /// One PING to a master (for readiness checks).
    pub(crate) async fn ping(&self) -> Result<(), String> {
        let mut map = self.topo.current();
        if map.masters().is_empty() {
            map = self.topo.refresh().await?;
        }
        let addr = map
            .masters()
            .first()
            .cloned()
            .ok_or("no cluster master known")?;
        let mut c = self.conn(&addr).await?;
        match redis::cmd("PING").query_async::<String>(&mut c).await {
            Ok(_) => Ok(()),
            Err(e) => {
                self.forget(&addr);
                Err(format!("{addr}: PING: {e}"))
            }
        }
    }

    /// Publishes every `(channel, payload)` with SPUBLISH on the master that owns its slot;
    /// returns the sum of the receiver counts. On MOVED, ASK, TRYAGAIN, CLUSTERDOWN or a
    /// broken connection it refreshes the slot map and retries what failed: at most
    /// [`MAX_ROUNDS`] rounds within [`PUBLISH_BUDGET`]. A retried pipeline can publish a
    /// message twice; receivers drop the second copy by its seq (or version).
    pub(crate) async fn publish(&self, items: Vec<(String, Vec<u8>)>) -> Result<u64, String> {
        let deadline = Instant::now() + PUBLISH_BUDGET;
        let mut left: Vec<(String, Vec<u8>)> = items;
        let mut receivers = 0u64;
        let mut round = 0u32;
        let mut last_error = String::new();
        loop {
            round += 1;
            let mut map = self.topo.current();
            if map.masters().is_empty() {
                map = self.topo.refresh().await.unwrap_or(map);
            }
            let mut groups: HashMap<String, Vec<(String, Vec<u8>)>> = HashMap::new();
            let mut retry: Vec<(String, Vec<u8>)> = Vec::new();
            for (channel, payload) in left {
                match map.owner_of(&channel) {
                    Some(addr) => groups
                        .entry(addr.to_owned())
                        .or_default()
                        .push((channel, payload)),
                    None => retry.push((channel, payload)),
                }
            }
            if !retry.is_empty() {
                last_error = format!("{} channels in slots no master serves", retry.len());
            }
            let results = join_all(
                groups
                    .into_iter()
                    .map(|(addr, group)| self.send(addr, group)),
            )
            .await;
            let mut fatal: Option<String> = None;
            for r in results {
                receivers += r.receivers;
                retry.extend(r.retry);
                if let Some(e) = r.error {
                    last_error = e;
                }
                if r.fatal.is_some() {
                    fatal = r.fatal;
                }
            }
            if let Some(e) = fatal {
                return Err(e);
            }
            if retry.is_empty() {
                return Ok(receivers);
            }
            let now = Instant::now();
            if round >= MAX_ROUNDS || now >= deadline {
                return Err(format!(
                    "SPUBLISH: {} messages not published after {round} rounds: {last_error}",
                    retry.len()
                ));
            }
            if let Err(e) = self.topo.refresh().await {
                last_error = e;
            }
            let pause =
                Duration::from_millis(25u64 << round.min(4)).min(Duration::from_millis(250));
            tokio::time::sleep_until((Instant::now() + pause).min(deadline)).await;
            left = retry;
        }
    }

    /// One pipeline of SPUBLISH to one master.
    async fn send(&self, addr: String, group: Vec<(String, Vec<u8>)>) -> Sent {
        let mut out = Sent::default();
        let mut conn = match self.conn(&addr).await {
            Ok(c) => c,
            Err(e) => {
                out.error = Some(e);
                out.retry = group;
                return out;
            }
        };
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for (channel, payload) in &group {
            pipe.cmd("SPUBLISH").arg(channel).arg(payload);
        }
        match pipe
            .query_async::<Vec<redis::RedisResult<u64>>>(&mut conn)
            .await
        {
            Ok(replies) if replies.len() == group.len() => {
                for (reply, item) in replies.into_iter().zip(group) {
                    match reply {
                        Ok(n) => out.receivers += n,
                        Err(e) if retryable(e.code()) => {
                            out.error = Some(format!("{addr}: {e}"));
                            out.retry.push(item);
                        }
                        Err(e) => {
                            out.fatal = Some(format!("{addr}: SPUBLISH: {e}"));
                        }
                    }
                }
            }
            Ok(replies) => {
                out.error = Some(format!(
                    "{addr}: {} replies for {} commands",
                    replies.len(),
                    group.len()
                ));
                self.forget(&addr);
                out.retry = group;
            }
            Err(e) => {
                out.error = Some(format!("{addr}: {e}"));
                self.forget(&addr);
                out.retry = group;
            }
        }
        out
    }
}

#[derive(Default)]
struct Sent {
    receivers: u64,
    retry: Vec<(String, Vec<u8>)>,
    error: Option<String>,
    fatal: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirections_and_outages_are_retried_other_errors_are_not() {
        for code in [
            "MOVED",
            "ASK",
            "TRYAGAIN",
            "CLUSTERDOWN",
            "LOADING",
            "MASTERDOWN",
        ] {
            assert!(retryable(Some(code)), "{code}");
        }
        assert!(!retryable(Some("NOPERM")));
        assert!(!retryable(Some("ERR")));
        assert!(!retryable(None));
    }
}
