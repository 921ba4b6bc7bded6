//! What every Herald test harness needs (the gateway's, the store's, the bus's and the fault
//! suite's): a PostgreSQL database of its own, a private `redis-server`, and waits that poll
//! with a bound instead of sleeping. A test harness: a failure here panics with what failed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::time::Instant;

pub mod cluster;
pub mod tls;

/// The PostgreSQL database tests create theirs from (`HERALD_TEST_DATABASE_URL`).
pub fn admin_url() -> String {
    std::env::var("HERALD_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// The shared Redis (`HERALD_TEST_REDIS_URL`); tests keep apart by key prefix.
pub fn redis_url() -> String {
    std::env::var("HERALD_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// `url` with its database name replaced by `db` (a query string is kept).
pub fn with_db(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_start = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[authority_start..].find('/') {
        Some(i) => &base[..authority_start + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

/// A client on `url`, its connection driven by a task.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_postgres::connect(url, tokio_postgres::NoTls),
    )
    .await
    .unwrap_or_else(|_| panic!("connecting to {url} timed out"))
    .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// A fresh, empty database named `<prefix>_<uuid>`, dropped when the value is (unless
/// [`Database::keep`] was called). `scripts/test.sh` also sweeps leftovers of killed runs.
pub struct Database {
    pub name: String,
    pub url: String,
    keep: bool,
}

impl Database {
    pub async fn create(prefix: &str) -> Database {
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        connect(&admin_url())
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        let url = with_db(&admin_url(), &name);
        Database {
            name,
            url,
            keep: false,
        }
    }

    /// Leave the database behind for inspection (the fault suite's runs).
    pub fn keep(mut self) -> Database {
        self.keep = true;
        self
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        connect(&self.url).await
    }
}

/// Best effort, on a thread of its own (a drop may run inside or outside a runtime).
/// `WITH (FORCE)` ends the pooled connections of nodes that outlive the test.
impl Drop for Database {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok((c, conn)) =
                    tokio_postgres::connect(&admin_url(), tokio_postgres::NoTls).await
                {
                    tokio::spawn(conn);
                    let _ = c
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}

/// Polls `check` every 25 ms until it holds or `bound` has passed; whether it held.
pub async fn eventually<F, Fut>(bound: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + bound;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A free loopback port (bound and released: good enough for a test's own server).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .expect("local addr")
        .port()
}

/// A private `redis-server` on loopback, for tests that stop, freeze or restart Redis.
/// Killed (and thawed first, if frozen) when dropped.
pub struct PrivateRedis {
    pub port: u16,
    child: Option<Child>,
    /// Extra `redis-server` arguments (ACL users, …), kept for restarts.
    args: Vec<String>,
}

impl PrivateRedis {
    /// On a free port.
    pub async fn start() -> PrivateRedis {
        PrivateRedis::start_on(free_port(), &[]).await
    }

    /// On a free port, with extra `redis-server` arguments, e.g. `--user` lines.
    pub async fn start_with(args: &[&str]) -> PrivateRedis {
        PrivateRedis::start_on(free_port(), args).await
    }

    /// On `port`, with extra arguments; returns once it accepts connections.
    pub async fn start_on(port: u16, args: &[&str]) -> PrivateRedis {
        let mut r = PrivateRedis {
            port,
            child: None,
            args: args.iter().map(|a| a.to_string()).collect(),
        };
        r.restart().await;
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts it (again) on its port with its arguments.
    pub async fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(&self.args)
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server (is it installed?)");
        self.child = Some(child);
        let port = self.port;
        let up = eventually(Duration::from_secs(10), || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await;
        assert!(up, "private redis-server on {port} did not start");
    }

    /// Freezes the server (SIGSTOP): connections stay open and nothing is answered, as in a
    /// hung Redis. [`PrivateRedis::resume`] thaws it.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("redis running").id().to_string();
        let ok = Command::new("kill")
            .args([sig, &pid])
            .status()
            .expect("run kill");
        assert!(ok.success(), "kill {sig} {pid}");
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.resume();
        }
        self.kill();
    }
}
