//! The state engine: the document registry, the operations log, the intents of operations in
//! flight and a few meta facts, behind one [`Store`].
//!
//! What a backend must do is written down once, in [`backend`] (the traits, with every
//! method's contract), and checked by one conformance suite (`conformance.rs`). The store
//! dispatches over a boxed backend, so no command is generic over one: SQLite
//! ([`sqlite`], `.openkb/state.db`, the embedded default) today, PostgreSQL for team mode.
//!
//! The API callers use:
//! - [`Store`]: an opened backend; reads on a pooled connection, [`Store::write`] runs one
//!   write transaction (retried whole when it meets another writer).
//! - [`Queries`]: every read, the same on a [`Reader`] and inside a write transaction.
//! - [`WriteTx`]: every write, inside one transaction. It validates input and stamps times
//!   and the process id once for every backend.
//! - [`WriteAccess`]: the proof a write session gives that writing is allowed.
//!
//! Callers that mutate the KB hold the KB flock (see `kb.rs`) before they open a write
//! transaction, never the other way round.

pub mod backend;
#[cfg(test)]
pub(crate) mod conformance;
pub mod documents;
pub mod imports;
pub mod intents;
pub mod log;
pub mod postgres;
pub mod python_base;
pub mod sqlite;
pub mod transfer;
pub mod untrusted;

use std::path::Path;

use serde_json::{Map, Value};

pub use backend::{Backend, CheckDepth, Description, DiskUsage, Reads, Writes};
pub use documents::{Document, Status, StatusCounts};
pub use imports::{ImportKind, ImportRecord};
pub use intents::{HookGroup, Intent, IntentFile, IntentOp};
pub use log::LogEntry;
pub use sqlite::{build, check, is_blank, schema, sidecar_path};

use crate::error::{Error, Result};
use crate::names;
use crate::netfs::FsPolicy;

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

/// An opened state backend.
#[derive(Debug)]
pub struct Store {
    backend: Box<dyn Backend>,
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

impl Store {
    /// A store over any backend (the PostgreSQL backend's constructor hands one here).
    pub fn from_backend(backend: Box<dyn Backend>) -> Store {
        Store { backend }
    }

    /// [`Store::open_with`] under the default policy (no network-filesystem opt-in), for unit
    /// tests; every caller in the library passes the KB's settings.
    #[cfg(test)]
    pub(crate) fn open(path: &Path, create: Create) -> Result<Store> {
        Self::open_with(path, create, &FsPolicy::default())
    }

    /// Open (or create) the SQLite database at `path` under the network-filesystem policy
    /// `fs`, bring its schema up to date and build the pool (see
    /// [`sqlite::SqliteBackend::open`]).
    pub(crate) fn open_with(path: &Path, create: Create, fs: &FsPolicy) -> Result<Store> {
        Ok(Store::from_backend(Box::new(sqlite::SqliteBackend::open(
            path, create, fs,
        )?)))
    }

    /// [`Store::open`] with a custom wait for another connection's write lock (tests use a
    /// short one to reach [`Error::Busy`] quickly).
    #[cfg(test)]
    pub(crate) fn open_with_busy_timeout(
        path: &Path,
        create: Create,
        busy_timeout: std::time::Duration,
        fs: &FsPolicy,
    ) -> Result<Store> {
        Ok(Store::from_backend(Box::new(
            sqlite::SqliteBackend::open_with_busy_timeout(path, create, busy_timeout, fs)?,
        )))
    }

    /// Open an existing SQLite database for reading only: never creates, migrates or changes
    /// it (see [`sqlite::SqliteBackend::open_read_only`]).
    pub fn open_read_only(path: &Path) -> Result<Store> {
        Ok(Store::from_backend(Box::new(
            sqlite::SqliteBackend::open_read_only(path)?,
        )))
    }

    /// The backend, for what only maintenance asks (describe, integrity, disk usage).
    pub fn backend(&self) -> &dyn Backend {
        &*self.backend
    }

    /// Device and inode of the database file this store opened (`None` for a server).
    pub fn file_id(&self) -> Option<FileId> {
        self.backend.file_id()
    }

    /// Fails with [`Error::StateDbReplaced`] when the store's path no longer names the file
    /// it opened: the file was removed, or another file (a restore, a sync client's copy, a
    /// rebuild) was renamed over it. Writes to the old file would be lost with it.
    pub fn check_still_at_path(&self) -> Result<()> {
        self.backend.check_still_in_place()
    }

    /// Where the data lives (the database file for SQLite).
    pub fn path(&self) -> &Path {
        self.backend.location()
    }

    pub fn schema_version(&self) -> i64 {
        self.backend.schema_version()
    }

    /// True when the database was written by a newer openkb: it can be read, not written.
    pub fn is_too_new(&self) -> bool {
        self.backend.is_too_new()
    }

    /// True when the database uses the rollback journal (single-host network mode) instead
    /// of WAL.
    pub fn is_rollback_mode(&self) -> bool {
        self.backend
            .describe()
            .is_ok_and(|d| d.journal_mode == Some(schema::JOURNAL_DELETE))
    }

    /// The error every write would meet (a too-new schema, a network filesystem without the
    /// single-host opt-in), if any. Commands that write files before their database row call
    /// this first, so a refused write leaves nothing half-done.
    pub fn ensure_writable(&self) -> Result<()> {
        self.backend.ensure_writable()
    }

    /// A connection for reading.
    pub fn reader(&self) -> Result<Reader> {
        Ok(Reader {
            inner: self.backend.reader()?,
        })
    }

    /// Run `body` in one write transaction and commit it. A busy database retries the whole
    /// body (so it must be repeatable); the last failure becomes [`Error::Busy`].
    ///
    /// Requires a [`WriteAccess`]: outside this crate, write through a write session.
    pub fn write<T>(
        &self,
        _access: &WriteAccess,
        mut body: impl FnMut(&WriteTx<'_>) -> Result<T>,
    ) -> Result<T> {
        let mut value = None;
        self.backend.write(&mut |tx| {
            value = Some(body(&WriteTx::new(tx))?);
            Ok(())
        })?;
        value.ok_or_else(|| {
            Error::Invalid(format!(
                "{}: the write transaction committed without running its body",
                self.path().display()
            ))
        })
    }

    /// Fold the write-ahead log into the database (after bulk imports), so readers do not
    /// pay for a long log and the `-wal` file shrinks.
    pub(crate) fn checkpoint(&self) -> Result<()> {
        self.backend.checkpoint()
    }

    /// A write session ends: see [`Backend::end_write_session`].
    pub(crate) fn end_write_session(&self) {
        self.backend.end_write_session();
    }

    /// Bytes on disk (the database and its not yet folded log).
    pub fn disk_usage(&self) -> Result<DiskUsage> {
        self.backend.disk_usage()
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

/// Typed reads, the same on a [`Reader`] and inside a write transaction ([`WriteTx`]). Each
/// forwards to the backend's [`Reads`], whose documentation states the contract (order, what
/// "not found" returns).
pub trait Queries {
    /// The backend's reads this value gives access to.
    fn reads(&self) -> &dyn Reads;

    /// Where the data lives (the database file for SQLite), for messages.
    fn db_path(&self) -> &Path {
        self.reads().location()
    }

    fn get(&self, hash: &str) -> Result<Option<Document>> {
        self.reads().get(hash)
    }

    fn is_known(&self, hash: &str) -> Result<bool> {
        self.reads().is_known(hash)
    }

    /// First document (registry order) whose `path`, `raw_path` or `source_path` is `path`.
    fn find_by_path(&self, path: &str) -> Result<Option<Document>> {
        self.reads().find_by_path(path)
    }

    /// Hashes of the documents (registry order) that name `path` as their `path`, `raw_path`
    /// or `source_path`.
    fn claimants_of_path(&self, path: &str) -> Result<Vec<String>> {
        self.reads().claimants_of_path(path)
    }

    fn find_by_doc_name(&self, doc_name: &str) -> Result<Option<Document>> {
        self.reads().find_by_doc_name(doc_name)
    }

    /// Documents whose name key (NFKC of doc_name, or of the name's stem) is NFKC(`name`),
    /// in registry order.
    fn find_by_name_key(&self, name: &str) -> Result<Vec<Document>> {
        self.reads().find_by_name_key(&names::nfkc(name))
    }

    fn list(&self) -> Result<Vec<Document>> {
        self.reads().list()
    }

    fn for_each_document(&self, visit: &mut dyn FnMut(Document) -> Result<()>) -> Result<()> {
        self.reads().for_each_document(visit)
    }

    fn counts(&self) -> Result<StatusCounts> {
        self.reads().counts()
    }

    fn log_tail(&self, limit: Option<u64>, operation: Option<&str>) -> Result<Vec<LogEntry>> {
        self.reads().log_tail(limit, operation)
    }

    fn log_count(&self) -> Result<u64> {
        self.reads().log_count()
    }

    fn last_log_of(&self, operation: &str) -> Result<Option<LogEntry>> {
        self.reads().last_log_of(operation)
    }

    fn for_each_log_entry(&self, visit: &mut dyn FnMut(LogEntry) -> Result<()>) -> Result<()> {
        self.reads().for_each_log_entry(visit)
    }

    /// Every unfinished intent, oldest first (for recovery and `openkb doctor`).
    fn unfinished_intents(&self) -> Result<Vec<Intent>> {
        self.reads().unfinished_intents()
    }

    /// How many intents are unfinished: the cheap check run on every exclusive acquisition.
    fn unfinished_intent_count(&self) -> Result<u64> {
        self.reads().unfinished_intent_count()
    }

    /// Every import record, oldest first.
    fn imports(&self) -> Result<Vec<ImportRecord>> {
        self.reads().imports()
    }

    fn meta(&self, key: &str) -> Result<Option<String>> {
        self.reads().meta(key)
    }

    /// Why the document `hash` is not trusted, if it is marked.
    fn untrusted_reason(&self, hash: &str) -> Result<Option<String>> {
        self.reads().untrusted_reason(hash)
    }

    /// Every marked document: (hash, reason), in registry order.
    fn untrusted_entries(&self) -> Result<Vec<(String, String)>> {
        self.reads().untrusted_entries()
    }

    /// The latest Python hand-over, if one was recorded.
    fn python_base(&self) -> Result<Option<python_base::Base>> {
        self.reads().python_base()
    }
}

/// A connection for reads outside a write transaction.
pub struct Reader {
    inner: Box<dyn Reads>,
}

impl Queries for Reader {
    fn reads(&self) -> &dyn Reads {
        &*self.inner
    }
}

/// An open write transaction: the typed writes, plus every read of [`Queries`] (which sees
/// the transaction's own writes). Input is validated, and times and the process id stamped,
/// here, once for every backend.
pub struct WriteTx<'t> {
    inner: &'t dyn Writes,
}

impl Queries for WriteTx<'_> {
    fn reads(&self) -> &dyn Reads {
        self.inner
    }
}

impl<'t> WriteTx<'t> {
    /// A write API over a backend's open transaction (backends call this from their own
    /// bulk paths; everyone else gets a `WriteTx` from [`Store::write`]).
    pub fn new(inner: &'t dyn Writes) -> WriteTx<'t> {
        WriteTx { inner }
    }

    /// Insert or update a document by hash. An update keeps the document's registry position
    /// and `created_at`. Refuses a malformed hash and a `doc_name` owned by another document.
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
        self.inner.upsert_document(doc, &utc_now())
    }

    /// Set a document's lifecycle status (and the error that explains a failure); false when
    /// the document is not registered.
    pub fn set_status(&self, hash: &str, status: Status, error: Option<&str>) -> Result<bool> {
        self.inner.set_status(hash, status, error, &utc_now())
    }

    /// Delete a document by hash; false when it was not registered.
    pub fn remove_document(&self, hash: &str) -> Result<bool> {
        self.inner.remove_document(hash)
    }

    /// Append `docs` after the last document, in order: the bulk path of an import (every
    /// hash must be new; see [`Writes::append_documents`]).
    pub fn append_documents(&self, docs: &[Document]) -> Result<()> {
        self.inner.append_documents(docs, &utc_now())
    }

    /// Append a log row stamped now. Render it into `wiki/log.md` after the commit
    /// (see `crate::log_md::append`).
    pub fn append_log(&self, operation: &str, description: &str) -> Result<LogEntry> {
        self.inner.append_log(
            &local_log_timestamp(),
            operation,
            description,
            Some(&utc_now()),
        )
    }

    /// Append a log row with a given timestamp text (imports keep what they read).
    pub fn import_log(
        &self,
        timestamp: &str,
        operation: &str,
        description: &str,
    ) -> Result<LogEntry> {
        self.inner
            .append_log(timestamp, operation, description, None)
    }

    /// Append imported log rows (timestamp, operation, description), in order.
    pub fn append_log_entries<'e>(
        &self,
        entries: impl IntoIterator<Item = (&'e str, &'e str, &'e str)>,
    ) -> Result<()> {
        self.inner.append_log_entries(&mut entries.into_iter())
    }

    pub fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.inner.set_meta(key, value)
    }

    /// The value under `key`, a fresh random identifier stored first when there is none.
    pub fn ensure_random_meta(&self, key: &str) -> Result<String> {
        self.inner.ensure_random_meta(key)
    }

    /// Record an intent; returns its id. Commit it before touching any file it names.
    pub fn record_intent(
        &self,
        operation: IntentOp,
        hash: &str,
        doc_name: Option<&str>,
        files: &[IntentFile],
    ) -> Result<i64> {
        self.inner.record_intent(
            operation,
            hash,
            doc_name,
            files,
            &utc_now(),
            i64::from(std::process::id()),
        )
    }

    /// Record the compile hook an intent's operation started (see `ingest::compile`), so
    /// that recovery kills what is left of it if this process dies.
    pub fn record_intent_hook(&self, id: i64, hook: &HookGroup) -> Result<()> {
        self.inner.record_intent_hook(id, hook).map(drop)
    }

    /// Delete an intent (in the transaction that commits, or abandons, its operation).
    pub fn delete_intent(&self, id: i64) -> Result<bool> {
        self.inner.delete_intent(id)
    }

    /// Write the record of an import (in the transaction that imports it); returns it with
    /// the stored id and time.
    pub fn record_import(&self, record: &ImportRecord) -> Result<ImportRecord> {
        self.inner.record_import(record, &utc_now())
    }

    /// Mark a registered document as untrusted (in the transaction that registers it).
    pub fn mark_untrusted(&self, hash: &str, reason: &str) -> Result<()> {
        self.inner.mark_untrusted(hash, reason)
    }

    /// Record that `migrate` handed over the `hashes.json` with `sha256`, now kept as
    /// `kept_as`.
    pub fn record_python_migrate(&self, sha256: &str, entries: usize, kept_as: &str) -> Result<()> {
        let entries = u64::try_from(entries).unwrap_or(u64::MAX);
        self.inner
            .record_python_migrate(sha256, entries, kept_as, &utc_now())
    }

    /// Record that `export` handed over `entries` (registry order) as the `hashes.json` with
    /// `sha256`, replacing the stored base.
    pub fn record_python_export(
        &self,
        sha256: &str,
        entries: impl IntoIterator<Item = (String, Map<String, Value>)>,
    ) -> Result<()> {
        self.inner
            .record_python_export(sha256, &mut entries.into_iter(), &utc_now())
    }

    /// Store `docs` exactly as another backend held them (position, status, timestamps): a
    /// KB moving between backends (`state::transfer`).
    pub fn copy_documents(&self, docs: &[Document]) -> Result<()> {
        self.inner.copy_documents(docs)
    }

    /// Store `entries` with their ids and timestamps, as another backend held them.
    pub fn copy_log_entries(&self, entries: &[LogEntry]) -> Result<()> {
        self.inner.copy_log_entries(entries)
    }
}
