-- Herald schema, version 8: per-publish fallback, fair planning, a claim fence, pruning.
-- herald: breaks-older-nodes
-- (Nodes of the previous release would claim the email and push jobs of 0006/0007 and
-- dead-letter them, ignore notifications.fallback, and finish claims without the claims
-- fence: upgrade with a full cutover, docs/operations.md.)
--
-- * notifications.fallback: what a publish call asked for this notification's fallback
--   (herald_core::fallback::FallbackOverride as JSON: channels, after_ms, critical). NULL
--   (no default, so adding it rewrites nothing) when the call said nothing, which is the
--   common case: the publish statement passes one NULL per request.
-- * fallback_cursor.planned_at: when the planner last planned the user. Users are planned
--   least recently planned first, so a set of busy users cannot starve the rest.
-- * fallback_jobs.claims: the fence of a claim, one more on every claim and never given back.
--   `attempts` counts send attempts (a quiet-hours deferral gives its attempt back), so it
--   cannot serve as the fence: a claim whose lease ran out must not record over a later one.
-- * fallback_jobs_done_idx: finished jobs by age, for the purge task that deletes them after
--   HERALD_FALLBACK_JOB_RETENTION.

ALTER TABLE notifications ADD COLUMN fallback jsonb;

ALTER TABLE fallback_cursor ADD COLUMN planned_at timestamptz;

ALTER TABLE fallback_jobs ADD COLUMN claims integer NOT NULL DEFAULT 0;

CREATE INDEX fallback_jobs_done_idx ON fallback_jobs (updated_at) WHERE state <> 'pending';
