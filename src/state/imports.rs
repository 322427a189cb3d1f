//! The `imports` table: the record of each legacy `hashes.json` import (`openkb migrate`).
//!
//! A record is written in the same transaction as the rows it describes, so `state.db` never
//! holds imported documents without the record saying where they came from (the flaw of the
//! Python tool's own SQLite attempt, whose "migrated" sentinel was a separate transaction).

use std::path::Path;

use rusqlite::{Connection, OpenFlags, Row, TransactionBehavior, params};
use serde::Serialize;

use super::{Document, Queries, WriteTx, sql_error, utc_now};
use crate::error::{Error, IoContext, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum ImportKind {
    /// The first import, which created `state.db`.
    #[serde(rename = "initial")]
    Initial,
    /// A `hashes.json` that reappeared after migration, merged into an existing `state.db`.
    #[serde(rename = "drift-merge")]
    DriftMerge,
}

impl ImportKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ImportKind::Initial => "initial",
            ImportKind::DriftMerge => "drift-merge",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "initial" => Some(ImportKind::Initial),
            "drift-merge" => Some(ImportKind::DriftMerge),
            _ => None,
        }
    }
}

/// What an import did; the fields of an `imports` row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ImportRecord {
    /// Assigned by the store.
    pub id: i64,
    pub kind: ImportKind,
    pub source_path: String,
    pub source_sha256: String,
    pub source_bytes: u64,
    pub moved_to: String,
    pub entries: u64,
    pub new_entries: u64,
    pub conflicting_entries: u64,
    pub log_entries: u64,
    pub journals_recovered: u64,
    /// ISO-8601 UTC; assigned by the store.
    pub imported_at: String,
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn from_row(row: &Row<'_>) -> rusqlite::Result<ImportRecord> {
    let kind: String = row.get(1)?;
    let kind = ImportKind::parse(&kind).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            1,
            rusqlite::types::Type::Text,
            format!("unknown import kind {kind:?}").into(),
        )
    })?;
    Ok(ImportRecord {
        id: row.get(0)?,
        kind,
        source_path: row.get(2)?,
        source_sha256: row.get(3)?,
        source_bytes: to_u64(row.get(4)?),
        moved_to: row.get(5)?,
        entries: to_u64(row.get(6)?),
        new_entries: to_u64(row.get(7)?),
        conflicting_entries: to_u64(row.get(8)?),
        log_entries: to_u64(row.get(9)?),
        journals_recovered: to_u64(row.get(10)?),
        imported_at: row.get(11)?,
    })
}

const COLUMNS: &str = "id, kind, source_path, source_sha256, source_bytes, moved_to, entries, \
     new_entries, conflicting_entries, log_entries, journals_recovered, imported_at";

/// Write the record of an import inside the transaction that imports it. `record.id` and
/// `record.imported_at` are ignored; the returned record carries the stored ones.
pub fn record(tx: &WriteTx<'_>, record: &ImportRecord) -> Result<ImportRecord> {
    let conn = tx.connection();
    let now = utc_now();
    conn.prepare_cached(
        "INSERT INTO imports (kind, source_path, source_sha256, source_bytes, moved_to, entries,
             new_entries, conflicting_entries, log_entries, journals_recovered, imported_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            record.kind.as_str(),
            record.source_path,
            record.source_sha256,
            to_i64(record.source_bytes),
            record.moved_to,
            to_i64(record.entries),
            to_i64(record.new_entries),
            to_i64(record.conflicting_entries),
            to_i64(record.log_entries),
            to_i64(record.journals_recovered),
            now,
        ])
    })
    .map_err(|e| sql_error(tx.db_path(), e))?;
    Ok(ImportRecord {
        id: conn.last_insert_rowid(),
        imported_at: now,
        ..record.clone()
    })
}

/// Every import, oldest first.
pub fn list(q: &impl Queries) -> Result<Vec<ImportRecord>> {
    let run = || -> rusqlite::Result<Vec<ImportRecord>> {
        q.conn()
            .prepare_cached(&format!("SELECT {COLUMNS} FROM imports ORDER BY id"))?
            .query_map([], from_row)?
            .collect()
    };
    run().map_err(|e| sql_error(q.db_path(), e))
}

/// Append `docs` to the registry, in order, after the last registered document: the bulk path
/// of an import. Every document must be new, which the importer checks beforehand (a hash
/// already registered would be updated in place; a `doc_name` owned by another document fails
/// the whole transaction on its constraint).
/// Positions are assigned here and one timestamp serves the batch: cheaper per row than
/// [`WriteTx::upsert_document`], which looks up the `doc_name` owner and the next position
/// for every row.
pub fn append_documents(tx: &WriteTx<'_>, docs: &[Document]) -> Result<()> {
    let conn = tx.connection();
    let run = || -> rusqlite::Result<()> {
        let last: i64 = conn.query_row(
            "SELECT coalesce(max(position), 0) FROM documents",
            [],
            |r| r.get(0),
        )?;
        let now = utc_now();
        for (offset, doc) in docs.iter().enumerate() {
            super::documents::upsert(conn, doc, Some(last + 1 + offset as i64), &now)?;
        }
        Ok(())
    };
    run().map_err(|e| sql_error(tx.db_path(), e))
}

/// Append log rows with the timestamps they were read with (imported history: no
/// `recorded_at`), in order.
pub fn append_log_entries<'e>(
    tx: &WriteTx<'_>,
    entries: impl IntoIterator<Item = (&'e str, &'e str, &'e str)>,
) -> Result<()> {
    let run = || -> rusqlite::Result<()> {
        let mut insert = tx.connection().prepare_cached(
            "INSERT INTO log (timestamp, operation, description, recorded_at)
             VALUES (?1, ?2, ?3, NULL)",
        )?;
        for (timestamp, operation, description) in entries {
            insert.execute(params![timestamp, operation, description])?;
        }
        Ok(())
    };
    run().map_err(|e| sql_error(tx.db_path(), e))
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
    super::schema::migrate(&mut conn, &utc_now()).map_err(sql)?;
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
        let write = WriteTx { tx, path };
        let value = body(&write)?;
        write
            .tx
            .execute_batch("PRAGMA ignore_check_constraints = OFF")
            .map_err(sql)?;
        for (_, _, create) in &derived {
            write.tx.execute_batch(create).map_err(sql)?;
        }
        super::documents::recount(&write.tx).map_err(sql)?;
        write.tx.commit().map_err(sql)?;
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
