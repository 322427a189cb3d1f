//! A knowledge base on disk: finding it, its paths, and the entry points every command uses
//! to lock it and open its state.
//!
//! Discovery follows the Python tool: `--kb-dir` (or `OPENKB_DIR`), else the first ancestor of
//! the working directory containing a `.openkb/` folder, else `default_kb` of global.yaml.
//! The `.openkb/` folder is the marker of a KB, so it is never removed.
//!
//! A KB whose `.openkb/hashes.json` exists and whose `state.db` does not is a legacy KB: no
//! command may open (and so create) a `state.db` beside it, because an empty registry would
//! make every document look new. Every session ([`Kb::read_session`], [`Kb::write_session`],
//! [`Kb::probe`]) refuses with a message pointing at `openkb migrate`.

use std::path::{Path, PathBuf};

use crate::config::{GlobalConfig, KbConfig, StateConfig};
use crate::error::{Error, IoContext, Result};
use crate::lock::{self, LockGuard, LockMode};
use crate::lock_team::{LockSession, TeamLockGuard};
use crate::session::{Probe, ReadSession, WriteSession};
use crate::settings::Settings;

pub const OPENKB_DIR_ENV: &str = "OPENKB_DIR";

/// The KB lock: the flock of a local KB, or the advisory lock of a team KB; the same
/// protocol (shared for reads, exclusive for changes, re-entrant per thread).
#[derive(Debug)]
#[must_use = "the lock is released when the guard is dropped"]
pub enum KbLock {
    Local(LockGuard),
    Team(TeamLockGuard),
}

impl KbLock {
    pub fn mode(&self) -> LockMode {
        match self {
            KbLock::Local(guard) => guard.mode(),
            KbLock::Team(guard) => guard.mode(),
        }
    }

    /// True when this guard took the lock (not a nested re-entry): recovery runs only then.
    pub fn is_outermost(&self) -> bool {
        match self {
            KbLock::Local(guard) => guard.is_outermost(),
            KbLock::Team(guard) => guard.is_outermost(),
        }
    }

    /// The database session holding a team lock, on which the state's writes must run.
    pub fn team_session(&self) -> Option<std::sync::Arc<LockSession>> {
        match self {
            KbLock::Local(_) => None,
            KbLock::Team(guard) => Some(guard.session()),
        }
    }

    /// The team KB's store the lock was taken through, for the session under it: one server
    /// connection fewer than opening the store again.
    pub fn team_store(&self) -> Option<crate::state::postgres::PgStore> {
        match self {
            KbLock::Local(_) => None,
            KbLock::Team(guard) => Some(guard.session().store().clone()),
        }
    }
}

/// How [`Kb::discover_how`] found a KB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found {
    /// `--kb-dir` or `OPENKB_DIR`.
    Explicit,
    /// The working directory or one of its ancestors.
    Enclosing,
    /// `default_kb` of global.yaml: nothing encloses the working directory.
    Default,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kb {
    root: PathBuf,
    /// The user's settings, carried to every layer that works on this KB.
    settings: Settings,
}

impl Kb {
    /// A KB rooted at `root` (made absolute); does not check that it exists.
    pub fn at(root: &Path) -> Result<Kb> {
        // Resolved like the Python tool's `Path.resolve()`, so global.yaml names one KB once.
        let root = match root.canonicalize() {
            Ok(resolved) => resolved,
            Err(_) => std::path::absolute(root).with_path("cannot resolve", root)?,
        };
        Ok(Kb {
            root,
            settings: Settings::default(),
        })
    }

    /// This KB under `settings` (the command line's; [`Kb::at`] and discovery give the
    /// default ones).
    pub fn with_settings(mut self, settings: Settings) -> Kb {
        self.settings = settings;
        self
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Where this KB's state lives: the `state:` section of its config (refused when it holds
    /// a password or a connection string).
    pub fn state_config(&self) -> Result<StateConfig> {
        self.config()?.state()
    }

    /// Find the KB for a command: `explicit` (from `--kb-dir` or `OPENKB_DIR`), else walk up
    /// from `cwd`, else global `default_kb` (global.yaml found through `settings`). The KB
    /// carries `settings`.
    pub fn discover(explicit: Option<&Path>, cwd: &Path, settings: &Settings) -> Result<Kb> {
        Self::discover_how(explicit, cwd, settings).map(|(kb, _)| kb)
    }

    /// [`Kb::discover`], also saying how the KB was found: a command that falls back to the
    /// default KB must say so, or `openkb add .` outside any KB silently fills another one.
    pub fn discover_how(
        explicit: Option<&Path>,
        cwd: &Path,
        settings: &Settings,
    ) -> Result<(Kb, Found)> {
        let (kb, found) = Self::find(explicit, cwd, settings)?;
        Ok((kb.with_settings(settings.clone()), found))
    }

    fn find(explicit: Option<&Path>, cwd: &Path, settings: &Settings) -> Result<(Kb, Found)> {
        if let Some(dir) = explicit {
            return Ok((Self::open_explicit(dir)?, Found::Explicit));
        }
        for dir in cwd.ancestors() {
            if dir.join(".openkb").is_dir() {
                return Ok((Kb::at(dir)?, Found::Enclosing));
            }
        }
        if let Some(default) = GlobalConfig::load(settings)?.default_kb() {
            if default.join(".openkb").is_dir() {
                return Ok((Kb::at(&default)?, Found::Default));
            }
            // A KB moved or deleted since it was made the default: say which, rather than a
            // bare "not found".
            return Err(Error::NotAKb {
                path: default,
                reason: format!(
                    "is default_kb in ~/.config/openkb/global.yaml but is no longer a knowledge \
                     base (moved or deleted?), and no KB encloses {}; run `openkb use PATH` to \
                     choose another default, or pass --kb-dir PATH",
                    cwd.display()
                ),
            });
        }
        Err(Error::NoKb {
            searched_from: Some(cwd.to_path_buf()),
        })
    }

    fn open_explicit(dir: &Path) -> Result<Kb> {
        let not_a_kb = |reason: &str| Error::NotAKb {
            path: dir.to_path_buf(),
            reason: reason.to_owned(),
        };
        match std::fs::metadata(dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(not_a_kb("does not exist")),
            Err(e) => Err(Error::io("cannot read", dir, e)),
            Ok(meta) if !meta.is_dir() => Err(not_a_kb(
                "is a file, not a folder: name the knowledge base's folder",
            )),
            Ok(_) if !dir.join(".openkb").is_dir() => Err(not_a_kb(
                "is not an openkb knowledge base (no .openkb/ folder); run `openkb init` there",
            )),
            Ok(_) => Kb::at(dir),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn openkb_dir(&self) -> PathBuf {
        self.root.join(".openkb")
    }
    pub fn state_db(&self) -> PathBuf {
        self.openkb_dir().join("state.db")
    }
    pub fn hashes_json(&self) -> PathBuf {
        self.openkb_dir().join("hashes.json")
    }
    pub fn config_path(&self) -> PathBuf {
        self.openkb_dir().join("config.yaml")
    }
    pub fn lock_path(&self) -> PathBuf {
        self.openkb_dir().join("ingest.lock")
    }
    pub fn raw_dir(&self) -> PathBuf {
        self.root.join("raw")
    }
    pub fn wiki_dir(&self) -> PathBuf {
        self.root.join("wiki")
    }
    pub fn log_md(&self) -> PathBuf {
        self.wiki_dir().join("log.md")
    }
    pub fn index_md(&self) -> PathBuf {
        self.wiki_dir().join("index.md")
    }

    pub fn config(&self) -> Result<KbConfig> {
        KbConfig::load(&self.config_path())
    }

    /// Shared KB lock, for commands that only read.
    pub(crate) fn lock_shared(&self) -> Result<KbLock> {
        crate::kbpath::KbPath::bookkeeping(self, ".openkb/ingest.lock")?;
        self.lock(LockMode::Shared)
    }

    /// Exclusive KB lock, for commands that change `raw/`, `wiki/` or the registry. Refused
    /// while one of the KB's own files is a symlink (see [`crate::kbpath::BOOKKEEPING`]).
    pub(crate) fn lock_exclusive(&self) -> Result<KbLock> {
        crate::kbpath::refuse_symlinked_bookkeeping(self)?;
        self.lock(LockMode::Exclusive)
    }

    /// The KB lock of this KB's mode: the flock of a local KB, the advisory lock in the state
    /// server of a team KB (see `lock_team.rs`).
    fn lock(&self, mode: LockMode) -> Result<KbLock> {
        match self.state_config()? {
            StateConfig::Sqlite => {
                lock::acquire_waiting(&self.lock_path(), mode, &self.root, &self.settings.lock)
                    .map(KbLock::Local)
            }
            StateConfig::Postgres { kb_id } => {
                let store = self.team_store(&kb_id, crate::state::postgres::Create::Never)?;
                crate::lock_team::acquire(self, &store, mode, &self.settings.lock).map(KbLock::Team)
            }
        }
    }

    /// The state of team KB `kb_id` in the server `OPENKB_STATE_URL` names.
    pub(crate) fn team_store(
        &self,
        kb_id: &crate::config::KbId,
        create: crate::state::postgres::Create,
    ) -> Result<crate::state::postgres::PgStore> {
        let server = self.settings.state.config(&self.root)?;
        crate::state::postgres::PgStore::open(&server, kb_id, create)
    }

    /// A read session: the shared lock and `state.db` opened read-only (see `session.rs`).
    pub fn read_session(&self) -> Result<ReadSession> {
        ReadSession::open(self)
    }

    /// A write session: the exclusive lock, a writable `state.db` and recovery of interrupted
    /// work done (see `session.rs`). The only source of write transactions.
    pub fn write_session(&self) -> Result<WriteSession> {
        WriteSession::open(self)
    }

    /// [`Kb::write_session`] that creates `state.db` when it is missing, unless a legacy
    /// `hashes.json` waits for `openkb migrate`. Only `init` creates a database this way.
    pub fn write_session_creating(&self) -> Result<WriteSession> {
        WriteSession::open_creating(self)
    }

    /// `state.db` opened read-only without any lock: for work done outside the lock.
    pub fn probe(&self) -> Result<Probe> {
        Probe::open(self)
    }

    /// [`Kb::probe`] for a command that writes (`add`, `watch`, `compile`): an older schema is
    /// first upgraded by a write session; the probe itself still never migrates anything.
    pub fn probe_for_write(&self) -> Result<Probe> {
        crate::session::upgrading_first(self, Probe::open)
    }

    /// [`Kb::read_session`] for a command that reads first and writes after (`lint`,
    /// `remove`): an older schema is first upgraded by a write session.
    pub fn read_session_for_write(&self) -> Result<ReadSession> {
        crate::session::upgrading_first(self, ReadSession::open)
    }

    /// True when the KB's files show documents: a file in `raw/` or `wiki/sources/`, or an
    /// entry in `wiki/log.md`. Decides how a missing `state.db` is reported.
    pub fn has_documents(&self) -> bool {
        let has_file = |dir: PathBuf| {
            std::fs::read_dir(dir).is_ok_and(|mut entries| {
                entries.any(|e| {
                    e.is_ok_and(|e| {
                        !e.file_name().to_string_lossy().starts_with('.')
                            && e.file_type().is_ok_and(|t| t.is_file())
                    })
                })
            })
        };
        let log_has_entries = || {
            std::fs::read_to_string(self.log_md())
                .is_ok_and(|text| text.lines().any(|l| l.starts_with("## [")))
        };
        has_file(self.raw_dir()) || has_file(self.wiki_dir().join("sources")) || log_has_entries()
    }

    /// `.openkb/state.db`, checked as every session opens it: neither it nor its `-wal` and
    /// `-shm` may be a symlink (SQLite follows them and writes its sidecars wherever they
    /// lead, even for readers).
    pub(crate) fn state_db_checked(&self) -> Result<PathBuf> {
        for sidecar in ["-wal", "-shm"] {
            crate::kbpath::KbPath::bookkeeping(self, &format!(".openkb/state.db{sidecar}"))?;
        }
        Ok(
            crate::kbpath::KbPath::bookkeeping(self, ".openkb/state.db")?
                .as_path()
                .to_path_buf(),
        )
    }

    /// The legacy registry waiting to be migrated, if any: its entry count.
    pub fn legacy_registry_entries(&self) -> Result<Option<usize>> {
        let path = self.hashes_json();
        let Some(bytes) = crate::fsx::read_if_exists(&path)? else {
            return Ok(None);
        };
        // A count for the message only; a file that does not parse still blocks: it is the
        // user's data and `openkb migrate` reports exactly what is wrong with it.
        let entries = match serde_json::from_slice::<serde_json::Value>(&bytes) {
            Ok(serde_json::Value::Object(map)) => map.len(),
            _ => 0,
        };
        Ok(Some(entries))
    }
}
