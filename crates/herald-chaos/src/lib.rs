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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

pub const SERVICE_KEY: &str = "chaos-service-key-0123456789";
pub const SECRET: &str = "chaos-hs256-secret-0123456789abcdef0123456789";
/// Client reconnect backoff: full jitter over `min(CAP, BASE * 2^attempt)`.
pub const BACKOFF_BASE: Duration = Duration::from_millis(100);
pub const BACKOFF_CAP: Duration = Duration::from_secs(2);
/// Gateway drain settings used for every node (also the expected spread of a drain wave).
pub const DRAIN_SPREAD_MS: u64 = 2000;
pub const DRAIN_GRACE_MS: u64 = 5000;

/// `HERALD_CHAOS_FULL=1` selects the large variants.
pub fn full() -> bool {
    std::env::var("HERALD_CHAOS_FULL").is_ok_and(|v| v == "1" || v == "true")
}

pub fn variant() -> &'static str {
    if full() {
        "full"
    } else {
        "smoke"
    }
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => {
            let p = PathBuf::from(d);
            if p.is_absolute() {
                p
            } else {
                workspace_root().join(p)
            }
        }
        None => workspace_root().join("target"),
    }
}

pub fn admin_url() -> String {
    std::env::var("HERALD_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Seconds (float) since `t0`.
pub fn secs_since(t0: Instant, t: Instant) -> f64 {
    t.saturating_duration_since(t0).as_secs_f64()
}

// ---------------------------------------------------------------------------------------------
// The binary, the suite lock, ports, processes
// ---------------------------------------------------------------------------------------------

/// The release `herald` binary: `HERALD_CHAOS_BIN` if set (scripts/chaos.sh builds it and sets
/// it), else `cargo build --release -p herald-gateway` once per test process (bounded).
pub fn herald_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("HERALD_CHAOS_BIN") {
            let p = PathBuf::from(p);
            assert!(
                p.is_file(),
                "HERALD_CHAOS_BIN={} does not exist",
                p.display()
            );
            return p;
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        eprintln!("[chaos] cargo build --release -p herald-gateway --bin herald");
        let mut child = Command::new(cargo)
            .args([
                "build",
                "--release",
                "-p",
                "herald-gateway",
                "--bin",
                "herald",
            ])
            .current_dir(workspace_root())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn cargo build");
        let deadline = Instant::now() + Duration::from_secs(30 * 60);
        let status = loop {
            if let Some(s) = child.try_wait().expect("wait cargo") {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("cargo build --release -p herald-gateway took more than 30 minutes");
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        assert!(
            status.success(),
            "cargo build --release -p herald-gateway failed"
        );
        let p = target_dir().join("release/herald");
        assert!(p.is_file(), "{} missing after the build", p.display());
        p
    })
    .clone()
}

/// Serialises chaos tests across threads and processes (cargo test threads, nextest
/// processes): each one starts several processes and measures timings on 2 cores.
pub struct SuiteLock {
    _f: File,
}

impl SuiteLock {
    pub fn acquire() -> SuiteLock {
        use std::os::fd::AsRawFd;
        let dir = target_dir();
        std::fs::create_dir_all(&dir).expect("target dir");
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("chaos.lock"))
            .expect("open chaos.lock");
        let deadline = Instant::now() + Duration::from_secs(20 * 60);
        loop {
            // SAFETY: flock on a file descriptor we own.
            let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if r == 0 {
                return SuiteLock { _f: f };
            }
            assert!(
                Instant::now() < deadline,
                "waited 20 minutes for target/chaos.lock"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
    l.local_addr().expect("addr").port()
}

/// Kill the child when this (test) process dies, even by SIGKILL.
fn die_with_parent(cmd: &mut Command) {
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// A child process killed (SIGKILL) when dropped.
pub struct Proc {
    pub name: String,
    child: Option<Child>,
}

impl Proc {
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Proc {
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("open log");
        let err = out.try_clone().expect("dup log");
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        die_with_parent(&mut cmd);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        Proc {
            name: name.into(),
            child: Some(child),
        }
    }

    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    pub fn signal(&self, sig: i32) {
        if let Some(pid) = self.pid() {
            // SAFETY: plain kill(2) on our own child.
            unsafe {
                libc::kill(pid, sig);
            }
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits (bounded) for the process to exit; SIGKILLs it on timeout.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let Some(c) = self.child.as_mut() else {
                return Err(format!("{}: not running", self.name));
            };
            if let Some(s) = c.try_wait().map_err(|e| e.to_string())? {
                self.child = None;
                return Ok(s);
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(format!("{} did not exit within {timeout:?}", self.name));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn wait_port(port: u16, timeout: Duration, what: &str) {
    let deadline = Instant::now() + timeout;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Redis, PostgreSQL, gateway nodes, HAProxy
// ---------------------------------------------------------------------------------------------

pub struct Redis {
    pub port: u16,
    log: PathBuf,
    proc: Option<Proc>,
}

impl Redis {
    pub async fn start(log_dir: &Path) -> Redis {
        let mut r = Redis {
            port: free_port(),
            log: log_dir.join("redis.log"),
            proc: None,
        };
        r.restart().await;
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub async fn restart(&mut self) {
        let mut cmd = Command::new("redis-server");
        cmd.args([
            "--port",
            &self.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--maxclients",
            "10000",
        ]);
        self.proc = Some(Proc::spawn("redis", cmd, &self.log));
        wait_port(self.port, Duration::from_secs(10), "redis-server").await;
    }

    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    /// `PUBSUB NUMSUB` for each channel.
    pub async fn numsub(&self, channels: &[String]) -> Result<HashMap<String, i64>, String> {
        let client = redis::Client::open(self.url()).map_err(|e| e.to_string())?;
        let mut con = tokio::time::timeout(
            Duration::from_secs(5),
            client.get_multiplexed_async_connection(),
        )
        .await
        .map_err(|_| "redis connect timed out".to_string())?
        .map_err(|e| e.to_string())?;
        let mut out = HashMap::new();
        for chunk in channels.chunks(500) {
            let v: Vec<redis::Value> = tokio::time::timeout(
                Duration::from_secs(5),
                redis::cmd("PUBSUB")
                    .arg("NUMSUB")
                    .arg(chunk)
                    .query_async(&mut con),
            )
            .await
            .map_err(|_| "NUMSUB timed out".to_string())?
            .map_err(|e| e.to_string())?;
            for pair in v.chunks(2) {
                let name: String =
                    redis::from_redis_value_ref(&pair[0]).map_err(|e| e.to_string())?;
                let n: i64 = redis::from_redis_value_ref(&pair[1]).map_err(|e| e.to_string())?;
                out.insert(name, n);
            }
        }
        Ok(out)
    }
}

/// A database of this test's own; dropped (WITH FORCE) when the guard drops.
pub struct Db {
    pub name: String,
    pub url: String,
}

impl Db {
    pub async fn create() -> Db {
        let name = format!("herald_chaos_{}", uuid::Uuid::new_v4().simple());
        let (client, conn) = tokio_postgres::connect(&admin_url(), tokio_postgres::NoTls)
            .await
            .expect("connect to the admin database");
        tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create chaos database");
        let base = admin_url();
        let i = base.rfind('/').expect("admin url has a database part");
        Db {
            url: format!("{}/{name}", &base[..i]),
            name,
        }
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio::time::timeout(
            Duration::from_secs(10),
            tokio_postgres::connect(&self.url, tokio_postgres::NoTls),
        )
        .await
        .expect("connect to the chaos database timed out")
        .expect("connect to the chaos database");
        tokio::spawn(conn);
        client
    }

    /// Every committed notification: user → [(seq, id)] ascending.
    pub async fn notifications(&self) -> HashMap<String, Vec<(i64, String)>> {
        let c = self.client().await;
        let rows = c
            .query(
                "SELECT user_id, seq, id::text FROM notifications ORDER BY user_id, seq",
                &[],
            )
            .await
            .expect("read notifications");
        let mut out: HashMap<String, Vec<(i64, String)>> = HashMap::new();
        for r in rows {
            out.entry(r.get(0)).or_default().push((r.get(1), r.get(2)));
        }
        out
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([
                &admin_url(),
                "-XqAt",
                "-c",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// One `herald serve` process on a fixed port (kept across restarts).
pub struct Node {
    pub id: String,
    pub port: u16,
    env: Vec<(String, String)>,
    log: PathBuf,
    pub proc: Option<Proc>,
    pub starts: u32,
}

impl Node {
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn start(&mut self) {
        let mut cmd = Command::new(herald_bin());
        cmd.arg("serve");
        cmd.env_clear();
        if let Some(p) = std::env::var_os("PATH") {
            cmd.env("PATH", p);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        self.starts += 1;
        if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(&self.log) {
            let _ = writeln!(f, "---- start #{} ----", self.starts);
        }
        self.proc = Some(Proc::spawn(&self.id, cmd, &self.log));
    }

    pub async fn wait_ready(&mut self, http: &reqwest::Client, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(p) = self.proc.as_mut() {
                assert!(
                    p.running(),
                    "node {} exited during startup (see {})",
                    self.id,
                    self.log.display()
                );
            }
            if let Ok(r) = http
                .get(format!("{}/readyz", self.base()))
                .timeout(Duration::from_secs(2))
                .send()
                .await
            {
                if r.status() == 200 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "node {} not ready within {timeout:?} (see {})",
                self.id,
                self.log.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn sigterm(&self) {
        if let Some(p) = &self.proc {
            p.signal(libc::SIGTERM);
        }
    }

    pub fn sigkill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    pub async fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus, String> {
        match self.proc.as_mut() {
            Some(p) => {
                let r = p.wait_exit(timeout).await;
                self.proc = None;
                r
            }
            None => Err("not running".into()),
        }
    }
}

pub struct Haproxy {
    pub port: u16,
    pub stats_port: u16,
    _proc: Proc,
}

impl Haproxy {
    pub async fn start(dir: &Path, nodes: &[(String, u16)]) -> Haproxy {
        let port = free_port();
        let stats_port = free_port();
        let mut servers = String::new();
        for (id, p) in nodes {
            servers.push_str(&format!("    server {id} 127.0.0.1:{p} check\n"));
        }
        // Same shape as deploy/haproxy/haproxy.cfg, with faster health checks. `timeout check`
        // is production's (there the 2 s `inter` is also the check timeout): a check that only
        // waits out a stall of this shared machine must not take a live node out of the
        // balancer. A killed node still goes down at once (connection refused).
        let cfg = format!(
            "global\n    maxconn 9000\n    hard-stop-after 5s\n\n\
             defaults\n    mode http\n    option redispatch\n    retries 3\n    \
             timeout connect 2s\n    timeout http-request 10s\n    timeout http-keep-alive 10s\n    \
             timeout queue 10s\n    timeout client 60s\n    timeout server 60s\n    timeout check 2s\n    \
             timeout tunnel 1h\n    timeout client-fin 5s\n    timeout server-fin 5s\n\n\
             listen stats\n    bind 127.0.0.1:{stats_port}\n    stats enable\n    stats uri /stats\n\n\
             frontend herald_http\n    bind 127.0.0.1:{port}\n    default_backend herald_gateways\n\n\
             backend herald_gateways\n    balance roundrobin\n    option httpchk\n    \
             http-check send meth GET uri /readyz ver HTTP/1.1 hdr Host localhost\n    \
             http-check expect status 200\n    \
             default-server inter 500ms fastinter 250ms downinter 500ms fall 2 rise 2\n{servers}"
        );
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, cfg).expect("write haproxy.cfg");
        let bin = if Path::new("/usr/sbin/haproxy").exists() {
            "/usr/sbin/haproxy".to_string()
        } else {
            "haproxy".to_string()
        };
        let mut cmd = Command::new(bin);
        cmd.args(["-db", "-f"]).arg(&path);
        if Command::new(cmd.get_program())
            .arg("-v")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_err()
        {
            panic!("haproxy is not installed: run scripts/chaos.sh (it installs it with apt-get)");
        }
        let proc = Proc::spawn("haproxy", cmd, &dir.join("haproxy.log"));
        wait_port(port, Duration::from_secs(10), "haproxy").await;
        wait_port(stats_port, Duration::from_secs(10), "haproxy stats").await;
        Haproxy {
            port,
            stats_port,
            _proc: proc,
        }
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/v1/ws", self.port)
    }

    /// Server name → status ("UP", "DOWN", "UP 1/2", ...) from the stats CSV.
    pub async fn server_status(&self, http: &reqwest::Client) -> HashMap<String, String> {
        let mut out = HashMap::new();
        let Ok(r) = http
            .get(format!("http://127.0.0.1:{}/stats;csv", self.stats_port))
            .timeout(Duration::from_secs(2))
            .send()
            .await
        else {
            return out;
        };
        let Ok(text) = r.text().await else {
            return out;
        };
        for line in text.lines() {
            let cols: Vec<&str> = line.split(',').collect();
            // pxname,svname,...,status is column 17
            if cols.len() > 17 && cols[0] == "herald_gateways" && cols[1] != "BACKEND" {
                out.insert(cols[1].to_string(), cols[17].to_string());
            }
        }
        out
    }

    /// Waits until HAProxy reports exactly these servers as UP.
    pub async fn wait_up(&self, http: &reqwest::Client, names: &[String], timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let st = self.server_status(http).await;
            if names
                .iter()
                .all(|n| st.get(n).map(|s| s == "UP").unwrap_or(false))
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "haproxy did not mark {names:?} UP within {timeout:?}: {st:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Redis + database + N nodes + HAProxy. Drop order: nodes, LB, Redis, then the database.
pub struct Cluster {
    pub nodes: Vec<Node>,
    pub lb: Haproxy,
    pub redis: Redis,
    pub db: Db,
    pub prefix: String,
    pub log_dir: PathBuf,
    pub http: reqwest::Client,
}

impl Cluster {
    pub async fn start(scenario: &str, n_nodes: usize) -> Cluster {
        Cluster::start_opts(scenario, n_nodes, None).await
    }

    /// `pg_port`: the nodes reach PostgreSQL through this port (e.g. a [`FaultProxy`]).
    pub async fn start_opts(scenario: &str, n_nodes: usize, pg_port: Option<u16>) -> Cluster {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let log_dir = target_dir()
            .join("chaos-logs")
            .join(format!("{scenario}-{}", &id[..8]));
        std::fs::create_dir_all(&log_dir).expect("log dir");
        eprintln!("[chaos] {scenario}: logs in {}", log_dir.display());
        herald_bin();
        let redis = Redis::start(&log_dir).await;
        let db = Db::create().await;
        let prefix = format!("chaos:{}:", &id[..12]);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("http client");
        let node_db_url = match pg_port {
            Some(p) => format!("postgres://postgres@127.0.0.1:{p}/{}", db.name),
            None => db.url.clone(),
        };
        let mut nodes = Vec::new();
        for i in 1..=n_nodes {
            let port = free_port();
            let nid = format!("n{i}");
            let env: Vec<(String, String)> = [
                ("HERALD_LISTEN", format!("127.0.0.1:{port}")),
                ("HERALD_NODE_ID", nid.clone()),
                ("HERALD_DATABASE_URL", node_db_url.clone()),
                ("HERALD_DATABASE_POOL_SIZE", "6".into()),
                ("HERALD_REDIS_URL", redis.url()),
                ("HERALD_REDIS_PREFIX", prefix.clone()),
                ("HERALD_SERVICE_KEYS", SERVICE_KEY.into()),
                ("HERALD_JWT_HS256_SECRET", SECRET.into()),
                ("HERALD_MIGRATE_ON_START", "true".into()),
                ("HERALD_ALLOWED_ORIGINS", "http://127.0.0.1".into()),
                ("HERALD_RECONCILE_INTERVAL_MS", "1000".into()),
                ("HERALD_PROBE_INTERVAL_MS", "500".into()),
                ("HERALD_PROBE_TIMEOUT_MS", "2000".into()),
                ("HERALD_DRAIN_SPREAD_MS", DRAIN_SPREAD_MS.to_string()),
                ("HERALD_DRAIN_GRACE_MS", DRAIN_GRACE_MS.to_string()),
                ("HERALD_MAX_SOCKETS_PER_USER", "16".into()),
                ("HERALD_LOG", "warn".into()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
            nodes.push(Node {
                id: nid.clone(),
                port,
                env,
                log: log_dir.join(format!("{nid}.log")),
                proc: None,
                starts: 0,
            });
        }
        // The first node migrates alone; the others start together.
        nodes[0].start();
        nodes[0].wait_ready(&http, Duration::from_secs(30)).await;
        for n in nodes.iter_mut().skip(1) {
            n.start();
        }
        for n in nodes.iter_mut().skip(1) {
            n.wait_ready(&http, Duration::from_secs(30)).await;
        }
        let lb = Haproxy::start(
            &log_dir,
            &nodes
                .iter()
                .map(|n| (n.id.clone(), n.port))
                .collect::<Vec<_>>(),
        )
        .await;
        let names: Vec<String> = nodes.iter().map(|n| n.id.clone()).collect();
        lb.wait_up(&http, &names, Duration::from_secs(15)).await;
        Cluster {
            nodes,
            lb,
            redis,
            db,
            prefix,
            log_dir,
            http,
        }
    }

    pub fn node_mut(&mut self, id: &str) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .unwrap_or_else(|| panic!("no node {id}"))
    }

    /// SIGTERM (drain), wait for exit, restart on the same port, wait ready and UP in HAProxy.
    /// Returns (drain duration, restart-to-UP duration).
    pub async fn rolling_restart_one(&mut self, id: &str) -> (Duration, Duration) {
        let http = self.http.clone();
        let t = Instant::now();
        let node = self.node_mut(id);
        node.sigterm();
        let st = node
            .wait_exit(Duration::from_millis(DRAIN_GRACE_MS + 10_000))
            .await
            .unwrap_or_else(|e| panic!("drain of {id}: {e}"));
        let drained = t.elapsed();
        eprintln!("[chaos] {id} drained in {drained:?} ({st})");
        let t2 = Instant::now();
        node.start();
        node.wait_ready(&http, Duration::from_secs(30)).await;
        self.lb
            .wait_up(&http, &[id.to_string()], Duration::from_secs(15))
            .await;
        (drained, t2.elapsed())
    }
}

// ---------------------------------------------------------------------------------------------
// Tokens, publisher
// ---------------------------------------------------------------------------------------------

pub fn token(user: &str, ttl_secs: i64) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({ "sub": user, "exp": chrono::Utc::now().timestamp() + ttl_secs }),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("encode token")
}

#[derive(Debug, Clone)]
pub struct Acked {
    pub user: String,
    pub id: String,
    pub seq: i64,
}

#[derive(Debug, Default)]
pub struct PublishReport {
    /// Publish calls made (each may take several attempts).
    pub calls: u64,
    /// Acknowledged (201, or 200 replayed by idempotency key after a retry).
    pub acked: Vec<Acked>,
    /// Of those, acknowledged only after a retry.
    pub acked_after_retry: u64,
    /// Calls that got an error on every attempt (status or transport error).
    pub failed: u64,
    /// Every failed attempt, by status ("503", "transport", ...).
    pub attempt_errors: BTreeMap<String, u64>,
    pub elapsed: Duration,
}

impl PublishReport {
    pub fn json(&self) -> Value {
        json!({
            "calls": self.calls,
            "acked": self.acked.len(),
            "acked_after_retry": self.acked_after_retry,
            "failed": self.failed,
            "attempt_errors": self.attempt_errors,
            "elapsed_s": self.elapsed.as_secs_f64(),
        })
    }
}

pub struct PublishPlan {
    pub base: String,
    pub users: Vec<String>,
    /// Calls per second.
    pub rate: u32,
    /// Stop after this many calls (None: until `stop`).
    pub total: Option<u64>,
    /// Attempts per call (1 = no retry). Retries reuse the idempotency key.
    pub attempts: u32,
    pub concurrency: usize,
}

/// Publishes `recipient = users[k % len]` at a fixed rate through `base`; every call carries a
/// unique idempotency key so a retry never duplicates. Stops at `total` or when `stop` flips.
pub async fn publish_load(plan: PublishPlan, mut stop: watch::Receiver<bool>) -> PublishReport {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(plan.concurrency)
        .build()
        .expect("http");
    let run = uuid::Uuid::new_v4().simple().to_string();
    let sem = Arc::new(tokio::sync::Semaphore::new(plan.concurrency));
    let report = Arc::new(Mutex::new(PublishReport::default()));
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / plan.rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::new();
    let mut k: u64 = 0;
    loop {
        if plan.total.is_some_and(|t| k >= t) || *stop.borrow() {
            break;
        }
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => continue,
        }
        let user = plan.users[(k as usize) % plan.users.len()].clone();
        let key = format!("chaos-{}-{k}", &run[..8]);
        let url = format!("{}/v1/notifications", plan.base);
        let http = http.clone();
        let report = report.clone();
        let sem = sem.clone();
        let attempts = plan.attempts.max(1);
        k += 1;
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await.expect("semaphore");
            let body = json!({
                "recipient": user, "type": "chaos.test", "title": key.clone(),
                "body": "", "idempotency_key": key,
            });
            for attempt in 0..attempts {
                let res = http
                    .post(&url)
                    .bearer_auth(SERVICE_KEY)
                    .json(&body)
                    .send()
                    .await;
                let err = match res {
                    Ok(r) if r.status() == 201 || r.status() == 200 => {
                        match r.json::<Value>().await {
                            Ok(v) => {
                                let n = &v["notifications"][0];
                                let a = Acked {
                                    user: user.clone(),
                                    id: n["id"].as_str().unwrap_or_default().to_string(),
                                    seq: n["seq"].as_i64().unwrap_or(-1),
                                };
                                let mut rep = report.lock().unwrap();
                                rep.calls += 1;
                                rep.acked.push(a);
                                if attempt > 0 {
                                    rep.acked_after_retry += 1;
                                }
                                return;
                            }
                            Err(_) => "bad-body".to_string(),
                        }
                    }
                    // "503 service_unavailable" from a node (JSON error body) vs
                    // "503 (lb)" from HAProxy (its own HTML page).
                    Ok(r) => {
                        let st = r.status().as_u16();
                        match r.json::<Value>().await {
                            Ok(v) if v["code"].is_string() => {
                                format!("{st} {}", v["code"].as_str().unwrap_or_default())
                            }
                            _ => format!("{st} (lb)"),
                        }
                    }
                    Err(e) if e.is_timeout() => "timeout".to_string(),
                    Err(_) => "transport".to_string(),
                };
                *report
                    .lock()
                    .unwrap()
                    .attempt_errors
                    .entry(err)
                    .or_default() += 1;
                let back = 100u64 << attempt.min(4);
                tokio::time::sleep(Duration::from_millis(back.min(1000))).await;
            }
            let mut rep = report.lock().unwrap();
            rep.calls += 1;
            rep.failed += 1;
        }));
    }
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(60), t).await;
    }
    let mut rep = std::mem::take(&mut *report.lock().unwrap());
    rep.elapsed = started.elapsed();
    rep
}

// ---------------------------------------------------------------------------------------------
// WebSocket clients
// ---------------------------------------------------------------------------------------------

/// What a client task shares while running.
#[derive(Default)]
pub struct Live {
    pub last_seq: AtomicI64,
    pub connected: AtomicBool,
    pub node: Mutex<String>,
    pub connects: AtomicU64,
}

#[derive(Debug, Clone)]
pub struct Reconnect {
    /// Seconds since the fleet's t0 when the socket closed.
    pub closed_at: f64,
    /// Seconds since t0 when `connected` arrived on the new socket.
    pub connected_at: f64,
    pub close_code: u16,
    pub from_node: String,
    pub to_node: String,
    /// Failed connect attempts in between.
    pub failed_attempts: u32,
}

impl Reconnect {
    pub fn took_ms(&self) -> f64 {
        (self.connected_at - self.closed_at) * 1000.0
    }
}

#[derive(Debug, Default)]
pub struct ClientReport {
    pub user: String,
    /// (seq, id) in the order received, de-duplicated by id.
    pub held: Vec<(i64, String)>,
    /// Notifications received again (same id) — must stay 0.
    pub duplicates: u64,
    /// Notifications not equal to last_seq + 1 when received — must stay 0.
    pub order_violations: u64,
    pub resyncs: u64,
    pub drain_notices: u64,
    pub reconnects: Vec<Reconnect>,
    pub failed_connects: u64,
    pub connect_errors: BTreeMap<String, u64>,
    pub terminal_close: Option<(u16, String)>,
}

fn backoff(attempt: u32) -> Duration {
    let ceil = BACKOFF_BASE
        .saturating_mul(1u32 << attempt.min(10))
        .min(BACKOFF_CAP);
    let ms = rand::random_range(0..=ceil.as_millis() as u64);
    Duration::from_millis(ms)
}

async fn until_stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn sleep_or_stop(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = until_stopped(stop) => true,
    }
}

async fn client_task(
    ws_url: String,
    user: String,
    start_delay: Duration,
    live: Arc<Live>,
    t0: Instant,
    mut stop: watch::Receiver<bool>,
) -> ClientReport {
    let mut rep = ClientReport {
        user: user.clone(),
        ..Default::default()
    };
    let mut ids: HashSet<String> = HashSet::new();
    let mut last_seq: i64 = 0;
    let mut attempt: u32 = 0;
    // (closed_at, code, node) of the last close, until the next `connected`.
    let mut pending: Option<(Instant, u16, String)> = None;
    let mut failed_since_close: u32 = 0;
    let tok = token(&user, 6 * 3600);
    if sleep_or_stop(start_delay, &mut stop).await {
        return rep;
    }
    'outer: loop {
        if *stop.borrow() {
            break;
        }
        let mut req = format!("{ws_url}?last_seq={last_seq}")
            .into_client_request()
            .expect("ws request");
        req.headers_mut().insert(
            "authorization",
            format!("Bearer {tok}").parse().expect("header"),
        );
        let conn = tokio::select! {
            r = tokio::time::timeout(Duration::from_secs(5), tokio_tungstenite::connect_async(req)) => r,
            _ = until_stopped(&mut stop) => break 'outer,
        };
        let mut ws = match conn {
            Ok(Ok((ws, _))) => ws,
            other => {
                let why = match other {
                    Err(_) => "timeout".to_string(),
                    Ok(Err(tokio_tungstenite::tungstenite::Error::Http(r))) => {
                        format!("http {}", r.status().as_u16())
                    }
                    Ok(Err(e)) => {
                        let s = e.to_string();
                        s.chars().take(40).collect()
                    }
                    Ok(Ok(_)) => unreachable!(),
                };
                *rep.connect_errors.entry(why).or_default() += 1;
                rep.failed_connects += 1;
                failed_since_close += 1;
                attempt += 1;
                if sleep_or_stop(backoff(attempt), &mut stop).await {
                    break 'outer;
                }
                continue;
            }
        };
        let mut node = String::new();
        let close: (u16, String) = loop {
            let msg = tokio::select! {
                m = ws.next() => m,
                _ = until_stopped(&mut stop) => {
                    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
                    break 'outer;
                }
            };
            match msg {
                None => break (1006, "stream ended".into()),
                Some(Err(e)) => break (1006, e.to_string()),
                Some(Ok(Message::Close(c))) => {
                    break match c {
                        Some(f) => (u16::from(f.code), f.reason.to_string()),
                        None => (1005, String::new()),
                    }
                }
                Some(Ok(Message::Text(t))) => {
                    let v: Value = match serde_json::from_str(&t) {
                        Ok(v) => v,
                        Err(_) => continue,
                    };
                    match v["type"].as_str().unwrap_or_default() {
                        "connected" => {
                            node = v["node_id"].as_str().unwrap_or_default().to_string();
                            *live.node.lock().unwrap() = node.clone();
                            live.connected.store(true, Ordering::SeqCst);
                            live.connects.fetch_add(1, Ordering::SeqCst);
                            attempt = 0;
                            if let Some((at, code, from)) = pending.take() {
                                rep.reconnects.push(Reconnect {
                                    closed_at: secs_since(t0, at),
                                    connected_at: secs_since(t0, Instant::now()),
                                    close_code: code,
                                    from_node: from,
                                    to_node: node.clone(),
                                    failed_attempts: failed_since_close,
                                });
                            }
                            failed_since_close = 0;
                        }
                        "notifications:batch" => {
                            if let Some(ns) = v["notifications"].as_array() {
                                for n in ns {
                                    accept(n, &mut rep, &mut ids, &mut last_seq);
                                }
                            }
                            live.last_seq.store(last_seq, Ordering::SeqCst);
                        }
                        "notification" => {
                            accept(&v["notification"], &mut rep, &mut ids, &mut last_seq);
                            live.last_seq.store(last_seq, Ordering::SeqCst);
                        }
                        "resync" => rep.resyncs += 1,
                        "reconnect" => rep.drain_notices += 1,
                        _ => {}
                    }
                }
                Some(Ok(_)) => {}
            }
        };
        live.connected.store(false, Ordering::SeqCst);
        pending = Some((Instant::now(), close.0, node));
        if (4000..4100).contains(&close.0) {
            rep.terminal_close = Some(close);
            break;
        }
        if sleep_or_stop(backoff(attempt), &mut stop).await {
            break;
        }
    }
    live.connected.store(false, Ordering::SeqCst);
    rep
}

fn accept(n: &Value, rep: &mut ClientReport, ids: &mut HashSet<String>, last_seq: &mut i64) {
    let seq = n["seq"].as_i64().unwrap_or(-1);
    let id = n["id"].as_str().unwrap_or_default().to_string();
    if !ids.insert(id.clone()) {
        rep.duplicates += 1;
        return;
    }
    if seq != *last_seq + 1 {
        rep.order_violations += 1;
    }
    *last_seq = (*last_seq).max(seq);
    rep.held.push((seq, id));
}

/// Many client tasks; aborted on drop.
pub struct Fleet {
    pub t0: Instant,
    pub users: Vec<String>,
    pub live: Vec<Arc<Live>>,
    handles: Vec<tokio::task::JoinHandle<ClientReport>>,
    stop: watch::Sender<bool>,
}

impl Fleet {
    /// One client per entry of `users` (repeat a user for several sockets), started evenly
    /// over `ramp`.
    pub fn spawn(ws_url: &str, users: Vec<String>, ramp: Duration, t0: Instant) -> Fleet {
        let (stop, rx) = watch::channel(false);
        let n = users.len().max(1) as u32;
        let mut live = Vec::new();
        let mut handles = Vec::new();
        for (i, u) in users.iter().enumerate() {
            let l = Arc::new(Live::default());
            live.push(l.clone());
            handles.push(tokio::spawn(client_task(
                ws_url.to_string(),
                u.clone(),
                ramp * i as u32 / n,
                l,
                t0,
                rx.clone(),
            )));
        }
        Fleet {
            t0,
            users,
            live,
            handles,
            stop,
        }
    }

    pub fn connected(&self) -> usize {
        self.live
            .iter()
            .filter(|l| l.connected.load(Ordering::SeqCst))
            .count()
    }

    pub async fn wait_connected(&self, timeout: Duration) -> Result<Duration, String> {
        let t = Instant::now();
        loop {
            let c = self.connected();
            if c == self.live.len() {
                return Ok(t.elapsed());
            }
            if t.elapsed() > timeout {
                return Err(format!(
                    "only {c}/{} clients connected after {timeout:?}",
                    self.live.len()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Connected sockets per node id.
    pub fn per_node(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for l in &self.live {
            if l.connected.load(Ordering::SeqCst) {
                *m.entry(l.node.lock().unwrap().clone()).or_default() += 1;
            }
        }
        m
    }

    /// Waits until every client is connected and holds `expected[user]` (max seq).
    pub async fn wait_caught_up(
        &self,
        expected: &HashMap<String, i64>,
        timeout: Duration,
    ) -> Result<Duration, String> {
        let t = Instant::now();
        loop {
            let behind: Vec<usize> = (0..self.live.len())
                .filter(|&i| {
                    let want = expected.get(&self.users[i]).copied().unwrap_or(0);
                    !self.live[i].connected.load(Ordering::SeqCst)
                        || self.live[i].last_seq.load(Ordering::SeqCst) < want
                })
                .collect();
            if behind.is_empty() {
                return Ok(t.elapsed());
            }
            if t.elapsed() > timeout {
                let i = behind[0];
                return Err(format!(
                    "{} clients not caught up after {timeout:?}; e.g. {} holds {} of {}, connected={}",
                    behind.len(),
                    self.users[i],
                    self.live[i].last_seq.load(Ordering::SeqCst),
                    expected.get(&self.users[i]).copied().unwrap_or(0),
                    self.live[i].connected.load(Ordering::SeqCst),
                ));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn stop(mut self) -> Vec<ClientReport> {
        let _ = self.stop.send(true);
        let mut out = Vec::new();
        for h in std::mem::take(&mut self.handles) {
            match tokio::time::timeout(Duration::from_secs(10), h).await {
                Ok(Ok(r)) => out.push(r),
                Ok(Err(e)) => panic!("client task failed: {e}"),
                Err(_) => panic!("client task did not stop within 10 s"),
            }
        }
        out
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for h in &self.handles {
            h.abort();
        }
    }
}

/// User → max seq in PostgreSQL.
pub fn max_seqs(pg: &HashMap<String, Vec<(i64, String)>>) -> HashMap<String, i64> {
    pg.iter()
        .map(|(u, v)| (u.clone(), v.last().map(|x| x.0).unwrap_or(0)))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Verification and figures
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Default)]
pub struct Verdict {
    pub published_acked: usize,
    /// Acknowledged notifications not in PostgreSQL.
    pub acked_missing_in_pg: usize,
    /// Per socket: committed notifications of its user the socket does not hold.
    pub missing_on_clients: usize,
    /// Per socket: notifications held that PostgreSQL does not have for its user.
    pub extra_on_clients: usize,
    pub duplicates: u64,
    pub order_violations: u64,
    pub resyncs: u64,
    pub terminal_closes: usize,
    pub pg_rows: usize,
    pub pg_gaps: usize,
    pub problems: Vec<String>,
}

impl Verdict {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    pub fn json(&self) -> Value {
        json!({
            "published_acked": self.published_acked,
            "acked_missing_in_pg": self.acked_missing_in_pg,
            "lost_on_clients": self.missing_on_clients,
            "extra_on_clients": self.extra_on_clients,
            "duplicates": self.duplicates,
            "order_violations": self.order_violations,
            "resyncs": self.resyncs,
            "terminal_closes": self.terminal_closes,
            "pg_rows": self.pg_rows,
            "pg_seq_gaps": self.pg_gaps,
        })
    }
}

/// The invariant: every acked publish is in PostgreSQL; every client holds exactly its user's
/// committed notifications, each once, in seq order.
pub fn verify(
    acked: &[Acked],
    pg: &HashMap<String, Vec<(i64, String)>>,
    clients: &[ClientReport],
) -> Verdict {
    let mut v = Verdict {
        published_acked: acked.len(),
        ..Default::default()
    };
    let mut pg_ids: HashMap<&str, (&str, i64)> = HashMap::new();
    for (u, rows) in pg {
        v.pg_rows += rows.len();
        for (i, (seq, id)) in rows.iter().enumerate() {
            if *seq != i as i64 + 1 {
                v.pg_gaps += 1;
            }
            pg_ids.insert(id.as_str(), (u.as_str(), *seq));
        }
    }
    for a in acked {
        match pg_ids.get(a.id.as_str()) {
            Some((u, s)) if *u == a.user && *s == a.seq => {}
            _ => v.acked_missing_in_pg += 1,
        }
    }
    let empty = Vec::new();
    for c in clients {
        let want = pg.get(&c.user).unwrap_or(&empty);
        v.duplicates += c.duplicates;
        v.order_violations += c.order_violations;
        v.resyncs += c.resyncs;
        if c.terminal_close.is_some() {
            v.terminal_closes += 1;
        }
        if c.held != *want {
            let held: HashSet<&str> = c.held.iter().map(|x| x.1.as_str()).collect();
            let wanted: HashSet<&str> = want.iter().map(|x| x.1.as_str()).collect();
            let missing = wanted.difference(&held).count();
            let extra = held.difference(&wanted).count();
            v.missing_on_clients += missing;
            v.extra_on_clients += extra;
            if missing == 0 && extra == 0 {
                v.order_violations += 1;
            }
        }
    }
    if v.acked_missing_in_pg > 0 {
        v.problems.push(format!(
            "{} acknowledged publishes are not in PostgreSQL",
            v.acked_missing_in_pg
        ));
    }
    if v.pg_gaps > 0 {
        v.problems
            .push(format!("{} seq gaps in PostgreSQL", v.pg_gaps));
    }
    if v.missing_on_clients > 0 {
        v.problems.push(format!(
            "{} (socket, notification) pairs missing on clients",
            v.missing_on_clients
        ));
    }
    if v.extra_on_clients > 0 {
        v.problems.push(format!(
            "{} notifications held by clients that PostgreSQL lacks",
            v.extra_on_clients
        ));
    }
    if v.duplicates > 0 {
        v.problems
            .push(format!("{} duplicate deliveries", v.duplicates));
    }
    if v.order_violations > 0 {
        v.problems
            .push(format!("{} out-of-order deliveries", v.order_violations));
    }
    if v.resyncs > 0 {
        v.problems.push(format!("{} resync events", v.resyncs));
    }
    if v.terminal_closes > 0 {
        v.problems.push(format!(
            "{} sockets got a terminal close",
            v.terminal_closes
        ));
    }
    v
}

/// p50/p90/p99/max of a sample (ms).
pub fn percentiles(xs: &[f64]) -> Value {
    if xs.is_empty() {
        return json!({ "n": 0 });
    }
    let mut s = xs.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let p = |q: f64| s[((s.len() as f64 - 1.0) * q).round() as usize];
    json!({
        "n": s.len(),
        "min_ms": round1(s[0]),
        "p50_ms": round1(p(0.5)),
        "p90_ms": round1(p(0.9)),
        "p99_ms": round1(p(0.99)),
        "max_ms": round1(s[s.len() - 1]),
    })
}

pub fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Counts of `ts` (seconds) per bucket of `width` seconds starting at `from`.
pub fn histogram(ts: &[f64], from: f64, width: f64) -> Vec<u64> {
    let mut h: Vec<u64> = Vec::new();
    for &t in ts {
        let b = ((t - from) / width).floor().max(0.0) as usize;
        if h.len() <= b {
            h.resize(b + 1, 0);
        }
        h[b] += 1;
    }
    h
}

pub fn print_histogram(title: &str, h: &[u64], width: f64) {
    eprintln!("[chaos] {title}");
    let max = h.iter().copied().max().unwrap_or(1).max(1);
    for (i, n) in h.iter().enumerate() {
        let bar = "#".repeat(((*n as f64 / max as f64) * 50.0).round() as usize);
        eprintln!(
            "[chaos]   {:>6.2}s–{:<6.2}s {:>5} {bar}",
            i as f64 * width,
            (i + 1) as f64 * width,
            n
        );
    }
}

/// Appends one JSON line to target/chaos-results.jsonl and prints it.
pub fn record(scenario: &str, mut figures: Value) {
    figures["scenario"] = json!(scenario);
    figures["variant"] = json!(variant());
    figures["at"] = json!(chrono::Utc::now().to_rfc3339());
    let line = format!("{figures}\n");
    eprintln!("[chaos] RESULT {}", line.trim_end());
    let path = target_dir().join("chaos-results.jsonl");
    if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(&path) {
        let _ = f.write_all(line.as_bytes());
    }
}

/// The port of PostgreSQL in [`admin_url`].
pub fn pg_port() -> u16 {
    let url = admin_url();
    url.rsplit_once(':')
        .and_then(|(_, rest)| rest.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or(5432)
}

/// A TCP proxy on loopback (as in crates/herald-gateway/tests/api/helpers.rs) that passes
/// traffic or cuts every connection and refuses new ones.
pub struct FaultProxy {
    pub port: u16,
    cutting: Arc<AtomicBool>,
    cut: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    pub async fn start(upstream_port: u16) -> FaultProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let cutting = Arc::new(AtomicBool::new(false));
        let (cut, _) = watch::channel(0u64);
        let c = cutting.clone();
        let cut_tx = cut.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                if c.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let mut cut_rx = cut_tx.subscribe();
                tokio::spawn(async move {
                    let Ok(Ok(server)) = tokio::time::timeout(
                        Duration::from_secs(5),
                        tokio::net::TcpStream::connect(("127.0.0.1", upstream_port)),
                    )
                    .await
                    else {
                        return;
                    };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    tokio::select! {
                        _ = tokio::io::copy(&mut cr, &mut sw) => {}
                        _ = tokio::io::copy(&mut sr, &mut cw) => {}
                        _ = cut_rx.changed() => {}
                    }
                });
            }
        });
        FaultProxy {
            port,
            cutting,
            cut,
            task,
        }
    }

    /// Cut every open connection and refuse new ones (true), or pass traffic again (false).
    pub fn set_cut(&self, on: bool) {
        self.cutting.store(on, Ordering::SeqCst);
        if on {
            self.cut.send_modify(|n| *n += 1);
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut.send_modify(|n| *n += 1);
    }
}
