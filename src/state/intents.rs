//! The `intents` table: operations in flight, recorded before they touch a file.
//!
//! The ingest protocol (see `ingest/mod.rs`) is: under the KB's exclusive lock, commit an
//! intent naming every file the operation will create or delete; do the file work; then one
//! transaction commits the operation's rows and deletes the intent. An intent that outlives its
//! process is the exact, guess-free description of what to roll back or finish; it is settled
//! by `ingest::recover` on the next outermost exclusive lock. `openkb doctor` lists them.

use rusqlite::{Connection, Row, params};
use serde::{Deserialize, Serialize};

use super::{Queries, WriteTx, sql_error, utc_now};
use crate::error::{Error, Result};

/// What an intent is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IntentOp {
    Add,
    Remove,
    Compile,
}

impl IntentOp {
    pub fn as_str(self) -> &'static str {
        match self {
            IntentOp::Add => "add",
            IntentOp::Remove => "remove",
            IntentOp::Compile => "compile",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [IntentOp::Add, IntentOp::Remove, IntentOp::Compile]
            .into_iter()
            .find(|op| op.as_str() == text)
    }
}

/// One file an intent touches, KB-relative POSIX paths.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntentFile {
    pub path: String,
    /// For an add that replaces an existing file: where its previous content was kept
    /// (a hard link under `.openkb/staging/`), to be put back on rollback.
    pub backup: Option<String>,
}

impl IntentFile {
    pub fn new(path: impl Into<String>) -> Self {
        IntentFile {
            path: path.into(),
            backup: None,
        }
    }
}

/// An unfinished operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Intent {
    pub id: i64,
    pub operation: IntentOp,
    pub hash: String,
    pub doc_name: Option<String>,
    pub files: Vec<IntentFile>,
    pub started_at: String,
    pub pid: i64,
    /// The compile hook this operation started, while it may still run.
    pub hook: Option<HookGroup>,
}

/// A compile hook's process group, as recorded in its intent: the group id and the token in
/// the hook's environment that tells its processes from unrelated ones reusing the id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HookGroup {
    pub pgid: i32,
    pub token: String,
}

fn from_row(row: &Row<'_>) -> rusqlite::Result<Intent> {
    let bad = |col: usize, msg: String| {
        rusqlite::Error::FromSqlConversionFailure(
            col,
            rusqlite::types::Type::Text,
            Box::<dyn std::error::Error + Send + Sync>::from(msg),
        )
    };
    let op_text: String = row.get(1)?;
    let files_text: String = row.get(4)?;
    Ok(Intent {
        id: row.get(0)?,
        operation: IntentOp::parse(&op_text)
            .ok_or_else(|| bad(1, format!("unknown intent operation {op_text:?}")))?,
        hash: row.get(2)?,
        doc_name: row.get(3)?,
        files: serde_json::from_str(&files_text)
            .map_err(|e| bad(4, format!("intent files are not a list of files: {e}")))?,
        started_at: row.get(5)?,
        pid: row.get(6)?,
        hook: match (
            row.get::<_, Option<i64>>(7)?,
            row.get::<_, Option<String>>(8)?,
        ) {
            // Read from disk: an id that is not a plausible process group is ignored, never
            // signalled (0, 1 and negatives would reach this process's group, init or all).
            (Some(pgid), Some(token)) if !token.is_empty() => i32::try_from(pgid)
                .ok()
                .filter(|&p| p > 1)
                .map(|pgid| HookGroup { pgid, token }),
            _ => None,
        },
    })
}

pub(crate) fn list(conn: &Connection) -> rusqlite::Result<Vec<Intent>> {
    conn.prepare_cached(
        "SELECT id, operation, hash, doc_name, files, started_at, pid, hook_pgid, hook_token
         FROM intents ORDER BY id",
    )?
    .query_map([], from_row)?
    .collect()
}

pub(crate) fn count(conn: &Connection) -> rusqlite::Result<u64> {
    let n: i64 = conn.query_row("SELECT count(*) FROM intents", [], |r| r.get(0))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Every unfinished intent, oldest first (for recovery and `openkb doctor`).
pub fn unfinished(q: &impl Queries) -> Result<Vec<Intent>> {
    list(q.conn()).map_err(|e| sql_error(q.db_path(), e))
}

/// How many intents are unfinished: the cheap check run on every exclusive acquisition.
pub fn unfinished_count(q: &impl Queries) -> Result<u64> {
    count(q.conn()).map_err(|e| sql_error(q.db_path(), e))
}

impl WriteTx<'_> {
    /// Record an intent; returns its id. Commit it before touching any file it names.
    pub fn record_intent(
        &self,
        operation: IntentOp,
        hash: &str,
        doc_name: Option<&str>,
        files: &[IntentFile],
    ) -> Result<i64> {
        let files = serde_json::to_string(files)
            .map_err(|e| Error::Invalid(format!("cannot serialize intent files: {e}")))?;
        let conn = self.connection();
        conn.prepare_cached(
            "INSERT INTO intents (operation, hash, doc_name, files, started_at, pid)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                operation.as_str(),
                hash,
                doc_name,
                files,
                utc_now(),
                i64::from(std::process::id())
            ])
        })
        .map_err(|e| sql_error(self.db_path(), e))?;
        Ok(conn.last_insert_rowid())
    }

    /// Record the compile hook an intent's operation started (see `ingest::hook`), so
    /// that recovery kills what is left of it if this process dies.
    pub fn record_intent_hook(&self, id: i64, hook: &HookGroup) -> Result<()> {
        self.connection()
            .prepare_cached("UPDATE intents SET hook_pgid = ?2, hook_token = ?3 WHERE id = ?1")
            .and_then(|mut stmt| stmt.execute(params![id, hook.pgid, hook.token]))
            .map(drop)
            .map_err(|e| sql_error(self.db_path(), e))
    }

    /// Delete an intent (in the transaction that commits, or abandons, its operation).
    pub fn delete_intent(&self, id: i64) -> Result<bool> {
        self.connection()
            .prepare_cached("DELETE FROM intents WHERE id = ?1")
            .and_then(|mut stmt| stmt.execute([id]))
            .map(|n| n > 0)
            .map_err(|e| sql_error(self.db_path(), e))
    }
}
