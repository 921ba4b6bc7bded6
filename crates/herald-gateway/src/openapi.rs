//! The OpenAPI 3.1 document of the public HTTP API: `GET /v1/openapi.json`, `herald openapi`,
//! and the committed `docs/openapi.json` (`scripts/gen-openapi.sh --check` fails on drift).
//!
//! The schemas are `herald-protocol`'s wire types (`utoipa::ToSchema` behind its `openapi`
//! feature), so the document describes the JSON the handlers really write. The operations come
//! from [`OPERATIONS`], one entry per route of `routes/mod.rs`; a unit test parses that file and
//! fails when a route is added without an entry here (or an entry names no route). Every error
//! response is the `ErrorBody` JSON, narrowed per status to the `code` values that operation can
//! answer with, as `docs/protocol.md` section 4 maps codes to statuses.
//!
//! Deliberately not in the document (and said so in its description): `GET /metrics`, which
//! only the admin listener serves (Prometheus text, not JSON), and the lab-only `/dev/*` routes,
//! which production builds do not contain.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use herald_protocol::email::{AddSuppression, Suppression, SuppressionPage, UnsubscribeResult};
use herald_protocol::http::{
    BroadcastRequest, BroadcastResponse, Health, MarkAllReadResult, MarkReadResult,
    NotificationPage, Priority, PublishFallback, PublishRequest, PublishResponse, PublishedItem,
    ReadAllRequest, RevokeRequest, RevokeResponse, SeenRequest, SeenResult, UnreadCount,
};
use herald_protocol::inbox::{
    BulkRequest, InboxAction, InboxCounts, InboxFilter, InboxResult, TypeCounts,
};
use herald_protocol::prefs::{
    Contact, ContactResponse, DigestBounds, Preferences, PreferencesSchema, QuietHours,
    TypeDefaults,
};
use herald_protocol::push::{
    PushKeys, PushSubscriptionInfo, PushSubscriptionList, PushSubscriptionRequest, VapidPublicKey,
};
use herald_protocol::{ErrorBody, ErrorCode, Notification, PROTOCOL_VERSION};
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::info::{InfoBuilder, LicenseBuilder};
use utoipa::openapi::path::{
    HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem, PathsBuilder,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::response::{ResponseBuilder, ResponsesBuilder};
use utoipa::openapi::schema::{
    AllOfBuilder, ComponentsBuilder, KnownFormat, ObjectBuilder, OneOfBuilder, Ref, Schema,
    SchemaFormat, Type,
};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{OpenApi, OpenApiBuilder, RefOr, Required};

/// The `Cache-Control` of `GET /v1/openapi.json`: the document changes only with a new build,
/// so a client may keep it for a while.
pub const CACHE_CONTROL: &str = "public, max-age=3600";

/// Routes of `routes/mod.rs` that are deliberately not in the document, with why (the
/// document's description says the same).
pub const EXCLUDED: &[(&str, &str, &str)] = &[
    (
        "GET",
        "/metrics",
        "served only by the admin listener (`HERALD_ADMIN_LISTEN`), as Prometheus text",
    ),
    (
        "POST",
        "/dev/token",
        "lab builds only, with `HERALD_DEV_ENDPOINTS=true`; never in production",
    ),
    (
        "POST",
        "/dev/publish",
        "lab builds only, with `HERALD_DEV_ENDPOINTS=true`; never in production",
    ),
];

/// Who may call an operation.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Auth {
    None,
    /// A service API key holding this scope.
    Service(&'static str),
    /// A user token.
    User,
    /// A user token in the header, or (browsers) in the first WebSocket message.
    UserOrFirstMessage,
}

/// A JSON request body.
struct Body {
    schema: &'static str,
    required: bool,
    description: &'static str,
}

#[derive(Clone, Copy)]
enum ParamType {
    /// An integer from `min` to `max`, with an optional default.
    Integer(i64, i64, Option<i64>),
    Boolean,
    String,
    Uuid,
}

struct Param {
    name: &'static str,
    location: ParamLocation,
    ty: ParamType,
    description: &'static str,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ParamLocation {
    Path,
    Query,
}

/// A success (or non-error) answer.
struct Answer {
    status: u16,
    description: &'static str,
    /// The component schema of the JSON body; `None` for no JSON body.
    schema: Option<&'static str>,
    /// Response headers: (name, description).
    headers: &'static [(&'static str, &'static str)],
}

/// One operation of the HTTP API.
pub struct Operation {
    pub method: &'static str,
    pub path: &'static str,
    id: &'static str,
    tag: &'static str,
    summary: &'static str,
    description: &'static str,
    auth: Auth,
    body: Option<Body>,
    params: &'static [Param],
    answers: &'static [Answer],
    /// The error codes this operation answers with, besides [`EDGE_ERRORS`].
    errors: &'static [ErrorCode],
}

/// What every request may be answered with before it reaches its handler: the edge middleware
/// (a token in the URL, the whole-request timeout) and the connection caps (per address, per
/// node, and a draining node).
pub const EDGE_ERRORS: &[ErrorCode] = &[
    ErrorCode::TokenInUrl,
    ErrorCode::RequestTimeout,
    ErrorCode::RateLimited,
    ErrorCode::ServiceUnavailable,
];

const USER_AUTH_ERRORS: [ErrorCode; 3] = [
    ErrorCode::Unauthorized,
    ErrorCode::TokenExpired,
    ErrorCode::TokenRevoked,
];

const PUBLISH_BODY: &str = "JSON (`Content-Type: application/json`), at most \
`HERALD_MAX_PUBLISH_BODY_BYTES` (default 1 MiB; larger: 413 `payload_too_large`). Unknown fields \
are refused (400 `validation_failed` naming the field).";

const REQUIRED_SMALL_BODY: &str = "A JSON object (required). Any content type. At most 256 KiB \
(larger: 413 `payload_too_large`). Not JSON: 400 `invalid_json`; a missing, mistyped or unknown \
field: 400 `validation_failed` naming the field.";

const SMALL_BODY: &str = "Optional JSON: an empty body is `{}`. Any content type. At most \
256 KiB (larger: 413 `payload_too_large`). Unknown fields are refused (400 \
`validation_failed` naming the field).";

const RETRY_AFTER: (&str, &str) = (
    "Retry-After",
    "Whole seconds, at least 1, until the request may succeed.",
);

const ID: Param = Param {
    name: "id",
    location: ParamLocation::Path,
    ty: ParamType::Uuid,
    description: "The notification id (a UUID; anything else: 400 `invalid_parameter`).",
};

const UNSUBSCRIBE_TOKEN: Param = Param {
    name: "t",
    location: ParamLocation::Query,
    ty: ParamType::String,
    description: "The unsubscribe token from the email's link (missing or not a token: 400 \
`invalid_parameter`; not signed by this server: 403 `forbidden`).",
};

/// Every operation of the public listener, in `routes/mod.rs` order.
pub const OPERATIONS: &[Operation] = &[
    Operation {
        method: "GET",
        path: "/healthz",
        id: "healthz",
        tag: "operations",
        summary: "Liveness",
        description:
            "200 while the process runs. Checks no dependency: `postgres` and `redis` are \
always `null`. Also served by the admin listener.",
        auth: Auth::None,
        body: None,
        params: &[],
        answers: &[Answer {
            status: 200,
            description: "The process runs (`status: \"ok\"`).",
            schema: Some("Health"),
            headers: &[],
        }],
        errors: &[],
    },
    Operation {
        method: "GET",
        path: "/readyz",
        id: "readyz",
        tag: "operations",
        summary: "Readiness (load balancers route on this)",
        description: "Answered at once from the node's last background check of PostgreSQL and \
Redis (every 500 ms). Also served by the admin listener.",
        auth: Auth::None,
        body: None,
        params: &[],
        answers: &[
            Answer {
                status: 200,
                description: "`ready`, or `degraded` with `redis: false` (publishes still commit).",
                schema: Some("Health"),
                headers: &[],
            },
            Answer {
                status: 503,
                description: "`unavailable` (PostgreSQL down) or `draining` (shutting down).",
                schema: Some("Health"),
                headers: &[],
            },
        ],
        errors: &[],
    },
    Operation {
        method: "GET",
        path: "/v1/ws",
        id: "websocket",
        tag: "websocket",
        summary: "Open the WebSocket",
        description: "A WebSocket upgrade (`Upgrade: websocket`); the frames are documented in \
docs/protocol.md section 2. Authenticate with `Authorization: Bearer <jwt>` or, from a browser, \
with an `auth` message first (then `Origin` must be allowed). Refusals are HTTP errors before \
the upgrade, and close the connection; a plain GET without upgrade headers is refused with 400 \
`invalid_parameter` after the same checks.",
        auth: Auth::UserOrFirstMessage,
        body: None,
        params: &[Param {
            name: "last_seq",
            location: ParamLocation::Query,
            ty: ParamType::Integer(0, i64::MAX, None),
            description: "Resume after this seq (header authentication; the `auth` message \
carries it otherwise).",
        }],
        answers: &[Answer {
            status: 101,
            description: "Switching Protocols: the socket is open.",
            schema: None,
            headers: &[],
        }],
        errors: &[
            ErrorCode::InvalidParameter,
            ErrorCode::Unauthorized,
            ErrorCode::TokenExpired,
            ErrorCode::TokenRevoked,
            ErrorCode::OriginNotAllowed,
        ],
    },
    Operation {
        method: "POST",
        path: "/v1/notifications",
        id: "publish",
        tag: "service",
        summary: "Publish a notification",
        description: "To one `recipient` or up to 1,000 `recipients` (exactly one of the two). \
Answered after the rows are committed. With an `idempotency_key`, a retry with the same body \
returns the original response with 200 and `Idempotent-Replayed: true`. Field rules: \
docs/protocol.md section 3.1.",
        auth: Auth::Service("publish"),
        body: Some(Body {
            schema: "PublishRequest",
            required: true,
            description: PUBLISH_BODY,
        }),
        params: &[],
        answers: &[
            Answer {
                status: 201,
                description: "Created and committed; items in recipient order.",
                schema: Some("PublishResponse"),
                headers: &[],
            },
            Answer {
                status: 200,
                description: "A replay of an earlier call with the same idempotency key and body.",
                schema: Some("PublishResponse"),
                headers: &[("Idempotent-Replayed", "`true` on a replayed response.")],
            },
        ],
        errors: &[
            ErrorCode::InvalidJson,
            ErrorCode::ValidationFailed,
            ErrorCode::Unauthorized,
            ErrorCode::Forbidden,
            ErrorCode::MethodNotAllowed,
            ErrorCode::IdempotencyKeyReused,
            ErrorCode::PayloadTooLarge,
            ErrorCode::UnsupportedMediaType,
            ErrorCode::Internal,
        ],
    },
    Operation {
        method: "GET",
        path: "/v1/notifications",
        id: "listNotifications",
        tag: "user",
        summary: "List the user's notifications",
        description: "Newest first (`before`), or oldest first with `seq > after` (`after`, for \
catching up after a `resync`). Pass `next_cursor` as `before` (or `after`) for the next page.",
        auth: Auth::User,
        body: None,
        params: &[
            Param {
                name: "limit",
                location: ParamLocation::Query,
                ty: ParamType::Integer(1, 100, Some(20)),
                description: "Page size.",
            },
            Param {
                name: "before",
                location: ParamLocation::Query,
                ty: ParamType::String,
                description: "Opaque cursor from `next_cursor` (newest-first pages).",
            },
            Param {
                name: "after",
                location: ParamLocation::Query,
                ty: ParamType::String,
                description: "A seq, or `next_cursor` of an ascending page: oldest first. Not \
with `before` or `unread_only`.",
            },
            Param {
                name: "unread_only",
                location: ParamLocation::Query,
                ty: ParamType::Boolean,
                description: "Only unread notifications (`true`/`false`/`1`/`0`).",
            },
            Param {
                name: "archived",
                location: ParamLocation::Query,
                ty: ParamType::Boolean,
                description: "`true`: only archived; `false`: only the inbox (not archived); \
absent: both. Not with `after`.",
            },
            Param {
                name: "type",
                location: ParamLocation::Query,
                ty: ParamType::String,
                description: "Only this notification type (exact). Not with `after`.",
            },
        ],
        answers: &[Answer {
            status: 200,
            description: "A page.",
            schema: Some("NotificationPage"),
            headers: &[],
        }],
        errors: &[
            ErrorCode::InvalidParameter,
            USER_AUTH_ERRORS[0],
            USER_AUTH_ERRORS[1],
            USER_AUTH_ERRORS[2],
            ErrorCode::MethodNotAllowed,
            ErrorCode::Internal,
        ],
    },
    Operation {
        method: "GET",
        path: "/v1/notifications/unread-count",
        id: "unreadCount",
        tag: "user",
        summary: "The user's unread count",
        description: "Apply `unread_count` only if `version` is higher than the last applied.",
        auth: Auth::User,
        body: None,
        params: &[],
        answers: &[Answer {
            status: 200,
            description: "The count, latest seq and version.",
            schema: Some("UnreadCount"),
            headers: &[],
        }],
        errors: &[
            USER_AUTH_ERRORS[0],
            USER_AUTH_ERRORS[1],
            USER_AUTH_ERRORS[2],
            ErrorCode::MethodNotAllowed,
            ErrorCode::Internal,
        ],
    },
    Operation {
        method: "POST",
        path: "/v1/notifications/read-all",
        id: "markAllRead",
        tag: "user",
        summary: "Mark notifications read up to a seq",
        description: "Marks unread notifications with `seq <= up_to_seq` (default: the latest seq \
at the time of the call). Every socket of the user gets a `read` event.",
        auth: Auth::User,
        body: Some(Body {
            schema: "ReadAllRequest",
            required: false,
            description: SMALL_BODY,
        }),
        params: &[],
        answers: &[Answer {
            status: 200,
            description: "Marked.",
            schema: Some("MarkAllReadResult"),
            headers: &[],
        }],
        errors: &[
            ErrorCode::InvalidJson,
            ErrorCode::ValidationFailed,
            USER_AUTH_ERRORS[0],
            USER_AUTH_ERRORS[1],
            USER_AUTH_ERRORS[2],
            ErrorCode::MethodNotAllowed,
            ErrorCode::PayloadTooLarge,
            ErrorCode::Internal,
        ],
    },
    Operation {
        method: "POST",
        path: "/v1/notifications/seen",
        id: "markSeen",
        tag: "user",
        summary: "Raise the seen watermark",
        description: "Every notification with `seq <= seq` was shown in a visible tab. The \
watermark only rises: a lower or equal `seq` answers `changed: false`. Every socket of the user \
gets a `seen` event when it rose. A `seq` below 0 or above the user's latest seq answers 400 \
`validation_failed` (field `seq`) and changes nothing.",
        auth: Auth::User,
        body: Some(Body {
            schema: "SeenRequest",
            required: true,
            description: REQUIRED_SMALL_BODY,
        }),
        params: &[],
        answers: &[Answer {
            status: 200,
            description: "The watermark in force.",
            schema: Some("SeenResult"),
            headers: &[],
        }],
        errors: &[
            ErrorCode::InvalidJson,
            ErrorCode::ValidationFailed,
            USER_AUTH_ERRORS[0],
            USER_AUTH_ERRORS[1],
            USER_AUTH_ERRORS[2],
            ErrorCode::MethodNotAllowed,
            ErrorCode::PayloadTooLarge,
            ErrorCode::Internal,
        ],
    },
    Operation {
        method: "POST",
        path: "/v1/notifications/bulk",
        id: "bulkAction",
        tag: "user",
        summary: "Archive, unarchive, read, unread or delete many",
        description: "Exactly one of `ids` (1 to 100; ids that are not the user's are ignored) and `filter` (every \
notification matching it with `seq <= up_to_seq`, default the latest seq at the call; at most \
1000 per call, newest first: `has_more` says to call again with the answer's `up_to_seq`). \
`ids` in the answer are those changed. Every socket of the user gets an `inbox` event.",
        auth: Auth::User,
        body: Some(Body {
            schema: "BulkRequest",
            required: true,
            description: REQUIRED_SMALL_BODY,
        }),
        params: &[],
        answers: &[Answer {
            status: 200,
            description: "The notifications changed and the counters.",
            schema: Some("InboxResult"),
            headers: &[],
        }],
        errors: &[
            ErrorCode::InvalidJson,
            ErrorCode::ValidationFailed,
            USER_AUTH_ERRORS[0],
            USER_AUTH_ERRORS[1],
            USER_AUTH_ERRORS[2],
            ErrorCode::MethodNotAllowed,
            ErrorCode::PayloadTooLarge,
            ErrorCode::Internal,
        ],
    },
    Operation {
        method: "GET",
        path: "/v1/notifications/counts",
        id: "inboxCounts",
        tag: "user",
        summary: "The count behind each filter",
        description: "Total, inbox, unread and archived, and per type (at most 100 types). Reads every stored \
notification of the user: fetch it when a panel opens, not per event.",
        auth: Auth::User,
        body: None,
        params: &[],
        answers: &[Answer {
            status: 200,
            description: "The counts.",
            schema: Some("InboxCounts"),
            headers: &[],
        }],
        errors: &[
            USER_AUTH_ERRORS[0],
            USER_AUTH_ERRORS[1],
            USER_AUTH_ERRORS[2],
            ErrorCode::MethodNotAllowed,
            ErrorCode::Internal,
        ],
    },
    Operation {
        method: "POST",
        path: "/v1/notifications/{id}/archive",
        id: "archiveNotification",
        tag: "user",
        summary: "Archive one notification",
        description: "Archives it and reads it (archived notifications are never unread). \
Idempotent: `ids` is empty when it already was.",
        auth: Auth::User,
        body: None,
        params: &[ID],
        answers: &[Answer {
            status: 200,
            description: "The result.",
            schema: Some("InboxResult"),
            headers: &[],
        }],
        errors: &[
            ErrorCode::InvalidParameter,
            USER_AUTH_ERRORS[0],
            USER_AUTH_ERRORS[1],
            USER_AUTH_ERRORS[2],
            ErrorCode::NotFound,
            ErrorCode::MethodNotAllowed,
            ErrorCode::Internal,
        ],
    },
    Operation {
        method: "POST",
        path: "/v1/notifications/{id}/unarchive",
        id: "unarchiveNotification",
        tag: "user",
        summary: "Unarchive one notification",
        description: "Back to the inbox; it stays read. Idempotent.",
        auth: Auth::User,
        body: None,
        params: &[ID],
        answers: &[Answer {
            status: 200,
            description: "The result.",
            schema: Some("InboxResult"),
            headers: &[],
        }],
        errors: &[
            ErrorCode::InvalidParameter,
            USER_AUTH_ERRORS[0],
            USER_AUTH_ERRORS[1],
            USER_AUTH_ERRORS[2],
            ErrorCode::NotFound,
            ErrorCode::MethodNotAllowed,
            ErrorCode::Internal,
        ],
    },
    Operation {
        method: "POST",
        path: "/v1/notifications/{id}/unread",
        id: "unreadNotification",
        tag: "user",
        summary: "Mark one notification unread",
        description: "An archived notification is left as it is (`ids` empty). \
Idempotent.",
        auth: Auth::User,
        body: None,
        params: &[ID],
        answers: &[Answer {
            status: 200,
            description: "The result.",
            schema: Some("InboxResult"),
            headers: &[],
        }],
        errors: &[
            ErrorCode::InvalidParameter,
            USER_AUTH_ERRORS[0],
            USER_AUTH_ERRORS[1],
            USER_AUTH_ERRORS[2],
            ErrorCode::NotFound,
            ErrorCode::MethodNotAllowed,
            ErrorCode::Internal,
        ],
    },
    Operation {
        method: "POST",
        path: "/v1/notifications/{id}/read",
        id: "markRead",
        tag: "user",
        summary: "Mark one notification read",
        description: "Idempotent: `changed` is false when it was already read. Another user's id \
answers 404 like an unknown one.",
        auth: Auth::User,
        body: None,
        params: &[ID],
        answers: &[Answer {
            status: 200,
            description: "Read.",
            schema: Some("MarkReadResult"),
            headers: &[],
        }],
        errors: &[
            ErrorCode::InvalidParameter,
            USER_AUTH_ERRORS[0],
            USER_AUTH_ERRORS[1],
            USER_AUTH_ERRORS[2],
            ErrorCode::NotFound,
            ErrorCode::MethodNotAllowed,
            ErrorCode::Internal,
        ],
    },
    Operation {
        method: "GET",
        path: "/v1/notifications/{id}",
        id: "getNotification",
        tag: "user",
        summary: "One notification",
        description: "Another user's id answers 404 like an unknown one.",
        auth: Auth::User,
        body: None,
        params: &[ID],
        answers: &[Answer {
            status: 200,
            description: "The notification.",
            schema: Some("Notification"),
            headers: &[],
        }],
        errors: &[
            ErrorCode::InvalidParameter,
            USER_AUTH_ERRORS[0],
            USER_AUTH_ERRORS[1],
            USER_AUTH_ERRORS[2],
            ErrorCode::NotFound,
            ErrorCode::MethodNotAllowed,
            ErrorCode::Internal,
        ],
    },
    Operation {
        method: "DELETE",
        path: "/v1/notifications/{id}",
        id: "deleteNotification",
        tag: "user",
        summary: "Delete one notification",
        description: "Deleted for good: its seq is never reused and catch-up skips it. Deleting it again (or another \
user's id) answers 404.",
        auth: Auth::User,
        body: None,
        params: &[ID],
        answers: &[Answer {
            status: 200,
            description: "Deleted.",
            schema: Some("InboxResult"),
            headers: &[],
        }],
        errors: &[
            ErrorCode::InvalidParameter,
            USER_AUTH_ERRORS[0],
            USER_AUTH_ERRORS[1],
            USER_AUTH_ERRORS[2],
            ErrorCode::NotFound,
            ErrorCode::MethodNotAllowed,
            ErrorCode::Internal,
        ],
    },
    Operation {
        method: "POST",
        path: "/v1/users/{user_id}/revoke",
        id: "revokeUser",
        tag: "service",
        summary: "Revoke a user's sessions",
        description: "Tokens of the user issued before the cut-off (or without `iat`) are refused \
from then on, and open sockets holding one are closed with 4006 on every node. The cut-off only \
rises. Details: docs/protocol.md section 3.1.1.",
        auth: Auth::Service("revoke"),
        body: Some(Body {
            schema: "RevokeRequest",
            required: false,
            description: SMALL_BODY,
        }),
        params: &[Param {
            name: "user_id",
            location: ParamLocation::Path,
            ty: ParamType::String,
            description: "The user (1-128 bytes from `[A-Za-z0-9._~:@+=|-]`; else 400 \
`invalid_parameter`).",
        }],
        answers: &[Answer {
            status: 200,
            description: "The cut-off now in force.",
            schema: Some("RevokeResponse"),
            headers: &[],
        }],
        errors: &[
            ErrorCode::InvalidJson,
            ErrorCode::ValidationFailed,
            ErrorCode::InvalidParameter,
            ErrorCode::Unauthorized,
            ErrorCode::Forbidden,
            ErrorCode::MethodNotAllowed,
            ErrorCode::PayloadTooLarge,
            ErrorCode::Internal,
        ],
    },
    Operation {
        method: "POST",
        path: "/v1/broadcasts",
        id: "broadcast",
        tag: "service",
        summary: "Broadcast to every connected user",
        description: "Ephemeral: every socket connected at that moment gets a \
`global_notification`; nothing is stored. 503 when the bus is down.",
        auth: Auth::Service("broadcast"),
        body: Some(Body {
            schema: "BroadcastRequest",
            required: true,
            description: PUBLISH_BODY,
        }),
        params: &[],
        answers: &[Answer {
            status: 202,
            description: "Sent to `nodes` gateway nodes.",
            schema: Some("BroadcastResponse"),
            headers: &[],
        }],
        errors: &[
            ErrorCode::InvalidJson,
            ErrorCode::ValidationFailed,
            ErrorCode::Unauthorized,
            ErrorCode::Forbidden,
            ErrorCode::MethodNotAllowed,
            ErrorCode::PayloadTooLarge,
            ErrorCode::UnsupportedMediaType,
            ErrorCode::Internal,
        ],
    },
    Operation {
        method: "GET",
        path: "/v1/me/preferences",
        id: "getPreferences",
        tag: "user",
        summary: "The user's fallback preferences",
        description: "Per type × channel on/off, quiet hours, digest window; the empty document \
(every channel on) when none are stored. Details: docs/channels.md.",
        auth: Auth::User,
        body: None,
        params: &[],
        answers: &[Answer {
            status: 200,
            description: "The preferences.",
            schema: Some("Preferences"),
            headers: &[],
        }],
        errors: &[
            USER_AUTH_ERRORS[0],
            USER_AUTH_ERRORS[1],
            USER_AUTH_ERRORS[2],
            ErrorCode::MethodNotAllowed,
            ErrorCode::Internal,
        ],
    },
    Operation {
        method: "GET",
        path: "/v1/me/preferences/schema",
        id: "getPreferencesSchema",
        tag: "user",
        summary: "What a preferences form can offer",
        description: "The server's fallback rules (`HERALD_FALLBACK_TYPES`): each type that falls \
back (`*` = every other type) with its default channels and delay, every channel some rule \
names, and the digest window's bounds. The same for every user; empty lists when no fallback \
is configured.",
        auth: Auth::User,
        body: None,
        params: &[],
        answers: &[Answer {
            status: 200,
            description: "The types, channels and bounds.",
            schema: Some("PreferencesSchema"),
            headers: &[],
        }],
        errors: &[
            USER_AUTH_ERRORS[0],
            USER_AUTH_ERRORS[1],
            USER_AUTH_ERRORS[2],
            ErrorCode::MethodNotAllowed,
            ErrorCode::Internal,
        ],
    },
    Operation {
        method: "PUT",
        path: "/v1/me/preferences",
        id: "putPreferences",
        tag: "user",
        summary: "Replace the user's fallback preferences",
        description: "Validated whole (unknown channel, bad `HH:MM`, unknown IANA time zone, \
digest window outside 60-86400: 400 `validation_failed` naming the field; nothing is stored). \
An empty body resets them.",
        auth: Auth::User,
        body: Some(Body {
            schema: "Preferences",
            required: false,
            description: SMALL_BODY,
        }),
        params: &[],
        answers: &[Answer {
            status: 200,
            description: "The preferences now stored.",
            schema: Some("Preferences"),
            headers: &[],
        }],
        errors: &[
            ErrorCode::InvalidJson,
            ErrorCode::ValidationFailed,
            USER_AUTH_ERRORS[0],
            USER_AUTH_ERRORS[1],
            USER_AUTH_ERRORS[2],
            ErrorCode::MethodNotAllowed,
            ErrorCode::PayloadTooLarge,
            ErrorCode::Internal,
        ],
    },
    Operation {
        method: "PUT",
        path: "/v1/users/{user_id}/contact",
        id: "putContact",
        tag: "service",
        summary: "Set a user's email address and locale",
        description: "For the email fallback. A missing or null field clears it. Needs the \
`publish` scope.",
        auth: Auth::Service("publish"),
        body: Some(Body {
            schema: "Contact",
            required: false,
            description: SMALL_BODY,
        }),
        params: &[Param {
            name: "user_id",
            location: ParamLocation::Path,
            ty: ParamType::String,
            description: "The user (1-128 bytes from `[A-Za-z0-9._~:@+=|-]`; else 400 \
`invalid_parameter`).",
        }],
        answers: &[Answer {
            status: 200,
            description: "Stored.",
            schema: Some("ContactResponse"),
            headers: &[],
        }],
        errors: &[
            ErrorCode::InvalidJson,
            ErrorCode::ValidationFailed,
            ErrorCode::InvalidParameter,
            ErrorCode::Unauthorized,
            ErrorCode::Forbidden,
            ErrorCode::MethodNotAllowed,
            ErrorCode::PayloadTooLarge,
            ErrorCode::Internal,
        ],
    },
    Operation {
        method: "POST",
        path: "/v1/me/push-subscriptions",
        id: "subscribePush",
        tag: "user",
        summary: "Register a Web Push subscription",
        description: "The body is the browser's `PushSubscription.toJSON()`. The endpoint must be \
an `https://` URL of at most 2048 bytes without credentials or fragment; `keys.p256dh` a 65-byte \
uncompressed P-256 point and `keys.auth` 16 bytes, both base64url (else 400 `validation_failed` \
naming the field; nothing is stored). A known endpoint is taken over by this user; beyond \
`HERALD_PUSH_MAX_SUBSCRIPTIONS` the user's oldest subscription is removed. 404 `not_found` when \
the server has no VAPID key configured. Details: docs/channels.md.",
        auth: Auth::User,
        body: Some(Body {
            schema: "PushSubscriptionRequest",
            required: true,
            description: REQUIRED_SMALL_BODY,
        }),
        params: &[],
        answers: &[Answer {
            status: 201,
            description: "Stored.",
            schema: Some("PushSubscriptionInfo"),
            headers: &[],
        }],
        errors: &[
            ErrorCode::InvalidJson,
            ErrorCode::ValidationFailed,
            USER_AUTH_ERRORS[0],
            USER_AUTH_ERRORS[1],
            USER_AUTH_ERRORS[2],
            ErrorCode::NotFound,
            ErrorCode::MethodNotAllowed,
            ErrorCode::PayloadTooLarge,
            ErrorCode::Internal,
        ],
    },
    Operation {
        method: "GET",
        path: "/v1/me/push-subscriptions",
        id: "listPushSubscriptions",
        tag: "user",
        summary: "The user's Web Push subscriptions",
        description: "Oldest first; the keys are not returned.",
        auth: Auth::User,
        body: None,
        params: &[],
        answers: &[Answer {
            status: 200,
            description: "The subscriptions.",
            schema: Some("PushSubscriptionList"),
            headers: &[],
        }],
        errors: &[
            USER_AUTH_ERRORS[0],
            USER_AUTH_ERRORS[1],
            USER_AUTH_ERRORS[2],
            ErrorCode::MethodNotAllowed,
            ErrorCode::Internal,
        ],
    },
    Operation {
        method: "DELETE",
        path: "/v1/me/push-subscriptions",
        id: "unsubscribePush",
        tag: "user",
        summary: "Remove a Web Push subscription",
        description: "By its endpoint (URL-encoded in the query).",
        auth: Auth::User,
        body: None,
        params: &[Param {
            name: "endpoint",
            location: ParamLocation::Query,
            ty: ParamType::String,
            description: "The subscription's endpoint (missing: 400 `invalid_parameter`).",
        }],
        answers: &[Answer {
            status: 204,
            description: "Removed.",
            schema: None,
            headers: &[],
        }],
        errors: &[
            ErrorCode::InvalidParameter,
            USER_AUTH_ERRORS[0],
            USER_AUTH_ERRORS[1],
            USER_AUTH_ERRORS[2],
            ErrorCode::NotFound,
            ErrorCode::MethodNotAllowed,
            ErrorCode::Internal,
        ],
    },
    Operation {
        method: "GET",
        path: "/v1/push/vapid-public-key",
        id: "vapidPublicKey",
        tag: "user",
        summary: "The server's VAPID public key",
        description: "The `applicationServerKey` a browser subscribes with. No authentication. \
404 `not_found` when the server has no VAPID key configured.",
        auth: Auth::None,
        body: None,
        params: &[],
        answers: &[Answer {
            status: 200,
            description: "The key.",
            schema: Some("VapidPublicKey"),
            headers: &[],
        }],
        errors: &[
            ErrorCode::NotFound,
            ErrorCode::MethodNotAllowed,
            ErrorCode::Internal,
        ],
    },
    Operation {
        method: "GET",
        path: "/v1/email/unsubscribe",
        id: "emailUnsubscribePage",
        tag: "email",
        summary: "The unsubscribe confirmation page",
        description: "The `List-Unsubscribe` link of every fallback email. Answers a small HTML \
page whose button POSTs the one-click form; it changes nothing itself (mail scanners prefetch \
links). 404 `not_found` when the email channel is not set up.",
        auth: Auth::None,
        body: None,
        params: &[UNSUBSCRIBE_TOKEN],
        answers: &[Answer {
            status: 200,
            description: "An HTML page (`text/html`).",
            schema: None,
            headers: &[],
        }],
        errors: &[
            ErrorCode::InvalidParameter,
            ErrorCode::Forbidden,
            ErrorCode::NotFound,
            ErrorCode::MethodNotAllowed,
        ],
    },
    Operation {
        method: "POST",
        path: "/v1/email/unsubscribe",
        id: "emailUnsubscribe",
        tag: "email",
        summary: "One-click unsubscribe (RFC 8058)",
        description: "The body must be the form `List-Unsubscribe=One-Click` (what mail \
clients send; else 400 `invalid_parameter`). Turns email off for the token's user and scope \
(`*`: every type) in the user's preferences (`GET /v1/me/preferences` shows it). No login: the \
token is signed with `HERALD_EMAIL_UNSUBSCRIBE_SECRET`; a token this server did not sign is \
403 `forbidden` and nothing changes.",
        auth: Auth::None,
        body: None,
        params: &[UNSUBSCRIBE_TOKEN],
        answers: &[Answer {
            status: 200,
            description: "Email is off for the scope.",
            schema: Some("UnsubscribeResult"),
            headers: &[],
        }],
        errors: &[
            ErrorCode::InvalidParameter,
            ErrorCode::Forbidden,
            ErrorCode::NotFound,
            ErrorCode::MethodNotAllowed,
            ErrorCode::PayloadTooLarge,
            ErrorCode::Internal,
        ],
    },
    Operation {
        method: "GET",
        path: "/v1/email/suppressions",
        id: "listSuppressions",
        tag: "email",
        summary: "List suppressed email addresses",
        description: "By address, a page at a time. Needs the `publish` scope.",
        auth: Auth::Service("publish"),
        body: None,
        params: &[
            Param {
                name: "after",
                location: ParamLocation::Query,
                ty: ParamType::String,
                description: "Start after this address (the previous page's `next_after`).",
            },
            Param {
                name: "limit",
                location: ParamLocation::Query,
                ty: ParamType::Integer(1, 1000, Some(100)),
                description: "Page size (else 400 `invalid_parameter`).",
            },
        ],
        answers: &[Answer {
            status: 200,
            description: "A page of suppressions.",
            schema: Some("SuppressionPage"),
            headers: &[],
        }],
        errors: &[
            ErrorCode::InvalidParameter,
            ErrorCode::Unauthorized,
            ErrorCode::Forbidden,
            ErrorCode::MethodNotAllowed,
            ErrorCode::Internal,
        ],
    },
    Operation {
        method: "POST",
        path: "/v1/email/suppressions",
        id: "addSuppression",
        tag: "email",
        summary: "Suppress an email address",
        description: "No email goes to it; its fallback jobs are cancelled (`suppressed`). \
Stored in lower case. 201 when added, 200 when it was already suppressed (the first reason is \
kept). Needs the `publish` scope.",
        auth: Auth::Service("publish"),
        body: Some(Body {
            schema: "AddSuppression",
            required: true,
            description: REQUIRED_SMALL_BODY,
        }),
        params: &[],
        answers: &[
            Answer {
                status: 201,
                description: "Added: `{email, added: true}`.",
                schema: None,
                headers: &[],
            },
            Answer {
                status: 200,
                description: "Already suppressed: `{email, added: false}`.",
                schema: None,
                headers: &[],
            },
        ],
        errors: &[
            ErrorCode::InvalidJson,
            ErrorCode::ValidationFailed,
            ErrorCode::Unauthorized,
            ErrorCode::Forbidden,
            ErrorCode::MethodNotAllowed,
            ErrorCode::PayloadTooLarge,
            ErrorCode::Internal,
        ],
    },
    Operation {
        method: "DELETE",
        path: "/v1/email/suppressions/{email}",
        id: "removeSuppression",
        tag: "email",
        summary: "Remove an address from the suppression list",
        description: "Email may go to it again. Needs the `publish` scope.",
        auth: Auth::Service("publish"),
        body: None,
        params: &[Param {
            name: "email",
            location: ParamLocation::Path,
            ty: ParamType::String,
            description: "The address (any case; not an address: 400 `invalid_parameter`).",
        }],
        answers: &[Answer {
            status: 204,
            description: "Removed.",
            schema: None,
            headers: &[],
        }],
        errors: &[
            ErrorCode::InvalidParameter,
            ErrorCode::Unauthorized,
            ErrorCode::Forbidden,
            ErrorCode::NotFound,
            ErrorCode::MethodNotAllowed,
            ErrorCode::Internal,
        ],
    },
    Operation {
        method: "GET",
        path: "/v1/openapi.json",
        id: "openapi",
        tag: "operations",
        summary: "This document",
        description: "The OpenAPI 3.1 document of this API (also `herald openapi`, and \
docs/openapi.json in the repository).",
        auth: Auth::None,
        body: None,
        params: &[],
        answers: &[Answer {
            status: 200,
            description: "The document.",
            schema: None,
            headers: &[("Cache-Control", "`public, max-age=3600`.")],
        }],
        errors: &[],
    },
];

/// The document, rendered once (at start, by [`init`]).
static DOCUMENT: OnceLock<String> = OnceLock::new();

/// Renders the document for `GET /v1/openapi.json`; called once at start, so a request never
/// builds it.
pub fn init() -> Result<(), serde_json::Error> {
    if DOCUMENT.get().is_none() {
        let json = render()?;
        let _ = DOCUMENT.set(json);
    }
    Ok(())
}

/// The rendered document, once [`init`] has run.
pub fn rendered() -> Option<&'static str> {
    DOCUMENT.get().map(String::as_str)
}

/// The document as pretty JSON with a final newline (what docs/openapi.json holds).
pub fn render() -> Result<String, serde_json::Error> {
    let mut json = serde_json::to_string_pretty(&document())?;
    json.push('\n');
    Ok(json)
}

fn description() -> String {
    let mut d = String::from(
        "Herald's HTTP API: publish notifications (service API keys), read and mark them \
(user tokens), revoke a user's sessions, and the operations endpoints. This document covers \
every route of the public listener (`HERALD_LISTEN`). The WebSocket's frames, and every rule in \
full, are in docs/protocol.md (the same protocol version as `info.version`).\n\n\
Errors are `ErrorBody` JSON (`{code, message, field?}`); each response lists the `code` values \
it can carry. Every request can also be answered 400 `token_in_url` (a token in the query \
string), 408 `request_timeout`, 429 `rate_limited` (per-address connection cap) or 503 \
`service_unavailable` (node connection cap, draining).\n\nNot in this document:\n",
    );
    for (method, path, why) in EXCLUDED {
        d.push_str(&format!("- `{method} {path}`: {why}.\n"));
    }
    d
}

/// Builds the document.
pub fn document() -> OpenApi {
    let mut paths = PathsBuilder::new();
    // Operations on the same path are one path item.
    let mut items: BTreeMap<&str, PathItem> = BTreeMap::new();
    for op in OPERATIONS {
        let item = PathItem::new(http_method(op.method), operation(op));
        match items.get_mut(op.path) {
            Some(existing) => existing.merge_operations(item),
            None => {
                items.insert(op.path, item);
            }
        }
    }
    for (path, item) in items {
        paths = paths.path(path, item);
    }
    let components = ComponentsBuilder::new()
        .schema_from::<ErrorBody>()
        .schema_from::<ErrorCode>()
        .schema_from::<Notification>()
        .schema_from::<PublishRequest>()
        .schema_from::<Priority>()
        .schema_from::<PublishFallback>()
        .schema_from::<PublishResponse>()
        .schema_from::<PublishedItem>()
        .schema_from::<BroadcastRequest>()
        .schema_from::<BroadcastResponse>()
        .schema_from::<NotificationPage>()
        .schema_from::<UnreadCount>()
        .schema_from::<MarkReadResult>()
        .schema_from::<ReadAllRequest>()
        .schema_from::<MarkAllReadResult>()
        .schema_from::<SeenRequest>()
        .schema_from::<SeenResult>()
        .schema_from::<InboxAction>()
        .schema_from::<InboxFilter>()
        .schema_from::<BulkRequest>()
        .schema_from::<InboxResult>()
        .schema_from::<InboxCounts>()
        .schema_from::<TypeCounts>()
        .schema_from::<RevokeRequest>()
        .schema_from::<RevokeResponse>()
        .schema_from::<Health>()
        .schema_from::<Preferences>()
        .schema_from::<QuietHours>()
        .schema_from::<PreferencesSchema>()
        .schema_from::<TypeDefaults>()
        .schema_from::<DigestBounds>()
        .schema_from::<Contact>()
        .schema_from::<ContactResponse>()
        .schema_from::<PushSubscriptionRequest>()
        .schema_from::<PushKeys>()
        .schema_from::<PushSubscriptionInfo>()
        .schema_from::<PushSubscriptionList>()
        .schema_from::<VapidPublicKey>()
        .schema_from::<AddSuppression>()
        .schema_from::<Suppression>()
        .schema_from::<SuppressionPage>()
        .schema_from::<UnsubscribeResult>()
        .security_scheme(
            "serviceKey",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A service API key: `Authorization: Bearer <key>`. A key may be limited \
to scopes (`publish`, `broadcast`, `revoke`); the scope an operation needs is listed in its \
security requirement, and a key without it answers 403 `forbidden`.",
                    ))
                    .build(),
            ),
        )
        .security_scheme(
            "userToken",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A user's JWT (`sub` is the user id; `exp` required): `Authorization: \
Bearer <jwt>`. Invalid: 401 `unauthorized`; expired: 401 `token_expired`; issued before a \
revocation: 401 `token_revoked`.",
                    ))
                    .build(),
            ),
        )
        .build();
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Herald HTTP API")
                .version(PROTOCOL_VERSION)
                .description(Some(description()))
                .license(Some(
                    LicenseBuilder::new()
                        .name("MIT OR Apache-2.0")
                        .identifier(Some("MIT OR Apache-2.0"))
                        .build(),
                ))
                .build(),
        )
        .paths(paths.build())
        .components(Some(components))
        .tags(Some([
            tag("service", "Service endpoints (service API key)."),
            tag(
                "user",
                "User endpoints (user token): only the user's own notifications.",
            ),
            tag(
                "email",
                "The email fallback channel: one-click unsubscribe (signed link, no login) and the suppression list (service API key).",
            ),
            tag("websocket", "The WebSocket upgrade."),
            tag("operations", "Health, readiness and this document."),
        ]))
        .build()
}

fn tag(name: &str, description: &str) -> utoipa::openapi::tag::Tag {
    TagBuilder::new()
        .name(name)
        .description(Some(description))
        .build()
}

fn http_method(m: &str) -> HttpMethod {
    match m {
        "POST" => HttpMethod::Post,
        "PUT" => HttpMethod::Put,
        "DELETE" => HttpMethod::Delete,
        _ => HttpMethod::Get,
    }
}

fn schema_ref(name: &str) -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name(name))
}

fn operation(op: &Operation) -> utoipa::openapi::path::Operation {
    let mut b = OperationBuilder::new()
        .operation_id(Some(op.id))
        .summary(Some(op.summary))
        .description(Some(op.description))
        .tag(op.tag);
    match op.auth {
        Auth::None => {}
        Auth::Service(scope) => b = b.security(SecurityRequirement::new("serviceKey", [scope])),
        Auth::User => {
            b = b.security(SecurityRequirement::new("userToken", Vec::<String>::new()));
        }
        Auth::UserOrFirstMessage => {
            b = b
                .security(SecurityRequirement::new("userToken", Vec::<String>::new()))
                .security(SecurityRequirement::default());
        }
    }
    for p in op.params {
        b = b.parameter(
            ParameterBuilder::new()
                .name(p.name)
                .parameter_in(match p.location {
                    ParamLocation::Path => ParameterIn::Path,
                    ParamLocation::Query => ParameterIn::Query,
                })
                .required(if p.location == ParamLocation::Path {
                    Required::True
                } else {
                    Required::False
                })
                .description(Some(p.description))
                .schema(Some(param_schema(p.ty))),
        );
    }
    if let Some(body) = &op.body {
        b = b.request_body(Some(
            RequestBodyBuilder::new()
                .description(Some(body.description))
                .required(Some(if body.required {
                    Required::True
                } else {
                    Required::False
                }))
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(schema_ref(body.schema)))
                        .build(),
                )
                .build(),
        ));
    }
    let mut responses = ResponsesBuilder::new();
    for (status, response) in responses_of(op) {
        responses = responses.response(status.to_string(), response);
    }
    b.responses(responses.build()).build()
}

fn param_schema(ty: ParamType) -> Schema {
    let b = ObjectBuilder::new();
    Schema::Object(match ty {
        ParamType::Integer(min, max, default) => b
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .minimum(Some(min))
            .maximum((max < i64::MAX).then_some(max))
            .default(default.map(serde_json::Value::from))
            .build(),
        ParamType::Boolean => b.schema_type(Type::Boolean).build(),
        ParamType::String => b.schema_type(Type::String).build(),
        ParamType::Uuid => b
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
            .build(),
    })
}

/// The error codes an operation answers with, by status (its own and [`EDGE_ERRORS`]).
pub fn error_codes_by_status(op: &Operation) -> BTreeMap<u16, Vec<ErrorCode>> {
    let mut by_status: BTreeMap<u16, Vec<ErrorCode>> = BTreeMap::new();
    for &code in op.errors.iter().chain(EDGE_ERRORS) {
        let codes = by_status.entry(code.http_status()).or_default();
        if !codes.contains(&code) {
            codes.push(code);
        }
    }
    by_status
}

/// `ErrorBody` with `code` narrowed to `codes`.
fn error_schema(codes: &[ErrorCode]) -> RefOr<Schema> {
    let code = ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(codes.iter().map(|c| c.as_str())));
    RefOr::T(Schema::AllOf(
        AllOfBuilder::new()
            .item(schema_ref("ErrorBody"))
            .item(ObjectBuilder::new().property("code", code))
            .build(),
    ))
}

fn responses_of(op: &Operation) -> BTreeMap<u16, utoipa::openapi::response::Response> {
    let errors = error_codes_by_status(op);
    let mut out = BTreeMap::new();
    for a in op.answers {
        let mut r = ResponseBuilder::new().description(a.description);
        let mut schema = a.schema.map(schema_ref);
        if let Some(codes) = errors.get(&a.status) {
            // The same status is also an error (`/readyz`'s 503): either body.
            let mut one_of = OneOfBuilder::new();
            for s in schema.into_iter().chain([error_schema(codes)]) {
                one_of = one_of.item(s);
            }
            schema = Some(RefOr::T(Schema::OneOf(one_of.build())));
        }
        if let Some(s) = schema {
            r = r.content(
                "application/json",
                ContentBuilder::new().schema(Some(s)).build(),
            );
        } else if op.path == "/v1/openapi.json" {
            r = r.content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(
                        ObjectBuilder::new()
                            .schema_type(Type::Object)
                            .description(Some("An OpenAPI 3.1 document."))
                            .build(),
                    ))
                    .build(),
            );
        }
        for (name, description) in a.headers {
            r = r.header(*name, string_header(description));
        }
        out.insert(a.status, r.build());
    }
    for (status, codes) in errors {
        if out.contains_key(&status) {
            continue;
        }
        let list = codes
            .iter()
            .map(|c| format!("`{c}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut r = ResponseBuilder::new()
            .description(format!("Error: {list}."))
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(error_schema(&codes)))
                    .build(),
            );
        if status == 429 || status == 503 {
            r = r.header(RETRY_AFTER.0, string_header(RETRY_AFTER.1));
        }
        out.insert(status, r.build());
    }
    out
}

fn string_header(description: &str) -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(ObjectBuilder::new().schema_type(Type::String))
        .description(Some(description))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> serde_json::Value {
        serde_json::to_value(document()).unwrap()
    }

    /// `(METHOD, path)` of every route `routes/mod.rs` registers: `.route("/p", web::get()…)`
    /// and `web::resource("/p").route(web::post()…)`.
    fn registered_routes() -> Vec<(String, String)> {
        let src = include_str!("routes/mod.rs");
        let mut marks: Vec<(usize, bool)> = src
            .match_indices(".route(")
            .map(|(i, _)| (i, true))
            .chain(
                src.match_indices("web::resource(\"")
                    .map(|(i, _)| (i, false)),
            )
            .collect();
        marks.sort();
        let literal = |s: &str| -> String { s.split('"').nth(1).unwrap().to_string() };
        let method = |s: &str| -> String {
            let at = s.find("web::").unwrap() + 5;
            let end = s[at..].find('(').unwrap();
            s[at..at + end].to_uppercase()
        };
        let mut resource = String::new();
        let mut out = Vec::new();
        for (i, is_route) in marks {
            let rest = &src[i..];
            if !is_route {
                resource = literal(rest);
            } else if rest[".route(".len()..].starts_with('"') {
                out.push((method(rest), literal(rest)));
            } else {
                out.push((method(rest), resource.clone()));
            }
        }
        out
    }

    #[test]
    fn the_parser_sees_the_route_table() {
        let routes = registered_routes();
        assert!(routes.len() >= 14, "{routes:?}");
        assert!(routes.contains(&("POST".into(), "/v1/notifications".into())));
        assert!(routes.contains(&("GET".into(), "/v1/notifications".into())));
        assert!(routes.contains(&("GET".into(), "/metrics".into())));
        assert!(routes.contains(&("POST".into(), "/v1/users/{user_id}/revoke".into())));
    }

    /// Adding a route to routes/mod.rs without documenting it here (or listing it in
    /// `EXCLUDED`) fails this test; so does documenting a route that does not exist.
    #[test]
    fn every_registered_route_is_documented_or_deliberately_excluded() {
        let doc = doc();
        let routes = registered_routes();
        for (method, path) in &routes {
            let excluded = EXCLUDED.iter().any(|(m, p, _)| m == method && p == path);
            let documented = doc["paths"][path][method.to_lowercase()].is_object();
            assert!(
                documented != excluded,
                "{method} {path}: documented {documented}, excluded {excluded}; add it to \
                 OPERATIONS in openapi.rs (or to EXCLUDED, with a reason)"
            );
        }
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                let m = method.to_uppercase();
                assert!(
                    routes.iter().any(|(rm, rp)| *rm == m && rp == path),
                    "{m} {path} is documented but routes/mod.rs has no such route"
                );
            }
        }
        let description = doc["info"]["description"].as_str().unwrap();
        for (m, p, _) in EXCLUDED {
            assert!(description.contains(&format!("`{m} {p}`")), "{m} {p}");
        }
    }

    #[test]
    fn it_is_openapi_3_1_with_the_protocol_version() {
        let doc = doc();
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["info"]["version"], PROTOCOL_VERSION);
    }

    #[test]
    fn every_schema_reference_resolves() {
        let doc = doc();
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for part in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = part.split('"').next().unwrap();
            assert!(schemas.contains_key(name), "dangling $ref {name}");
        }
    }

    #[test]
    fn error_responses_carry_the_codes_their_status_maps_to() {
        let doc = doc();
        let mut seen = std::collections::BTreeSet::new();
        for op in OPERATIONS {
            for (status, codes) in error_codes_by_status(op) {
                let r = &doc["paths"][op.path][op.method.to_lowercase()]["responses"]
                    [status.to_string()];
                assert!(r.is_object(), "{} {} lacks {status}", op.method, op.path);
                for c in codes {
                    assert_eq!(c.http_status(), status);
                    assert!(
                        r.to_string().contains(&format!("\"{c}\"")),
                        "{c} in {status}"
                    );
                    seen.insert(c.as_str());
                }
            }
        }
        // Every HTTP error code is documented somewhere; the WebSocket-only ones are not.
        for c in ErrorCode::ALL {
            let ws_only = matches!(
                c,
                ErrorCode::UnknownCommand | ErrorCode::InvalidMessage | ErrorCode::InvalidState
            );
            assert_eq!(seen.contains(c.as_str()), !ws_only, "{c}");
        }
    }

    #[test]
    fn service_operations_name_their_scope_and_body_limits_are_stated() {
        let doc = doc();
        let publish = &doc["paths"]["/v1/notifications"]["post"];
        assert_eq!(publish["security"][0]["serviceKey"][0], "publish");
        assert!(publish["responses"]["413"].is_object());
        let body = publish["requestBody"]["description"].as_str().unwrap();
        assert!(body.contains("1 MiB"));
        let list = &doc["paths"]["/v1/notifications"]["get"];
        assert!(list["security"][0]["userToken"].is_array());
        assert!(list["responses"]["413"].is_null());
    }

    #[test]
    fn the_committed_document_is_current() {
        let committed = include_str!("../../../docs/openapi.json");
        assert!(
            committed == render().unwrap(),
            "docs/openapi.json is stale: run scripts/gen-openapi.sh and commit it"
        );
    }
}
