//! The processes under test: a private Redis, a database per test, gateway nodes, HAProxy in
//! front, and the [`Cluster`] of all of them.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::process::{free_port, herald_bin, wait_port, Proc};
use crate::settings::{
    admin_url, target_dir, DRAIN_GRACE_MS, DRAIN_SPREAD_MS, SECRET, SERVICE_KEY,
};

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
    /// A database of the run's own, kept afterwards for inspection.
    pub async fn create() -> Db {
        let db = herald_testkit::Database::create("herald_chaos")
            .await
            .keep();
        Db {
            name: db.name.clone(),
            url: db.url.clone(),
        }
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        herald_testkit::connect(&self.url).await
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
    /// The admin listener (`/metrics`).
    pub admin_port: u16,
    env: Vec<(String, String)>,
    log: PathBuf,
    pub proc: Option<Proc>,
    pub starts: u32,
}

impl Node {
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The admin listener's base URL (`/metrics`).
    pub fn admin(&self) -> String {
        format!("http://127.0.0.1:{}", self.admin_port)
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
            let admin_port = free_port();
            let nid = format!("n{i}");
            let env: Vec<(String, String)> = [
                ("HERALD_LISTEN", format!("127.0.0.1:{port}")),
                ("HERALD_ADMIN_LISTEN", format!("127.0.0.1:{admin_port}")),
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
                // Thousands of sockets and publishes from loopback, through haproxy: the
                // edge limits are for real clients, not for this suite.
                ("HERALD_LIMIT_EXEMPT", "127.0.0.0/8".into()),
                // The suite signs its own tokens (sub and exp only).
                ("HERALD_JWT_ALLOW_ANY_AUDIENCE", "true".into()),
                ("HERALD_JWT_ALLOW_ANY_ISSUER", "true".into()),
                ("HERALD_PUBLISH_RATE_PER_SEC", "10000000".into()),
                ("HERALD_PUBLISH_RATE_BURST", "10000000".into()),
                ("HERALD_USER_API_RATE_PER_SEC", "10000000".into()),
                ("HERALD_USER_API_RATE_BURST", "10000000".into()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
            nodes.push(Node {
                id: nid.clone(),
                port,
                admin_port,
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
