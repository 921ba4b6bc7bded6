-- Herald schema, version 4: the inbox lifecycle (seen watermark, archive).
--
-- Invariants (see ARCHITECTURE.md, "The inbox lifecycle"):
-- * user_state.seen_seq is the user's seen watermark: every notification with
--   seq <= seen_seq has been shown in a visible tab. It only ever rises (GREATEST) and never
--   passes last_seq. A notification counts as seen iff seq <= seen_seq OR read_at IS NOT NULL
--   (reading implies seen; the watermark is not raised by a read).
-- * notifications.archived_at is set while the notification is archived. Archiving also
--   reads it (read_at is set if it was NULL), so user_state.unread_count keeps its meaning
--   from version 1: the number of the user's rows with read_at IS NULL. Deleted rows are gone
--   (no tombstone): catch-up skips their seqs explicitly (see docs/protocol.md).
-- * Every change to seen_seq or archived_at bumps user_state.version, under the user's
--   user_state row lock (the same lock order as every other writer).

ALTER TABLE user_state ADD COLUMN seen_seq bigint NOT NULL DEFAULT 0 CHECK (seen_seq >= 0);

ALTER TABLE notifications ADD COLUMN archived_at timestamptz;

-- The archived list walks only archived rows. A publish inserts rows with archived_at NULL,
-- which a partial index does not hold: no extra work on the publish path.
CREATE INDEX notifications_archived_idx ON notifications (user_id, seq) WHERE archived_at IS NOT NULL;
