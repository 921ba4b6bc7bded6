-- Herald schema, version 7: Web Push subscriptions (the push fallback channel).
--
-- One row per browser subscription (the PushSubscription a browser hands out): where the
-- push service accepts messages for it (endpoint) and the keys the payload is encrypted to
-- (p256dh: the browser's P-256 public key, 65 bytes uncompressed; auth: its 16-byte secret).
-- POST /v1/me/push-subscriptions stores one; a user holds at most a bounded number (the
-- oldest is replaced); a push service answering 404 or 410 removes it.

CREATE TABLE push_subscriptions (
    id         uuid        PRIMARY KEY,
    user_id    text        NOT NULL,
    -- Unique: a browser's subscription belongs to one user; registering it again (another
    -- user signed in on the same browser) moves it.
    endpoint   text        NOT NULL UNIQUE,
    p256dh     bytea       NOT NULL CHECK (octet_length(p256dh) = 65),
    auth       bytea       NOT NULL CHECK (octet_length(auth) = 16),
    user_agent text,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX push_subscriptions_user_idx ON push_subscriptions (user_id, created_at);
