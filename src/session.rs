//! Sessions: the one door into a knowledge base's state.
//!
//! A KB's lock, its `state.db` and the recovery of interrupted work used to be separate objects
//! that each command wired by hand; where one was forgotten, work was lost (a read command that
//! created an empty `state.db`, a write path that skipped recovery). A session is the three in
//! one object, handed out by [`Kb`], and every command and library operation works through one:
//!
//! - [`ReadSession`] (`Kb::read_session`): the shared lock and `state.db` opened read-only
//!   (`SQLITE_OPEN_READ_ONLY`, `immutable` on a read-only filesystem). It never creates the
//!   file, never migrates the schema and never switches the journal mode, so it works on a
//!   read-only mount and cannot hide a lost database behind an empty one.
//! - [`Probe`] (`Kb::probe`): the same read-only store without any lock, for the preparation
//!   phase of `add` and `watch` (hashing and copying outside the lock).
//! - [`WriteSession`] (`Kb::write_session`): the exclusive lock, `state.db` opened read-write
//!   (its schema brought up to date), and, when this is the process's outermost exclusive
//!   acquisition, the settling of what interrupted processes left: the Python tool's crash
//!   journals first, then openkb's own intents, then leftovers ([`WriteSession::settle`], the
//!   only place recovery runs). It is the only source of a write transaction
//!   ([`WriteSession::write`]); `Store::write` needs a `WriteAccess` that no caller outside
//!   this crate can make.
//!
//! **Database identity.** A session remembers the device and inode of the file it opened and
//! the `database_id` kept in `meta`. Every write transaction first checks that `state.db`
//! still names that file: a database removed or replaced since (a restore, a sync client,
//! `doctor --fix` in another process) is refused with [`Error::StateDbReplaced`], and the
//! caller rolls its files back, instead of committing into a file nobody will read again.
//!
//! **Who creates `state.db`.** Nobody but `init` and `doctor --fix`
//! ([`Kb::write_session_creating`], the rebuild of `doctor --fix`). Any other session that
//! finds it missing reports [`Error::StateDbMissing`] (or [`Error::LegacyKb`] beside an
//! unmigrated `hashes.json`).

use std::ops::Deref;
use std::sync::Arc;

use crate::config::StateConfig;
use crate::error::{Error, Result};
use crate::ingest::recover::{self, Recovered};
use crate::kb::{Kb, KbLock};
use crate::legacy::journal;
use crate::lock::LockMode;
use crate::lock_team::LockSession;
use crate::state::postgres::{Create as TeamCreate, PgStore};
use crate::state::{self, FileId, LogEntry, Queries, Store, WriteAccess, WriteTx};

/// The `meta` key of the database's identity, a random 128-bit hex string given when the
/// schema is created or upgraded (`schema::migrate`), or by the first write session on a
/// database made before ids existed. A copy of the file keeps it; a rebuild gets a new one.
pub const DATABASE_ID_KEY: &str = "database_id";

/// Which database a session works on: the file it opened and the id stored in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DbIdentity {
    /// The database file (device, inode); `None` for a backend that is not one file.
    pub file: Option<FileId>,
    /// `None` for a database no write session has opened yet (made by an older openkb).
    pub database_id: Option<String>,
}

impl DbIdentity {
    fn of(store: &Store) -> Result<DbIdentity> {
        Ok(DbIdentity {
            file: store.file_id(),
            database_id: store.reader()?.meta(DATABASE_ID_KEY)?,
        })
    }

    /// True when `other` is the same database: the same file, and the same id where both
    /// have one.
    pub fn same_as(&self, other: &DbIdentity) -> bool {
        self.file == other.file
            && match (&self.database_id, &other.database_id) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

/// Shared lock plus a read-only `state.db`. See the module docs.
#[derive(Debug)]
pub struct ReadSession {
    kb: Kb,
    store: Store,
    _lock: KbLock,
}

impl ReadSession {
    pub(crate) fn open(kb: &Kb) -> Result<ReadSession> {
        let lock = kb.lock_shared()?;
        let store = open_read_only(kb, Some(&lock))?;
        Ok(ReadSession {
            kb: kb.clone(),
            store,
            _lock: lock,
        })
    }

    pub fn kb(&self) -> &Kb {
        &self.kb
    }

    pub fn store(&self) -> &Store {
        &self.store
    }
}

impl Deref for ReadSession {
    type Target = Store;
    fn deref(&self) -> &Store {
        &self.store
    }
}

/// A read-only `state.db` without any lock, for work done outside the lock (the preparation
/// phase of `add` and `watch`). It can never create or migrate anything; what it reads may be
/// stale by the time a write session commits, so writers re-check under their lock.
#[derive(Debug)]
pub struct Probe {
    kb: Kb,
    store: Store,
    identity: DbIdentity,
}

impl Probe {
    pub(crate) fn open(kb: &Kb) -> Result<Probe> {
        let store = open_read_only(kb, None)?;
        let identity = DbIdentity::of(&store)?;
        Ok(Probe {
            kb: kb.clone(),
            store,
            identity,
        })
    }

    pub fn kb(&self) -> &Kb {
        &self.kb
    }

    pub fn identity(&self) -> &DbIdentity {
        &self.identity
    }

    /// False when `state.db` no longer names the file this probe opened (removed or
    /// replaced): a long-running caller (`watch`) then opens a new probe.
    pub fn is_current(&self) -> bool {
        self.store.check_still_at_path().is_ok()
    }

    /// A write session on the same database this probe read: what was prepared against it
    /// is committed into it, or refused with [`Error::StateDbReplaced`] when `state.db` was
    /// replaced or removed since the probe opened it.
    pub fn write_session(&self) -> Result<WriteSession> {
        let session = match WriteSession::open(&self.kb) {
            Err(Error::StateDbMissing { path, .. }) => {
                return Err(Error::StateDbReplaced {
                    path,
                    what: "removed",
                });
            }
            other => other?,
        };
        if !self.identity.same_as(&session.identity) {
            return Err(Error::StateDbReplaced {
                path: self.kb.state_db(),
                what: "replaced by another file",
            });
        }
        Ok(session)
    }
}

impl Probe {
    /// A new probe on whatever `state.db` is now, after this one is closed (closing first lets
    /// it forget the replaced file's `-wal` and `-shm`, see the SQLite backend's `Drop`).
    pub fn reopen(self) -> Result<Probe> {
        let kb = self.kb.clone();
        drop(self);
        Probe::open(&kb)
    }
}

impl Deref for Probe {
    type Target = Store;
    fn deref(&self) -> &Store {
        &self.store
    }
}

/// Exclusive lock plus a writable `state.db`, with recovery done. See the module docs.
pub struct WriteSession {
    kb: Kb,
    store: Store,
    identity: DbIdentity,
    access: WriteAccess,
    /// A team KB's writer; `None` for `state.db`.
    team: Option<TeamWriter>,
    recovered: Recovered,
    _lock: KbLock,
}

impl std::fmt::Debug for WriteSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteSession")
            .field("kb", &self.kb)
            .field("identity", &self.identity)
            .finish()
    }
}

impl WriteSession {
    pub(crate) fn open(kb: &Kb) -> Result<WriteSession> {
        let lock = kb.lock_exclusive()?;
        let (store, team) = open_writable(kb, state::Create::Never, &lock)?;
        Self::start(kb, store, team, lock)
    }

    /// [`WriteSession::open`] that creates `state.db` when it is missing (and no legacy
    /// `hashes.json` waits for `openkb migrate`): for `init` only.
    pub(crate) fn open_creating(kb: &Kb) -> Result<WriteSession> {
        // A new team KB's schema is made first: its lock keeps the fencing epoch there.
        if let StateConfig::Postgres { kb_id } = kb.state_config()? {
            drop(kb.team_store(&kb_id, TeamCreate::IfMissing)?);
        }
        let lock = kb.lock_exclusive()?;
        let (store, team) = open_writable(kb, state::Create::IfMissing, &lock)?;
        Self::start(kb, store, team, lock)
    }

    fn start(
        kb: &Kb,
        store: Store,
        team: Option<TeamWriter>,
        lock: KbLock,
    ) -> Result<WriteSession> {
        let identity = DbIdentity::of(&store)?;
        let mut session = WriteSession {
            kb: kb.clone(),
            store,
            identity,
            access: WriteAccess::granted(),
            team,
            recovered: Recovered::default(),
            _lock: lock,
        };
        // A store that refuses writes (a newer schema, a network filesystem without the
        // opt-in) keeps no id; every write through it is refused anyway.
        if session.identity.database_id.is_none() && session.store.ensure_writable().is_ok() {
            session.identity.database_id = Some(session.assign_database_id()?);
        }
        // A nested session (this thread already holds the exclusive lock) runs inside an
        // operation that settled when it took the lock; settling again mid-operation would
        // roll back the caller's own intents.
        if session._lock.is_outermost() {
            session.recovered = session.settle()?;
        }
        Ok(session)
    }

    fn assign_database_id(&self) -> Result<String> {
        self.transact(|tx| tx.ensure_random_meta(DATABASE_ID_KEY))
    }

    /// Settle what interrupted processes left, in this order: the Python tool's crash
    /// journals (an `active` one is rolled back, as the Python tool would on its next lock, so
    /// that its rollback can never erase what openkb writes afterwards), openkb's own intents,
    /// then leftovers of dead processes. Runs when the session opens (outermost lock only);
    /// `doctor --fix` calls it to report what it did.
    pub(crate) fn settle(&self) -> Result<Recovered> {
        for report in settle_python_journals(&self.kb, &self._lock)? {
            crate::notice::warn(&format!(
                "settled a crash journal of the Python tool: {}",
                report.describe(false)
            ));
        }
        let mut done = recover::recover_interrupted(self)?;
        done.leftovers_swept = crate::ingest::leftovers::sweep_leftovers(&self.kb)?.items;
        done.report(&self.kb);
        Ok(done)
    }

    /// What recovery did when this session opened.
    pub fn recovered(&self) -> &Recovered {
        &self.recovered
    }

    pub fn kb(&self) -> &Kb {
        &self.kb
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn identity(&self) -> &DbIdentity {
        &self.identity
    }

    /// Run `body` in a `BEGIN IMMEDIATE` transaction and commit it, after checking (inside the
    /// transaction, so under SQLite's write lock) that `state.db` is still the file this
    /// session opened. A busy database retries the whole body.
    pub fn write<T>(&self, mut body: impl FnMut(&WriteTx<'_>) -> Result<T>) -> Result<T> {
        // Checked before a connection is taken too: a new pooled connection opened by path
        // would pair the replacement file with the old file's WAL.
        self.store.check_still_at_path()?;
        self.transact(|tx| {
            self.store.check_still_at_path()?;
            body(tx)
        })
    }

    /// One write transaction: on the store's own connection for `state.db`, on the KB lock's
    /// session, fenced, for a team KB.
    fn transact<T>(&self, mut body: impl FnMut(&WriteTx<'_>) -> Result<T>) -> Result<T> {
        match &self.team {
            None => self.store.write(&self.access, body),
            Some(team) => team.lock.write(&team.store, |tx| body(&WriteTx::new(tx))),
        }
    }

    /// Commit a log row and render it into `wiki/log.md`.
    pub fn record(&self, operation: &str, description: &str) -> Result<LogEntry> {
        let entry = self.write(|tx| tx.append_log(operation, description))?;
        crate::log_md::append(&self.kb, std::slice::from_ref(&entry))?;
        Ok(entry)
    }

    /// Move the WAL's content into the database file (after bulk writes).
    pub fn checkpoint(&self) -> Result<()> {
        self.store.checkpoint()
    }
}

impl Drop for WriteSession {
    fn drop(&mut self) {
        self.store.end_write_session();
    }
}

impl Deref for WriteSession {
    type Target = Store;
    fn deref(&self) -> &Store {
        &self.store
    }
}

/// Open a read-only session (`open`) for a command that is going to write: a schema older than
/// this binary, which read-only sessions refuse, is first brought up to date by a write
/// session (which settles interrupted work too). Read-only commands never call this.
pub(crate) fn upgrading_first<T>(kb: &Kb, open: impl Fn(&Kb) -> Result<T>) -> Result<T> {
    match open(kb) {
        Err(Error::SchemaBehind { .. }) => {
            drop(WriteSession::open(kb)?);
            open(kb)
        }
        other => other,
    }
}

/// Roll back or discard the Python tool's crash journals (`.openkb/journal/*.json`). The
/// caller holds `lock`, the KB's exclusive lock. A journal that cannot be settled (unreadable,
/// naming files outside the KB, a failed rollback) stops every write: the KB may hold a
/// half-applied Python change whose later rollback would undo openkb's work.
pub(crate) fn settle_python_journals(
    kb: &Kb,
    lock: &KbLock,
) -> Result<Vec<journal::JournalReport>> {
    debug_assert_eq!(lock.mode(), LockMode::Exclusive);
    let reports = journal::recover(kb)?;
    if reports.is_empty() {
        return Ok(reports);
    }
    if reports.iter().any(journal::JournalReport::blocks_import) {
        let lines: Vec<String> = reports.iter().map(|j| j.describe(false)).collect();
        return Err(Error::Invalid(format!(
            "{}: a crash journal of the Python tool could not be recovered, so the KB may hold \
             a half-applied change; nothing was changed\n  {}\n  fix the cause (or finish the \
             operation with the Python tool) and try again",
            kb.root().display(),
            lines.join("\n  ")
        )));
    }
    Ok(reports)
}

/// Refuse a missing `state.db`: a legacy KB waits for `openkb migrate`; any other KB gets the
/// rebuild hint. Nothing is created.
fn require_state_db(kb: &Kb) -> Result<()> {
    if kb.state_db().exists() {
        return Ok(());
    }
    if let Some(entries) = kb.legacy_registry_entries()? {
        return Err(Error::LegacyKb {
            kb: kb.root().to_path_buf(),
            hashes_json: kb.hashes_json(),
            entries,
        });
    }
    Err(Error::StateDbMissing {
        path: kb.state_db(),
        has_documents: kb.has_documents(),
    })
}

/// The KB's state for reading (under `lock`, when it is held): `state.db` opened read-only,
/// or a team KB's schema.
fn open_read_only(kb: &Kb, lock: Option<&KbLock>) -> Result<Store> {
    if let Some(store) = team_store_of(kb, lock)? {
        return Ok(Store::from_backend(Box::new(store)));
    }
    let db = kb.state_db_checked()?;
    require_state_db(kb)?;
    match Store::open_read_only(&db) {
        // Removed between the check and the open: say so the way a missing file is said.
        Err(e) if !kb.state_db().exists() => {
            require_state_db(kb)?;
            Err(e)
        }
        other => other,
    }
}

/// The KB's state for writing under `lock`, the exclusive KB lock: `state.db`, or a team
/// KB's schema with the [`TeamWriter`] its write transactions go through.
fn open_writable(
    kb: &Kb,
    create: state::Create,
    lock: &KbLock,
) -> Result<(Store, Option<TeamWriter>)> {
    // The lock was taken by the KB's mode (`Kb::lock`): a team lock carries the store its
    // write transactions go through, and its session.
    if let (Some(store), Some(lock)) = (lock.team_store(), lock.team_session()) {
        let writer = TeamWriter {
            store: store.clone(),
            lock,
        };
        return Ok((Store::from_backend(Box::new(store)), Some(writer)));
    }
    let db = kb.state_db_checked()?;
    match create {
        state::Create::Never => require_state_db(kb)?,
        state::Create::IfMissing => {
            if !kb.state_db().exists()
                && let Some(entries) = kb.legacy_registry_entries()?
            {
                return Err(Error::LegacyKb {
                    kb: kb.root().to_path_buf(),
                    hashes_json: kb.hashes_json(),
                    entries,
                });
            }
        }
    }
    Ok((Store::open_with(&db, create, &kb.settings().fs)?, None))
}

/// A team KB's store for a session under `lock`: the one the lock was taken through (its
/// first connection serves the session's reads, so a short command opens one connection
/// beside the lock's); without a lock (a probe), the one the config names. `None` for a
/// local KB. Under a lock the config is not read again: the lock was chosen by it, and the
/// mode cannot change while the lock is held.
fn team_store_of(kb: &Kb, lock: Option<&KbLock>) -> Result<Option<PgStore>> {
    match lock {
        Some(lock) => Ok(lock.team_store()),
        None => match kb.state_config()? {
            StateConfig::Postgres { kb_id } => kb.team_store(&kb_id, TeamCreate::Never).map(Some),
            StateConfig::Sqlite => Ok(None),
        },
    }
}

/// How a team KB's write session writes: on the KB lock's own database session, fenced by
/// the epoch of its acquisition (see `lock_team.rs`), so a process that lost the lock (its
/// session ended) can commit nothing.
struct TeamWriter {
    store: PgStore,
    lock: Arc<LockSession>,
}
