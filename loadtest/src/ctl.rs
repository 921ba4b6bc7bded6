//! Coordinator ⇄ worker control protocol: one JSON object per line, commands on the worker's
//! stdin, events on its stdout. Also the histogram wire form used to merge workers' results.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Sent as the first line to a worker: what it owns.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerSpec {
    pub shard: usize,
    pub user_prefix: String,
    /// Users `[user_start, user_end)` belong to this worker.
    pub user_start: usize,
    pub user_end: usize,
    pub sockets_per_user: usize,
    /// `ws://host:port/path` targets; socket `j` of user `i` goes to `targets[(i + j) % len]`.
    pub targets: Vec<String>,
    /// Loopback source addresses this worker binds its sockets to (round robin).
    pub source_ips: Vec<String>,
    pub jwt_secret: String,
    #[serde(default)]
    pub jwt_audience: Option<String>,
    #[serde(default)]
    pub jwt_issuer: Option<String>,
    pub token_ttl_secs: u64,
    pub connect_concurrency: usize,
    pub read_buffer: usize,
    pub progress_ms: u64,
    /// Wire protocol of the targets.
    #[serde(default)]
    pub protocol: Protocol,
    /// Socket.IO namespace (with `Protocol::Socketio`).
    #[serde(default)]
    pub sio_namespace: String,
}

/// Which server the harness talks to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// Herald: `/v1/ws`, header auth, `POST /v1/notifications`.
    #[default]
    Herald,
    /// Socket.IO v4 (Engine.IO v4, websocket transport), e.g. loadtest/baselines/socketio:
    /// `auth.token` at the namespace connect, events `notification` / `global_notification`,
    /// `POST /notifications` with `{recipient, type, title, body, data}`.
    Socketio,
    /// Herald's own Socket.IO endpoint (`/socket.io/`, namespace `/notifications`, `auth.token`):
    /// the Socket.IO wire with Herald's seq (duplicates and gaps by seq, recovery by `pid` and
    /// `offset` on reconnect) and Herald's HTTP API (`POST /v1/notifications`).
    HeraldSio,
}

impl Protocol {
    /// The sockets speak Socket.IO (Engine.IO v4 over a websocket).
    pub fn socketio_wire(self) -> bool {
        matches!(self, Protocol::Socketio | Protocol::HeraldSio)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Cmd {
    /// Open every socket; answered by `Phase { name: "connect" }` once all are caught up
    /// (catch-up `complete: true`) or `deadline_ms` passed.
    Connect {
        deadline_ms: u64,
    },
    /// Clear latency histograms and event counters (not the per-socket seq cursors).
    Reset,
    /// Drop every socket at once (no close handshake); answered by `Phase { name: "drop" }`.
    Drop,
    /// Reconnect every socket with `?last_seq=` resume; answered by `Phase { name: "resume" }`.
    Resume {
        deadline_ms: u64,
    },
    /// Wait until each socket of user `user_start + k` holds `expected[k]` new notifications,
    /// or `grace_ms` passed; answered by `Verified`.
    Verify {
        expected: Vec<u32>,
        grace_ms: u64,
    },
    /// Wait until each socket has received `count` broadcasts, or `grace_ms` passed.
    WaitBroadcast {
        count: u32,
        grace_ms: u64,
    },
    Report,
    Quit,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Progress {
    pub sockets: u64,
    pub ready: u64,
    pub handshakes: u64,
    pub connect_errors: u64,
    pub unexpected_closes: u64,
    pub received: u64,
    pub globals: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "ev", rename_all = "snake_case")]
pub enum Ev {
    Progress {
        shard: usize,
        p: Progress,
    },
    Phase {
        shard: usize,
        name: String,
        /// Sockets ready (caught up) at the end of the phase.
        ready: u64,
        sockets: u64,
        /// Unix ns of the last completed handshake (`connected` received) and of the last
        /// socket to finish its catch-up, in this phase.
        last_handshake_ns: u64,
        last_ready_ns: u64,
        handshakes: u64,
    },
    Verified {
        shard: usize,
        /// Sum over sockets of notifications expected but not held after the grace period.
        lost: u64,
        /// Sockets missing at least one notification.
        sockets_missing: u64,
        received: u64,
        duplicates: u64,
        gaps: u64,
        /// Unix ns of the last notification / broadcast received.
        last_ns: u64,
    },
    Report {
        shard: usize,
        r: WorkerReport,
    },
    Error {
        shard: usize,
        message: String,
    },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WorkerReport {
    pub counters: Progress,
    pub duplicates: u64,
    pub gaps: u64,
    pub resyncs: u64,
    pub catchup_received: u64,
    pub close_codes: BTreeMap<String, u64>,
    pub connect_error_kinds: BTreeMap<String, u64>,
    /// End-to-end latency of live `notification` events, µs.
    pub latency_us: HistWire,
    /// Publish-start → catch-up delivery (storm), µs.
    pub catchup_latency_us: HistWire,
    /// Broadcast POST start → `global_notification` received, µs.
    pub broadcast_latency_us: HistWire,
    /// TCP connect start → `connected` received, µs.
    pub handshake_us: HistWire,
    /// Live latency by publish time: (window = unix ms / `WINDOW_MS`, counts), in window
    /// order. Shows whether a tail is spread out or comes from a few stalls (a heartbeat
    /// wave, a checkpoint). Pairs, not a map: `Ev` is internally tagged, and serde cannot
    /// read integer map keys back through it.
    #[serde(default)]
    pub live_windows: Vec<(u64, Window)>,
    pub rss_kib: u64,
}

/// Width of a latency timeline window.
pub const WINDOW_MS: u64 = 250;

/// Live deliveries published in one timeline window.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Window {
    pub n: u64,
    pub over_5ms: u64,
    pub over_10ms: u64,
    pub max_us: u64,
}

impl Window {
    pub fn record(&mut self, us: u64) {
        self.n += 1;
        self.over_5ms += u64::from(us > 5_000);
        self.over_10ms += u64::from(us > 10_000);
        self.max_us = self.max_us.max(us);
    }

    pub fn merge(&mut self, o: &Window) {
        self.n += o.n;
        self.over_5ms += o.over_5ms;
        self.over_10ms += o.over_10ms;
        self.max_us = self.max_us.max(o.max_us);
    }
}

/// A histogram as `[value, count]` pairs (one per recorded bucket).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HistWire(pub Vec<[u64; 2]>);

pub fn new_hist() -> Histogram<u64> {
    // 1 µs .. 1 hour, 3 significant digits.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("histogram bounds")
}

impl HistWire {
    pub fn from_hist(h: &Histogram<u64>) -> HistWire {
        HistWire(
            h.iter_recorded()
                .map(|v| [v.value_iterated_to(), v.count_at_value()])
                .collect(),
        )
    }

    pub fn merge_into(&self, h: &mut Histogram<u64>) {
        for [v, n] in &self.0 {
            let _ = h.record_n((*v).clamp(1, 3_600_000_000), *n);
        }
    }
}

/// Percentile summary in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

pub fn summarize(h: &Histogram<u64>) -> LatencySummary {
    if h.is_empty() {
        return LatencySummary::default();
    }
    let ms = |v: u64| (v as f64) / 1000.0;
    LatencySummary {
        count: h.len(),
        mean_ms: h.mean() / 1000.0,
        p50_ms: ms(h.value_at_quantile(0.50)),
        p90_ms: ms(h.value_at_quantile(0.90)),
        p95_ms: ms(h.value_at_quantile(0.95)),
        p99_ms: ms(h.value_at_quantile(0.99)),
        p999_ms: ms(h.value_at_quantile(0.999)),
        max_ms: ms(h.max()),
    }
}

impl std::fmt::Display for LatencySummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "n={} p50={:.2}ms p95={:.2}ms p99={:.2}ms p99.9={:.2}ms max={:.2}ms",
            self.count, self.p50_ms, self.p95_ms, self.p99_ms, self.p999_ms, self.max_ms
        )
    }
}

pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_with_a_timeline_survives_the_tagged_wire() {
        let mut w = Window::default();
        for us in [800, 6_000, 12_000] {
            w.record(us);
        }
        let ev = Ev::Report {
            shard: 3,
            r: WorkerReport {
                live_windows: vec![(7_184_663_337, w)],
                ..WorkerReport::default()
            },
        };
        let line = serde_json::to_string(&ev).unwrap();
        match serde_json::from_str::<Ev>(&line).unwrap() {
            Ev::Report { shard: 3, r } => {
                let [(k, w)] = r.live_windows[..] else {
                    panic!("{:?}", r.live_windows)
                };
                assert_eq!(k, 7_184_663_337);
                assert_eq!((w.n, w.over_5ms, w.over_10ms, w.max_us), (3, 2, 1, 12_000));
            }
            other => panic!("{other:?}"),
        }
    }
}
