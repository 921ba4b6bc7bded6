//! Herald's events as Socket.IO events, and Socket.IO client events as Herald commands.
//!
//! A Socket.IO socket runs the same session as a native one; only its frames differ. Every
//! [`ServerMessage`] the session writes is rendered here into zero or more Socket.IO frames,
//! and every client EVENT is mapped onto a [`ClientMessage`] whose `rid` is the client's ack
//! id, so the answer comes back as that ack.
//!
//! Notifications carry the user's seq as their last argument, as a string: that is the
//! *offset* of Socket.IO's connection state recovery (`socket.io-client` ≥ 4.6 stores the last
//! string argument of every event and sends it back in CONNECT when it reconnects).

use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::{ack, connect_ok, event, event_raw};
use crate::http::{MarkAllReadResult, MarkReadResult, UnreadCount};
use crate::ws::{AckResult, ClientMessage, Rid, ServerMessage};
use crate::{Broadcast, ErrorCode, Notification};

/// Which seed's event names a Socket.IO socket uses (`HERALD_SOCKETIO_EVENTS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventNames {
    /// `notification` for every notification, live or caught up (the NestJS gateway's).
    Notification,
    /// `notification:new` for live ones, `notifications:batch` (an array) for the
    /// notifications pending at connect.
    NotificationNew,
}

impl EventNames {
    pub fn parse(s: &str) -> Option<EventNames> {
        match s {
            "notification" => Some(EventNames::Notification),
            "notification:new" => Some(EventNames::NotificationNew),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EventNames::Notification => "notification",
            EventNames::NotificationNew => "notification:new",
        }
    }
}

/// What rendering depends on for one socket.
#[derive(Debug, Clone, Copy)]
pub struct Dialect<'a> {
    pub nsp: &'a str,
    pub names: EventNames,
    /// Batches go out as single events, as Socket.IO's own recovery does (never as a
    /// `notifications:batch`): the client sent an offset, or the connect-time batch was
    /// already written (a later batch is a mid-session catch-up).
    pub recovering: bool,
    /// The recovery session id answered in CONNECT.
    pub pid: &'a str,
}

/// The one notification object both seeds' hooks read: each seed's field names, plus `seq`.
pub fn notification_object(n: &Notification) -> Value {
    json!({
        "id": n.id,
        "type": n.kind,
        "title": n.title,
        "message": n.body,
        "body": n.body,
        "link": n.link,
        "actionUrl": n.link,
        "avatar": n.avatar_url,
        "data": n.data,
        "createdAt": n.created_at,
        "read": n.read_at.is_some(),
        "readAt": n.read_at,
        "seq": n.seq,
    })
}

fn broadcast_object(b: &Broadcast) -> Value {
    json!({
        "id": b.id,
        "type": b.kind,
        "title": b.title,
        "message": b.body,
        "body": b.body,
        "link": b.link,
        "actionUrl": b.link,
        "data": b.data,
        "createdAt": b.created_at,
    })
}

/// The recovery offset of a seq: a JSON string, as socket.io-client only takes a string as one.
fn offset(seq: i64) -> String {
    format!("\"{seq}\"")
}

/// A user id as the first seed's `connected` event had it: a number when it is one (a numeric
/// JWT `sub`), a string otherwise.
fn user_id_value(id: &str) -> Value {
    match id.parse::<u64>() {
        Ok(n) if n < (1 << 53) && n.to_string() == id => json!(n),
        _ => json!(id),
    }
}

fn single(d: &Dialect<'_>, n: &Notification) -> String {
    let name = match d.names {
        EventNames::Notification => "notification",
        EventNames::NotificationNew => "notification:new",
    };
    let obj = notification_object(n).to_string();
    event_raw(d.nsp, name, &[&obj, &offset(n.seq)])
}

fn ack_body(result: &AckResult) -> Value {
    match result {
        AckResult::MarkRead(MarkReadResult {
            id,
            seq,
            read_at,
            changed,
            unread_count,
            version,
        }) => json!({
            "success": true, "notificationId": id, "seq": seq, "readAt": read_at,
            "changed": changed, "unreadCount": unread_count, "version": version,
        }),
        AckResult::MarkAllRead(MarkAllReadResult {
            marked,
            up_to_seq,
            read_at,
            unread_count,
            version,
        }) => json!({
            "success": true, "marked": marked, "upToSeq": up_to_seq, "readAt": read_at,
            "unreadCount": unread_count, "version": version,
        }),
        AckResult::UnreadCount(UnreadCount {
            unread_count,
            latest_seq,
            version,
        }) => json!({
            "unreadCount": unread_count, "latestSeq": latest_seq, "version": version,
        }),
        AckResult::Seen(r) => json!({
            "success": true, "seenSeq": r.seen_seq, "changed": r.changed, "version": r.version,
        }),
        AckResult::Inbox(r) => json!({
            "success": true, "action": r.action, "ids": r.ids, "upToSeq": r.up_to_seq,
            "hasMore": r.has_more, "unreadCount": r.unread_count, "version": r.version,
        }),
        AckResult::Refresh { expires_at } => json!({ "success": true, "expiresAt": expires_at }),
        AckResult::Pong { server_time } => json!({ "serverTime": server_time }),
    }
}

fn ack_id(rid: &Option<Rid>) -> Option<u64> {
    match rid {
        Some(Rid::Num(n)) => Some(*n),
        _ => None,
    }
}

/// The Socket.IO frames for one Herald event, in order.
pub fn render(d: &Dialect<'_>, msg: &ServerMessage) -> Vec<String> {
    match msg {
        ServerMessage::Connected {
            user_id,
            node_id,
            session_id,
            latest_seq,
            unread_count,
            resume_from,
            ..
        } => {
            let body = json!({
                "message": "Connected to notification service",
                "userId": user_id_value(user_id),
                "nodeId": node_id,
                "unreadCount": unread_count,
                "latestSeq": latest_seq,
            })
            .to_string();
            // The offset the catch-up starts after: a client that reconnects before any
            // notification reached it still recovers from here.
            vec![
                connect_ok(d.nsp, &session_id.to_string(), d.pid),
                event_raw(d.nsp, "connected", &[&body, &offset(*resume_from)]),
            ]
        }
        ServerMessage::Batch {
            notifications,
            unread_count,
            ..
        } => {
            let as_array =
                d.names == EventNames::NotificationNew && !d.recovering && unread_count.is_some();
            match notifications.last() {
                None => Vec::new(),
                Some(last) if as_array => {
                    let arr = Value::Array(notifications.iter().map(notification_object).collect())
                        .to_string();
                    vec![event_raw(
                        d.nsp,
                        "notifications:batch",
                        &[&arr, &offset(last.seq)],
                    )]
                }
                Some(_) => notifications.iter().map(|n| single(d, n)).collect(),
            }
        }
        ServerMessage::Notification { notification, .. } => vec![single(d, notification)],
        ServerMessage::Global { notification } => vec![event(
            d.nsp,
            "global_notification",
            &[broadcast_object(notification)],
        )],
        ServerMessage::Read {
            ids,
            up_to_seq,
            read_at,
            unread_count,
            version,
        } => vec![
            event(
                d.nsp,
                "notifications:read",
                &[json!({
                    "ids": ids, "upToSeq": up_to_seq, "readAt": read_at,
                    "unreadCount": unread_count, "version": version,
                })],
            ),
            event(
                d.nsp,
                "unread_count",
                &[json!({ "unreadCount": unread_count, "version": version })],
            ),
        ],
        ServerMessage::Seen { seen_seq, version } => vec![event(
            d.nsp,
            "notifications:seen",
            &[json!({ "seenSeq": seen_seq, "version": version })],
        )],
        ServerMessage::Inbox {
            action,
            ids,
            unread_count,
            version,
        } => vec![
            event(
                d.nsp,
                "notifications:inbox",
                &[json!({
                    "action": action, "ids": ids,
                    "unreadCount": unread_count, "version": version,
                })],
            ),
            event(
                d.nsp,
                "unread_count",
                &[json!({ "unreadCount": unread_count, "version": version })],
            ),
        ],
        ServerMessage::Resync { reason, latest_seq } => {
            let body = json!({ "reason": reason, "latestSeq": latest_seq }).to_string();
            vec![event_raw(d.nsp, "resync", &[&body, &offset(*latest_seq)])]
        }
        ServerMessage::Ack { rid, result } => {
            let mut out = Vec::new();
            if let Some(id) = ack_id(rid) {
                out.push(ack(d.nsp, id, &[ack_body(result)]));
            }
            if let AckResult::UnreadCount(c) = result {
                out.push(event(
                    d.nsp,
                    "unread_count",
                    &[json!({ "unreadCount": c.unread_count, "version": c.version })],
                ));
            }
            out
        }
        ServerMessage::Error { rid, code, message } => {
            let body = json!({ "success": false, "code": code, "message": message });
            match ack_id(rid) {
                Some(id) => vec![ack(d.nsp, id, &[body])],
                None => vec![event(
                    d.nsp,
                    "error",
                    &[json!({ "code": code, "message": message })],
                )],
            }
        }
        // The close that follows makes the client reconnect (to another node).
        ServerMessage::Reconnect { .. } => Vec::new(),
        ServerMessage::TokenExpiring { expires_at } => vec![event(
            d.nsp,
            "token_expiring",
            &[json!({ "expiresAt": expires_at })],
        )],
    }
}

fn field<'a>(args: &'a [Value], name: &str) -> Option<&'a Value> {
    args.first()
        .and_then(Value::as_object)
        .and_then(|o: &Map<String, Value>| o.get(name))
}

/// A client EVENT as a Herald command; `id` (the client's ack id) becomes its `rid`.
pub fn command(
    name: &str,
    id: Option<u64>,
    args: &[Value],
) -> Result<ClientMessage, (ErrorCode, String)> {
    let rid = id.map(Rid::Num);
    let bad = |m: &str| (ErrorCode::InvalidMessage, m.to_string());
    match name {
        "mark_read" => {
            let raw = field(args, "notificationId")
                .or_else(|| field(args, "id"))
                .and_then(Value::as_str)
                .ok_or_else(|| bad("mark_read needs { notificationId }"))?;
            let id = Uuid::parse_str(raw)
                .map_err(|_| bad("notificationId must be a notification id (a UUID)"))?;
            Ok(ClientMessage::MarkRead { rid, id })
        }
        "mark_all_read" => {
            let up_to_seq = match field(args, "upToSeq") {
                None | Some(Value::Null) => None,
                Some(v) => Some(
                    v.as_i64()
                        .filter(|n| *n >= 0)
                        .ok_or_else(|| bad("upToSeq must be a non-negative integer"))?,
                ),
            };
            Ok(ClientMessage::MarkAllRead { rid, up_to_seq })
        }
        "get_unread_count" => Ok(ClientMessage::GetUnreadCount { rid }),
        "refresh" => {
            let token = field(args, "token")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("refresh needs { token }"))?;
            Ok(ClientMessage::Refresh {
                rid,
                token: token.to_string(),
            })
        }
        _ => Err(bad(
            "unknown event; send mark_read, mark_all_read, get_unread_count or refresh",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::socketio::{parse_engine, parse_socket, EnginePacket, SocketPacket};
    use chrono::{TimeZone, Utc};
    use proptest::prelude::*;

    fn n(seq: i64) -> Notification {
        Notification {
            id: Uuid::from_u128(seq as u128),
            user_id: "42".into(),
            seq,
            kind: "MENTION".into(),
            title: "t".into(),
            body: "b".into(),
            link: Some("/x".into()),
            avatar_url: None,
            data: None,
            created_at: Utc.timestamp_opt(1_700_000_000, 0).unwrap(),
            delivered_at: None,
            read_at: None,
            archived_at: None,
        }
    }

    const D: Dialect<'static> = Dialect {
        nsp: "/notifications",
        names: EventNames::Notification,
        recovering: false,
        pid: "p",
    };

    fn args_of(frame: &str) -> (String, Vec<Value>) {
        let Ok(EnginePacket::Message(p)) = parse_engine(frame) else {
            panic!("{frame}")
        };
        match parse_socket(p) {
            Ok(SocketPacket::Event { name, args, .. }) => (name, args),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_notification_carries_both_seeds_fields_and_its_offset() {
        let f = render(
            &D,
            &ServerMessage::Notification {
                notification: n(7),
                unread_count: 1,
                version: 1,
            },
        );
        assert_eq!(f.len(), 1);
        let (name, args) = args_of(&f[0]);
        assert_eq!(name, "notification");
        let o = &args[0];
        for k in [
            "id",
            "type",
            "title",
            "message",
            "body",
            "link",
            "actionUrl",
            "avatar",
            "data",
            "createdAt",
            "read",
            "readAt",
            "seq",
        ] {
            assert!(o.get(k).is_some(), "missing {k}");
        }
        assert_eq!(o["message"], "b");
        assert_eq!(o["actionUrl"], "/x");
        assert_eq!(o["read"], false);
        assert_eq!(args[1], json!("7"));
    }

    #[test]
    fn seen_and_inbox_changes_reach_socketio_clients_with_the_count() {
        let f = render(
            &D,
            &ServerMessage::Seen {
                seen_seq: 4,
                version: 9,
            },
        );
        assert_eq!(f.len(), 1);
        let (name, args) = args_of(&f[0]);
        assert_eq!(name, "notifications:seen");
        assert_eq!(args[0], json!({ "seenSeq": 4, "version": 9 }));

        let id = n(3).id;
        let f = render(
            &D,
            &ServerMessage::Inbox {
                action: crate::inbox::InboxAction::Archive,
                ids: vec![id],
                unread_count: 2,
                version: 10,
            },
        );
        assert_eq!(f.len(), 2);
        let (name, args) = args_of(&f[0]);
        assert_eq!(name, "notifications:inbox");
        assert_eq!(args[0]["action"], "archive");
        assert_eq!(args[0]["ids"], json!([id]));
        assert_eq!(args[0]["unreadCount"], 2);
        let (name, args) = args_of(&f[1]);
        assert_eq!(name, "unread_count");
        assert_eq!(args[0], json!({ "unreadCount": 2, "version": 10 }));
    }

    #[test]
    fn batches_follow_the_event_names_and_recovery() {
        let batch = ServerMessage::Batch {
            notifications: vec![n(1), n(2)],
            complete: true,
            unread_count: Some(2),
            version: Some(2),
        };
        let singles = render(&D, &batch);
        assert_eq!(singles.len(), 2);
        assert_eq!(args_of(&singles[1]).1[1], json!("2"));
        let d2 = Dialect {
            names: EventNames::NotificationNew,
            ..D
        };
        let arr = render(&d2, &batch);
        assert_eq!(arr.len(), 1);
        let (name, args) = args_of(&arr[0]);
        assert_eq!(name, "notifications:batch");
        assert_eq!(args[0].as_array().map(Vec::len), Some(2));
        assert_eq!(args[1], json!("2"));
        let recovering = Dialect {
            recovering: true,
            ..d2
        };
        let r = render(&recovering, &batch);
        assert_eq!(r.len(), 2);
        assert_eq!(args_of(&r[0]).0, "notification:new");
    }

    #[test]
    fn connected_answers_connect_with_the_pid() {
        let f = render(
            &D,
            &ServerMessage::Connected {
                user_id: "42".into(),
                node_id: "n1".into(),
                session_id: Uuid::nil(),
                latest_seq: 3,
                unread_count: 2,
                version: 1,
                seen_seq: 0,
                resume_from: 2,
                token_expires_at: 0,
                heartbeat_interval_ms: 1,
                limits: crate::ws::ConnectionLimits {
                    max_message_bytes: 1,
                    messages_per_second: 1,
                    message_burst: 1,
                    max_sockets_per_user: 1,
                    max_resume_gap: 1,
                },
            },
        );
        assert!(f[0].starts_with("40/notifications,{"));
        assert!(f[0].contains(r#""pid":"p""#));
        let (name, args) = args_of(&f[1]);
        assert_eq!(name, "connected");
        assert_eq!(args[0]["userId"], json!(42));
        assert_eq!(args[1], json!("2"), "the offset the catch-up starts after");
    }

    #[test]
    fn answers_go_to_the_ack_and_errors_without_one_to_the_error_event() {
        let f = render(
            &D,
            &ServerMessage::Ack {
                rid: Some(Rid::Num(5)),
                result: AckResult::UnreadCount(UnreadCount {
                    unread_count: 3,
                    latest_seq: 9,
                    version: 4,
                }),
            },
        );
        assert_eq!(
            f[0],
            r#"43/notifications,5[{"latestSeq":9,"unreadCount":3,"version":4}]"#
        );
        assert_eq!(args_of(&f[1]).0, "unread_count");
        let e = render(
            &D,
            &ServerMessage::Error {
                rid: None,
                code: ErrorCode::NotFound,
                message: "m".into(),
            },
        );
        let (name, args) = args_of(&e[0]);
        assert_eq!(name, "error");
        assert_eq!(args[0]["message"], "m");
    }

    #[test]
    fn maps_the_seed_commands() {
        let id = Uuid::from_u128(9);
        assert_eq!(
            command(
                "mark_read",
                Some(3),
                &[json!({"notificationId": id.to_string()})]
            ),
            Ok(ClientMessage::MarkRead {
                rid: Some(Rid::Num(3)),
                id
            })
        );
        assert!(command("mark_read", None, &[json!({"notificationId": "12"})]).is_err());
        assert!(command("mark_read", None, &[]).is_err());
        assert_eq!(
            command("get_unread_count", None, &[]),
            Ok(ClientMessage::GetUnreadCount { rid: None })
        );
        assert_eq!(
            command("mark_all_read", Some(1), &[]),
            Ok(ClientMessage::MarkAllRead {
                rid: Some(Rid::Num(1)),
                up_to_seq: None
            })
        );
        assert!(command("mark_all_read", None, &[json!({"upToSeq": -1})]).is_err());
        assert!(command("delete_everything", None, &[]).is_err());
    }

    proptest! {
        /// Every notification event ends with its seq as a string offset, and a batch in
        /// recovery is that many single events in seq order.
        #[test]
        fn offsets_follow_seqs(seqs in proptest::collection::btree_set(1i64..1_000_000, 1..20)) {
            let rows: Vec<Notification> = seqs.iter().map(|s| n(*s)).collect();
            let d = Dialect { recovering: true, names: EventNames::NotificationNew, ..D };
            let frames = render(&d, &ServerMessage::Batch {
                notifications: rows, complete: true, unread_count: Some(0), version: Some(0),
            });
            let got: Vec<String> = frames.iter().map(|f| {
                let (_, args) = args_of(f);
                args.last().and_then(Value::as_str).unwrap_or_default().to_string()
            }).collect();
            let want: Vec<String> = seqs.iter().map(i64::to_string).collect();
            prop_assert_eq!(got, want);
        }

        /// Any client event is mapped or refused without panicking.
        #[test]
        fn commands_never_panic(name in "[a-z_]{0,20}", s in ".{0,40}", x in any::<i64>()) {
            let _ = command(&name, Some(1), &[json!({"notificationId": s, "upToSeq": x, "token": s})]);
        }
    }
}
