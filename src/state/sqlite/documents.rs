//! SQL of the `documents` table and its `document_counts`.

use rusqlite::{Connection, OptionalExtension, params};

use super::rows::{self, DocumentColumns, SELECT_DOCUMENTS};
use crate::state::{Document, Status, StatusCounts};

pub(super) fn get(conn: &Connection, hash: &str) -> rusqlite::Result<Option<Document>> {
    conn.prepare_cached(&format!("{SELECT_DOCUMENTS} WHERE d.hash = ?1"))?
        .query_row([hash], rows::document)
        .optional()
}

pub(super) fn is_known(conn: &Connection, hash: &str) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT 1 FROM documents WHERE hash = ?1")?
        .exists([hash])
}

/// First document (registry order) whose `path`, `raw_path` or `source_path` is `path`.
pub(super) fn find_by_path(conn: &Connection, path: &str) -> rusqlite::Result<Option<Document>> {
    // Three indexed lookups; the UNION keeps each on its own partial index.
    conn.prepare_cached(&format!(
        "{SELECT_DOCUMENTS} WHERE d.position IN (
             SELECT position FROM documents WHERE path = ?1
             UNION SELECT position FROM documents WHERE raw_path = ?1
             UNION SELECT position FROM documents WHERE source_path = ?1)
         ORDER BY d.position LIMIT 1"
    ))?
    .query_row([path], rows::document)
    .optional()
}

/// Hashes of the documents (registry order) whose `path`, `raw_path` or `source_path` is
/// `path`: who claims a file.
pub(super) fn claimants_of_path(conn: &Connection, path: &str) -> rusqlite::Result<Vec<String>> {
    conn.prepare_cached(
        "SELECT hash FROM documents WHERE position IN (
             SELECT position FROM documents WHERE path = ?1
             UNION SELECT position FROM documents WHERE raw_path = ?1
             UNION SELECT position FROM documents WHERE source_path = ?1)
         ORDER BY position",
    )?
    .query_map([path], |r| r.get("hash"))?
    .collect()
}

pub(super) fn find_by_doc_name(
    conn: &Connection,
    doc_name: &str,
) -> rusqlite::Result<Option<Document>> {
    conn.prepare_cached(&format!("{SELECT_DOCUMENTS} WHERE d.doc_name = ?1"))?
        .query_row([doc_name], rows::document)
        .optional()
}

/// Documents owning `key` (an NFKC name key), in registry order.
pub(super) fn find_by_name_key(conn: &Connection, key: &str) -> rusqlite::Result<Vec<Document>> {
    conn.prepare_cached(&format!(
        "{SELECT_DOCUMENTS} WHERE d.name_key = ?1 ORDER BY d.position"
    ))?
    .query_map([key], rows::document)?
    .collect()
}

/// Visit every document in registry order without holding them all in memory.
pub(super) fn for_each(
    conn: &Connection,
    visit: &mut dyn FnMut(Document) -> rusqlite::Result<()>,
) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(&format!("{SELECT_DOCUMENTS} ORDER BY d.position"))?;
    let columns = DocumentColumns::of(&stmt)?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        visit(columns.read(row)?)?;
    }
    Ok(())
}

pub(super) fn counts(conn: &Connection) -> rusqlite::Result<StatusCounts> {
    // Kept by triggers (migrations/0004_document_counts.sql): three rows, not a scan.
    let mut stmt = conn.prepare_cached("SELECT status, n FROM document_counts")?;
    let mut counts = StatusCounts::default();
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let n = rows::count(row, "n")?;
        match row.get("status")? {
            Status::Pending => counts.pending = n,
            Status::Compiled => counts.compiled = n,
            Status::Failed => counts.failed = n,
        }
    }
    Ok(counts)
}

/// Recompute `document_counts` from the registry (after a bulk fill with the counting
/// triggers off, or when `doctor` rebuilds what is derived).
pub(super) fn recount(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "UPDATE document_counts
         SET n = (SELECT count(*) FROM documents d WHERE d.status = document_counts.status)",
    )
}

/// Insert or update `doc` (by hash), with its `document_legacy` row. An update keeps the
/// registry position and `created_at`; a new row goes to `position`, or after the last
/// document when `None` (SQLite gives an `INTEGER PRIMARY KEY` left NULL the largest one
/// plus one).
pub(super) fn upsert(
    conn: &Connection,
    doc: &Document,
    position: Option<i64>,
    now: &str,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO documents (position, hash, name, doc_name, type, path, raw_path,
             source_path, doc_id, origin, pages, name_key, status, error, created_at,
             updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?15)
         ON CONFLICT (hash) DO UPDATE SET
             name = excluded.name, doc_name = excluded.doc_name, type = excluded.type,
             path = excluded.path, raw_path = excluded.raw_path,
             source_path = excluded.source_path, doc_id = excluded.doc_id,
             origin = excluded.origin, pages = excluded.pages, name_key = excluded.name_key,
             status = excluded.status, error = excluded.error,
             updated_at = excluded.updated_at",
    )?
    .execute(params![
        position,
        doc.hash,
        doc.name,
        doc.doc_name,
        doc.doc_type,
        doc.path,
        doc.raw_path,
        doc.source_path,
        doc.doc_id,
        doc.origin,
        doc.pages,
        doc.name_key(),
        doc.status,
        doc.error,
        now,
    ])?;
    set_legacy(conn, doc)
}

/// Keep `doc`'s `document_legacy` row: present exactly when it has extra keys or a key order.
fn set_legacy(conn: &Connection, doc: &Document) -> rusqlite::Result<()> {
    if doc.extra.is_empty() && doc.key_order.is_none() {
        conn.prepare_cached("DELETE FROM document_legacy WHERE hash = ?1")?
            .execute([&doc.hash])?;
        return Ok(());
    }
    let (extra, key_order) = doc.legacy_json();
    conn.prepare_cached(
        "INSERT INTO document_legacy (hash, extra, key_order) VALUES (?1, ?2, ?3)
         ON CONFLICT (hash) DO UPDATE SET extra = excluded.extra, key_order = excluded.key_order",
    )?
    .execute(params![doc.hash, extra, key_order])?;
    Ok(())
}

/// Append `docs` after the last document, positions assigned here and one timestamp for the
/// batch: cheaper per row than [`upsert`] without a position, which looks up the next
/// position for every row.
pub(super) fn append(conn: &Connection, docs: &[Document], now: &str) -> rusqlite::Result<()> {
    let last: i64 = conn.query_row(
        "SELECT coalesce(max(position), 0) AS last FROM documents",
        [],
        |r| r.get("last"),
    )?;
    for (offset, doc) in (1..).zip(docs) {
        upsert(conn, doc, Some(last + offset), now)?;
    }
    Ok(())
}

pub(super) fn set_status(
    conn: &Connection,
    hash: &str,
    status: Status,
    error: Option<&str>,
    now: &str,
) -> rusqlite::Result<bool> {
    let changed = conn
        .prepare_cached(
            "UPDATE documents SET status = ?2, error = ?3, updated_at = ?4 WHERE hash = ?1",
        )?
        .execute(params![hash, status, error, now])?;
    Ok(changed > 0)
}

pub(super) fn remove(conn: &Connection, hash: &str) -> rusqlite::Result<bool> {
    let removed = conn
        .prepare_cached("DELETE FROM documents WHERE hash = ?1")?
        .execute([hash])?;
    Ok(removed > 0)
}

/// Store `doc` as another backend held it: position, `created_at` and `updated_at` kept. A
/// registered hash fails on its primary key instead of being updated.
pub(super) fn copy(conn: &Connection, doc: &Document) -> rusqlite::Result<()> {
    if is_known(conn, &doc.hash)? {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY),
            Some(format!("document {} is already registered", doc.hash)),
        ));
    }
    upsert(conn, doc, Some(doc.position), &doc.created_at)?;
    conn.prepare_cached("UPDATE documents SET updated_at = ?2 WHERE hash = ?1")?
        .execute(params![doc.hash, doc.updated_at])?;
    Ok(())
}
