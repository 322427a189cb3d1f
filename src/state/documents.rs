//! The `documents` table: one registry entry per content hash.

use std::fmt;
use std::str::FromStr;

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::names;

/// Lifecycle of a registered document.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Registered, its files published, not compiled into the wiki yet.
    #[default]
    Pending,
    /// Compiled into the wiki (imported legacy documents count as compiled).
    Compiled,
    /// The compile hook failed; `error` says why.
    Failed,
}

impl Status {
    pub const ALL: [Status; 3] = [Status::Pending, Status::Compiled, Status::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Compiled => "compiled",
            Status::Failed => "failed",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown status {s:?}"))
    }
}

/// One registry entry. In JSON output every key is present, `null` when absent (the
/// `--json` contract, docs/output.md). The string fields mirror the keys of a Python-tool
/// `hashes.json` entry;
/// `extra` holds every other key (and any known key whose value is not a string), so an entry
/// of any era round-trips without loss.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Document {
    pub hash: String,
    pub name: Option<String>,
    pub doc_name: Option<String>,
    #[serde(rename = "type")]
    pub doc_type: Option<String>,
    pub path: Option<String>,
    pub raw_path: Option<String>,
    pub source_path: Option<String>,
    pub doc_id: Option<String>,
    pub origin: Option<String>,
    pub pages: Option<i64>,
    pub extra: Map<String, Value>,
    /// Key order of the legacy entry, when it is not the canonical one.
    pub key_order: Option<Vec<String>>,
    pub status: Status,
    pub error: Option<String>,
    /// Registry order; assigned by the store.
    pub position: i64,
    /// ISO-8601 UTC; assigned by the store.
    pub created_at: String,
    pub updated_at: String,
}

impl Document {
    pub fn new(hash: impl Into<String>) -> Self {
        Document {
            hash: hash.into(),
            ..Document::default()
        }
    }

    /// The name wiki artifacts are named by: `doc_name`, or the stem of `name` for entries that
    /// predate `doc_name`.
    pub fn display_doc_name(&self) -> Option<String> {
        match (&self.doc_name, &self.name) {
            (Some(d), _) if !d.is_empty() => Some(d.clone()),
            (_, Some(n)) => Some(names::stem(n).to_owned()),
            _ => None,
        }
    }

    pub fn name_key(&self) -> String {
        names::name_key(self.doc_name.as_deref(), self.name.as_deref())
    }
}

/// Counts of documents by lifecycle status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StatusCounts {
    pub pending: u64,
    pub compiled: u64,
    pub failed: u64,
}

impl StatusCounts {
    pub fn total(&self) -> u64 {
        self.pending + self.compiled + self.failed
    }
}

const COLUMNS: &str = "hash, name, doc_name, type, path, raw_path, source_path, doc_id, origin, \
     pages, extra, key_order, status, error, position, created_at, updated_at";

fn from_row(row: &Row<'_>) -> rusqlite::Result<Document> {
    let extra_text: String = row.get(10)?;
    let key_order_text: Option<String> = row.get(11)?;
    let status_text: String = row.get(12)?;
    let bad = |col: usize, msg: String| {
        rusqlite::Error::FromSqlConversionFailure(
            col,
            rusqlite::types::Type::Text,
            Box::<dyn std::error::Error + Send + Sync>::from(msg),
        )
    };
    // Nearly every row has no extra keys: skip the JSON parser for those.
    let extra = if extra_text == "{}" {
        Map::new()
    } else {
        match serde_json::from_str::<Value>(&extra_text) {
            Ok(Value::Object(map)) => map,
            _ => return Err(bad(10, format!("extra is not a JSON object: {extra_text}"))),
        }
    };
    let key_order = match key_order_text {
        None => None,
        Some(text) => Some(
            serde_json::from_str::<Vec<String>>(&text)
                .map_err(|e| bad(11, format!("key_order: {e}")))?,
        ),
    };
    Ok(Document {
        hash: row.get(0)?,
        name: row.get(1)?,
        doc_name: row.get(2)?,
        doc_type: row.get(3)?,
        path: row.get(4)?,
        raw_path: row.get(5)?,
        source_path: row.get(6)?,
        doc_id: row.get(7)?,
        origin: row.get(8)?,
        pages: row.get(9)?,
        extra,
        key_order,
        status: status_text.parse().map_err(|e: String| bad(12, e))?,
        error: row.get(13)?,
        position: row.get(14)?,
        created_at: row.get(15)?,
        updated_at: row.get(16)?,
    })
}

pub(crate) fn get(conn: &Connection, hash: &str) -> rusqlite::Result<Option<Document>> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM documents WHERE hash = ?1"))?
        .query_row([hash], from_row)
        .optional()
}

pub(crate) fn is_known(conn: &Connection, hash: &str) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT 1 FROM documents WHERE hash = ?1")?
        .exists([hash])
}

/// First document (registry order) whose `path`, `raw_path` or `source_path` is `path`.
pub(crate) fn find_by_path(conn: &Connection, path: &str) -> rusqlite::Result<Option<Document>> {
    // Three indexed lookups; the UNION keeps each on its own partial index.
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM documents WHERE hash IN (
             SELECT hash FROM documents WHERE path = ?1
             UNION SELECT hash FROM documents WHERE raw_path = ?1
             UNION SELECT hash FROM documents WHERE source_path = ?1)
         ORDER BY position LIMIT 1"
    ))?
    .query_row([path], from_row)
    .optional()
}

/// Hashes of the documents (registry order) whose `path`, `raw_path` or `source_path` is
/// `path`: who claims a file.
pub(crate) fn claimants_of_path(conn: &Connection, path: &str) -> rusqlite::Result<Vec<String>> {
    conn.prepare_cached(
        "SELECT hash FROM documents WHERE hash IN (
             SELECT hash FROM documents WHERE path = ?1
             UNION SELECT hash FROM documents WHERE raw_path = ?1
             UNION SELECT hash FROM documents WHERE source_path = ?1)
         ORDER BY position",
    )?
    .query_map([path], |r| r.get(0))?
    .collect()
}

pub(crate) fn find_by_doc_name(
    conn: &Connection,
    doc_name: &str,
) -> rusqlite::Result<Option<Document>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM documents WHERE doc_name = ?1"
    ))?
    .query_row([doc_name], from_row)
    .optional()
}

/// Documents owning `key` (an NFKC name key), in registry order.
pub(crate) fn find_by_name_key(conn: &Connection, key: &str) -> rusqlite::Result<Vec<Document>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM documents WHERE name_key = ?1 ORDER BY position"
    ))?
    .query_map([key], from_row)?
    .collect()
}

pub(crate) fn list(conn: &Connection) -> rusqlite::Result<Vec<Document>> {
    let mut out = Vec::new();
    for_each(conn, &mut |doc| {
        out.push(doc);
        Ok(())
    })?;
    Ok(out)
}

/// Visit every document in registry order without holding them all in memory.
pub(crate) fn for_each(
    conn: &Connection,
    visit: &mut dyn FnMut(Document) -> rusqlite::Result<()>,
) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM documents ORDER BY position"
    ))?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        visit(from_row(row)?)?;
    }
    Ok(())
}

pub(crate) fn counts(conn: &Connection) -> rusqlite::Result<StatusCounts> {
    // Kept by triggers (migrations/0004_document_counts.sql): three rows, not a scan.
    let mut stmt = conn.prepare_cached("SELECT status, n FROM document_counts")?;
    let mut counts = StatusCounts::default();
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let status: String = row.get(0)?;
        let n: i64 = row.get(1)?;
        let n = u64::try_from(n).unwrap_or(0);
        match status.as_str() {
            "pending" => counts.pending = n,
            "compiled" => counts.compiled = n,
            "failed" => counts.failed = n,
            _ => {}
        }
    }
    Ok(counts)
}

/// Recompute `document_counts` from the registry (after a bulk fill with the counting
/// triggers off).
pub(crate) fn recount(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "UPDATE document_counts
         SET n = (SELECT count(*) FROM documents d WHERE d.status = document_counts.status)",
    )
}

/// Insert or update `doc` (by hash). An update keeps the registry position and `created_at`;
/// a new row goes to `position`, or after the last document when `None`.
pub(crate) fn upsert(
    conn: &Connection,
    doc: &Document,
    position: Option<i64>,
    now: &str,
) -> rusqlite::Result<()> {
    let extra = if doc.extra.is_empty() {
        "{}".to_owned()
    } else {
        Value::Object(doc.extra.clone()).to_string()
    };
    let key_order = doc
        .key_order
        .as_ref()
        .map(|k| Value::from(k.clone()).to_string());
    conn.prepare_cached(
        "INSERT INTO documents (hash, position, name, doc_name, type, path, raw_path,
             source_path, doc_id, origin, pages, extra, key_order, name_key, status, error,
             created_at, updated_at)
         VALUES (?1, coalesce(?17, (SELECT coalesce(max(position), 0) + 1 FROM documents)),
             ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?16)
         ON CONFLICT (hash) DO UPDATE SET
             name = excluded.name, doc_name = excluded.doc_name, type = excluded.type,
             path = excluded.path, raw_path = excluded.raw_path,
             source_path = excluded.source_path, doc_id = excluded.doc_id,
             origin = excluded.origin, pages = excluded.pages, extra = excluded.extra,
             key_order = excluded.key_order, name_key = excluded.name_key,
             status = excluded.status, error = excluded.error,
             updated_at = excluded.updated_at",
    )?
    .execute(params![
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
        extra,
        key_order,
        doc.name_key(),
        doc.status.as_str(),
        doc.error,
        now,
        position,
    ])?;
    Ok(())
}

pub(crate) fn set_status(
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
        .execute(params![hash, status.as_str(), error, now])?;
    Ok(changed > 0)
}

pub(crate) fn remove(conn: &Connection, hash: &str) -> rusqlite::Result<bool> {
    let removed = conn
        .prepare_cached("DELETE FROM documents WHERE hash = ?1")?
        .execute([hash])?;
    Ok(removed > 0)
}
