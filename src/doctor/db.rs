//! The `state.db` file: identity, integrity, schema version, journal mode, WAL size.

use crate::error::Result;
use crate::kb::Kb;
use crate::state::check::{self, DbHealth};
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

pub fn check(kb: &Kb, full: bool) -> Result<(Vec<Finding>, DbState)> {
    let path = kb.state_db();
    let shown = ".openkb/state.db";
    if !path.exists() {
        return Ok(match kb.legacy_registry_entries()? {
            Some(entries) => (
                vec![Finding::problem(
                    "state.db",
                    format!(
                        "legacy knowledge base: {shown} does not exist and .openkb/hashes.json \
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
                            "{shown} is missing; run `openkb doctor --fix` to rebuild it from \
                             the files in raw/ and wiki/"
                        ),
                    )
                    .fixable(),
                ],
                DbState::Missing,
            ),
        });
    }
    let broken = |reason: String| {
        let finding = Finding::problem(
            "state.db",
            format!(
                "{shown} {reason}; run `openkb doctor --fix` to move it aside (as \
                 state.db.corrupt-<timestamp>, nothing is deleted) and rebuild it from the \
                 files in raw/ and wiki/"
            ),
        )
        .fixable();
        Ok((vec![finding], DbState::Broken(reason)))
    };
    let report = match check::inspect(&path, full)? {
        DbHealth::NotADatabase(reason) => return broken(format!("is not usable: {reason}")),
        DbHealth::Foreign(reason) => {
            return broken(format!("is not an openkb database: {reason}"));
        }
        DbHealth::Inspected(report) => report,
    };
    if report.user_version < 0 {
        return broken(format!(
            "has schema version {}, which openkb never writes (another program changed it)",
            report.user_version
        ));
    }
    let pragma = if full {
        "integrity_check"
    } else {
        "quick_check"
    };
    if report.is_corrupt() {
        let first: Vec<&str> = report
            .integrity_errors
            .iter()
            .take(3)
            .map(String::as_str)
            .collect();
        return broken(format!(
            "is damaged ({pragma} found {} problem(s): {})",
            report.integrity_errors.len(),
            first.join("; ")
        ));
    }
    let mut findings = vec![Finding::ok("integrity", format!("{pragma}: ok"))];
    if full {
        if report.foreign_key_errors.is_empty() {
            findings.push(Finding::ok("foreign-keys", "foreign_key_check: ok"));
        } else {
            for e in &report.foreign_key_errors {
                findings.push(Finding::problem("foreign-keys", e.clone()));
            }
        }
    }
    let latest = schema::latest_version();
    let too_new = report.user_version > latest;
    findings.push(match report.user_version.cmp(&latest) {
        std::cmp::Ordering::Equal => {
            Finding::ok("schema", format!("schema version {latest} (current)"))
        }
        std::cmp::Ordering::Less => Finding::warning(
            "schema",
            format!(
                "schema version {} is older than this openkb's {latest}; openkb upgrades it \
                 whenever it opens it (this check included)",
                report.user_version
            ),
        ),
        std::cmp::Ordering::Greater => Finding::problem(
            "schema",
            format!(
                "schema version {} is newer than this openkb understands (up to {latest}); \
                 openkb only reads this database: upgrade openkb",
                report.user_version
            ),
        ),
    });
    let pinned_rollback = report.pinned_journal_mode.as_deref() == Some(schema::JOURNAL_DELETE);
    let mode = report.journal_mode.to_ascii_lowercase();
    findings.push(match (mode.as_str(), pinned_rollback) {
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
    });
    let wal_bytes = report.wal_bytes;
    findings.push(if wal_bytes > WAL_WARN_BYTES {
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
    });
    Ok((
        findings,
        DbState::Usable {
            too_new,
            pinned_rollback,
        },
    ))
}
