//! Schema migrations.
//!
//! The migrations are the `migrations/NNNN_*.sql` files, embedded in the binary, in one
//! append-only list. `PRAGMA user_version` records how many have been applied. Rules: never
//! remove or edit a shipped migration; no destructive changes; each runs in the same
//! `BEGIN IMMEDIATE` transaction as the `user_version` bump, so a crash leaves the database at
//! the old version or the new one, and two processes upgrading at once apply it once.

use rusqlite::{Connection, TransactionBehavior};

/// `PRAGMA application_id` of an openkb state database ("OKB1").
pub const APPLICATION_ID: i64 = 0x4F4B_4231;

pub struct Migration {
    pub name: &'static str,
    pub sql: &'static str,
}

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        name: "0001_initial",
        sql: include_str!("../../migrations/0001_initial.sql"),
    },
    Migration {
        name: "0002_imports",
        sql: include_str!("../../migrations/0002_imports.sql"),
    },
    Migration {
        name: "0003_intents",
        sql: include_str!("../../migrations/0003_intents.sql"),
    },
    Migration {
        name: "0004_document_counts",
        sql: include_str!("../../migrations/0004_document_counts.sql"),
    },
    Migration {
        name: "0007_intent_hooks",
        sql: include_str!("../../migrations/0007_intent_hooks.sql"),
    },
];

/// The schema version this binary writes.
pub fn latest_version() -> i64 {
    MIGRATIONS.len() as i64
}

pub fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
}

pub fn application_id(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA application_id", [], |r| r.get(0))
}

/// `meta` key pinning the journal mode of a database used in single-host network mode.
pub const JOURNAL_MODE_META: &str = "journal_mode";
/// The pinned value: SQLite's rollback journal.
pub const JOURNAL_DELETE: &str = "delete";

/// The journal mode pinned in `meta`, if any (a fresh database has no `meta` table yet).
pub fn pinned_journal_mode(conn: &Connection) -> rusqlite::Result<Option<String>> {
    use rusqlite::OptionalExtension;
    let has_meta: bool = conn
        .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'")?
        .exists([])?;
    if !has_meta {
        return Ok(None);
    }
    conn.query_row(
        "SELECT value FROM meta WHERE key = ?1",
        [JOURNAL_MODE_META],
        |r| r.get(0),
    )
    .optional()
}

pub fn pin_journal_mode(conn: &Connection, mode: &str) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [JOURNAL_MODE_META, mode],
    )
    .map(drop)
}

/// Outcome of checking a database's version against this binary.
#[derive(Debug, PartialEq, Eq)]
pub enum Version {
    Current,
    /// Newer than this binary: readable, never written.
    TooNew(i64),
    /// Older (or new): `migrate` brings it up to date.
    Behind(i64),
}

pub fn check(conn: &Connection) -> rusqlite::Result<Version> {
    let found = user_version(conn)?;
    Ok(match found.cmp(&latest_version()) {
        std::cmp::Ordering::Equal => Version::Current,
        std::cmp::Ordering::Greater => Version::TooNew(found),
        std::cmp::Ordering::Less => Version::Behind(found),
    })
}

/// Apply the missing migrations. Returns the version reached. Re-checks the version inside the
/// write transaction, so a concurrent upgrade by another process is not applied twice.
pub fn migrate(conn: &mut Connection, now: &str) -> rusqlite::Result<i64> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let from = user_version(&tx)?;
    if from >= latest_version() {
        tx.commit()?;
        return Ok(from);
    }
    if from == 0 {
        tx.execute_batch(&format!("PRAGMA application_id = {APPLICATION_ID}"))?;
    }
    for migration in &MIGRATIONS[from as usize..] {
        tx.execute_batch(migration.sql)?;
    }
    let to = latest_version();
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('schema_updated_at', ?1)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [now],
    )?;
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('created_by', ?1) ON CONFLICT(key) DO NOTHING",
        [concat!("openkb ", env!("CARGO_PKG_VERSION"))],
    )?;
    tx.execute_batch(&format!("PRAGMA user_version = {to}"))?;
    tx.commit()?;
    Ok(to)
}
