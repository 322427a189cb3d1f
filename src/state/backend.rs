//! The storage contract: what a state backend must do, in the words of the domain.
//!
//! openkb keeps one registry of documents, an operations log, the intents of operations in
//! flight, the record of legacy imports, a few meta facts, the marks of untrusted legacy
//! entries and the base of the Python hand-over. Where those live is a backend's business:
//! SQLite (`state/sqlite/`, the embedded default) or PostgreSQL (team mode). Everything above
//! `state/` talks to a [`Store`](super::Store), which holds one `Box<dyn Backend>`; no command
//! is generic over a backend, so every trait here is object-safe.
//!
//! Three traits:
//! - [`Backend`]: opening is the backend's constructor; after that it hands out readers and
//!   runs write transactions, and does maintenance (checkpoint, integrity check, rebuild of
//!   derived data, size, description).
//! - [`Reads`]: every read, on a reader or inside a write transaction (which sees its own
//!   uncommitted writes).
//! - [`Writes`]: every write, only inside the one transaction [`Backend::write`] runs.
//!
//! What the backends share is not here: validation of input (hash shape, `doc_name`
//! ownership), timestamps and the process id are decided once by
//! [`WriteTx`](super::WriteTx) and passed in, so two backends cannot disagree about them.
//!
//! Errors: a backend reports contention as [`Error::Busy`], a database it cannot use as
//! [`Error::NotStateDb`], [`Error::SchemaTooNew`] or [`Error::SchemaBehind`], and any other
//! failure of the engine as [`Error::Storage`] naming where (the file or server) and what. A
//! visitor's own error passes through a `for_each_*` scan unchanged. "Not found" is never an
//! error: lookups return `None`, an empty list or `false`.
//!
//! The conformance suite (`state::conformance::storage_tests!`) is the executable form of
//! these contracts; a backend is done when it passes it.

use std::fmt;
use std::path::Path;

use serde_json::{Map, Value};

use super::documents::{Document, Status, StatusCounts};
use super::imports::ImportRecord;
use super::intents::{HookGroup, Intent, IntentFile, IntentOp};
use super::log::LogEntry;
use super::python_base::Base;
use crate::error::{Error, Result};

/// What a backend is, for `openkb status`, `doctor` and bug reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Description {
    /// `"sqlite"`, `"postgresql"`.
    pub backend: &'static str,
    /// The engine's own version (`SQLite 3.50.4`, `PostgreSQL 16.4`).
    pub engine_version: String,
    /// The openkb schema version the database is at.
    pub schema_version: i64,
    /// Where the data lives, as a person would name it (a file path, a server and database).
    pub location: String,
    /// How commits reach disk, when the engine has such a mode (`wal`, `delete` for SQLite's
    /// rollback journal); `None` for a server.
    pub journal_mode: Option<&'static str>,
    /// How the connection to a server is encrypted (`TLSv1.3 (sslmode=verify-full)`);
    /// `None` for a file, or a connection in plain text.
    pub tls: Option<String>,
}

/// How thorough [`Backend::check_integrity`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckDepth {
    /// Cheap structural checks (SQLite `quick_check`).
    Quick,
    /// Everything the engine can verify, including indexes and foreign keys.
    Full,
}

/// Bytes the data takes where it is stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskUsage {
    /// The database proper (SQLite: `state.db`; PostgreSQL: the database's relations).
    pub database_bytes: u64,
    /// Commits not yet folded into the database (SQLite: the `-wal` file); 0 when the engine
    /// has no such log or it is empty. A large value means checkpoints are not keeping up.
    pub pending_log_bytes: u64,
}

/// A storage backend: one opened database.
///
/// Opening is each backend's own constructor (a file path and [`Create`](super::Create) for
/// SQLite, a connection string for PostgreSQL). It must check that the database is an openkb
/// one (else [`Error::NotStateDb`]), bring an older schema up to date (a write: a read-only
/// open refuses an older schema with [`Error::SchemaBehind`]), and open a newer schema
/// read-only (every write then fails with [`Error::SchemaTooNew`]).
pub trait Backend: Send + Sync + fmt::Debug {
    /// Where the data lives, for error messages: the database file for SQLite, a printable
    /// name without credentials for a server.
    fn location(&self) -> &Path;

    /// Name, engine version, schema version and journal mode.
    fn describe(&self) -> Result<Description>;

    /// The schema version found when the backend was opened (after any upgrade it did).
    fn schema_version(&self) -> i64;

    /// True when the schema is newer than this binary: reads work, writes are refused.
    fn is_too_new(&self) -> bool;

    /// The error every write would meet (opened read-only, a schema too new, a filesystem
    /// where writes are unsafe), or `Ok` when writes can be attempted. Called before any file
    /// work of an operation, so a refused write leaves nothing half-done.
    fn ensure_writable(&self) -> Result<()>;

    /// Fails with [`Error::StateDbReplaced`] when the database this backend opened is no
    /// longer the one its location names (SQLite: another file renamed over `state.db`, or
    /// the file removed); commits to it would be lost. Backends whose database cannot be
    /// replaced under them return `Ok`.
    fn check_still_in_place(&self) -> Result<()>;

    /// The identity of the opened database file (device, inode), for backends that store one
    /// file; `None` otherwise.
    fn file_id(&self) -> Option<super::FileId>;

    /// A reader: a connection outside any write transaction, owned by the reader (callers
    /// keep one after the store that gave it is out of reach, as a pooled connection allows).
    /// Each call may return a different connection; a reader sees every transaction committed
    /// before it was handed out and must not be held across a long wait (it can keep SQLite's
    /// WAL from being checkpointed).
    fn reader(&self) -> Result<Box<dyn Reads>>;

    /// Run `body` in one write transaction and commit it; an `Err` from `body` rolls back
    /// everything it wrote and is returned unchanged.
    ///
    /// The transaction takes the database's write lock when it begins (SQLite `BEGIN
    /// IMMEDIATE`; PostgreSQL `SERIALIZABLE` or an explicit lock), so two writers never
    /// interleave. When it meets another writer (busy, locked, a serialization failure) the
    /// whole transaction, `body` included, is retried a bounded number of times with a
    /// growing pause, then [`Error::Busy`] is returned; `body` must therefore be repeatable.
    /// Refused up front with [`Backend::ensure_writable`]'s error.
    fn write(&self, body: &mut dyn FnMut(&dyn Writes) -> Result<()>) -> Result<()>;

    /// Fold every committed transaction into the database proper and shrink the log,
    /// waiting for readers (after a bulk import, `doctor --fix`). A no-op for an engine
    /// without a separate log.
    fn checkpoint(&self) -> Result<()>;

    /// A write session on this backend ends: fold its commits where that is cheap and needs
    /// no waiting (SQLite: a passive checkpoint, so the commits do not stay in the `-wal`
    /// alone, unseen by a copy of `state.db`). Never fails: it runs from `Drop`.
    fn end_write_session(&self);

    /// Problems the engine finds in the stored data, as readable messages; empty when it is
    /// sound. Damage is a finding, not an `Err`: `Err` means the check could not run.
    fn check_integrity(&self, depth: CheckDepth) -> Result<Vec<String>>;

    /// Rebuild what is derived from the rows (indexes, the counts by status) from the rows
    /// themselves, in one write transaction.
    fn rebuild_derived(&self) -> Result<()>;

    /// Bytes on disk.
    fn disk_usage(&self) -> Result<DiskUsage>;
}

/// Every read. Implemented by a backend's reader and by its write transaction.
///
/// "Registry order" is the order documents were registered: an upsert of a registered hash
/// keeps its place; a document registered again after its removal goes to the end, after
/// every document registered at that moment (as in a Python dict).
pub trait Reads {
    /// Where the data lives (as [`Backend::location`]).
    fn location(&self) -> &Path;

    // Documents.

    /// The document registered under `hash`, or `None`.
    fn get(&self, hash: &str) -> Result<Option<Document>>;

    /// Whether `hash` is registered.
    fn is_known(&self, hash: &str) -> Result<bool>;

    /// The first document in registry order whose `path`, `raw_path` or `source_path` is
    /// exactly `path` (byte comparison, no normalisation), or `None`.
    fn find_by_path(&self, path: &str) -> Result<Option<Document>>;

    /// Hashes of every document (registry order) whose `path`, `raw_path` or `source_path` is
    /// exactly `path`; empty when none.
    fn claimants_of_path(&self, path: &str) -> Result<Vec<String>>;

    /// The document whose `doc_name` is exactly `doc_name` (unique by the write contract),
    /// or `None`.
    fn find_by_doc_name(&self, doc_name: &str) -> Result<Option<Document>>;

    /// Documents whose name key ([`Document::name_key`], stored when written) equals `key`,
    /// which the caller has already normalised (NFKC); registry order; empty when none.
    fn find_by_name_key(&self, key: &str) -> Result<Vec<Document>>;

    /// Every document, registry order, one at a time (the registry may not fit in memory
    /// twice). An `Err` from `visit` stops the scan and is returned unchanged.
    fn for_each_document(&self, visit: &mut dyn FnMut(Document) -> Result<()>) -> Result<()>;

    /// Every document in registry order.
    fn list(&self) -> Result<Vec<Document>> {
        let mut out = Vec::new();
        self.for_each_document(&mut |doc| {
            out.push(doc);
            Ok(())
        })?;
        Ok(out)
    }

    /// How many documents have each status. Cheap: it must not scan the registry.
    fn counts(&self) -> Result<StatusCounts>;

    // The operations log.

    /// The newest `limit` entries (all when `None`), only those of `operation` when given,
    /// returned oldest first (ascending id).
    fn log_tail(&self, limit: Option<u64>, operation: Option<&str>) -> Result<Vec<LogEntry>>;

    /// How many entries the log holds.
    fn log_count(&self) -> Result<u64>;

    /// The newest entry of `operation`, or `None`.
    fn last_log_of(&self, operation: &str) -> Result<Option<LogEntry>> {
        Ok(self.log_tail(Some(1), Some(operation))?.pop())
    }

    /// Every entry oldest first (ascending id); an `Err` from `visit` stops the scan and is
    /// returned unchanged.
    fn for_each_log_entry(&self, visit: &mut dyn FnMut(LogEntry) -> Result<()>) -> Result<()>;

    // Intents of operations in flight.

    /// Every recorded intent, oldest first (ascending id).
    fn unfinished_intents(&self) -> Result<Vec<Intent>>;

    /// How many intents are recorded: the cheap check run on every exclusive session.
    fn unfinished_intent_count(&self) -> Result<u64>;

    // Imports, meta, untrusted entries, the Python base.

    /// Every import record, oldest first (ascending id).
    fn imports(&self) -> Result<Vec<ImportRecord>>;

    /// The value stored under `key`, or `None`.
    fn meta(&self, key: &str) -> Result<Option<String>>;

    /// Why the document `hash` is marked untrusted, or `None` when it is not.
    fn untrusted_reason(&self, hash: &str) -> Result<Option<String>>;

    /// Every untrusted mark of a registered document, as (hash, reason), registry order.
    fn untrusted_entries(&self) -> Result<Vec<(String, String)>>;

    /// The latest Python hand-over, or `None` when none was recorded.
    fn python_base(&self) -> Result<Option<Base>>;
}

/// Every write; only inside the transaction of [`Backend::write`], so all of one call's
/// writes commit together or not at all. Inputs are already validated and stamped by
/// [`WriteTx`](super::WriteTx) (`now` is ISO-8601 UTC with milliseconds).
pub trait Writes: Reads {
    /// Insert `doc` by hash, at the end of registry order, with `created_at = updated_at =
    /// now`; or, when the hash is registered, replace every field except its position and
    /// `created_at`, setting `updated_at = now`. `doc.position`, `doc.created_at` and
    /// `doc.updated_at` are ignored. The stored name key is `doc.name_key()`.
    /// A `doc_name` owned by another hash must fail (the caller checks first; a backend
    /// enforces it as a constraint, as [`Error::DocNameTaken`] or [`Error::Storage`]).
    fn upsert_document(&self, doc: &Document, now: &str) -> Result<()>;

    /// Set `status` and `error` (and `updated_at = now`) of `hash`; false when not
    /// registered (nothing changes).
    fn set_status(
        &self,
        hash: &str,
        status: Status,
        error: Option<&str>,
        now: &str,
    ) -> Result<bool>;

    /// Delete `hash` and what belongs to it alone (its untrusted mark, its legacy round-trip
    /// data); false when not registered.
    fn remove_document(&self, hash: &str) -> Result<bool>;

    /// Append `docs`, in order, after the last document, one `now` for all: the bulk path of
    /// an import. Every hash must be new (the importer checks); a registered one fails or is
    /// replaced in place as by [`Writes::upsert_document`], never duplicated.
    fn append_documents(&self, docs: &[Document], now: &str) -> Result<()>;

    /// Append a log entry; returns it with its id (greater than every earlier id).
    /// `recorded_at` is `None` for imported history.
    fn append_log(
        &self,
        timestamp: &str,
        operation: &str,
        description: &str,
        recorded_at: Option<&str>,
    ) -> Result<LogEntry>;

    /// Append imported log entries (timestamp, operation, description), in order, with no
    /// `recorded_at`.
    fn append_log_entries(
        &self,
        entries: &mut dyn Iterator<Item = (&str, &str, &str)>,
    ) -> Result<()>;

    /// Store `value` under `key`, replacing any earlier value.
    fn set_meta(&self, key: &str, value: &str) -> Result<()>;

    /// The value under `key`; when there is none, store a fresh random 128-bit identifier
    /// (32 lowercase hex digits) first. Stable once stored.
    fn ensure_random_meta(&self, key: &str) -> Result<String>;

    /// Record an intent; returns its id, greater than every earlier intent's.
    fn record_intent(
        &self,
        operation: IntentOp,
        hash: &str,
        doc_name: Option<&str>,
        files: &[IntentFile],
        started_at: &str,
        pid: i64,
    ) -> Result<i64>;

    /// Attach the compile hook's process group to intent `id`; false when there is no such
    /// intent.
    fn record_intent_hook(&self, id: i64, hook: &HookGroup) -> Result<bool>;

    /// Delete intent `id`; false when there was none.
    fn delete_intent(&self, id: i64) -> Result<bool>;

    /// Store an import record with `imported_at = now`; returns it with its id (ascending).
    /// `record.id` and `record.imported_at` are ignored.
    fn record_import(&self, record: &ImportRecord, now: &str) -> Result<ImportRecord>;

    /// Mark registered document `hash` untrusted for `reason` (replacing an earlier reason).
    fn mark_untrusted(&self, hash: &str, reason: &str) -> Result<()>;

    /// Record a `migrate` hand-over: the `hashes.json` with `sha256` and `entries` entries,
    /// kept whole as `kept_as`. Drops any stored export base.
    fn record_python_migrate(
        &self,
        sha256: &str,
        entries: u64,
        kept_as: &str,
        now: &str,
    ) -> Result<()>;

    /// Record an `export` hand-over: the `hashes.json` with `sha256`, whose entries (registry
    /// order) replace the stored base.
    fn record_python_export(
        &self,
        sha256: &str,
        entries: &mut dyn Iterator<Item = (String, Map<String, Value>)>,
        now: &str,
    ) -> Result<()>;

    /// Store `docs` exactly as another backend held them: position, status, `created_at` and
    /// `updated_at` included, so a KB moved between backends lists, shows and exports the
    /// same. Every hash must be new (a registered one fails, never duplicates). Later new
    /// documents still go after every copied one. Called with batches (a few thousand).
    fn copy_documents(&self, docs: &[Document]) -> Result<()>;

    /// Store `entries` with their ids and both timestamps, as another backend held them. The
    /// ids must be new; later appends get greater ids.
    fn copy_log_entries(&self, entries: &[LogEntry]) -> Result<()>;
}

/// A storage error that is neither contention nor a foreign database: where, and what.
pub fn storage_error(location: &Path, message: impl fmt::Display) -> Error {
    Error::Storage {
        location: location.display().to_string(),
        message: message.to_string(),
    }
}
