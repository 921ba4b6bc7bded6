//! WebSocket messages: JSON text frames with a `"type"` tag.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ErrorCode;
use crate::http::{MarkAllReadResult, MarkReadResult, SeenResult, UnreadCount};
use crate::inbox::{InboxAction, InboxFilter, InboxResult};
use crate::notification::{Broadcast, Notification};

/// Largest request id (`rid`) string accepted, in bytes.
pub const MAX_RID_LEN: usize = 64;

/// A client-chosen request id echoed in `ack`/`error`: a string (≤ 64 bytes) or a number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[serde(untagged)]
pub enum Rid {
    Num(#[cfg_attr(feature = "ts", ts(type = "number"))] u64),
    Str(String),
}

/// Commands a client sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    /// First message when the token is not in the `Authorization` header (browsers).
    Auth {
        /// Accepted and ignored: `connected` (or a close) answers `auth`.
        #[serde(default)]
        #[cfg_attr(feature = "ts", ts(optional = nullable))]
        rid: Option<Rid>,
        token: String,
        /// Resume: the last seq this client holds; the server sends everything after it.
        #[serde(default)]
        #[cfg_attr(feature = "ts", ts(optional, type = "number | null"))]
        last_seq: Option<i64>,
    },
    MarkRead {
        #[serde(default)]
        #[cfg_attr(feature = "ts", ts(optional = nullable))]
        rid: Option<Rid>,
        id: Uuid,
    },
    MarkAllRead {
        #[serde(default)]
        #[cfg_attr(feature = "ts", ts(optional = nullable))]
        rid: Option<Rid>,
        #[serde(default)]
        #[cfg_attr(feature = "ts", ts(optional, type = "number | null"))]
        up_to_seq: Option<i64>,
    },
    GetUnreadCount {
        #[serde(default)]
        #[cfg_attr(feature = "ts", ts(optional = nullable))]
        rid: Option<Rid>,
    },
    /// Raise the seen watermark: every notification with `seq <= seq` was shown in a visible
    /// tab. From 0 to the user's latest seq; never lowers it.
    Seen {
        #[serde(default)]
        #[cfg_attr(feature = "ts", ts(optional = nullable))]
        rid: Option<Rid>,
        #[cfg_attr(feature = "ts", ts(type = "number"))]
        seq: i64,
    },
    /// An inbox action (archive, unarchive, read, unread, delete) on `ids` (1 to 100) or on
    /// everything matching `filter` up to `up_to_seq`; the fields of `POST /v1/notifications/bulk`.
    Inbox {
        #[serde(default)]
        #[cfg_attr(feature = "ts", ts(optional = nullable))]
        rid: Option<Rid>,
        action: InboxAction,
        #[serde(default)]
        #[cfg_attr(feature = "ts", ts(optional = nullable))]
        ids: Option<Vec<Uuid>>,
        #[serde(default)]
        #[cfg_attr(feature = "ts", ts(optional = nullable))]
        filter: Option<InboxFilter>,
        #[serde(default)]
        #[cfg_attr(feature = "ts", ts(optional, type = "number | null"))]
        up_to_seq: Option<i64>,
    },
    /// Extend the session with a new token for the same user.
    Refresh {
        #[serde(default)]
        #[cfg_attr(feature = "ts", ts(optional = nullable))]
        rid: Option<Rid>,
        token: String,
    },
    /// Application-level ping (browsers cannot send WebSocket pings); answered with `ack`.
    Ping {
        #[serde(default)]
        #[cfg_attr(feature = "ts", ts(optional = nullable))]
        rid: Option<Rid>,
    },
}

impl ClientMessage {
    pub fn rid(&self) -> Option<&Rid> {
        match self {
            ClientMessage::Auth { rid, .. }
            | ClientMessage::MarkRead { rid, .. }
            | ClientMessage::MarkAllRead { rid, .. }
            | ClientMessage::GetUnreadCount { rid }
            | ClientMessage::Seen { rid, .. }
            | ClientMessage::Inbox { rid, .. }
            | ClientMessage::Refresh { rid, .. }
            | ClientMessage::Ping { rid } => rid.as_ref(),
        }
    }
}

/// Why a client message was refused; becomes an `error` event.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    pub rid: Option<Rid>,
    pub code: ErrorCode,
    pub message: String,
}

const COMMANDS: [&str; 8] = [
    "inbox",
    "auth",
    "mark_read",
    "mark_all_read",
    "get_unread_count",
    "seen",
    "refresh",
    "ping",
];

/// Parses one text frame into a command, telling apart malformed JSON, unknown commands and
/// invalid fields, and recovering the `rid` where possible so the error can be correlated.
pub fn parse_client_message(text: &str) -> Result<ClientMessage, ParseError> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| ParseError {
        rid: None,
        code: ErrorCode::InvalidJson,
        message: format!("message is not valid JSON: {e}"),
    })?;
    let obj = value.as_object().ok_or_else(|| ParseError {
        rid: None,
        code: ErrorCode::InvalidMessage,
        message: "message must be a JSON object".into(),
    })?;
    let rid = obj
        .get("rid")
        .and_then(|r| serde_json::from_value::<Rid>(r.clone()).ok())
        .filter(rid_ok);
    if let Some(r) = obj.get("rid") {
        if rid.is_none() && !r.is_null() {
            return Err(ParseError {
                rid: None,
                code: ErrorCode::InvalidMessage,
                message: format!(
                    "rid must be a non-negative integer or a string of at most {MAX_RID_LEN} bytes"
                ),
            });
        }
    }
    let kind = match obj.get("type") {
        Some(serde_json::Value::String(s)) => s.clone(),
        _ => {
            return Err(ParseError {
                rid,
                code: ErrorCode::InvalidMessage,
                message: "message must have a string field \"type\"".into(),
            })
        }
    };
    if !COMMANDS.contains(&kind.as_str()) {
        let shown: String = kind.chars().take(40).collect();
        return Err(ParseError {
            rid,
            code: ErrorCode::UnknownCommand,
            message: format!("unknown command type \"{shown}\""),
        });
    }
    serde_json::from_value::<ClientMessage>(value).map_err(|e| ParseError {
        rid,
        code: ErrorCode::InvalidMessage,
        message: format!("invalid \"{kind}\" message: {e}"),
    })
}

fn rid_ok(rid: &Rid) -> bool {
    match rid {
        Rid::Num(_) => true,
        Rid::Str(s) => s.len() <= MAX_RID_LEN,
    }
}

/// Limits the server applies to this connection, announced in `connected`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct ConnectionLimits {
    pub max_message_bytes: u32,
    /// Sustained messages per second allowed from the client.
    pub messages_per_second: u32,
    /// Burst of messages allowed above the sustained rate.
    pub message_burst: u32,
    pub max_sockets_per_user: u32,
    /// The largest gap the server will replay over the socket; beyond it, `resync`.
    pub max_resume_gap: u32,
}

/// Why the server cannot replay the gap over the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[serde(rename_all = "snake_case")]
pub enum ResyncReason {
    /// More than `max_resume_gap` notifications are missing: refetch over HTTP.
    GapTooLarge,
    /// The client's `last_seq` is ahead of the server's latest seq (bogus or another user's).
    CursorAhead,
}

/// The result carried by an `ack`, one shape per command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[serde(untagged)]
pub enum AckResult {
    MarkRead(MarkReadResult),
    MarkAllRead(MarkAllReadResult),
    UnreadCount(UnreadCount),
    Seen(SeenResult),
    Inbox(InboxResult),
    Refresh {
        /// Unix seconds.
        #[cfg_attr(feature = "ts", ts(type = "number"))]
        expires_at: i64,
    },
    Pong {
        server_time: DateTime<Utc>,
    },
}

/// Events the server sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[serde(tag = "type")]
pub enum ServerMessage {
    /// First event after successful authentication.
    #[serde(rename = "connected")]
    Connected {
        user_id: String,
        node_id: String,
        session_id: Uuid,
        #[cfg_attr(feature = "ts", ts(type = "number"))]
        latest_seq: i64,
        #[cfg_attr(feature = "ts", ts(type = "number"))]
        unread_count: i64,
        #[cfg_attr(feature = "ts", ts(type = "number"))]
        version: i64,
        /// The user's seen watermark: notifications with `seq <= seen_seq` are seen.
        #[cfg_attr(feature = "ts", ts(type = "number"))]
        seen_seq: i64,
        /// Catch-up starts after this seq: the client's `last_seq`, or the user's
        /// delivered watermark when the client sent none ("pending on connect").
        #[cfg_attr(feature = "ts", ts(type = "number"))]
        resume_from: i64,
        /// Unix seconds at which the token expires.
        #[cfg_attr(feature = "ts", ts(type = "number"))]
        token_expires_at: i64,
        heartbeat_interval_ms: u32,
        limits: ConnectionLimits,
    },
    /// Catch-up page, ascending by seq. The last page of a catch-up has `complete: true`.
    #[serde(rename = "notifications:batch")]
    Batch {
        notifications: Vec<Notification>,
        complete: bool,
        /// The user's unread count and state version when the batch was read, when known
        /// (`null` for a gap fill, whose following `notification` event carries them).
        #[cfg_attr(feature = "ts", ts(type = "number | null"))]
        unread_count: Option<i64>,
        #[cfg_attr(feature = "ts", ts(type = "number | null"))]
        version: Option<i64>,
    },
    /// A live notification.
    #[serde(rename = "notification")]
    Notification {
        notification: Notification,
        #[cfg_attr(feature = "ts", ts(type = "number"))]
        unread_count: i64,
        #[cfg_attr(feature = "ts", ts(type = "number"))]
        version: i64,
    },
    /// An ephemeral broadcast to everyone connected.
    #[serde(rename = "global_notification")]
    Global { notification: Broadcast },
    /// Notifications were marked read (by any tab, device or the HTTP API).
    #[serde(rename = "read")]
    Read {
        ids: Vec<Uuid>,
        /// Set when everything up to this seq was marked read (`mark_all_read`).
        #[cfg_attr(feature = "ts", ts(type = "number | null"))]
        up_to_seq: Option<i64>,
        read_at: DateTime<Utc>,
        #[cfg_attr(feature = "ts", ts(type = "number"))]
        unread_count: i64,
        #[cfg_attr(feature = "ts", ts(type = "number"))]
        version: i64,
    },
    /// The seen watermark rose (by any tab, device or the HTTP API).
    #[serde(rename = "seen")]
    Seen {
        #[cfg_attr(feature = "ts", ts(type = "number"))]
        seen_seq: i64,
        #[cfg_attr(feature = "ts", ts(type = "number"))]
        version: i64,
    },
    /// Notifications were archived, unarchived, read, unread or deleted (by any tab, device,
    /// the HTTP API, or the retention purge for `delete`).
    #[serde(rename = "inbox")]
    Inbox {
        action: InboxAction,
        /// The notifications changed, ascending by seq.
        ids: Vec<Uuid>,
        #[cfg_attr(feature = "ts", ts(type = "number"))]
        unread_count: i64,
        #[cfg_attr(feature = "ts", ts(type = "number"))]
        version: i64,
    },
    /// The server will not replay the gap; refetch over HTTP. Live events continue after it.
    #[serde(rename = "resync")]
    Resync {
        reason: ResyncReason,
        #[cfg_attr(feature = "ts", ts(type = "number"))]
        latest_seq: i64,
    },
    #[serde(rename = "ack")]
    Ack { rid: Option<Rid>, result: AckResult },
    #[serde(rename = "error")]
    Error {
        rid: Option<Rid>,
        code: ErrorCode,
        message: String,
    },
    /// The node is draining: reconnect after `after_ms` (the socket is then closed with 4105).
    #[serde(rename = "reconnect")]
    Reconnect { reason: String, after_ms: u32 },
    /// The token expires soon: send `refresh` before `expires_at` or be closed with 4103.
    #[serde(rename = "token_expiring")]
    TokenExpiring {
        #[cfg_attr(feature = "ts", ts(type = "number"))]
        expires_at: i64,
    },
}

impl ServerMessage {
    /// Serialises to a JSON text frame. Serialising these types cannot fail (string keys only).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| {
            format!(r#"{{"type":"error","rid":null,"code":"internal","message":"encode: {e}"}}"#)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commands() {
        let m = parse_client_message(r#"{"type":"auth","token":"t","last_seq":5}"#).unwrap();
        assert_eq!(
            m,
            ClientMessage::Auth {
                rid: None,
                token: "t".into(),
                last_seq: Some(5)
            }
        );
        let m = parse_client_message(r#"{"type":"get_unread_count","rid":7}"#).unwrap();
        assert_eq!(m.rid(), Some(&Rid::Num(7)));
        let m = parse_client_message(r#"{"type":"seen","rid":2,"seq":9}"#).unwrap();
        assert_eq!(
            m,
            ClientMessage::Seen {
                rid: Some(Rid::Num(2)),
                seq: 9
            }
        );
        let e = parse_client_message(r#"{"type":"seen","rid":2}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidMessage);
        let m = parse_client_message(r#"{"type":"mark_all_read","rid":"a"}"#).unwrap();
        assert_eq!(
            m,
            ClientMessage::MarkAllRead {
                rid: Some(Rid::Str("a".into())),
                up_to_seq: None
            }
        );
    }

    #[test]
    fn classifies_errors() {
        let e = parse_client_message("{not json").unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidJson);
        let e = parse_client_message("[1,2]").unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidMessage);
        let e = parse_client_message(r#"{"type":"drop_tables","rid":3}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::UnknownCommand);
        assert_eq!(e.rid, Some(Rid::Num(3)));
        let e = parse_client_message(r#"{"type":"mark_read","rid":"x","id":"nope"}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidMessage);
        assert_eq!(e.rid, Some(Rid::Str("x".into())));
        let e = parse_client_message(r#"{"type":"ping","extra":1}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidMessage);
        let long = "r".repeat(MAX_RID_LEN + 1);
        let e = parse_client_message(&format!(r#"{{"type":"ping","rid":"{long}"}}"#)).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidMessage);
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(
            parse_client_message(&deep).unwrap_err().code,
            ErrorCode::InvalidJson
        );
    }

    #[test]
    fn server_message_tags() {
        let m = ServerMessage::Resync {
            reason: ResyncReason::GapTooLarge,
            latest_seq: 9,
        };
        assert_eq!(
            m.to_json(),
            r#"{"type":"resync","reason":"gap_too_large","latest_seq":9}"#
        );
        let b = ServerMessage::Batch {
            notifications: vec![],
            complete: true,
            unread_count: Some(0),
            version: None,
        };
        assert!(b.to_json().starts_with(r#"{"type":"notifications:batch""#));
    }
}
