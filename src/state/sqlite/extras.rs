//! SQL of the small tables: `meta`, `untrusted_entries`, and the Python hand-over
//! (`python_handovers`, `python_base`).

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Map, Value};

use super::{rows, sql_error};
use crate::error::{Error, Result};
use crate::state::python_base::Base;

pub(super) fn meta(conn: &Connection, key: &str) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached("SELECT value FROM meta WHERE key = ?1")?
        .query_row([key], |r| r.get("value"))
        .optional()
}

pub(super) fn set_meta(conn: &Connection, key: &str, value: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    )?
    .execute([key, value])
    .map(drop)
}

pub(super) fn ensure_random_meta(conn: &Connection, key: &str) -> rusqlite::Result<String> {
    conn.prepare_cached(
        "INSERT OR IGNORE INTO meta (key, value) VALUES (?1, lower(hex(randomblob(16))))",
    )?
    .execute([key])?;
    conn.prepare_cached("SELECT value FROM meta WHERE key = ?1")?
        .query_row([key], |r| r.get("value"))
}

pub(super) fn untrusted_reason(conn: &Connection, hash: &str) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached("SELECT reason FROM untrusted_entries WHERE hash = ?1")?
        .query_row([hash], |r| r.get("reason"))
        .optional()
}

pub(super) fn untrusted_entries(conn: &Connection) -> rusqlite::Result<Vec<(String, String)>> {
    conn.prepare_cached(
        "SELECT u.hash AS hash, u.reason AS reason FROM untrusted_entries u
         JOIN documents d ON d.hash = u.hash ORDER BY d.position",
    )?
    .query_map([], |r| Ok((r.get("hash")?, r.get("reason")?)))?
    .collect()
}

pub(super) fn mark_untrusted(conn: &Connection, hash: &str, reason: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO untrusted_entries (hash, reason) VALUES (?1, ?2)
         ON CONFLICT (hash) DO UPDATE SET reason = excluded.reason",
    )?
    .execute(params![hash, reason])
    .map(drop)
}

pub(super) fn record_python_migrate(
    conn: &Connection,
    sha256: &str,
    entries: u64,
    kept_as: &str,
    now: &str,
) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM python_base", [])?;
    conn.execute(
        "INSERT INTO python_handovers (kind, hashes_json_sha256, entries, kept_as,
             handed_over_at)
         VALUES ('migrate', ?1, ?2, ?3, ?4)",
        params![sha256, rows::to_sql_count(entries), kept_as, now],
    )?;
    Ok(())
}

pub(super) fn record_python_export(
    conn: &Connection,
    sha256: &str,
    entries: &mut dyn Iterator<Item = (String, Map<String, Value>)>,
    now: &str,
) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM python_base", [])?;
    let mut insert =
        conn.prepare_cached("INSERT INTO python_base (hash, position, entry) VALUES (?1, ?2, ?3)")?;
    let mut count = 0i64;
    for (hash, entry) in entries {
        count += 1;
        insert.execute(params![hash, count, Value::Object(entry).to_string()])?;
    }
    conn.execute(
        "INSERT INTO python_handovers (kind, hashes_json_sha256, entries, handed_over_at)
         VALUES ('export', ?1, ?2, ?3)",
        params![sha256, count, now],
    )?;
    Ok(())
}

/// The latest hand-over. A stored entry that is not a JSON object is reported by name.
pub(super) fn python_base(conn: &Connection, path: &Path) -> Result<Option<Base>> {
    let sql = |e| sql_error(path, e);
    let latest = conn
        .query_row(
            "SELECT kind, hashes_json_sha256, kept_as FROM python_handovers
             ORDER BY id DESC LIMIT 1",
            [],
            |r| {
                Ok((
                    r.get::<_, String>("kind")?,
                    r.get::<_, String>("hashes_json_sha256")?,
                    r.get::<_, Option<String>>("kept_as")?,
                ))
            },
        )
        .optional()
        .map_err(sql)?;
    let Some((kind, sha256, kept_as)) = latest else {
        return Ok(None);
    };
    if kind == "migrate" {
        return Ok(Some(Base::File {
            kept_as: PathBuf::from(kept_as.unwrap_or_default()),
            sha256,
        }));
    }
    let stored = conn
        .prepare_cached("SELECT hash, entry FROM python_base ORDER BY position")
        .and_then(|mut stmt| {
            stmt.query_map([], |r| {
                Ok((r.get::<_, String>("hash")?, r.get::<_, String>("entry")?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(sql)?;
    let mut entries = Vec::with_capacity(stored.len());
    for (hash, text) in stored {
        match crate::state::python_base::parse_entry(&text) {
            Some(entry) => entries.push((hash, entry)),
            None => {
                return Err(Error::Invalid(format!(
                    "{}: the python_base row of {hash} is not a JSON object; run `openkb \
                     doctor`",
                    path.display()
                )));
            }
        }
    }
    Ok(Some(Base::Entries(entries)))
}
