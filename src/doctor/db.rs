//! The `state.db` file: identity, integrity, schema version, journal mode, WAL size.

use crate::error::Result;
use crate::kb::Kb;
use crate::state::check::{self, DbHealth, DbReport};
use crate::state::schema;

use super::Finding;

/// A WAL this large means checkpoints are not keeping up (a reader held open for long).
const WAL_WARN_BYTES: u64 = 64 * 1024 * 1024;

/// What the database file is, as far as repairs are concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DbState {
    /// No `state.db`, and a `hashes.json` waiting for `openkb migrate`.
    Legacy,
    /// No `state.db` and no legacy registry: `--fix` rebuilds it from the files.
    Missing,
    /// Not a database, damaged, or another program's: `--fix` moves it aside and rebuilds.
    Broken(String),
    /// A readable openkb database.
    Usable {
        too_new: bool,
        /// Single-host rollback mode is pinned in `meta`.
        pinned_rollback: bool,
    },
}

impl DbState {
    pub fn is_readable(&self) -> bool {
        matches!(self, DbState::Usable { .. })
    }
    pub fn pinned_rollback(&self) -> bool {
        matches!(
            self,
            DbState::Usable {
                pinned_rollback: true,
                ..
            }
        )
    }
}

/// Where `state.db` is shown in findings.
const SHOWN: &str = ".openkb/state.db";

/// Inspect `state.db` without changing it (`full`: `integrity_check` and foreign keys rather
/// than `quick_check`): what is wrong with it, and what it is for the repairs.
pub fn check(kb: &Kb, full: bool) -> Result<(Vec<Finding>, DbState)> {
    let path = kb.state_db();
    if !path.exists() {
        return absent(kb);
    }
    let report = match check::inspect(&path, full)? {
        DbHealth::NotADatabase(reason) => return Ok(broken(format!("is not usable: {reason}"))),
        DbHealth::Foreign(reason) => {
            return Ok(broken(format!("is not an openkb database: {reason}")));
        }
        DbHealth::Inspected(report) => report,
    };
    if let Some(reason) = damage(&report, full) {
        return Ok(broken(reason));
    }
    let mut findings = integrity(&report, full);
    let pinned_rollback = report.pinned_journal_mode.as_deref() == Some(schema::JOURNAL_DELETE);
    findings.push(schema_version(report.user_version));
    findings.push(journal_mode(&report.journal_mode, pinned_rollback));
    findings.push(wal_size(report.wal_bytes));
    Ok((
        findings,
        DbState::Usable {
            too_new: report.user_version > schema::latest_version(),
            pinned_rollback,
        },
    ))
}

/// No `state.db`: a legacy KB waiting for `migrate`, or a lost database `--fix` rebuilds.
fn absent(kb: &Kb) -> Result<(Vec<Finding>, DbState)> {
    Ok(match kb.legacy_registry_entries()? {
        Some(entries) => (
            vec![Finding::problem(
                "state.db",
                format!(
                    "legacy knowledge base: {SHOWN} does not exist and .openkb/hashes.json \
                     holds {entries} document(s); run `openkb migrate` to import it"
                ),
            )],
            DbState::Legacy,
        ),
        None => (
            vec![
                Finding::problem(
                    "state.db",
                    format!(
                        "{SHOWN} is missing; run `openkb doctor --fix` to rebuild it from the \
                         files in raw/ and wiki/"
                    ),
                )
                .fixable(),
            ],
            DbState::Missing,
        ),
    })
}

/// A `state.db` only a rebuild can help, with what `--fix` does about it.
fn broken(reason: String) -> (Vec<Finding>, DbState) {
    let finding = Finding::problem(
        "state.db",
        format!(
            "{SHOWN} {reason}; run `openkb doctor --fix` to move it aside (as \
             state.db.corrupt-<timestamp>, nothing is deleted) and rebuild it from the files in \
             raw/ and wiki/"
        ),
    )
    .fixable();
    (vec![finding], DbState::Broken(reason))
}

fn check_pragma(full: bool) -> &'static str {
    if full {
        "integrity_check"
    } else {
        "quick_check"
    }
}

/// Why an openkb database that opened is still broken: a schema version openkb never writes,
/// or damage the integrity check found.
fn damage(report: &DbReport, full: bool) -> Option<String> {
    if report.user_version < 0 {
        return Some(format!(
            "has schema version {}, which openkb never writes (another program changed it)",
            report.user_version
        ));
    }
    if !report.is_corrupt() {
        return None;
    }
    let first: Vec<&str> = report
        .integrity_errors
        .iter()
        .take(3)
        .map(String::as_str)
        .collect();
    Some(format!(
        "is damaged ({} found {} problem(s): {})",
        check_pragma(full),
        report.integrity_errors.len(),
        first.join("; ")
    ))
}

/// The integrity check passed; with `full`, the foreign keys too (or each violation).
fn integrity(report: &DbReport, full: bool) -> Vec<Finding> {
    let mut findings = vec![Finding::ok(
        "integrity",
        format!("{}: ok", check_pragma(full)),
    )];
    if full {
        if report.foreign_key_errors.is_empty() {
            findings.push(Finding::ok("foreign-keys", "foreign_key_check: ok"));
        } else {
            for e in &report.foreign_key_errors {
                findings.push(Finding::problem("foreign-keys", e.clone()));
            }
        }
    }
    findings
}

/// The schema version against this binary's.
fn schema_version(version: i64) -> Finding {
    let latest = schema::latest_version();
    match version.cmp(&latest) {
        std::cmp::Ordering::Equal => {
            Finding::ok("schema", format!("schema version {latest} (current)"))
        }
        std::cmp::Ordering::Less => Finding::warning(
            "schema",
            format!(
                "schema version {version} is older than this openkb's {latest}; openkb \
                 upgrades it whenever it opens it (this check included)"
            ),
        ),
        std::cmp::Ordering::Greater => Finding::problem(
            "schema",
            format!(
                "schema version {version} is newer than this openkb understands (up to \
                 {latest}); openkb only reads this database: upgrade openkb"
            ),
        ),
    }
}

/// The journal mode against what it should be: WAL, or rollback when pinned for a network
/// filesystem.
fn journal_mode(mode: &str, pinned_rollback: bool) -> Finding {
    let mode = mode.to_ascii_lowercase();
    match (mode.as_str(), pinned_rollback) {
        ("wal", false) => Finding::ok("journal-mode", "journal mode: wal"),
        ("delete", true) => Finding::ok(
            "journal-mode",
            "journal mode: delete (single-host network mode, pinned in the meta table)",
        ),
        (_, true) => Finding::warning(
            "journal-mode",
            format!(
                "journal mode is {mode} but single-host rollback mode is pinned; the next \
                 openkb command switches it back to delete"
            ),
        ),
        (_, false) => Finding::warning(
            "journal-mode",
            format!("journal mode is {mode}, not wal; the next openkb command switches it"),
        ),
    }
}

/// The write-ahead log's size: a large one means checkpoints are not keeping up.
fn wal_size(wal_bytes: u64) -> Finding {
    if wal_bytes > WAL_WARN_BYTES {
        Finding::warning(
            "wal-size",
            format!(
                "the write-ahead log is {} MiB; `openkb doctor --fix` checkpoints it (is a \
                 long-running openkb process holding a read open?)",
                wal_bytes / (1024 * 1024)
            ),
        )
        .fixable()
    } else {
        Finding::ok("wal-size", format!("write-ahead log: {wal_bytes} bytes"))
    }
}
