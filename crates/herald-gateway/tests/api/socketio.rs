//! The Socket.IO endpoint (`/socket.io/`, docs/socketio.md) with a raw WebSocket client that
//! writes the packets socket.io-client writes: handshake, CONNECT, events, acks, recovery
//! by offset, heartbeats, and every refusal. The official client runs against two nodes in
//! conformance/socketio (scripts/test.sh).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::helpers::*;

const NSP: &str = "/notifications";

struct Sio {
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

enum Frame {
    Text(String),
    Closed(u16, String),
}

fn sio_url(node: &TestNode, query: &str) -> String {
    format!("{}/socket.io/?{query}", node.base.replacen("http", "ws", 1))
}

async fn open_raw(
    node: &TestNode,
    query: &str,
    headers: &[(&str, &str)],
) -> Result<Sio, tokio_tungstenite::tungstenite::Error> {
    let mut req = sio_url(node, query).into_client_request()?;
    for (k, v) in headers {
        req.headers_mut().insert(
            tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    let (stream, _) = tokio_tungstenite::connect_async(req).await?;
    Ok(Sio { stream })
}

/// Opens the endpoint as socket.io-client does in Node (no Origin) and reads the open packet.
async fn open(node: &TestNode) -> (Sio, Value) {
    let mut s = open_raw(node, "EIO=4&transport=websocket", &[])
        .await
        .expect("socket.io upgrade");
    let first = s.text().await;
    assert!(
        first.starts_with('0'),
        "expected the open packet, got {first}"
    );
    let open: Value = serde_json::from_str(&first[1..]).unwrap();
    (s, open)
}

impl Sio {
    async fn send(&mut self, s: &str) {
        self.stream
            .send(Message::Text(s.to_string().into()))
            .await
            .unwrap();
    }

    async fn frame(&mut self) -> Frame {
        loop {
            let m = tokio::time::timeout(WAIT, self.stream.next())
                .await
                .expect("timed out waiting for a frame");
            match m {
                None | Some(Err(_)) => return Frame::Closed(1006, String::new()),
                Some(Ok(Message::Text(t))) => return Frame::Text(t.to_string()),
                Some(Ok(Message::Close(c))) => {
                    return match c {
                        Some(f) => Frame::Closed(u16::from(f.code), f.reason.to_string()),
                        None => Frame::Closed(1005, String::new()),
                    }
                }
                Some(Ok(_)) => continue,
            }
        }
    }

    /// The next text frame, answering Engine.IO pings on the way.
    async fn text(&mut self) -> String {
        loop {
            match self.frame().await {
                Frame::Text(t) if t == "2" => self.send("3").await,
                Frame::Text(t) => return t,
                Frame::Closed(c, r) => panic!("closed {c} {r}"),
            }
        }
    }

    /// The next EVENT: its name and arguments.
    async fn event(&mut self) -> (String, Vec<Value>) {
        let t = self.text().await;
        let body = t
            .strip_prefix(&format!("42{NSP},"))
            .unwrap_or_else(|| panic!("expected an event, got {t}"));
        let mut args: Vec<Value> = serde_json::from_str(body).unwrap();
        let name = args.remove(0).as_str().unwrap().to_string();
        (name, args)
    }

    /// Skips events until one named `want`.
    async fn event_named(&mut self, want: &str) -> Vec<Value> {
        loop {
            let (name, args) = self.event().await;
            if name == want {
                return args;
            }
        }
    }

    async fn connect(&mut self, auth: Value) -> Value {
        self.send(&format!("40{NSP},{auth}")).await;
        let t = self.text().await;
        let body = t
            .strip_prefix(&format!("40{NSP},"))
            .unwrap_or_else(|| panic!("expected the CONNECT answer, got {t}"));
        serde_json::from_str(body).unwrap()
    }

    /// Reads until the close; returns the texts seen before it and the close.
    async fn until_close(&mut self) -> (Vec<String>, u16, String) {
        let mut seen = Vec::new();
        loop {
            match self.frame().await {
                Frame::Text(t) => seen.push(t),
                Frame::Closed(c, r) => return (seen, c, r),
            }
        }
    }
}

async fn ack(s: &mut Sio, id: u64) -> Value {
    let prefix = format!("43{NSP},{id}");
    loop {
        let t = s.text().await;
        if let Some(rest) = t.strip_prefix(&prefix) {
            let v: Vec<Value> = serde_json::from_str(rest).unwrap();
            return v[0].clone();
        }
    }
}

#[tokio::test]
async fn the_seed_flow_with_a_numeric_sub_acks_and_recovery() {
    let env = TestEnv::new().await;
    let node = env.node().await;
    let (mut s, hello) = open(&node).await;
    assert_eq!(
        hello["maxPayload"],
        16 * 1024,
        "maxPayload is the frame limit"
    );
    assert_eq!(hello["upgrades"], json!([]));
    assert!(hello["pingInterval"].as_u64().unwrap() > 0);
    assert!(hello["sid"].as_str().unwrap().len() > 8);
    // The seed signs `{ sub: user.id }` with a number.
    let seed_token =
        token_claims(json!({ "sub": 42, "exp": chrono::Utc::now().timestamp() + 3600 }));
    let ok = s.connect(json!({ "token": seed_token })).await;
    let pid = ok["pid"].as_str().unwrap().to_string();
    assert!(ok["sid"].is_string());
    let connected = s.event_named("connected").await;
    assert_eq!(connected[0]["userId"], 42);
    assert_eq!(connected[0]["unreadCount"], 0);

    let seq = node.publish_one("42", "hello").await;
    let args = s.event_named("notification").await;
    let n = &args[0];
    assert_eq!(n["title"], "hello");
    assert_eq!(n["message"], "b");
    assert_eq!(n["body"], "b");
    assert_eq!(n["read"], false);
    assert_eq!(n["seq"], seq);
    assert_eq!(args[1], json!(seq.to_string()), "the offset is the seq");
    let id = n["id"].as_str().unwrap().to_string();

    s.send(&format!(
        r#"42{NSP},1["mark_read",{{"notificationId":"{id}"}}]"#
    ))
    .await;
    let a = ack(&mut s, 1).await;
    assert_eq!(a["success"], true);
    assert_eq!(a["notificationId"], id.as_str());
    assert_eq!(a["unreadCount"], 0);
    s.send(&format!(r#"42{NSP},2["get_unread_count"]"#)).await;
    assert_eq!(ack(&mut s, 2).await["unreadCount"], 0);
    // A refused command changes nothing and is answered on its ack.
    s.send(&format!(
        r#"42{NSP},3["mark_read",{{"notificationId":"7"}}]"#
    ))
    .await;
    let bad = ack(&mut s, 3).await;
    assert_eq!(bad["success"], false);
    assert_eq!(bad["code"], "invalid_message");

    // Gone: two more are published; the client reconnects with its pid and offset.
    drop(s);
    let s2 = node.publish_one("42", "missed 1").await;
    let s3 = node.publish_one("42", "missed 2").await;
    let (mut r, _) = open(&node).await;
    let ok = r
        .connect(json!({ "token": seed_token, "pid": pid, "offset": seq.to_string() }))
        .await;
    assert_eq!(ok["pid"], pid.as_str(), "recovered: the same pid");
    let mut got = Vec::new();
    while got.len() < 2 {
        let (name, args) = r.event().await;
        if name == "notification" {
            assert_eq!(args[1], json!(args[0]["seq"].as_i64().unwrap().to_string()));
            got.push(args[0]["seq"].as_i64().unwrap());
        }
    }
    assert_eq!(got, vec![s2, s3], "each missed notification once, in order");
}

#[tokio::test]
async fn heartbeats_are_engine_io_pings_and_a_silent_client_is_closed() {
    let env = TestEnv::new().await;
    let node = env
        .node_with(|c| {
            c.heartbeat_interval = Duration::from_millis(200);
            c.idle_timeout = Duration::from_millis(700);
        })
        .await;
    let (mut s, hello) = open(&node).await;
    assert_eq!(hello["pingInterval"], 200);
    assert_eq!(hello["pingTimeout"], 500);
    s.connect(json!({ "token": token("hb", 3600) })).await;
    // Answering pings keeps it open past several idle timeouts.
    let started = tokio::time::Instant::now();
    let mut pings = 0;
    while started.elapsed() < Duration::from_millis(1_500) {
        match s.frame().await {
            Frame::Text(t) if t == "2" => {
                pings += 1;
                s.send("3").await;
            }
            Frame::Text(_) => {}
            Frame::Closed(c, r) => panic!("closed while answering pings: {c} {r}"),
        }
    }
    assert!(pings >= 4, "only {pings} pings");
    // A client that stops answering is closed as idle.
    let (_, code, _) = s.until_close().await;
    assert_eq!(code, 4101);
}

#[tokio::test]
async fn the_second_seeds_event_names_send_the_pending_batch_as_an_array() {
    let env = TestEnv::new().await;
    let node = env
        .node_with(|c| {
            c.socketio.events = herald_protocol::socketio::render::EventNames::NotificationNew;
        })
        .await;
    let a = node.publish_one("u2", "one").await;
    let b = node.publish_one("u2", "two").await;
    let (mut s, _) = open(&node).await;
    s.connect(json!({ "token": token("u2", 3600) })).await;
    let batch = s.event_named("notifications:batch").await;
    let seqs: Vec<i64> = batch[0]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, vec![a, b]);
    assert_eq!(batch[1], json!(b.to_string()));
    let c = node.publish_one("u2", "three").await;
    let live = s.event_named("notification:new").await;
    assert_eq!(live[0]["seq"], c);
    assert!(live[0]["readAt"].is_null());
    assert_eq!(live[0]["actionUrl"], Value::Null);
    // A notification committed without reaching the bus: the next live one shows the gap,
    // the session fills it from the store mid-session. The seed's hook replaces its list with
    // a `notifications:batch`, so the filled rows must come as single `notification:new`s.
    env.sql()
        .await
        .batch_execute(
            "UPDATE user_state SET last_seq = last_seq + 1, unread_count = unread_count + 1, \
               version = version + 1 WHERE user_id = 'u2';
             INSERT INTO notifications (user_id, seq, id, type, title, body)
               SELECT 'u2', last_seq, gen_random_uuid(), 't', 'silent', '' FROM user_state \
               WHERE user_id = 'u2';",
        )
        .await
        .unwrap();
    let e = node.publish_one("u2", "five").await;
    let mut got = Vec::new();
    while got.last() != Some(&e) {
        let (name, args) = s.event().await;
        assert_ne!(name, "notifications:batch", "a mid-session batch: {args:?}");
        if name == "notification:new" {
            got.push(args[0]["seq"].as_i64().unwrap());
        }
    }
    assert_eq!(got, vec![c + 1, e]);
}

#[tokio::test]
async fn read_sync_reaches_native_and_socket_io_sockets_alike() {
    let env = TestEnv::new().await;
    let node = env.node().await;
    let mut native = node.connect("rs").await;
    native.handshake().await;
    let (mut s, _) = open(&node).await;
    s.connect(json!({ "token": token("rs", 3600) })).await;
    s.event_named("connected").await;
    let seq = node.publish_one("rs", "x").await;
    let n = s.event_named("notification").await;
    native.notifications_until(seq).await;
    let id = n[0]["id"].as_str().unwrap().to_string();
    let r = node
        .post(
            &format!("/v1/notifications/{id}/read"),
            &token("rs", 60),
            None,
        )
        .await;
    assert_eq!(r.status(), 200);
    let read = s.event_named("notifications:read").await;
    assert_eq!(read[0]["ids"], json!([id]));
    assert_eq!(read[0]["unreadCount"], 0);
    let count = s.event_named("unread_count").await;
    assert_eq!(count[0]["unreadCount"], 0);
    loop {
        if let herald_protocol::ws::ServerMessage::Read { unread_count, .. } = native.event().await
        {
            assert_eq!(unread_count, 0);
            break;
        }
    }
    // And a Socket.IO mark_all_read reaches the native socket.
    node.publish_one("rs", "y").await;
    s.event_named("notification").await;
    s.send(&format!(r#"42{NSP},9["mark_all_read"]"#)).await;
    assert_eq!(ack(&mut s, 9).await["success"], true);
    loop {
        if let herald_protocol::ws::ServerMessage::Read {
            up_to_seq: Some(_),
            unread_count,
            ..
        } = native.event().await
        {
            assert_eq!(unread_count, 0);
            break;
        }
    }
}

#[tokio::test]
async fn refusals_are_clear() {
    let env = TestEnv::new().await;
    let node = env
        .node_with(|c| {
            c.max_message_bytes = 1024;
            c.auth_timeout = Duration::from_millis(500);
        })
        .await;
    let status = |e: tokio_tungstenite::tungstenite::Error| match e {
        tokio_tungstenite::tungstenite::Error::Http(r) => {
            let body = String::from_utf8_lossy(r.body().as_deref().unwrap_or_default()).to_string();
            (r.status().as_u16(), body)
        }
        other => panic!("expected an HTTP refusal, got {other}"),
    };
    // Socket.IO v2 clients (EIO=3), long-polling asked as an upgrade, a missing EIO, a token
    // in the URL.
    for (q, code, needle) in [
        ("EIO=3&transport=websocket", 400, "socket.io-client 2.x"),
        ("EIO=4&transport=polling", 400, "plain HTTP"),
        ("transport=websocket", 400, "EIO=4"),
        ("EIO=4&transport=websocket&token=abc", 400, "token"),
    ] {
        let (st, body) = status(open_raw(&node, q, &[]).await.err().expect(q));
        assert_eq!(st, code, "{q}: {body}");
        assert!(body.contains(needle), "{q}: {body}");
    }
    // transport=websocket as a plain GET (no Upgrade header).
    let r = node
        .http
        .get(format!(
            "{}/socket.io/?EIO=4&transport=websocket&t=x",
            node.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "invalid_parameter");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("WebSocket upgrade"),
        "{body}"
    );
    let r = node
        .http
        .get(format!("{}/nowhere", node.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "other paths are still 404");
    // A browser's Origin is checked.
    let (st, _) = status(
        open_raw(
            &node,
            "EIO=4&transport=websocket",
            &[("origin", "http://evil.test")],
        )
        .await
        .err()
        .expect("bad origin"),
    );
    assert_eq!(st, 403);
    assert!(
        open_raw(&node, "EIO=4&transport=websocket", &[("origin", ORIGIN)])
            .await
            .is_ok()
    );

    // A bad token: CONNECT_ERROR with a message, then the close.
    let (mut s, _) = open(&node).await;
    s.send(&format!(r#"40{NSP},{{"token":"nope"}}"#)).await;
    let (seen, code, _) = s.until_close().await;
    assert!(
        seen.iter()
            .any(|t| t.starts_with(&format!("44{NSP},")) && t.contains("\"message\"")),
        "{seen:?}"
    );
    assert_eq!(code, 4001);
    // An expired token says so.
    let (mut s, _) = open(&node).await;
    s.send(&format!(r#"40{NSP},{{"token":"{}"}}"#, token("exp", -3600)))
        .await;
    let (seen, code, _) = s.until_close().await;
    assert!(seen.iter().any(|t| t.contains("expired")), "{seen:?}");
    assert_eq!(code, 4103);
    // No token at all.
    let (mut s, _) = open(&node).await;
    s.send(&format!("40{NSP},")).await;
    let (seen, _, _) = s.until_close().await;
    assert!(seen.iter().any(|t| t.contains("no token")), "{seen:?}");
    // Another namespace: refused as socket.io does; then no CONNECT in time.
    let (mut s, _) = open(&node).await;
    s.send(r#"40/admin,{"token":"x"}"#).await;
    assert_eq!(
        s.text().await,
        r#"44/admin,{"message":"Invalid namespace"}"#
    );
    let (seen, code, _) = s.until_close().await;
    assert_eq!(code, 4102);
    assert!(seen.iter().any(|t| t.starts_with("44")), "{seen:?}");

    // Binary packets: a BINARY_EVENT, and a binary frame.
    let (mut s, _) = open(&node).await;
    s.connect(json!({ "token": token("bin", 3600) })).await;
    s.send(&format!(
        r#"451-{NSP},["x",{{"_placeholder":true,"num":0}}]"#
    ))
    .await;
    let (_, code, reason) = s.until_close().await;
    assert_eq!(code, 1003);
    assert!(reason.contains("binary"), "{reason}");
    let (mut s, _) = open(&node).await;
    s.connect(json!({ "token": token("bin", 3600) })).await;
    s.stream
        .send(Message::Binary(vec![4u8, 1, 2].into()))
        .await
        .unwrap();
    assert_eq!(s.until_close().await.1, 1003);

    // Oversize: more than maxPayload.
    let (mut s, open_pkt) = open(&node).await;
    assert_eq!(open_pkt["maxPayload"], 1024);
    s.connect(json!({ "token": token("big", 3600) })).await;
    let big = "x".repeat(2_000);
    s.send(&format!(
        r#"42{NSP},["mark_read",{{"notificationId":"{big}"}}]"#
    ))
    .await;
    assert_eq!(s.until_close().await.1, 1009);
}

#[tokio::test]
async fn a_configured_path_and_namespace_and_the_endpoint_turned_off() {
    let env = TestEnv::new().await;
    let node = env
        .node_with(|c| {
            c.socketio.path = "/rt".into();
            c.socketio.namespace = "/bell".into();
        })
        .await;
    let url = format!(
        "{}/rt/?EIO=4&transport=websocket",
        node.base.replacen("http", "ws", 1)
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("configured path");
    let Some(Ok(Message::Text(open))) = ws.next().await else {
        panic!("no open packet")
    };
    assert!(open.starts_with('0'));
    ws.send(Message::Text(
        format!(r#"40/bell,{{"token":"{}"}}"#, token("cfg", 3600)).into(),
    ))
    .await
    .unwrap();
    let Some(Ok(Message::Text(ok))) = ws.next().await else {
        panic!("no CONNECT answer")
    };
    assert!(ok.starts_with("40/bell,{"), "{ok}");
    // The default path is not served then; nor anything when the endpoint is off.
    assert!(open_raw(&node, "EIO=4&transport=websocket", &[])
        .await
        .is_err());
    let off = env.node_with(|c| c.socketio.enabled = false).await;
    match open_raw(&off, "EIO=4&transport=websocket", &[]).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 404),
        Err(e) => panic!("expected a 404, got {e}"),
        Ok(_) => panic!("the endpoint is off"),
    }
}

// ---- HTTP long-polling (socket.io-client's default transports) and the upgrade ----

/// A long-polling client as socket.io-client's polling transport behaves: one GET at a
/// time, packets POSTed joined by the record separator, pings answered with `3`.
struct Poll {
    base: String,
    http: reqwest::Client,
    sid: String,
    /// Packets read but not yet consumed.
    buffered: std::collections::VecDeque<String>,
}

const RS: char = '\u{1e}';

fn poll_url(base: &str, sid: Option<&str>) -> String {
    match sid {
        Some(sid) => format!("{base}/socket.io/?EIO=4&transport=polling&t=x&sid={sid}"),
        None => format!("{base}/socket.io/?EIO=4&transport=polling&t=x"),
    }
}

async fn poll_open(node: &TestNode) -> (Poll, Value) {
    let r = node
        .http
        .get(poll_url(&node.base, None))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    let first = body.split(RS).next().unwrap();
    assert!(
        first.starts_with('0'),
        "expected the open packet, got {body}"
    );
    let open: Value = serde_json::from_str(&first[1..]).unwrap();
    let p = Poll {
        base: node.base.clone(),
        http: node.http.clone(),
        sid: open["sid"].as_str().unwrap().to_string(),
        buffered: body.split(RS).skip(1).map(str::to_string).collect(),
    };
    (p, open)
}

impl Poll {
    fn url(&self) -> String {
        poll_url(&self.base, Some(&self.sid))
    }

    async fn get(&self) -> reqwest::Response {
        tokio::time::timeout(WAIT, self.http.get(self.url()).send())
            .await
            .expect("long-poll GET timed out")
            .unwrap()
    }

    async fn post(&self, packets: &[&str]) -> reqwest::Response {
        let body = packets.join(&RS.to_string());
        self.http
            .post(self.url())
            .header("content-type", "text/plain;charset=UTF-8")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// The next packet (GETting as needed), answering pings.
    async fn packet(&mut self) -> String {
        loop {
            while let Some(p) = self.buffered.pop_front() {
                if p == "2" {
                    assert_eq!(self.post(&["3"]).await.status(), 200);
                    continue;
                }
                if p == "6" {
                    continue;
                }
                return p;
            }
            let r = self.get().await;
            assert_eq!(r.status(), 200);
            let body = r.text().await.unwrap();
            self.buffered.extend(body.split(RS).map(str::to_string));
        }
    }

    async fn event_named(&mut self, want: &str) -> Vec<Value> {
        loop {
            let t = self.packet().await;
            let Some(body) = t.strip_prefix(&format!("42{NSP},")) else {
                continue;
            };
            let mut args: Vec<Value> = serde_json::from_str(body).unwrap();
            if args.remove(0) == want {
                return args;
            }
        }
    }

    async fn connect(&mut self, auth: Value) -> Value {
        assert_eq!(
            self.post(&[&format!("40{NSP},{auth}")])
                .await
                .text()
                .await
                .unwrap(),
            "ok"
        );
        let t = self.packet().await;
        let body = t
            .strip_prefix(&format!("40{NSP},"))
            .unwrap_or_else(|| panic!("expected the CONNECT answer, got {t}"));
        serde_json::from_str(body).unwrap()
    }
}

/// The seqs of the `notification` events among packets.
fn notification_seqs<'a>(packets: impl IntoIterator<Item = &'a str>) -> Vec<i64> {
    packets
        .into_iter()
        .filter_map(|t| t.strip_prefix(&format!("42{NSP},")))
        .filter_map(|b| serde_json::from_str::<Vec<Value>>(b).ok())
        .filter(|a| a[0] == "notification")
        .map(|a| a[1]["seq"].as_i64().unwrap())
        .collect()
}

/// Waits (bounded) until a GET with this sid is refused as unknown.
async fn until_unknown(p: &Poll) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let r = p.get().await;
        if r.status() == 400 {
            return r.json().await.unwrap();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the session never ended"
        );
    }
}

#[tokio::test]
async fn default_clients_poll_then_upgrade_without_loss_or_duplicates() {
    let env = TestEnv::new().await;
    let node = env.node().await;
    let (mut p, open) = poll_open(&node).await;
    assert_eq!(open["upgrades"], json!(["websocket"]));
    assert_eq!(open["maxPayload"], 16 * 1024);
    let sid = p.sid.clone();
    assert!(sid.contains('~'), "the node id leads the sid: {sid}");
    p.connect(json!({ "token": token("lp", 3600) })).await;
    assert_eq!(p.event_named("connected").await[0]["userId"], "lp");
    assert_eq!(
        node.metric("herald_socketio_connections{transport=\"polling\"}")
            .await,
        1
    );

    // A notification over polling, and an acked command POSTed.
    let s1 = node.publish_one("lp", "one").await;
    let n = p.event_named("notification").await;
    assert_eq!(n[0]["seq"], s1);
    assert_eq!(
        p.post(&[&format!(r#"42{NSP},1["get_unread_count"]"#)])
            .await
            .status(),
        200
    );
    loop {
        let t = p.packet().await;
        if let Some(rest) = t.strip_prefix(&format!("43{NSP},1")) {
            let v: Vec<Value> = serde_json::from_str(rest).unwrap();
            assert_eq!(v[0]["unreadCount"], 1);
            break;
        }
    }
    // Whatever came with the ack (events after it) counts as seen before the switch.
    let mut seen: Vec<String> = p.buffered.drain(..).collect();

    // The upgrade, as socket.io-client does it: a GET pending, the probe on a WebSocket.
    let pending = {
        let (http, url) = (p.http.clone(), p.url());
        tokio::spawn(async move { http.get(url).send().await.unwrap().text().await.unwrap() })
    };
    let mut ws = open_raw(&node, &format!("EIO=4&transport=websocket&sid={sid}"), &[])
        .await
        .expect("upgrade");
    ws.send("2probe").await;
    assert_eq!(ws.text().await, "3probe");
    // The pending GET ends (with a noop) so the client can pause polling.
    let ended = tokio::time::timeout(WAIT, pending).await.unwrap().unwrap();
    seen.extend(ended.split(RS).map(str::to_string));
    // Published while the client is between transports: held for the WebSocket.
    let s2 = node.publish_one("lp", "two").await;
    ws.send("5").await;
    let s3 = node.publish_one("lp", "three").await;
    loop {
        let t = ws.text().await;
        let done = notification_seqs([t.as_str()]).contains(&s3);
        seen.push(t);
        if done {
            break;
        }
    }
    assert_eq!(
        notification_seqs(seen.iter().map(String::as_str)),
        vec![s2, s3],
        "every notification once, in order, across the switch: {seen:?}"
    );
    // The session is on the WebSocket now: commands, and polling with its sid is over.
    ws.send(&format!(r#"42{NSP},2["get_unread_count"]"#)).await;
    assert_eq!(ack(&mut ws, 2).await["unreadCount"], 3);
    assert_eq!(
        until_unknown(&p).await,
        json!({"code": 1, "message": "Session ID unknown"})
    );
    assert_eq!(node.metric("herald_socketio_upgrades_total").await, 1);
    assert_eq!(
        node.metric("herald_socketio_connections{transport=\"websocket\"}")
            .await,
        1
    );
    assert_eq!(
        node.metric("herald_socketio_connections{transport=\"polling\"}")
            .await,
        0
    );
    assert_eq!(
        node.metric("herald_socketio_connections_total{transport=\"polling\"}")
            .await,
        1
    );
}

/// Sends a raw request head (and maybe part of a body) and reads the response's status line.
async fn raw_status(node: &TestNode, head: &str, body: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = node.base.trim_start_matches("http://").to_string();
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(head.as_bytes()).await.unwrap();
    c.write_all(body).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(WAIT, c.read(&mut buf))
        .await
        .expect("no answer")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).to_string()
}

#[tokio::test]
async fn polling_refusals_are_clear() {
    let env = TestEnv::new().await;
    let node = env.node_with(|c| c.max_message_bytes = 1024).await;
    // Unknown sids, with this node's prefix or another node's: engine.io's refusal.
    let (p, _) = poll_open(&node).await;
    let ours = p.sid.split_once('~').unwrap().0.to_string();
    for sid in ["nope", "another-node~0123", &format!("{ours}~0123")] {
        let r = node
            .http
            .get(poll_url(&node.base, Some(sid)))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body, json!({"code": 1, "message": "Session ID unknown"}));
        let r = node
            .http
            .post(poll_url(&node.base, Some(sid)))
            .body("3")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
    }
    let r = node
        .http
        .post(poll_url(&node.base, None))
        .body("40")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "a POST without a sid");

    // An oversized POST is refused on its declared length, before any body byte is sent.
    let (p, _) = poll_open(&node).await;
    let path = format!("/socket.io/?EIO=4&transport=polling&sid={}", p.sid);
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 100000\r\n\r\n"
    );
    let got = raw_status(&node, &head, b"").await;
    assert!(got.starts_with("HTTP/1.1 413"), "{got}");
    assert!(
        got.contains("payload_too_large") && got.contains("1024"),
        "{got}"
    );
    // ... and it ends the session (the client was told maxPayload).
    until_unknown(&p).await;

    // A chunked body is bounded as it streams.
    let (p, _) = poll_open(&node).await;
    let path = format!("/socket.io/?EIO=4&transport=polling&sid={}", p.sid);
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    let chunk = format!("800\r\n{}\r\n", "x".repeat(0x800));
    let got = raw_status(&node, &head, chunk.as_bytes()).await;
    assert!(got.starts_with("HTTP/1.1 413"), "{got}");
    until_unknown(&p).await;

    // Two GETs at once: one is refused and the session closed, as engine.io does; the
    // other ends with the close packet.
    let (p, _) = poll_open(&node).await;
    let get = || async {
        let r = p.get().await;
        (r.status().as_u16(), r.text().await.unwrap())
    };
    let (mut both, other) = tokio::join!(get(), get());
    let mut both = [std::mem::take(&mut both), other];
    both.sort();
    assert_eq!(both[0].0, 200);
    assert!(
        both[0].1.split(RS).any(|t| t == "1"),
        "the close packet: {both:?}"
    );
    assert_eq!(
        both[1],
        (400, r#"{"code":3,"message":"Bad request"}"#.to_string())
    );
    until_unknown(&p).await;

    // A binary payload is refused.
    let (mut p, _) = poll_open(&node).await;
    p.connect(json!({ "token": token("lpbin", 3600) })).await;
    let r = p
        .http
        .post(p.url())
        .body(vec![0xffu8, 0xfe, 0x00])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    until_unknown(&p).await;
}

#[tokio::test]
async fn polling_cors_echoes_allowed_origins_and_refuses_others() {
    let env = TestEnv::new().await;
    let node = env.node().await;
    let r = node
        .http
        .get(poll_url(&node.base, None))
        .header("origin", ORIGIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["access-control-allow-origin"], ORIGIN);
    assert!(
        r.headers()
            .get("access-control-allow-credentials")
            .is_none(),
        "no cookies are used: credentials are not allowed"
    );
    let sid = {
        let body = r.text().await.unwrap();
        let open: Value = serde_json::from_str(&body[1..]).unwrap();
        open["sid"].as_str().unwrap().to_string()
    };
    // The preflight a browser sends before a POST with extra headers.
    let r = node
        .http
        .request(reqwest::Method::OPTIONS, poll_url(&node.base, Some(&sid)))
        .header("origin", ORIGIN)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(r.headers()["access-control-allow-origin"], ORIGIN);
    let methods = r.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap();
    assert!(
        methods.contains("POST") && methods.contains("GET"),
        "{methods}"
    );
    // Another Origin: 403, on the handshake, a session's requests and the preflight.
    for (method, sid) in [
        (reqwest::Method::GET, None),
        (reqwest::Method::POST, Some(sid.as_str())),
        (reqwest::Method::OPTIONS, Some(sid.as_str())),
    ] {
        let r = node
            .http
            .request(method.clone(), poll_url(&node.base, sid))
            .header("origin", "http://evil.test")
            .header("access-control-request-method", "POST")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{method}");
        assert!(r.headers().get("access-control-allow-origin").is_none());
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["code"], "origin_not_allowed", "{method}");
    }
    // The upgrade of a session is checked too.
    match open_raw(
        &node,
        &format!("EIO=4&transport=websocket&sid={sid}"),
        &[("origin", "http://evil.test")],
    )
    .await
    {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 403),
        other => panic!("expected a 403, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test]
async fn polling_sessions_live_while_polled_and_are_reaped_when_idle() {
    let env = TestEnv::new().await;
    let node = env
        .node_with(|c| {
            c.heartbeat_interval = Duration::from_millis(200);
            c.idle_timeout = Duration::from_millis(700);
        })
        .await;
    let (mut p, open) = poll_open(&node).await;
    assert_eq!(open["pingInterval"], 200);
    assert_eq!(open["pingTimeout"], 500);
    p.connect(json!({ "token": token("idle", 3600) })).await;
    // Polling and answering pings keeps it open past several idle timeouts.
    let started = tokio::time::Instant::now();
    let mut pings = 0;
    while started.elapsed() < Duration::from_millis(1_500) {
        let r = p.get().await;
        assert_eq!(r.status(), 200);
        for t in r.text().await.unwrap().split(RS) {
            assert_ne!(t, "1", "closed while polled");
            if t == "2" {
                pings += 1;
                assert_eq!(p.post(&["3"]).await.status(), 200);
            }
        }
    }
    assert!(pings >= 4, "only {pings} pings");
    assert_eq!(
        node.metric("herald_socketio_connections{transport=\"polling\"}")
            .await,
        1
    );
    // A client that stops polling is reaped: its sid is unknown, its slot free.
    let gone_at = tokio::time::Instant::now();
    let deadline = gone_at + WAIT;
    while node
        .metric("herald_socketio_connections{transport=\"polling\"}")
        .await
        != 0
    {
        assert!(tokio::time::Instant::now() < deadline, "never reaped");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        gone_at.elapsed() >= Duration::from_millis(500),
        "reaped too early"
    );
    until_unknown(&p).await;
}

#[tokio::test]
async fn polling_is_served_beside_static_files() {
    // A node serving a web app from `/` (HERALD_STATIC_DIR): the static files must not
    // take the long-polling POST (they answer other methods with 405).
    let dir = std::env::temp_dir().join(format!("herald-sio-static-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("index.html"), "<!doctype html>").unwrap();
    let env = TestEnv::new().await;
    let node = env.node_with(|c| c.static_dir = Some(dir.clone())).await;
    let (mut p, _) = poll_open(&node).await;
    p.connect(json!({ "token": token("static", 3600) })).await;
    assert_eq!(p.event_named("connected").await[0]["userId"], "static");
    let r = node
        .http
        .get(format!("{}/", node.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the app is still served");
    let _ = std::fs::remove_dir_all(&dir);
}
