//! SQL of the `imports` table, and the private build of a new database for an initial
//! import.

use std::path::Path;

use rusqlite::{Connection, OpenFlags, Row, TransactionBehavior, params};

use super::{Sql, documents, rows, schema, sql_error};
use crate::error::{Error, IoContext, Result};
use crate::state::{ImportRecord, WriteTx, utc_now};

const COLUMNS: &str = "id, kind, source_path, source_sha256, source_bytes, moved_to, entries, \
     new_entries, conflicting_entries, log_entries, journals_recovered, imported_at";

fn record_of(row: &Row<'_>) -> rusqlite::Result<ImportRecord> {
    Ok(ImportRecord {
        id: row.get("id")?,
        kind: row.get("kind")?,
        source_path: row.get("source_path")?,
        source_sha256: row.get("source_sha256")?,
        source_bytes: rows::count(row, "source_bytes")?,
        moved_to: row.get("moved_to")?,
        entries: rows::count(row, "entries")?,
        new_entries: rows::count(row, "new_entries")?,
        conflicting_entries: rows::count(row, "conflicting_entries")?,
        log_entries: rows::count(row, "log_entries")?,
        journals_recovered: rows::count(row, "journals_recovered")?,
        imported_at: row.get("imported_at")?,
    })
}

/// Every import, oldest first.
pub(super) fn list(conn: &Connection) -> rusqlite::Result<Vec<ImportRecord>> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM imports ORDER BY id"))?
        .query_map([], record_of)?
        .collect()
}

pub(super) fn record(
    conn: &Connection,
    record: &ImportRecord,
    now: &str,
) -> rusqlite::Result<ImportRecord> {
    let n = rows::to_sql_count;
    conn.prepare_cached(
        "INSERT INTO imports (kind, source_path, source_sha256, source_bytes, moved_to, entries,
             new_entries, conflicting_entries, log_entries, journals_recovered, imported_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        record.kind,
        record.source_path,
        record.source_sha256,
        n(record.source_bytes),
        record.moved_to,
        n(record.entries),
        n(record.new_entries),
        n(record.conflicting_entries),
        n(record.log_entries),
        n(record.journals_recovered),
        now,
    ])?;
    Ok(ImportRecord {
        id: conn.last_insert_rowid(),
        imported_at: now.to_owned(),
        ..record.clone()
    })
}

/// Build a new state database at `path` (an empty file the caller created and will delete on
/// failure) and run `body` in its one write transaction.
///
/// The file is private until the caller links it into place, so it is built without a journal
/// and without syncs (a crash leaves a temp file that is simply deleted) and with a page cache
/// big enough for the whole import: every page is written once, instead of into the WAL and
/// again by the checkpoint. Then it is switched to WAL mode (recorded in the file header, so
/// every later open is WAL), closed, and fsynced once as a whole.
pub fn build_database<T>(
    path: &Path,
    expected_rows: usize,
    body: impl FnOnce(&WriteTx<'_>) -> Result<T>,
) -> Result<T> {
    let sql = |e| sql_error(path, e);
    let mut conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql)?;
    // About 1 KiB of pages per row (the row, its index entries, B-tree slack), capped.
    let cache_kib = (expected_rows as u64)
        .saturating_add(8 * 1024)
        .min(512 * 1024);
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA foreign_keys = ON;
         PRAGMA cache_size = -{cache_kib};"
    ))
    .map_err(sql)?;
    schema::migrate(&mut conn, &utc_now()).map_err(sql)?;
    let value = {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        // Filling a table and then building each secondary index by one sort is several times
        // cheaper than updating every index row by row; the indexes come back from their own
        // CREATE statements, so the schema ends up exactly as the migrations made it. The
        // counting triggers go the same way, and the counts are taken once at the end.
        let derived = derived_schema(&tx).map_err(sql)?;
        for (kind, name, _) in &derived {
            tx.execute_batch(&format!("DROP {kind} \"{name}\""))
                .map_err(sql)?;
        }
        // The CHECK constraints (hash shape by GLOB, `extra` and `key_order` by json_valid)
        // cost about half of the insert time; everything imported is built by code that
        // guarantees them (hashes validated when parsed, `extra` serialized from a JSON object,
        // `key_order` from a list, statuses from the enum), so a private build skips them.
        tx.execute_batch("PRAGMA ignore_check_constraints = ON")
            .map_err(sql)?;
        let db = Sql {
            conn: tx,
            path: std::sync::Arc::from(path),
        };
        let write = WriteTx::new(&db);
        let value = body(&write)?;
        db.conn
            .execute_batch("PRAGMA ignore_check_constraints = OFF")
            .map_err(sql)?;
        for (_, _, create) in &derived {
            db.conn.execute_batch(create).map_err(sql)?;
        }
        documents::recount(&db.conn).map_err(sql)?;
        db.conn.commit().map_err(sql)?;
        value
    };
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(sql)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::Invalid(format!(
            "{}: SQLite refused WAL mode (journal_mode is {mode}); is the folder on a network \
             filesystem? run `openkb doctor`",
            path.display()
        )));
    }
    conn.close().map_err(|(_, e)| sql(e))?;
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .with_path("cannot flush", path)?;
    Ok(value)
}

/// (kind, name, CREATE statement) of every index and trigger that has one (not the implicit
/// indexes of PRIMARY KEY and UNIQUE constraints).
fn derived_schema(conn: &Connection) -> rusqlite::Result<Vec<(String, String, String)>> {
    conn.prepare(
        "SELECT upper(type), name, sql FROM sqlite_master
         WHERE type IN ('index', 'trigger') AND sql IS NOT NULL ORDER BY type, name",
    )?
    .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
    .collect()
}
