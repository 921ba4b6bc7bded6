//! Messages between gateway nodes over Redis pub/sub.
//! Channels: `<prefix>user:<user_id>`, `<prefix>broadcast`, `<prefix>node:<node_id>` (probes).
//!
//! A committed notification travels pre-rendered ([`LiveFrame`]): `L<seq>\n` followed by the
//! exact text of the `notification` WebSocket event, rendered once by the publishing node, so
//! a receiving node reads a number and forwards the bytes instead of parsing and re-rendering
//! the notification for every delivery. Everything else is JSON with a `"k"` tag, and so is
//! [`BusMessage::Notification`], which nodes of earlier versions publish and every node still
//! accepts (a rolling upgrade delivers live in both directions from the upgraded nodes'
//! side; an old node drops the `L` form as undecodable and its sockets catch up from the
//! store at the next reconcile).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
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
    /// A committed notification for the channel's user, as JSON: what nodes before the `L`
    /// form publish. Accepted, no longer sent.
    Notification {
        notification: Notification,
        unread_count: i64,
        version: i64,
    },
    /// Read state changed for the channel's user.
    Read {
        ids: Vec<Uuid>,
        up_to_seq: Option<i64>,
        read_at: DateTime<Utc>,
        unread_count: i64,
        version: i64,
    },
    /// A broadcast to every connected socket.
    Broadcast { broadcast: Broadcast },
    /// A node's liveness probe of its own subscriber connection.
    Probe { node_id: String, nonce: u64 },
}

impl BusMessage {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            BusMessage::Live(live) => {
                use std::io::Write as _;
                let mut out = Vec::with_capacity(live.frame.len() + 22);
                // Writing to a Vec cannot fail.
                let _ = writeln!(out, "L{}", live.seq);
                out.extend_from_slice(live.frame.as_bytes());
                out
            }
            other => serde_json::to_vec(other).unwrap_or_default(),
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
    fn the_json_notification_of_earlier_nodes_is_still_accepted() {
        let msg = BusMessage::Notification {
            notification: notification(7),
            unread_count: 1,
            version: 2,
        };
        let bytes = msg.encode();
        assert_eq!(bytes[0], b'{');
        assert_eq!(BusMessage::decode(&bytes).unwrap(), msg);
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
}
