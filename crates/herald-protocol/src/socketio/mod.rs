//! Engine.IO v4 and Socket.IO v5 packets over WebSocket text frames: parsing and encoding
//! only, no IO (the gateway's `ws::sio` drives them).
//!
//! An Engine.IO packet is one text frame: a type digit (`0` open, `1` close, `2` ping, `3`
//! pong, `4` message, `5` upgrade, `6` noop) and a payload. A `4` message carries one
//! Socket.IO packet: a type digit (`0` CONNECT, `1` DISCONNECT, `2` EVENT, `3` ACK, `4`
//! CONNECT_ERROR; `5`/`6` are the binary variants, refused), an optional namespace ending in
//! `,`, an optional acknowledgement id, and JSON data.
//!
//! Bounds: the frame itself is bounded by the transport (`HERALD_MAX_MESSAGE_BYTES`, advertised
//! as Engine.IO's `maxPayload`); an ack id is at most [`MAX_ACK_ID_DIGITS`] digits, a
//! namespace at most [`MAX_NAMESPACE_LEN`] bytes, and JSON nesting is bounded by serde_json's
//! recursion limit.

pub mod render;

use serde_json::Value;

/// The Engine.IO protocol version served (`EIO=4`: Socket.IO v3 and v4 clients).
pub const ENGINE_IO_VERSION: &str = "4";
/// The longest ack id accepted: 15 digits stays below 2^53, so JavaScript reads it exactly.
pub const MAX_ACK_ID_DIGITS: usize = 15;
/// The longest namespace accepted.
pub const MAX_NAMESPACE_LEN: usize = 128;

/// Why an inbound packet was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PacketError {
    /// Empty frame or an unknown packet type.
    Malformed(&'static str),
    /// A binary packet (Engine.IO binary message, Socket.IO BINARY_EVENT / BINARY_ACK).
    Binary,
}

impl PacketError {
    pub fn message(&self) -> &'static str {
        match self {
            PacketError::Malformed(m) => m,
            PacketError::Binary => "binary packets are not supported; send JSON arguments",
        }
    }
}

/// An inbound Engine.IO packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnginePacket<'a> {
    Close,
    Ping(&'a str),
    Pong(&'a str),
    /// A Socket.IO packet (see [`parse_socket`]).
    Message(&'a str),
    Upgrade,
    Noop,
}

/// Parses an Engine.IO text frame.
pub fn parse_engine(frame: &str) -> Result<EnginePacket<'_>, PacketError> {
    let mut chars = frame.char_indices();
    let Some((_, t)) = chars.next() else {
        return Err(PacketError::Malformed("empty Engine.IO packet"));
    };
    let rest = &frame[t.len_utf8()..];
    match t {
        '1' => Ok(EnginePacket::Close),
        '2' => Ok(EnginePacket::Ping(rest)),
        '3' => Ok(EnginePacket::Pong(rest)),
        '4' => Ok(EnginePacket::Message(rest)),
        '5' => Ok(EnginePacket::Upgrade),
        '6' => Ok(EnginePacket::Noop),
        'b' => Err(PacketError::Binary),
        _ => Err(PacketError::Malformed("unknown Engine.IO packet type")),
    }
}

/// An inbound Socket.IO packet.
#[derive(Debug, Clone, PartialEq)]
pub enum SocketPacket {
    Connect {
        nsp: String,
        /// The `auth` object of `io(url, { auth })`, with `pid`/`offset` when recovering.
        auth: Option<Value>,
    },
    Disconnect {
        nsp: String,
    },
    Event {
        nsp: String,
        id: Option<u64>,
        name: String,
        args: Vec<Value>,
    },
    Ack {
        nsp: String,
        id: u64,
        args: Vec<Value>,
    },
    /// Only a server sends it; a client that does is refused.
    ConnectError {
        nsp: String,
    },
}

/// Parses a Socket.IO packet (the payload of an Engine.IO `4` message).
pub fn parse_socket(p: &str) -> Result<SocketPacket, PacketError> {
    let bytes = p.as_bytes();
    let Some(&t) = bytes.first() else {
        return Err(PacketError::Malformed("empty Socket.IO packet"));
    };
    if t == b'5' || t == b'6' {
        return Err(PacketError::Binary);
    }
    if !(b'0'..=b'4').contains(&t) {
        // Checked before slicing: a multi-byte first character has no boundary at 1.
        return Err(PacketError::Malformed("unknown Socket.IO packet type"));
    }
    let mut rest = &p[1..];
    // Namespace: `/name,` (the main namespace `/` is written without one).
    let nsp = if rest.starts_with('/') {
        let end = rest
            .find(',')
            .unwrap_or(rest.len())
            .min(MAX_NAMESPACE_LEN + 1);
        if end > MAX_NAMESPACE_LEN {
            return Err(PacketError::Malformed("namespace too long"));
        }
        let nsp = rest[..end].to_string();
        rest = rest.get(end + 1..).unwrap_or("");
        nsp
    } else {
        "/".to_string()
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let id = if digits == 0 {
        None
    } else if digits > MAX_ACK_ID_DIGITS {
        return Err(PacketError::Malformed("ack id too long"));
    } else {
        let id = rest[..digits]
            .parse::<u64>()
            .map_err(|_| PacketError::Malformed("bad ack id"))?;
        rest = &rest[digits..];
        Some(id)
    };
    let data: Option<Value> = if rest.is_empty() {
        None
    } else {
        Some(
            serde_json::from_str(rest)
                .map_err(|_| PacketError::Malformed("packet data is not valid JSON"))?,
        )
    };
    match t {
        b'0' => match data {
            None | Some(Value::Object(_)) => Ok(SocketPacket::Connect { nsp, auth: data }),
            _ => Err(PacketError::Malformed("CONNECT data must be an object")),
        },
        b'1' => Ok(SocketPacket::Disconnect { nsp }),
        b'2' => match data {
            Some(Value::Array(mut args)) if matches!(args.first(), Some(Value::String(_))) => {
                let name = match args.remove(0) {
                    Value::String(s) => s,
                    _ => String::new(),
                };
                Ok(SocketPacket::Event {
                    nsp,
                    id,
                    name,
                    args,
                })
            }
            _ => Err(PacketError::Malformed(
                "EVENT data must be an array starting with the event name",
            )),
        },
        b'3' => match (id, data) {
            (Some(id), Some(Value::Array(args))) => Ok(SocketPacket::Ack { nsp, id, args }),
            _ => Err(PacketError::Malformed("ACK needs an id and an array")),
        },
        b'4' => Ok(SocketPacket::ConnectError { nsp }),
        _ => Err(PacketError::Malformed("unknown Socket.IO packet type")),
    }
}

/// The Engine.IO open packet (`0{...}`), sent first on a new connection. A long-polling
/// session offers the upgrade to WebSocket (`upgrades: ["websocket"]`); a WebSocket one has
/// nothing to upgrade to.
pub fn open(
    sid: &str,
    ping_interval_ms: u64,
    ping_timeout_ms: u64,
    max_payload: u64,
    polling: bool,
) -> String {
    let upgrades: &[&str] = if polling { &["websocket"] } else { &[] };
    format!(
        "0{}",
        serde_json::json!({
            "sid": sid,
            "upgrades": upgrades,
            "pingInterval": ping_interval_ms,
            "pingTimeout": ping_timeout_ms,
            "maxPayload": max_payload,
        })
    )
}

/// Separates the packets of an HTTP long-polling payload (Engine.IO 4: ASCII record separator).
pub const RECORD_SEPARATOR: char = '\x1e';

/// The Engine.IO noop: ends a pending long-polling GET during an upgrade.
pub const NOOP: &str = "6";

/// The Engine.IO close packet: the session is over (long-polling).
pub const CLOSE: &str = "1";

/// The upgrade probe a client sends on its new WebSocket, and our answer.
pub const PROBE: &str = "2probe";
pub const PROBE_ANSWER: &str = "3probe";

/// The client's last packet on the new WebSocket: the upgrade is done.
pub const UPGRADE: &str = "5";

/// Joins packets into one long-polling payload.
pub fn payload<S: AsRef<str>>(packets: impl IntoIterator<Item = S>) -> String {
    let mut out = String::new();
    for (i, p) in packets.into_iter().enumerate() {
        if i > 0 {
            out.push(RECORD_SEPARATOR);
        }
        out.push_str(p.as_ref());
    }
    out
}

/// Splits a long-polling payload (a POST body) into its packets.
pub fn split_payload(body: &str) -> impl Iterator<Item = &str> {
    body.split(RECORD_SEPARATOR)
}

/// The Engine.IO ping the server sends every `pingInterval`.
pub const PING: &str = "2";

/// `4` + Socket.IO type + namespace prefix (`/nsp,`, or nothing for `/`).
fn head(t: char, nsp: &str) -> String {
    if nsp == "/" {
        format!("4{t}")
    } else {
        format!("4{t}{nsp},")
    }
}

/// The CONNECT answer: `sid` of the Socket.IO socket, `pid` for connection state recovery.
pub fn connect_ok(nsp: &str, sid: &str, pid: &str) -> String {
    format!(
        "{}{}",
        head('0', nsp),
        serde_json::json!({ "sid": sid, "pid": pid })
    )
}

/// CONNECT_ERROR: the client's `connect_error` listener receives an `Error` with this message
/// and `data`.
pub fn connect_error(nsp: &str, message: &str, data: Option<Value>) -> String {
    let mut body = serde_json::json!({ "message": message });
    if let Some(d) = data {
        body["data"] = d;
    }
    format!("{}{}", head('4', nsp), body)
}

/// DISCONNECT: the server ends the Socket.IO socket; the client does not reconnect.
pub fn disconnect(nsp: &str) -> String {
    head('1', nsp)
}

/// An EVENT with its already-serialised JSON arguments.
pub fn event_raw(nsp: &str, name: &str, args: &[&str]) -> String {
    let mut s = head('2', nsp);
    s.push('[');
    s.push_str(&Value::String(name.to_string()).to_string());
    for a in args {
        s.push(',');
        s.push_str(a);
    }
    s.push(']');
    s
}

/// An EVENT with JSON arguments.
pub fn event(nsp: &str, name: &str, args: &[Value]) -> String {
    let args: Vec<String> = args.iter().map(Value::to_string).collect();
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    event_raw(nsp, name, &refs)
}

/// An ACK answering the client's event `id`.
pub fn ack(nsp: &str, id: u64, args: &[Value]) -> String {
    format!("{}{}{}", head('3', nsp), id, Value::Array(args.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn parses_engine_packets() {
        assert_eq!(parse_engine("3"), Ok(EnginePacket::Pong("")));
        assert_eq!(parse_engine("2probe"), Ok(EnginePacket::Ping("probe")));
        assert_eq!(parse_engine("40"), Ok(EnginePacket::Message("0")));
        assert_eq!(parse_engine("1"), Ok(EnginePacket::Close));
        assert_eq!(
            parse_engine(""),
            Err(PacketError::Malformed("empty Engine.IO packet"))
        );
        assert_eq!(parse_engine("bAAA"), Err(PacketError::Binary));
        assert!(parse_engine("9").is_err());
        assert!(parse_engine("é").is_err());
    }

    #[test]
    fn parses_the_client_packets_socket_io_client_writes() {
        assert_eq!(
            parse_socket(r#"0/notifications,{"token":"t"}"#),
            Ok(SocketPacket::Connect {
                nsp: "/notifications".into(),
                auth: Some(json!({"token": "t"}))
            })
        );
        assert_eq!(
            parse_socket("0"),
            Ok(SocketPacket::Connect {
                nsp: "/".into(),
                auth: None
            })
        );
        assert_eq!(
            parse_socket("0/admin"),
            Ok(SocketPacket::Connect {
                nsp: "/admin".into(),
                auth: None
            })
        );
        assert_eq!(
            parse_socket(r#"2/notifications,12["mark_read",{"notificationId":"x"}]"#),
            Ok(SocketPacket::Event {
                nsp: "/notifications".into(),
                id: Some(12),
                name: "mark_read".into(),
                args: vec![json!({"notificationId": "x"})]
            })
        );
        assert_eq!(
            parse_socket(r#"2["get_unread_count"]"#),
            Ok(SocketPacket::Event {
                nsp: "/".into(),
                id: None,
                name: "get_unread_count".into(),
                args: vec![]
            })
        );
        assert_eq!(
            parse_socket("1/notifications,"),
            Ok(SocketPacket::Disconnect {
                nsp: "/notifications".into()
            })
        );
        assert_eq!(
            parse_socket("3/notifications,4[1]"),
            Ok(SocketPacket::Ack {
                nsp: "/notifications".into(),
                id: 4,
                args: vec![json!(1)]
            })
        );
    }

    #[test]
    fn refuses_binary_and_malformed_packets() {
        assert_eq!(
            parse_socket(r#"51-/notifications,["x",{"_placeholder":true,"num":0}]"#),
            Err(PacketError::Binary)
        );
        assert_eq!(parse_socket("6"), Err(PacketError::Binary));
        assert!(parse_socket(r#"2/notifications,{"a":1}"#).is_err());
        assert!(parse_socket(r#"2/notifications,[1]"#).is_err());
        assert!(parse_socket("2/notifications,[").is_err());
        assert!(parse_socket("0/notifications,[1]").is_err());
        assert!(parse_socket("3/n,[1]").is_err());
        assert!(parse_socket("2/n,1234567890123456[\"a\"]").is_err());
        let long = format!("0/{},", "a".repeat(MAX_NAMESPACE_LEN + 5));
        assert_eq!(
            parse_socket(&long),
            Err(PacketError::Malformed("namespace too long"))
        );
        assert!(parse_socket("").is_err());
        assert!(parse_socket("9").is_err());
        assert!(parse_socket("🕴x").is_err());
    }

    #[test]
    fn encodes_as_socket_io_does() {
        assert_eq!(
            connect_ok("/notifications", "s", "p"),
            r#"40/notifications,{"pid":"p","sid":"s"}"#
        );
        assert_eq!(connect_ok("/", "s", "p"), r#"40{"pid":"p","sid":"s"}"#);
        assert_eq!(disconnect("/notifications"), "41/notifications,");
        assert_eq!(disconnect("/"), "41");
        assert_eq!(
            event("/notifications", "connected", &[json!({"a": 1})]),
            r#"42/notifications,["connected",{"a":1}]"#
        );
        assert_eq!(
            ack("/notifications", 3, &[json!({"ok": true})]),
            r#"43/notifications,3[{"ok":true}]"#
        );
        assert_eq!(
            connect_error("/notifications", "bad", None),
            r#"44/notifications,{"message":"bad"}"#
        );
        let o = open("sid", 25000, 20000, 16384, false);
        let v: Value = serde_json::from_str(&o[1..]).unwrap();
        assert_eq!(v["maxPayload"], 16384);
        assert_eq!(v["upgrades"], json!([]));
        let o = open("sid", 25000, 20000, 16384, true);
        let v: Value = serde_json::from_str(&o[1..]).unwrap();
        assert_eq!(v["upgrades"], json!(["websocket"]));
    }

    #[test]
    fn long_polling_payloads_join_and_split_on_the_record_separator() {
        assert_eq!(payload(["0{}", "40"]), "0{}\x1e40");
        assert_eq!(payload(Vec::<String>::new()), "");
        let got: Vec<&str> = split_payload("3\x1e42/n,[\"a\"]").collect();
        assert_eq!(got, ["3", "42/n,[\"a\"]"]);
    }

    proptest! {
        /// Any input is parsed or refused without panicking.
        /// Packets without the separator survive a long-polling payload's round trip.
        #[test]
        fn payloads_round_trip(ps in proptest::collection::vec("[^\x1e]{0,30}", 1..8)) {
            let joined = payload(&ps);
            let back: Vec<&str> = split_payload(&joined).collect();
            prop_assert_eq!(back, ps.iter().map(String::as_str).collect::<Vec<_>>());
        }

        #[test]
        fn never_panics(s in ".{0,200}") {
            let _ = parse_engine(&s);
            let _ = parse_socket(&s);
        }

        /// What the encoder writes for an event, the parser reads back (as a client's would be).
        #[test]
        fn events_round_trip(
            nsp in "/[a-z]{1,20}",
            id in proptest::option::of(0u64..999_999_999_999_999),
            name in "[a-z:_]{1,20}",
            s in ".{0,40}",
            n in any::<i64>(),
        ) {
            let args = vec![json!({"s": s}), json!(n)];
            let mut frame = event(&nsp, &name, &args);
            if let Some(id) = id {
                // A client's event with an ack id: the id follows the namespace.
                frame.insert_str(nsp.len() + 3, &id.to_string());
            }
            let Ok(EnginePacket::Message(p)) = parse_engine(&frame) else {
                panic!("not a message: {frame}");
            };
            prop_assert_eq!(
                parse_socket(p),
                Ok(SocketPacket::Event { nsp: nsp.clone(), id, name: name.clone(), args })
            );
        }

        /// Acks round-trip too.
        #[test]
        fn acks_round_trip(nsp in "/[a-z]{1,20}", id in 0u64..999_999_999_999_999, x in any::<i32>()) {
            let frame = ack(&nsp, id, &[json!(x)]);
            let Ok(EnginePacket::Message(p)) = parse_engine(&frame) else {
                panic!("not a message");
            };
            prop_assert_eq!(parse_socket(p), Ok(SocketPacket::Ack { nsp, id, args: vec![json!(x)] }));
        }
    }
}
