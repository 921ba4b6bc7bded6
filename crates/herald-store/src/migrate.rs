//! The migrations runner: the embedded `migrations/*.sql`, applied in order under an
//! advisory lock, each recorded in `schema_migrations`.

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
];

/// Key of the transaction-level advisory lock that serialises concurrent migrators.
const MIGRATION_LOCK_KEY: i64 = 0x4845_5241_4c44_4d47; // "HERALDMG"

impl Store {
    /// Applies the embedded migrations not yet recorded in `schema_migrations`, one
    /// transaction each, under a transaction-level advisory lock. Returns the versions applied
    /// by this call (empty when the schema is current).
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
            tx.execute(&record, &[&version, &name])
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
}
