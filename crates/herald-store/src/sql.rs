//! Every SQL statement Herald runs. Public so tests can `EXPLAIN` the real text.
//!
//! Statements that lock several `user_state` rows order them by `user_id COLLATE "C"` (byte
//! order, the same as Rust's `str` order): see the crate docs on lock order.

/// Stored columns of a notification row; with `delivered_at` (below) they are what
/// [`crate`]'s row mapping reads by name.
macro_rules! stored_columns {
    () => {
        "id, user_id, seq, type, title, body, link, avatar_url, data, created_at, read_at, archived_at"
    };
}

/// The columns a `SELECT ... FROM notifications` returns: the stored ones plus `delivered_at`,
/// derived from the first delivery mark at or above the row's seq (see
/// `migrations/0002_delivery_marks.sql`). One probe of `delivery_marks_pkey` per row.
macro_rules! notification_columns {
    () => {
        concat!(
            $crate::sql::stored_columns!(),
            ", (SELECT d.delivered_at FROM delivery_marks d \
             WHERE d.user_id = notifications.user_id AND d.seq >= notifications.seq \
             ORDER BY d.seq LIMIT 1) AS delivered_at"
        )
    };
}

pub(crate) use notification_columns;
pub(crate) use stored_columns;

pub const NOTIFICATION_COLUMNS: &str = notification_columns!();

pub const PING: &str = "SELECT 1";

pub const NOW: &str = "SELECT now() AS now";

/// The migrations table, and the columns later versions of the runner added (a node that
/// predates them still inserts `(version, name, applied_at)` and gets the defaults).
pub const CREATE_SCHEMA_MIGRATIONS: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version    int PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE schema_migrations
    ADD COLUMN IF NOT EXISTS checksum text,
    ADD COLUMN IF NOT EXISTS breaks_older_nodes boolean NOT NULL DEFAULT false";

/// Every recorded migration. `checksum` is NULL for rows an older runner wrote.
pub const MIGRATIONS_RECORDED: &str =
    "SELECT version, name, checksum, breaks_older_nodes FROM schema_migrations ORDER BY version";

pub const MIGRATION_APPLIED: &str = "SELECT 1 FROM schema_migrations WHERE version = $1";

pub const MIGRATION_RECORD: &str = "INSERT INTO schema_migrations \
     (version, name, applied_at, checksum, breaks_older_nodes) VALUES ($1, $2, now(), $3, $4)";

/// Records the checksum of a row an older runner wrote without one.
pub const MIGRATION_BACKFILL_CHECKSUM: &str =
    "UPDATE schema_migrations SET checksum = $2 WHERE version = $1 AND checksum IS NULL";

/// `$1` key, `$2` request hash. Returns a row iff this transaction now owns the key; blocks
/// while another open transaction holds it.
pub const IDEMPOTENCY_CLAIM: &str =
    "INSERT INTO publish_idempotency (key, request_hash, response) \
     VALUES ($1, $2, '{}'::jsonb) ON CONFLICT (key) DO NOTHING RETURNING key";

pub const IDEMPOTENCY_LOOKUP: &str =
    "SELECT request_hash, response FROM publish_idempotency WHERE key = $1";

pub const IDEMPOTENCY_STORE: &str = "UPDATE publish_idempotency SET response = $2 WHERE key = $1";

/// One statement for one or many publishes (group commit: many unkeyed publishes share one
/// statement, one transaction and one WAL flush; a keyed publish runs it alone inside its
/// idempotency transaction). `$1` request index per row (0-based, `int[]`), `$2` recipient
/// per row (`text[]`), `$3` id per row (`uuid[]`, UUIDv7 from the caller so the id index is
/// appended at its right edge); then one element per request: `$4` type, `$5` title, `$6`
/// body, `$7` link, `$8` avatar_url, `$9` data (`jsonb[]`), `$10` fallback (`jsonb[]`, NULL
/// unless the call set `priority` or `fallback`). A user named by k requests gets k
/// consecutive seqs in request order; `unread_count` and `version` are returned as they stood
/// just after each row. `user_state` rows are locked in byte order (`COLLATE "C"`). Returns
/// only what the caller does not already hold: `id, user_id, seq, created_at, req,
/// unread_count, version` per row (the content is the caller's own; shipping it back cost
/// PostgreSQL a jsonb-to-text conversion and the socket a few hundred bytes per row).
pub const PUBLISH_BATCH: &str = "WITH input AS (
    SELECT t.req, t.user_id, t.id FROM unnest($1::int[], $2::text[], $3::uuid[]) AS t(req, user_id, id)
), counts AS (
    SELECT user_id, count(*)::bigint AS n FROM input GROUP BY user_id
), s AS (
    INSERT INTO user_state AS us (user_id, last_seq, unread_count, version)
    SELECT user_id, n, n, n FROM counts ORDER BY user_id COLLATE \"C\"
    ON CONFLICT (user_id) DO UPDATE
        SET last_seq = us.last_seq + EXCLUDED.last_seq,
            unread_count = us.unread_count + EXCLUDED.unread_count,
            version = us.version + EXCLUDED.version
    RETURNING us.user_id, us.last_seq, us.unread_count, us.version
), numbered AS (
    SELECT i.req, i.user_id, i.id,
           row_number() OVER (PARTITION BY i.user_id ORDER BY i.req) - c.n AS k
    FROM input i JOIN counts c ON c.user_id = i.user_id
), n AS (
    INSERT INTO notifications (user_id, seq, id, type, title, body, link, avatar_url, data, fallback)
    SELECT nb.user_id, s.last_seq + nb.k, nb.id,
           ($4::text[])[nb.req + 1], ($5::text[])[nb.req + 1], ($6::text[])[nb.req + 1],
           ($7::text[])[nb.req + 1], ($8::text[])[nb.req + 1], ($9::jsonb[])[nb.req + 1],
           ($10::jsonb[])[nb.req + 1]
    FROM numbered nb JOIN s ON s.user_id = nb.user_id
    RETURNING id, user_id, seq, created_at
)
SELECT n.id, n.user_id, n.seq, n.created_at, nb.req,
       s.unread_count + nb.k AS unread_count, s.version + nb.k AS version
FROM n JOIN s ON s.user_id = n.user_id
JOIN numbered nb ON nb.user_id = n.user_id AND s.last_seq + nb.k = n.seq";

/// Users' counters (`$1` users, `text[]`): one user for most reads, many when the
/// connect-time reads of concurrent handshakes share one statement. A user missing from
/// `user_state` is missing from the result.
///
/// Large arrays and `user_state` lookups: each user is one primary-key probe under
/// `CROSS JOIN LATERAL (.. LIMIT 1)`, which the planner cannot turn into a join. The plain
/// forms (`= ANY($1)`, `JOIN unnest(..)`) get a custom plan that sequentially scans all of
/// `user_state` once the array has about a thousand elements (the cost model prices a
/// scan of 100k cached rows below a thousand probes); under load that scan was most of
/// PostgreSQL's CPU (see docs/performance.md, "Measured choices in the code").
pub const USER_STATES: &str =
    "SELECT u.user_id, u.last_seq, u.delivered_seq, u.unread_count, u.version, u.seen_seq \
     FROM unnest($1::text[]) AS t(user_id) \
     CROSS JOIN LATERAL (SELECT * FROM user_state s WHERE s.user_id = t.user_id LIMIT 1) u";

/// The reconcile safety net: of `$1` users (`text[]`) with what a node has delivered to them
/// (`$2`, `bigint[]`, parallel), those whose `last_seq` is ahead, with it. The comparison is
/// done here so a pass over thousands of up-to-date users returns (almost) nothing. One
/// primary-key probe per user, as in [`USER_STATES`].
pub const USERS_BEHIND: &str = "SELECT t.user_id, us.last_seq
FROM unnest($1::text[], $2::bigint[]) AS t(user_id, delivered)
CROSS JOIN LATERAL (SELECT s.last_seq FROM user_state s WHERE s.user_id = t.user_id LIMIT 1) us
WHERE us.last_seq > t.delivered";

/// "Everything after seq N" for one or many readers: `$1` users (`text[]`), `$2` after
/// (`bigint[]`), `$3` limit (`bigint[]`), parallel arrays. Each reader's rows come back in
/// seq order under its 1-based position `i` (a user may appear more than once). One
/// statement serves a whole reconnect storm's catch-up reads; each reader is its own LIMITed
/// index range scan on `(user_id, seq)`.
pub const AFTER_SEQS: &str = concat!(
    "SELECT t.i, n.* FROM unnest($1::text[], $2::bigint[], $3::bigint[]) \
     WITH ORDINALITY AS t(reader, after_seq, page, i) \
     CROSS JOIN LATERAL (SELECT ",
    notification_columns!(),
    " FROM notifications WHERE notifications.user_id = t.reader AND notifications.seq > t.after_seq \
     ORDER BY notifications.seq ASC LIMIT t.page) n \
     ORDER BY t.i, n.seq"
);

/// "Latest page": `$1` user, `$2` before (exclusive; `i64::MAX` for the first page), `$3` limit.
pub const LATEST_PAGE: &str = concat!(
    "SELECT ",
    notification_columns!(),
    " FROM notifications WHERE user_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3"
);

/// Like [`LATEST_PAGE`], unread rows only (walks the partial unread index).
pub const LATEST_UNREAD_PAGE: &str = concat!(
    "SELECT ",
    notification_columns!(),
    " FROM notifications WHERE user_id = $1 AND seq < $2 AND read_at IS NULL ORDER BY seq DESC LIMIT $3"
);

/// `$1` user, `$2` id.
pub const GET: &str = concat!(
    "SELECT ",
    notification_columns!(),
    " FROM notifications WHERE user_id = $1 AND id = $2"
);

/// Locks the user's counters first (lock order); `$1` user.
pub const LOCK_USER_STATE: &str = "SELECT last_seq, unread_count, version, now() AS now \
     FROM user_state WHERE user_id = $1 FOR UPDATE";

/// After [`LOCK_USER_STATE`]: marks one unread row read and decrements the counter, returning
/// a row only if it changed something. `$1` user, `$2` id.
pub const MARK_READ: &str = "WITH m AS (
    UPDATE notifications SET read_at = now()
    WHERE user_id = $1 AND id = $2 AND read_at IS NULL
    RETURNING seq, read_at
), u AS (
    UPDATE user_state SET unread_count = unread_count - 1, version = version + 1
    WHERE user_id = $1 AND EXISTS (SELECT 1 FROM m)
    RETURNING unread_count, version
)
SELECT m.seq, m.read_at, u.unread_count, u.version FROM m CROSS JOIN u";

/// Raises the seen watermark: `$1` user, `$2` seq. Locks the user's `user_state` row (the
/// only row it touches), raises `seen_seq` to `GREATEST(seen_seq, $2)` when `$2` is within
/// `last_seq` and above the watermark, and bumps `version` only then. Returns the row as it
/// stands (`changed` says whether it rose), or nothing for a user without `user_state`.
pub const MARK_SEEN: &str = "WITH cur AS (
    SELECT user_id, last_seq, seen_seq, version FROM user_state WHERE user_id = $1 FOR UPDATE
), u AS (
    UPDATE user_state us SET seen_seq = GREATEST(us.seen_seq, $2), version = us.version + 1
    FROM cur
    WHERE us.user_id = cur.user_id AND $2 > cur.seen_seq AND $2 <= cur.last_seq
    RETURNING us.seen_seq, us.version
)
SELECT cur.last_seq, COALESCE(u.seen_seq, cur.seen_seq) AS seen_seq,
       COALESCE(u.version, cur.version) AS version, (u.version IS NOT NULL) AS changed
FROM cur LEFT JOIN u ON true";

/// `$1` user, `$2` id.
pub const READ_STATUS: &str =
    "SELECT seq, read_at FROM notifications WHERE user_id = $1 AND id = $2";

/// After [`LOCK_USER_STATE`]: marks unread rows with `seq <= $2` read and takes their number
/// off the counter; returns a row only if it marked something. `$1` user, `$2` watermark.
pub const MARK_ALL_READ: &str = "WITH m AS (
    UPDATE notifications SET read_at = now()
    WHERE user_id = $1 AND seq <= $2 AND read_at IS NULL
    RETURNING 1
), c AS (
    SELECT count(*) AS n FROM m
)
UPDATE user_state SET unread_count = user_state.unread_count - c.n, version = user_state.version + 1
FROM c
WHERE user_state.user_id = $1 AND c.n > 0
RETURNING c.n AS marked, user_state.unread_count, user_state.version";

/// Forgets idempotency keys older than `$1` seconds, at most `$2` rows per call (bounded work;
/// the caller repeats while rows come back). Uses `publish_idempotency_created_idx`.
pub const PURGE_IDEMPOTENCY: &str = "DELETE FROM publish_idempotency WHERE key IN (
    SELECT key FROM publish_idempotency
    WHERE created_at < now() - make_interval(secs => $1::float8)
    ORDER BY created_at LIMIT $2
)";

/// One statement for a batch of `(user, seq)` delivery marks (`$1` users, `$2` seqs, parallel
/// arrays; a user may repeat, the highest seq wins). Locks the users' `user_state` rows in
/// lock order, raises `delivered_seq` (capped at `last_seq`) and, for each user it raised,
/// writes one `delivery_marks` row at the new seq with `now()`. A mark that raises nothing
/// writes nothing, so a user's marks rise in seq and in time.
pub const MARK_DELIVERED: &str = "WITH m AS (
    SELECT user_id, max(seq) AS seq
    FROM unnest($1::text[], $2::bigint[]) AS t(user_id, seq)
    GROUP BY user_id
), l AS (
    SELECT us.user_id, LEAST(m.seq, us.last_seq) AS seq, us.delivered_seq AS before
    FROM user_state us JOIN m ON m.user_id = us.user_id
    ORDER BY us.user_id COLLATE \"C\"
    FOR UPDATE OF us
), s AS (
    UPDATE user_state st SET delivered_seq = l.seq
    FROM l
    WHERE st.user_id = l.user_id AND l.seq > l.before
    RETURNING st.user_id, l.seq
)
INSERT INTO delivery_marks (user_id, seq, delivered_at)
SELECT user_id, seq, now() FROM s";

/// Revokes a user's sessions: `$1` user, `$2` cut-off (NULL: the statement's `now()`). Keeps
/// the later of the stored and the new cut-off and stamps `revoked_at`; returns the cut-off in
/// force.
pub const REVOKE: &str = "INSERT INTO revocations (user_id, revoked_before, revoked_at)
VALUES ($1, COALESCE($2, now()), now())
ON CONFLICT (user_id) DO UPDATE
    SET revoked_before = GREATEST(revocations.revoked_before, EXCLUDED.revoked_before),
        revoked_at = EXCLUDED.revoked_at
RETURNING revoked_before";

/// The revocations changed after `$1`, and not older than `$2` seconds (the retention).
/// Uses `revocations_revoked_at`; a gateway node runs it every refresh interval.
pub const REVOCATIONS_SINCE: &str = "SELECT user_id, revoked_before, revoked_at FROM revocations
WHERE revoked_at > GREATEST($1::timestamptz, now() - make_interval(secs => $2::float8))
ORDER BY revoked_at";

/// Deletes revocations last changed more than `$1` seconds ago (the retention).
pub const PURGE_REVOCATIONS: &str =
    "DELETE FROM revocations WHERE revoked_at < now() - make_interval(secs => $1::float8)";
