//! The email channel's statements (see `migrations/0006_email.sql`).

/// `$1` user: when the user was last emailed.
pub const DIGEST_LAST_SENT: &str = "SELECT last_sent_at FROM email_digests WHERE user_id = $1";

/// `$1` user, `$2` window (ms): takes the user's email slot now, unless the user was emailed
/// less than a window ago (then no row comes back). The row lock makes it one winner.
pub const DIGEST_RESERVE: &str = "INSERT INTO email_digests AS d (user_id, last_sent_at) \
     VALUES ($1, now()) \
     ON CONFLICT (user_id) DO UPDATE SET last_sent_at = now() \
     WHERE d.last_sent_at <= now() - $2::bigint * interval '1 millisecond' \
     RETURNING last_sent_at";

/// `$1` user, `$2` the reserved time, `$3` the time before it (NULL: none): gives a slot
/// back after a failed send, unless another send took it since.
pub const DIGEST_RELEASE: &str = "UPDATE email_digests SET last_sent_at = $3 \
     WHERE user_id = $1 AND last_sent_at = $2 AND $3::timestamptz IS NOT NULL";
pub const DIGEST_RELEASE_NEW: &str =
    "DELETE FROM email_digests WHERE user_id = $1 AND last_sent_at = $2";

/// `$1` address (lower case): its suppression reason, if suppressed.
pub const SUPPRESSION_GET: &str = "SELECT reason FROM email_suppressions WHERE email = $1";

/// `$1` address (lower case), `$2` reason, `$3` source: adds it (a repeat keeps the first).
pub const SUPPRESSION_ADD: &str = "INSERT INTO email_suppressions (email, reason, source) \
     VALUES ($1, $2, $3) ON CONFLICT (email) DO NOTHING";

/// `$1` address (lower case).
pub const SUPPRESSION_REMOVE: &str = "DELETE FROM email_suppressions WHERE email = $1";

/// `$1` after this address (exclusive, '' for the first page), `$2` limit: by address.
pub const SUPPRESSION_LIST: &str = "SELECT email, reason, source, created_at \
     FROM email_suppressions WHERE email COLLATE \"C\" > $1 ORDER BY email COLLATE \"C\" LIMIT $2";

/// `$1` user, `$2` scope (a type, or `*`): turns email off for it in the user's preferences
/// (one-click unsubscribe), keeping everything else the user set. A type's own setting wins
/// over `*`, so the scope `*` also turns email off in every type the user set explicitly (a
/// saved settings form names every type); a type scope turns off only that type.
pub const PREFS_EMAIL_OFF: &str = "INSERT INTO user_preferences (user_id, prefs) \
     VALUES ($1, jsonb_build_object('channels', jsonb_build_object($2::text, '{\"email\": false}'::jsonb))) \
     ON CONFLICT (user_id) DO UPDATE SET prefs = user_preferences.prefs || jsonb_build_object('channels', \
         (SELECT coalesce(jsonb_object_agg(e.k, CASE WHEN $2::text = '*' OR e.k = $2::text \
                   THEN e.v || '{\"email\": false}'::jsonb ELSE e.v END), '{}'::jsonb) \
          FROM jsonb_each(coalesce(user_preferences.prefs -> 'channels', '{}'::jsonb)) AS e(k, v)) \
         || jsonb_build_object($2::text, \
              coalesce(user_preferences.prefs -> 'channels' -> $2::text, '{}'::jsonb) \
              || '{\"email\": false}'::jsonb)), \
       updated_at = now() \
     RETURNING prefs";
