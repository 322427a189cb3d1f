//! The state engine: `.openkb/state.db`, a WAL-mode SQLite database holding the document
//! registry, the operations log and a few meta facts.
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
//! Callers that mutate the KB hold the KB flock (see `kb.rs`) before they open a write
//! transaction, never the other way round.

pub mod build;
pub mod check;
pub mod documents;
pub mod imports;
pub mod intents;
pub mod log;
pub mod python_base;
pub mod schema;
#[cfg(test)]
mod tests;
pub mod untrusted;

use std::path::{Path, PathBuf};
use std::time::Duration;

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior};

pub use documents::{Document, Status, StatusCounts};
pub use intents::{HookGroup, Intent, IntentFile, IntentOp};
pub use log::LogEntry;

use crate::error::{Error, Result};
use crate::names;
use crate::netfs::FsPolicy;

/// How long one statement waits for another connection's write lock before SQLITE_BUSY.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How many times a whole write transaction is tried before giving up with `Error::Busy`.
const WRITE_ATTEMPTS: u32 = 4;

/// The pool every store uses: connections are opened lazily (the first one was already checked
/// by the caller), and a pool time-out names the file.
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

/// ISO-8601 UTC with milliseconds, the format of every `*_at` column.
pub fn utc_now() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// Local time as `wiki/log.md` shows it.
pub fn local_log_timestamp() -> String {
    chrono::Local::now().format("%Y-%m-%d %H:%M:%S").to_string()
}

/// Whether `open` may create the database file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Create {
    IfMissing,
    Never,
}

pub struct Store {
    path: PathBuf,
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
    /// Device and inode of the file this store opened: the file it reads and writes even
    /// when another file takes its path later (see [`Store::check_still_at_path`]).
    file_id: FileId,
}

/// Device and inode of a database file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

impl FileId {
    pub fn of(path: &Path) -> std::io::Result<FileId> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path)?;
        Ok(FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }
}

/// Proof that the holder may open a write transaction ([`Store::write`]). It cannot be made
/// outside this crate: a library caller gets writes only through
/// `session::WriteSession::write`, which owns the KB's exclusive lock, has run recovery and
/// checks the database's identity. Inside the crate it is granted by the write session and by
/// the builders of a brand-new database file that nobody else can see yet (migrate's import,
/// doctor's rebuild); `grep WriteAccess::granted` lists every place.
///
/// The crate's one doc test proves the promise: outside the crate, no `WriteAccess` can be
/// made, so `Store::write` cannot be called.
///
/// ```compile_fail,E0624
/// fn write_without_a_session(store: &openkb::state::Store) {
///     let access = openkb::state::WriteAccess::granted();
///     store.write(&access, |tx| tx.append_log("ingest", "x")).unwrap();
/// }
/// ```
pub struct WriteAccess {
    _private: (),
}

impl WriteAccess {
    pub(crate) fn granted() -> WriteAccess {
        WriteAccess { _private: () }
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("schema_version", &self.schema_version)
            .finish()
    }
}

impl Store {
    /// [`Store::open_with`] under the default policy (no network-filesystem opt-in), for unit
    /// tests; every caller in the library passes the KB's settings.
    #[cfg(test)]
    pub(crate) fn open(path: &Path, create: Create) -> Result<Store> {
        Self::open_with(path, create, &FsPolicy::default())
    }

    /// Open (or create) the database at `path`, bring its schema up to date and build the pool.
    ///
    /// The journal mode depends on where the file lives (see `netfs.rs`): WAL on a local disk;
    /// on a network filesystem writes are refused ([`Error::NetworkFs`]) unless the user opted
    /// in (`fs.single_host`, from `OPENKB_NETWORK_FS=single-host`; see [`crate::settings`]),
    /// which selects the rollback journal and pins it in `meta.journal_mode`. A pinned database
    /// is opened in rollback mode by every process, wherever it runs, so the file server's own
    /// view (a local disk) cannot flip it to WAL.
    pub(crate) fn open_with(path: &Path, create: Create, fs: &FsPolicy) -> Result<Store> {
        Self::open_with_busy_timeout(path, create, BUSY_TIMEOUT, fs)
    }

    /// [`Store::open_with`] with a custom wait for another connection's write lock (tests use a
    /// short one to reach [`Error::Busy`] quickly).
    pub(crate) fn open_with_busy_timeout(
        path: &Path,
        create: Create,
        busy_timeout: Duration,
        fs: &FsPolicy,
    ) -> Result<Store> {
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
        Ok(Store {
            path: path.to_path_buf(),
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
    pub fn open_read_only(path: &Path) -> Result<Store> {
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
        Ok(Store {
            path: path.to_path_buf(),
            pool,
            schema_version,
            too_new,
            refused: None,
            rollback,
            read_only: true,
            file_id,
        })
    }

    /// Device and inode of the file this store opened.
    pub fn file_id(&self) -> FileId {
        self.file_id
    }

    /// Fails with [`Error::StateDbReplaced`] when the store's path no longer names the file
    /// it opened: the file was removed, or another file (a restore, a sync client's copy, a
    /// rebuild) was renamed over it. Writes to the old file would be lost with it.
    pub fn check_still_at_path(&self) -> Result<()> {
        let what = match FileId::of(&self.path) {
            Ok(now) if now == self.file_id => return Ok(()),
            Ok(_) => "replaced by another file",
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => "removed",
            Err(e) => return Err(Error::io("cannot read", &self.path, e)),
        };
        Err(Error::StateDbReplaced {
            path: self.path.clone(),
            what,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn schema_version(&self) -> i64 {
        self.schema_version
    }

    /// True when the database was written by a newer openkb: it can be read, not written.
    pub fn is_too_new(&self) -> bool {
        self.too_new
    }

    /// True when the database uses the rollback journal (single-host network mode) instead
    /// of WAL.
    pub fn is_rollback_mode(&self) -> bool {
        self.rollback
    }

    /// The network filesystem that makes this store refuse writes, if any.
    pub fn refused_network_fs(&self) -> Option<&crate::netfs::FsInfo> {
        self.refused.as_ref()
    }

    /// The error every write would meet (a too-new schema, a network filesystem without the
    /// single-host opt-in), if any. Commands that write files before their database row call
    /// this first, so a refused write leaves nothing half-done.
    pub fn ensure_writable(&self) -> Result<()> {
        if self.read_only {
            return Err(Error::Invalid(format!(
                "{}: opened read-only; writes go through a write session",
                self.path.display()
            )));
        }
        if self.too_new {
            return Err(Error::SchemaTooNew {
                path: self.path.clone(),
                found: self.schema_version,
                supported: schema::latest_version(),
            });
        }
        if let Some(fs) = &self.refused {
            return Err(Error::NetworkFs {
                path: self.path.clone(),
                fs_type: fs.name.clone(),
            });
        }
        Ok(())
    }

    /// A pooled connection for reading.
    pub fn reader(&self) -> Result<Reader> {
        let conn = self
            .pool
            .get()
            .map_err(|e| Error::Invalid(format!("{}: cannot open: {e}", self.path.display())))?;
        Ok(Reader {
            conn,
            path: self.path.clone(),
        })
    }

    /// Run `body` in a `BEGIN IMMEDIATE` transaction and commit it. A busy database retries the
    /// whole body (so it must be repeatable); the last failure becomes [`Error::Busy`].
    ///
    /// Requires a [`WriteAccess`]: outside this crate, write through a write session.
    pub fn write<T>(
        &self,
        _access: &WriteAccess,
        mut body: impl FnMut(&WriteTx<'_>) -> Result<T>,
    ) -> Result<T> {
        self.ensure_writable()?;
        let mut reader = self.reader()?;
        let mut pause = Duration::from_millis(20);
        for attempt in 1..=WRITE_ATTEMPTS {
            match run_transaction(&mut reader.conn, &self.path, &mut body) {
                Err(Error::Busy { .. }) if attempt < WRITE_ATTEMPTS => {
                    std::thread::sleep(pause);
                    pause *= 2;
                }
                other => return other,
            }
        }
        Err(Error::Busy {
            path: self.path.clone(),
        })
    }

    /// Move the WAL's content into the database file (after bulk imports), so readers do not
    /// pay for a long WAL and the `-wal` file shrinks.
    pub(crate) fn checkpoint(&self) -> Result<()> {
        let reader = self.reader()?;
        reader
            .conn
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .map_err(|e| sql_error(&self.path, e))
    }

    // Convenience reads, each on a pooled connection.

    pub fn get(&self, hash: &str) -> Result<Option<Document>> {
        self.reader()?.get(hash)
    }

    pub fn is_known(&self, hash: &str) -> Result<bool> {
        self.reader()?.is_known(hash)
    }

    pub fn find_by_path(&self, path: &str) -> Result<Option<Document>> {
        self.reader()?.find_by_path(path)
    }

    pub fn find_by_doc_name(&self, doc_name: &str) -> Result<Option<Document>> {
        self.reader()?.find_by_doc_name(doc_name)
    }

    pub fn list(&self) -> Result<Vec<Document>> {
        self.reader()?.list()
    }

    pub fn counts(&self) -> Result<StatusCounts> {
        self.reader()?.counts()
    }

    pub fn log_tail(&self, limit: Option<u64>, operation: Option<&str>) -> Result<Vec<LogEntry>> {
        self.reader()?.log_tail(limit, operation)
    }
}

fn run_transaction<T>(
    conn: &mut Connection,
    path: &Path,
    body: &mut impl FnMut(&WriteTx<'_>) -> Result<T>,
) -> Result<T> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| sql_error(path, e))?;
    let write = WriteTx { tx, path };
    let value = body(&write)?;
    write.tx.commit().map_err(|e| sql_error(path, e))?;
    Ok(value)
}

/// Typed reads, shared by pooled readers and write transactions.
pub trait Queries {
    fn conn(&self) -> &Connection;
    fn db_path(&self) -> &Path;

    fn get(&self, hash: &str) -> Result<Option<Document>> {
        documents::get(self.conn(), hash).map_err(|e| sql_error(self.db_path(), e))
    }

    fn is_known(&self, hash: &str) -> Result<bool> {
        documents::is_known(self.conn(), hash).map_err(|e| sql_error(self.db_path(), e))
    }

    /// First document (registry order) whose `path`, `raw_path` or `source_path` is `path`.
    fn find_by_path(&self, path: &str) -> Result<Option<Document>> {
        documents::find_by_path(self.conn(), path).map_err(|e| sql_error(self.db_path(), e))
    }

    /// Hashes of the documents (registry order) that name `path` as their `path`, `raw_path`
    /// or `source_path`.
    fn claimants_of_path(&self, path: &str) -> Result<Vec<String>> {
        documents::claimants_of_path(self.conn(), path).map_err(|e| sql_error(self.db_path(), e))
    }

    fn find_by_doc_name(&self, doc_name: &str) -> Result<Option<Document>> {
        documents::find_by_doc_name(self.conn(), doc_name).map_err(|e| sql_error(self.db_path(), e))
    }

    /// Documents whose name key (NFKC of doc_name, or of the name's stem) is NFKC(`name`),
    /// in registry order.
    fn find_by_name_key(&self, name: &str) -> Result<Vec<Document>> {
        documents::find_by_name_key(self.conn(), &names::nfkc(name))
            .map_err(|e| sql_error(self.db_path(), e))
    }

    fn list(&self) -> Result<Vec<Document>> {
        documents::list(self.conn()).map_err(|e| sql_error(self.db_path(), e))
    }

    fn for_each_document(&self, visit: &mut dyn FnMut(Document) -> Result<()>) -> Result<()> {
        forward_visits(self.db_path(), visit, |v| {
            documents::for_each(self.conn(), v)
        })
    }

    fn counts(&self) -> Result<StatusCounts> {
        documents::counts(self.conn()).map_err(|e| sql_error(self.db_path(), e))
    }

    fn log_tail(&self, limit: Option<u64>, operation: Option<&str>) -> Result<Vec<LogEntry>> {
        log::tail(self.conn(), limit, operation).map_err(|e| sql_error(self.db_path(), e))
    }

    fn log_count(&self) -> Result<u64> {
        log::count(self.conn()).map_err(|e| sql_error(self.db_path(), e))
    }

    fn last_log_of(&self, operation: &str) -> Result<Option<LogEntry>> {
        log::last_of(self.conn(), operation).map_err(|e| sql_error(self.db_path(), e))
    }

    fn for_each_log_entry(&self, visit: &mut dyn FnMut(LogEntry) -> Result<()>) -> Result<()> {
        forward_visits(self.db_path(), visit, |v| log::for_each(self.conn(), v))
    }

    fn meta(&self, key: &str) -> Result<Option<String>> {
        use rusqlite::OptionalExtension;
        self.conn()
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(|e| sql_error(self.db_path(), e))
    }
}

/// Run a row scan that calls `visit` per row, carrying the visitor's own error out of the
/// rusqlite callback unchanged.
fn forward_visits<T>(
    path: &Path,
    visit: &mut dyn FnMut(T) -> Result<()>,
    scan: impl FnOnce(&mut dyn FnMut(T) -> rusqlite::Result<()>) -> rusqlite::Result<()>,
) -> Result<()> {
    let mut failure = None;
    let outcome = scan(&mut |item| {
        visit(item).map_err(|e| {
            failure = Some(e);
            rusqlite::Error::QueryReturnedNoRows
        })
    });
    match (failure, outcome) {
        (Some(visitor_error), _) => Err(visitor_error),
        (None, Err(e)) => Err(sql_error(path, e)),
        (None, Ok(())) => Ok(()),
    }
}

/// A pooled connection, for reads outside a write transaction.
pub struct Reader {
    conn: r2d2::PooledConnection<SqliteConnectionManager>,
    path: PathBuf,
}

impl Queries for Reader {
    fn conn(&self) -> &Connection {
        &self.conn
    }
    fn db_path(&self) -> &Path {
        &self.path
    }
}

/// An open `BEGIN IMMEDIATE` transaction: the typed writes, plus every read of [`Queries`].
pub struct WriteTx<'c> {
    tx: rusqlite::Transaction<'c>,
    path: &'c Path,
}

impl Queries for WriteTx<'_> {
    fn conn(&self) -> &Connection {
        &self.tx
    }
    fn db_path(&self) -> &Path {
        self.path
    }
}

impl WriteTx<'_> {
    /// Insert or update a document by hash (`INSERT ... ON CONFLICT DO UPDATE`). An update
    /// keeps the document's registry position and `created_at`. Refuses a malformed hash and a
    /// `doc_name` owned by another document.
    pub fn upsert_document(&self, doc: &Document) -> Result<()> {
        if !names::is_valid_hash(&doc.hash) {
            return Err(Error::InvalidHash {
                hash: doc.hash.clone(),
            });
        }
        if let Some(doc_name) = &doc.doc_name
            && let Some(owner) = self.find_by_doc_name(doc_name)?
            && owner.hash != doc.hash
        {
            return Err(Error::DocNameTaken {
                doc_name: doc_name.clone(),
                owner: owner.hash,
            });
        }
        documents::upsert(&self.tx, doc, None, &utc_now()).map_err(|e| sql_error(self.path, e))
    }

    /// Set a document's lifecycle status (and the error that explains a failure).
    pub fn set_status(&self, hash: &str, status: Status, error: Option<&str>) -> Result<bool> {
        documents::set_status(&self.tx, hash, status, error, &utc_now())
            .map_err(|e| sql_error(self.path, e))
    }

    /// Delete a document by hash; false when it was not registered.
    pub fn remove_document(&self, hash: &str) -> Result<bool> {
        documents::remove(&self.tx, hash).map_err(|e| sql_error(self.path, e))
    }

    /// Append a log row stamped now. Render it into `wiki/log.md` after the commit
    /// (see `crate::log_md::append`).
    pub fn append_log(&self, operation: &str, description: &str) -> Result<LogEntry> {
        log::append(
            &self.tx,
            &local_log_timestamp(),
            operation,
            description,
            Some(&utc_now()),
        )
        .map_err(|e| sql_error(self.path, e))
    }

    /// Append a log row with a given timestamp text (imports keep what they read).
    pub fn import_log(
        &self,
        timestamp: &str,
        operation: &str,
        description: &str,
    ) -> Result<LogEntry> {
        log::append(&self.tx, timestamp, operation, description, None)
            .map_err(|e| sql_error(self.path, e))
    }

    pub fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.tx
            .execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [key, value],
            )
            .map(drop)
            .map_err(|e| sql_error(self.path, e))
    }

    /// Escape hatch for modules of the state layer's own family (imports, intents) that need
    /// statements of their own inside this transaction.
    pub fn connection(&self) -> &Connection {
        &self.tx
    }
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
pub(crate) fn sidecar_path(db: &Path, suffix: &str) -> PathBuf {
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
        _ => Error::Sqlite {
            path: path.to_path_buf(),
            source: e,
        },
    }
}
