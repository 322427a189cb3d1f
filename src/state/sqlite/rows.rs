//! How domain values cross into SQLite and back: `ToSql`/`FromSql` for the enums stored as
//! text, and the conversion of a whole row to a domain struct by column name (a column added
//! to a table, or a `SELECT` listing columns in another order, cannot shift the others).
//!
//! Each enum is parsed in one place, its `FromStr`; a stored value it does not know is a
//! conversion error naming the column, never a silent default.

use rusqlite::Row;
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

use crate::state::{Document, ImportKind, IntentOp, LogEntry, Status};

/// Text columns holding an enum's `as_str()` form.
macro_rules! text_enum_sql {
    ($($ty:ty),*) => {$(
        impl ToSql for $ty {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.as_str()))
            }
        }

        impl FromSql for $ty {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                value
                    .as_str()?
                    .parse()
                    .map_err(|e: String| FromSqlError::Other(e.into()))
            }
        }
    )*};
}

text_enum_sql!(Status, IntentOp, ImportKind);

/// A stored count (`INTEGER`, never negative by construction) as `u64`; a negative value,
/// which only another program could have written, reads as 0.
pub(super) fn count(row: &Row<'_>, column: &str) -> rusqlite::Result<u64> {
    Ok(u64::try_from(row.get::<_, i64>(column)?).unwrap_or(0))
}

/// A count for an `INTEGER` column (saturating: no count of this program reaches 2^63).
pub(super) fn to_sql_count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A conversion failure of `column`, reported with the text SQLite's own errors use.
fn bad(row: &Row<'_>, column: &str, message: String) -> rusqlite::Error {
    let index = row.as_ref().column_index(column).unwrap_or(0);
    rusqlite::Error::FromSqlConversionFailure(
        index,
        rusqlite::types::Type::Text,
        format!("{column}: {message}").into(),
    )
}

/// A JSON text column that must hold `T`.
pub(super) fn json<T: serde::de::DeserializeOwned>(
    row: &Row<'_>,
    column: &str,
    what: &str,
) -> rusqlite::Result<T> {
    let text: String = row.get(column)?;
    serde_json::from_str(&text).map_err(|e| bad(row, column, format!("{what}: {e}")))
}

/// `SELECT` of everything [`document`] reads: a `documents` row (alias `d`) with its
/// `document_legacy` row, if any (alias `l`). Append `WHERE` / `ORDER BY` on `d`.
pub(super) const SELECT_DOCUMENTS: &str = "SELECT d.hash, d.name, d.doc_name, d.type, d.path, \
     d.raw_path, d.source_path, d.doc_id, d.origin, d.pages, \
     coalesce(l.extra, '{}') AS extra, l.key_order AS key_order, d.status, d.error, \
     d.position, d.created_at, d.updated_at \
     FROM documents d LEFT JOIN document_legacy l ON l.hash = d.hash";

/// Where each field of a struct is in a statement's result, found by column name once per
/// statement: a scan of the whole registry or log then pays no name lookup per row (rusqlite
/// looks a name up by comparing it with every column's).
macro_rules! columns {
    ($(#[$doc:meta])* $name:ident { $($field:ident = $column:literal),* $(,)? }) => {
        $(#[$doc])*
        pub(super) struct $name {
            $($field: usize),*
        }

        impl $name {
            pub(super) fn of(stmt: &rusqlite::Statement<'_>) -> rusqlite::Result<Self> {
                Ok(Self {
                    $($field: stmt.column_index($column)?),*
                })
            }
        }
    };
}

columns! {
    /// The columns of [`SELECT_DOCUMENTS`].
    DocumentColumns {
        hash = "hash", name = "name", doc_name = "doc_name", doc_type = "type", path = "path",
        raw_path = "raw_path", source_path = "source_path", doc_id = "doc_id",
        origin = "origin", pages = "pages", extra = "extra", key_order = "key_order",
        status = "status", error = "error", position = "position",
        created_at = "created_at", updated_at = "updated_at",
    }
}

/// A row of [`SELECT_DOCUMENTS`] (columns by name, in any order), for single-row lookups.
pub(super) fn document(row: &Row<'_>) -> rusqlite::Result<Document> {
    DocumentColumns::of(row.as_ref())?.read(row)
}

impl DocumentColumns {
    pub(super) fn read(&self, row: &Row<'_>) -> rusqlite::Result<Document> {
        let extra_text: String = row.get(self.extra)?;
        let key_order_text: Option<String> = row.get(self.key_order)?;
        let (extra, key_order) = Document::legacy_from_json(&extra_text, key_order_text.as_deref())
            .map_err(|(column, what)| bad(row, column, what))?;
        Ok(Document {
            hash: row.get(self.hash)?,
            name: row.get(self.name)?,
            doc_name: row.get(self.doc_name)?,
            doc_type: row.get(self.doc_type)?,
            path: row.get(self.path)?,
            raw_path: row.get(self.raw_path)?,
            source_path: row.get(self.source_path)?,
            doc_id: row.get(self.doc_id)?,
            origin: row.get(self.origin)?,
            pages: row.get(self.pages)?,
            extra,
            key_order,
            status: row.get(self.status)?,
            error: row.get(self.error)?,
            position: row.get(self.position)?,
            created_at: row.get(self.created_at)?,
            updated_at: row.get(self.updated_at)?,
        })
    }
}

columns! {
    /// The columns of a `SELECT` of log entries.
    LogColumns {
        id = "id", timestamp = "timestamp", operation = "operation",
        description = "description", recorded_at = "recorded_at",
    }
}

impl LogColumns {
    pub(super) fn read(&self, row: &Row<'_>) -> rusqlite::Result<LogEntry> {
        Ok(LogEntry {
            id: row.get(self.id)?,
            timestamp: row.get(self.timestamp)?,
            operation: row.get(self.operation)?,
            description: row.get(self.description)?,
            recorded_at: row.get(self.recorded_at)?,
        })
    }
}
