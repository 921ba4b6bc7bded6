-- Herald schema, version 2: first delivery is recorded as marks, not as per-row updates.
--
-- Before, every delivered notification was updated once more (delivered_at), which on
-- PostgreSQL means a second heap tuple and a new entry in every index of the table: about
-- half of the database's work per notification. Now a delivery flush writes one row per user
-- into delivery_marks: "every row of this user with seq <= seq that was not delivered yet was
-- first delivered at delivered_at". A row's delivered_at is the time of the first mark at or
-- above its seq (marks of one user rise in both seq and time, because a mark is written only
-- when it raises user_state.delivered_seq, under that row's lock). The notifications table is
-- now written once per row, plus once more when it is read.
--
-- Invariant: a row is delivered iff a mark with seq >= its seq exists iff its seq <=
-- user_state.delivered_seq.

CREATE TABLE delivery_marks (
    user_id      text        NOT NULL,
    seq          bigint      NOT NULL CHECK (seq > 0),
    delivered_at timestamptz NOT NULL,
    PRIMARY KEY (user_id, seq)
);

-- Exact backfill: one mark per run of rows that share a delivered_at, at the run's last seq.
INSERT INTO delivery_marks (user_id, seq, delivered_at)
SELECT user_id, seq, delivered_at
FROM (
    SELECT user_id, seq, delivered_at,
           lead(delivered_at) OVER (PARTITION BY user_id ORDER BY seq) AS next_at
    FROM notifications
    WHERE delivered_at IS NOT NULL
) r
WHERE next_at IS DISTINCT FROM delivered_at;

DROP INDEX notifications_undelivered_idx;
ALTER TABLE notifications DROP COLUMN delivered_at;

-- user_state rows are updated on every publish, read and delivery: leave room on each page so
-- those updates stay HOT (same page, no index entry). Applies to pages written from now on.
ALTER TABLE user_state SET (fillfactor = 50);
