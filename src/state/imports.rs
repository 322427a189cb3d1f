//! The `imports` table: the record of each legacy `hashes.json` import (`openkb migrate`).
//!
//! A record is written in the same transaction as the rows it describes, so `state.db` never
//! holds imported documents without the record saying where they came from (the flaw of the
//! Python tool's own SQLite attempt, whose "migrated" sentinel was a separate transaction).

use rusqlite::{Row, params};
use serde::Serialize;

use super::{Queries, WriteTx, sql_error, utc_now};
use crate::error::Result;

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
