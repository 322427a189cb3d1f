//! The KB lock of a team KB: PostgreSQL advisory locks on one dedicated session.
//!
//! A team KB is used from several machines, where `flock` cannot exclude anyone (it is local
//! to one kernel, and unreliable on network filesystems). Its lock lives where its state
//! lives, in the server, and maps one to one onto the local protocol:
//!
//! | local (`lock.rs`)         | team                                                  |
//! | ------------------------- | ----------------------------------------------------- |
//! | shared `flock`            | `pg_advisory_lock_shared(LOCK_CLASS, kb key)`         |
//! | exclusive `flock`         | `pg_advisory_lock(LOCK_CLASS, kb key)`                |
//! | re-entrant per thread     | the same: nested guards share the outermost's session |
//! | shared then exclusive     | [`Error::LockUpgrade`], never a deadlock              |
//! | "waiting for another ..." | the same message, naming who holds it                 |
//! | `OPENKB_LOCK_TIMEOUT`     | the server's `lock_timeout`; past it, exit 4          |
//!
//! The two-int form keeps openkb's keys apart from other applications' advisory locks in a
//! shared database: the class is openkb's ([`LOCK_CLASS`]), the key a 32-bit hash of the KB id.
//!
//! **One session per process and KB.** The lock is a session-level lock, held as long as the
//! connection that took it lives; that connection ([`PgSession`], outside the pool, with TCP
//! keepalives and the server's `client_connection_check_interval`) belongs to the outermost
//! guard, and the write transactions of a write session run on it ([`TeamLockGuard::write`]).
//! A holder that dies or vanishes loses its session, and with it the lock, in bounded time;
//! and a session the server ended (a partition, a restart, `pg_terminate_backend`) can never
//! commit again, because its writes go through that same dead connection.
//!
//! **Fencing.** Each outermost exclusive acquisition advances `lock_epoch` in the KB's `meta`
//! table and keeps the new value; every write transaction of the session first checks it
//! (0 rows => [`Error::Fenced`], exit 5, nothing committed). Should a write ever reach the
//! server after its holder lost the lock, the new holder has moved the epoch on and the write
//! is refused. What the fenced process had published is settled by the next holder's
//! recovery, through its intents.
//!
//! **The flock too.** Where the filesystem supports it (not on a network filesystem), the
//! `.openkb/ingest.lock` flock is taken as well, after the advisory lock and released before
//! it, by polling (never a blocking call): it keeps the Python tool, which knows only the
//! flock, out of a team KB on one machine.

use std::cell::RefCell;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::kb::Kb;
use crate::lock::{self, Depth, LockGuard, LockMode, LockWait};
use crate::state::postgres::{Fence, PgSession, PgStore, PgWriteTx, kb_lock_key};

/// The class id of openkb's advisory locks: "OKB1", the `application_id` of `state.db`.
pub const LOCK_CLASS: i32 = 0x4F4B_4231;

/// The database session that holds a team lock: the outermost guard's, shared by the nested
/// guards of the same thread and handed to the store, whose write transactions must run on
/// it ([`LockSession::write`]). Unlike the guard it may cross threads (a store is `Send`),
/// but it writes only while the lock is held: after the last guard is dropped every write
/// through it is refused.
pub struct LockSession {
    session: Mutex<PgSession>,
    /// The store the lock was taken through: the sessions under this lock use it rather than
    /// open their own, which would cost another server connection (schema checks and
    /// upgrades are serialised by their own advisory lock, not by the KB lock, so a store
    /// opened just before the lock is as current as one opened just after).
    store: PgStore,
    /// The fencing token of an exclusive acquisition; `None` for a shared one.
    fence: Option<Fence>,
    key: i32,
    mode: LockMode,
    released: AtomicBool,
}

impl std::fmt::Debug for LockSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockSession")
            .field("mode", &self.mode)
            .field("fence", &self.fence)
            .field("released", &self.released.load(Ordering::SeqCst))
            .finish()
    }
}

impl LockSession {
    /// The store the lock was taken through (see the field).
    pub fn store(&self) -> &PgStore {
        &self.store
    }

    /// The fencing token of the exclusive acquisition this session holds.
    pub fn fence(&self) -> Option<Fence> {
        self.fence
    }

    /// Run `body` in one write transaction of `store` on this session, fenced by the epoch
    /// of the acquisition: a session the server ended (the lock is gone with it) is
    /// [`Error::LockLost`], a stale epoch [`Error::Fenced`]; nothing is committed then.
    pub fn write<T>(
        &self,
        store: &PgStore,
        body: impl FnMut(&PgWriteTx<'_>) -> Result<T>,
    ) -> Result<T> {
        if self.mode != LockMode::Exclusive || self.released.load(Ordering::SeqCst) {
            return Err(Error::Invalid(format!(
                "{}: a write needs the KB's exclusive lock, and this process does not hold it",
                store.location()
            )));
        }
        let mut session = self.lock_session();
        store
            .write_on(&mut session, self.fence, body)
            .map_err(|e| match e {
                // The lock's own session is gone, and the lock with it.
                Error::StateUnreachable { location, message } => {
                    Error::LockLost { location, message }
                }
                other => other,
            })
    }

    /// The server process id of this session (tests and `doctor` name it).
    pub fn backend_pid(&self) -> Result<i32> {
        self.lock_session().backend_pid()
    }

    fn lock_session(&self) -> std::sync::MutexGuard<'_, PgSession> {
        // A panic while writing poisons the mutex; the session itself is still what it was
        // (the server rolled the transaction back), and the fence guards the rest.
        self.session
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

struct Held {
    session: Arc<LockSession>,
    depth: Depth,
}

thread_local! {
    /// The team locks this thread holds, by KB schema.
    static HELD: RefCell<HashMap<String, Held>> = RefCell::new(HashMap::new());
}

/// A held team lock. Dropping it releases one level of re-entrancy; the last releases the
/// flock, then the advisory lock, then closes the session. Not `Send`: re-entrancy is
/// tracked per thread.
#[must_use = "the lock is released when the guard is dropped"]
pub struct TeamLockGuard {
    flock: Option<LockGuard>,
    session: Arc<LockSession>,
    schema: String,
    mode: LockMode,
    first: bool,
    _not_send: PhantomData<*const ()>,
}

impl std::fmt::Debug for TeamLockGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TeamLockGuard")
            .field("schema", &self.schema)
            .field("mode", &self.mode)
            .field("fence", &self.session.fence)
            .finish()
    }
}

impl TeamLockGuard {
    pub fn mode(&self) -> LockMode {
        self.mode
    }

    /// True when this guard took the lock (not a nested re-entry): recovery runs only then.
    pub fn is_outermost(&self) -> bool {
        self.first
    }

    /// The session holding the lock, for the store's write transactions.
    pub fn session(&self) -> Arc<LockSession> {
        Arc::clone(&self.session)
    }

    /// The fencing token of the exclusive acquisition this guard belongs to.
    pub fn fence(&self) -> Option<Fence> {
        self.session.fence
    }

    /// [`LockSession::write`] on this guard's session.
    pub fn write<T>(
        &self,
        store: &PgStore,
        body: impl FnMut(&PgWriteTx<'_>) -> Result<T>,
    ) -> Result<T> {
        self.session.write(store, body)
    }

    pub fn backend_pid(&self) -> Result<i32> {
        self.session.backend_pid()
    }
}

impl Drop for TeamLockGuard {
    fn drop(&mut self) {
        let last = HELD.with(|held| {
            let mut held = held.borrow_mut();
            let Some(entry) = held.get_mut(&self.schema) else {
                return false;
            };
            let last = entry.depth.leave(self.mode);
            if last {
                held.remove(&self.schema);
            }
            last
        });
        // The flock goes first: a process that gets the advisory lock next must find it free.
        drop(self.flock.take());
        if last {
            let session = &self.session;
            session.released.store(true, Ordering::SeqCst);
            // Best effort: closing the session (with the last handle) frees it anyway; the
            // explicit unlock spares the next holder the wait for the server to notice.
            let _ = session
                .lock_session()
                .advisory_unlock(session.mode, LOCK_CLASS, session.key);
        }
    }
}

/// What the current thread holds on the team lock of `schema`, if anything.
pub fn held_mode(schema: &str) -> Option<LockMode> {
    HELD.with(|held| held.borrow().get(schema).map(|h| h.depth.mode()))
}

/// Take the team lock of `kb`, whose state `store` holds, in `mode`, waiting as `wait` says
/// (`OPENKB_LOCK_TIMEOUT`, and the compile hook's marker), as described in the module docs.
pub fn acquire(kb: &Kb, store: &PgStore, mode: LockMode, wait: &LockWait) -> Result<TeamLockGuard> {
    let timeout = wait.timeout;
    let schema = store.schema_name().to_owned();
    if let Some(guard) = reenter(kb, &schema, mode, wait)? {
        return Ok(guard);
    }
    let key = kb_lock_key(store.kb_id());
    let mut session = store.session()?;
    if !session.try_advisory_lock(mode, LOCK_CLASS, key)? {
        if let Some(holder) = lock::hook_holder(wait.hook_lock.as_deref(), &kb.lock_path()) {
            return Err(Error::NestedInHook {
                kb: kb.root().to_path_buf(),
                holder,
            });
        }
        let holders = session.lock_holders(LOCK_CLASS, key).unwrap_or_default();
        crate::notice::note(&format!(
            "waiting for another openkb process on {} ({}{})",
            kb.root().display(),
            store.location(),
            if holders.is_empty() {
                String::new()
            } else {
                format!("; held by {}", holders.join(", "))
            }
        ));
        let timed_out = || Error::LockTimeout {
            kb: kb.root().to_path_buf(),
            seconds: timeout.map_or(0.0, |t| t.as_secs_f64()),
        };
        if timeout == Some(Duration::ZERO) {
            return Err(timed_out());
        }
        match session.advisory_lock(mode, LOCK_CLASS, key, timeout) {
            Err(Error::Busy { .. }) => return Err(timed_out()),
            other => other?,
        }
    }
    let fence = match mode {
        LockMode::Exclusive => Some(session.advance_lock_epoch()?),
        LockMode::Shared => None,
    };
    let session = Arc::new(LockSession {
        session: Mutex::new(session),
        store: store.clone(),
        fence,
        key,
        mode,
        released: AtomicBool::new(false),
    });
    // From here the guard owns the advisory lock: an error taking the flock drops it, which
    // releases both.
    let mut guard = TeamLockGuard {
        flock: None,
        session: Arc::clone(&session),
        schema: schema.clone(),
        mode,
        first: true,
        _not_send: PhantomData,
    };
    HELD.with(|held| {
        held.borrow_mut().insert(
            schema,
            Held {
                session,
                depth: Depth::first(mode),
            },
        )
    });
    guard.flock = flock_beside(kb, mode, wait)?;
    Ok(guard)
}

fn reenter(
    kb: &Kb,
    schema: &str,
    mode: LockMode,
    wait: &LockWait,
) -> Result<Option<TeamLockGuard>> {
    let session = HELD.with(|held| {
        let mut held = held.borrow_mut();
        let Some(entry) = held.get_mut(schema) else {
            return Ok(None);
        };
        if !entry.depth.enter(mode) {
            return Err(Error::LockUpgrade {
                path: kb.root().to_path_buf(),
            });
        }
        Ok(Some(Arc::clone(&entry.session)))
    })?;
    let Some(session) = session else {
        return Ok(None);
    };
    let mut guard = TeamLockGuard {
        flock: None,
        session,
        schema: schema.to_owned(),
        mode,
        first: false,
        _not_send: PhantomData,
    };
    // The outermost guard holds the flock (or found it unusable); nesting only counts it.
    if lock::held_mode(&kb.lock_path()).is_some() {
        guard.flock = flock_beside(kb, mode, wait)?;
    }
    Ok(Some(guard))
}

/// The `.openkb/ingest.lock` flock beside the advisory lock, by polling; `None` on a network
/// filesystem, where a flock excludes nobody on other machines and may hang.
fn flock_beside(kb: &Kb, mode: LockMode, wait: &LockWait) -> Result<Option<LockGuard>> {
    let openkb_dir = kb.openkb_dir();
    let fs = crate::netfs::detect_any(&[kb.root(), &openkb_dir], &kb.settings().fs)?;
    if fs.is_some_and(|fs| fs.network) {
        return Ok(None);
    }
    lock::acquire_polling(&kb.lock_path(), mode, kb.root(), wait).map(Some)
}

#[cfg(test)]
mod tests {
    //! Against a real server (the test harness starts one): two threads are two sessions to
    //! the server exactly as two processes are.

    use std::str::FromStr;
    use std::sync::mpsc;

    use super::*;
    use crate::config::KbId;
    use crate::state::postgres::Create;
    use crate::state::postgres::rows::Sql;

    use crate::test_pg_server as pg_server;

    const SHORT: Option<Duration> = Some(Duration::from_millis(300));

    /// A KB folder and the state of a fresh KB id in the test server.
    struct TeamKb {
        _dir: tempfile::TempDir,
        kb: Kb,
        kb_id: KbId,
    }

    impl TeamKb {
        fn new() -> TeamKb {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir(dir.path().join(".openkb")).unwrap();
            let kb = Kb::at(dir.path()).unwrap();
            let kb_id = KbId::new_random().unwrap();
            drop(TeamKb::store_of(&kb_id, Create::IfMissing));
            TeamKb {
                _dir: dir,
                kb,
                kb_id,
            }
        }

        fn store_of(kb_id: &KbId, create: Create) -> PgStore {
            let server = crate::state_url::StateServer::plain(
                postgres::Config::from_str(&pg_server::server().url()).unwrap(),
            );
            PgStore::open(&server, kb_id, create).unwrap()
        }

        /// The same KB seen from another machine: another folder (so another flock), the
        /// same state.
        fn other_host(&self) -> TeamKb {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir(dir.path().join(".openkb")).unwrap();
            TeamKb {
                kb: Kb::at(dir.path()).unwrap(),
                _dir: dir,
                kb_id: self.kb_id.clone(),
            }
        }

        fn store(&self) -> PgStore {
            TeamKb::store_of(&self.kb_id, Create::Never)
        }

        fn lock(&self, mode: LockMode, timeout: Option<Duration>) -> Result<TeamLockGuard> {
            let wait = LockWait {
                timeout,
                hook_lock: None,
            };
            acquire(&self.kb, &self.store(), mode, &wait)
        }

        fn epoch(&self) -> String {
            pg_server::server().psql(&format!(
                "SELECT value FROM {}.meta WHERE key = 'lock_epoch'",
                self.kb_id.schema_name()
            ))
        }

        /// Rows the test wrote into `meta` (key `t-...`).
        fn written(&self) -> String {
            pg_server::server().psql(&format!(
                "SELECT string_agg(key, ',' ORDER BY key) FROM {}.meta WHERE key LIKE 't-%'",
                self.kb_id.schema_name()
            ))
        }
    }

    fn write_marker(guard: &TeamLockGuard, store: &PgStore, key: &str) -> Result<()> {
        guard.write(store, |tx| {
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ($1, 'x')",
                &[&key.to_owned()],
            )
            .map(drop)
        })
    }

    /// Run `f` on another thread (another session of its own) and return its result.
    fn on_other_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::spawn(f).join().unwrap()
    }

    #[test]
    fn exclusive_excludes_another_session_until_dropped() {
        let team = std::sync::Arc::new(TeamKb::new());
        let held = team.lock(LockMode::Exclusive, None).unwrap();
        let other = std::sync::Arc::clone(&team);
        let refused =
            on_other_thread(move || other.lock(LockMode::Shared, SHORT).map(drop).unwrap_err());
        assert!(matches!(refused, Error::LockTimeout { .. }), "{refused}");
        assert_eq!(refused.exit_code(), crate::error::exit::BUSY);
        let message = refused.to_string();
        assert!(message.contains("timed out after 0.3s"), "{message}");
        assert!(message.contains("OPENKB_LOCK_TIMEOUT"), "{message}");

        // A waiter blocked in the server gets the lock as soon as the holder lets go.
        let (started, waiting) = mpsc::channel();
        let other = std::sync::Arc::clone(&team);
        let waiter = std::thread::spawn(move || {
            started.send(()).unwrap();
            other.lock(LockMode::Exclusive, None).map(drop)
        });
        waiting.recv().unwrap();
        drop(held);
        waiter.join().unwrap().unwrap();
    }

    #[test]
    fn shared_holders_coexist_and_keep_writers_out() {
        let team = std::sync::Arc::new(TeamKb::new());
        let _reader = team.lock(LockMode::Shared, None).unwrap();
        let other = std::sync::Arc::clone(&team);
        on_other_thread(move || other.lock(LockMode::Shared, SHORT).map(drop)).unwrap();
        let other = std::sync::Arc::clone(&team);
        let refused = on_other_thread(move || {
            other
                .lock(LockMode::Exclusive, SHORT)
                .map(drop)
                .unwrap_err()
        });
        assert!(matches!(refused, Error::LockTimeout { .. }), "{refused}");
    }

    #[test]
    fn a_zero_timeout_refuses_at_once_without_waiting_in_the_server() {
        let team = std::sync::Arc::new(TeamKb::new());
        let _held = team.lock(LockMode::Exclusive, None).unwrap();
        let other = std::sync::Arc::clone(&team);
        let refused = on_other_thread(move || {
            other
                .lock(LockMode::Exclusive, Some(Duration::ZERO))
                .map(drop)
                .unwrap_err()
        });
        assert!(matches!(refused, Error::LockTimeout { .. }), "{refused}");
    }

    #[test]
    fn nested_acquisitions_share_one_session_and_one_epoch() {
        let team = TeamKb::new();
        assert_eq!(team.epoch(), "0");
        let outer = team.lock(LockMode::Exclusive, None).unwrap();
        assert!(outer.is_outermost());
        assert_eq!(team.epoch(), "1");
        let inner = team.lock(LockMode::Exclusive, None).unwrap();
        let read = team.lock(LockMode::Shared, None).unwrap();
        assert!(!inner.is_outermost() && !read.is_outermost());
        assert_eq!(team.epoch(), "1", "only the outermost acquisition fences");
        assert_eq!(inner.backend_pid().unwrap(), outer.backend_pid().unwrap());
        assert_eq!(inner.fence(), outer.fence());
        assert_eq!(
            held_mode(&team.kb_id.schema_name()),
            Some(LockMode::Exclusive)
        );
        drop(read);
        drop(inner);
        // Still held: the inner guards only counted.
        let other_team = team.other_host();
        let refused = on_other_thread(move || {
            other_team
                .lock(LockMode::Exclusive, SHORT)
                .map(drop)
                .unwrap_err()
        });
        assert!(matches!(refused, Error::LockTimeout { .. }), "{refused}");
        drop(outer);
        assert_eq!(held_mode(&team.kb_id.schema_name()), None);
        let again = team.lock(LockMode::Exclusive, None).unwrap();
        assert_eq!(team.epoch(), "2");
        drop(again);
    }

    #[test]
    fn shared_then_exclusive_in_one_thread_is_an_error_not_a_deadlock() {
        let team = TeamKb::new();
        let _shared = team.lock(LockMode::Shared, None).unwrap();
        let err = team.lock(LockMode::Exclusive, None).unwrap_err();
        assert!(matches!(err, Error::LockUpgrade { .. }), "{err}");
    }

    #[test]
    fn the_advisory_lock_uses_openkbs_class_and_the_kb_key_and_is_released() {
        let team = TeamKb::new();
        let key = kb_lock_key(&team.kb_id);
        let held_locks = || {
            pg_server::server().psql(&format!(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
                 AND classid = ({LOCK_CLASS})::int4::oid AND objid = ({key})::int4::oid \
                 AND objsubid = 2"
            ))
        };
        let guard = team.lock(LockMode::Exclusive, None).unwrap();
        assert_eq!(held_locks(), "1");
        drop(guard);
        assert_eq!(held_locks(), "0");
    }

    #[test]
    fn writes_run_fenced_on_the_lock_session_and_need_the_exclusive_lock() {
        let team = TeamKb::new();
        let store = team.store();
        let guard = team.lock(LockMode::Exclusive, None).unwrap();
        write_marker(&guard, &store, "t-1").unwrap();
        assert_eq!(team.written(), "t-1");
        drop(guard);
        let shared = team.lock(LockMode::Shared, None).unwrap();
        let err = write_marker(&shared, &store, "t-2").unwrap_err();
        assert!(
            err.to_string().contains("needs the KB's exclusive lock"),
            "{err}"
        );
        drop(shared);
        // A handle kept past the lock writes nothing either.
        let guard = team.lock(LockMode::Exclusive, None).unwrap();
        let kept = guard.session();
        drop(guard);
        let err = kept
            .write(&store, |tx| {
                tx.execute("INSERT INTO meta (key, value) VALUES ('t-3', 'x')", &[])
                    .map(drop)
            })
            .unwrap_err();
        assert!(err.to_string().contains("does not hold it"), "{err}");
        assert_eq!(team.written(), "t-1");
    }

    #[test]
    fn a_terminated_holder_loses_the_lock_and_can_commit_nothing_after() {
        let team = TeamKb::new();
        let store = team.store();
        let guard = team.lock(LockMode::Exclusive, None).unwrap();
        write_marker(&guard, &store, "t-before").unwrap();
        let pid = guard.backend_pid().unwrap();
        assert_eq!(
            pg_server::server().terminate_backends(&format!("pid = {pid}")),
            1
        );
        // Another host takes the lock at once, and moves the epoch on.
        let other = team.other_host();
        on_other_thread(move || other.lock(LockMode::Exclusive, SHORT).map(drop)).unwrap();
        let err = write_marker(&guard, &store, "t-after").unwrap_err();
        assert_eq!(err.exit_code(), crate::error::exit::STATE_SERVER, "{err}");
        assert!(
            matches!(err, Error::LockLost { .. } | Error::Fenced { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("nothing was committed"), "{err}");
        assert_eq!(team.written(), "t-before");
    }

    #[test]
    fn a_stale_fence_is_refused_even_on_a_live_session() {
        // The fence itself, apart from the session: a write carrying an epoch that a later
        // exclusive acquisition moved on commits nothing.
        let team = TeamKb::new();
        let store = team.store();
        let guard = team.lock(LockMode::Exclusive, None).unwrap();
        pg_server::server().psql(&format!(
            "UPDATE {}.meta SET value = (value::bigint + 1)::text WHERE key = 'lock_epoch'",
            team.kb_id.schema_name()
        ));
        let err = write_marker(&guard, &store, "t-stale").unwrap_err();
        assert!(matches!(err, Error::Fenced { .. }), "{err}");
        assert_eq!(err.exit_code(), crate::error::exit::STATE_SERVER);
        assert_eq!(team.written(), "");
    }

    /// A team KB configured for a database of its own, so `pg_stat_activity` shows exactly
    /// this KB's connections.
    fn kb_in_own_database() -> (tempfile::TempDir, Kb, String) {
        let server = pg_server::server();
        let database = server.create_database();
        let url = server.url_for(&database);
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(".openkb")).unwrap();
        let kb_id = KbId::new_random().unwrap();
        std::fs::write(
            dir.path().join(".openkb/config.yaml"),
            format!("state:\n  backend: postgres\n  kb_id: {kb_id}\n"),
        )
        .unwrap();
        let state = crate::state_url::StateEnv::from_lookup(|name| {
            (name == "OPENKB_STATE_URL").then(|| url.clone().into())
        })
        .unwrap();
        let settings = crate::settings::Settings {
            state,
            ..Default::default()
        };
        let kb = Kb::at(dir.path()).unwrap().with_settings(settings);
        drop(kb.team_store(&kb_id, Create::IfMissing).unwrap());
        (dir, kb, database)
    }

    /// Connections open to `database`, the asking one aside. A connection is listed from the
    /// moment it is accepted, so what a session opened is all there when this asks.
    fn connections_to(database: &str) -> usize {
        pg_server::server()
            .psql_in(
                database,
                &format!(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = '{database}' \
                     AND pid <> pg_backend_pid()"
                ),
            )
            .parse()
            .unwrap()
    }

    #[test]
    fn a_session_reads_and_writes_on_the_lock_session_and_the_store_the_lock_was_taken_through() {
        let (_dir, kb, database) = kb_in_own_database();
        {
            let read = kb.read_session().unwrap();
            read.counts().unwrap();
            read.backend().describe().unwrap();
            read.disk_usage().unwrap();
            // The lock's session and the state's one connection: the store the lock opened
            // to take it serves the session, rather than a third.
            assert_eq!(connections_to(&database), 2);
        }
        // Another KB in another database: the read session's connections may still be
        // closing on the server.
        let (_dir, kb, database) = kb_in_own_database();
        {
            let write = kb.write_session().unwrap();
            write.write(|tx| tx.set_meta("t-connections", "1")).unwrap();
            write.counts().unwrap();
            assert_eq!(connections_to(&database), 2);
        }
    }
}
