//! Test harness: real gateway nodes on port 0, each test with its own PostgreSQL database
//! and Redis key prefix (so tests run in parallel), and a real WebSocket client.
#![allow(dead_code)] // shared helpers: not every test module uses every one

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use herald_gateway::{Application, Config, NodeHandle};
use herald_protocol::ws::ServerMessage;
use herald_protocol::Notification;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as TCloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const SERVICE_KEY: &str = "test-service-key-0123456789";
pub const SECRET: &str = "test-hs256-secret-0123456789abcdef0123456789";
pub const ORIGIN: &str = "http://app.test";
/// How long any single wait in a test may take before it fails instead of hanging.
pub const WAIT: Duration = Duration::from_secs(10);

pub use herald_testkit::{admin_url, redis_url, PrivateRedis};

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// One test's world: a fresh migrated database and a unique Redis prefix.
pub struct TestEnv {
    pub db_name: String,
    pub db_url: String,
    pub prefix: String,
    pub redis_url: Option<String>,
    /// Redis Cluster seeds (`HERALD_REDIS_CLUSTER_NODES`) instead of `redis_url`.
    pub cluster_nodes: Option<String>,
    /// Dropped (with the database) when the test ends.
    _db: herald_testkit::Database,
}

impl TestEnv {
    /// A database and prefix of its own, joined to the shared Redis; or, with
    /// `HERALD_TEST_BUS=cluster`, to the local Redis Cluster (`HERALD_TEST_REDIS_CLUSTER`), so
    /// the same suite runs against either bus.
    pub async fn new() -> TestEnv {
        if std::env::var("HERALD_TEST_BUS").as_deref() == Ok("cluster") {
            let seeds = std::env::var("HERALD_TEST_REDIS_CLUSTER")
                .expect("HERALD_TEST_BUS=cluster needs HERALD_TEST_REDIS_CLUSTER (scripts/redis-cluster.sh seeds)");
            return TestEnv::with_cluster(seeds).await;
        }
        TestEnv::with_redis(Some(redis_url())).await
    }

    /// Nodes on the Redis Cluster with these seeds (comma-separated `host:port`).
    pub async fn with_cluster(seeds: String) -> TestEnv {
        let mut env = TestEnv::with_redis(None).await;
        env.cluster_nodes = Some(seeds);
        env
    }

    pub async fn with_redis(redis_url: Option<String>) -> TestEnv {
        let db = herald_testkit::Database::create("herald_test").await;
        let store = herald_store::Store::connect(&herald_store::StoreConfig {
            url: db.url.clone(),
            pool_size: 1,
            statement_timeout_ms: 30_000,
            connect_timeout_ms: 5_000,
        })
        .await
        .expect("connect to test database");
        store.migrate().await.expect("migrate");
        TestEnv {
            db_name: db.name.clone(),
            db_url: db.url.clone(),
            prefix: format!("test:{}:", uuid::Uuid::new_v4().simple()),
            redis_url,
            cluster_nodes: None,
            _db: db,
        }
    }

    /// Config for a node of this env: port 0, fast timers; tests adjust it further.
    pub fn config(&self) -> Config {
        let mut v: HashMap<String, String> = HashMap::new();
        let mut set = |k: &str, val: &str| {
            v.insert(k.to_string(), val.to_string());
        };
        set("HERALD_LISTEN", "127.0.0.1:0");
        set("HERALD_ADMIN_LISTEN", "127.0.0.1:0");
        set("HERALD_DATABASE_URL", &self.db_url);
        set("HERALD_DATABASE_POOL_SIZE", "8");
        set("HERALD_REDIS_PREFIX", &self.prefix);
        set("HERALD_SERVICE_KEYS", SERVICE_KEY);
        set("HERALD_JWT_HS256_SECRET", SECRET);
        // Test tokens carry neither `aud` nor `iss`; the tests of both set them.
        set("HERALD_JWT_ALLOW_ANY_AUDIENCE", "true");
        set("HERALD_JWT_ALLOW_ANY_ISSUER", "true");
        set("HERALD_ALLOWED_ORIGINS", ORIGIN);
        set("HERALD_WORKERS", "1");
        set("HERALD_RECONCILE_INTERVAL_MS", "1000");
        set("HERALD_PROBE_INTERVAL_MS", "300");
        set("HERALD_PROBE_TIMEOUT_MS", "1500");
        set("HERALD_DRAIN_SPREAD_MS", "300");
        set("HERALD_DRAIN_GRACE_MS", "2000");
        // Every test client is on loopback and some hammer the API on purpose: the edge
        // limits are off here, and the tests of those limits turn them on (abuse.rs).
        set("HERALD_LIMIT_EXEMPT", "127.0.0.0/8");
        for var in [
            "HERALD_USER_API_RATE_PER_SEC",
            "HERALD_USER_API_RATE_BURST",
            "HERALD_PUBLISH_RATE_PER_SEC",
            "HERALD_PUBLISH_RATE_BURST",
            "HERALD_BROADCAST_RATE_PER_SEC",
            "HERALD_BROADCAST_RATE_BURST",
        ] {
            set(var, "1000000");
        }
        if let Some(r) = &self.redis_url {
            set("HERALD_REDIS_URL", r);
        }
        if let Some(seeds) = &self.cluster_nodes {
            set("HERALD_REDIS_CLUSTER_NODES", seeds);
        }
        Config::from_values(v).expect("test config")
    }

    pub async fn node(&self) -> TestNode {
        self.node_with(|_| {}).await
    }

    pub async fn node_with(&self, tweak: impl FnOnce(&mut Config)) -> TestNode {
        let mut cfg = self.config();
        tweak(&mut cfg);
        spawn_node(cfg).await
    }

    pub async fn sql(&self) -> tokio_postgres::Client {
        herald_testkit::connect(&self.db_url).await
    }

    /// A store on this env's database, for calling what a node's background tasks call.
    pub async fn store(&self) -> herald_store::Store {
        herald_store::Store::connect(&herald_store::StoreConfig {
            url: self.db_url.clone(),
            pool_size: 1,
            statement_timeout_ms: 30_000,
            connect_timeout_ms: 5_000,
        })
        .await
        .expect("connect to test database")
    }
}

pub async fn spawn_node(cfg: Config) -> TestNode {
    let app = Application::build(cfg).await.expect("build node");
    let port = app.port();
    let admin = app
        .admin_port()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .unwrap_or_default();
    let handle = app.handle();
    tokio::spawn(app.run_until_stopped());
    TestNode {
        base: format!("http://127.0.0.1:{port}"),
        admin,
        ws: format!("ws://127.0.0.1:{port}/v1/ws"),
        handle,
        http: reqwest::Client::new(),
    }
}

pub struct TestNode {
    pub base: String,
    /// The admin listener (`/metrics`), empty if the node has none.
    pub admin: String,
    pub ws: String,
    pub handle: NodeHandle,
    pub http: reqwest::Client,
}

pub fn token(user: &str, ttl_secs: i64) -> String {
    token_claims(json!({ "sub": user, "exp": chrono::Utc::now().timestamp() + ttl_secs }))
}

pub fn token_claims(claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("encode token")
}

pub fn notification_body(user: &str, title: &str) -> Value {
    json!({ "recipient": user, "type": "comment.created", "title": title, "body": "b" })
}

impl TestNode {
    pub async fn publish(&self, body: &Value) -> reqwest::Response {
        self.http
            .post(format!("{}/v1/notifications", self.base))
            .bearer_auth(SERVICE_KEY)
            .json(body)
            .send()
            .await
            .expect("publish request")
    }

    /// The value of one series in the admin listener's `/metrics` (its name with any labels,
    /// as exported); 0 when it is absent.
    pub async fn metric(&self, name: &str) -> i64 {
        let text = self
            .http
            .get(format!("{}/metrics", self.admin))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Publishes one notification to `user` and returns its seq.
    /// Polls `/readyz` until its `status` is `want` (readiness follows the node's background
    /// dependency check); returns the HTTP status and body.
    pub async fn ready_until(&self, want: &str) -> (u16, Value) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let r = self
                .http
                .get(format!("{}/readyz", self.base))
                .send()
                .await
                .expect("GET /readyz");
            let status = r.status().as_u16();
            let body: Value = r.json().await.expect("readyz body");
            if body["status"] == want {
                return (status, body);
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "/readyz never reported {want}: {body}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the delivery tracker has completed two interval flushes from now, so
    /// every delivery recorded before the call is written (or a wrong write would show).
    pub async fn deliveries_flushed(&self) {
        let name = "herald_delivery_flushes_total";
        let want = self.metric(name).await + 2;
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.metric(name).await < want {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the delivery tracker did not flush"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn publish_one(&self, user: &str, title: &str) -> i64 {
        let r = self.publish(&notification_body(user, title)).await;
        assert_eq!(r.status(), 201, "publish failed: {:?}", r.text().await);
        let v: Value = r.json().await.expect("publish json");
        v["notifications"][0]["seq"].as_i64().expect("seq")
    }

    pub async fn get(&self, path: &str, user_token: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(user_token)
            .send()
            .await
            .expect("GET")
    }

    pub async fn post(
        &self,
        path: &str,
        user_token: &str,
        body: Option<Value>,
    ) -> reqwest::Response {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(user_token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send().await.expect("POST")
    }

    /// Opens a socket with the token in the Authorization header.
    pub async fn connect(&self, user: &str) -> Ws {
        self.connect_opts(Some(&token(user, 3600)), None, &[])
            .await
            .expect("ws connect")
    }

    pub async fn connect_opts(
        &self,
        bearer: Option<&str>,
        query: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
        let url = match query {
            Some(q) => format!("{}?{q}", self.ws),
            None => self.ws.clone(),
        };
        let mut req = url.into_client_request()?;
        if let Some(b) = bearer {
            req.headers_mut().insert(
                "authorization",
                format!("Bearer {b}").parse().expect("header"),
            );
        }
        for (k, v) in headers {
            req.headers_mut()
                .insert(http_name(k), v.parse().expect("header value"));
        }
        let (stream, _) = tokio_tungstenite::connect_async(req).await?;
        Ok(Ws { stream })
    }

    /// Opens a socket the browser way: Origin header and a first `auth` message.
    pub async fn connect_browser(&self, token: &str, last_seq: Option<i64>) -> Ws {
        let mut ws = self
            .connect_opts(None, None, &[("origin", ORIGIN)])
            .await
            .expect("ws connect");
        ws.send(json!({ "type": "auth", "token": token, "last_seq": last_seq }))
            .await;
        ws
    }
}

fn http_name(k: &str) -> tokio_tungstenite::tungstenite::http::HeaderName {
    tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes()).expect("header name")
}

pub struct Ws {
    pub stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // test-only; boxing would only add noise at every match
pub enum Got {
    Event(ServerMessage),
    Closed(u16, String),
}

impl Ws {
    pub async fn send(&mut self, v: Value) {
        self.stream
            .send(Message::Text(v.to_string().into()))
            .await
            .expect("ws send");
    }

    pub async fn send_text(&mut self, s: String) {
        self.stream
            .send(Message::Text(s.into()))
            .await
            .expect("ws send");
    }

    /// The next event or the close, skipping control frames; fails after [`WAIT`].
    pub async fn next(&mut self) -> Got {
        self.next_within(WAIT)
            .await
            .expect("timed out waiting for a server message")
    }

    pub async fn next_within(&mut self, d: Duration) -> Option<Got> {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            let m = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .ok()?;
            match m {
                None => return Some(Got::Closed(1006, "stream ended".into())),
                Some(Err(e)) => return Some(Got::Closed(1006, format!("error: {e}"))),
                Some(Ok(Message::Text(t))) => {
                    let ev: ServerMessage = serde_json::from_str(&t)
                        .unwrap_or_else(|e| panic!("undecodable server message {t}: {e}"));
                    return Some(Got::Event(ev));
                }
                Some(Ok(Message::Close(c))) => {
                    return Some(match c {
                        Some(f) => Got::Closed(u16::from(f.code), f.reason.to_string()),
                        None => Got::Closed(1005, String::new()),
                    })
                }
                Some(Ok(_)) => continue,
            }
        }
    }

    pub async fn event(&mut self) -> ServerMessage {
        match self.next().await {
            Got::Event(e) => e,
            Got::Closed(c, r) => panic!("expected an event, socket closed {c} {r}"),
        }
    }

    pub async fn expect_close(&mut self) -> (u16, String) {
        loop {
            match self.next().await {
                Got::Closed(c, r) => return (c, r),
                Got::Event(_) => continue,
            }
        }
    }

    /// Reads `connected` and the initial catch-up; returns them.
    pub async fn handshake(&mut self) -> (ServerMessage, Vec<Notification>) {
        let connected = self.event().await;
        assert!(
            matches!(connected, ServerMessage::Connected { .. }),
            "expected connected, got {connected:?}"
        );
        let mut got = Vec::new();
        loop {
            match self.event().await {
                ServerMessage::Batch {
                    notifications,
                    complete,
                    ..
                } => {
                    got.extend(notifications);
                    if complete {
                        return (connected, got);
                    }
                }
                ServerMessage::Resync { .. } => continue,
                other => panic!("unexpected event during catch-up: {other:?}"),
            }
        }
    }

    /// Collects notifications (live or batched) until one with `seq >= upto` arrives.
    pub async fn notifications_until(&mut self, upto: i64) -> Vec<Notification> {
        let mut got: Vec<Notification> = Vec::new();
        while got.last().map(|n| n.seq).unwrap_or(0) < upto {
            match self.event().await {
                ServerMessage::Notification { notification, .. } => got.push(notification),
                ServerMessage::Batch { notifications, .. } => got.extend(notifications),
                _ => {}
            }
        }
        got
    }

    pub async fn close(mut self) {
        let _ = self
            .stream
            .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
                code: TCloseCode::Normal,
                reason: "bye".into(),
            }))
            .await;
    }
}

/// Asserts the seqs are exactly `from..=to`, in order, each once.
pub fn assert_seqs(got: &[Notification], from: i64, to: i64) {
    let seqs: Vec<i64> = got.iter().map(|n| n.seq).collect();
    let want: Vec<i64> = (from..=to).collect();
    assert_eq!(
        seqs, want,
        "expected seqs {from}..={to} exactly once, in order"
    );
}

/// A TCP proxy on loopback that a test can switch between passing traffic, cutting every
/// connection (and refusing new ones), and a one-way blackhole (server → client bytes are
/// dropped while the connection stays open), or stalling (nothing read from the upstream).
pub struct FaultProxy {
    pub port: u16,
    mode: std::sync::Arc<std::sync::atomic::AtomicU8>,
    cut: tokio::sync::watch::Sender<u64>,
}

pub const PASS: u8 = 0;
pub const CUT: u8 = 1;
pub const BLACKHOLE: u8 = 2;
/// Stop reading from the upstream (so its send buffers fill), keep the connection open.
pub const STALL: u8 = 3;

impl FaultProxy {
    pub async fn start(upstream_port: u16) -> FaultProxy {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let mode = std::sync::Arc::new(std::sync::atomic::AtomicU8::new(PASS));
        let (cut, _) = tokio::sync::watch::channel(0u64);
        let m = mode.clone();
        let cut_tx = cut.clone();
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                if m.load(Ordering::SeqCst) == CUT {
                    drop(client);
                    continue;
                }
                // A small, fixed receive buffer (no autotuning), so STALL backs up into the
                // upstream quickly instead of into megabytes of kernel buffers.
                let Ok(sock) = tokio::net::TcpSocket::new_v4() else {
                    continue;
                };
                let _ = sock.set_recv_buffer_size(8 * 1024);
                let Ok(server) = sock.connect(([127, 0, 0, 1], upstream_port).into()).await else {
                    continue;
                };
                let m = m.clone();
                let mut cut_rx = cut_tx.subscribe();
                tokio::spawn(async move {
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let up = tokio::io::copy(&mut cr, &mut sw);
                    let down = async {
                        use tokio::io::{AsyncReadExt, AsyncWriteExt};
                        let mut buf = vec![0u8; 16 * 1024];
                        loop {
                            while m.load(Ordering::SeqCst) == STALL {
                                tokio::time::sleep(Duration::from_millis(10)).await;
                            }
                            let n = sr.read(&mut buf).await?;
                            if n == 0 {
                                return Ok::<_, std::io::Error>(());
                            }
                            if m.load(Ordering::SeqCst) != BLACKHOLE {
                                cw.write_all(&buf[..n]).await?;
                            }
                        }
                    };
                    tokio::select! {
                        _ = up => {}
                        _ = down => {}
                        _ = cut_rx.changed() => {}
                    }
                });
            }
        });
        FaultProxy { port, mode, cut }
    }

    pub fn set(&self, mode: u8) {
        self.mode.store(mode, std::sync::atomic::Ordering::SeqCst);
        if mode == CUT {
            self.cut.send_modify(|n| *n += 1);
        }
    }
}
