//! The connection pool: [`StoreConfig`], [`Store::connect`], the readiness ping, and running one
//! prepared statement on a pooled connection.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use herald_protocol::Notification;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use crate::error::{pg_err, pool_err, StoreError};
use crate::rows::row_to_notification;
use crate::sql;
use crate::tls::PgTls;

/// How the store connects to PostgreSQL.
#[derive(Clone)]
pub struct StoreConfig {
    /// libpq-style URL or key/value string, e.g. `postgres://herald@db:5432/herald`.
    pub url: String,
    /// Maximum number of pooled connections.
    pub pool_size: usize,
    /// `statement_timeout` set on every connection (0 = no timeout).
    pub statement_timeout_ms: u64,
    /// TCP connect timeout, and how long a caller waits for a pooled connection.
    pub connect_timeout_ms: u64,
}

impl fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may carry a password.
        f.debug_struct("StoreConfig")
            .field("url", &"<redacted>")
            .field("pool_size", &self.pool_size)
            .field("statement_timeout_ms", &self.statement_timeout_ms)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .finish()
    }
}

/// The PostgreSQL store. Cheap to clone (shares the pool).
#[derive(Clone)]
pub struct Store {
    pub(crate) pool: Pool,
    ping_timeout: Duration,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("pool", &self.pool.status())
            .finish()
    }
}

pub(crate) type Client = deadpool_postgres::Client;

fn describe_target(pg: &tokio_postgres::Config) -> String {
    let host = pg
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(s) => s.clone(),
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".to_owned());
    let port = pg.get_ports().first().copied().unwrap_or(5432);
    let db = pg.get_dbname().or(pg.get_user()).unwrap_or("postgres");
    format!("{host}:{port}/{db}")
}

impl Store {
    /// Builds the pool and opens one connection to check the database is reachable.
    pub async fn connect(cfg: &StoreConfig) -> Result<Store, StoreError> {
        let (url, tls) = PgTls::split(&cfg.url)
            .map_err(|e| StoreError::Internal(format!("invalid database URL: {e}")))?;
        let mut pg = tokio_postgres::Config::from_str(&url)
            .map_err(|e| StoreError::Internal(format!("invalid database URL: {e}")))?;
        let tls_config = tls
            .client_config()
            .map_err(|e| StoreError::Internal(format!("database TLS: {e}")))?;
        let connect_timeout = Duration::from_millis(cfg.connect_timeout_ms.max(1));
        pg.connect_timeout(connect_timeout);
        if pg.get_application_name().is_none() {
            pg.application_name("herald");
        }
        if cfg.statement_timeout_ms > 0 {
            let setting = format!("-c statement_timeout={}", cfg.statement_timeout_ms);
            let options = match pg.get_options() {
                Some(existing) if !existing.trim().is_empty() => format!("{existing} {setting}"),
                _ => setting,
            };
            pg.options(options);
        }
        let target = describe_target(&pg);
        let manager = Manager::from_config(
            pg,
            tokio_postgres_rustls::MakeRustlsConnect::new(tls_config),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(cfg.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(connect_timeout))
            .create_timeout(Some(connect_timeout))
            .recycle_timeout(Some(connect_timeout))
            .build()
            .map_err(|e| StoreError::Internal(format!("building the connection pool: {e}")))?;
        let store = Store {
            pool,
            ping_timeout: connect_timeout.min(Duration::from_secs(2)),
        };
        match store.pool.get().await {
            Ok(_client) => {}
            Err(e) => {
                let err = pool_err("connect", e);
                let msg = match &err {
                    StoreError::Unavailable(m) | StoreError::Internal(m) => m.clone(),
                    StoreError::IdempotencyKeyReused => String::new(),
                };
                return Err(StoreError::Unavailable(format!(
                    "cannot connect to PostgreSQL at {target}: {msg}"
                )));
            }
        }
        tracing::info!(
            target = %target,
            pool_size = cfg.pool_size,
            sslmode = tls.mode.as_str(),
            "connected to PostgreSQL"
        );
        Ok(store)
    }

    pub(crate) async fn client(&self, op: &str) -> Result<Client, StoreError> {
        self.pool.get().await.map_err(|e| pool_err(op, e))
    }

    /// `SELECT 1` within a short timeout, for readiness checks.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let fut = async {
            let client = self.client("ping").await?;
            let stmt = client
                .prepare_cached(sql::PING)
                .await
                .map_err(|e| pg_err("ping", e))?;
            client
                .query_one(&stmt, &[])
                .await
                .map_err(|e| pg_err("ping", e))?;
            Ok(())
        };
        match tokio::time::timeout(self.ping_timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::Unavailable("ping: timed out".to_owned())),
        }
    }

    /// Runs one prepared (cached) statement on a pooled connection.
    pub(crate) async fn query(
        &self,
        op: &str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let client = self.client(op).await?;
        let stmt = client
            .prepare_cached(sql)
            .await
            .map_err(|e| pg_err(op, e))?;
        client.query(&stmt, params).await.map_err(|e| pg_err(op, e))
    }

    pub(crate) async fn query_notifications(
        &self,
        op: &str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Notification>, StoreError> {
        let rows = self.query(op, sql, params).await?;
        rows.iter().map(row_to_notification).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connections_get_the_statement_timeout() {
        let url = std::env::var("HERALD_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let store = Store::connect(&StoreConfig {
            url,
            pool_size: 1,
            statement_timeout_ms: 1234,
            connect_timeout_ms: 2000,
        })
        .await
        .unwrap();
        let client = store.pool.get().await.unwrap();
        let row = client
            .query_one("SHOW statement_timeout", &[])
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), "1234ms");
        let err = client
            .query_one("SELECT pg_sleep(2)", &[])
            .await
            .unwrap_err();
        assert!(matches!(
            pg_err("sleep", err),
            StoreError::Internal(m) if m.contains("57014")
        ));
        // Pool of one, still held: a waiter gives up after the connect timeout.
        let started = std::time::Instant::now();
        assert!(matches!(
            store.ping().await,
            Err(StoreError::Unavailable(_))
        ));
        assert!(started.elapsed() < Duration::from_secs(3));
        drop(client);
        store.ping().await.unwrap();
    }
}
