//! Socket.IO v4 over Engine.IO v4, websocket transport only — just enough of the wire format
//! for the harness to drive the Socket.IO baseline (`loadtest/baselines/socketio/`):
//!
//! ```text
//! client: GET /socket.io/?EIO=4&transport=websocket   (WebSocket upgrade)
//! server: 0{"sid":"…","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":…}
//! client: 40/notifications,{"token":"<jwt>"}          (namespace connect with auth)
//! server: 40/notifications,{"sid":"…"}                (or 44/notifications,{"message":…})
//! server: 42/notifications,["connected",{…}]          (the seed's greeting event)
//! server: 2   client: 3                               (Engine.IO ping / pong, server-initiated)
//! server: 42/notifications,["notification",{"id":…,"data":{"t":…},…}]
//! server: 42/notifications,["global_notification",{…}]
//! ```
//!
//! The default namespace `/` has no `/nsp,` part (`40{"token":…}`, `42["notification",…]`).
//! Binary packets, polling and acks are not needed and not supported.
//!
//! Herald's endpoint (`--protocol herald-sio`) adds what Socket.IO's connection state recovery
//! uses: the CONNECT answer carries a `pid`, every notification event ends with its offset
//! (Herald's seq as a string) and carries `seq`, `connected` carries `latestSeq`; a
//! reconnecting client sends `40/notifications,{"token":…,"pid":…,"offset":"<seq>"}`.

use serde::Deserialize;

/// One decoded text frame.
#[derive(Debug, PartialEq)]
pub enum Packet<'a> {
    /// Engine.IO open (`0{…}`): send the namespace connect now.
    Open,
    /// Engine.IO ping (`2`): answer `3`.
    Ping,
    /// Engine.IO close (`1`) or Socket.IO disconnect (`41`) of our namespace.
    Close,
    /// Socket.IO CONNECT acknowledged for our namespace (`40…{"sid":…}`): the JSON body.
    Connected(&'a str),
    /// Socket.IO CONNECT_ERROR (`44…{"message":…}`), e.g. the JWT was refused.
    ConnectError(&'a str),
    /// Socket.IO EVENT (`42…[name, payload, …]`) in our namespace: the raw JSON array.
    Event(&'a str),
    /// Anything else (another namespace, noop, binary, acks…).
    Other,
}

/// The WebSocket URL for a target: `ws://host:port` or `ws://host:port/` get the standard
/// `/socket.io/?EIO=4&transport=websocket`; a URL with a path is used as given.
pub fn ws_url(target: &str) -> String {
    let rest = target.strip_prefix("ws://").unwrap_or(target);
    match rest.find('/') {
        None => format!("{target}/socket.io/?EIO=4&transport=websocket"),
        Some(i) if rest[i..] == *"/" => format!("{target}socket.io/?EIO=4&transport=websocket"),
        Some(_) => target.to_string(),
    }
}

/// `40{"token":…}` (default namespace) or `40/nsp,{"token":…}`; with `recover` (pid, offset)
/// also `"pid"` and `"offset"`, as `socket.io-client` ≥ 4.6 sends them when it reconnects.
pub fn connect_packet(nsp: &str, token: &str, recover: Option<(&str, i64)>) -> String {
    let auth = match recover {
        None => serde_json::json!({ "token": token }),
        Some((pid, offset)) => {
            serde_json::json!({ "token": token, "pid": pid, "offset": offset.to_string() })
        }
    };
    if nsp.is_empty() || nsp == "/" {
        format!("40{auth}")
    } else {
        format!("40{nsp},{auth}")
    }
}

/// Strips the `/nsp,` part of a Socket.IO packet body; None when it is for another namespace.
fn in_nsp<'a>(body: &'a str, nsp: &str) -> Option<&'a str> {
    if body.starts_with('/') {
        let (name, rest) = match body.find(',') {
            Some(i) => (&body[..i], &body[i + 1..]),
            None => (body, ""),
        };
        (name == nsp).then_some(rest)
    } else {
        (nsp.is_empty() || nsp == "/").then_some(body)
    }
}

pub fn parse<'a>(text: &'a str, nsp: &str) -> Packet<'a> {
    let b = text.as_bytes();
    match b.first() {
        Some(b'0') => Packet::Open,
        Some(b'1') => Packet::Close,
        Some(b'2') => Packet::Ping,
        Some(b'4') => {
            let Some(kind) = b.get(1) else {
                return Packet::Other;
            };
            let Some(body) = in_nsp(&text[2..], nsp) else {
                return Packet::Other;
            };
            match kind {
                b'0' => Packet::Connected(body),
                b'1' => Packet::Close,
                b'4' => Packet::ConnectError(body),
                b'2' => {
                    // An optional ack id (digits) precedes the array.
                    let body = body.trim_start_matches(|c: char| c.is_ascii_digit());
                    Packet::Event(body)
                }
                _ => Packet::Other,
            }
        }
        _ => Packet::Other,
    }
}

/// The recovery `pid` of a CONNECT answer's body (`{"sid":…,"pid":…}`; Herald sends one).
pub fn pid_of(body: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Ack {
        pid: Option<String>,
    }
    serde_json::from_str::<Ack>(body).ok()?.pid
}

/// The parts of a `notification` / `global_notification` payload the harness measures.
#[derive(Deserialize)]
pub struct SioNotification {
    /// Herald's per-user seq (absent from the baselines' payloads).
    #[serde(default)]
    pub seq: Option<i64>,
    /// Herald's `connected` event: the user's latest seq at connect.
    #[serde(default, rename = "latestSeq")]
    pub latest_seq: Option<i64>,
    /// The baseline's row id (a UUID): Socket.IO has no seq, so duplicates are found by id.
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub data: Option<SioData>,
}

#[derive(Deserialize)]
pub struct SioData {
    /// Unix ns at the start of the publish call, set by the coordinator.
    #[serde(default)]
    pub t: Option<u64>,
}

/// Decodes an event array `["name", payload, …]` into its name and payload (payload None
/// when absent or not an object of the expected shape).
pub fn event(array: &str) -> Option<(String, Option<SioNotification>)> {
    // Fast path: [name, object, …] (Herald appends the recovery offset).
    if let Ok(NameObject(name, p)) = serde_json::from_str::<NameObject>(array) {
        return Some((name, Some(p)));
    }
    let v: Vec<serde_json::Value> = serde_json::from_str(array).ok()?;
    let mut it = v.into_iter();
    let name = it.next()?.as_str()?.to_string();
    let payload = it.next().and_then(|p| serde_json::from_value(p).ok());
    Some((name, payload))
}

/// `[name, object, ignored…]` without building a `Value`.
struct NameObject(String, SioNotification);

impl<'de> Deserialize<'de> for NameObject {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = NameObject;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("[name, object, …]")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<NameObject, A::Error> {
                use serde::de::Error;
                let name: String = a
                    .next_element()?
                    .ok_or_else(|| A::Error::invalid_length(0, &self))?;
                let p: SioNotification = a
                    .next_element()?
                    .ok_or_else(|| A::Error::invalid_length(1, &self))?;
                while a.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(NameObject(name, p))
            }
        }
        d.deserialize_seq(V)
    }
}

/// A 64-bit key for an id string (for a per-socket duplicate set).
pub fn id_key(id: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    id.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets() {
        let n = "/notifications";
        assert_eq!(
            parse(r#"0{"sid":"a","pingInterval":25000}"#, n),
            Packet::Open
        );
        assert_eq!(parse("2", n), Packet::Ping);
        assert_eq!(
            parse(r#"40/notifications,{"sid":"x","pid":"p1"}"#, n),
            Packet::Connected(r#"{"sid":"x","pid":"p1"}"#)
        );
        assert_eq!(pid_of(r#"{"sid":"x","pid":"p1"}"#).as_deref(), Some("p1"));
        assert_eq!(pid_of(r#"{"sid":"x"}"#), None);
        assert_eq!(parse(r#"40{"sid":"x"}"#, n), Packet::Other);
        assert_eq!(
            parse(r#"40{"sid":"x"}"#, "/"),
            Packet::Connected(r#"{"sid":"x"}"#)
        );
        assert_eq!(
            parse(r#"44/notifications,{"message":"no"}"#, n),
            Packet::ConnectError(r#"{"message":"no"}"#)
        );
        assert_eq!(
            parse(
                r#"42/notifications,["notification",{"id":"u1","data":{"t":5}}]"#,
                n
            ),
            Packet::Event(r#"["notification",{"id":"u1","data":{"t":5}}]"#)
        );
        assert_eq!(parse(r#"42["x",1]"#, "/"), Packet::Event(r#"["x",1]"#));
        assert_eq!(parse(r#"4217["x",1]"#, "/"), Packet::Event(r#"["x",1]"#));
        let (name, p) = event(r#"["notification",{"id":"u1","data":{"t":5}}]"#).unwrap();
        assert_eq!(name, "notification");
        let p = p.unwrap();
        assert_eq!(p.id.as_deref(), Some("u1"));
        assert_eq!(p.data.unwrap().t, Some(5));
        // Herald: seq in the payload and the offset as a trailing argument.
        let (name, p) = event(r#"["notification",{"id":"a","seq":7,"data":{"t":9}},"7"]"#).unwrap();
        assert_eq!(name, "notification");
        let p = p.unwrap();
        assert_eq!((p.seq, p.data.unwrap().t), (Some(7), Some(9)));
        let (_, p) = event(r#"["connected",{"userId":"u","latestSeq":3},"3"]"#).unwrap();
        assert_eq!(p.unwrap().latest_seq, Some(3));
        let (name, p) = event(r#"["notifications:batch",[{"seq":1}],"1"]"#).unwrap();
        assert_eq!((name.as_str(), p.is_none()), ("notifications:batch", true));
        assert_eq!(
            connect_packet(n, "tok", None),
            r#"40/notifications,{"token":"tok"}"#
        );
        assert_eq!(connect_packet("/", "tok", None), r#"40{"token":"tok"}"#);
        assert_eq!(
            connect_packet(n, "tok", Some(("p1", 12))),
            r#"40/notifications,{"offset":"12","pid":"p1","token":"tok"}"#
        );
        assert_eq!(
            ws_url("ws://127.0.0.1:1"),
            "ws://127.0.0.1:1/socket.io/?EIO=4&transport=websocket"
        );
        assert_eq!(ws_url("ws://h:1/x/?EIO=4"), "ws://h:1/x/?EIO=4");
    }
}
