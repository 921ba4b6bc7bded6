//! The offline fallback's statements (see `migrations/0005_fallback.sql` and
//! [`crate::Store::fallback_plan`]). None of them touches a `user_state` row for writing, so
//! they never wait on a publish; cursor rows are locked in `user_id COLLATE "C"` order.

/// "Seen" for the fallback: read, or at or below the user's seen watermark (`us` is the
/// user's `user_state` row, `n` the notification).
macro_rules! seen {
    () => {
        "(n.read_at IS NOT NULL OR n.seq <= us.seen_seq)"
    };
}

/// `$1` limit. Users with rows after their cursor that are new since the last planning, or
/// whose first waiting row is due; the least recently planned first (never planned: first of
/// all), so a limit's worth of busy users cannot starve the rest. A user without a cursor row
/// starts at 0.
pub const USERS_TO_PLAN: &str = "SELECT us.user_id FROM user_state us \
     LEFT JOIN fallback_cursor fc ON fc.user_id = us.user_id \
     WHERE us.last_seq > coalesce(fc.fallback_seq, 0) \
       AND (us.last_seq > coalesce(fc.planned_seq, 0) OR fc.next_due <= now()) \
     ORDER BY fc.planned_at ASC NULLS FIRST \
     LIMIT $1";

/// `$1` users: a cursor row for each that has none.
pub const CURSOR_ENSURE: &str = "INSERT INTO fallback_cursor (user_id) \
     SELECT unnest($1::text[]) ON CONFLICT DO NOTHING";

/// `$1` users: locks the cursor rows no other planner holds, with the user's last seq and
/// the transaction's time.
pub const CURSOR_LOCK: &str = "SELECT fc.user_id, fc.fallback_seq, us.last_seq, now() AS now \
     FROM fallback_cursor fc JOIN user_state us ON us.user_id = fc.user_id \
     WHERE fc.user_id = ANY($1::text[]) \
     ORDER BY fc.user_id COLLATE \"C\" FOR UPDATE OF fc SKIP LOCKED";

/// `$1` users, `$2` their cursors, `$3` rows per user: the rows after each cursor, in seq order.
pub const ROWS_AFTER_CURSOR: &str = concat!(
    "SELECT c.user_id, n.seq, n.id, n.type, n.created_at, n.fallback, ",
    seen!(),
    " AS seen FROM unnest($1::text[], $2::bigint[]) AS c(user_id, after_seq) \
     JOIN user_state us ON us.user_id = c.user_id \
     CROSS JOIN LATERAL (SELECT seq, id, type, created_at, read_at, fallback FROM notifications x \
       WHERE x.user_id = c.user_id AND x.seq > c.after_seq ORDER BY x.seq LIMIT $3) n \
     ORDER BY c.user_id, n.seq"
);

/// `$1` ids, `$2` channels, `$3` users, `$4` seqs, `$5` first due times: the jobs (due now,
/// or scheduled for later when the planner's page was full); a repeat is ignored.
pub const JOBS_CREATE: &str = "INSERT INTO fallback_jobs \
     (notification_id, channel, user_id, seq, next_attempt_at) \
     SELECT j.id, j.channel, j.user_id, j.seq, j.at \
     FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bigint[], $5::timestamptz[]) \
       AS j(id, channel, user_id, seq, at) \
     ON CONFLICT DO NOTHING";

/// `$1` users, `$2` new cursors, `$3` planned seqs, `$4` next due times (NULL: none waits).
pub const CURSOR_ADVANCE: &str = "UPDATE fallback_cursor fc SET \
       fallback_seq = GREATEST(fc.fallback_seq, u.advance), \
       planned_seq = GREATEST(fc.planned_seq, u.planned), \
       next_due = u.next_due, planned_at = now() \
     FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::timestamptz[]) \
       AS u(user_id, advance, planned, next_due) \
     WHERE fc.user_id = u.user_id";

/// `$1` limit, `$2` lease (ms), `$3` node id. Claims due pending jobs: one claim (the fence of
/// this claim's outcome) and one attempt more, and due again when the lease runs out (a node
/// that dies mid-send loses nothing).
pub const JOBS_CLAIM: &str = "WITH c AS ( \
       SELECT notification_id, channel FROM fallback_jobs \
       WHERE state = 'pending' AND next_attempt_at <= now() \
       ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED) \
     UPDATE fallback_jobs j SET attempts = j.attempts + 1, claims = j.claims + 1, \
       next_attempt_at = now() + $2::bigint * interval '1 millisecond', \
       lease_owner = $3, updated_at = now() \
     FROM c WHERE j.notification_id = c.notification_id AND j.channel = c.channel \
     RETURNING j.notification_id, j.channel, j.user_id, j.attempts, j.claims";

/// `$1` notification ids: each with its seen state, the user's preferences and contact.
pub const JOB_DETAILS: &str = concat!(
    "SELECT n.id, n.user_id, n.seq, n.type, n.title, n.body, n.link, n.avatar_url, n.data, \
       n.created_at, n.read_at, n.archived_at, NULL::timestamptz AS delivered_at, n.fallback, ",
    seen!(),
    " AS seen, p.prefs, ct.email, ct.locale \
     FROM notifications n JOIN user_state us ON us.user_id = n.user_id \
     LEFT JOIN user_preferences p ON p.user_id = n.user_id \
     LEFT JOIN user_contacts ct ON ct.user_id = n.user_id \
     WHERE n.id = ANY($1::uuid[])"
);

/// `$1` id, `$2` channel, `$3` the claim that ends (a later claim wins), `$4` new state,
/// `$5` next attempt (NULL: unchanged), `$6` error, `$7` attempts to give back (1 for a
/// deferral that was no attempt, else 0).
pub const JOB_FINISH: &str = "UPDATE fallback_jobs SET state = $4, \
       next_attempt_at = coalesce($5, next_attempt_at), last_error = $6, \
       attempts = attempts - $7, lease_owner = NULL, updated_at = now() \
     WHERE notification_id = $1 AND channel = $2 AND claims = $3 AND state = 'pending'";

/// `$1` age (ms), `$2` limit: deletes up to `$2` finished jobs (sent, cancelled, dead) last
/// changed longer ago than `$1`; walks `fallback_jobs_done_idx`. Only jobs at or below their
/// user's fallback cursor: a row past it may be planned again (it sits behind a waiting row),
/// and the job row is what makes that repeat a no-op instead of a second send.
pub const JOBS_PURGE: &str = "DELETE FROM fallback_jobs j USING ( \
       SELECT f.notification_id, f.channel FROM fallback_jobs f \
       JOIN fallback_cursor c ON c.user_id = f.user_id AND f.seq <= c.fallback_seq \
       WHERE f.state <> 'pending' AND f.updated_at < now() - $1::bigint * interval '1 millisecond' \
       LIMIT $2) d \
     WHERE j.notification_id = d.notification_id AND j.channel = d.channel";

/// `$1` user: the stored preferences JSON.
pub const PREFS_GET: &str = "SELECT prefs FROM user_preferences WHERE user_id = $1";

/// `$1` user, `$2` preferences JSON.
pub const PREFS_PUT: &str = "INSERT INTO user_preferences (user_id, prefs) VALUES ($1, $2) \
     ON CONFLICT (user_id) DO UPDATE SET prefs = EXCLUDED.prefs, updated_at = now()";

/// `$1` user, `$2` email, `$3` locale.
pub const CONTACT_PUT: &str =
    "INSERT INTO user_contacts (user_id, email, locale) VALUES ($1, $2, $3) \
     ON CONFLICT (user_id) DO UPDATE SET email = EXCLUDED.email, locale = EXCLUDED.locale, \
       updated_at = now()";

/// `$1` user.
pub const CONTACT_GET: &str = "SELECT email, locale FROM user_contacts WHERE user_id = $1";
