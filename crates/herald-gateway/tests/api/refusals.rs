//! Everything the gateway must refuse, each with its documented HTTP error code or WebSocket
//! close code, and without changing stored data.

use std::time::Duration;

use futures_util::SinkExt;
use herald_gateway::config::PublicKeyConfig;
use herald_protocol::ws::{AckResult, Rid, ServerMessage};
use herald_protocol::ErrorCode;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::*;

// ---------------------------------------------------------------------------------------------
// Tokens: header path (HTTP 401 before the upgrade), auth-message path (close 4001 / 4103),
// and the HTTP user API (401), with stored data unchanged.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_with_bad_signature_is_refused_everywhere() {
    let env = TestEnv::new().await;
    let node = env.node().await;
    node.publish_one("alice", "hello").await;
    let tok = sign_hs(
        b"another-secret-entirely-0123456789abcdef",
        json!({ "sub": "alice", "exp": now() + 3600 }),
    );
    refused_everywhere(&env, &node, &tok, "unauthorized", 4001).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_with_alg_none_is_refused_everywhere() {
    let env = TestEnv::new().await;
    let node = env.node().await;
    node.publish_one("alice", "hello").await;
    let header = b64url(br#"{"alg":"none","typ":"JWT"}"#);
    let claims = b64url(
        json!({ "sub": "alice", "exp": now() + 3600 })
            .to_string()
            .as_bytes(),
    );
    let tok = format!("{header}.{claims}.");
    refused_everywhere(&env, &node, &tok, "unauthorized", 4001).await;
    // Same with the signature of a valid token glued on: the algorithm is still `none`.
    let valid_sig = token("alice", 3600).rsplit('.').next().unwrap().to_string();
    let tok = format!("{header}.{claims}.{valid_sig}");
    refused_everywhere(&env, &node, &tok, "unauthorized", 4001).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_expired_beyond_leeway_is_refused_as_token_expired() {
    let env = TestEnv::new().await;
    let node = env.node().await;
    node.publish_one("alice", "hello").await;
    // The default leeway is 30 s: 60 s ago is expired.
    let tok = token_claims(json!({ "sub": "alice", "exp": now() - 60 }));
    refused_everywhere(&env, &node, &tok, "token_expired", 4103).await;
    // Within the leeway it still passes.
    let tok = token_claims(json!({ "sub": "alice", "exp": now() - 5 }));
    accepted_everywhere(&node, &tok, "alice").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_without_exp_is_refused_everywhere() {
    let env = TestEnv::new().await;
    let node = env.node().await;
    node.publish_one("alice", "hello").await;
    let tok = token_claims(json!({ "sub": "alice" }));
    refused_everywhere(&env, &node, &tok, "unauthorized", 4001).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_without_sub_is_refused_everywhere() {
    let env = TestEnv::new().await;
    let node = env.node().await;
    node.publish_one("alice", "hello").await;
    let tok = token_claims(json!({ "exp": now() + 3600 }));
    refused_everywhere(&env, &node, &tok, "unauthorized", 4001).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_with_invalid_user_id_is_refused_everywhere() {
    let env = TestEnv::new().await;
    let node = env.node().await;
    node.publish_one("alice", "hello").await;
    for sub in ["a b", "", "alice/../bob", "'; DROP TABLE notifications;--"] {
        let tok = token_claims(json!({ "sub": sub, "exp": now() + 3600 }));
        refused_everywhere(&env, &node, &tok, "unauthorized", 4001).await;
    }
    // `sub` of the wrong JSON type (a non-negative integer is its decimal string: below).
    for sub in [
        json!(4.2),
        json!(-1),
        json!(true),
        json!({ "id": 1 }),
        json!(["a"]),
    ] {
        let tok = token_claims(json!({ "sub": sub, "exp": now() + 3600 }));
        refused_everywhere(&env, &node, &tok, "unauthorized", 4001).await;
    }
}

/// The NestJS seed signs `{ sub: user.id }` with a numeric id: `42` is the user `"42"`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_numeric_sub_is_the_user_of_its_decimal_string() {
    let env = TestEnv::new().await;
    let node = env.node().await;
    node.publish_one("42", "hello").await;
    let tok = token_claims(json!({ "sub": 42, "exp": now() + 3600 }));
    accepted_everywhere(&node, &tok, "42").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_not_yet_valid_or_not_a_jwt_is_refused_everywhere() {
    let env = TestEnv::new().await;
    let node = env.node().await;
    node.publish_one("alice", "hello").await;
    let tok = token_claims(json!({ "sub": "alice", "exp": now() + 7200, "nbf": now() + 3600 }));
    refused_everywhere(&env, &node, &tok, "unauthorized", 4001).await;
    // The service key is not a user token.
    refused_everywhere(&env, &node, SERVICE_KEY, "unauthorized", 4001).await;
    refused_everywhere(&env, &node, "a.b.c", "unauthorized", 4001).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audience_is_enforced_when_configured() {
    let env = TestEnv::new().await;
    let node = env
        .node_with(|c| c.jwt.audience = Some("herald".into()))
        .await;
    node.publish_one("alice", "hello").await;
    let exp = now() + 3600;
    let wrong = token_claims(json!({ "sub": "alice", "exp": exp, "aud": "other" }));
    refused_everywhere(&env, &node, &wrong, "unauthorized", 4001).await;
    let missing = token_claims(json!({ "sub": "alice", "exp": exp }));
    refused_everywhere(&env, &node, &missing, "unauthorized", 4001).await;
    let right = token_claims(json!({ "sub": "alice", "exp": exp, "aud": "herald" }));
    accepted_everywhere(&node, &right, "alice").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuer_is_enforced_when_configured() {
    let env = TestEnv::new().await;
    let node = env
        .node_with(|c| c.jwt.issuer = Some("https://auth.test".into()))
        .await;
    node.publish_one("alice", "hello").await;
    let exp = now() + 3600;
    let wrong = token_claims(json!({ "sub": "alice", "exp": exp, "iss": "https://evil.example" }));
    refused_everywhere(&env, &node, &wrong, "unauthorized", 4001).await;
    let missing = token_claims(json!({ "sub": "alice", "exp": exp }));
    refused_everywhere(&env, &node, &missing, "unauthorized", 4001).await;
    let right = token_claims(json!({ "sub": "alice", "exp": exp, "iss": "https://auth.test" }));
    accepted_everywhere(&node, &right, "alice").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsa_only_node_accepts_rs256_and_refuses_hs256_signed_with_the_public_key() {
    let env = TestEnv::new().await;
    let node = env
        .node_with(|c| {
            c.jwt.hs256_secret = None;
            c.jwt.public_keys = vec![PublicKeyConfig {
                kid: None,
                path: fixture("rsa_public.pem"),
            }];
        })
        .await;
    node.publish_one("alice", "hello").await;
    let claims = json!({ "sub": "alice", "exp": now() + 3600 });
    // The classic algorithm-confusion attack: HMAC keyed with the public key's PEM bytes.
    let public_pem = std::fs::read(fixture("rsa_public.pem")).expect("read rsa_public.pem");
    let confused = sign_hs(&public_pem, claims.clone());
    refused_everywhere(&env, &node, &confused, "unauthorized", 4001).await;
    // And a token with the test HS256 secret: HS256 is simply not configured.
    refused_everywhere(&env, &node, &token("alice", 3600), "unauthorized", 4001).await;
    // An RS256 token signed with the wrong private key (the EC key cannot sign RS256, so
    // tamper with the payload of a valid one instead).
    let good = sign_pem(Algorithm::RS256, None, "rsa_private.pem", claims.clone());
    let parts: Vec<&str> = good.split('.').collect();
    let forged_claims = b64url(
        json!({ "sub": "bob", "exp": now() + 3600 })
            .to_string()
            .as_bytes(),
    );
    let tampered = format!("{}.{}.{}", parts[0], forged_claims, parts[2]);
    refused_everywhere(&env, &node, &tampered, "unauthorized", 4001).await;
    accepted_everywhere(&node, &good, "alice").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kid_is_refused_when_keys_have_kids() {
    let env = TestEnv::new().await;
    let node = env
        .node_with(|c| {
            c.jwt.public_keys = vec![
                PublicKeyConfig {
                    kid: Some("rsa-1".into()),
                    path: fixture("rsa_public.pem"),
                },
                PublicKeyConfig {
                    kid: Some("ec-1".into()),
                    path: fixture("ec_public.pem"),
                },
            ];
        })
        .await;
    node.publish_one("alice", "hello").await;
    let claims = json!({ "sub": "alice", "exp": now() + 3600 });
    let unknown = sign_pem(
        Algorithm::RS256,
        Some("rsa-2"),
        "rsa_private.pem",
        claims.clone(),
    );
    refused_everywhere(&env, &node, &unknown, "unauthorized", 4001).await;
    // A kid of a key of another algorithm does not select it either.
    let cross = sign_pem(
        Algorithm::RS256,
        Some("ec-1"),
        "rsa_private.pem",
        claims.clone(),
    );
    refused_everywhere(&env, &node, &cross, "unauthorized", 4001).await;
    let good = sign_pem(
        Algorithm::RS256,
        Some("rsa-1"),
        "rsa_private.pem",
        claims.clone(),
    );
    accepted_everywhere(&node, &good, "alice").await;
    let good_ec = sign_pem(Algorithm::ES256, Some("ec-1"), "ec_private.pem", claims);
    accepted_everywhere(&node, &good_ec, "alice").await;
}

/// The shared HS256 secret has no key id, so an HS256 token naming one is an unknown `kid`
/// (it used to be accepted, though the protocol lists an unknown `kid` as invalid).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hs256_token_with_a_kid_is_refused_as_an_unknown_key() {
    let env = TestEnv::new().await;
    let node = env.node().await;
    node.publish_one("alice", "hello").await;
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("no-such-kid".into());
    let tok = jsonwebtoken::encode(
        &header,
        &json!({ "sub": "alice", "exp": now() + 3600 }),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("encode");
    refused_everywhere(&env, &node, &tok, "unauthorized", 4001).await;
    let r = node.get("/v1/notifications", &tok).await;
    let body: Value = r.json().await.expect("json");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("key id")),
        "{body}"
    );
}

/// A correctly signed token with an absurd `exp` (past the year 9999, up to where Unix
/// milliseconds overflow) is refused with a clear message, not accepted over HTTP and then
/// closed at once on the socket; one just inside the bound works on both, and `refresh` with
/// it does not warn of expiry at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_exp_is_refused_and_a_far_one_works_on_the_socket() {
    let env = TestEnv::new().await;
    let node = env.node().await;
    node.publish_one("alice", "hello").await;
    for exp in [253_402_300_800i64, 9_300_000_000_000_000, i64::MAX] {
        let tok = sign_hs(SECRET.as_bytes(), json!({ "sub": "alice", "exp": exp }));
        refused_everywhere(&env, &node, &tok, "unauthorized", 4001).await;
        let r = node.get("/v1/notifications", &tok).await;
        let body: Value = r.json().await.expect("json");
        assert!(
            body["message"]
                .as_str()
                .is_some_and(|m| m.contains("out of range")),
            "exp {exp}: {body}"
        );
    }
    let far = sign_hs(
        SECRET.as_bytes(),
        json!({ "sub": "alice", "exp": 253_402_300_799i64 }),
    );
    accepted_everywhere(&node, &far, "alice").await;
    let mut ws = node
        .connect_opts(Some(&far), None, &[])
        .await
        .expect("connect");
    ws.handshake().await;
    ws.send(json!({ "type": "refresh", "token": far, "rid": 1 }))
        .await;
    match ws.event().await {
        ServerMessage::Ack {
            result: AckResult::Refresh { expires_at },
            ..
        } => assert_eq!(expires_at, 253_402_300_799),
        other => panic!("expected the refresh ack, got {other:?}"),
    }
    // Still open and not warned: nothing but the ping's ack comes back.
    ping_ok(&mut ws, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn es256_token_is_accepted_with_the_ec_public_key() {
    let env = TestEnv::new().await;
    let node = env
        .node_with(|c| {
            c.jwt.hs256_secret = None;
            c.jwt.public_keys = vec![PublicKeyConfig {
                kid: None,
                path: fixture("ec_public.pem"),
            }];
        })
        .await;
    node.publish_one("alice", "hello").await;
    let claims = json!({ "sub": "alice", "exp": now() + 3600 });
    // RS256 is not configured on this node.
    let rs = sign_pem(Algorithm::RS256, None, "rsa_private.pem", claims.clone());
    refused_everywhere(&env, &node, &rs, "unauthorized", 4001).await;
    let es = sign_pem(Algorithm::ES256, None, "ec_private.pem", claims);
    accepted_everywhere(&node, &es, "alice").await;
}

// ---------------------------------------------------------------------------------------------
// Handshake-level refusals.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_in_url_is_refused_on_ws_and_http() {
    let env = TestEnv::new().await;
    let node = env.node().await;
    node.publish_one("alice", "hello").await;
    let before = snapshot(&env).await;
    let tok = token("alice", 3600);
    // Names as written, and percent-encoded or padded so that a check on the raw query
    // string would miss them (`%74oken` is `token`; `+` decodes to a space).
    for param in [
        "token",
        "access_token",
        "Token",
        "jwt",
        "%74oken",
        "access%5Ftoken",
        "%4AWT",
        "+token",
    ] {
        let q = format!("{param}={tok}");
        // Browser style (Origin, no header) and server style (valid header too): both refused.
        let (status, body) = ws_refusal(&node, None, Some(&q), &[("origin", ORIGIN)]).await;
        assert_eq!(status, 400, "{param} on /v1/ws");
        assert_error_body(&body, "token_in_url", None);
        let (status, body) = ws_refusal(&node, Some(&tok), Some(&q), &[]).await;
        assert_eq!(status, 400, "{param} on /v1/ws with a header token");
        assert_error_body(&body, "token_in_url", None);

        let url = format!("{}/v1/notifications?{q}", node.base);
        let r = node.http.get(&url).send().await.expect("GET");
        assert_error(r, 400, "token_in_url", None).await;
        let r = node
            .http
            .get(&url)
            .bearer_auth(&tok)
            .send()
            .await
            .expect("GET");
        assert_error(r, 400, "token_in_url", None).await;
        let r = node
            .http
            .post(format!("{}/v1/notifications/read-all?{q}", node.base))
            .bearer_auth(&tok)
            .send()
            .await
            .expect("POST");
        assert_error(r, 400, "token_in_url", None).await;
    }
    node.deliveries_flushed().await;
    assert_eq!(
        snapshot(&env).await,
        before,
        "a refused request changed stored data"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disallowed_origins_are_refused_before_the_upgrade() {
    let env = TestEnv::new().await;
    let node = env.node().await;
    let tok = token("alice", 3600);
    for origin in [
        "https://evil.example",
        "null",
        "http://app.test.evil.com",
        "http://app.test:8080",
        "https://app.test",
        "http://APP.TEST",
    ] {
        let (status, body) = ws_refusal(&node, None, None, &[("origin", origin)]).await;
        assert_eq!(status, 403, "origin {origin}");
        assert_error_body(&body, "origin_not_allowed", None);
        // A header token does not excuse a bad Origin.
        let (status, body) = ws_refusal(&node, Some(&tok), None, &[("origin", origin)]).await;
        assert_eq!(status, 403, "origin {origin} with a header token");
        assert_error_body(&body, "origin_not_allowed", None);
    }
    // A browser-style connection (no Authorization header) without Origin.
    let (status, body) = ws_refusal(&node, None, None, &[]).await;
    assert_eq!(status, 403, "missing Origin without Authorization");
    assert_error_body(&body, "origin_not_allowed", None);

    // The allowed origin passes, browser style and with a header token.
    let mut ws = node.connect_browser(&tok, None).await;
    ws.handshake().await;
    let mut ws = node
        .connect_opts(Some(&tok), None, &[("origin", ORIGIN)])
        .await
        .expect("allowed origin with a header token");
    ws.handshake().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_resume_cursor_in_the_url_is_refused() {
    let env = TestEnv::new().await;
    let node = env.node().await;
    let tok = token("alice", 3600);
    for q in ["last_seq=-1", "last_seq=abc", "last_seq=1e3", "last_seq="] {
        let (status, body) = ws_refusal(&node, Some(&tok), Some(q), &[]).await;
        assert_eq!(status, 400, "?{q}");
        assert_error_body(&body, "invalid_parameter", Some("last_seq"));
    }
    let mut ws = node
        .connect_opts(Some(&tok), Some("last_seq=0"), &[])
        .await
        .expect("a valid cursor is accepted");
    ws.handshake().await;
}

// ---------------------------------------------------------------------------------------------
// Session-level refusals.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_auth_message_within_the_timeout_closes_4102() {
    let env = TestEnv::new().await;
    let node = env
        .node_with(|c| c.auth_timeout = Duration::from_millis(300))
        .await;
    let mut ws = node
        .connect_opts(None, None, &[("origin", ORIGIN)])
        .await
        .expect("connect");
    let started = std::time::Instant::now();
    let (code, reason) = ws.expect_close().await;
    assert_eq!(code, 4102, "{reason}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "closed too late"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_message_other_than_a_valid_auth_closes_4000() {
    let env = TestEnv::new().await;
    let node = env.node().await;
    let tok = token("alice", 3600);
    let cases = [
        json!({ "type": "ping" }).to_string(),
        json!({ "type": "mark_all_read", "rid": 1 }).to_string(),
        "{not json".to_string(),
        "[1,2,3]".to_string(),
        json!({ "type": "auth" }).to_string(),
        json!({ "type": "auth", "token": 42 }).to_string(),
        json!({ "type": "auth", "token": tok, "extra": true }).to_string(),
        json!({ "type": "auth", "token": tok, "last_seq": -1 }).to_string(),
        json!({ "type": "drop_tables" }).to_string(),
    ];
    for first in cases {
        let mut ws = node
            .connect_opts(None, None, &[("origin", ORIGIN)])
            .await
            .expect("connect");
        ws.send_text(first.clone()).await;
        match ws.next().await {
            Got::Closed(code, reason) => assert_eq!(code, 4000, "first message {first}: {reason}"),
            Got::Event(e) => panic!("first message {first}: expected close 4000, got {e:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_frames_close_1003_before_and_after_auth() {
    let env = TestEnv::new().await;
    let node = env.node().await;
    let mut ws = node
        .connect_opts(None, None, &[("origin", ORIGIN)])
        .await
        .expect("connect");
    ws.stream
        .send(Message::Binary(b"{\"type\":\"auth\"}".to_vec().into()))
        .await
        .expect("send binary");
    assert_eq!(ws.expect_close().await.0, 1003, "binary before auth");

    let mut ws = node.connect("alice").await;
    ws.handshake().await;
    ws.stream
        .send(Message::Binary(vec![0u8, 1, 2, 3].into()))
        .await
        .expect("send binary");
    assert_eq!(ws.expect_close().await.0, 1003, "binary after auth");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_frame_over_max_message_bytes_closes_1009_and_one_under_is_fine() {
    let env = TestEnv::new().await;
    let node = env.node_with(|c| c.max_message_bytes = 1024).await;

    // Just under: a valid JSON object with an unknown type; answered, socket stays.
    let mut ws = node.connect("alice").await;
    ws.handshake().await;
    let under = padded_message(json!({ "type": "bogus", "rid": 5 }), 1023);
    assert_eq!(under.len(), 1023);
    ws.send_text(under).await;
    expect_error(
        ws.event().await,
        ErrorCode::UnknownCommand,
        Some(Rid::Num(5)),
    );
    ping_ok(&mut ws, 6).await;

    // Just over: closed with 1009.
    let over = padded_message(json!({ "type": "ping", "rid": 7 }), 1025);
    assert_eq!(over.len(), 1025);
    ws.send_text(over).await;
    let (code, reason) = ws.expect_close().await;
    assert_eq!(code, 1009, "{reason}");

    // Before auth the limit applies too.
    let mut ws = node
        .connect_opts(None, None, &[("origin", ORIGIN)])
        .await
        .expect("connect");
    ws.send_text(padded_message(
        json!({ "type": "auth", "token": token("alice", 3600) }),
        1025,
    ))
    .await;
    assert_eq!(ws.expect_close().await.0, 1009, "oversized auth message");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragmented_message_over_the_limit_closes_1009() {
    let env = TestEnv::new().await;
    let node = env.node_with(|c| c.max_message_bytes = 1024).await;
    let mut ws = node.connect("alice").await;
    ws.handshake().await;

    // A fragmented message within the limit is reassembled and answered.
    let ping = json!({ "type": "ping", "rid": 11 }).to_string();
    let (a, b) = ping.split_at(ping.len() / 2);
    send_frame(
        &mut ws,
        Frame::message(a.as_bytes().to_vec(), OpCode::Data(Data::Text), false),
    )
    .await;
    send_frame(
        &mut ws,
        Frame::message(b.as_bytes().to_vec(), OpCode::Data(Data::Continue), true),
    )
    .await;
    match ws.event().await {
        ServerMessage::Ack {
            rid,
            result: AckResult::Pong { .. },
        } => assert_eq!(rid, Some(Rid::Num(11))),
        other => panic!("expected the ack of a fragmented ping, got {other:?}"),
    }

    // Each fragment is under the limit, the message is not: 5 × 400 bytes.
    let big = padded_message(json!({ "type": "ping", "rid": 12 }), 2000);
    let chunks: Vec<&[u8]> = big.as_bytes().chunks(400).collect();
    for (i, c) in chunks.iter().enumerate() {
        let op = if i == 0 { Data::Text } else { Data::Continue };
        let fin = i + 1 == chunks.len();
        // The server may close before the last fragment; a failed send is fine.
        let _ = ws
            .stream
            .send(Message::Frame(Frame::message(
                c.to_vec(),
                OpCode::Data(op),
                fin,
            )))
            .await;
    }
    let (code, reason) = ws.expect_close().await;
    assert_eq!(code, 1009, "{reason}");
}

/// Invalid UTF-8 in a text message is refused with 1007 (RFC 6455), and a framing error
/// (a reserved opcode) with 1002 — both found by the Autobahn conformance run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_closes_1007_and_a_framing_error_1002() {
    let env = TestEnv::new().await;
    let node = env.node().await;
    let mut ws = node.connect("alice").await;
    ws.handshake().await;
    send_frame(
        &mut ws,
        Frame::message(vec![0xce, 0xba, 0xff, 0xfe], OpCode::Data(Data::Text), true),
    )
    .await;
    let (code, reason) = ws.expect_close().await;
    assert_eq!(code, 1007, "{reason}");

    let mut ws = node.connect("alice").await;
    ws.handshake().await;
    send_frame(
        &mut ws,
        Frame::message(b"x".to_vec(), OpCode::Data(Data::Reserved(3)), true),
    )
    .await;
    let (code, reason) = ws.expect_close().await;
    assert_eq!(code, 1002, "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_commands_after_auth_are_error_events_and_the_socket_survives() {
    let env = TestEnv::new().await;
    let node = env.node().await;
    node.publish_one("alice", "hello").await;
    let mut ws = node.connect("alice").await;
    ws.handshake().await;
    node.deliveries_flushed().await;
    let before = snapshot(&env).await;

    ws.send_text("{\"type\":\"ping\",".into()).await;
    expect_error(ws.event().await, ErrorCode::InvalidJson, None);
    ping_ok(&mut ws, 1).await;

    ws.send(json!({ "type": "drop_tables", "rid": 2 })).await;
    expect_error(
        ws.event().await,
        ErrorCode::UnknownCommand,
        Some(Rid::Num(2)),
    );
    ws.send(json!({ "type": "subscribe", "rid": "abc" })).await;
    expect_error(
        ws.event().await,
        ErrorCode::UnknownCommand,
        Some(Rid::Str("abc".into())),
    );

    ws.send(json!({ "type": "mark_read", "rid": 3, "id": "not-a-uuid" }))
        .await;
    expect_error(
        ws.event().await,
        ErrorCode::InvalidMessage,
        Some(Rid::Num(3)),
    );
    ws.send(json!({ "type": "mark_read", "rid": 4, "id": "' OR 1=1--" }))
        .await;
    expect_error(
        ws.event().await,
        ErrorCode::InvalidMessage,
        Some(Rid::Num(4)),
    );
    ws.send(json!({ "type": "mark_read", "rid": 5 })).await;
    expect_error(
        ws.event().await,
        ErrorCode::InvalidMessage,
        Some(Rid::Num(5)),
    );
    ws.send(json!({ "type": "mark_all_read", "rid": 6, "up_to_seq": -1 }))
        .await;
    expect_error(
        ws.event().await,
        ErrorCode::InvalidMessage,
        Some(Rid::Num(6)),
    );
    ws.send(json!({ "type": "auth", "token": token("alice", 3600) }))
        .await;
    expect_error(ws.event().await, ErrorCode::InvalidState, None);
    ws.send(json!(["not", "an", "object"])).await;
    expect_error(ws.event().await, ErrorCode::InvalidMessage, None);

    ping_ok(&mut ws, 7).await;
    node.deliveries_flushed().await;
    assert_eq!(
        snapshot(&env).await,
        before,
        "a refused command changed stored data"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_flood_over_the_rate_limit_closes_4104() {
    let env = TestEnv::new().await;
    let node = env
        .node_with(|c| {
            c.rate_limit_per_sec = 5;
            c.rate_limit_burst = 5;
        })
        .await;
    let mut ws = node.connect("alice").await;
    ws.handshake().await;
    for i in 0..20 {
        let m = json!({ "type": "ping", "rid": i }).to_string();
        // The server may close mid-flood; later sends may fail.
        if ws.stream.send(Message::Text(m.into())).await.is_err() {
            break;
        }
    }
    let mut acks = 0;
    let code = loop {
        match ws.next().await {
            Got::Event(ServerMessage::Ack { .. }) => acks += 1,
            Got::Event(other) => panic!("unexpected event during the flood: {other:?}"),
            Got::Closed(code, _) => break code,
        }
    };
    assert_eq!(code, 4104);
    assert!(
        (5..=6).contains(&acks),
        "expected about the burst (5) answered, got {acks}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_over_the_per_user_limit_closes_4005_and_the_others_keep_working() {
    let env = TestEnv::new().await;
    let node = env.node_with(|c| c.max_sockets_per_user = 2).await;
    let mut one = node.connect("alice").await;
    one.handshake().await;
    let mut two = node.connect_browser(&token("alice", 3600), None).await;
    two.handshake().await;
    let mut three = node.connect("alice").await;
    match three.next().await {
        Got::Closed(code, reason) => assert_eq!(code, 4005, "{reason}"),
        Got::Event(e) => panic!("third socket: expected close 4005, got {e:?}"),
    }
    // Another user is not affected by alice's limit.
    let mut bob = node.connect("bob").await;
    bob.handshake().await;

    let seq = node.publish_one("alice", "still here").await;
    for ws in [&mut one, &mut two] {
        let got = ws.notifications_until(seq).await;
        assert_seqs(&got, 1, 1);
        assert_eq!(got[0].title, "still here");
    }
    // Once a socket closes, a new one fits again.
    one.close().await;
    let mut again = None;
    for _ in 0..50 {
        let mut ws = node.connect("alice").await;
        match ws.next().await {
            Got::Event(ServerMessage::Connected { .. }) => {
                again = Some(ws);
                break;
            }
            Got::Closed(4005, _) => tokio::time::sleep(Duration::from_millis(100)).await,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(again.is_some(), "a freed slot was never reusable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_answers_pings_is_closed_4101() {
    let env = TestEnv::new().await;
    let node = env
        .node_with(|c| {
            c.heartbeat_interval = Duration::from_millis(200);
            c.idle_timeout = Duration::from_millis(600);
        })
        .await;
    let mut ws = node.connect("alice").await;
    // Not reading means tungstenite never answers the server's pings. The server closes at
    // the first heartbeat tick past 600 ms (~0.6-0.8 s), then waits at most 1 s
    // (ws/session/write.rs CLOSE_TIMEOUT) for the client's close reply before dropping the TCP
    // connection; read before that, or tungstenite's queued pongs hit a reset socket (EPIPE)
    // before the buffered close frame is returned.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let (code, reason) = ws.expect_close().await;
    assert_eq!(code, 4101, "{reason}");

    // A client that reads (and so answers pings) is not closed.
    let mut ws = node.connect("alice").await;
    ws.handshake().await;
    assert!(
        ws.next_within(Duration::from_millis(1500)).await.is_none(),
        "a live client must not be closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiring_token_is_warned_about_then_closed_4103() {
    let env = TestEnv::new().await;
    let node = env
        .node_with(|c| {
            c.jwt.leeway_secs = 0;
            c.token_expiry_warning = Duration::from_secs(1);
        })
        .await;
    let exp = now() + 2;
    let tok = token_claims(json!({ "sub": "alice", "exp": exp }));
    let mut ws = node.connect_browser(&tok, None).await;
    ws.handshake().await;
    match ws.event().await {
        ServerMessage::TokenExpiring { expires_at } => assert_eq!(expires_at, exp),
        other => panic!("expected token_expiring, got {other:?}"),
    }
    match ws.next().await {
        Got::Closed(code, reason) => assert_eq!(code, 4103, "{reason}"),
        Got::Event(e) => panic!("expected close 4103, got {e:?}"),
    }
    assert!(now() >= exp, "closed before the token expired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_with_a_fresh_token_extends_the_session() {
    let env = TestEnv::new().await;
    let node = env
        .node_with(|c| {
            c.jwt.leeway_secs = 0;
            c.token_expiry_warning = Duration::from_secs(1);
        })
        .await;
    let old_exp = now() + 2;
    let mut ws = node
        .connect_opts(
            Some(&token_claims(json!({ "sub": "alice", "exp": old_exp }))),
            None,
            &[],
        )
        .await
        .expect("connect");
    ws.handshake().await;
    let new_exp = now() + 3600;
    let fresh = token_claims(json!({ "sub": "alice", "exp": new_exp }));
    ws.send(json!({ "type": "refresh", "rid": "r1", "token": fresh }))
        .await;
    loop {
        match ws.event().await {
            ServerMessage::TokenExpiring { .. } => continue,
            ServerMessage::Ack {
                rid,
                result: AckResult::Refresh { expires_at },
            } => {
                assert_eq!(rid, Some(Rid::Str("r1".into())));
                assert_eq!(expires_at, new_exp);
                break;
            }
            other => panic!("expected the refresh ack, got {other:?}"),
        }
    }
    // Outlive the old expiry.
    let wait = (old_exp - now() + 2).max(0) as u64;
    tokio::time::sleep(Duration::from_secs(wait)).await;
    ws.send(json!({ "type": "ping", "rid": 2 })).await;
    loop {
        match ws.next().await {
            Got::Event(ServerMessage::TokenExpiring { .. }) => continue,
            Got::Event(ServerMessage::Ack { rid, .. }) => {
                assert_eq!(rid, Some(Rid::Num(2)));
                break;
            }
            other => panic!("socket did not outlive the old token: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_with_another_users_token_closes_4003() {
    let env = TestEnv::new().await;
    let node = env.node().await;
    let mut ws = node.connect("alice").await;
    ws.handshake().await;
    ws.send(json!({ "type": "refresh", "rid": 1, "token": token("bob", 3600) }))
        .await;
    match ws.next().await {
        Got::Closed(code, reason) => assert_eq!(code, 4003, "{reason}"),
        Got::Event(e) => panic!("expected close 4003, got {e:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_with_an_invalid_token_is_an_error_and_the_socket_stays() {
    let env = TestEnv::new().await;
    let node = env.node().await;
    let mut ws = node.connect("alice").await;
    ws.handshake().await;
    let forged = sign_hs(
        b"another-secret-entirely-0123456789abcdef",
        json!({ "sub": "alice", "exp": now() + 3600 }),
    );
    ws.send(json!({ "type": "refresh", "rid": 1, "token": forged }))
        .await;
    expect_error(ws.event().await, ErrorCode::Unauthorized, Some(Rid::Num(1)));
    ws.send(json!({ "type": "refresh", "rid": 2, "token": "garbage" }))
        .await;
    expect_error(ws.event().await, ErrorCode::Unauthorized, Some(Rid::Num(2)));
    let expired = token_claims(json!({ "sub": "alice", "exp": now() - 3600 }));
    ws.send(json!({ "type": "refresh", "rid": 3, "token": expired }))
        .await;
    expect_error(ws.event().await, ErrorCode::TokenExpired, Some(Rid::Num(3)));
    ping_ok(&mut ws, 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_notification_id_is_not_found_everywhere() {
    let env = TestEnv::new().await;
    let node = env.node().await;
    node.publish_one("alice", "private").await;
    let db = env.sql().await;
    let row = db
        .query_one(
            "SELECT id::text FROM notifications WHERE user_id = 'alice'",
            &[],
        )
        .await
        .expect("alice's row");
    let id: uuid::Uuid = row.get::<_, String>(0).parse().expect("uuid");
    let alice_before = alice_state(&env).await;

    let mut bob = node.connect("bob").await;
    bob.handshake().await;
    bob.send(json!({ "type": "mark_read", "rid": 9, "id": id }))
        .await;
    expect_error(bob.event().await, ErrorCode::NotFound, Some(Rid::Num(9)));

    let bob_tok = token("bob", 3600);
    let r = node.get(&format!("/v1/notifications/{id}"), &bob_tok).await;
    assert_error(r, 404, "not_found", None).await;
    let r = node
        .post(&format!("/v1/notifications/{id}/read"), &bob_tok, None)
        .await;
    assert_error(r, 404, "not_found", None).await;
    // A random id gives exactly the same answer: existence does not leak.
    let r = node
        .get(
            &format!("/v1/notifications/{}", uuid::Uuid::new_v4()),
            &bob_tok,
        )
        .await;
    assert_error(r, 404, "not_found", None).await;
    // Bob's list does not contain it.
    let page: Value = node
        .get("/v1/notifications", &bob_tok)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(page["notifications"], json!([]));

    node.deliveries_flushed().await;
    assert_eq!(
        alice_state(&env).await,
        alice_before,
        "alice's data changed"
    );
    let count: Value = node
        .get("/v1/notifications/unread-count", &token("alice", 3600))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(count["unread_count"], 1);
    // Bob saw no read event for it.
    assert!(bob.next_within(Duration::from_millis(300)).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_tells_sockets_to_reconnect_closes_4105_and_refuses_new_ones() {
    let env = TestEnv::new().await;
    let node = env.node().await;
    let mut ws = node.connect("alice").await;
    ws.handshake().await;
    let handle = node.handle.clone();
    let drain = tokio::spawn(async move { handle.drain().await });
    match ws.event().await {
        ServerMessage::Reconnect { reason, after_ms } => {
            assert_eq!(reason, "draining");
            assert!(
                after_ms <= 300,
                "after_ms {after_ms} beyond the drain spread"
            );
        }
        other => panic!("expected reconnect, got {other:?}"),
    }
    // A new socket during the drain is refused (503 while draining; refused once stopped).
    match tokio::time::timeout(
        WAIT,
        node.connect_opts(Some(&token("bob", 3600)), None, &[]),
    )
    .await
    .expect("connect attempt timed out")
    {
        Ok(_) => panic!("a new socket was accepted during the drain"),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 503);
            if let Some(body) = resp.body().as_ref().filter(|b| !b.is_empty()) {
                let v: Value = serde_json::from_slice(body).expect("json body");
                assert_eq!(v["code"], "service_unavailable");
            }
        }
        Err(tokio_tungstenite::tungstenite::Error::Io(_)) => {}
        Err(e) => panic!("unexpected error for a connect during the drain: {e}"),
    }
    let (code, reason) = ws.expect_close().await;
    assert_eq!(code, 4105, "{reason}");
    tokio::time::timeout(WAIT, drain)
        .await
        .expect("drain did not finish")
        .expect("drain task");
}

// ---------------------------------------------------------------------------------------------
// Helpers local to these tests.
// ---------------------------------------------------------------------------------------------

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Base64url without padding (JWT segments).
pub fn b64url(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

fn sign_hs(secret: &[u8], claims: Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .expect("encode HS256")
}

fn sign_pem(alg: Algorithm, kid: Option<&str>, private_pem: &str, claims: Value) -> String {
    let pem = std::fs::read(fixture(private_pem)).expect("read private key");
    let key = match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem).expect("rsa key"),
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem).expect("ec key"),
        other => panic!("unsupported {other:?}"),
    };
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&header, &claims, &key).expect("encode")
}

/// Everything stored, as comparable text.
async fn snapshot(env: &TestEnv) -> Vec<String> {
    let db = env.sql().await;
    let mut out = Vec::new();
    for r in db
        .query(
            "SELECT user_id, seq, id::text, read_at::text, \
             (SELECT min(d.delivered_at)::text FROM delivery_marks d \
              WHERE d.user_id = n.user_id AND d.seq >= n.seq) \
             FROM notifications n ORDER BY user_id, seq",
            &[],
        )
        .await
        .expect("query notifications")
    {
        let (u, s, i, ra, da): (String, i64, String, Option<String>, Option<String>) =
            (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
        out.push(format!("n {u} {s} {i} {ra:?} {da:?}"));
    }
    for r in db
        .query(
            "SELECT user_id, last_seq, delivered_seq, unread_count, version FROM user_state \
             ORDER BY user_id",
            &[],
        )
        .await
        .expect("query user_state")
    {
        let (u, l, d, c, v): (String, i64, i64, i64, i64) =
            (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
        out.push(format!("u {u} {l} {d} {c} {v}"));
    }
    out
}

async fn alice_state(env: &TestEnv) -> Vec<String> {
    snapshot(env)
        .await
        .into_iter()
        .filter(|l| l.starts_with("n alice ") || l.starts_with("u alice "))
        .collect()
}

/// The token is refused on the header path (401 before the upgrade), on the auth-message
/// path (close), and by the HTTP user API (401); nothing stored changes.
async fn refused_everywhere(
    env: &TestEnv,
    node: &TestNode,
    tok: &str,
    http_code: &str,
    close: u16,
) {
    node.deliveries_flushed().await;
    let before = snapshot(env).await;
    let id: Option<uuid::Uuid> = env
        .sql()
        .await
        .query_opt(
            "SELECT id::text FROM notifications ORDER BY seq LIMIT 1",
            &[],
        )
        .await
        .expect("query")
        .map(|r| r.get::<_, String>(0).parse().expect("uuid"));

    let (status, body) = ws_refusal(node, Some(tok), None, &[]).await;
    assert_eq!(status, 401, "header path, expected 401 {http_code}");
    assert_error_body(&body, http_code, None);

    let mut ws = node
        .connect_opts(None, None, &[("origin", ORIGIN)])
        .await
        .expect("browser connect");
    ws.send(json!({ "type": "auth", "token": tok })).await;
    match ws.next().await {
        Got::Closed(code, reason) => {
            assert_eq!(code, close, "auth-message path: {reason}");
            assert!(
                !reason.contains(tok) || tok.is_empty(),
                "the close reason must not echo the token"
            );
        }
        Got::Event(e) => panic!("auth-message path: expected close {close}, got {e:?}"),
    }

    let r = node.get("/v1/notifications", tok).await;
    assert_error(r, 401, http_code, None).await;
    let r = node.get("/v1/notifications/unread-count", tok).await;
    assert_error(r, 401, http_code, None).await;
    let r = node
        .post("/v1/notifications/read-all", tok, Some(json!({})))
        .await;
    assert_error(r, 401, http_code, None).await;
    if let Some(id) = id {
        let r = node.get(&format!("/v1/notifications/{id}"), tok).await;
        assert_error(r, 401, http_code, None).await;
        let r = node
            .post(&format!("/v1/notifications/{id}/read"), tok, None)
            .await;
        assert_error(r, 401, http_code, None).await;
    }
    node.deliveries_flushed().await;
    assert_eq!(
        snapshot(env).await,
        before,
        "a refused token changed stored data"
    );
}

/// The token works on the header path, the auth-message path and the HTTP API.
async fn accepted_everywhere(node: &TestNode, tok: &str, user: &str) {
    let mut ws = node
        .connect_opts(Some(tok), None, &[])
        .await
        .expect("header path refused a valid token");
    match ws.handshake().await.0 {
        ServerMessage::Connected { user_id, .. } => assert_eq!(user_id, user),
        other => panic!("{other:?}"),
    }
    let mut ws = node.connect_browser(tok, None).await;
    match ws.handshake().await.0 {
        ServerMessage::Connected { user_id, .. } => assert_eq!(user_id, user),
        other => panic!("{other:?}"),
    }
    let r = node.get("/v1/notifications", tok).await;
    assert_eq!(
        r.status(),
        200,
        "HTTP API refused a valid token: {:?}",
        r.text().await
    );
}

/// Attempts an upgrade that must be refused; returns the status and the JSON body.
async fn ws_refusal(
    node: &TestNode,
    bearer: Option<&str>,
    query: Option<&str>,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let res = tokio::time::timeout(WAIT, node.connect_opts(bearer, query, headers))
        .await
        .expect("upgrade attempt timed out");
    let (status, tail) = match res {
        Ok(_) => panic!("expected the upgrade to be refused, but it succeeded"),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => (
            resp.status().as_u16(),
            resp.body().clone().unwrap_or_default(),
        ),
        Err(e) => panic!("expected an HTTP refusal, got {e}"),
    };
    if let Ok(v) = serde_json::from_slice::<Value>(&tail) {
        return (status, v);
    }
    // tungstenite only keeps what arrived with the headers: fetch the body with a plain
    // upgrade request over HTTP.
    let url = match query {
        Some(q) => format!("{}/v1/ws?{q}", node.base),
        None => format!("{}/v1/ws", node.base),
    };
    let mut req = node
        .http
        .get(url)
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.expect("GET /v1/ws");
    assert_eq!(r.status().as_u16(), status, "same refusal over plain HTTP");
    (status, r.json().await.expect("refusal body is JSON"))
}

/// Asserts an error body is exactly `{code, message[, field]}` with this code.
pub fn assert_error_body(v: &Value, code: &str, field: Option<&str>) {
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("error body is not an object: {v}"));
    assert_eq!(
        obj.get("code").and_then(Value::as_str),
        Some(code),
        "body {v}"
    );
    assert!(
        obj.get("message")
            .and_then(Value::as_str)
            .is_some_and(|m| !m.is_empty()),
        "error body needs a message: {v}"
    );
    for k in obj.keys() {
        assert!(
            ["code", "message", "field"].contains(&k.as_str()),
            "unexpected key {k} in {v}"
        );
    }
    if let Some(f) = field {
        assert_eq!(
            obj.get("field").and_then(Value::as_str),
            Some(f),
            "field in {v}"
        );
    }
}

pub async fn assert_error(
    r: reqwest::Response,
    status: u16,
    code: &str,
    field: Option<&str>,
) -> Value {
    let got = r.status().as_u16();
    let text = r.text().await.expect("body");
    assert_eq!(got, status, "expected {status} {code}, got {got}: {text}");
    let v: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("error body not JSON ({e}): {text}"));
    assert_error_body(&v, code, field);
    v
}

fn expect_error(ev: ServerMessage, want: ErrorCode, want_rid: Option<Rid>) {
    match ev {
        ServerMessage::Error { rid, code, message } => {
            assert_eq!(code, want, "{message}");
            assert_eq!(rid, want_rid, "rid of the {want} error");
            assert!(!message.is_empty());
        }
        other => panic!("expected error {want}, got {other:?}"),
    }
}

async fn ping_ok(ws: &mut Ws, rid: u64) {
    ws.send(json!({ "type": "ping", "rid": rid })).await;
    match ws.event().await {
        ServerMessage::Ack {
            rid: r,
            result: AckResult::Pong { .. },
        } => assert_eq!(r, Some(Rid::Num(rid))),
        other => panic!("expected the ping ack {rid}, got {other:?}"),
    }
}

/// `base` with a `pad` string field added so the JSON text is exactly `len` bytes.
fn padded_message(mut base: Value, len: usize) -> String {
    base["pad"] = json!("");
    let empty = base.to_string().len();
    assert!(len >= empty, "base message already longer than {len}");
    base["pad"] = json!("x".repeat(len - empty));
    let s = base.to_string();
    assert_eq!(s.len(), len);
    s
}

async fn send_frame(ws: &mut Ws, f: Frame) {
    ws.stream.send(Message::Frame(f)).await.expect("send frame");
}

/// A drain is bounded by its grace: a kept-alive HTTP connection idle between requests is
/// closed as the drain starts (it used to hold the stopping server until the grace ran out,
/// on top of the sockets' spread), a new connection's request is answered with
/// `Connection: close`, and the whole drain ends within `HERALD_DRAIN_GRACE_MS`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_closes_idle_keep_alive_connections_and_ends_within_its_grace() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let grace = Duration::from_secs(3);
    let env = TestEnv::new().await;
    let node = env
        .node_with(|c| {
            c.drain_grace = grace;
            c.drain_spread = Duration::from_millis(300);
        })
        .await;
    let addr = node.base.trim_start_matches("http://").to_string();
    let request = b"GET /healthz HTTP/1.1\r\nhost: herald\r\n\r\n";
    let mut idle = tokio::net::TcpStream::connect(&addr).await.unwrap();
    idle.write_all(request).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    let mut ws = node.connect("alice").await;
    ws.handshake().await;

    let started = tokio::time::Instant::now();
    let handle = node.handle.clone();
    let drain = tokio::spawn(async move { handle.drain().await });
    // The idle connection ends (end of stream) at once, not when the grace runs out.
    let n = tokio::time::timeout(Duration::from_secs(1), idle.read(&mut buf))
        .await
        .expect("the idle kept-alive connection is still open 1 s into the drain")
        .unwrap_or(0);
    assert_eq!(n, 0, "{:?}", String::from_utf8_lossy(&buf[..n]));
    // A request on a new connection during the drain is answered, and the connection closed.
    let mut fresh = tokio::net::TcpStream::connect(&addr).await.unwrap();
    fresh.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, fresh.read_to_end(&mut answer))
        .await
        .expect("the connection was not closed after its answer")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer).to_lowercase();
    assert!(answer.starts_with("http/1.1 200"), "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");

    let (code, _) = ws.expect_close().await;
    assert_eq!(code, 4105);
    tokio::time::timeout(WAIT, drain)
        .await
        .expect("drain did not finish")
        .expect("drain task");
    assert!(
        started.elapsed() <= grace,
        "the drain took {:?}, beyond its grace of {grace:?}",
        started.elapsed()
    );
}
