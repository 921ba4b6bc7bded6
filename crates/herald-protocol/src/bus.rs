//! Messages between gateway nodes over Redis pub/sub.
//! Channels: `<prefix>user:<user_id>`, `<prefix>broadcast`, `<prefix>node:<node_id>` (probes).
//!
//! A committed notification travels pre-rendered ([`LiveFrame`]): `L<seq>\n` followed by the
//! exact text of the `notification` WebSocket event, rendered once by the publishing node, so
//! a receiving node reads a number and forwards the bytes instead of parsing and re-rendering
//! the notification for every delivery. Everything else is JSON with a `"k"` tag.
//!
//! Nothing from the bus is trusted blindly (anyone who can PUBLISH on the Redis server can put
//! bytes on a channel). A receiving node checks every live frame's envelope with
//! [`LiveFrame::check`]: the notification inside belongs to the channel's user and carries the
//! header's seq (a prefix comparison, no parsing). With a shared node key ([`BusKey`]) every
//! payload is sealed, `H<tag>\n` in front of the message above, the tag an HMAC-SHA256 over the
//! channel and the message, truncated to 16 bytes; a payload without a valid tag is dropped.
//! The frame bytes stay unchanged either way, so the fast path still forwards them as they are.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use uuid::Uuid;

use crate::notification::{Broadcast, Notification};
use crate::ws::ServerMessage;

/// A committed notification as its receivers get it: `frame` is the whole `notification`
/// WebSocket event (`{"type":"notification","notification":{…},"unread_count":…,"version":…}`).
#[derive(Debug, Clone, PartialEq)]
pub struct LiveFrame {
    pub seq: i64,
    pub frame: String,
}

/// How every rendered `notification` event starts (serde writes fields in declaration order:
/// the event's tag, then the notification's `id`, `user_id` and `seq`).
const EVENT_HEAD: &[u8] = br#"{"type":"notification","notification":{"id":""#;

impl LiveFrame {
    pub fn render(notification: Notification, unread_count: i64, version: i64) -> LiveFrame {
        LiveFrame {
            seq: notification.seq,
            frame: ServerMessage::Notification {
                notification,
                unread_count,
                version,
            }
            .to_json(),
        }
    }

    /// The envelope check of a frame received on `user`'s channel: the notification inside is
    /// `user`'s and its seq is the header's. It compares the frame's first ~100 bytes with what
    /// [`LiveFrame::render`] writes there, without parsing the rest, so it costs next to nothing
    /// on the fast path.
    pub fn check(&self, user: &str) -> Result<(), Reject> {
        let rest = self
            .frame
            .as_bytes()
            .strip_prefix(EVENT_HEAD)
            .ok_or(Reject::Malformed)?;
        let (id, rest) = rest.split_at_checked(36).ok_or(Reject::Malformed)?;
        if !id.iter().all(|b| b.is_ascii_hexdigit() || *b == b'-') {
            return Err(Reject::Malformed);
        }
        let rest = rest
            .strip_prefix(br#"","user_id":"#)
            .ok_or(Reject::Malformed)?;
        let rest = strip_json_string(rest, user).ok_or(Reject::WrongUser)?;
        let rest = rest.strip_prefix(br#","seq":"#).ok_or(Reject::Malformed)?;
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || digits > 18 || rest.get(digits) != Some(&b',') {
            return Err(Reject::Malformed);
        }
        let seq = rest[..digits]
            .iter()
            .fold(0i64, |n, d| n * 10 + i64::from(d - b'0'));
        if seq != self.seq {
            return Err(Reject::Malformed);
        }
        Ok(())
    }
}

/// `rest` without a leading JSON string equal to `value`, if it starts with one (as serde_json
/// writes it).
fn strip_json_string<'a>(rest: &'a [u8], value: &str) -> Option<&'a [u8]> {
    if value.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        let encoded = serde_json::to_string(value).ok()?;
        return rest.strip_prefix(encoded.as_bytes());
    }
    rest.strip_prefix(b"\"")?
        .strip_prefix(value.as_bytes())?
        .strip_prefix(b"\"")
}

/// Why a payload received from the bus was dropped: the `reason` label of
/// `herald_bus_frames_rejected_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reject {
    /// Undecodable, or a message of the wrong kind for its channel, or a live frame whose
    /// header and content disagree.
    Malformed,
    /// A live frame on a user's channel holding another user's notification.
    WrongUser,
    /// A node key is configured and the payload carries no tag.
    MissingTag,
    /// A node key is configured and the payload's tag is not the key's.
    BadTag,
    /// A live frame whose seq PostgreSQL does not have (checked before any resync).
    SeqNotCommitted,
}

impl Reject {
    pub const ALL: [Reject; 5] = [
        Reject::Malformed,
        Reject::WrongUser,
        Reject::MissingTag,
        Reject::BadTag,
        Reject::SeqNotCommitted,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Reject::Malformed => "malformed",
            Reject::WrongUser => "wrong_user",
            Reject::MissingTag => "missing_tag",
            Reject::BadTag => "bad_tag",
            Reject::SeqNotCommitted => "seq_not_committed",
        }
    }
}

/// Bytes of the tag (HMAC-SHA256 truncated), written as twice as many hex digits.
const TAG_BYTES: usize = 16;
/// `H`, the hex tag, `\n`.
const SEAL_HEAD: usize = 1 + 2 * TAG_BYTES + 1;

/// The shared node key that seals every bus payload (`HERALD_BUS_HMAC_KEY`). Holds the keyed
/// HMAC state, so sealing a payload does not hash the key again. `Debug` shows no key material.
#[derive(Clone)]
pub struct BusKey {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for BusKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BusKey(..)")
    }
}

/// A node key shorter than [`BusKey::MIN_LEN`].
#[derive(Debug, thiserror::Error)]
#[error("the bus key must be at least {} bytes", BusKey::MIN_LEN)]
pub struct KeyTooShort;

impl BusKey {
    pub const MIN_LEN: usize = 32;

    pub fn new(secret: &[u8]) -> Result<BusKey, KeyTooShort> {
        if secret.len() < BusKey::MIN_LEN {
            return Err(KeyTooShort);
        }
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).map_err(|_| KeyTooShort)?;
        Ok(BusKey { mac })
    }

    /// The MAC over the channel (length-prefixed) and the message, so a sealed payload is
    /// valid on its own channel only.
    fn mac(&self, channel: &str, message: &[u8]) -> Hmac<Sha256> {
        let mut mac = self.mac.clone();
        mac.update(&(channel.len() as u64).to_be_bytes());
        mac.update(channel.as_bytes());
        mac.update(message);
        mac
    }

    /// `H<tag>\n<message>`.
    pub fn seal(&self, channel: &str, message: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(SEAL_HEAD + message.len());
        out.resize(SEAL_HEAD, b'0');
        out.extend_from_slice(message);
        self.write_tag(channel, &mut out);
        out
    }

    /// Fills in the tag of `out`, which holds [`SEAL_HEAD`] placeholder bytes, then the message.
    fn write_tag(&self, channel: &str, out: &mut [u8]) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let tag = self.mac(channel, &out[SEAL_HEAD..]).finalize().into_bytes();
        out[0] = b'H';
        for (i, b) in tag.iter().take(TAG_BYTES).enumerate() {
            out[1 + 2 * i] = HEX[usize::from(b >> 4)];
            out[2 + 2 * i] = HEX[usize::from(b & 0xf)];
        }
        out[SEAL_HEAD - 1] = b'\n';
    }

    /// The message inside a sealed payload received on `channel`, if its tag is valid
    /// (compared in constant time).
    pub fn open<'a>(&self, channel: &str, payload: &'a [u8]) -> Result<&'a [u8], Reject> {
        let Some(rest) = payload.strip_prefix(b"H") else {
            return Err(Reject::MissingTag);
        };
        if rest.len() < SEAL_HEAD - 1 || rest[2 * TAG_BYTES] != b'\n' {
            return Err(Reject::BadTag);
        }
        let mut tag = [0u8; TAG_BYTES];
        for (i, pair) in rest[..2 * TAG_BYTES].chunks_exact(2).enumerate() {
            let (Some(hi), Some(lo)) = (hex_val(pair[0]), hex_val(pair[1])) else {
                return Err(Reject::BadTag);
            };
            tag[i] = hi << 4 | lo;
        }
        let message = &rest[2 * TAG_BYTES + 1..];
        self.mac(channel, message)
            .verify_truncated_left(&tag)
            .map_err(|_| Reject::BadTag)?;
        Ok(message)
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// Why a bus payload was refused.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error("live frame: {0}")]
    Live(&'static str),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
pub enum BusMessage {
    /// A committed notification for the channel's user, pre-rendered (the `L` form, never
    /// JSON).
    #[serde(skip)]
    Live(LiveFrame),
    /// Read state changed for the channel's user.
    Read {
        ids: Vec<Uuid>,
        up_to_seq: Option<i64>,
        read_at: DateTime<Utc>,
        unread_count: i64,
        version: i64,
    },
    /// Inbox rows of the channel's user changed (see `ServerMessage::Inbox`).
    Inbox {
        action: crate::inbox::InboxAction,
        ids: Vec<Uuid>,
        unread_count: i64,
        version: i64,
    },
    /// The seen watermark of the channel's user rose.
    Seen { seen_seq: i64, version: i64 },
    /// A broadcast to every connected socket.
    Broadcast { broadcast: Broadcast },
    /// A node's liveness probe of its own subscriber connection.
    Probe { node_id: String, nonce: u64 },
    /// The sessions of `user_id` were revoked (on the broadcast channel, so every node hears
    /// it). Only a wake-up: a receiving node reads the cut-off from PostgreSQL, so a forged
    /// message can trigger a read but never refuse a token.
    Revoked { user_id: String },
}

impl BusMessage {
    /// The unsealed wire form.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// The wire form for `channel`: sealed when there is a node key (one allocation either way).
    pub fn encode_for(&self, channel: &str, key: Option<&BusKey>) -> Vec<u8> {
        let Some(key) = key else {
            return self.encode();
        };
        let mut out = Vec::with_capacity(SEAL_HEAD + self.size_hint());
        out.resize(SEAL_HEAD, b'0');
        self.encode_into(&mut out);
        key.write_tag(channel, &mut out);
        out
    }

    fn size_hint(&self) -> usize {
        match self {
            BusMessage::Live(live) => live.frame.len() + 21,
            _ => 256,
        }
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            BusMessage::Live(live) => {
                use std::io::Write as _;
                out.reserve(live.frame.len() + 21);
                // Writing to a Vec cannot fail.
                let _ = writeln!(out, "L{}", live.seq);
                out.extend_from_slice(live.frame.as_bytes());
            }
            // Serialising these plain types cannot fail.
            other => {
                let _ = serde_json::to_writer(&mut *out, other);
            }
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<BusMessage, DecodeError> {
        match bytes.strip_prefix(b"L") {
            Some(rest) => decode_live(rest).map(BusMessage::Live),
            None => Ok(serde_json::from_slice(bytes)?),
        }
    }
}

fn decode_live(rest: &[u8]) -> Result<LiveFrame, DecodeError> {
    let nl = rest
        .iter()
        .position(|&b| b == b'\n')
        .ok_or(DecodeError::Live("no newline after the seq"))?;
    let (digits, frame) = (&rest[..nl], &rest[nl + 1..]);
    if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(DecodeError::Live("the seq is not 1 to 18 decimal digits"));
    }
    let seq = digits
        .iter()
        .fold(0i64, |n, d| n * 10 + i64::from(d - b'0'));
    if seq == 0 {
        return Err(DecodeError::Live("the seq is 0"));
    }
    if !frame.starts_with(b"{\"type\":\"notification\"") {
        return Err(DecodeError::Live("the frame is not a notification event"));
    }
    let frame =
        std::str::from_utf8(frame).map_err(|_| DecodeError::Live("the frame is not UTF-8"))?;
    Ok(LiveFrame {
        seq,
        frame: frame.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notification(seq: i64) -> Notification {
        Notification {
            id: Uuid::nil(),
            user_id: "alice".into(),
            seq,
            kind: "mention".into(),
            title: "Hi \"you\"\n".into(),
            body: "ünïcode ✓".into(),
            link: Some("/x".into()),
            avatar_url: None,
            data: Some(serde_json::json!({"t": 1, "nested": [1, 2]})),
            created_at: DateTime::<Utc>::from_timestamp(1_795_000_000, 123_000_000)
                .expect("valid timestamp"),
            delivered_at: None,
            read_at: None,
            archived_at: None,
        }
    }

    #[test]
    fn a_live_frame_is_the_event_text_and_survives_the_bus() {
        let live = LiveFrame::render(notification(42), 3, 57);
        assert_eq!(live.seq, 42);
        // The frame is exactly what the socket would have rendered itself.
        let expected = ServerMessage::Notification {
            notification: notification(42),
            unread_count: 3,
            version: 57,
        }
        .to_json();
        assert_eq!(live.frame, expected);
        let bytes = BusMessage::Live(live.clone()).encode();
        assert!(bytes.starts_with(b"L42\n{\"type\":\"notification\""));
        assert_eq!(BusMessage::decode(&bytes).unwrap(), BusMessage::Live(live));
    }

    #[test]
    fn malformed_live_frames_are_refused_with_the_reason() {
        let frame = r#"{"type":"notification","notification":{}}"#;
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"L".to_vec(), "no newline"),
            (format!("L12{frame}").into_bytes(), "no newline"),
            (format!("L\n{frame}").into_bytes(), "decimal digits"),
            (format!("L-1\n{frame}").into_bytes(), "decimal digits"),
            (format!("L1x\n{frame}").into_bytes(), "decimal digits"),
            (
                format!("L1234567890123456789\n{frame}").into_bytes(),
                "decimal digits",
            ),
            (format!("L0\n{frame}").into_bytes(), "is 0"),
            (b"L5\n{\"type\":\"read\"}".to_vec(), "not a notification"),
            (b"L5\n".to_vec(), "not a notification"),
            (
                [
                    b"L5\n{\"type\":\"notification\",\"x\":\"".as_slice(),
                    &[0xff, 0xfe],
                    b"\"}",
                ]
                .concat(),
                "not UTF-8",
            ),
        ];
        for (bytes, reason) in cases {
            match BusMessage::decode(&bytes) {
                Err(e @ DecodeError::Live(_)) => assert!(
                    e.to_string().contains(reason),
                    "{:?}: {e} (expected {reason:?})",
                    String::from_utf8_lossy(&bytes)
                ),
                other => panic!("{:?}: {other:?}", String::from_utf8_lossy(&bytes)),
            }
        }
        assert!(matches!(
            BusMessage::decode(b"{\"k\":\"nope\"}"),
            Err(DecodeError::Json(_))
        ));
    }

    #[test]
    fn the_envelope_check_binds_the_frame_to_the_channel_user_and_the_header_seq() {
        let live = LiveFrame::render(notification(42), 3, 57);
        assert_eq!(live.check("alice"), Ok(()));
        assert_eq!(live.check("bob"), Err(Reject::WrongUser));
        assert_eq!(live.check("alic"), Err(Reject::WrongUser));
        assert_eq!(live.check("alice2"), Err(Reject::WrongUser));
        // The header says another seq than the frame.
        let lying = LiveFrame {
            seq: 99_999_999_999_999_999,
            ..live.clone()
        };
        assert_eq!(lying.check("alice"), Err(Reject::Malformed));
        // A user id that JSON escapes is compared in its escaped form.
        let mut odd = notification(5);
        odd.user_id = "a\"b\\c".into();
        assert_eq!(LiveFrame::render(odd, 0, 1).check("a\"b\\c"), Ok(()));
        // Anything not laid out as `render` writes it is refused.
        for frame in [
            r#"{"type":"notification","notification":{}}"#,
            r#"{"type":"notification","notification":{"user_id":"alice","seq":42,"id":"00000000-0000-0000-0000-000000000000"}}"#,
            r#"{"type":"notification","notification":{"id":"00000000-0000-0000-0000-00000000000x","user_id":"alice","seq":42,"#,
            r#"{"type":"notification","notification":{"id":"00000000-0000-0000-0000-000000000000","user_id":"alice","seq":42}"#,
        ] {
            let f = LiveFrame {
                seq: 42,
                frame: frame.into(),
            };
            assert_eq!(f.check("alice"), Err(Reject::Malformed), "{frame}");
        }
    }

    #[test]
    fn a_sealed_payload_opens_only_with_its_key_on_its_channel() {
        let key = BusKey::new(&[7u8; 32]).unwrap();
        let other = BusKey::new(&[8u8; 32]).unwrap();
        assert!(BusKey::new(&[7u8; 31]).is_err());
        assert_eq!(format!("{key:?}"), "BusKey(..)");
        let msg = BusMessage::Live(LiveFrame::render(notification(42), 3, 57));
        let plain = msg.encode();
        let sealed = msg.encode_for("p:user:alice", Some(&key));
        assert_eq!(sealed, key.seal("p:user:alice", &plain));
        assert_eq!(sealed[0], b'H');
        assert_eq!(sealed[33], b'\n');
        assert_eq!(
            &sealed[34..],
            plain.as_slice(),
            "the frame bytes are unchanged"
        );
        assert_eq!(key.open("p:user:alice", &sealed), Ok(plain.as_slice()));
        assert_eq!(msg.encode_for("c", None), plain);
        // Another key, another channel, no tag, a changed byte: refused.
        assert_eq!(other.open("p:user:alice", &sealed), Err(Reject::BadTag));
        assert_eq!(key.open("p:user:bob", &sealed), Err(Reject::BadTag));
        assert_eq!(key.open("p:user:alice", &plain), Err(Reject::MissingTag));
        let mut tampered = sealed.clone();
        let last = tampered.len() - 2;
        tampered[last] ^= 1;
        assert_eq!(key.open("p:user:alice", &tampered), Err(Reject::BadTag));
        for bad in [&b"H"[..], b"Hzz\n{}", b"H0123\n", &sealed[..33]] {
            assert_eq!(key.open("p:user:alice", bad), Err(Reject::BadTag));
        }
        let revoked = BusMessage::Revoked {
            user_id: "alice".into(),
        };
        assert_eq!(
            BusMessage::decode(&revoked.encode()).unwrap(),
            revoked,
            "{}",
            String::from_utf8_lossy(&revoked.encode())
        );
        // JSON messages are sealed the same way.
        let probe = BusMessage::Probe {
            node_id: "n".into(),
            nonce: 9,
        };
        let sealed = probe.encode_for("p:node:n", Some(&key));
        let opened = key.open("p:node:n", &sealed).unwrap();
        assert_eq!(BusMessage::decode(opened).unwrap(), probe);
    }

    #[test]
    fn the_json_notification_of_earlier_nodes_is_refused() {
        let legacy = serde_json::json!({
            "k": "notification", "notification": notification(7), "unread_count": 1, "version": 2
        });
        assert!(matches!(
            BusMessage::decode(legacy.to_string().as_bytes()),
            Err(DecodeError::Json(_))
        ));
    }
}
