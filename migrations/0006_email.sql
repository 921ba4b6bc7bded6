-- Herald schema, version 6: the email fallback channel (docs/channels.md).
--
-- email_digests holds when each user was last emailed: the digest sends at most one email
-- per user per window. A worker reserves the slot (sets last_sent_at) before it sends, with
-- a conditional update, so two nodes never both email a user within one window; a failed
-- send gives the slot back.
--
-- email_suppressions is the suppression list: addresses that bounced permanently (an SMTP
-- 5xx at send time) or were added by a team from its provider's bounce reports (service-key
-- API /v1/email/suppressions). No email goes to them; their jobs are cancelled.

CREATE TABLE email_digests (
    user_id      text        PRIMARY KEY,
    last_sent_at timestamptz NOT NULL
);

CREATE TABLE email_suppressions (
    -- Lower-cased: the same mailbox however a contact spelled it.
    email      text        PRIMARY KEY CHECK (email = lower(email)),
    reason     text        NOT NULL,
    -- 'bounce' (an SMTP 5xx at send time) or 'api'.
    source     text        NOT NULL CHECK (source IN ('bounce', 'api')),
    created_at timestamptz NOT NULL DEFAULT now()
);
