//! The migrations runner: the embedded `migrations/*.sql`, applied in order under an
//! advisory lock, each recorded in `schema_migrations` with the SHA-256 of its text; and the
//! check a node makes of the schema it finds at start.
//!
//! The rules ([`judge`], pure):
//! * A recorded migration this build also embeds must have the same checksum: a migration
//!   file changed after it was applied is refused (rows written by a runner that recorded no
//!   checksum get this build's, once).
//! * Migrations this build embeds but the database lacks are *pending*: `migrate` applies
//!   them; `serve` without `HERALD_MIGRATE_ON_START` refuses to start until they are.
//! * Migrations the database has but this build does not know come from a newer build. A
//!   node runs against them (rolling updates and rollbacks keep working) with a warning,
//!   unless one of them is marked `-- herald: breaks-older-nodes` in its first lines: then
//!   older nodes refuse to start, since that schema change is one they cannot run against.

use sha2::{Digest, Sha256};

use crate::error::{pg_err, StoreError};
use crate::sql;
use crate::Store;

/// Embedded migrations, in version order: (version, name, SQL).
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "0001_init.sql",
        include_str!("../../../migrations/0001_init.sql"),
    ),
    (
        2,
        "0002_delivery_marks.sql",
        include_str!("../../../migrations/0002_delivery_marks.sql"),
    ),
    (
        3,
        "0003_revocations.sql",
        include_str!("../../../migrations/0003_revocations.sql"),
    ),
    (
        4,
        "0004_inbox.sql",
        include_str!("../../../migrations/0004_inbox.sql"),
    ),
    (
        5,
        "0005_fallback.sql",
        include_str!("../../../migrations/0005_fallback.sql"),
    ),
    (
        6,
        "0006_email.sql",
        include_str!("../../../migrations/0006_email.sql"),
    ),
    (
        7,
        "0007_push.sql",
        include_str!("../../../migrations/0007_push.sql"),
    ),
    (
        8,
        "0008_fallback_fixes.sql",
        include_str!("../../../migrations/0008_fallback_fixes.sql"),
    ),
];

/// The marker, in a migration's leading comment lines, of a schema change older nodes cannot
/// run against.
pub const BREAKS_OLDER_NODES: &str = "-- herald: breaks-older-nodes";

/// Key of the transaction-level advisory lock that serialises concurrent migrators.
const MIGRATION_LOCK_KEY: i64 = 0x4845_5241_4c44_4d47; // "HERALDMG"

/// The SHA-256 of a migration's text, hex.
pub fn checksum(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether a migration declares [`BREAKS_OLDER_NODES`] in its leading comment lines.
pub fn breaks_older_nodes(text: &str) -> bool {
    text.lines()
        .take_while(|l| l.trim_start().starts_with("--") || l.trim().is_empty())
        .any(|l| l.trim() == BREAKS_OLDER_NODES)
}

/// One row of `schema_migrations`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub version: i32,
    pub name: String,
    pub checksum: Option<String>,
    pub breaks_older_nodes: bool,
}

/// What a node finds in the database, judged against what it embeds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchemaStatus {
    /// Embedded versions the database lacks.
    pub pending: Vec<i32>,
    /// Recorded versions this build does not know (a newer build applied them).
    pub newer: Vec<i32>,
    /// Recorded rows without a checksum (written by an older runner): version, checksum.
    pub backfill: Vec<(i32, String)>,
}

impl SchemaStatus {
    pub fn is_current(&self) -> bool {
        self.pending.is_empty() && self.newer.is_empty()
    }
}

/// Judges the recorded migrations against the embedded ones (`(version, name, text)`).
/// Errors: a changed migration, or a newer one that breaks older nodes.
pub fn judge(
    embedded: &[(i32, &str, &str)],
    recorded: &[Recorded],
) -> Result<SchemaStatus, String> {
    let mut status = SchemaStatus::default();
    for &(version, name, text) in embedded {
        let sum = checksum(text);
        match recorded.iter().find(|r| r.version == version) {
            None => status.pending.push(version),
            Some(r) => match &r.checksum {
                None => status.backfill.push((version, sum)),
                Some(have) if *have == sum => {}
                Some(have) => {
                    return Err(format!(
                        "migration {version} ({name}) differs from the one applied to this database \
                         (recorded sha256 {have}, this build's {sum}): a migration must never change \
                         once applied; add a new one instead"
                    ))
                }
            },
        }
    }
    let newest_known = embedded.iter().map(|m| m.0).max().unwrap_or(0);
    for r in recorded {
        if !embedded.iter().any(|m| m.0 == r.version) {
            if r.version < newest_known {
                return Err(format!(
                    "migration {} ({}) is recorded in this database but unknown to this build, \
                     which knows later ones: the migration history differs",
                    r.version, r.name
                ));
            }
            if r.breaks_older_nodes {
                return Err(format!(
                    "the database schema is at migration {} ({}), which older nodes cannot run \
                     against (marked breaks-older-nodes); this build knows migrations up to \
                     {newest_known}: deploy a build that knows migration {}",
                    r.version, r.name, r.version
                ));
            }
            status.newer.push(r.version);
        }
    }
    Ok(status)
}

async fn recorded(client: &crate::pool::Client) -> Result<Vec<Recorded>, StoreError> {
    const OP: &str = "migrate: reading schema_migrations";
    let stmt = client
        .prepare_cached(sql::MIGRATIONS_RECORDED)
        .await
        .map_err(|e| pg_err(OP, e))?;
    let rows = client.query(&stmt, &[]).await.map_err(|e| pg_err(OP, e))?;
    Ok(rows
        .iter()
        .map(|r| Recorded {
            version: r.get(0),
            name: r.get(1),
            checksum: r.get(2),
            breaks_older_nodes: r.get(3),
        })
        .collect())
}

impl Store {
    /// Applies the embedded migrations not yet recorded in `schema_migrations`, one
    /// transaction each, under a transaction-level advisory lock, after checking the ones
    /// already applied ([`judge`]). Returns the versions applied by this call (empty when the
    /// schema is current).
    pub async fn migrate(&self) -> Result<Vec<i32>, StoreError> {
        const OP: &str = "migrate";
        let mut client = self.client(OP).await?;
        {
            let tx = client.transaction().await.map_err(|e| pg_err(OP, e))?;
            tx.batch_execute(&format!(
                "SET LOCAL statement_timeout = '5min'; SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY}); {}",
                sql::CREATE_SCHEMA_MIGRATIONS
            ))
            .await
            .map_err(|e| pg_err("migrate: creating schema_migrations", e))?;
            tx.commit().await.map_err(|e| pg_err(OP, e))?;
        }
        // Refuse before changing anything if an applied migration was edited.
        let status = judge(MIGRATIONS, &recorded(&client).await?).map_err(StoreError::Internal)?;
        self.backfill(&client, &status).await?;
        let mut applied = Vec::new();
        for &(version, name, text) in MIGRATIONS {
            let tx = client.transaction().await.map_err(|e| pg_err(OP, e))?;
            tx.batch_execute(&format!(
                "SET LOCAL statement_timeout = '5min'; SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})"
            ))
            .await
            .map_err(|e| pg_err("migrate: taking the migration lock", e))?;
            let check = tx
                .prepare_cached(sql::MIGRATION_APPLIED)
                .await
                .map_err(|e| pg_err(OP, e))?;
            let done = tx
                .query_opt(&check, &[&version])
                .await
                .map_err(|e| pg_err(OP, e))?
                .is_some();
            if done {
                tx.rollback().await.map_err(|e| pg_err(OP, e))?;
                continue;
            }
            tx.batch_execute(text)
                .await
                .map_err(|e| pg_err(&format!("migrate: applying {name}"), e))?;
            let record = tx
                .prepare_cached(sql::MIGRATION_RECORD)
                .await
                .map_err(|e| pg_err(OP, e))?;
            tx.execute(
                &record,
                &[&version, &name, &checksum(text), &breaks_older_nodes(text)],
            )
            .await
            .map_err(|e| pg_err(OP, e))?;
            tx.commit()
                .await
                .map_err(|e| pg_err(&format!("migrate: committing {name}"), e))?;
            tracing::info!(version, name, "applied migration");
            applied.push(version);
        }
        Ok(applied)
    }

    /// The schema a node is about to serve on, judged against this build ([`judge`]); rows
    /// without a checksum get this build's. Errors: an edited migration, a newer one that
    /// breaks older nodes, or no `schema_migrations` at all (a database never migrated).
    pub async fn check_schema(&self) -> Result<SchemaStatus, StoreError> {
        const OP: &str = "checking the schema";
        let client = self.client(OP).await?;
        // Columns a runner older than this one did not create.
        client
            .batch_execute(sql::CREATE_SCHEMA_MIGRATIONS)
            .await
            .map_err(|e| pg_err(OP, e))?;
        let status = judge(MIGRATIONS, &recorded(&client).await?).map_err(StoreError::Internal)?;
        self.backfill(&client, &status).await?;
        Ok(status)
    }

    async fn backfill(
        &self,
        client: &crate::pool::Client,
        status: &SchemaStatus,
    ) -> Result<(), StoreError> {
        for (version, sum) in &status.backfill {
            let stmt = client
                .prepare_cached(sql::MIGRATION_BACKFILL_CHECKSUM)
                .await
                .map_err(|e| pg_err("migrate: recording a checksum", e))?;
            client
                .execute(&stmt, &[version, sum])
                .await
                .map_err(|e| pg_err("migrate: recording a checksum", e))?;
            tracing::info!(
                version,
                "recorded the checksum of a migration applied before checksums"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMBEDDED: &[(i32, &str, &str)] = &[
        (1, "0001_a.sql", "CREATE TABLE a ();"),
        (2, "0002_b.sql", "CREATE TABLE b ();"),
    ];

    fn rec(version: i32, text: Option<&str>, breaks: bool) -> Recorded {
        Recorded {
            version,
            name: format!("{version:04}_x.sql"),
            checksum: text.map(checksum),
            breaks_older_nodes: breaks,
        }
    }

    #[test]
    fn a_current_schema_is_current() {
        let r = [
            rec(1, Some("CREATE TABLE a ();"), false),
            rec(2, Some("CREATE TABLE b ();"), false),
        ];
        let s = judge(EMBEDDED, &r).unwrap();
        assert!(s.is_current());
        assert!(s.backfill.is_empty());
    }

    #[test]
    fn missing_versions_are_pending_and_missing_checksums_backfilled() {
        let s = judge(EMBEDDED, &[rec(1, None, false)]).unwrap();
        assert_eq!(s.pending, vec![2]);
        assert_eq!(s.backfill, vec![(1, checksum("CREATE TABLE a ();"))]);
    }

    #[test]
    fn an_edited_migration_is_refused() {
        let err = judge(EMBEDDED, &[rec(1, Some("CREATE TABLE a (x int);"), false)]).unwrap_err();
        assert!(err.contains("migration 1 (0001_a.sql) differs"), "{err}");
    }

    #[test]
    fn a_newer_schema_is_run_against_unless_it_breaks_older_nodes() {
        let base = [
            rec(1, Some("CREATE TABLE a ();"), false),
            rec(2, Some("CREATE TABLE b ();"), false),
        ];
        let mut r = base.to_vec();
        r.push(rec(3, Some("ALTER TABLE a ADD x int;"), false));
        let s = judge(EMBEDDED, &r).unwrap();
        assert_eq!(s.newer, vec![3]);
        assert!(s.pending.is_empty());
        let mut r = base.to_vec();
        r.push(rec(3, Some("ALTER TABLE a ADD x int;"), false));
        r.push(rec(4, Some("DROP TABLE b;"), true));
        let err = judge(EMBEDDED, &r).unwrap_err();
        assert!(
            err.contains("migration 4") && err.contains("breaks-older-nodes"),
            "{err}"
        );
    }

    #[test]
    fn an_unknown_version_below_the_known_ones_is_refused() {
        let r = [
            rec(1, Some("CREATE TABLE a ();"), false),
            rec(5, Some("x"), false),
        ];
        let embedded: &[(i32, &str, &str)] = &[
            (1, "0001_a.sql", "CREATE TABLE a ();"),
            (7, "0007_c.sql", "CREATE TABLE c ();"),
        ];
        assert!(judge(embedded, &r).unwrap_err().contains("history differs"));
    }

    #[test]
    fn the_marker_is_read_from_the_leading_comments_only() {
        assert!(breaks_older_nodes(
            "-- Herald schema, version 9\n--\n-- herald: breaks-older-nodes\nALTER TABLE a DROP x;"
        ));
        assert!(!breaks_older_nodes(
            "-- version 9\nALTER TABLE a DROP x;\n-- herald: breaks-older-nodes\n"
        ));
        // The embedded migrations: only 8 breaks older nodes (docs/operations.md).
        let marked: Vec<i32> = MIGRATIONS
            .iter()
            .filter(|m| breaks_older_nodes(m.2))
            .map(|m| m.0)
            .collect();
        assert_eq!(marked, vec![8]);
    }
}
