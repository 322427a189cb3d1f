//! SQL of the `intents` table.

use rusqlite::{Connection, Row, params};

use super::rows;
use crate::state::{HookGroup, Intent, IntentOp};

fn intent(row: &Row<'_>) -> rusqlite::Result<Intent> {
    Ok(Intent {
        id: row.get("id")?,
        operation: row.get("operation")?,
        hash: row.get("hash")?,
        doc_name: row.get("doc_name")?,
        files: rows::json(row, "files", "intent files are not a list of files")?,
        started_at: row.get("started_at")?,
        pid: row.get("pid")?,
        hook: HookGroup::from_stored(row.get("hook_pgid")?, row.get("hook_token")?),
    })
}

pub(super) fn list(conn: &Connection) -> rusqlite::Result<Vec<Intent>> {
    conn.prepare_cached(
        "SELECT id, operation, hash, doc_name, files, started_at, pid, hook_pgid, hook_token
         FROM intents ORDER BY id",
    )?
    .query_map([], intent)?
    .collect()
}

pub(super) fn count(conn: &Connection) -> rusqlite::Result<u64> {
    conn.query_row("SELECT count(*) AS n FROM intents", [], |r| {
        rows::count(r, "n")
    })
}

/// `files` is the JSON list of the intent's files.
pub(super) fn record(
    conn: &Connection,
    operation: IntentOp,
    hash: &str,
    doc_name: Option<&str>,
    files: &str,
    started_at: &str,
    pid: i64,
) -> rusqlite::Result<i64> {
    conn.prepare_cached(
        "INSERT INTO intents (operation, hash, doc_name, files, started_at, pid)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![operation, hash, doc_name, files, started_at, pid])?;
    Ok(conn.last_insert_rowid())
}

pub(super) fn record_hook(conn: &Connection, id: i64, hook: &HookGroup) -> rusqlite::Result<bool> {
    let changed = conn
        .prepare_cached("UPDATE intents SET hook_pgid = ?2, hook_token = ?3 WHERE id = ?1")?
        .execute(params![id, hook.pgid, hook.token])?;
    Ok(changed > 0)
}

pub(super) fn delete(conn: &Connection, id: i64) -> rusqlite::Result<bool> {
    let deleted = conn
        .prepare_cached("DELETE FROM intents WHERE id = ?1")?
        .execute([id])?;
    Ok(deleted > 0)
}
