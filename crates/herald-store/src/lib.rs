//! Herald's PostgreSQL store: the connection pool, the migrations runner and every SQL
//! statement the gateway runs (see [`sql`]).
//!
//! # The seq invariant
//!
//! Every notification has a per-user `seq`: 1, 2, 3, … with no gaps among committed rows.
//! A publish takes the next seq by incrementing `user_state.last_seq` (an
//! `INSERT … ON CONFLICT DO UPDATE`), which row-locks that user's `user_state` row until the
//! transaction ends. So two publishes to one user are serialised, their seqs commit in seq
//! order, and a rolled-back publish gives its seq back. A reader that has seen seq `n`
//! therefore never misses a row `< n` committing later: "everything after seq N" is a
//! complete catch-up. The same transaction keeps `user_state.unread_count` (= number of the
//! user's rows with `read_at IS NULL`) and bumps `user_state.version`.
//!
//! # Lock order
//!
//! Every writing transaction locks `user_state` rows **first**, several users always in
//! ascending byte order of `user_id` (`ORDER BY … COLLATE "C"`, which equals Rust's `str`
//! order, the order `NewNotification::recipients` is sorted in), and only then touches
//! `notifications` rows of those users:
//!
//! * publish: `user_state` upserts in sorted order, then the inserts;
//! * mark-read / mark-all-read: `SELECT … FOR UPDATE` of the user's `user_state` row, then the
//!   `UPDATE notifications`, then the counter update;
//! * mark-delivered: `SELECT … ORDER BY user_id FOR UPDATE` of the users' rows, then the
//!   `UPDATE notifications`.
//!
//! A keyed publish additionally claims its `publish_idempotency` row before any of that; a
//! transaction holds at most one such row. With one global order there are no deadlocks; the
//! publish transaction is still retried on SQLSTATE 40P01/40001 as a safety net.
//!
//! # Modules
//!
//! One file per job, all of them `impl Store` blocks or helpers of one:
//!
//! * `tls`: libpq's `sslmode`/`sslrootcert` on rustls ([`tls::PgTls`]);
//! * `pool`: [`StoreConfig`], the connection pool, [`Store::connect`] and [`Store::ping`];
//! * `error`: [`StoreError`] and how PostgreSQL and pool failures map onto it;
//! * `migrate`: [`MIGRATIONS`] and [`Store::migrate`];
//! * [`sql`]: every SQL statement, with the lock order each one relies on;
//! * `publish`: [`Store::publish`] (keyed, idempotent) and [`Store::publish_batch`] (group
//!   commit), with `batch` (their parameter arrays and result rows) and `hash` (the
//!   idempotency request hash);
//! * `queries`: reading notifications ([`Store::after_seqs`], [`Store::list`], [`Store::get`]);
//! * `read_state`: [`UserState`] counters, [`Store::mark_read`], [`Store::mark_all_read`];
//! * `seen`: the seen watermark ([`Store::mark_seen`]);
//! * `inbox` (statements in [`inbox_sql`]): archive, unarchive, read, unread, delete by ids or
//!   filter ([`Store::inbox_apply`]), filtered pages, counts per filter, the retention purge;
//! * `revocation`: session revocations ([`Store::revoke`], [`Store::revocations_since`]);
//! * `delivery`: delivery marks ([`Store::mark_delivered`], [`Store::users_behind`]);
//! * `fallback`: the offline fallback's cursor, jobs and leases, preferences and contacts
//!   ([`Store::fallback_plan`], [`Store::fallback_claim`]), with its statements in
//!   [`fallback_sql`];
//! * `push`: Web Push subscriptions ([`Store::push_subscribe`], bounded per user);
//! * `email`: the email channel's digest slots and suppression list ([`Store::email_reserve`],
//!   [`Store::suppress`]), with its statements in [`email_sql`];
//! * `rows`: reading columns out of rows.

mod batch;
mod delivery;
mod email;
pub mod email_sql;
mod error;
mod fallback;
pub mod fallback_sql;
mod hash;
mod inbox;
pub mod inbox_sql;
mod migrate;
mod pool;
mod publish;
mod push;
mod queries;
mod read_state;
mod revocation;
mod rows;
mod seen;
pub mod sql;
pub mod tls;

pub use email::Suppression;
pub use error::StoreError;
pub use fallback::{ClaimedJob, JobDetails, JobEnd, PlanInput};
pub use inbox::{uuid_v7_ceiling, ListFilter, PurgeBatch, PurgeScope, Purged, Target};
pub use migrate::{checksum as migrate_checksum, SchemaStatus, BREAKS_OLDER_NODES, MIGRATIONS};
pub use pool::{Store, StoreConfig};
pub use publish::{Committed, IdempotencyRecord, PublishOutcome, Published};
pub use push::{NewPushSubscription, PushSubscription};
pub use read_state::UserState;
pub use revocation::Revocation;
pub use seen::{seen_seq_valid, SeenOutcome};
