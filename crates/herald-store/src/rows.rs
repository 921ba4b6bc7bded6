//! Reading values out of result rows, with the operation and column in every error.

use herald_protocol::Notification;
use tokio_postgres::Row;

use crate::error::{pg_err, StoreError};

/// Maps a row selected with [`crate::sql::NOTIFICATION_COLUMNS`] to the wire type.
pub(crate) fn row_to_notification(row: &Row) -> Result<Notification, StoreError> {
    let map = |e| pg_err("decoding a notification row", e);
    Ok(Notification {
        id: row.try_get("id").map_err(map)?,
        user_id: row.try_get("user_id").map_err(map)?,
        seq: row.try_get("seq").map_err(map)?,
        kind: row.try_get("type").map_err(map)?,
        title: row.try_get("title").map_err(map)?,
        body: row.try_get("body").map_err(map)?,
        link: row.try_get("link").map_err(map)?,
        avatar_url: row.try_get("avatar_url").map_err(map)?,
        data: row.try_get("data").map_err(map)?,
        created_at: row.try_get("created_at").map_err(map)?,
        delivered_at: row.try_get("delivered_at").map_err(map)?,
        read_at: row.try_get("read_at").map_err(map)?,
        archived_at: row.try_get("archived_at").map_err(map)?,
    })
}

pub(crate) fn get<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a Row,
    op: &str,
    col: &str,
) -> Result<T, StoreError> {
    row.try_get(col)
        .map_err(|e| pg_err(&format!("{op}: column {col}"), e))
}
