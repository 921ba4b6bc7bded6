-- Herald schema, version 1.
--
-- Invariants (see ARCHITECTURE.md):
-- * notifications.seq is per user, starts at 1 and has no gaps among committed rows: it is taken
--   from user_state.last_seq under that row's lock, which is held until commit, so seqs of one
--   user commit in seq order and a rolled-back publish gives its seq back.
-- * user_state.unread_count = count of the user's rows with read_at IS NULL, kept in the same
--   transaction as every insert and every mark-read.
-- * user_state.version increases with every change to the user's notifications.

CREATE TABLE user_state (
    user_id       text   PRIMARY KEY,
    last_seq      bigint NOT NULL DEFAULT 0 CHECK (last_seq >= 0),
    delivered_seq bigint NOT NULL DEFAULT 0 CHECK (delivered_seq >= 0),
    unread_count  bigint NOT NULL DEFAULT 0 CHECK (unread_count >= 0),
    version       bigint NOT NULL DEFAULT 0
);

CREATE TABLE notifications (
    user_id      text        NOT NULL,
    seq          bigint      NOT NULL CHECK (seq > 0),
    id           uuid        NOT NULL,
    type         text        NOT NULL,
    title        text        NOT NULL,
    body         text        NOT NULL,
    link         text,
    avatar_url   text,
    data         jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    delivered_at timestamptz,
    read_at      timestamptz,
    -- "latest page" (ORDER BY seq DESC) and "everything after seq N" both walk this index.
    PRIMARY KEY (user_id, seq),
    CONSTRAINT notifications_id_key UNIQUE (id)
);

-- Unread pages and mark-all-read walk only unread rows.
CREATE INDEX notifications_unread_idx ON notifications (user_id, seq) WHERE read_at IS NULL;
-- Marking delivered touches only rows not yet delivered.
CREATE INDEX notifications_undelivered_idx ON notifications (user_id, seq) WHERE delivered_at IS NULL;

-- A retried publish with the same idempotency key returns the stored response.
CREATE TABLE publish_idempotency (
    key          text        PRIMARY KEY,
    request_hash bytea       NOT NULL,
    response     jsonb       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX publish_idempotency_created_idx ON publish_idempotency (created_at);
