//! The local Redis Cluster of `scripts/redis-cluster.sh` (`HERALD_TEST_REDIS_CLUSTER`, a
//! comma-separated seed list): its masters, killing one (SIGKILL), waiting for its replica to
//! take over, and bringing the killed node back. Works through `redis-cli`, so it needs no
//! Redis client library.

use std::process::Command;
use std::time::Duration;

use crate::eventually;

/// The seed list (`HERALD_TEST_REDIS_CLUSTER`), when the cluster tests should run.
pub fn seeds() -> Option<Vec<String>> {
    let raw = std::env::var("HERALD_TEST_REDIS_CLUSTER").ok()?;
    let seeds: Vec<String> = raw
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    (!seeds.is_empty()).then_some(seeds)
}

fn cli(addr: &str, args: &[&str]) -> Option<String> {
    let (host, port) = addr.rsplit_once(':')?;
    let out = Command::new("redis-cli")
        .args(["-h", host, "-p", port])
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Masters that serve slots and are not failed, as seen by the first seed that answers.
pub fn masters(seeds: &[String]) -> Vec<String> {
    for seed in seeds {
        let Some(nodes) = cli(seed, &["cluster", "nodes"]) else {
            continue;
        };
        if nodes.trim().is_empty() || nodes.starts_with("ERR") {
            continue;
        }
        let mut out: Vec<String> = nodes
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let flags = f.get(2)?;
                let healthy = flags.contains("master")
                    && !flags.contains("fail")
                    && f.get(7) == Some(&"connected")
                    && f.len() > 8;
                healthy.then(|| f[1].split('@').next().unwrap_or(f[1]).to_owned())
            })
            .collect();
        out.sort();
        return out;
    }
    Vec::new()
}

/// Whether every seed answers and says `cluster_state:ok`, with three healthy masters.
pub fn healthy(seeds: &[String]) -> bool {
    seeds
        .iter()
        .all(|s| cli(s, &["cluster", "info"]).is_some_and(|i| i.contains("cluster_state:ok")))
        && masters(seeds).len() == 3
}

/// Waits (bounded) until [`healthy`].
pub async fn wait_healthy(seeds: &[String], bound: Duration) -> bool {
    eventually(bound, || async { healthy(seeds) }).await
}

/// A node this test SIGKILLed; [`Killed::restart`] brings it back (it rejoins as a replica).
pub struct Killed {
    pub addr: String,
    pub pid: u32,
    conf: String,
}

/// SIGKILLs the master at `addr` (its pid from `INFO server`).
pub fn kill(addr: &str) -> Killed {
    let info = cli(addr, &["info", "server"]).expect("INFO server");
    let pid: u32 = info
        .lines()
        .find_map(|l| l.trim().strip_prefix("process_id:"))
        .and_then(|p| p.trim().parse().ok())
        .expect("process_id in INFO server");
    let dir = cli(addr, &["config", "get", "dir"]).expect("CONFIG GET dir");
    let dir = dir.lines().nth(1).expect("dir value").trim().to_owned();
    let status = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -KILL {pid}");
    Killed {
        addr: addr.to_owned(),
        pid,
        conf: format!("{dir}/redis.conf"),
    }
}

impl Killed {
    /// Whether a replica has taken over: `addr` is no longer among the healthy masters and
    /// there are three again.
    pub fn replaced(&self, seeds: &[String]) -> bool {
        let live: Vec<String> = seeds.iter().filter(|s| **s != self.addr).cloned().collect();
        let m = masters(&live);
        m.len() == 3 && !m.contains(&self.addr)
    }

    /// Starts the node again from its configuration (it daemonizes and rejoins the cluster).
    pub fn restart(&self) {
        let status = Command::new("redis-server")
            .arg(&self.conf)
            .status()
            .expect("redis-server");
        assert!(status.success(), "redis-server {}", self.conf);
    }
}

/// The slot of `key` (`CLUSTER KEYSLOT`).
pub fn keyslot(seeds: &[String], key: &str) -> u16 {
    seeds
        .iter()
        .find_map(|s| cli(s, &["cluster", "keyslot", key]))
        .and_then(|o| o.trim().parse().ok())
        .expect("CLUSTER KEYSLOT")
}

/// The healthy master that serves `slot`, and its node id.
pub fn owner(seeds: &[String], slot: u16) -> (String, String) {
    for seed in seeds {
        let Some(nodes) = cli(seed, &["cluster", "nodes"]) else {
            continue;
        };
        for l in nodes.lines() {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 9 || !f[2].contains("master") || f[2].contains("fail") {
                continue;
            }
            let serves = f[8..].iter().any(|r| {
                let (a, b) = r.split_once('-').unwrap_or((r, r));
                matches!((a.parse::<u16>(), b.parse::<u16>()), (Ok(a), Ok(b)) if a <= slot && slot <= b)
            });
            if serves {
                let addr = f[1].split('@').next().unwrap_or(f[1]).to_owned();
                return (addr, f[0].to_owned());
            }
        }
    }
    panic!("no master serves slot {slot}");
}

/// The node id of the node at `addr`.
pub fn node_id(addr: &str) -> String {
    cli(addr, &["cluster", "myid"])
        .expect("CLUSTER MYID")
        .trim()
        .to_owned()
}

/// Moves an empty `slot` (sharded pub/sub channels hold no keys) to the master at `to`:
/// IMPORTING on the target, MIGRATING on the source, then NODE on both and every other master.
pub fn move_slot(seeds: &[String], slot: u16, to: &str) {
    let (from, from_id) = owner(seeds, slot);
    let to_id = node_id(to);
    let s = slot.to_string();
    let ok = |addr: &str, args: &[&str]| {
        let out = cli(addr, args).unwrap_or_default();
        assert!(out.trim() == "OK", "{addr} {args:?}: {out}");
    };
    ok(to, &["cluster", "setslot", &s, "importing", &from_id]);
    ok(&from, &["cluster", "setslot", &s, "migrating", &to_id]);
    ok(to, &["cluster", "setslot", &s, "node", &to_id]);
    ok(&from, &["cluster", "setslot", &s, "node", &to_id]);
    for m in masters(seeds) {
        if m != from && m != to {
            let _ = cli(&m, &["cluster", "setslot", &s, "node", &to_id]);
        }
    }
}
