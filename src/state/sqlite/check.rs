//! Health checks of a `state.db` file, for `openkb doctor`.
//!
//! [`inspect`] opens the file without creating it, without migrating it and without changing
//! its journal mode (unlike [`Store::open_with`](super::Store::open_with)), so a damaged, foreign or
//! too-new database can be examined and reported as it is.

use std::path::Path;

use rusqlite::{Connection, ErrorCode, OpenFlags};

use super::schema;

/// What the file turned out to be.
#[derive(Debug)]
pub enum DbHealth {
    /// SQLite cannot read it as a database (or it is damaged before any table can be read).
    NotADatabase(String),
    /// A SQLite database of another program.
    Foreign(String),
    /// An openkb database; see the report for its state.
    Inspected(DbReport),
}

#[derive(Debug, Default)]
pub struct DbReport {
    pub user_version: i64,
    pub journal_mode: String,
    /// `meta.journal_mode`, when single-host rollback mode is pinned.
    pub pinned_journal_mode: Option<String>,
    /// Messages of `quick_check` (or `integrity_check` when `full`); empty when it said "ok".
    pub integrity_errors: Vec<String>,
    /// Rows of `foreign_key_check` (`full` only), as text.
    pub foreign_key_errors: Vec<String>,
    /// Size of the write-ahead log (`-wal`); 0 when there is none.
    pub wal_bytes: u64,
}

impl DbReport {
    pub fn is_corrupt(&self) -> bool {
        !self.integrity_errors.is_empty()
    }
}

const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// How many integrity messages to collect at most (SQLite's default is 100 as well).
const MAX_ERRORS: u32 = 100;

/// Examine `path` (which must exist). `full` runs `integrity_check` and `foreign_key_check`
/// instead of the faster `quick_check`.
pub fn inspect(path: &Path, full: bool) -> crate::Result<DbHealth> {
    // Look at the header before SQLite does: SQLite, handed a file that is not a database
    // beside a `-wal`, deletes that `-wal` when the connection closes, and the `-wal` may be
    // the only copy of recent transactions (or evidence). An empty file would be taken for a
    // new database, and an empty registry would make every document look new.
    let mut header = [0u8; 16];
    let read = std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read(&mut f, &mut header))
        .map_err(|e| crate::Error::io("cannot read", path, e))?;
    if read == 0 {
        return Ok(DbHealth::NotADatabase("the file is empty".to_owned()));
    }
    if read < header.len() || &header != SQLITE_HEADER {
        return Ok(DbHealth::NotADatabase(
            "the file is not a SQLite database".to_owned(),
        ));
    }
    let conn = match open_existing(path) {
        Ok(c) => c,
        Err(e) => return classify(path, e),
    };
    match examine(&conn, full) {
        Ok(DbHealth::Inspected(mut report)) => {
            report.wal_bytes =
                std::fs::metadata(super::sidecar_path(path, "-wal")).map_or(0, |m| m.len());
            Ok(DbHealth::Inspected(report))
        }
        Ok(health) => Ok(health),
        Err(e) => classify(path, e),
    }
}

fn open_existing(path: &Path) -> rusqlite::Result<Connection> {
    // Read-only first: a read-only connection never checkpoints or removes the WAL when it
    // closes, so inspecting changes nothing. Read-write (never CREATE) only when SQLite cannot
    // open the file read-only (a WAL database whose -shm is missing in a read-only folder).
    let ro = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = match Connection::open_with_flags(path, ro) {
        Ok(c) => c,
        Err(e) if e.sqlite_error_code() == Some(ErrorCode::CannotOpen) => {
            Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?
        }
        Err(e) => return Err(e),
    };
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

fn examine(conn: &Connection, full: bool) -> rusqlite::Result<DbHealth> {
    let app_id = schema::application_id(conn)?;
    let tables: i64 = conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
    if app_id != schema::APPLICATION_ID && (app_id != 0 || tables > 0) {
        return Ok(DbHealth::Foreign(if app_id != 0 {
            format!("it belongs to another application (application_id {app_id:#x})")
        } else {
            "it is a SQLite database with tables of another program".to_owned()
        }));
    }
    let mut report = DbReport {
        user_version: schema::user_version(conn)?,
        journal_mode: conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?,
        pinned_journal_mode: schema::pinned_journal_mode(conn)?,
        ..DbReport::default()
    };
    report.integrity_errors = integrity_errors(conn, full)?;
    if full {
        report.foreign_key_errors = foreign_key_errors(conn)?;
    }
    Ok(DbHealth::Inspected(report))
}

/// Messages of `quick_check` (or `integrity_check` when `full`); empty when it said "ok".
fn integrity_errors(conn: &Connection, full: bool) -> rusqlite::Result<Vec<String>> {
    let pragma = if full {
        "integrity_check"
    } else {
        "quick_check"
    };
    let mut stmt = conn.prepare(&format!("PRAGMA {pragma}({MAX_ERRORS})"))?;
    let messages: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(messages.into_iter().filter(|m| m != "ok").collect())
}

/// Rows of `foreign_key_check`, as text.
fn foreign_key_errors(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare("PRAGMA foreign_key_check")?;
    stmt.query_map([], |r| {
        Ok(format!(
            "table {} row {} has no parent in {}",
            r.get::<_, String>("table")?,
            r.get::<_, Option<i64>>("rowid")?
                .map_or_else(|| "?".to_owned(), |n| n.to_string()),
            r.get::<_, String>("parent")?
        ))
    })?
    .collect()
}

/// Every problem [`integrity_errors`] and, when `full`, [`foreign_key_errors`] find: the
/// backend's integrity check of an opened database.
pub(super) fn integrity_messages(conn: &Connection, full: bool) -> rusqlite::Result<Vec<String>> {
    let mut found = integrity_errors(conn, full)?;
    if full {
        found.extend(foreign_key_errors(conn)?);
    }
    Ok(found)
}

/// Corruption and "not a database" are findings, not failures of doctor itself; a busy or
/// unreadable file is a failure (nothing can be said about it).
fn classify(path: &Path, e: rusqlite::Error) -> crate::Result<DbHealth> {
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => Ok(DbHealth::NotADatabase(
            "the file is not a SQLite database".to_owned(),
        )),
        Some(ErrorCode::DatabaseCorrupt) => Ok(DbHealth::NotADatabase(format!(
            "SQLite reports the database is damaged ({e})"
        ))),
        _ => Err(super::sql_error(path, e)),
    }
}
