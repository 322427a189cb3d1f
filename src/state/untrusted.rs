//! The `untrusted_entries` table: legacy registry entries whose paths openkb will not act on
//! (see `kbpath::owned_by_document`). `migrate` fills it; `remove` reads it to unregister such
//! a document without touching a file; `openkb doctor` lists it.

use rusqlite::{OptionalExtension, params};

use super::{Queries, WriteTx, sql_error};
use crate::error::Result;

/// Why the document `hash` is not trusted, if it is marked.
pub fn reason(q: &impl Queries, hash: &str) -> Result<Option<String>> {
    q.conn()
        .prepare_cached("SELECT reason FROM untrusted_entries WHERE hash = ?1")
        .and_then(|mut stmt| stmt.query_row([hash], |r| r.get(0)).optional())
        .map_err(|e| sql_error(q.db_path(), e))
}

/// Every marked document: (hash, reason), in registry order.
pub fn list(q: &impl Queries) -> Result<Vec<(String, String)>> {
    let run = || -> rusqlite::Result<Vec<(String, String)>> {
        q.conn()
            .prepare_cached(
                "SELECT u.hash, u.reason FROM untrusted_entries u
                 JOIN documents d ON d.hash = u.hash ORDER BY d.position",
            )?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect()
    };
    run().map_err(|e| sql_error(q.db_path(), e))
}

impl WriteTx<'_> {
    /// Mark a registered document as untrusted (in the transaction that registers it).
    pub fn mark_untrusted(&self, hash: &str, reason: &str) -> Result<()> {
        self.connection()
            .prepare_cached(
                "INSERT INTO untrusted_entries (hash, reason) VALUES (?1, ?2)
                 ON CONFLICT (hash) DO UPDATE SET reason = excluded.reason",
            )
            .and_then(|mut stmt| stmt.execute(params![hash, reason]))
            .map(|_| ())
            .map_err(|e| sql_error(self.db_path(), e))
    }
}
