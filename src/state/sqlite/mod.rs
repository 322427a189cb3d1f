//! The SQLite backend: `.openkb/state.db`, a WAL-mode SQLite file. The only module of the
//! crate that names rusqlite; everything above it sees the traits of `state::backend`.
//!
//! Connection rules (each one is there because its absence has bitten someone):
//! - One connection is opened first: it checks that the file is an openkb database (its
//!   `application_id`), switches to WAL and checks that SQLite answered `wal`, and applies the
//!   schema migrations. Only then is the r2d2 pool built, so a bad path or a foreign file fails
//!   at once with a clear message instead of after a pool time-out.
//! - On a network filesystem (see `netfs.rs`) writes are refused, or, with the single-host
//!   opt-in or a pinned `meta.journal_mode = delete`, the rollback journal replaces WAL.
//! - Every pooled connection sets `busy_timeout`, `synchronous=FULL` (a command that says
//!   "added" must survive a power cut; a WAL commit with FULL costs one fsync, about 0.25 ms
//!   here) and `foreign_keys=ON`.
//! - Every write is a `BEGIN IMMEDIATE` transaction: a deferred one that reads and then writes
//!   can fail with SQLITE_BUSY whatever the busy timeout. A transaction that still meets a busy
//!   database is retried whole a bounded number of times, then reported as [`Error::Busy`].
//! - A database whose schema is newer than this binary opens read-only: reads work, every write
//!   is refused with [`Error::SchemaTooNew`].
//!
//! Rows are read by column name through the `FromSql`/`ToSql` impls of the domain types
//! (`rows.rs`), so a column added to a table cannot shift the others.

pub mod build;
pub mod check;
mod documents;
mod extras;
mod imports;
mod intents;
mod log;
mod rows;
pub mod schema;
#[cfg(test)]
mod tests;

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior};
use serde_json::{Map, Value};

use super::backend::{Backend, CheckDepth, Description, DiskUsage, Reads, Writes};
use super::{
    Create, Document, FileId, HookGroup, ImportRecord, Intent, IntentFile, IntentOp, LogEntry,
    Status, StatusCounts, python_base::Base, utc_now,
};
use crate::error::{Error, Result};
use crate::netfs::FsPolicy;

use imports::build_database;

/// How long one statement waits for another connection's write lock before SQLITE_BUSY.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How many times a whole write transaction is tried before giving up with `Error::Busy`.
const WRITE_ATTEMPTS: u32 = 4;

/// The pool every backend uses: connections are opened lazily (the first one was already
/// checked by the caller), and a pool time-out names the file.
fn build_pool(
    manager: SqliteConnectionManager,
    path: &Path,
) -> Result<r2d2::Pool<SqliteConnectionManager>> {
    r2d2::Pool::builder()
        .max_size(8)
        .min_idle(Some(0))
        .connection_timeout(Duration::from_secs(30))
        .build(manager)
        .map_err(|e| Error::Invalid(format!("{}: cannot open: {e}", path.display())))
}

/// One opened `state.db`.
pub struct SqliteBackend {
    path: Arc<Path>,
    pool: r2d2::Pool<SqliteConnectionManager>,
    schema_version: i64,
    too_new: bool,
    /// Set when the file is on a network filesystem and the user did not opt in: reads work,
    /// writes are refused.
    refused: Option<crate::netfs::FsInfo>,
    /// True in single-host rollback-journal mode (pinned or opted in).
    rollback: bool,
    /// Opened with SQLITE_OPEN_READ_ONLY: every write is refused.
    read_only: bool,
    /// Device and inode of the file this backend opened: the file it reads and writes even
    /// when another file takes its path later (see [`Backend::check_still_in_place`]).
    file_id: FileId,
}

impl Drop for SqliteBackend {
    /// Runs before the pool closes its connections, while this process still holds the
    /// sidecars of the file it opened.
    fn drop(&mut self) {
        if self.check_still_in_place().is_err() {
            forget_sidecars_of_replaced_db(&self.path);
        }
    }
}

impl std::fmt::Debug for SqliteBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteBackend")
            .field("path", &self.path)
            .field("schema_version", &self.schema_version)
            .finish()
    }
}

impl SqliteBackend {
    /// Open (or create) the database at `path`, bring its schema up to date and build the pool.
    ///
    /// The journal mode depends on where the file lives (see `netfs.rs`): WAL on a local disk;
    /// on a network filesystem writes are refused ([`Error::NetworkFs`]) unless the user opted
    /// in (`fs.single_host`, from `OPENKB_NETWORK_FS=single-host`; see [`crate::settings`]),
    /// which selects the rollback journal and pins it in `meta.journal_mode`. A pinned database
    /// is opened in rollback mode by every process, wherever it runs, so the file server's own
    /// view (a local disk) cannot flip it to WAL.
    pub fn open(path: &Path, create: Create, fs: &FsPolicy) -> Result<SqliteBackend> {
        Self::open_with_busy_timeout(path, create, BUSY_TIMEOUT, fs)
    }

    /// [`SqliteBackend::open`] with a custom wait for another connection's write lock (tests
    /// use a short one to reach [`Error::Busy`] quickly).
    pub fn open_with_busy_timeout(
        path: &Path,
        create: Create,
        busy_timeout: Duration,
        fs: &FsPolicy,
    ) -> Result<SqliteBackend> {
        let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        if create == Create::IfMissing {
            flags |= OpenFlags::SQLITE_OPEN_CREATE;
        } else if !path.exists() {
            return Err(Error::NotStateDb {
                path: path.to_path_buf(),
                reason: "the file does not exist".into(),
            });
        }
        let network_fs = network_fs_of(path, fs)?;
        let opted_in = fs.single_host;
        let refuse = |fs: &crate::netfs::FsInfo| Error::NetworkFs {
            path: path.to_path_buf(),
            fs_type: fs.name.clone(),
        };
        if let Some(fs) = &network_fs
            && !opted_in
            && !path.exists()
        {
            // Never create a database where it could not be written safely.
            return Err(refuse(fs));
        }
        let sql = |e| sql_error(path, e);
        let mut conn = Connection::open_with_flags(path, flags).map_err(sql)?;
        conn.busy_timeout(busy_timeout).map_err(sql)?;
        check_identity(&conn, path)?;

        let version = schema::check(&conn).map_err(sql)?;
        let too_new = matches!(version, schema::Version::TooNew(_));
        let pinned = schema::pinned_journal_mode(&conn).map_err(sql)?;
        let rollback =
            pinned.as_deref() == Some(schema::JOURNAL_DELETE) || (network_fs.is_some() && opted_in);
        let mut refused = None;
        if too_new {
            // Read-only: neither the journal mode nor the schema is touched.
        } else if rollback {
            set_journal_mode(&conn, path, schema::JOURNAL_DELETE)?;
            conn.execute_batch("PRAGMA synchronous = FULL")
                .map_err(sql)?;
        } else if let Some(fs) = network_fs {
            if !matches!(version, schema::Version::Current) {
                // Bringing the schema up to date is a write.
                return Err(refuse(&fs));
            }
            refused = Some(fs);
        } else {
            set_journal_mode(&conn, path, "wal")?;
        }
        if let schema::Version::Behind(_) = version {
            schema::migrate(&mut conn, &utc_now()).map_err(sql)?;
        }
        if rollback && pinned.is_none() {
            schema::pin_journal_mode(&conn, schema::JOURNAL_DELETE).map_err(sql)?;
        }
        let schema_version = schema::user_version(&conn).map_err(sql)?;
        let file_id = opened_file_id(path)?;
        drop(conn);

        let manager = SqliteConnectionManager::file(path)
            .with_flags(OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .with_init(move |c| {
                c.busy_timeout(busy_timeout)?;
                // Checkpoint every ~16 MiB of WAL instead of SQLite's 4 MiB: a registration
                // writes about a dozen pages, so the default made one commit in ~90 pay for a
                // checkpoint, and pages rewritten between checkpoints are copied once.
                c.execute_batch(
                    "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;
                     PRAGMA wal_autocheckpoint = 4000;",
                )
            });
        let pool = build_pool(manager, path)?;
        Ok(SqliteBackend {
            path: Arc::from(path),
            pool,
            schema_version,
            too_new,
            refused,
            rollback,
            read_only: false,
            file_id,
        })
    }

    /// Open an existing database for reading only (SQLITE_OPEN_READ_ONLY): never creates the
    /// file, never changes its journal mode, never migrates its schema. On a read-only
    /// filesystem (where SQLite could not create the WAL index) the file is opened
    /// `immutable`, which is sound there because nobody can change it.
    ///
    /// A schema older than this binary is refused ([`Error::SchemaBehind`]): reading it with
    /// today's queries could fail half-way, and upgrading it is a write.
    pub fn open_read_only(path: &Path) -> Result<SqliteBackend> {
        if !path.exists() {
            return Err(Error::NotStateDb {
                path: path.to_path_buf(),
                reason: "the file does not exist".into(),
            });
        }
        // On a read-only filesystem SQLite cannot create the WAL index (`-shm`). With an empty
        // or absent `-wal` (a writer checkpointed it, as every write session does when it
        // ends) the database file alone is the whole truth, and `immutable` reads it without
        // any index. A non-empty `-wal` holds commits the file lacks: it is read through its
        // existing `-shm`, or refused, never ignored.
        let read_only_fs = path.parent().is_some_and(crate::fsx::on_read_only_fs);
        let wal_bytes = std::fs::metadata(sidecar_path(path, "-wal")).map_or(0, |m| m.len());
        let immutable = read_only_fs && wal_bytes == 0;
        let mut flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let target = if immutable {
            flags |= OpenFlags::SQLITE_OPEN_URI;
            immutable_uri(path)?
        } else {
            path.to_string_lossy().into_owned()
        };
        let sql = |e| sql_error(path, e);
        let unreadable_wal = |e: rusqlite::Error| {
            if read_only_fs && e.sqlite_error_code() == Some(ErrorCode::CannotOpen) {
                Error::Invalid(format!(
                    "{}: its write-ahead log (state.db-wal, {wal_bytes} bytes) cannot be read on \
                     this read-only filesystem without state.db-shm; run any openkb command on \
                     the KB once where it is writable (it folds the log into state.db)",
                    path.display()
                ))
            } else if e.sqlite_error_code() == Some(ErrorCode::ReadOnly) {
                // A hot rollback journal (a writer died mid-transaction in rollback mode):
                // only a writer may roll it back.
                Error::Invalid(format!(
                    "{}: holds a transaction interrupted by a crash (state.db-journal) that a \
                     read-only command cannot roll back; run any openkb command that writes \
                     (for example `openkb doctor --fix`)",
                    path.display()
                ))
            } else {
                sql_error(path, e)
            }
        };
        let conn = Connection::open_with_flags(&target, flags).map_err(unreadable_wal)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(sql)?;
        schema::application_id(&conn).map_err(unreadable_wal)?;
        check_identity(&conn, path)?;
        let version = schema::check(&conn).map_err(sql)?;
        let too_new = match version {
            schema::Version::Current => false,
            schema::Version::TooNew(_) => true,
            schema::Version::Behind(0) => {
                return Err(Error::NotStateDb {
                    path: path.to_path_buf(),
                    reason: "the database is empty (an interrupted `openkb init`?); \
                             `openkb doctor --fix` rebuilds it"
                        .into(),
                });
            }
            schema::Version::Behind(found) if found < 0 => {
                return Err(Error::NotStateDb {
                    path: path.to_path_buf(),
                    reason: format!(
                        "user_version is {found}, which no openkb writes: the database was \
                         changed by another program"
                    ),
                });
            }
            schema::Version::Behind(found) => {
                return Err(Error::SchemaBehind {
                    path: path.to_path_buf(),
                    found,
                    supported: schema::latest_version(),
                });
            }
        };
        let rollback = schema::pinned_journal_mode(&conn).map_err(sql)?.as_deref()
            == Some(schema::JOURNAL_DELETE);
        let schema_version = schema::user_version(&conn).map_err(sql)?;
        let file_id = opened_file_id(path)?;
        drop(conn);
        let manager = SqliteConnectionManager::file(&target)
            .with_flags(flags)
            .with_init(|c| {
                c.busy_timeout(BUSY_TIMEOUT)?;
                c.execute_batch("PRAGMA foreign_keys = ON;")
            });
        let pool = build_pool(manager, path)?;
        Ok(SqliteBackend {
            path: Arc::from(path),
            pool,
            schema_version,
            too_new,
            refused: None,
            rollback,
            read_only: true,
            file_id,
        })
    }
}

impl SqliteBackend {
    /// The network filesystem that makes this backend refuse writes, if any.
    pub fn refused_network_fs(&self) -> Option<&crate::netfs::FsInfo> {
        self.refused.as_ref()
    }

    /// A pooled connection.
    fn connection(&self) -> Result<r2d2::PooledConnection<SqliteConnectionManager>> {
        self.pool
            .get()
            .map_err(|e| Error::Invalid(format!("{}: cannot open: {e}", self.path.display())))
    }
}

impl Backend for SqliteBackend {
    fn location(&self) -> &Path {
        &self.path
    }

    fn describe(&self) -> Result<Description> {
        Ok(Description {
            backend: "sqlite",
            engine_version: format!("SQLite {}", rusqlite::version()),
            schema_version: self.schema_version,
            location: self.path.display().to_string(),
            journal_mode: Some(if self.rollback {
                schema::JOURNAL_DELETE
            } else {
                "wal"
            }),
            tls: None,
        })
    }

    fn schema_version(&self) -> i64 {
        self.schema_version
    }

    fn is_too_new(&self) -> bool {
        self.too_new
    }

    fn ensure_writable(&self) -> Result<()> {
        if self.read_only {
            return Err(Error::Invalid(format!(
                "{}: opened read-only; writes go through a write session",
                self.path.display()
            )));
        }
        if self.too_new {
            return Err(Error::SchemaTooNew {
                path: self.path.to_path_buf(),
                found: self.schema_version,
                supported: schema::latest_version(),
            });
        }
        if let Some(fs) = &self.refused {
            return Err(Error::NetworkFs {
                path: self.path.to_path_buf(),
                fs_type: fs.name.clone(),
            });
        }
        Ok(())
    }

    fn check_still_in_place(&self) -> Result<()> {
        let what = match FileId::of(&self.path) {
            Ok(now) if now == self.file_id => return Ok(()),
            Ok(_) => "replaced by another file",
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => "removed",
            Err(e) => return Err(Error::io("cannot read", &self.path, e)),
        };
        Err(Error::StateDbReplaced {
            path: self.path.to_path_buf(),
            what,
        })
    }

    fn file_id(&self) -> Option<FileId> {
        Some(self.file_id)
    }

    fn reader(&self) -> Result<Box<dyn Reads>> {
        Ok(Box::new(Sql {
            conn: self.connection()?,
            path: Arc::clone(&self.path),
        }))
    }

    fn write(&self, body: &mut dyn FnMut(&dyn Writes) -> Result<()>) -> Result<()> {
        self.ensure_writable()?;
        let mut conn = self.connection()?;
        let mut pause = Duration::from_millis(20);
        for attempt in 1..=WRITE_ATTEMPTS {
            match run_transaction(&mut conn, &self.path, body) {
                Err(Error::Busy { .. }) if attempt < WRITE_ATTEMPTS => {
                    std::thread::sleep(pause);
                    pause *= 2;
                }
                other => return other,
            }
        }
        Err(Error::Busy {
            path: self.path.to_path_buf(),
        })
    }

    fn checkpoint(&self) -> Result<()> {
        self.connection()?
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .map_err(|e| sql_error(&self.path, e))
    }

    fn end_write_session(&self) {
        if self.check_still_in_place().is_ok()
            && !self.rollback
            && self.ensure_writable().is_ok()
            && let Ok(conn) = self.connection()
        {
            // Without waiting for readers: a lock-free probe that outlives the session would
            // otherwise be the last connection, which cannot checkpoint, and the commits would
            // stay in the WAL alone, unseen by a copy of state.db or an `immutable` read on
            // read-only media.
            let _ = conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE)");
        }
    }

    fn check_integrity(&self, depth: CheckDepth) -> Result<Vec<String>> {
        let conn = self.connection()?;
        check::integrity_messages(&conn, depth == CheckDepth::Full)
            .map_err(|e| sql_error(&self.path, e))
    }

    fn rebuild_derived(&self) -> Result<()> {
        self.ensure_writable()?;
        let mut conn = self.connection()?;
        let run = |conn: &mut Connection| -> rusqlite::Result<()> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute_batch("REINDEX")?;
            documents::recount(&tx)?;
            tx.commit()
        };
        run(&mut conn).map_err(|e| sql_error(&self.path, e))
    }

    fn disk_usage(&self) -> Result<DiskUsage> {
        let size = |path: &Path| match std::fs::metadata(path) {
            Ok(meta) => Ok(meta.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(Error::io("cannot read", path, e)),
        };
        Ok(DiskUsage {
            database_bytes: size(&self.path)?,
            pending_log_bytes: size(&sidecar_path(&self.path, "-wal"))?,
        })
    }
}

fn run_transaction(
    conn: &mut Connection,
    path: &Arc<Path>,
    body: &mut dyn FnMut(&dyn Writes) -> Result<()>,
) -> Result<()> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| sql_error(path, e))?;
    let write = Sql {
        conn: tx,
        path: path.clone(),
    };
    body(&write)?;
    write.conn.commit().map_err(|e| sql_error(path, e))
}

/// A connection (pooled, or a transaction) and the file it belongs to: the one type that
/// implements the reads, and, inside a transaction, the writes.
pub(crate) struct Sql<C> {
    conn: C,
    path: Arc<Path>,
}

impl<C: Deref<Target = Connection>> Sql<C> {
    /// Run `f` on the connection, mapping SQLite's error to the domain's.
    fn run<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        f(&self.conn).map_err(|e| sql_error(&self.path, e))
    }

    /// Run a row scan that calls `visit` per row, carrying the visitor's own error out of the
    /// rusqlite callback unchanged.
    fn scan<T>(
        &self,
        visit: &mut dyn FnMut(T) -> Result<()>,
        scan: impl FnOnce(
            &Connection,
            &mut dyn FnMut(T) -> rusqlite::Result<()>,
        ) -> rusqlite::Result<()>,
    ) -> Result<()> {
        let mut failure = None;
        let outcome = scan(&self.conn, &mut |item| {
            visit(item).map_err(|e| {
                failure = Some(e);
                rusqlite::Error::QueryReturnedNoRows
            })
        });
        match (failure, outcome) {
            (Some(visitor_error), _) => Err(visitor_error),
            (None, Err(e)) => Err(sql_error(&self.path, e)),
            (None, Ok(())) => Ok(()),
        }
    }
}

impl<C: Deref<Target = Connection>> Reads for Sql<C> {
    fn location(&self) -> &Path {
        &self.path
    }

    fn get(&self, hash: &str) -> Result<Option<Document>> {
        self.run(|c| documents::get(c, hash))
    }

    fn is_known(&self, hash: &str) -> Result<bool> {
        self.run(|c| documents::is_known(c, hash))
    }

    fn find_by_path(&self, path: &str) -> Result<Option<Document>> {
        self.run(|c| documents::find_by_path(c, path))
    }

    fn claimants_of_path(&self, path: &str) -> Result<Vec<String>> {
        self.run(|c| documents::claimants_of_path(c, path))
    }

    fn find_by_doc_name(&self, doc_name: &str) -> Result<Option<Document>> {
        self.run(|c| documents::find_by_doc_name(c, doc_name))
    }

    fn find_by_name_key(&self, key: &str) -> Result<Vec<Document>> {
        self.run(|c| documents::find_by_name_key(c, key))
    }

    fn for_each_document(&self, visit: &mut dyn FnMut(Document) -> Result<()>) -> Result<()> {
        self.scan(visit, documents::for_each)
    }

    fn counts(&self) -> Result<StatusCounts> {
        self.run(documents::counts)
    }

    fn log_tail(&self, limit: Option<u64>, operation: Option<&str>) -> Result<Vec<LogEntry>> {
        self.run(|c| log::tail(c, limit, operation))
    }

    fn log_count(&self) -> Result<u64> {
        self.run(log::count)
    }

    fn for_each_log_entry(&self, visit: &mut dyn FnMut(LogEntry) -> Result<()>) -> Result<()> {
        self.scan(visit, log::for_each)
    }

    fn unfinished_intents(&self) -> Result<Vec<Intent>> {
        self.run(intents::list)
    }

    fn unfinished_intent_count(&self) -> Result<u64> {
        self.run(intents::count)
    }

    fn imports(&self) -> Result<Vec<ImportRecord>> {
        self.run(imports::list)
    }

    fn meta(&self, key: &str) -> Result<Option<String>> {
        self.run(|c| extras::meta(c, key))
    }

    fn untrusted_reason(&self, hash: &str) -> Result<Option<String>> {
        self.run(|c| extras::untrusted_reason(c, hash))
    }

    fn untrusted_entries(&self) -> Result<Vec<(String, String)>> {
        self.run(extras::untrusted_entries)
    }

    fn python_base(&self) -> Result<Option<Base>> {
        extras::python_base(&self.conn, &self.path)
    }
}

impl Writes for Sql<rusqlite::Transaction<'_>> {
    fn upsert_document(&self, doc: &Document, now: &str) -> Result<()> {
        self.run(|c| documents::upsert(c, doc, None, now))
    }

    fn set_status(
        &self,
        hash: &str,
        status: Status,
        error: Option<&str>,
        now: &str,
    ) -> Result<bool> {
        self.run(|c| documents::set_status(c, hash, status, error, now))
    }

    fn remove_document(&self, hash: &str) -> Result<bool> {
        self.run(|c| documents::remove(c, hash))
    }

    fn append_documents(&self, docs: &[Document], now: &str) -> Result<()> {
        self.run(|c| documents::append(c, docs, now))
    }

    fn append_log(
        &self,
        timestamp: &str,
        operation: &str,
        description: &str,
        recorded_at: Option<&str>,
    ) -> Result<LogEntry> {
        self.run(|c| log::append(c, timestamp, operation, description, recorded_at))
    }

    fn append_log_entries(
        &self,
        entries: &mut dyn Iterator<Item = (&str, &str, &str)>,
    ) -> Result<()> {
        self.run(|c| log::append_imported(c, entries))
    }

    fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.run(|c| extras::set_meta(c, key, value))
    }

    fn ensure_random_meta(&self, key: &str) -> Result<String> {
        self.run(|c| extras::ensure_random_meta(c, key))
    }

    fn record_intent(
        &self,
        operation: IntentOp,
        hash: &str,
        doc_name: Option<&str>,
        files: &[IntentFile],
        started_at: &str,
        pid: i64,
    ) -> Result<i64> {
        let files = IntentFile::list_to_json(files)?;
        self.run(|c| intents::record(c, operation, hash, doc_name, &files, started_at, pid))
    }

    fn record_intent_hook(&self, id: i64, hook: &HookGroup) -> Result<bool> {
        self.run(|c| intents::record_hook(c, id, hook))
    }

    fn delete_intent(&self, id: i64) -> Result<bool> {
        self.run(|c| intents::delete(c, id))
    }

    fn record_import(&self, record: &ImportRecord, now: &str) -> Result<ImportRecord> {
        self.run(|c| imports::record(c, record, now))
    }

    fn mark_untrusted(&self, hash: &str, reason: &str) -> Result<()> {
        self.run(|c| extras::mark_untrusted(c, hash, reason))
    }

    fn record_python_migrate(
        &self,
        sha256: &str,
        entries: u64,
        kept_as: &str,
        now: &str,
    ) -> Result<()> {
        self.run(|c| extras::record_python_migrate(c, sha256, entries, kept_as, now))
    }

    fn record_python_export(
        &self,
        sha256: &str,
        entries: &mut dyn Iterator<Item = (String, Map<String, Value>)>,
        now: &str,
    ) -> Result<()> {
        self.run(|c| extras::record_python_export(c, sha256, entries, now))
    }

    fn copy_documents(&self, docs: &[Document]) -> Result<()> {
        self.run(|c| docs.iter().try_for_each(|doc| documents::copy(c, doc)))
    }

    fn copy_log_entries(&self, entries: &[LogEntry]) -> Result<()> {
        self.run(|c| entries.iter().try_for_each(|entry| log::copy(c, entry)))
    }
}

/// `state.db` was replaced or removed while this process had it open. Its `-wal` and `-shm`
/// at the path are still the old file's (this process holds them open), and SQLite, seeing
/// the database moved, leaves them behind when it closes: paired with the new `state.db`
/// they would make it show the old file's last commits. Unlink them, but only when this
/// process holds exactly those files open; a `-wal` that arrived with the replacement is the
/// new file's and stays.
fn forget_sidecars_of_replaced_db(db: &Path) {
    let held = held_open_files();
    for suffix in ["-wal", "-shm"] {
        let sidecar = sidecar_path(db, suffix);
        if FileId::of(&sidecar).is_ok_and(|id| held.contains(&id)) {
            let _ = std::fs::remove_file(&sidecar);
        }
    }
}

/// The files this process has open (Linux: `/proc/self/fd`).
pub(crate) fn held_open_files() -> Vec<FileId> {
    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    fds.flatten()
        .filter_map(|fd| FileId::of(&fd.path()).ok())
        .collect()
}

/// The network filesystem holding the database's folder or the folder above it (the KB root
/// for `.openkb/state.db`; a mount point may sit between them), if any.
fn network_fs_of(path: &Path, policy: &FsPolicy) -> Result<Option<crate::netfs::FsInfo>> {
    let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return Ok(None);
    };
    let mut dirs = vec![dir];
    dirs.extend(dir.parent().filter(|d| !d.as_os_str().is_empty()));
    // A folder that does not exist is SQLite's to report when it opens the file.
    dirs.retain(|d| d.exists());
    Ok(crate::netfs::detect_any(&dirs, policy)?.filter(|fs| fs.network))
}

/// Switch the journal mode and check SQLite's answer: it keeps the old mode when it cannot
/// switch (e.g. leaving WAL while another connection has the file open).
fn set_journal_mode(conn: &Connection, path: &Path, mode: &str) -> Result<()> {
    // Leaving WAL needs every other connection closed. A store this process dropped a moment
    // ago (a read session before a write session) may still be closing its last pooled
    // connection on r2d2's worker thread, so a busy answer is retried briefly.
    let mut pause = Duration::from_millis(5);
    let answer: String = loop {
        match conn.query_row(&format!("PRAGMA journal_mode={mode}"), [], |r| r.get(0)) {
            Ok(answer) => break answer,
            Err(e)
                if matches!(
                    e.sqlite_error_code(),
                    Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
                ) && pause < Duration::from_secs(1) =>
            {
                std::thread::sleep(pause);
                pause *= 2;
            }
            Err(e) => return Err(sql_error(path, e)),
        }
    };
    if answer.eq_ignore_ascii_case(mode) {
        return Ok(());
    }
    Err(Error::Invalid(if mode == "wal" {
        format!(
            "{}: SQLite refused WAL mode (journal_mode is {answer}); is the folder on a \
             network filesystem? run `openkb doctor`",
            path.display()
        )
    } else {
        format!(
            "{}: cannot switch to journal_mode={mode} (still {answer}); another process has \
             the database open: close other openkb processes and try again",
            path.display()
        )
    }))
}

fn check_identity(conn: &Connection, path: &Path) -> Result<()> {
    let not_ours = |reason: String| Error::NotStateDb {
        path: path.to_path_buf(),
        reason,
    };
    let app_id = match schema::application_id(conn) {
        Ok(id) => id,
        Err(e) if e.sqlite_error_code() == Some(ErrorCode::NotADatabase) => {
            return Err(not_ours("the file is not a SQLite database".into()));
        }
        Err(e) => return Err(sql_error(path, e)),
    };
    if app_id == schema::APPLICATION_ID {
        return Ok(());
    }
    if app_id != 0 {
        return Err(not_ours(format!(
            "it belongs to another application (application_id {app_id:#x})"
        )));
    }
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
        .map_err(|e| sql_error(path, e))?;
    if tables > 0 {
        return Err(not_ours(
            "it is a SQLite database with tables of another program".into(),
        ));
    }
    Ok(())
}

/// The (dev, inode) of the file just opened at `path`.
fn opened_file_id(path: &Path) -> Result<FileId> {
    FileId::of(path).map_err(|e| Error::io("cannot read", path, e))
}

/// True when `path` is a database file no schema was ever written to: what a process killed
/// while creating it leaves (0 bytes, or a bare SQLite header with no table). A file that
/// cannot be read as a database is not blank (doctor reports it). Opened read-only, except
/// beside a hot rollback journal (the creator died mid-transaction), which SQLite rolls back
/// on a read-write open: a file created empty comes back empty.
pub fn is_blank(path: &Path) -> bool {
    match std::fs::metadata(path) {
        Ok(meta) if meta.len() == 0 => return true,
        Ok(_) => {}
        Err(_) => return false,
    }
    let access = if sidecar_path(path, "-journal").exists() {
        OpenFlags::SQLITE_OPEN_READ_WRITE
    } else {
        OpenFlags::SQLITE_OPEN_READ_ONLY
    };
    let Ok(conn) = Connection::open_with_flags(path, access | OpenFlags::SQLITE_OPEN_NO_MUTEX)
    else {
        return false;
    };
    let blank = || -> rusqlite::Result<bool> {
        let tables: i64 = conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
        Ok(tables == 0 && schema::user_version(&conn)? == 0 && schema::application_id(&conn)? == 0)
    };
    blank().unwrap_or(false)
}

/// `<db>-wal`, `<db>-shm`: SQLite's files beside the database.
pub fn sidecar_path(db: &Path, suffix: &str) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// `file:<path>?immutable=1`, with the characters that mean something in a URI escaped.
fn immutable_uri(path: &Path) -> Result<String> {
    let text = path.to_str().ok_or_else(|| {
        Error::Invalid(format!(
            "{}: the path is not valid UTF-8; cannot open it on a read-only filesystem",
            path.display()
        ))
    })?;
    let mut uri = String::from("file:");
    for c in text.chars() {
        match c {
            '%' | '?' | '#' => uri.push_str(&format!("%{:02X}", c as u32)),
            c => uri.push(c),
        }
    }
    uri.push_str("?immutable=1");
    Ok(uri)
}

/// Map a SQLite error to the library error: busy/locked become [`Error::Busy`].
pub(crate) fn sql_error(path: &Path, e: rusqlite::Error) -> Error {
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => Error::Busy {
            path: path.to_path_buf(),
        },
        Some(ErrorCode::NotADatabase) => Error::NotStateDb {
            path: path.to_path_buf(),
            reason: "the file is not a SQLite database".into(),
        },
        _ => super::backend::storage_error(path, format!("database error: {e}")),
    }
}
