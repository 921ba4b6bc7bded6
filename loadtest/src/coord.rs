//! The coordinator: spawns workers, drives the scenario, publishes over HTTP, merges results.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use hdrhistogram::Histogram;
use herald_protocol::http::{BroadcastRequest, PublishRequest, PublishResponse};
use serde_json::{json, Value};
use tokio::sync::{mpsc, Semaphore};

use crate::ctl::{
    new_hist, now_ns, summarize, Cmd, Ev, LatencySummary, Progress, Protocol, Window, WorkerReport,
    WorkerSpec, WINDOW_MS,
};
use crate::{Command, Common, PublishArgs};

/// What the progress line shows.
struct Status {
    phase: Mutex<String>,
    progress: Mutex<Vec<Progress>>,
    published: AtomicU64,
    accepted: AtomicU64,
    started: Instant,
}

impl Status {
    fn set_phase(&self, p: &str) {
        *self.phase.lock().unwrap() = p.to_string();
    }

    fn line(&self) -> String {
        let ps = self.progress.lock().unwrap();
        let mut t = Progress::default();
        for p in ps.iter() {
            t.sockets += p.sockets;
            t.ready += p.ready;
            t.handshakes += p.handshakes;
            t.connect_errors += p.connect_errors;
            t.unexpected_closes += p.unexpected_closes;
            t.received += p.received;
            t.globals += p.globals;
        }
        format!(
            "[{:6.1}s] {:<10} ready {}/{} handshakes {} errors {} closes {} | published {} accepted {} received {} broadcasts {}",
            self.started.elapsed().as_secs_f64(),
            self.phase.lock().unwrap(),
            t.ready,
            t.sockets,
            t.handshakes,
            t.connect_errors,
            t.unexpected_closes,
            self.published.load(Relaxed),
            self.accepted.load(Relaxed),
            t.received,
            t.globals
        )
    }
}

struct Workers {
    stdins: Vec<Mutex<ChildStdin>>,
    children: Vec<Child>,
    rx: mpsc::UnboundedReceiver<Ev>,
    specs: Vec<WorkerSpec>,
}

impl Drop for Workers {
    fn drop(&mut self) {
        for c in &mut self.children {
            if let Ok(None) = c.try_wait() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

impl Workers {
    fn spawn(c: &Common, prefix: &str, status: Arc<Status>) -> Result<Workers> {
        let sockets = c.users * c.sockets_per_user;
        let k = c
            .workers
            .unwrap_or_else(|| sockets.div_ceil(15_000))
            .clamp(1, 240)
            .min(c.users.max(1));
        if sockets / k > 19_000 {
            bail!("{} sockets over {k} workers is more than 19,000 per process (20,000 fd limit): raise --workers", sockets);
        }
        let exe = std::env::current_exe().context("current_exe")?;
        let (tx, rx) = mpsc::unbounded_channel();
        *status.progress.lock().unwrap() = vec![Progress::default(); k];
        let mut stdins = Vec::new();
        let mut children = Vec::new();
        let mut specs = Vec::new();
        for w in 0..k {
            let spec = WorkerSpec {
                shard: w,
                user_prefix: prefix.to_string(),
                user_start: c.users * w / k,
                user_end: c.users * (w + 1) / k,
                sockets_per_user: c.sockets_per_user.max(1),
                targets: match c.protocol {
                    Protocol::Herald => c.targets.clone(),
                    Protocol::Socketio | Protocol::HeraldSio => {
                        c.targets.iter().map(|t| crate::sio::ws_url(t)).collect()
                    }
                },
                source_ips: (1..=c.ips_per_worker.clamp(1, 254))
                    .map(|i| format!("127.0.{}.{}", 10 + w, i))
                    .collect(),
                jwt_secret: c.jwt_secret.clone(),
                jwt_audience: c.jwt_audience.clone(),
                jwt_issuer: c.jwt_issuer.clone(),
                token_ttl_secs: (c.timeout as u64) + 3600,
                connect_concurrency: c.connect_concurrency,
                read_buffer: c.read_buffer,
                progress_ms: (c.progress * 1000.0) as u64,
                protocol: c.protocol,
                sio_namespace: c.sio_namespace.clone(),
            };
            let mut child = std::process::Command::new(&exe)
                .arg("worker")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .context("spawn worker")?;
            let mut stdin = child.stdin.take().unwrap();
            writeln!(stdin, "{}", serde_json::to_string(&spec)?)?;
            let stdout = child.stdout.take().unwrap();
            let tx = tx.clone();
            let st = status.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    match serde_json::from_str::<Ev>(&line) {
                        Ok(Ev::Progress { shard, p }) => {
                            if let Some(slot) = st.progress.lock().unwrap().get_mut(shard) {
                                *slot = p;
                            }
                        }
                        Ok(ev) => {
                            let _ = tx.send(ev);
                        }
                        Err(e) => {
                            // Fatal rather than skipped: the coordinator would otherwise wait
                            // for an answer that never comes.
                            let head: String = line.chars().take(200).collect();
                            let _ = tx.send(Ev::Error {
                                shard: w,
                                message: format!("undecodable event {head:?}…: {e}"),
                            });
                        }
                    }
                }
                let _ = tx.send(Ev::Error {
                    shard: w,
                    message: "worker exited".into(),
                });
            });
            stdins.push(Mutex::new(stdin));
            children.push(child);
            specs.push(spec);
        }
        Ok(Workers {
            stdins,
            children,
            rx,
            specs,
        })
    }

    fn send_all(&self, cmd: &Cmd) -> Result<()> {
        let line = serde_json::to_string(cmd)?;
        for s in &self.stdins {
            writeln!(s.lock().unwrap(), "{line}")?;
        }
        Ok(())
    }

    fn send(&self, w: usize, cmd: &Cmd) -> Result<()> {
        writeln!(
            self.stdins[w].lock().unwrap(),
            "{}",
            serde_json::to_string(cmd)?
        )?;
        Ok(())
    }

    /// Waits for one event of the wanted kind from every worker.
    async fn collect(&mut self, kind: &str, quitting: bool) -> Result<Vec<Ev>> {
        let n = self.stdins.len();
        let mut got: Vec<Option<Ev>> = (0..n).map(|_| None).collect();
        while got.iter().any(|g| g.is_none()) {
            let ev = self
                .rx
                .recv()
                .await
                .ok_or_else(|| anyhow!("workers gone"))?;
            let (shard, k) = match &ev {
                Ev::Phase { shard, .. } => (*shard, "phase"),
                Ev::Verified { shard, .. } => (*shard, "verified"),
                Ev::Report { shard, .. } => (*shard, "report"),
                Ev::Error { shard, message } => {
                    if quitting {
                        continue;
                    }
                    bail!("worker {shard}: {message}");
                }
                Ev::Progress { .. } => continue,
            };
            if k == kind && shard < n {
                got[shard] = Some(ev);
            }
        }
        Ok(got.into_iter().map(|g| g.unwrap()).collect())
    }

    async fn quit(mut self) {
        let _ = self.send_all(&Cmd::Quit);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if self
                .children
                .iter_mut()
                .all(|c| matches!(c.try_wait(), Ok(Some(_))))
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn reports(&mut self) -> Result<Vec<WorkerReport>> {
        self.send_all(&Cmd::Report)?;
        Ok(self
            .collect("report", false)
            .await?
            .into_iter()
            .filter_map(|e| match e {
                Ev::Report { r, .. } => Some(r),
                _ => None,
            })
            .collect())
    }
}

/// Sums of the phase events.
#[derive(Debug, Default, Clone, serde::Serialize)]
struct PhaseSum {
    ready: u64,
    sockets: u64,
    handshakes: u64,
    last_handshake_ns: u64,
    last_ready_ns: u64,
}

fn phase_sum(evs: &[Ev]) -> PhaseSum {
    let mut s = PhaseSum::default();
    for e in evs {
        if let Ev::Phase {
            ready,
            sockets,
            handshakes,
            last_handshake_ns,
            last_ready_ns,
            ..
        } = e
        {
            s.ready += ready;
            s.sockets += sockets;
            s.handshakes += handshakes;
            s.last_handshake_ns = s.last_handshake_ns.max(*last_handshake_ns);
            s.last_ready_ns = s.last_ready_ns.max(*last_ready_ns);
        }
    }
    s
}

#[derive(Debug, Default, Clone, serde::Serialize)]
struct VerifySum {
    lost: u64,
    sockets_missing: u64,
    received: u64,
    duplicates: u64,
    gaps: u64,
    last_ns: u64,
}

fn verify_sum(evs: &[Ev]) -> VerifySum {
    let mut s = VerifySum::default();
    for e in evs {
        if let Ev::Verified {
            lost,
            sockets_missing,
            received,
            duplicates,
            gaps,
            last_ns,
            ..
        } = e
        {
            s.lost += lost;
            s.sockets_missing += sockets_missing;
            s.received += received;
            s.duplicates += duplicates;
            s.gaps += gaps;
            s.last_ns = s.last_ns.max(*last_ns);
        }
    }
    s
}

/// Merged worker reports.
struct Merged {
    counters: Progress,
    duplicates: u64,
    gaps: u64,
    resyncs: u64,
    catchup_received: u64,
    close_codes: BTreeMap<String, u64>,
    connect_error_kinds: BTreeMap<String, u64>,
    live: Histogram<u64>,
    catchup: Histogram<u64>,
    broadcast: Histogram<u64>,
    handshake: Histogram<u64>,
    live_windows: BTreeMap<u64, Window>,
    worker_rss_kib: Vec<u64>,
}

fn merge(rs: &[WorkerReport]) -> Merged {
    let mut m = Merged {
        counters: Progress::default(),
        duplicates: 0,
        gaps: 0,
        resyncs: 0,
        catchup_received: 0,
        close_codes: BTreeMap::new(),
        connect_error_kinds: BTreeMap::new(),
        live: new_hist(),
        catchup: new_hist(),
        broadcast: new_hist(),
        handshake: new_hist(),
        live_windows: BTreeMap::new(),
        worker_rss_kib: vec![],
    };
    for r in rs {
        let c = &r.counters;
        m.counters.sockets += c.sockets;
        m.counters.ready += c.ready;
        m.counters.handshakes += c.handshakes;
        m.counters.connect_errors += c.connect_errors;
        m.counters.unexpected_closes += c.unexpected_closes;
        m.counters.received += c.received;
        m.counters.globals += c.globals;
        m.duplicates += r.duplicates;
        m.gaps += r.gaps;
        m.resyncs += r.resyncs;
        m.catchup_received += r.catchup_received;
        for (k, v) in &r.close_codes {
            *m.close_codes.entry(k.clone()).or_insert(0) += v;
        }
        for (k, v) in &r.connect_error_kinds {
            *m.connect_error_kinds.entry(k.clone()).or_insert(0) += v;
        }
        r.latency_us.merge_into(&mut m.live);
        r.catchup_latency_us.merge_into(&mut m.catchup);
        r.broadcast_latency_us.merge_into(&mut m.broadcast);
        r.handshake_us.merge_into(&mut m.handshake);
        for (k, w) in &r.live_windows {
            m.live_windows.entry(*k).or_default().merge(w);
        }
        m.worker_rss_kib.push(r.rss_kib);
    }
    m
}

fn merged_json(m: &Merged) -> Value {
    json!({
        "sockets": m.counters.sockets,
        "ready": m.counters.ready,
        "handshakes": m.counters.handshakes,
        "connect_errors": m.counters.connect_errors,
        "connect_error_kinds": m.connect_error_kinds,
        "unexpected_closes": m.counters.unexpected_closes,
        "close_codes": m.close_codes,
        "received": m.counters.received,
        "catchup_received": m.catchup_received,
        "broadcasts_received": m.counters.globals,
        "duplicates": m.duplicates,
        "gaps": m.gaps,
        "resyncs": m.resyncs,
        "handshake_latency": summarize(&m.handshake),
        "worker_rss_kib": m.worker_rss_kib,
        "worker_rss_kib_per_socket": if m.counters.sockets > 0 {
            m.worker_rss_kib.iter().sum::<u64>() as f64 / m.counters.sockets as f64
        } else { 0.0 },
    })
}

/// HTTP publisher (service key) with per-user accepted counts.
struct Publisher {
    /// One per `--publish-url` node, with its notifications path; calls go round robin.
    nodes: Vec<(crate::http1::Pool, String)>,
    /// The broadcasts path; broadcasts go to the first node.
    bcast_path: String,
    auth: String,
    prefix: String,
    users: usize,
    expected: Vec<AtomicU32>,
    calls: AtomicU64,
    failed_calls: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
    http: Mutex<Histogram<u64>>,
    status: Arc<Status>,
    protocol: Protocol,
}

impl Publisher {
    fn new(
        p: &PublishArgs,
        c: &Common,
        prefix: &str,
        users: usize,
        status: Arc<Status>,
    ) -> Result<Publisher> {
        if p.service_key.is_empty() {
            bail!("--service-key (or HERALD_SERVICE_KEY) is required");
        }
        if c.protocol == Protocol::Socketio && p.recipients_per_publish > 1 {
            bail!("--protocol socketio publishes one recipient per call (the baseline's POST /notifications)");
        }
        // The Herald API lives under /v1; the baseline's at the root.
        let api = match c.protocol {
            Protocol::Herald | Protocol::HeraldSio => "/v1",
            Protocol::Socketio => "",
        };
        let notifications = format!("{api}/notifications");
        let mut nodes = Vec::new();
        let mut bcast_path = String::new();
        for base in p.publish_url.split(',').map(str::trim) {
            if base.is_empty() {
                bail!("--publish-url: empty entry in {:?}", p.publish_url);
            }
            let base = base.trim_end_matches('/');
            let base = base.strip_suffix(notifications.as_str()).unwrap_or(base);
            // http://host:port[/prefix]
            let path_at = base
                .strip_prefix("http://")
                .and_then(|r| r.find('/'))
                .map_or(base.len(), |i| i + "http://".len());
            let (origin, prefix) = base.split_at(path_at);
            let pool = crate::http1::Pool::new(origin)
                .with_context(|| format!("--publish-url {base:?}"))?;
            if nodes.is_empty() {
                bcast_path = format!("{prefix}{api}/broadcasts");
            }
            nodes.push((pool, format!("{prefix}{notifications}")));
        }
        Ok(Publisher {
            nodes,
            bcast_path,
            auth: format!("Bearer {}", p.service_key),
            prefix: prefix.to_string(),
            users,
            expected: (0..users).map(|_| AtomicU32::new(0)).collect(),
            calls: AtomicU64::new(0),
            failed_calls: AtomicU64::new(0),
            errors: Mutex::new(BTreeMap::new()),
            http: Mutex::new(new_hist()),
            status,
            protocol: c.protocol,
        })
    }
}

/// Each publish call's bound, connect included.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

impl Publisher {
    /// Where the next publish goes: round robin over `--publish-url`.
    fn notifications(&self) -> (&crate::http1::Pool, &str) {
        let calls = self.calls.load(Relaxed) as usize;
        let (pool, path) = &self.nodes[calls % self.nodes.len()];
        (pool, path)
    }

    /// Where broadcasts go: the first node.
    fn broadcasts(&self) -> (&crate::http1::Pool, &str) {
        (&self.nodes[0].0, &self.bcast_path)
    }

    /// `POST` a JSON body with the service key.
    async fn post(
        &self,
        (pool, path): (&crate::http1::Pool, &str),
        body: &impl serde::Serialize,
    ) -> Result<crate::http1::Response, String> {
        let body = serde_json::to_vec(body).map_err(|e| format!("encode: {e}"))?;
        pool.post_json(path, &[("authorization", &self.auth)], &body, CALL_TIMEOUT)
            .await
            .map_err(|e| e.key())
    }

    fn fail(&self, why: String) {
        self.failed_calls.fetch_add(1, Relaxed);
        *self.errors.lock().unwrap().entry(why).or_insert(0) += 1;
    }

    async fn publish(&self, first_user: usize, n: usize) {
        if self.protocol == Protocol::Socketio {
            return self.publish_sio(first_user % self.users).await;
        }
        let t = now_ns();
        let start = Instant::now();
        let users: Vec<String> = (0..n.min(self.users))
            .map(|i| format!("{}-{}", self.prefix, (first_user + i) % self.users))
            .collect();
        let (recipient, recipients) = if users.len() == 1 {
            (users.into_iter().next(), None)
        } else {
            (None, Some(users))
        };
        let body = PublishRequest {
            recipient,
            recipients,
            kind: "loadtest.fanout".into(),
            title: "load test".into(),
            body: "herald-loadtest notification".into(),
            link: Some("/loadtest".into()),
            avatar_url: None,
            data: Some(json!({ "t": t })),
            idempotency_key: None,
            priority: None,
            fallback: None,
        };
        self.calls.fetch_add(1, Relaxed);
        self.status.published.fetch_add(1, Relaxed);
        let resp = self.post(self.notifications(), &body).await;
        let resp = match resp {
            Ok(r) => r,
            Err(e) => return self.fail(e),
        };
        if resp.status != 201 {
            return self.fail(format!("status {}", resp.status));
        }
        let Ok(pr) = serde_json::from_slice::<PublishResponse>(&resp.body) else {
            return self.fail("bad response body".into());
        };
        self.http
            .lock()
            .unwrap()
            .saturating_record(start.elapsed().as_micros().max(1) as u64);
        for item in &pr.notifications {
            if let Some(idx) = item
                .user_id
                .rsplit('-')
                .next()
                .and_then(|s| s.parse::<usize>().ok())
            {
                if let Some(e) = self.expected.get(idx) {
                    e.fetch_add(1, Relaxed);
                }
            }
        }
        self.status
            .accepted
            .fetch_add(pr.notifications.len() as u64, Relaxed);
    }

    /// The Socket.IO baseline: `POST /notifications {recipient, type, title, body, data}`,
    /// 201 once the row is inserted (and the emit to `user:<id>` issued).
    async fn publish_sio(&self, user: usize) {
        let t = now_ns();
        let start = Instant::now();
        let body = json!({
            "recipient": format!("{}-{}", self.prefix, user),
            "type": "loadtest.fanout",
            "title": "load test",
            "body": "herald-loadtest notification",
            "link": "/loadtest",
            "data": { "t": t },
        });
        self.calls.fetch_add(1, Relaxed);
        self.status.published.fetch_add(1, Relaxed);
        let resp = self.post(self.notifications(), &body).await;
        let status = match resp {
            Ok(r) => r.status,
            Err(e) => return self.fail(e),
        };
        if status != 201 {
            return self.fail(format!("status {status}"));
        }
        self.http
            .lock()
            .unwrap()
            .saturating_record(start.elapsed().as_micros().max(1) as u64);
        self.expected[user].fetch_add(1, Relaxed);
        self.status.accepted.fetch_add(1, Relaxed);
    }

    fn accepted(&self) -> u64 {
        self.expected.iter().map(|e| e.load(Relaxed) as u64).sum()
    }

    /// Publishes round robin over users at `rate` calls/s (None = as fast as concurrency
    /// allows) until `duration` or `count` calls; returns the elapsed time.
    async fn run(
        self: &Arc<Self>,
        rate: Option<f64>,
        duration: Duration,
        count: u64,
        concurrency: usize,
        per_call: usize,
    ) -> Duration {
        let sem = Arc::new(Semaphore::new(concurrency.max(1)));
        let start = Instant::now();
        let tstart = tokio::time::Instant::now();
        let mut i = 0u64;
        while i < count && start.elapsed() < duration {
            if let Some(r) = rate {
                tokio::time::sleep_until(tstart + Duration::from_secs_f64(i as f64 / r)).await;
            }
            let permit = sem.clone().acquire_owned().await.expect("semaphore");
            let me = self.clone();
            let first = (i as usize * per_call) % self.users;
            tokio::spawn(async move {
                me.publish(first, per_call).await;
                drop(permit);
            });
            i += 1;
        }
        let _ = sem.acquire_many(concurrency.max(1) as u32).await;
        start.elapsed()
    }

    fn expected_for(&self, spec: &WorkerSpec) -> Vec<u32> {
        (spec.user_start..spec.user_end)
            .map(|u| self.expected[u].load(Relaxed))
            .collect()
    }

    fn json(&self, elapsed: Duration) -> Value {
        let accepted = self.accepted();
        json!({
            "calls": self.calls.load(Relaxed),
            "failed_calls": self.failed_calls.load(Relaxed),
            "errors": *self.errors.lock().unwrap(),
            "accepted_notifications": accepted,
            "elapsed_s": elapsed.as_secs_f64(),
            "accepted_per_s": accepted as f64 / elapsed.as_secs_f64().max(1e-9),
            "calls_per_s": self.calls.load(Relaxed) as f64 / elapsed.as_secs_f64().max(1e-9),
            "http_latency": summarize(&self.http.lock().unwrap()),
        })
    }
}

struct Gateways {
    list: Vec<(String, Option<u32>)>,
}

impl Gateways {
    fn find(c: &Common) -> Gateways {
        let list = c
            .targets
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let pid = c.gateway_pids.get(i).copied().or_else(|| {
                    t.strip_prefix("ws://")
                        .and_then(|r| r.split('/').next())
                        .and_then(|hp| hp.rsplit(':').next())
                        .and_then(|p| p.parse::<u16>().ok())
                        .and_then(crate::sys::pid_listening_on)
                });
                (t.clone(), pid)
            })
            .collect();
        Gateways { list }
    }

    fn rss(&self) -> Vec<Option<u64>> {
        self.list
            .iter()
            .map(|(_, p)| p.and_then(crate::sys::rss_kib))
            .collect()
    }
}

fn sockets_per_target(c: &Common) -> Vec<u64> {
    let t = c.targets.len().max(1);
    let mut out = vec![0u64; t];
    for u in 0..c.users {
        for j in 0..c.sockets_per_user.max(1) {
            out[(u + j) % t] += 1;
        }
    }
    out
}

fn secs(ns: u64, since: u64) -> f64 {
    ns.saturating_sub(since) as f64 / 1e9
}

pub fn run(cmd: Command) -> Result<i32> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run_async(cmd))
}

async fn run_async(cmd: Command) -> Result<i32> {
    let (name, common) = match &cmd {
        Command::Idle { common, .. } => ("idle", common.clone()),
        Command::Fanout { common, .. } => ("fanout", common.clone()),
        Command::Broadcast { common, .. } => ("broadcast", common.clone()),
        Command::Storm { common, .. } => ("storm", common.clone()),
        Command::Worker => unreachable!(),
    };
    if common.jwt_secret.len() < 32 {
        bail!("--jwt-secret (or HERALD_JWT_HS256_SECRET) of at least 32 bytes is required");
    }
    if common.targets.is_empty() || common.users == 0 {
        bail!("need at least one target and one user");
    }
    let prefix = common
        .user_prefix
        .clone()
        .unwrap_or_else(|| format!("lt{:08x}", rand::random::<u32>()));
    let started_at = chrono::Utc::now();
    let status = Arc::new(Status {
        phase: Mutex::new("start".into()),
        progress: Mutex::new(vec![]),
        published: AtomicU64::new(0),
        accepted: AtomicU64::new(0),
        started: Instant::now(),
    });
    let printer = {
        let st = status.clone();
        let every = Duration::from_secs_f64(common.progress.max(0.1));
        let tty = std::io::stderr().is_terminal();
        tokio::spawn(async move {
            let mut iv = tokio::time::interval(every);
            iv.tick().await;
            loop {
                iv.tick().await;
                if tty {
                    eprint!("\r\x1b[2K{}", st.line());
                } else {
                    eprintln!("{}", st.line());
                }
            }
        })
    };
    let env = crate::sys::environment();
    let timeout = Duration::from_secs_f64(common.timeout);
    let result =
        tokio::time::timeout(timeout, scenario(&cmd, &common, &prefix, status.clone())).await;
    printer.abort();
    if std::io::stderr().is_terminal() {
        eprintln!();
    }
    let (params, results, failures, summary) = match result {
        Ok(r) => r?,
        Err(_) => bail!("run exceeded --timeout {}s", common.timeout),
    };
    let doc = json!({
        "scenario": name,
        "started_at": started_at.to_rfc3339(),
        "finished_at": chrono::Utc::now().to_rfc3339(),
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "user_prefix": prefix,
        "params": params,
        "environment": env,
        "results": results,
        "checks": {"passed": failures.is_empty(), "failures": failures},
    });
    let out = common.out.clone().unwrap_or_else(|| {
        common.results_dir.join(format!(
            "{name}-{}.json",
            started_at.format("%Y%m%dT%H%M%SZ")
        ))
    });
    if let Some(dir) = out.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        }
    }
    std::fs::write(&out, serde_json::to_string_pretty(&doc)? + "\n")
        .with_context(|| format!("write {}", out.display()))?;
    println!(
        "== herald-loadtest {name} ({} sockets, {} users) ==",
        common.users * common.sockets_per_user,
        common.users
    );
    for l in &summary {
        println!("  {l}");
    }
    if failures.is_empty() {
        println!("  checks: passed");
    } else {
        for f in &failures {
            println!("  CHECK FAILED: {f}");
        }
    }
    println!("  results: {}", out.display());
    Ok(if common.check && !failures.is_empty() {
        3
    } else {
        0
    })
}

type Outcome = (Value, Value, Vec<String>, Vec<String>);

fn lat_line(label: &str, s: &LatencySummary) -> String {
    format!("{label}: {s}")
}

/// The live latency timeline (`WINDOW_MS` windows by publish time, offsets from the first):
/// a JSON array for the results file, and a summary line naming how many windows held a
/// delivery above 10 ms and the worst few, so a tail made of a few stalls shows as such.
fn timeline(windows: &BTreeMap<u64, Window>) -> (Value, Option<String>) {
    let Some(first) = windows.keys().next().copied() else {
        return (json!({"window_ms": WINDOW_MS, "windows": []}), None);
    };
    let at = |k: u64| ((k - first) * WINDOW_MS) as f64 / 1000.0;
    let rows: Vec<Value> = windows
        .iter()
        .map(|(k, w)| {
            json!({"t_s": at(*k), "n": w.n, "over_5ms": w.over_5ms, "over_10ms": w.over_10ms,
                   "max_ms": w.max_us as f64 / 1000.0})
        })
        .collect();
    let slow: u64 = windows.values().map(|w| w.over_10ms).sum();
    let with_slow = windows.values().filter(|w| w.over_10ms > 0).count();
    let mut worst: Vec<(&u64, &Window)> = windows.iter().filter(|(_, w)| w.over_10ms > 0).collect();
    worst.sort_by_key(|(_, w)| std::cmp::Reverse(w.over_10ms));
    let top: Vec<String> = worst
        .iter()
        .take(5)
        .map(|(k, w)| {
            format!(
                "+{:.2}s {}/{} max {:.1}ms",
                at(**k),
                w.over_10ms,
                w.n,
                w.max_us as f64 / 1000.0
            )
        })
        .collect();
    let line = format!(
        "over 10 ms by publish time ({WINDOW_MS} ms windows): {slow} deliveries in {with_slow} of {} windows{}{}",
        windows.len(),
        if top.is_empty() { "" } else { "; worst: " },
        top.join(", ")
    );
    let doc = json!({"window_ms": WINDOW_MS, "start_unix_ms": first * WINDOW_MS, "windows": rows});
    (doc, Some(line))
}

async fn connect_all(
    ws: &mut Workers,
    c: &Common,
    status: &Status,
    failures: &mut Vec<String>,
) -> Result<(PhaseSum, u64)> {
    status.set_phase("connect");
    let t0 = now_ns();
    ws.send_all(&Cmd::Connect {
        deadline_ms: (c.connect_deadline * 1000.0) as u64,
    })?;
    let ph = phase_sum(&ws.collect("phase", false).await?);
    if ph.ready < ph.sockets {
        failures.push(format!(
            "only {}/{} sockets connected and caught up within {}s",
            ph.ready, ph.sockets, c.connect_deadline
        ));
    }
    Ok((ph, t0))
}

async fn scenario(cmd: &Command, c: &Common, prefix: &str, status: Arc<Status>) -> Result<Outcome> {
    let gws = Gateways::find(c);
    let sock_before = crate::sys::sockstat();
    let rss_before = gws.rss();
    let mut ws = Workers::spawn(c, prefix, status.clone())?;
    let mut failures = Vec::new();
    let mut summary = Vec::new();
    let mut params =
        json!({ "common": c, "workers": ws.specs.len(), "sockets": c.users * c.sockets_per_user });
    let (ph, t0) = connect_all(&mut ws, c, &status, &mut failures).await?;
    let connect_s = secs(ph.last_ready_ns, t0);
    // Failed attempts while connecting (each retried with backoff), before any scenario
    // resets the counters: what refused or dropped them.
    let at_connect = merge(&ws.reports().await?);
    summary.push(format!(
        "connected {}/{} sockets in {:.2}s ({:.0}/s) over {} workers; {} failed attempts {:?}",
        ph.ready,
        ph.sockets,
        connect_s,
        ph.ready as f64 / connect_s.max(1e-9),
        ws.specs.len(),
        at_connect.counters.connect_errors,
        at_connect.connect_error_kinds,
    ));
    let mut results = json!({
        "connect": {
            "sockets": ph.sockets, "ready": ph.ready, "seconds": connect_s,
            "per_s": ph.ready as f64 / connect_s.max(1e-9),
            "failed_attempts": at_connect.counters.connect_errors,
            "failed_attempt_kinds": at_connect.connect_error_kinds,
        }
    });
    match cmd {
        Command::Idle { hold, .. } => {
            params["hold_s"] = json!(hold);
            status.set_phase("settle");
            tokio::time::sleep(Duration::from_secs(2)).await;
            let rss_connected = gws.rss();
            let sock_connected = crate::sys::sockstat();
            status.set_phase("hold");
            ws.send_all(&Cmd::Reset)?;
            tokio::time::sleep(Duration::from_secs_f64(*hold)).await;
            let rss_held = gws.rss();
            let per_target = sockets_per_target(c);
            let mut gw = vec![];
            let mut total_delta = 0i64;
            let mut total_socks = 0u64;
            for (i, (t, pid)) in gws.list.iter().enumerate() {
                let b = rss_before[i];
                let a = rss_connected[i];
                let h = rss_held[i];
                let n = per_target[i];
                let per = match (b, a) {
                    (Some(b), Some(a)) if n > 0 => Some((a as f64 - b as f64) / n as f64),
                    _ => None,
                };
                if let (Some(b), Some(a)) = (b, a) {
                    total_delta += a as i64 - b as i64;
                    total_socks += n;
                }
                summary.push(format!(
                    "gateway {t} pid {}: RSS {} → {} KiB (after hold {} KiB) for {n} sockets: {} KiB/conn",
                    pid.map(|p| p.to_string()).unwrap_or("?".into()),
                    b.map(|v| v.to_string()).unwrap_or("?".into()),
                    a.map(|v| v.to_string()).unwrap_or("?".into()),
                    h.map(|v| v.to_string()).unwrap_or("?".into()),
                    per.map(|v| format!("{v:.2}")).unwrap_or("?".into()),
                ));
                gw.push(
                    json!({"target": t, "pid": pid, "sockets": n, "rss_before_kib": b,
                    "rss_connected_kib": a, "rss_after_hold_kib": h, "kib_per_conn": per}),
                );
            }
            let kernel_per = (sock_connected.tcp_mem_kib as f64 - sock_before.tcp_mem_kib as f64)
                / (ph.ready.max(1) as f64);
            summary.push(format!(
                "kernel TCP memory {} → {} KiB ({:.2} KiB per connection, both ends; sockets in use {} → {})",
                sock_before.tcp_mem_kib, sock_connected.tcp_mem_kib, kernel_per,
                sock_before.tcp_inuse, sock_connected.tcp_inuse
            ));
            let reps = ws.reports().await?;
            let m = merge(&reps);
            if m.counters.unexpected_closes > 0 {
                failures.push(format!(
                    "{} unexpected closes during hold: {:?}",
                    m.counters.unexpected_closes, m.close_codes
                ));
            }
            summary.push(format!(
                "hold {hold}s: {} unexpected closes; harness RSS {:.2} KiB/socket",
                m.counters.unexpected_closes,
                m.worker_rss_kib.iter().sum::<u64>() as f64 / m.counters.sockets.max(1) as f64
            ));
            results["gateways"] = json!(gw);
            results["gateway_kib_per_conn"] = json!(if total_socks > 0 {
                Some(total_delta as f64 / total_socks as f64)
            } else {
                None
            });
            results["sockstat_before"] = json!(sock_before);
            results["sockstat_connected"] = json!(sock_connected);
            results["kernel_tcp_mem_kib_per_conn"] = json!(kernel_per);
            results["hold"] = merged_json(&m);
        }
        Command::Fanout {
            publish,
            rate,
            duration,
            count,
            grace,
            ..
        } => {
            let rate_v = if rate == "max" {
                None
            } else {
                Some(
                    rate.parse::<f64>()
                        .context("--rate must be a number or `max`")?,
                )
            };
            params["publish"] = json!(publish);
            params["rate"] = json!(rate);
            params["duration_s"] = json!(duration);
            params["count"] = json!(count);
            params["grace_s"] = json!(grace);
            ws.send_all(&Cmd::Reset)?;
            let p = Arc::new(Publisher::new(publish, c, prefix, c.users, status.clone())?);
            status.set_phase("publish");
            let pub_t0 = now_ns();
            let elapsed = p
                .run(
                    rate_v,
                    Duration::from_secs_f64(*duration),
                    count.unwrap_or(u64::MAX),
                    publish.publish_concurrency,
                    publish.recipients_per_publish.max(1),
                )
                .await;
            status.set_phase("drain");
            for (w, spec) in ws.specs.iter().enumerate() {
                ws.send(
                    w,
                    &Cmd::Verify {
                        expected: p.expected_for(spec),
                        grace_ms: (grace * 1000.0) as u64,
                    },
                )?;
            }
            let v = verify_sum(&ws.collect("verified", false).await?);
            let reps = ws.reports().await?;
            let m = merge(&reps);
            let pj = p.json(elapsed);
            let deliver_s = secs(v.last_ns, pub_t0);
            let expected_deliveries = p.accepted() * c.sockets_per_user as u64;
            summary.push(format!(
                "published {} calls in {:.2}s: {} notifications accepted ({:.0}/s), {} failed calls {:?}",
                p.calls.load(Relaxed), elapsed.as_secs_f64(), p.accepted(),
                pj["accepted_per_s"].as_f64().unwrap_or(0.0), p.failed_calls.load(Relaxed), p.errors.lock().unwrap()
            ));
            summary.push(format!(
                "delivered {}/{} ({:.0}/s); lost {} on {} sockets; duplicates {}; gaps {}; unexpected closes {} {:?}",
                v.received, expected_deliveries, v.received as f64 / deliver_s.max(1e-9),
                v.lost, v.sockets_missing, v.duplicates, v.gaps, m.counters.unexpected_closes, m.close_codes
            ));
            summary.push(lat_line("end-to-end latency (live)", &summarize(&m.live)));
            if m.catchup_received > 0 {
                summary.push(lat_line(
                    "latency (via catch-up/gap fill)",
                    &summarize(&m.catchup),
                ));
            }
            summary.push(lat_line(
                "publish HTTP latency",
                &summarize(&p.http.lock().unwrap()),
            ));
            let (windows, line) = timeline(&m.live_windows);
            summary.extend(line);
            results["latency_timeline"] = windows;
            check_delivery(&mut failures, &v, p.failed_calls.load(Relaxed));
            results["publish"] = pj;
            results["delivery"] = json!({
                "expected": expected_deliveries, "received": v.received, "lost": v.lost,
                "sockets_missing": v.sockets_missing, "duplicates": v.duplicates, "gaps": v.gaps,
                "seconds": deliver_s, "deliveries_per_s": v.received as f64 / deliver_s.max(1e-9),
            });
            results["latency"] = json!(summarize(&m.live));
            results["catchup_latency"] = json!(summarize(&m.catchup));
            results["sockets"] = merged_json(&m);
        }
        Command::Broadcast {
            publish,
            count,
            grace,
            ..
        } => {
            params["publish"] = json!(publish);
            params["count"] = json!(count);
            params["grace_s"] = json!(grace);
            ws.send_all(&Cmd::Reset)?;
            let p = Publisher::new(publish, c, prefix, c.users, status.clone())?;
            let mut rounds = vec![];
            for b in 0..*count {
                status.set_phase("broadcast");
                let t = now_ns();
                let body = BroadcastRequest {
                    kind: "loadtest.broadcast".into(),
                    title: format!("load test broadcast {b}"),
                    body: String::new(),
                    link: None,
                    data: Some(json!({ "t": t })),
                };
                let resp = p
                    .post(p.broadcasts(), &body)
                    .await
                    .map_err(|e| anyhow::anyhow!("broadcast {b}: {e}"))?;
                let st = resp.status;
                let http_ms = (now_ns() - t) as f64 / 1e6;
                if st != 202 {
                    failures.push(format!("broadcast {b}: status {st}"));
                    break;
                }
                // Herald answers {id, nodes}; the Socket.IO baseline {id}.
                let br: Value = serde_json::from_slice(&resp.body)
                    .with_context(|| format!("broadcast {b}: response body"))?;
                let nodes = br.get("nodes").cloned().unwrap_or(Value::Null);
                ws.send_all(&Cmd::WaitBroadcast {
                    count: b + 1,
                    grace_ms: (grace * 1000.0) as u64,
                })?;
                let v = verify_sum(&ws.collect("verified", false).await?);
                let last_s = secs(v.last_ns, t);
                let n = ph.sockets - v.sockets_missing;
                if v.lost > 0 {
                    failures.push(format!(
                        "broadcast {b}: {} sockets never got it",
                        v.sockets_missing
                    ));
                }
                summary.push(format!(
                    "broadcast {b}: nodes {} accepted in {http_ms:.1}ms; {} sockets had it after {:.1}ms ({:.0} deliveries/s); missing {}",
                    nodes, n, last_s * 1000.0, n as f64 / last_s.max(1e-9), v.sockets_missing
                ));
                rounds.push(json!({"nodes": nodes, "http_ms": http_ms, "delivered": n,
                    "missing": v.sockets_missing, "time_to_last_ms": last_s * 1000.0,
                    "deliveries_per_s": n as f64 / last_s.max(1e-9)}));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let m = merge(&ws.reports().await?);
            summary.push(lat_line(
                "per-socket broadcast latency",
                &summarize(&m.broadcast),
            ));
            results["broadcasts"] = json!(rounds);
            results["latency"] = json!(summarize(&m.broadcast));
            results["sockets"] = merged_json(&m);
        }
        Command::Storm {
            publish,
            publish_while_down,
            down,
            rounds,
            grace,
            ..
        } => {
            params["publish"] = json!(publish);
            params["publish_while_down"] = json!(publish_while_down);
            params["down_s"] = json!(down);
            params["rounds"] = json!(rounds);
            params["grace_s"] = json!(grace);
            let p = Arc::new(Publisher::new(publish, c, prefix, c.users, status.clone())?);
            let mut out = vec![];
            for r in 0..*rounds {
                ws.send_all(&Cmd::Reset)?;
                status.set_phase("drop");
                let td = Instant::now();
                ws.send_all(&Cmd::Drop)?;
                let dph = phase_sum(&ws.collect("phase", false).await?);
                let drop_ms = td.elapsed().as_secs_f64() * 1000.0;
                status.set_phase("pub-down");
                let calls_before = p.calls.load(Relaxed);
                let pe = p
                    .run(
                        None,
                        Duration::from_secs(3600),
                        *publish_while_down,
                        publish.publish_concurrency,
                        publish.recipients_per_publish.max(1),
                    )
                    .await;
                tokio::time::sleep(Duration::from_secs_f64(*down)).await;
                status.set_phase("resume");
                let t0 = now_ns();
                ws.send_all(&Cmd::Resume {
                    deadline_ms: (c.connect_deadline * 1000.0) as u64,
                })?;
                let rph = phase_sum(&ws.collect("phase", false).await?);
                status.set_phase("verify");
                for (w, spec) in ws.specs.iter().enumerate() {
                    ws.send(
                        w,
                        &Cmd::Verify {
                            expected: p.expected_for(spec),
                            grace_ms: (grace * 1000.0) as u64,
                        },
                    )?;
                }
                let v = verify_sum(&ws.collect("verified", false).await?);
                let hs_s = secs(rph.last_handshake_ns, t0);
                let all_s = secs(rph.last_ready_ns, t0);
                if rph.ready < rph.sockets {
                    failures.push(format!(
                        "round {r}: only {}/{} sockets resumed",
                        rph.ready, rph.sockets
                    ));
                }
                check_delivery(&mut failures, &v, p.failed_calls.load(Relaxed));
                summary.push(format!(
                    "round {r}: dropped {} sockets in {drop_ms:.0}ms (still ready {}); published {} while down in {:.2}s",
                    dph.sockets, dph.ready, p.calls.load(Relaxed) - calls_before, pe.as_secs_f64()
                ));
                summary.push(format!(
                    "round {r}: {} handshakes in {:.2}s ({:.0}/s); all {}/{} caught up (complete:true) after {:.2}s; lost {} duplicates {} gaps {}",
                    rph.handshakes, hs_s, rph.handshakes as f64 / hs_s.max(1e-9), rph.ready, rph.sockets, all_s, v.lost, v.duplicates, v.gaps
                ));
                out.push(json!({
                    "round": r, "sockets": rph.sockets, "drop_ms": drop_ms,
                    "published_while_down_calls": p.calls.load(Relaxed) - calls_before, "accepted_total": p.accepted(),
                    "handshakes": rph.handshakes, "handshake_seconds": hs_s,
                    "handshakes_per_s": rph.handshakes as f64 / hs_s.max(1e-9),
                    "ready": rph.ready, "time_to_all_complete_s": all_s,
                    "lost": v.lost, "sockets_missing": v.sockets_missing, "duplicates": v.duplicates, "gaps": v.gaps,
                }));
            }
            let m = merge(&ws.reports().await?);
            summary.push(lat_line(
                "handshake (connect → `connected`)",
                &summarize(&m.handshake),
            ));
            summary.push(lat_line(
                "publish → catch-up delivery",
                &summarize(&m.catchup),
            ));
            results["rounds"] = json!(out);
            results["publish"] = p.json(Duration::from_secs(1));
            results["sockets"] = merged_json(&m);
        }
        Command::Worker => unreachable!(),
    }
    status.set_phase("quit");
    ws.quit().await;
    Ok((params, results, failures, summary))
}

fn check_delivery(failures: &mut Vec<String>, v: &VerifySum, failed_calls: u64) {
    if v.lost > 0 {
        failures.push(format!(
            "{} notifications lost on {} sockets",
            v.lost, v.sockets_missing
        ));
    }
    if v.duplicates > 0 {
        failures.push(format!("{} duplicate deliveries", v.duplicates));
    }
    if v.gaps > 0 {
        failures.push(format!("{} seq gaps", v.gaps));
    }
    if failed_calls > 0 {
        failures.push(format!("{failed_calls} publish calls failed"));
    }
}
