//! The `log` table (rendered as `wiki/log.md` by [`crate::log_md`]).

use rusqlite::{Connection, Row, params};
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LogEntry {
    pub id: i64,
    /// Local time as shown in `wiki/log.md` (`YYYY-MM-DD HH:MM:SS`).
    pub timestamp: String,
    pub operation: String,
    pub description: String,
    /// ISO-8601 UTC time the row was written; `None` for imported entries.
    pub recorded_at: Option<String>,
}

fn from_row(row: &Row<'_>) -> rusqlite::Result<LogEntry> {
    Ok(LogEntry {
        id: row.get(0)?,
        timestamp: row.get(1)?,
        operation: row.get(2)?,
        description: row.get(3)?,
        recorded_at: row.get(4)?,
    })
}

pub(crate) fn append(
    conn: &Connection,
    timestamp: &str,
    operation: &str,
    description: &str,
    recorded_at: Option<&str>,
) -> rusqlite::Result<LogEntry> {
    conn.prepare_cached(
        "INSERT INTO log (timestamp, operation, description, recorded_at) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![timestamp, operation, description, recorded_at])?;
    Ok(LogEntry {
        id: conn.last_insert_rowid(),
        timestamp: timestamp.to_owned(),
        operation: operation.to_owned(),
        description: description.to_owned(),
        recorded_at: recorded_at.map(str::to_owned),
    })
}

/// The newest `limit` entries (all when `None`), optionally of one operation, oldest first.
pub(crate) fn tail(
    conn: &Connection,
    limit: Option<u64>,
    operation: Option<&str>,
) -> rusqlite::Result<Vec<LogEntry>> {
    let limit = limit.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
    // Two statements rather than `?1 IS NULL OR operation = ?1`: that form hides the
    // operation index from the planner, and looking for a rare operation would scan the whole
    // log backwards.
    let mut entries: Vec<LogEntry> = match operation {
        Some(op) => conn
            .prepare_cached(
                "SELECT id, timestamp, operation, description, recorded_at FROM log
                 WHERE operation = ?1 ORDER BY id DESC LIMIT ?2",
            )?
            .query_map(params![op, limit], from_row)?
            .collect::<rusqlite::Result<_>>()?,
        None => conn
            .prepare_cached(
                "SELECT id, timestamp, operation, description, recorded_at FROM log
                 ORDER BY id DESC LIMIT ?1",
            )?
            .query_map(params![limit], from_row)?
            .collect::<rusqlite::Result<_>>()?,
    };
    entries.reverse();
    Ok(entries)
}

/// Visit every entry oldest first (for rebuilding `wiki/log.md` and exports).
pub(crate) fn for_each(
    conn: &Connection,
    visit: &mut dyn FnMut(LogEntry) -> rusqlite::Result<()>,
) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, timestamp, operation, description, recorded_at FROM log ORDER BY id",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        visit(from_row(row)?)?;
    }
    Ok(())
}

pub(crate) fn count(conn: &Connection) -> rusqlite::Result<u64> {
    conn.query_row("SELECT count(*) FROM log", [], |r| r.get::<_, i64>(0))
        .map(|n| u64::try_from(n).unwrap_or(0))
}

/// Newest entry of `operation`, if any.
pub(crate) fn last_of(conn: &Connection, operation: &str) -> rusqlite::Result<Option<LogEntry>> {
    Ok(tail(conn, Some(1), Some(operation))?.pop())
}
