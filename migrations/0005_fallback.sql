-- Herald schema, version 5: offline fallback (webhook, email, push), preferences, contacts.
--
-- Nothing here is written by a publish. Pending fallbacks are derived: a user's notifications
-- after fallback_cursor.fallback_seq are the ones the worker has not planned yet. The worker
-- reads them, and for each one that is due (created_at + its type's fallback_after) and not
-- seen (read, or seq <= user_state.seen_seq), creates one fallback_jobs row per channel; the
-- cursor then moves past every row that needs nothing more. A user with no cursor row starts
-- at 0; users that exist when this migration runs start at their last_seq, so enabling
-- fallback never sends for old notifications.
--
-- fallback_jobs is the outbox: one row per (notification, channel), claimed by any node with
-- FOR UPDATE SKIP LOCKED. Claiming pushes next_attempt_at one lease ahead, so the job of a
-- node that dies mid-send is due again when the lease runs out and another node takes it.

CREATE TABLE fallback_cursor (
    user_id      text        PRIMARY KEY,
    -- Every notification of the user with seq <= fallback_seq needs nothing more.
    fallback_seq bigint      NOT NULL DEFAULT 0 CHECK (fallback_seq >= 0),
    -- The last seq the planner read: a user_state.last_seq above it means new rows to plan.
    planned_seq  bigint      NOT NULL DEFAULT 0 CHECK (planned_seq >= 0),
    -- When the first row still waiting falls due (NULL: none waits).
    next_due     timestamptz
);

INSERT INTO fallback_cursor (user_id, fallback_seq, planned_seq)
SELECT user_id, last_seq, last_seq FROM user_state;

CREATE TABLE fallback_jobs (
    notification_id uuid        NOT NULL,
    channel         text        NOT NULL CHECK (channel IN ('webhook', 'email', 'push')),
    user_id         text        NOT NULL,
    seq             bigint      NOT NULL,
    -- pending → sent | cancelled (seen or read first, muted, no address) | dead (N failures)
    state           text        NOT NULL DEFAULT 'pending'
                                CHECK (state IN ('pending', 'sent', 'cancelled', 'dead')),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    lease_owner     text,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (notification_id, channel)
);

-- The claim walks only pending jobs, by due time.
CREATE INDEX fallback_jobs_due_idx ON fallback_jobs (next_attempt_at) WHERE state = 'pending';

-- GET/PUT /v1/me/preferences: the JSON of herald_core::fallback::Preferences.
CREATE TABLE user_preferences (
    user_id    text        PRIMARY KEY,
    prefs      jsonb       NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- PUT /v1/users/{user_id}/contact (service key): where email goes, and in which language.
CREATE TABLE user_contacts (
    user_id    text        PRIMARY KEY,
    email      text,
    locale     text,
    updated_at timestamptz NOT NULL DEFAULT now()
);
