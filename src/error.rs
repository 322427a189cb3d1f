//! The library's one error type.
//!
//! Every variant a user can cause names the file it concerns, says what went wrong and, where
//! there is one, what to do next. `exit_code` maps each variant to the documented exit code so
//! that scripts can tell "try again later" from "fix your input".

use std::path::{Path, PathBuf};

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Exit codes of the `openkb` binary (documented in the README).
pub mod exit {
    /// The command did what was asked.
    pub const OK: i32 = 0;
    /// The command failed; the message says why. Nothing was half-done.
    pub const FAILURE: i32 = 1;
    /// The command line was wrong (unknown flag, missing argument).
    pub const USAGE: i32 = 2;
    /// No usable knowledge base: none found, not initialized, or a legacy KB that needs
    /// `openkb migrate`.
    pub const NO_KB: i32 = 3;
    /// Another process holds the KB (lock wait timed out, or the database stayed busy):
    /// nothing changed, try again.
    pub const BUSY: i32 = 4;
    /// Team mode: the state server cannot be reached, or this process lost the KB lock
    /// (fenced); nothing was committed.
    pub const STATE_SERVER: i32 = 5;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{}: invalid YAML at line {line}, column {column}: {message}\n  fix the file by hand; openkb did not change it", path.display())]
    YamlSyntax {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },

    #[error("{}: {message}\n  fix the file by hand; openkb did not change it", path.display())]
    ConfigShape { path: PathBuf, message: String },

    /// A failure of the storage engine that is neither contention nor a foreign database:
    /// where (a file, or a server and database) and what the engine said.
    #[error("{location}: {message}")]
    Storage { location: String, message: String },

    #[error("{}: another openkb process is writing to this database; nothing was changed, try again", path.display())]
    Busy { path: PathBuf },

    #[error("{}: is not an openkb state database ({reason})\n  run `openkb doctor` to inspect it", path.display())]
    NotStateDb { path: PathBuf, reason: String },

    #[error("{}: schema version {found} is newer than this openkb understands (up to {supported})\n  upgrade openkb; refusing to write so the newer data stays intact", path.display())]
    SchemaTooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },

    #[error("{}: schema version {found} is older than this openkb reads ({supported}) and was not upgraded (a read-only filesystem, or `openkb doctor` without --fix)\n  run any other openkb command where state.db is writable (for example `openkb status` or `openkb doctor --fix`) to upgrade it in place", path.display())]
    SchemaBehind {
        path: PathBuf,
        found: i64,
        supported: i64,
    },

    #[error("{} is missing: `openkb doctor --fix` rebuilds it from raw/ and log.md{}\n  nothing was created; if it was moved away (a restore, a sync client), put it back instead", path.display(), if *has_documents { " (this knowledge base has documents)" } else { "" })]
    StateDbMissing { path: PathBuf, has_documents: bool },

    #[error("{} was {what} while this openkb process was using it (a restore, a sync client, `openkb doctor --fix`?); refusing to commit to a database that is no longer the KB's\n  nothing was committed and this operation's files were rolled back; run the command again", path.display())]
    StateDbReplaced { path: PathBuf, what: &'static str },

    #[error("timed out after {seconds}s waiting for another openkb process on {}\n  is another openkb (or the Python openkb tool) running? raise OPENKB_LOCK_TIMEOUT to wait longer", kb.display())]
    LockTimeout { kb: PathBuf, seconds: f64 },

    #[error("this openkb was started by the compile hook of openkb process {holder}, which holds the lock of {} until the hook ends: waiting for it would hang forever\n  compile_command must not run openkb commands on the knowledge base it compiles; run them after `openkb add`/`compile` returns", kb.display())]
    NestedInHook { kb: PathBuf, holder: u32 },

    #[error("cannot upgrade a shared lock on {} to an exclusive one in the same thread; take the exclusive lock first", path.display())]
    LockUpgrade { path: PathBuf },

    #[error("no knowledge base found{}\n  run `openkb init` to create one here, or pass --kb-dir PATH", searched_from.as_ref().map(|p| format!(" (searched from {} upwards, OPENKB_DIR and default_kb)", p.display())).unwrap_or_default())]
    NoKb { searched_from: Option<PathBuf> },

    #[error("{}: {reason}", path.display())]
    NotAKb { path: PathBuf, reason: String },

    #[error("{} is a legacy knowledge base: {} holds {entries} document(s) and there is no state.db yet\n  run `openkb migrate` to import it (nothing is lost; hashes.json is kept as hashes.json.migrated)", kb.display(), hashes_json.display())]
    LegacyKb {
        kb: PathBuf,
        hashes_json: PathBuf,
        entries: usize,
    },

    #[error("{} is already an openkb knowledge base (.openkb/ exists); nothing was changed", path.display())]
    AlreadyInitialized { path: PathBuf },

    #[error("invalid document hash {hash:?}: expected 64 lowercase hex digits (a SHA-256)")]
    InvalidHash { hash: String },

    #[error("doc_name {doc_name:?} is already owned by document {owner}")]
    DocNameTaken { doc_name: String, owner: String },

    #[error("{} is on a network filesystem ({fs_type}): SQLite's WAL mode and file locks are not safe there, so openkb refuses to write\n  move the knowledge base to a local disk, or, if only ONE machine at a time ever uses it, set OPENKB_NETWORK_FS=single-host (SQLite's rollback journal: journal_mode=DELETE, synchronous=FULL)", path.display())]
    NetworkFs { path: PathBuf, fs_type: String },
    #[error("{}: {problem}\n  openkb changed nothing; fix the file (or restore it from a backup) and run `openkb migrate` again", path.display())]
    LegacyFile { path: PathBuf, problem: String },

    #[error(
        "{location}: cannot reach the state server: {message}\n  nothing was committed; check that the server runs and that OPENKB_STATE_URL (or PGHOST, PGPORT, ...) points at it, then run the command again"
    )]
    StateUnreachable { location: String, message: String },

    #[error(
        "{location}: this openkb process lost the KB lock (its session ended, and another process has taken the lock since: lock epoch {epoch} is over)\n  nothing was committed; the next openkb command settles this operation's files; run it again"
    )]
    Fenced { location: String, epoch: i64 },

    #[error(
        "{location}: this openkb process lost the KB lock: the database session holding it ended ({message}; a network partition, a server restart or pg_terminate_backend)\n  nothing was committed; the next openkb command settles this operation's files; run it again"
    )]
    LockLost { location: String, message: String },

    #[error(
        "{location}: holds no state for this knowledge base\n  nothing was created; check OPENKB_STATE_URL (is it the KB's database?), or move a local KB there with `openkb migrate --to-postgres`"
    )]
    StateMissing { location: String },

    #[error("{0}")]
    Invalid(String),

    /// The command line asks for something impossible in a way clap cannot check (exit 2).
    #[error("{0}")]
    Usage(String),

    /// A command that works through many items finished, but some failed (each was reported
    /// as it happened); only the exit code is left to say so.
    #[error("{0}")]
    Incomplete(String),
}

impl Error {
    pub fn io(action: &'static str, path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            action,
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            Error::NoKb { .. }
            | Error::NotAKb { .. }
            | Error::LegacyKb { .. }
            | Error::StateDbMissing { .. } => exit::NO_KB,
            Error::Busy { .. } | Error::LockTimeout { .. } => exit::BUSY,
            Error::StateUnreachable { .. } | Error::Fenced { .. } | Error::LockLost { .. } => {
                exit::STATE_SERVER
            }
            Error::StateMissing { .. } => exit::NO_KB,
            Error::Usage(_) => exit::USAGE,
            _ => exit::FAILURE,
        }
    }
}

/// Attach a path and an action to an `io::Result`, so no I/O error reaches the user without
/// the file it concerns.
pub trait IoContext<T> {
    fn with_path(self, action: &'static str, path: impl AsRef<Path>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn with_path(self, action: &'static str, path: impl AsRef<Path>) -> Result<T> {
        self.map_err(|e| Error::io(action, path, e))
    }
}
