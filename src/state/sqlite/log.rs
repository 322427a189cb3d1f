//! SQL of the `log` table.

use rusqlite::{Connection, params};

use super::rows::{self, LogColumns};
use crate::state::LogEntry;

const COLUMNS: &str = "id, timestamp, operation, description, recorded_at";

pub(super) fn append(
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

/// Append imported entries (timestamp, operation, description) with no `recorded_at`.
pub(super) fn append_imported(
    conn: &Connection,
    entries: &mut dyn Iterator<Item = (&str, &str, &str)>,
) -> rusqlite::Result<()> {
    let mut insert = conn.prepare_cached(
        "INSERT INTO log (timestamp, operation, description, recorded_at)
         VALUES (?1, ?2, ?3, NULL)",
    )?;
    for (timestamp, operation, description) in entries {
        insert.execute(params![timestamp, operation, description])?;
    }
    Ok(())
}

/// The newest `limit` entries (all when `None`), optionally of one operation, oldest first.
pub(super) fn tail(
    conn: &Connection,
    limit: Option<u64>,
    operation: Option<&str>,
) -> rusqlite::Result<Vec<LogEntry>> {
    let limit = limit.map_or(-1, rows::to_sql_count);
    // Two statements rather than `?1 IS NULL OR operation = ?1`: that form hides the
    // operation index from the planner, and looking for a rare operation would scan the whole
    // log backwards.
    let mut entries = match operation {
        Some(op) => entries(
            conn,
            &format!("SELECT {COLUMNS} FROM log WHERE operation = ?1 ORDER BY id DESC LIMIT ?2"),
            params![op, limit],
        )?,
        None => entries(
            conn,
            &format!("SELECT {COLUMNS} FROM log ORDER BY id DESC LIMIT ?1"),
            params![limit],
        )?,
    };
    entries.reverse();
    Ok(entries)
}

/// The entries `sql` (a `SELECT` of [`COLUMNS`]) returns.
fn entries(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> rusqlite::Result<Vec<LogEntry>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let columns = LogColumns::of(&stmt)?;
    stmt.query_map(params, |row| columns.read(row))?.collect()
}

/// Visit every entry oldest first (for rebuilding `wiki/log.md` and exports).
pub(super) fn for_each(
    conn: &Connection,
    visit: &mut dyn FnMut(LogEntry) -> rusqlite::Result<()>,
) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM log ORDER BY id"))?;
    let columns = LogColumns::of(&stmt)?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        visit(columns.read(row)?)?;
    }
    Ok(())
}

pub(super) fn count(conn: &Connection) -> rusqlite::Result<u64> {
    conn.query_row("SELECT count(*) AS n FROM log", [], |r| rows::count(r, "n"))
}

/// Store `entry` with its id, as another backend held it.
pub(super) fn copy(conn: &Connection, entry: &LogEntry) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO log (id, timestamp, operation, description, recorded_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        entry.id,
        entry.timestamp,
        entry.operation,
        entry.description,
        entry.recorded_at
    ])
    .map(drop)
}
