//! What openkb last handed to the Python tool: the base of the three-way merge of a
//! `hashes.json` that reappears (`legacy::migrate`).
//!
//! Each hand-over adds a `python_handovers` row (kind, fingerprint) in the transaction that
//! does the hand-over's other writes, so the base always matches what the Python tool was
//! given. A `migrate` hand-over keeps no copy: the file it imported is kept whole as
//! `hashes.json.migrated*` (recorded in `kept_as`), and copying 100k entries would slow every
//! migration down. An `export` hand-over copies its entries into `python_base`, because the
//! file it wrote is the one the Python tool rewrites.

use std::path::PathBuf;

use rusqlite::{OptionalExtension, params};
use serde_json::{Map, Value};

use super::{Queries, WriteTx, sql_error, utc_now};
use crate::error::{Error, Result};

/// Entries in registry order.
pub type Entries = Vec<(String, Map<String, Value>)>;

/// The latest hand-over.
#[derive(Debug)]
pub enum Base {
    /// `migrate`: the file it imported, kept as `kept_as`, with this SHA-256.
    File { kept_as: PathBuf, sha256: String },
    /// `export`: the entries it wrote.
    Entries(Entries),
}

/// Record that `migrate` handed over the `hashes.json` with `sha256`, now kept as `kept_as`.
pub fn record_migrate(tx: &WriteTx<'_>, sha256: &str, entries: usize, kept_as: &str) -> Result<()> {
    let conn = tx.connection();
    let run = || -> rusqlite::Result<()> {
        conn.execute("DELETE FROM python_base", [])?;
        conn.execute(
            "INSERT INTO python_handovers (kind, hashes_json_sha256, entries, kept_as,
                 handed_over_at)
             VALUES ('migrate', ?1, ?2, ?3, ?4)",
            params![
                sha256,
                i64::try_from(entries).unwrap_or(i64::MAX),
                kept_as,
                utc_now()
            ],
        )?;
        Ok(())
    };
    run().map_err(|e| sql_error(tx.db_path(), e))
}

/// Record that `export` handed over `entries` (registry order) as the `hashes.json` with
/// `sha256`, replacing the stored base.
pub fn record_export(
    tx: &WriteTx<'_>,
    sha256: &str,
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
            insert.execute(params![hash, count, Value::Object(entry).to_string()])?;
        }
        conn.execute(
            "INSERT INTO python_handovers (kind, hashes_json_sha256, entries, handed_over_at)
             VALUES ('export', ?1, ?2, ?3)",
            params![sha256, count, utc_now()],
        )?;
        Ok(())
    };
    run().map_err(|e| sql_error(tx.db_path(), e))
}

/// The latest hand-over, or `None` when this database has recorded none (made by an openkb
/// that did not keep them).
pub fn load(q: &impl Queries) -> Result<Option<Base>> {
    let latest = q
        .conn()
        .query_row(
            "SELECT kind, hashes_json_sha256, kept_as FROM python_handovers
             ORDER BY id DESC LIMIT 1",
            [],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                ))
            },
        )
        .optional()
        .map_err(|e| sql_error(q.db_path(), e))?;
    let Some((kind, sha256, kept_as)) = latest else {
        return Ok(None);
    };
    if kind == "migrate" {
        return Ok(Some(Base::File {
            kept_as: PathBuf::from(kept_as.unwrap_or_default()),
            sha256,
        }));
    }
    let rows = q
        .conn()
        .prepare_cached("SELECT hash, entry FROM python_base ORDER BY position")
        .and_then(|mut stmt| {
            stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(|e| sql_error(q.db_path(), e))?;
    let mut entries = Vec::with_capacity(rows.len());
    for (hash, text) in rows {
        match serde_json::from_str(&text) {
            Ok(Value::Object(entry)) => entries.push((hash, entry)),
            _ => {
                return Err(Error::Invalid(format!(
                    "{}: the python_base row of {hash} is not a JSON object; run `openkb \
                     doctor`",
                    q.db_path().display()
                )));
            }
        }
    }
    Ok(Some(Base::Entries(entries)))
}
