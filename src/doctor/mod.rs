//! `openkb doctor`: is this knowledge base healthy, and repair what can be repaired safely.
//!
//! A run is a list of [`Finding`]s, one per thing looked at (or per problem found), each with a
//! [`Severity`]: `Ok`, `Warning` (works, but something deserves attention) or `Problem` (the
//! KB is damaged or unusable as it is). The checks, each in its own module:
//! - `db`: the `state.db` file itself: is it an openkb database, `quick_check` (`--full`:
//!   `integrity_check` + `foreign_key_check`), schema version against this binary, journal
//!   mode, WAL size. A missing `state.db` beside a `hashes.json` is a legacy KB: reported, and
//!   never created here.
//! - `fs`: network filesystems (where openkb refuses to write, see `netfs.rs`) and sync folders.
//! - `files`: the registry against the files: missing raw copies and sources, files nobody
//!   owns, summaries without a document, `wiki/log.md` against the log table.
//! - `leftovers`: unfinished intents, old temp files, Python-tool crash journals, a
//!   `hashes.json` that reappeared after migration.
//!
//! With `--fix` (under the exclusive KB lock) `repair` does what is safe, then every check
//! runs again so the result reflects the repaired KB. Nothing the user made is ever deleted:
//! a damaged `state.db` is moved aside (`state.db.corrupt-<UTC timestamp>`, with its `-wal`
//! and `-shm`) and rebuilt from the files; only openkb's own temp files are removed.
//!
//! The run takes the KB's shared lock for a check and the exclusive one for `--fix` itself (a
//! caller that already holds it re-enters it), so no library caller can repair unlocked. It is
//! not a read session: it must look at a missing or damaged `state.db`, which it opens
//! read-only after reading its header; `--fix` writes through a write session.

mod db;
mod files;
mod fs;
mod leftovers;
mod repair;
mod state;

use serde::Serialize;

use crate::config::{KbId, StateConfig};
use crate::error::Result;
use crate::kb::Kb;
use crate::state::backend::CheckDepth;
use crate::state::{Queries, Store};

pub use db::DbState;
pub use leftovers::{TEMP_MIN_AGE, check_intents, fix_intents, old_temp_files};
pub use state::StateReport;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Ok,
    Warning,
    Problem,
}

/// One result of one check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable identifier of the check, for scripts (`state.db`, `temp-file`, `missing-raw`...).
    pub check: &'static str,
    pub severity: Severity,
    pub message: String,
    /// `openkb doctor --fix` can repair it.
    pub fixable: bool,
    /// `--fix` repaired it in this run.
    pub fixed: bool,
}

impl Finding {
    pub fn ok(check: &'static str, message: impl Into<String>) -> Self {
        Self::new(check, Severity::Ok, message, false)
    }
    pub fn warning(check: &'static str, message: impl Into<String>) -> Self {
        Self::new(check, Severity::Warning, message, false)
    }
    pub fn problem(check: &'static str, message: impl Into<String>) -> Self {
        Self::new(check, Severity::Problem, message, false)
    }
    fn new(
        check: &'static str,
        severity: Severity,
        message: impl Into<String>,
        fixable: bool,
    ) -> Self {
        Finding {
            check,
            severity,
            message: message.into(),
            fixable,
            fixed: false,
        }
    }
    pub fn fixable(mut self) -> Self {
        self.fixable = true;
        self
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// `integrity_check` and `foreign_key_check` instead of `quick_check`.
    pub full: bool,
    /// Repair what is safe (the caller holds the exclusive KB lock).
    pub fix: bool,
}

/// The outcome of a doctor run.
#[derive(Debug, Serialize)]
pub struct Report {
    pub knowledge_base: String,
    pub healthy: bool,
    pub problems: usize,
    pub warnings: usize,
    pub fixed: usize,
    /// Where the state lives and how fast it answered; `None` when it could not be opened.
    pub state: Option<StateReport>,
    pub findings: Vec<Finding>,
}

impl Report {
    fn new(kb: &Kb, findings: Vec<Finding>, state: Option<StateReport>) -> Report {
        let count = |s: Severity| {
            findings
                .iter()
                .filter(|f| !f.fixed && f.severity == s)
                .count()
        };
        let problems = count(Severity::Problem);
        Report {
            knowledge_base: kb.root().display().to_string(),
            healthy: problems == 0,
            problems,
            warnings: count(Severity::Warning),
            fixed: findings.iter().filter(|f| f.fixed).count(),
            state,
            findings,
        }
    }

    /// 0 when no problem remains (warnings allowed), 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        if self.healthy {
            crate::error::exit::OK
        } else {
            crate::error::exit::FAILURE
        }
    }
}

/// True when the KB's lock file or `state.db` is a symlink: then nothing may open them (SQLite
/// would create its `-wal` beside the link's target), and only [`symlinks_only`] can run.
pub fn cannot_open_state(kb: &Kb) -> bool {
    crate::kbpath::symlinked_bookkeeping(kb)
        .iter()
        .any(|(rel, _)| rel == ".openkb/ingest.lock" || rel.starts_with(".openkb/state.db"))
}

/// The report for a KB whose lock file or `state.db` is a symlink: the links, and why nothing
/// else was checked. Opens nothing.
pub fn symlinks_only(kb: &Kb) -> Report {
    let mut findings = fs::check_symlinks(kb);
    findings.push(Finding::warning(
        "state.db",
        "the other checks were skipped: they would open state.db and the lock file through \
         the symbolic links above",
    ));
    Report::new(kb, findings, None)
}

/// Check the KB (and repair it with `options.fix`).
pub fn run(kb: &Kb, options: Options) -> Result<Report> {
    let _lock = if options.fix {
        kb.lock_exclusive()?
    } else {
        kb.lock_shared()?
    };
    let diagnosis = diagnose(kb, options.full)?;
    if !options.fix {
        return Ok(Report::new(kb, diagnosis.findings, diagnosis.state));
    }
    let mut fixed = repair::repair(kb, &diagnosis)?;
    let after = diagnose(kb, options.full)?;
    fixed.extend(after.findings);
    Ok(Report::new(kb, fixed, after.state))
}

/// Everything the checks found, and what `repair` needs to know about the database.
pub(crate) struct Diagnosis {
    pub findings: Vec<Finding>,
    pub db: DbState,
    pub state: Option<StateReport>,
}

fn diagnose(kb: &Kb, full: bool) -> Result<Diagnosis> {
    if let StateConfig::Postgres { kb_id } = kb.state_config()? {
        return diagnose_team(kb, &kb_id, full);
    }
    let (mut findings, db) = db::check(kb, full)?;
    findings.extend(fs::check(kb, &db, false)?);
    findings.extend(fs::check_symlinks(kb));
    let mut state = None;
    if db.is_readable() {
        // Read-only: a check never migrates the schema, switches the journal mode or creates
        // anything (an older schema is reported by the `schema` check and upgraded by --fix).
        let registry = Store::open_read_only(&kb.state_db()).and_then(|store| {
            let reader = store.reader()?;
            let measured = StateReport::measure(kb, &store, || reader.counts().map(drop))?;
            let mut found = files::check(kb, &reader, full)?;
            found.extend(leftovers::check_intents(kb, &store)?);
            Ok((found, measured))
        });
        match registry {
            Ok((found, measured)) => {
                findings.extend(found);
                state = Some(measured);
            }
            // A newer schema may not be readable by this binary; say so instead of failing.
            Err(e) if e.exit_code() == crate::error::exit::FAILURE => findings.push(
                Finding::problem("state.db", format!("cannot read the registry: {e}")),
            ),
            Err(e) => return Err(e),
        }
    } else {
        findings.push(Finding::warning(
            "registry",
            "registry checks skipped: state.db cannot be read",
        ));
    }
    findings.extend(leftovers::check(kb, &db)?);
    Ok(Diagnosis {
        findings,
        db,
        state,
    })
}

/// A team KB: its state is a schema in the server, not a file, so the `state.db` checks give
/// way to the server's (reachable, engine, schema version, round trip, integrity); the
/// checks of the files are the same. A server that cannot be reached is the command's error
/// (exit 5), not a finding: nothing can be checked without it.
fn diagnose_team(kb: &Kb, kb_id: &KbId, full: bool) -> Result<Diagnosis> {
    let store = Store::from_backend(Box::new(
        kb.team_store(kb_id, crate::state::postgres::Create::Never)?,
    ));
    let reader = store.reader()?;
    let measured = StateReport::measure(kb, &store, || reader.counts().map(drop))?;
    let too_new = store.is_too_new();
    let mut findings = vec![if too_new {
        Finding::problem(
            "state",
            format!(
                "{}: schema version {} is newer than this openkb understands; it reads but \
                 never writes it: upgrade openkb",
                measured.location, measured.schema_version
            ),
        )
    } else {
        Finding::ok(
            "state",
            format!(
                "the state server answers; schema version {} is this openkb's",
                measured.schema_version
            ),
        )
    }];
    let depth = if full {
        CheckDepth::Full
    } else {
        CheckDepth::Quick
    };
    let damage = store.backend().check_integrity(depth)?;
    if damage.is_empty() {
        findings.push(Finding::ok(
            "integrity",
            "the state's integrity checks pass",
        ));
    }
    for problem in damage {
        findings.push(Finding::problem("integrity", problem));
    }
    let db = DbState::Usable {
        too_new,
        pinned_rollback: false,
    };
    findings.extend(fs::check(kb, &db, true)?);
    findings.extend(fs::check_symlinks(kb));
    findings.extend(files::check(kb, &reader, full)?);
    findings.extend(leftovers::check_intents(kb, &store)?);
    findings.extend(leftovers::check(kb, &db)?);
    Ok(Diagnosis {
        findings,
        db,
        state: Some(measured),
    })
}
