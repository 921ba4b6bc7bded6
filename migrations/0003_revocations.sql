-- Herald schema, version 3: session revocation (POST /v1/users/{user_id}/revoke).
--
-- One row per user: the latest cut-off. A token of the user whose `iat` is earlier than
-- revoked_before (or that has no `iat`) is refused. A later revocation never lowers the
-- cut-off (GREATEST in REVOKE). revoked_at is when the row last changed: gateway nodes read
-- the rows changed since the last they saw (REVOCATIONS_SINCE), and rows older than the
-- retention (HERALD_REVOCATION_RETENTION_HOURS) are purged (PURGE_REVOCATIONS).

CREATE TABLE revocations (
    user_id        text        PRIMARY KEY,
    revoked_before timestamptz NOT NULL,
    revoked_at     timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX revocations_revoked_at ON revocations (revoked_at);
