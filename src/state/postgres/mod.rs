//! The PostgreSQL backend of team mode: one KB's state in one schema of a shared database.
//!
//! A KB in team mode (`state: {backend: postgres, kb_id: ...}` in its config) keeps the
//! registry, the log, intents, imports and meta in the schema `openkb_<kb_id as 32 hex>`
//! ([`schema`]); the same tables and column meanings as `state.db`, so the conformance suite
//! holds for both and a KB moves between them (`openkb migrate --to-postgres` / `--to-sqlite`)
//! without changing a byte of what it exports. The `postgres` crate is named only in this
//! folder.
//!
//! Connection rules, each the PostgreSQL twin of a SQLite rule in `state/mod.rs`:
//! - One connection is opened first (a server that cannot be reached fails at once, not after
//!   a pool time-out), the schema is checked (a KB id that does not match the schema's is
//!   refused) and created or upgraded; only then is the r2d2 pool built.
//! - A write transaction is READ COMMITTED: every mutation holds the KB's exclusive lock, so
//!   there is one writer per KB and nothing stronger is needed. A serialization failure or a
//!   deadlock (40001, 40P01) is retried whole a bounded number of times, like SQLITE_BUSY,
//!   then reported as [`Error::Busy`]; a lock time-out (55P03) is [`Error::Busy`] at once.
//! - A server that cannot be reached, or a connection it dropped, is
//!   [`Error::StateUnreachable`] (exit 5): nothing was committed.
//! - A schema newer than this binary is opened for reading only; every write is refused with
//!   [`Error::SchemaTooNew`].
//! - Every connection is opened by one [`tls::Connector`], with TLS as libpq's `sslmode`
//!   and `sslrootcert` say; a failed handshake or certificate check is
//!   [`Error::StateUnreachable`] with the setting to look at.

mod backend;
pub(crate) mod rows;
pub mod schema;
#[cfg(test)]
mod tests;
mod tls;

use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use postgres::error::SqlState;
use postgres::{Client, Config, IsolationLevel};

use crate::config::KbId;
use crate::error::{Error, Result};
use crate::lock::LockMode;
use crate::state_url::StateServer;
use tls::Connector;

/// How many times a whole write transaction is tried before giving up with `Error::Busy`.
const WRITE_ATTEMPTS: u32 = 4;
/// How long a write transaction waits for another writer of the same KB (per attempt).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Class id of the transaction-level advisory lock every write transaction of a KB takes
/// first ("OKBw"): one writer per KB at a time, as SQLite's `BEGIN IMMEDIATE` gives.
const WRITE_LOCK_CLASS: i32 = 0x4F4B_4277;
/// How long to wait for the server's answer to a new connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A 32-bit key of `kb_id` for the two-int advisory lock functions: the first four bytes of
/// the SHA-256 of its 32 hex digits. Keys of different KBs may collide (they then merely
/// exclude each other); other applications' keys cannot, given openkb's own class ids.
pub fn kb_lock_key(kb_id: &KbId) -> i32 {
    let digest = crate::hash::sha256_hex(kb_id.hex().as_bytes());
    u32::from_str_radix(&digest[..8], 16).map_or(0, |n| n as i32)
}

/// Where the server is, for messages: `database D on host:port` (never a user or password).
pub fn describe_server(config: &Config) -> String {
    use postgres::config::Host;
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            Host::Tcp(name) => name.clone(),
            Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let host = if hosts.is_empty() {
        "localhost".to_owned()
    } else {
        hosts.join(",")
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres");
    format!("database {db} on {host}:{port}")
}

/// The settings of every openkb connection to `schema`: it as the search_path (so statements
/// name tables unqualified), a connect time-out, and an application name that says which
/// process a session belongs to (`pg_stat_activity`, the lock's waiting message).
fn for_schema(server: &Config, schema: &str) -> Config {
    let mut config = server.clone();
    let options = match config.get_options() {
        Some(existing) if !existing.is_empty() => format!("{existing} -c search_path={schema}"),
        _ => format!("-c search_path={schema}"),
    };
    config.options(&options);
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name(&application_name());
    }
    config
}

/// `openkb <host> <pid>`: who a session belongs to, as other processes see it.
pub fn application_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    format!("openkb {host} {}", std::process::id())
}

/// Whether [`PgStore::open`] may create the KB's schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Create {
    IfMissing,
    Never,
}

/// One KB's state in PostgreSQL: a pool of connections to its schema. Cloning is cheap and
/// shares the pool (the write session keeps a clone beside the `Store` that boxes one).
#[derive(Clone)]
pub struct PgStore {
    server: Config,
    connector: Connector,
    kb_id: KbId,
    schema: String,
    /// [`PgStore::location`], made once.
    location_text: String,
    pool: r2d2::Pool<CachingManager>,
    /// The connection `open` checked the schema on, lent to readers and writers before the
    /// pool is asked for one: a command's first statements cost no second connection (each is
    /// a server process forked and authenticated, the largest cost of a short command).
    spare: Arc<Mutex<Option<Conn>>>,
    schema_version: i64,
    too_new: bool,
    /// How long a write transaction waits for another writer of this KB before it is
    /// retried (and, in the end, reported busy): SQLite's `busy_timeout`.
    busy_timeout: Duration,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("server", &describe_server(&self.server))
            .field("schema", &self.schema)
            .field("schema_version", &self.schema_version)
            .finish()
    }
}

impl PgStore {
    /// Open the state of KB `kb_id` on `server`: check its schema (refusing another KB's),
    /// create it when `create` allows and it is missing, apply missing migrations, and build
    /// the pool.
    pub fn open(server: &StateServer, kb_id: &KbId, create: Create) -> Result<PgStore> {
        let schema = kb_id.schema_name();
        let location = Location::new(&server.config, &schema);
        let config = for_schema(&server.config, &schema);
        let connector = Connector::new(server)?;
        let mut first = connector.connect(&config, &location)?;
        let outcome = schema::migrate(
            &mut first,
            &schema,
            kb_id,
            &super::utc_now(),
            create == Create::IfMissing,
        )
        .map_err(|e| location.error(e))?;
        let schema_version = match outcome {
            Ok(migrated) => migrated.to,
            Err(refusal) => return Err(location.refused(refusal, kb_id)),
        };
        let pool = r2d2::Pool::builder()
            .max_size(4)
            .min_idle(Some(0))
            .connection_timeout(CONNECT_TIMEOUT)
            .build_unchecked(CachingManager {
                config,
                connector: connector.clone(),
            });
        Ok(PgStore {
            server: server.config.clone(),
            connector,
            kb_id: kb_id.clone(),
            location_text: location.text.clone(),
            schema,
            pool,
            spare: Arc::new(Mutex::new(Some(Conn {
                client: first,
                statements: Statements::default(),
            }))),
            schema_version,
            too_new: schema_version > schema::latest_version(),
            busy_timeout: BUSY_TIMEOUT,
        })
    }

    /// This store with another wait for a concurrent writer (tests use a short one to reach
    /// [`Error::Busy`] quickly).
    pub fn with_busy_timeout(mut self, busy_timeout: Duration) -> PgStore {
        self.busy_timeout = busy_timeout;
        self
    }

    /// Create the state of the new KB `kb_id` on `server` and fill it with `body`, in ONE
    /// transaction: either the schema exists afterwards with everything `body` wrote, or
    /// nothing does (a process killed half-way, a failed check in `body`, a lost server).
    /// Refuses a KB id whose schema already exists. Returns the opened store and `body`'s
    /// value.
    pub fn create_filled<T>(
        server: &StateServer,
        kb_id: &KbId,
        body: impl FnOnce(&PgWriteTx<'_>) -> Result<T>,
    ) -> Result<(PgStore, T)> {
        let schema = kb_id.schema_name();
        let location = Location::new(&server.config, &schema);
        let config = for_schema(&server.config, &schema);
        let mut client = Connector::new(server)?.connect(&config, &location)?;
        let statements = Statements::default();
        let mut tx = client.transaction().map_err(|e| location.error(e))?;
        let outcome = schema::migrate_in(&mut tx, &schema, kb_id, &super::utc_now(), true)
            .map_err(|e| location.error(e))?;
        match outcome {
            Ok(schema::Migrated { from: None, .. }) => {}
            Ok(_) => {
                return Err(Error::Invalid(format!(
                    "{}: already exists; a KB is moved only into a new schema; nothing was \
                     changed",
                    location.text
                )));
            }
            Err(refusal) => return Err(location.refused(refusal, kb_id)),
        }
        let value = {
            let write = PgWriteTx {
                tx: RefCell::new(tx),
                location: location.clone(),
                statements: &statements,
            };
            let value = body(&write)?;
            write
                .tx
                .into_inner()
                .commit()
                .map_err(|e| location.error(e))?;
            value
        };
        // Statistics and hint bits for the tables just filled, so the first `list` does not
        // pay for them. Only an optimisation (autovacuum does it later): a failure is no
        // reason to report the committed move as failed.
        let _ = client.batch_execute("VACUUM ANALYZE documents; VACUUM ANALYZE log");
        Ok((PgStore::open(server, kb_id, Create::Never)?, value))
    }

    /// Rename this KB's schema to `openkb_<hex>_moved_<suffix>` (after its state moved to a
    /// local `state.db`): kept for reference, and no longer found by any process still
    /// configured for it, so nothing can be written there and lost.
    pub fn retire(&self, suffix: &str) -> Result<String> {
        let aside = format!("{}_moved_{suffix}", self.schema);
        let mut conn = self.connection()?;
        conn.client
            .batch_execute(&format!("ALTER SCHEMA {} RENAME TO {aside}", self.schema))
            .map_err(|e| self.loc().error(e))?;
        Ok(aside)
    }

    pub fn kb_id(&self) -> &KbId {
        &self.kb_id
    }

    pub fn schema_name(&self) -> &str {
        &self.schema
    }

    pub fn schema_version(&self) -> i64 {
        self.schema_version
    }

    pub fn is_too_new(&self) -> bool {
        self.too_new
    }

    /// Where this store's state lives, for messages: `PostgreSQL schema openkb_... in
    /// database ... on host:port`.
    pub fn location(&self) -> &str {
        &self.location_text
    }

    fn loc(&self) -> Location {
        Location {
            text: self.location_text.clone(),
        }
    }

    /// The error every write would meet, if any.
    pub fn ensure_writable(&self) -> Result<()> {
        if self.too_new {
            return Err(Error::SchemaTooNew {
                path: PathBuf::from(&self.location_text),
                found: self.schema_version,
                supported: schema::latest_version(),
            });
        }
        Ok(())
    }

    /// A pooled connection for reading.
    pub fn reader(&self) -> Result<PgReader> {
        Ok(PgReader {
            conn: RefCell::new(self.connection()?),
            location: self.loc(),
        })
    }

    /// The spare connection when it is free and alive, else one from the pool.
    fn connection(&self) -> Result<Lent> {
        let spare = self.spare.lock().ok().and_then(|mut slot| slot.take());
        if let Some(conn) = spare.filter(|c| !c.client.is_closed()) {
            return Ok(Lent::Spare {
                conn: Some(conn),
                home: Arc::clone(&self.spare),
            });
        }
        let pooled = self.pool.get().map_err(|e| self.loc().pool_error(e))?;
        Ok(Lent::Pooled(pooled))
    }

    /// Run `body` in one READ COMMITTED transaction on a pooled connection and commit it;
    /// see [`run_write`].
    pub fn write<T>(
        &self,
        fence: Option<Fence>,
        mut body: impl FnMut(&PgWriteTx<'_>) -> Result<T>,
    ) -> Result<T> {
        self.ensure_writable()?;
        let mut conn = self.connection()?;
        run_write(&mut conn, &self.write_plan(fence), &mut body)
    }

    fn write_plan(&self, fence: Option<Fence>) -> WritePlan {
        WritePlan {
            location: self.loc(),
            fence,
            first_statements: format!(
                "SET LOCAL lock_timeout = {}; SELECT pg_advisory_xact_lock({WRITE_LOCK_CLASS}, {})",
                self.busy_timeout.as_millis().max(1),
                kb_lock_key(&self.kb_id)
            ),
        }
    }

    /// Run `body` in one write transaction on `session` (the connection that holds the KB
    /// lock), so a session the server dropped cannot commit anything.
    pub fn write_on<T>(
        &self,
        session: &mut PgSession,
        fence: Option<Fence>,
        mut body: impl FnMut(&PgWriteTx<'_>) -> Result<T>,
    ) -> Result<T> {
        self.ensure_writable()?;
        run_write(&mut session.conn, &self.write_plan(fence), &mut body)
    }

    /// A dedicated connection outside the pool (the KB lock's session), with TCP keepalives
    /// and the server's `client_connection_check_interval`, so a holder that vanishes is seen
    /// gone (and its session's advisory locks freed) within about ten seconds.
    pub fn session(&self) -> Result<PgSession> {
        let mut config = for_schema(&self.server, &self.schema);
        config
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(5))
            .keepalives_interval(Duration::from_secs(2))
            .keepalives_retries(3);
        let options = format!(
            "{} -c client_connection_check_interval=2s -c tcp_keepalives_idle=5 \
             -c tcp_keepalives_interval=2 -c tcp_keepalives_count=3",
            config.get_options().unwrap_or_default()
        );
        config.options(&options);
        let client = self.connector.connect(&config, &self.loc())?;
        Ok(PgSession {
            conn: Conn {
                client,
                statements: Statements::default(),
            },
            location: self.loc(),
        })
    }
}

/// A fencing token: the `lock_epoch` the KB lock's holder was given when it acquired the lock
/// exclusively. A write transaction carrying one commits only while `meta.lock_epoch` still
/// holds it; a later holder has moved it on, and the write is refused as fenced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fence {
    pub epoch: i64,
}

/// A dedicated connection to the KB's schema (see [`PgStore::session`]).
pub struct PgSession {
    conn: Conn,
    location: Location,
}

impl std::fmt::Debug for PgSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgSession")
            .field("location", &self.location.text)
            .finish()
    }
}

impl PgSession {
    /// Move `meta.lock_epoch` on by one and return the new value: the fencing token of an
    /// exclusive acquisition. Committed at once, so every older token is void from now on.
    pub fn advance_lock_epoch(&mut self) -> Result<Fence> {
        let row = self
            .conn
            .client
            .query_one(
                "UPDATE meta SET value = (value::bigint + 1)::text WHERE key = 'lock_epoch'
                 RETURNING value::bigint",
                &[],
            )
            .map_err(|e| self.location.error(e))?;
        Ok(Fence { epoch: row.get(0) })
    }

    /// Try to take the advisory lock (`class`, `key`) in `mode` without waiting; true when
    /// it was granted. Session-level: held until [`PgSession::advisory_unlock`] or the end
    /// of the session, and counted (each grant needs its own unlock).
    pub fn try_advisory_lock(&mut self, mode: LockMode, class: i32, key: i32) -> Result<bool> {
        let sql = match mode {
            LockMode::Shared => "SELECT pg_try_advisory_lock_shared($1, $2)",
            LockMode::Exclusive => "SELECT pg_try_advisory_lock($1, $2)",
        };
        self.conn
            .client
            .query_one(sql, &[&class, &key])
            .map(|r| r.get(0))
            .map_err(|e| self.location.error(e))
    }

    /// Wait for the advisory lock (`class`, `key`) in `mode`, at most `timeout` (`None`:
    /// forever). A wait that runs out is [`Error::Busy`] (the server's 55P03).
    pub fn advisory_lock(
        &mut self,
        mode: LockMode,
        class: i32,
        key: i32,
        timeout: Option<Duration>,
    ) -> Result<()> {
        let sql = match mode {
            LockMode::Shared => "SELECT pg_advisory_lock_shared($1, $2)",
            LockMode::Exclusive => "SELECT pg_advisory_lock($1, $2)",
        };
        // lock_timeout 0 means "no limit"; a wait bounded below a millisecond becomes 1 ms.
        let millis = timeout.map_or(0, |t| t.as_millis().clamp(1, i32::MAX as u128));
        let waited = (|| {
            self.conn
                .client
                .batch_execute(&format!("SET lock_timeout = {millis}"))?;
            let outcome = self.conn.client.execute(sql, &[&class, &key]);
            self.conn.client.batch_execute("SET lock_timeout = 0")?;
            outcome
        })();
        waited.map(drop).map_err(|e| self.location.error(e))
    }

    /// Release one grant of the advisory lock (`class`, `key`) in `mode`; false when this
    /// session did not hold it.
    pub fn advisory_unlock(&mut self, mode: LockMode, class: i32, key: i32) -> Result<bool> {
        let sql = match mode {
            LockMode::Shared => "SELECT pg_advisory_unlock_shared($1, $2)",
            LockMode::Exclusive => "SELECT pg_advisory_unlock($1, $2)",
        };
        self.conn
            .client
            .query_one(sql, &[&class, &key])
            .map(|r| r.get(0))
            .map_err(|e| self.location.error(e))
    }

    /// `application_name` of the sessions that hold an advisory lock of (`class`, `key`), for
    /// the message a waiting process prints.
    pub fn lock_holders(&mut self, class: i32, key: i32) -> Result<Vec<String>> {
        let rows = self
            .conn
            .client
            .query(
                "SELECT DISTINCT coalesce(nullif(a.application_name, ''), 'pid ' || a.pid)
                 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                 WHERE l.locktype = 'advisory' AND l.granted
                   AND l.classid = $1::int4::oid AND l.objid = $2::int4::oid
                   AND l.objsubid = 2 AND l.pid <> pg_backend_pid()",
                &[&class, &key],
            )
            .map_err(|e| self.location.error(e))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// The server's process id serving this session (for tests and doctor).
    pub fn backend_pid(&mut self) -> Result<i32> {
        self.conn
            .client
            .query_one("SELECT pg_backend_pid()", &[])
            .map(|r| r.get(0))
            .map_err(|e| self.location.error(e))
    }
}

/// How one KB's write transactions begin: where (for messages), the fencing token to check,
/// and the statements that take the KB's write lock with the store's patience.
struct WritePlan {
    location: Location,
    fence: Option<Fence>,
    first_statements: String,
}

fn run_write<T>(
    conn: &mut Conn,
    plan: &WritePlan,
    body: &mut impl FnMut(&PgWriteTx<'_>) -> Result<T>,
) -> Result<T> {
    let mut pause = Duration::from_millis(20);
    for attempt in 1..=WRITE_ATTEMPTS {
        match write_once(conn, plan, body) {
            Err(Attempt::Retry) if attempt < WRITE_ATTEMPTS => {
                std::thread::sleep(pause);
                pause *= 2;
            }
            Err(Attempt::Retry) => break,
            Err(Attempt::Failed(e)) => return Err(e),
            Ok(value) => return Ok(value),
        }
    }
    Err(Error::Busy {
        path: PathBuf::from(&plan.location.text),
    })
}

enum Attempt {
    /// Another writer held on (lock time-out), a serialization failure or a deadlock: the
    /// whole transaction may be tried again.
    Retry,
    Failed(Error),
}

fn write_once<T>(
    conn: &mut Conn,
    plan: &WritePlan,
    body: &mut impl FnMut(&PgWriteTx<'_>) -> Result<T>,
) -> std::result::Result<T, Attempt> {
    let location = &plan.location;
    let classify = |e: postgres::Error| match location.error(e) {
        Error::Busy { .. } => Attempt::Retry,
        other => Attempt::Failed(other),
    };
    let Conn { client, statements } = conn;
    let mut tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::ReadCommitted)
        .start()
        .map_err(classify)?;
    tx.batch_execute(&plan.first_statements).map_err(classify)?;
    if let Some(fence) = plan.fence {
        // Before any work, so a fenced writer stops at once; the row lock taken here also
        // makes a new holder's epoch change wait for this commit.
        let held = tx
            .execute(
                "UPDATE meta SET value = value WHERE key = 'lock_epoch' AND value = $1",
                &[&fence.epoch.to_string()],
            )
            .map_err(classify)?;
        if held == 0 {
            return Err(Attempt::Failed(Error::Fenced {
                location: location.text.clone(),
                epoch: fence.epoch,
            }));
        }
    }
    let write = PgWriteTx {
        tx: RefCell::new(tx),
        location: location.clone(),
        statements,
    };
    let value = body(&write).map_err(|e| match e {
        // The body's statements turned a serialization failure into Busy: retry it whole.
        Error::Busy { .. } => Attempt::Retry,
        other => Attempt::Failed(other),
    })?;
    write.tx.into_inner().commit().map_err(classify)?;
    Ok(value)
}

/// A pooled connection, for reads outside a write transaction.
pub struct PgReader {
    conn: RefCell<Lent>,
    location: Location,
}

/// A connection lent out by a store: its spare one (given back when done), or a pooled one.
enum Lent {
    Spare {
        conn: Option<Conn>,
        home: Arc<Mutex<Option<Conn>>>,
    },
    Pooled(r2d2::PooledConnection<CachingManager>),
}

impl std::ops::Deref for Lent {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        match self {
            Lent::Spare { conn, .. } => conn.as_ref().expect("a spare connection is lent whole"),
            Lent::Pooled(pooled) => pooled,
        }
    }
}

impl std::ops::DerefMut for Lent {
    fn deref_mut(&mut self) -> &mut Conn {
        match self {
            Lent::Spare { conn, .. } => conn.as_mut().expect("a spare connection is lent whole"),
            Lent::Pooled(pooled) => pooled,
        }
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        if let Lent::Spare { conn, home } = self
            && let Ok(mut slot) = home.lock()
            && slot.is_none()
        {
            *slot = conn.take();
        }
    }
}

/// An open write transaction.
pub struct PgWriteTx<'c> {
    tx: RefCell<postgres::Transaction<'c>>,
    location: Location,
    statements: &'c Statements,
}

/// Statements prepared on one connection, by text, kept as long as the connection: a
/// statement run again (the lookups and writes of every registration) costs one round trip
/// instead of two (prepare, then execute).
type Statements = RefCell<std::collections::HashMap<String, postgres::Statement>>;

/// A connection and the statements prepared on it.
pub(crate) struct Conn {
    client: Client,
    statements: Statements,
}

/// The pool's connection manager: connections opened by the store's [`Connector`], handed
/// out with their statement cache.
#[derive(Debug)]
struct CachingManager {
    config: Config,
    connector: Connector,
}

impl r2d2::ManageConnection for CachingManager {
    type Connection = Conn;
    type Error = postgres::Error;

    fn connect(&self) -> std::result::Result<Conn, postgres::Error> {
        Ok(Conn {
            client: self.connector.connect_raw(&self.config)?,
            statements: Statements::default(),
        })
    }

    fn is_valid(&self, conn: &mut Conn) -> std::result::Result<(), postgres::Error> {
        conn.client.simple_query("").map(|_| ())
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        conn.client.is_closed()
    }
}

/// What a backend error message says the state is: the schema and the server.
#[derive(Clone, Debug)]
pub(crate) struct Location {
    text: String,
}

impl Location {
    fn new(server: &Config, schema: &str) -> Location {
        Location {
            text: format!("PostgreSQL schema {schema} in {}", describe_server(server)),
        }
    }

    /// Map a server error to the library error: unreachable server or dropped connection =>
    /// [`Error::StateUnreachable`]; lock time-out, serialization failure, deadlock =>
    /// [`Error::Busy`] (a write transaction retries those whole); the rest keep the
    /// server's message, detail and hint.
    pub(crate) fn error(&self, e: postgres::Error) -> Error {
        if is_unreachable(&e) {
            return Error::StateUnreachable {
                location: self.text.clone(),
                message: describe(&e),
            };
        }
        if matches!(
            e.code(),
            Some(
                &SqlState::LOCK_NOT_AVAILABLE
                    | &SqlState::T_R_SERIALIZATION_FAILURE
                    | &SqlState::T_R_DEADLOCK_DETECTED
            )
        ) {
            return Error::Busy {
                path: PathBuf::from(&self.text),
            };
        }
        Error::Storage {
            location: self.text.clone(),
            message: describe(&e),
        }
    }

    fn pool_error(&self, e: r2d2::Error) -> Error {
        Error::StateUnreachable {
            location: self.text.clone(),
            message: e.to_string(),
        }
    }

    fn refused(&self, refusal: schema::Refusal, kb_id: &KbId) -> Error {
        match refusal {
            schema::Refusal::Missing => Error::StateMissing {
                location: self.text.clone(),
            },
            schema::Refusal::Unversioned => Error::Invalid(format!(
                "{}: has no schema_version in its meta table, so it was not made by openkb; \
                 check the kb_id in .openkb/config.yaml",
                self.text
            )),
            schema::Refusal::OtherKb { found } => Error::Invalid(format!(
                "{}: belongs to KB {found}, not to this KB ({kb_id}); the kb_id in \
                 .openkb/config.yaml was changed or copied from another KB; restore it",
                self.text
            )),
        }
    }
}

/// True for errors that mean the server is not there (any more) for this connection: nothing
/// was committed by the statement that met it.
fn is_unreachable(e: &postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if let Some(code) = e.code() {
        let code = code.code();
        // 08: connection exception; 57P01..57P03: the server is shutting down, crashed or
        // is starting; 53300: too many connections.
        return code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300");
    }
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        if inner.is::<std::io::Error>() {
            return true;
        }
        source = inner.source();
    }
    // The crate's own time-out (connect_timeout) carries no source.
    e.to_string().contains("timeout")
}

/// The server's message with its detail and hint, or the client's error chain.
fn describe(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut text = format!("{} (SQLSTATE {})", db.message(), db.code().code());
        if let Some(detail) = db.detail() {
            text.push_str(&format!("; {detail}"));
        }
        if let Some(hint) = db.hint() {
            text.push_str(&format!("; hint: {hint}"));
        }
        return text;
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        text.push_str(&format!(": {inner}"));
        source = inner.source();
    }
    text
}
