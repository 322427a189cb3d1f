//! The registry openkb last handed to the Python tool: the base of the three-way merge of a
//! `hashes.json` that reappears (`legacy::migrate`).
//!
//! Each hand-over (`migrate` importing a `hashes.json`, `export --for-python` writing one)
//! replaces the base with its entries and adds a fingerprint row, in the transaction that does
//! the hand-over's other writes, so the base always matches what the Python tool was given.

use rusqlite::params;
use serde_json::{Map, Value};

use super::{Queries, WriteTx, sql_error, utc_now};
use crate::error::{Error, Result};

/// How the registry was handed over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handover {
    /// `openkb migrate` imported this `hashes.json` (then moved it aside).
    Migrate,
    /// `openkb export` wrote this `hashes.json` for the Python tool.
    Export,
}

impl Handover {
    fn as_str(self) -> &'static str {
        match self {
            Handover::Migrate => "migrate",
            Handover::Export => "export",
        }
    }
}

/// The base: entries in registry order.
pub type Base = Vec<(String, Map<String, Value>)>;

/// Replace the base with `entries` (registry order) and record the hand-over's fingerprint.
pub fn record(
    tx: &WriteTx<'_>,
    kind: Handover,
    hashes_json_sha256: &str,
    entries: impl IntoIterator<Item = (String, Map<String, Value>)>,
) -> Result<()> {
    let conn = tx.connection();
    let run = || -> rusqlite::Result<()> {
        conn.execute("DELETE FROM python_base", [])?;
        let mut insert = conn.prepare_cached(
            "INSERT INTO python_base (hash, position, entry) VALUES (?1, ?2, ?3)",
        )?;
        let mut count = 0i64;
        for (hash, entry) in entries {
            count += 1;
            let text = Value::Object(entry).to_string();
            insert.execute(params![hash, count, text])?;
        }
        conn.execute(
            "INSERT INTO python_handovers (kind, hashes_json_sha256, entries, handed_over_at)
             VALUES (?1, ?2, ?3, ?4)",
            params![kind.as_str(), hashes_json_sha256, count, utc_now()],
        )?;
        Ok(())
    };
    run().map_err(|e| sql_error(tx.db_path(), e))
}

/// The base of the latest hand-over, or `None` when nothing was handed over since this
/// database learnt to keep one (a merge then only adds and reports, it never removes).
pub fn load(q: &impl Queries) -> Result<Option<Base>> {
    let run = || -> rusqlite::Result<(bool, Vec<(String, String)>)> {
        let any: bool =
            q.conn()
                .query_row("SELECT EXISTS (SELECT 1 FROM python_handovers)", [], |r| {
                    r.get(0)
                })?;
        let rows = q
            .conn()
            .prepare_cached("SELECT hash, entry FROM python_base ORDER BY position")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok((any, rows))
    };
    let (any, rows) = run().map_err(|e| sql_error(q.db_path(), e))?;
    if !any {
        return Ok(None);
    }
    let mut base = Vec::with_capacity(rows.len());
    for (hash, text) in rows {
        match serde_json::from_str(&text) {
            Ok(Value::Object(entry)) => base.push((hash, entry)),
            _ => {
                return Err(Error::Invalid(format!(
                    "{}: the python_base row of {hash} is not a JSON object; run `openkb \
                     doctor`",
                    q.db_path().display()
                )));
            }
        }
    }
    Ok(Some(base))
}
