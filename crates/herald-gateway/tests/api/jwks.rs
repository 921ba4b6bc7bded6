//! Keys from an identity provider's JWKS URL, served by a real HTTP server on loopback whose
//! document, status and `Cache-Control` the test changes while a node runs.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs8::DecodePublicKey as _;
use rsa::traits::PublicKeyParts as _;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::*;

/// A signing key and its public JWK.
struct TestKey {
    kid: String,
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
}

impl TestKey {
    fn es256(kid: &str) -> TestKey {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let raw = kp.public_key_raw(); // 0x04 || X || Y
        TestKey {
            kid: kid.into(),
            alg: Algorithm::ES256,
            encoding: EncodingKey::from_ec_der(&kp.serialize_der()),
            jwk: json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
                "x": B64.encode(&raw[1..33]), "y": B64.encode(&raw[33..65])}),
        }
    }

    fn eddsa(kid: &str) -> TestKey {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        TestKey {
            kid: kid.into(),
            alg: Algorithm::EdDSA,
            encoding: EncodingKey::from_ed_der(&kp.serialize_der()),
            jwk: json!({"kty": "OKP", "crv": "Ed25519", "kid": kid,
                "x": B64.encode(kp.public_key_raw())}),
        }
    }

    /// The RSA fixture (tests/fixtures/rsa_*.pem).
    fn rs256(kid: &str) -> TestKey {
        let public = std::fs::read_to_string(fixture("rsa_public.pem")).unwrap();
        let key = rsa::RsaPublicKey::from_public_key_pem(&public).unwrap();
        let private = std::fs::read(fixture("rsa_private.pem")).unwrap();
        TestKey {
            kid: kid.into(),
            alg: Algorithm::RS256,
            encoding: EncodingKey::from_rsa_pem(&private).unwrap(),
            jwk: json!({"kty": "RSA", "kid": kid, "alg": "RS256",
                "n": B64.encode(key.n().to_bytes_be()), "e": B64.encode(key.e().to_bytes_be())}),
        }
    }

    fn token(&self, user: &str) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        let claims = json!({"sub": user, "exp": chrono::Utc::now().timestamp() + 600});
        jsonwebtoken::encode(&header, &claims, &self.encoding).unwrap()
    }
}

/// What the JWKS server answers.
struct Doc {
    status: u16,
    body: String,
    cache_control: Option<String>,
}

/// A minimal HTTP/1.1 server for one JWKS document; counts the requests it answers.
struct JwksServer {
    port: u16,
    doc: Arc<Mutex<Doc>>,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    async fn start(keys: &[&TestKey], cache_control: Option<&str>) -> JwksServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let doc = Arc::new(Mutex::new(Doc {
            status: 200,
            body: String::new(),
            cache_control: cache_control.map(str::to_owned),
        }));
        let hits = Arc::new(AtomicUsize::new(0));
        let (d, h) = (doc.clone(), hits.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                let (d, h) = (d.clone(), h.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut n = 0;
                    while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") && n < buf.len() {
                        match conn.read(&mut buf[n..]).await {
                            Ok(0) | Err(_) => return,
                            Ok(k) => n += k,
                        }
                    }
                    h.fetch_add(1, Ordering::SeqCst);
                    let resp = {
                        let doc = d.lock().unwrap();
                        let cc = doc
                            .cache_control
                            .as_ref()
                            .map(|c| format!("Cache-Control: {c}\r\n"))
                            .unwrap_or_default();
                        format!(
                            "HTTP/1.1 {} X\r\nContent-Type: application/json\r\n{cc}Content-Length: {}\r\nConnection: close\r\n\r\n{}",
                            doc.status,
                            doc.body.len(),
                            doc.body
                        )
                    };
                    let _ = conn.write_all(resp.as_bytes()).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        let server = JwksServer {
            port,
            doc,
            hits,
            task,
        };
        server.serve(keys);
        server
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/.well-known/jwks.json", self.port)
    }

    fn serve(&self, keys: &[&TestKey]) {
        let set = json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() });
        let mut doc = self.doc.lock().unwrap();
        doc.status = 200;
        doc.body = set.to_string();
    }

    fn fail(&self, status: u16) {
        self.doc.lock().unwrap().status = status;
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn jwks_node(env: &TestEnv, url: &str, min_refetch_ms: u64) -> TestNode {
    let url = url.to_owned();
    env.node_with(move |c| {
        c.jwt = herald_gateway::config::Config::jwt_from(
            &[
                ("HERALD_JWT_JWKS_URL", url.as_str()),
                (
                    "HERALD_JWT_JWKS_MIN_REFETCH_MS",
                    &min_refetch_ms.to_string(),
                ),
                ("HERALD_JWT_ALLOW_ANY_AUDIENCE", "true"),
                ("HERALD_JWT_ALLOW_ANY_ISSUER", "true"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        )
        .unwrap();
    })
    .await
}

/// GET /v1/notifications/unread-count with `token`: the status and the JSON body.
async fn user_call(node: &TestNode, token: &str) -> (u16, Value) {
    let r = node.get("/v1/notifications/unread-count", token).await;
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_rotated_key_works_without_a_restart() {
    let env = TestEnv::new().await;
    let (a, b, r) = (
        TestKey::es256("a"),
        TestKey::eddsa("b"),
        TestKey::rs256("r"),
    );
    // A long lifetime: only the unknown kid makes the node fetch again.
    let server = JwksServer::start(&[&a], Some("public, max-age=3600")).await;
    let node = jwks_node(&env, &server.url(), 200).await;
    assert_eq!(user_call(&node, &a.token("alice")).await.0, 200);
    assert_eq!(server.hits(), 1);

    // The provider rotates in an Ed25519 and an RSA key. A token naming a new kid makes the
    // node fetch the set (at most once per HERALD_JWT_JWKS_MIN_REFETCH_MS, 200 ms here, so
    // a call right after the start-up fetch may be refused once) and then verifies.
    server.serve(&[&a, &b, &r]);
    let accepted = herald_testkit::eventually(WAIT, || async {
        user_call(&node, &b.token("alice")).await.0 == 200
    })
    .await;
    assert!(accepted, "the rotated-in Ed25519 key was never accepted");
    assert!(
        server.hits() >= 2,
        "accepted without fetching the set again"
    );
    // The set fetched for b already holds r: accepted at its first use, no fetch needed.
    let hits = server.hits();
    assert_eq!(user_call(&node, &r.token("alice")).await.0, 200);
    assert_eq!(server.hits(), hits);
    // On a WebSocket too: a header token and an auth message.
    let mut ws = node
        .connect_opts(Some(&r.token("bob")), None, &[])
        .await
        .expect("ws with an RS256 header token");
    ws.handshake().await;
    let mut ws = node.connect_browser(&b.token("carol"), None).await;
    ws.handshake().await;
}

#[tokio::test]
async fn a_removed_key_is_refused_after_the_refresh() {
    let env = TestEnv::new().await;
    let (a, b) = (TestKey::es256("a"), TestKey::eddsa("b"));
    // A one-second lifetime: the refresh that drops a removed key comes quickly.
    let server = JwksServer::start(&[&a, &b], Some("public, max-age=1")).await;
    let node = jwks_node(&env, &server.url(), 200).await;
    assert_eq!(user_call(&node, &a.token("alice")).await.0, 200);
    // The provider removes key a: once the set is refreshed, a's tokens are refused as
    // signed by an unknown key, while b's still work.
    server.serve(&[&b]);
    let refused = herald_testkit::eventually(WAIT, || async {
        user_call(&node, &a.token("alice")).await.0 == 401
    })
    .await;
    assert!(refused, "a removed key was still accepted");
    let (status, body) = user_call(&node, &a.token("alice")).await;
    assert_eq!(status, 401);
    assert_eq!(body["code"], "unauthorized", "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or("")
            .contains("key id is unknown"),
        "{body}"
    );
    assert_eq!(user_call(&node, &b.token("alice")).await.0, 200);
}

#[tokio::test]
async fn the_provider_being_down_keeps_the_held_keys_working() {
    let env = TestEnv::new().await;
    let a = TestKey::es256("a");
    let server = JwksServer::start(&[&a], Some("max-age=1")).await;
    let node = jwks_node(&env, &server.url(), 200).await;
    assert_eq!(user_call(&node, &a.token("alice")).await.0, 200);
    server.fail(503);
    // Refreshes fail (counted) ...
    let failed = herald_testkit::eventually(WAIT, || async {
        node.metric("herald_jwks_fetches_total{outcome=\"error\"}")
            .await
            >= 2
    })
    .await;
    assert!(failed, "no failed refresh was counted");
    // ... and the held key still verifies.
    assert_eq!(user_call(&node, &a.token("alice")).await.0, 200);
    assert_eq!(node.metric("herald_jwks_keys").await, 1);
    // A garbage document is a failed fetch too, not an empty key set.
    server.serve(&[]);
    let before = node
        .metric("herald_jwks_fetches_total{outcome=\"error\"}")
        .await;
    let failed = herald_testkit::eventually(WAIT, || async {
        node.metric("herald_jwks_fetches_total{outcome=\"error\"}")
            .await
            > before
    })
    .await;
    assert!(failed);
    assert_eq!(user_call(&node, &a.token("alice")).await.0, 200);
}

#[tokio::test]
async fn unknown_kids_cannot_make_the_node_hammer_the_provider() {
    let env = TestEnv::new().await;
    let a = TestKey::es256("a");
    // A long lifetime: only unknown kids could cause fetches here.
    let server = JwksServer::start(&[&a], Some("max-age=3600")).await;
    let node = jwks_node(&env, &server.url(), 60_000).await;
    let after_start = server.hits();
    assert_eq!(after_start, 1, "one fetch at start");
    let strangers: Vec<TestKey> = (0..40).map(|i| TestKey::es256(&format!("x{i}"))).collect();
    let calls = strangers.iter().map(|k| {
        let token = k.token("mallory");
        let node = &node;
        async move { user_call(node, &token).await.0 }
    });
    let statuses = futures_util::future::join_all(calls).await;
    assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");
    assert!(
        server.hits() - after_start <= 1,
        "{} fetches for 40 unknown kids within the refetch interval",
        server.hits() - after_start
    );
}

#[tokio::test]
async fn a_node_does_not_start_without_its_keys_and_refuses_plain_http_elsewhere() {
    let env = TestEnv::new().await;
    let server = JwksServer::start(&[&TestKey::es256("a")], None).await;
    server.fail(500);
    let mut cfg = env.config();
    cfg.jwt.jwks = Some(herald_gateway::jwks::JwksConfig {
        url: server.url(),
        default_max_age: Duration::from_secs(300),
        min_refetch: Duration::from_millis(100),
    });
    let err = match herald_gateway::Application::build(cfg).await {
        Ok(_) => panic!("a node started without its JWKS"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("HERALD_JWT_JWKS_URL"), "{err}");
    assert!(err.contains("HTTP 500"), "{err}");

    let mut values = std::collections::HashMap::new();
    values.insert(
        "HERALD_JWT_JWKS_URL".to_string(),
        "http://id.example.com/jwks".to_string(),
    );
    values.insert("HERALD_JWT_ALLOW_ANY_AUDIENCE".into(), "true".into());
    values.insert("HERALD_JWT_ALLOW_ANY_ISSUER".into(), "true".into());
    match herald_gateway::config::Config::jwt_from(&values) {
        Err(herald_gateway::config::ConfigError::Invalid { var, message }) => {
            assert_eq!(var, "HERALD_JWT_JWKS_URL");
            assert!(message.contains("https://"), "{message}");
        }
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("plain HTTP to a public host was accepted"),
    }
}
