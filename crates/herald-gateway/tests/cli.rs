//! The `herald` binary: config errors name the variable and exit non-zero before anything
//! starts; `migrate` and `token` need only their own settings, `openapi` none.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test harness: a panic is a failed test

use std::process::Command;

fn herald() -> Command {
    without_herald_env(Command::new(env!("CARGO_BIN_EXE_herald")))
}

/// The test runner's own HERALD_* variables never leak into a child.
fn without_herald_env(mut c: Command) -> Command {
    for (k, _) in std::env::vars() {
        if k.starts_with("HERALD_") {
            c.env_remove(k);
        }
    }
    c
}

use herald_testkit::admin_url;

#[test]
fn serve_refuses_bad_config_naming_the_variable() {
    let cases: [(&[(&str, &str)], &str); 5] = [
        (&[], "HERALD_DATABASE_URL"),
        (
            &[("HERALD_DATABASE_URL", "postgres://x@127.0.0.1/db")],
            "HERALD_SERVICE_KEYS",
        ),
        (
            &[
                ("HERALD_DATABASE_URL", "postgres://x@127.0.0.1/db"),
                ("HERALD_SERVICE_KEYS", "0123456789abcdef"),
                (
                    "HERALD_JWT_HS256_SECRET",
                    "0123456789abcdef0123456789abcdef",
                ),
                ("HERALD_JWT_AUDIENCE", "herald"),
                ("HERALD_JWT_ISSUER", "https://id.example"),
                ("HERALD_OUTBOUND_QUEUE", "many"),
            ],
            "HERALD_OUTBOUND_QUEUE",
        ),
        // Tokens for any audience are accepted only by an explicit opt-out.
        (
            &[
                ("HERALD_DATABASE_URL", "postgres://x@127.0.0.1/db"),
                ("HERALD_SERVICE_KEYS", "0123456789abcdef"),
                (
                    "HERALD_JWT_HS256_SECRET",
                    "0123456789abcdef0123456789abcdef",
                ),
            ],
            "HERALD_JWT_AUDIENCE",
        ),
        (
            &[
                ("HERALD_DATABASE_URL", "postgres://x@127.0.0.1/db"),
                ("HERALD_SERVICE_KEYS", "0123456789abcdef"),
                (
                    "HERALD_JWT_HS256_SECRET",
                    "0123456789abcdef0123456789abcdef",
                ),
                ("HERALD_JWT_AUDIENCE", "herald"),
                ("HERALD_JWT_ISSUER", "https://id.example"),
                ("HERALD_ALLOWED_ORIGINS", "https://ok.example,null"),
            ],
            "HERALD_ALLOWED_ORIGINS",
        ),
    ];
    for (env, var) in cases {
        let out = herald()
            .arg("serve")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{var}: expected failure");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(var), "{var} not named in: {stderr}");
        // The secret values never appear in the error output.
        assert!(!stderr.contains("0123456789abcdef0123456789abcdef"));
    }
}

#[test]
fn config_file_is_read_and_env_overrides_it() {
    let dir = std::env::temp_dir().join(format!("herald-cli-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("herald.toml");
    std::fs::write(
        &file,
        "jwt_hs256_secret = \"0123456789abcdef0123456789abcdef\"\njwt_audience = \"from-file\"\njwt_issuer = \"https://id.example\"\n",
    )
    .unwrap();
    let out = herald()
        .args([
            "--config",
            file.to_str().unwrap(),
            "token",
            "--user",
            "alice",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    v.set_audience(&["from-file"]);
    let data = jsonwebtoken::decode::<serde_json::Value>(
        token.trim(),
        &jsonwebtoken::DecodingKey::from_secret(b"0123456789abcdef0123456789abcdef"),
        &v,
    )
    .unwrap();
    assert_eq!(data.claims["sub"], "alice");
    // A bad value in the file is named too.
    std::fs::write(&file, "jwt_hs256_secret = \"short\"\n").unwrap();
    let out = herald()
        .args([
            "--config",
            file.to_str().unwrap(),
            "token",
            "--user",
            "alice",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("HERALD_JWT_HS256_SECRET"));
    let _ = std::fs::remove_dir_all(dir);
}

/// `herald openapi` needs no configuration and prints exactly the committed docs/openapi.json.
#[test]
fn openapi_prints_the_committed_document_without_config() {
    let out = herald().arg("openapi").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(
        printed == include_str!("../../../docs/openapi.json"),
        "herald openapi differs from docs/openapi.json: run scripts/gen-openapi.sh"
    );
}

#[test]
fn migrate_needs_only_the_database_url_and_is_idempotent() {
    let db = format!("herald_test_cli_{}", uuid::Uuid::new_v4().simple());
    let admin = admin_url();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (c, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        c.batch_execute(&format!("CREATE DATABASE {db}"))
            .await
            .unwrap();
    });
    let url = format!("{}/{db}", &admin[..admin.rfind('/').unwrap()]);
    for expect in ["[1, 2, 3, 4, 5, 6, 7, 8]", "[]"] {
        let out = herald()
            .arg("migrate")
            .env("HERALD_DATABASE_URL", &url)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains(expect));
    }
    let out = herald()
        .arg("migrate")
        .env("HERALD_DATABASE_URL", "mysql://nope")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("HERALD_DATABASE_URL"));
}

/// A running `herald serve` process with its output captured.
struct Served {
    child: std::process::Child,
    port: u16,
    /// The admin listener (`/metrics`).
    admin_port: u16,
    db: String,
}

impl Served {
    fn start() -> Served {
        Served::start_with(None, &[])
    }

    /// Starts `herald serve`, under `prlimit --nofile=N:N` when `nofile` is set, with extra
    /// environment variables overriding the defaults.
    fn start_with(nofile: Option<u32>, extra: &[(&str, &str)]) -> Served {
        let db = format!("herald_test_cli_{}", uuid::Uuid::new_v4().simple());
        let admin = admin_url();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (c, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            c.batch_execute(&format!("CREATE DATABASE {db}"))
                .await
                .unwrap();
        });
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let admin_port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("{}/{db}", &admin[..admin.rfind('/').unwrap()]);
        let mut cmd = match nofile {
            None => herald(),
            Some(n) => {
                let mut c = without_herald_env(Command::new("prlimit"));
                c.arg(format!("--nofile={n}:{n}"))
                    .arg(env!("CARGO_BIN_EXE_herald"));
                c
            }
        };
        let child = cmd
            .arg("serve")
            .envs([
                ("HERALD_LISTEN", format!("127.0.0.1:{port}")),
                ("HERALD_ADMIN_LISTEN", format!("127.0.0.1:{admin_port}")),
                ("HERALD_DATABASE_URL", url),
                ("HERALD_MIGRATE_ON_START", "true".into()),
                ("HERALD_SERVICE_KEYS", "cli-service-key-0123456789".into()),
                (
                    "HERALD_JWT_HS256_SECRET",
                    "0123456789abcdef0123456789abcdef".into(),
                ),
                // The tests' tokens carry neither `aud` nor `iss`.
                ("HERALD_JWT_ALLOW_ANY_AUDIENCE", "true".into()),
                ("HERALD_JWT_ALLOW_ANY_ISSUER", "true".into()),
                ("HERALD_ALLOWED_ORIGINS", "http://app.test".into()),
                ("HERALD_LOG", "debug".into()),
            ])
            .envs(extra.iter().map(|(k, v)| (*k, v.to_string())))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "herald serve did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Served {
            child,
            port,
            admin_port,
            db,
        }
    }

    /// Stops the process (SIGTERM, then kill) and returns everything it printed.
    fn stop(self) -> String {
        self.stop_then(|_| {})
    }

    /// As [`Served::stop`], running `check` with the database URL once the process has
    /// exited and before its database is dropped.
    fn stop_then(mut self, check: impl FnOnce(&str)) -> String {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        while self.child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let out = self.child.wait_with_output().unwrap();
        let admin = admin_url();
        let db = self.db.clone();
        check(&format!("{}/{db}", &admin[..admin.rfind('/').unwrap()]));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            if let Ok((c, conn)) = tokio_postgres::connect(&admin, tokio_postgres::NoTls).await {
                tokio::spawn(conn);
                let _ = c
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
                    .await;
            }
        });
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

fn raw_request(port: u16, request: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).to_string()
}

/// Tokens sent in the URL are refused and never written to the log, even at debug level;
/// neither are tokens or service keys sent properly in headers.
#[test]
fn tokens_never_reach_the_logs() {
    let served = Served::start();
    let secret_token = "eyJhbGciOiJIUzI1NiJ9.SECRET-TOKEN-IN-URL.c2lnbmF0dXJl";
    let header_token = "eyJhbGciOiJIUzI1NiJ9.SECRET-TOKEN-IN-HEADER.c2lnbmF0dXJl";
    for path in [
        format!("/v1/ws?token={secret_token}"),
        format!("/v1/notifications?access_token={secret_token}"),
        format!("/v1/notifications?limit=5&jwt={secret_token}"),
    ] {
        let resp = raw_request(
            served.port,
            &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        );
        assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
        assert!(resp.contains("token_in_url"), "{resp}");
    }
    let resp = raw_request(
        served.port,
        &format!("GET /v1/notifications HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {header_token}\r\nConnection: close\r\n\r\n"),
    );
    assert!(resp.starts_with("HTTP/1.1 401"), "{resp}");
    let resp = raw_request(
        served.port,
        "POST /v1/notifications HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer cli-service-key-0123456789\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
    );
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    let log = served.stop();
    assert!(
        log.contains("refused a token in the URL"),
        "the refusal was not logged at all:\n{log}"
    );
    for secret in [
        "SECRET-TOKEN-IN-URL",
        "SECRET-TOKEN-IN-HEADER",
        "cli-service-key-0123456789",
        "0123456789abcdef0123456789abcdef",
    ] {
        assert!(
            !log.contains(secret),
            "{secret} appeared in the log:\n{log}"
        );
    }
}

/// The request log names the client (from `X-Forwarded-For` when the peer is a trusted
/// proxy) and, for the user API, the user; a WebSocket upgrade names the client too.
#[test]
fn the_request_log_names_the_client_and_the_user() {
    let served = Served::start_with(
        None,
        &[
            ("HERALD_TRUSTED_PROXIES", "127.0.0.1"),
            ("HERALD_LOG_FORMAT", "json"),
        ],
    );
    let tok = jwt("alice");
    let resp = raw_request(
        served.port,
        &format!("GET /v1/notifications/unread-count HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tok}\r\nX-Forwarded-For: 203.0.113.9\r\nConnection: close\r\n\r\n"),
    );
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let resp = raw_request(
        served.port,
        "GET /v1/ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://evil.example\r\nX-Forwarded-For: 198.51.100.4\r\n\r\n",
    );
    assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");
    let log = served.stop();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &serde_json::Value| v["fields"]["message"] == "request")
        .collect();
    let api = lines
        .iter()
        .find(|v| v["fields"]["path"] == "/v1/notifications/unread-count")
        .unwrap_or_else(|| panic!("no request line for the user API:\n{log}"));
    assert_eq!(api["fields"]["client"], "203.0.113.9", "{api}");
    assert_eq!(api["fields"]["user"], "alice", "{api}");
    let ws = lines
        .iter()
        .find(|v| v["fields"]["path"] == "/v1/ws")
        .unwrap_or_else(|| panic!("no request line for the upgrade:\n{log}"));
    assert_eq!(ws["fields"]["client"], "198.51.100.4", "{ws}");
}

/// A client that never finishes its request head (slowloris, or a half-open WebSocket
/// handshake) is cut off after the request-head timeout instead of holding a socket forever.
#[test]
fn slow_and_half_open_handshakes_are_timed_out() {
    use std::io::{Read, Write};
    let served = Served::start();
    let mut conns = vec![];
    for partial in [
        "GET /healthz HTTP/1.1\r\nHost: x\r\n".to_string(),
        "GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n".to_string(),
        "GET /v1/".to_string(),
    ] {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", served.port)).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(15))).unwrap();
        s.write_all(partial.as_bytes()).unwrap();
        conns.push(s);
    }
    let started = std::time::Instant::now();
    for mut s in conns {
        let mut buf = Vec::new();
        // The server answers 408 and/or closes: read_to_end returns instead of timing out.
        let r = s.read_to_end(&mut buf);
        assert!(r.is_ok(), "connection was not closed by the server: {r:?}");
        let text = String::from_utf8_lossy(&buf);
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 408"),
            "{text}"
        );
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(14));
    served.stop();
}

fn metric(port: u16, name: &str) -> Option<i64> {
    let text = raw_request(
        port,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
}

/// A node whose open-file limit is below HERALD_MAX_CONNECTIONS caps its sockets (with a
/// warning), and when a flood of connections exhausts its descriptors anyway it survives:
/// the accept loop backs off, the failures are counted, and once the flood is gone it serves
/// HTTP and WebSockets again.
#[test]
fn running_out_of_descriptors_is_survived() {
    let served = Served::start_with(
        Some(400),
        &[
            ("HERALD_MAX_CONNECTIONS", "10000"),
            ("HERALD_MAX_HTTP_CONNECTIONS", "256"),
            ("HERALD_DATABASE_POOL_SIZE", "4"),
            ("HERALD_LOG", "warn"),
        ],
    );
    let port = served.port;
    let admin = served.admin_port;
    // 400 - (4 pool + 16 + 256 plain HTTP connections) = 124 sockets at most.
    assert_eq!(metric(admin, "herald_max_connections"), Some(124));
    assert_eq!(metric(admin, "process_max_fds"), Some(400));
    // Flood: more connections than the node has descriptors. Each sends nothing, so the node
    // holds it until the request-head timeout.
    let flood: Vec<std::net::TcpStream> = (0..500)
        .filter_map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).ok())
        .collect();
    assert!(
        flood.len() > 400,
        "only {} connections were made",
        flood.len()
    );
    std::thread::sleep(std::time::Duration::from_millis(1500));
    drop(flood);
    // Bounded wait until the node answers again (the held connections time out in 5 s).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let errors = loop {
        let health = raw_request(
            port,
            "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        if health.starts_with("HTTP/1.1 200") {
            if let Some(n) = metric(admin, "herald_accept_errors_total") {
                break n;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the node did not recover after the flood"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    // Past 256 plain connections the node answers 503 and closes at once, so the flood
    // meets the HTTP connection cap, the descriptor limit, or both: each is counted.
    let capped = metric(admin, "herald_limited_total{limit=\"http_connections\"}").unwrap_or(0);
    assert!(
        errors + capped >= 1,
        "the flood was not counted (accept errors {errors}, capped {capped})"
    );
    let health = raw_request(
        port,
        "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    // A WebSocket still gets its `connected` event.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let tok = jwt("alice");
        let mut req = format!("ws://127.0.0.1:{port}/v1/ws")
            .into_client_request()
            .unwrap();
        req.headers_mut()
            .insert("authorization", format!("Bearer {tok}").parse().unwrap());
        let (mut ws, _) = tokio_tungstenite::connect_async(req)
            .await
            .expect("upgrade");
        let first = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
            .await
            .expect("connected in time")
            .expect("a message")
            .expect("no error");
        assert!(
            first.to_text().unwrap().contains("\"connected\""),
            "{first}"
        );
    });
    let out = served.stop();
    assert!(
        out.contains("the open-file limit is below HERALD_MAX_CONNECTIONS"),
        "{out}"
    );
    assert!(!out.contains("panicked"), "{out}");
}

/// An HS256 token for `user`, signed with the secret `Served` configures.
fn jwt(user: &str) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &serde_json::json!({"sub": user, "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef"),
    )
    .unwrap()
}

/// SIGTERM with delivery marks still waiting for their flush (a 10 s flush interval): the
/// node drains, and the marks are written before the process exits.
#[test]
fn delivery_marks_pending_at_sigterm_are_written() {
    let served = Served::start_with(None, &[("HERALD_DELIVERY_FLUSH_MS", "10000")]);
    let port = served.port;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = format!("ws://127.0.0.1:{port}/v1/ws")
            .into_client_request()
            .unwrap();
        req.headers_mut()
            .insert("authorization", format!("Bearer {}", jwt("alice")).parse().unwrap());
        let (mut ws, _) = tokio_tungstenite::connect_async(req).await.expect("upgrade");
        let published = raw_request(
            port,
            "POST /v1/notifications HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer cli-service-key-0123456789\r\nContent-Type: application/json\r\nContent-Length: 55\r\nConnection: close\r\n\r\n{\"recipient\":\"alice\",\"type\":\"t\",\"title\":\"x\",\"body\":\"b\"}",
        );
        assert!(published.starts_with("HTTP/1.1 201"), "{published}");
        // Read until the notification itself arrives on the socket (delivered).
        let deadline = std::time::Duration::from_secs(10);
        loop {
            let msg = tokio::time::timeout(deadline, ws.next())
                .await
                .expect("the notification in time")
                .expect("a message")
                .expect("no error");
            let text = msg.to_text().unwrap_or("");
            if text.contains("\"seq\":1") {
                break;
            }
        }
        // The socket stays open: the drain closes it.
        std::mem::forget(ws);
    });
    let out = served.stop_then(|db_url| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (c, conn) = tokio_postgres::connect(db_url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            let row = c
                .query_one(
                    "SELECT delivered_seq FROM user_state WHERE user_id = 'alice'",
                    &[],
                )
                .await
                .unwrap();
            let delivered: i64 = row.get(0);
            assert_eq!(
                delivered, 1,
                "the delivery mark pending at SIGTERM was lost"
            );
            let marks: i64 = c
                .query_one(
                    "SELECT count(*) FROM delivery_marks WHERE user_id = 'alice'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            assert_eq!(marks, 1);
        });
    });
    assert!(out.contains("node stopped"), "{out}");
    assert!(!out.contains("did not finish in time"), "{out}");
}
