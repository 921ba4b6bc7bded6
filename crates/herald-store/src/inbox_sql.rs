//! The statements of the inbox lifecycle (`migrations/0004_inbox.sql`), built per action and
//! target from fixed fragments (no caller text is ever spliced in: every value is a
//! parameter). Public so tests can `EXPLAIN` the real text.
//!
//! Lock order: every statement here runs after [`crate::sql::LOCK_USER_STATE`] locked the
//! user's `user_state` row (the retention purge locks its users' rows in byte order first),
//! like every other writer.

use herald_protocol::inbox::InboxAction;

/// How an action selects notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By {
    /// `$1` user, `$2` ids (`uuid[]`).
    Ids,
    /// `$1` user, `$2` watermark (`seq <= $2`), `$3` type or NULL, `$4` archived or NULL,
    /// `$5` unread or NULL, `$6` limit (newest first).
    Filter,
}

fn selection(by: By) -> &'static str {
    match by {
        By::Ids => "n.user_id = $1 AND n.id = ANY($2::uuid[])",
        By::Filter => {
            "n.user_id = $1 AND n.seq <= $2 AND ($3::text IS NULL OR n.type = $3) \
             AND ($4::bool IS NULL OR (n.archived_at IS NOT NULL) = $4) \
             AND ($5::bool IS NULL OR (n.read_at IS NULL) = $5)"
        }
    }
}

/// The rows an action would change (a row already in the target state is left alone, so
/// every action is idempotent). Archived rows are never unread: `unread` skips them.
fn applicable(action: InboxAction) -> &'static str {
    match action {
        InboxAction::Archive => "n.archived_at IS NULL",
        InboxAction::Unarchive => "n.archived_at IS NOT NULL",
        InboxAction::Read => "n.read_at IS NULL",
        InboxAction::Unread => "n.read_at IS NOT NULL AND n.archived_at IS NULL",
        InboxAction::Delete => "true",
    }
}

/// The change, over the selected rows `sel(seq, was_unread)`, returning `id, seq, delta` (the
/// change to the unread count for that row).
fn change(action: InboxAction) -> &'static str {
    match action {
        InboxAction::Archive => {
            "UPDATE notifications n SET archived_at = now(), read_at = COALESCE(n.read_at, now()) \
             FROM sel WHERE n.user_id = $1 AND n.seq = sel.seq \
             RETURNING n.id, n.seq, CASE WHEN sel.was_unread THEN -1 ELSE 0 END AS delta"
        }
        InboxAction::Unarchive => {
            "UPDATE notifications n SET archived_at = NULL \
             FROM sel WHERE n.user_id = $1 AND n.seq = sel.seq \
             RETURNING n.id, n.seq, 0 AS delta"
        }
        InboxAction::Read => {
            "UPDATE notifications n SET read_at = now() \
             FROM sel WHERE n.user_id = $1 AND n.seq = sel.seq \
             RETURNING n.id, n.seq, -1 AS delta"
        }
        InboxAction::Unread => {
            "UPDATE notifications n SET read_at = NULL \
             FROM sel WHERE n.user_id = $1 AND n.seq = sel.seq \
             RETURNING n.id, n.seq, 1 AS delta"
        }
        InboxAction::Delete => {
            "DELETE FROM notifications n USING sel WHERE n.user_id = $1 AND n.seq = sel.seq \
             RETURNING n.id, n.seq, CASE WHEN sel.was_unread THEN -1 ELSE 0 END AS delta"
        }
    }
}

/// Applies `action` to the selected rows and moves the user's counters in the same
/// statement: `unread_count` by the rows' deltas, `version` up by one when anything changed.
/// Returns one row: `n` (rows changed), `ids` (ascending seq; NULL when none),
/// `unread_count`, `version` (NULL when nothing changed).
pub fn apply(action: InboxAction, by: By) -> String {
    let limit = match by {
        By::Ids => "",
        By::Filter => " ORDER BY n.seq DESC LIMIT $6",
    };
    format!(
        "WITH sel AS (
    SELECT n.seq, (n.read_at IS NULL) AS was_unread FROM notifications n
    WHERE {sel} AND {app}{limit} FOR UPDATE
), u AS (
    {change}
), c AS (
    SELECT count(*)::bigint AS n, COALESCE(sum(delta), 0)::bigint AS d,
           array_agg(id ORDER BY seq) AS ids
    FROM u
), s AS (
    UPDATE user_state SET unread_count = user_state.unread_count + c.d,
                          version = user_state.version + 1
    FROM c WHERE user_state.user_id = $1 AND c.n > 0
    RETURNING user_state.unread_count, user_state.version
)
SELECT c.n, c.ids, s.unread_count, s.version FROM c LEFT JOIN s ON true",
        sel = selection(by),
        app = applicable(action),
        change = change(action),
    )
}

/// After [`apply`] with [`By::Filter`], in the same transaction: whether rows it would
/// change remain (`$1`..`$5` as there).
pub fn remaining(action: InboxAction) -> String {
    format!(
        "SELECT EXISTS (SELECT 1 FROM notifications n WHERE {sel} AND {app}) AS more",
        sel = selection(By::Filter),
        app = applicable(action),
    )
}

/// `$1` user, `$2` before (exclusive), `$3` type or NULL, `$4` archived or NULL, `$5` unread
/// only, `$6` limit: a filtered history page, newest first. Walks the primary key backwards
/// from `$2` (or the archived index for `archived = true`).
pub const FILTERED_PAGE: &str = concat!(
    "SELECT ",
    crate::sql::notification_columns!(),
    " FROM notifications WHERE user_id = $1 AND seq < $2 \
     AND ($3::text IS NULL OR type = $3) \
     AND ($4::bool IS NULL OR (archived_at IS NOT NULL) = $4) \
     AND (NOT $5::bool OR read_at IS NULL) \
     ORDER BY seq DESC LIMIT $6"
);

/// Like [`FILTERED_PAGE`] for archived rows only (`$4` is always true): walks the partial
/// archived index.
pub const ARCHIVED_PAGE: &str = concat!(
    "SELECT ",
    crate::sql::notification_columns!(),
    " FROM notifications WHERE user_id = $1 AND seq < $2 AND archived_at IS NOT NULL \
     AND ($3::text IS NULL OR type = $3) AND ($4::bool IS NOT NULL) \
     AND (NOT $5::bool OR read_at IS NULL) \
     ORDER BY seq DESC LIMIT $6"
);

/// The counts behind each filter, per type: `$1` user. Reads every row of the user (one
/// primary-key range), so it costs in proportion to the user's stored notifications.
pub const COUNTS: &str = "SELECT type,
       count(*) FILTER (WHERE archived_at IS NULL)::bigint AS inbox,
       count(*) FILTER (WHERE read_at IS NULL)::bigint AS unread,
       count(*) FILTER (WHERE archived_at IS NOT NULL)::bigint AS archived
FROM notifications WHERE user_id = $1 GROUP BY type";

/// Retention, step 1 (no locks): the next `$5` rows after the scope's cursor `$6`, oldest
/// first, through the id index (ids are UUIDv7: `id < $1` bounds the range by time), each
/// with whether it is in the scope (`$3` one type, or NULL for every type not in `$4`,
/// `text[]`) and older than `$2` seconds. A scope's cursor moves past every row it has
/// looked at, so a rare type's purge does not walk the other types' rows again on every pass.
pub const PURGE_SCAN: &str = "SELECT id, user_id, seq,
       (($3::text IS NULL OR type = $3) AND NOT (type = ANY($4::text[]))) AS in_scope,
       created_at < now() - make_interval(secs => $2::float8) AS old
FROM notifications WHERE id > $6 AND id < $1
ORDER BY id LIMIT $5";

/// Retention, step 2: locks the candidates' users' `user_state` rows in byte order (the
/// global lock order). `$1` users.
pub const PURGE_LOCK_USERS: &str = "SELECT user_id FROM user_state WHERE user_id = ANY($1::text[])
ORDER BY user_id COLLATE \"C\" FOR UPDATE";

/// Retention, step 3: deletes the candidates (`$1` users, `$2` seqs, parallel) and moves each
/// user's counters; one row per user changed: `user_id, ids, unread_count, version`.
pub const PURGE_DELETE: &str = "WITH d AS (
    DELETE FROM notifications n USING unnest($1::text[], $2::bigint[]) AS t(user_id, seq)
    WHERE n.user_id = t.user_id AND n.seq = t.seq
    RETURNING n.user_id, n.id, n.seq, (n.read_at IS NULL) AS unread
), agg AS (
    SELECT user_id, count(*) FILTER (WHERE unread)::bigint AS u, array_agg(id ORDER BY seq) AS ids
    FROM d GROUP BY user_id
)
UPDATE user_state us SET unread_count = us.unread_count - agg.u, version = us.version + 1
FROM agg WHERE us.user_id = agg.user_id
RETURNING us.user_id, agg.ids, us.unread_count, us.version";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_statement_names_only_parameters_it_uses() {
        for a in InboxAction::ALL {
            let ids = apply(a, By::Ids);
            assert!(ids.contains("$2") && !ids.contains("$3"), "{ids}");
            let f = apply(a, By::Filter);
            assert!(f.contains("$6") && !f.contains("$7"), "{f}");
            let r = remaining(a);
            assert!(r.contains("$5") && !r.contains("$6"), "{r}");
        }
    }
}
