//! What interrupted commands leave behind: unfinished intents, temp files, Python-tool crash
//! journals, and a `hashes.json` that reappeared after migration.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::error::Result;
use crate::fsx;
use crate::ingest::leftovers::human_size;
use crate::kb::Kb;
use crate::session::WriteSession;
use crate::state::{Store, intents};

use super::{DbState, Finding};
use crate::fsx::{WalkStep, walk};

/// A temp file younger than this may belong to a command that is still running.
pub const TEMP_MIN_AGE: Duration = fsx::ABANDONED_TEMP_AGE;

/// Folders never searched for temp files: the PageIndex blob store belongs to another package.
const TEMP_SKIP: &[&str] = &[".openkb/files/"];

/// Unfinished operations recorded in the `intents` table by an interrupted `add`, `remove`
/// or `compile`. Each is exactly what the next exclusive command (or `--fix`) settles.
pub fn check_intents(_kb: &Kb, store: &Store) -> Result<Vec<Finding>> {
    let reader = store.reader()?;
    let pending = intents::unfinished(&reader)?;
    if pending.is_empty() {
        return Ok(vec![Finding::ok("intent", "no interrupted operations")]);
    }
    Ok(pending
        .iter()
        .map(|intent| {
            let hook = match &intent.hook {
                Some(hook) if !crate::ingest::hook::live_members(hook.pgid).is_empty() => {
                    format!(
                        " (processes of its compile hook, process group {}, may still be \
                         running: the fix kills them first)",
                        hook.pgid
                    )
                }
                _ => String::new(),
            };
            Finding::problem(
                "intent",
                format!(
                    "an interrupted {} of {} (started {} by process {}) is unfinished{hook}; \
                     `openkb doctor --fix` (or the next add/remove) finishes or rolls it back",
                    intent.operation.as_str(),
                    intent.doc_name.as_deref().unwrap_or(&intent.hash),
                    intent.started_at,
                    intent.pid
                ),
            )
            .fixable()
        })
        .collect())
}

/// Finish or roll back unfinished intents (`--fix`) with the recovery every write session
/// runs; returns what it repaired, marked `fixed`.
pub fn fix_intents(session: &WriteSession) -> Result<Vec<Finding>> {
    let done = session.settle()?;
    let unsettled = done.unsettled.iter().map(|(op, what, why)| {
        Finding::problem(
            "intent",
            format!(
                "could not finish the interrupted {op} of {what}: {why}; fix the cause and run \
                 `openkb doctor --fix` again (other commands are not blocked by it)"
            ),
        )
    });
    let settled = [
        (done.adds_rolled_back, "add(s) rolled back"),
        (done.adds_completed, "add(s) completed"),
        (done.removes_finished, "remove(s) finished"),
        (done.compiles_interrupted, "compile(s) marked failed"),
        (
            done.leftovers_swept,
            "leftover(s) of dead processes removed (staging folders, lock files, temp databases)",
        ),
        (
            done.hooks_killed,
            "orphaned compile hook process group(s) killed",
        ),
    ];
    Ok(settled
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| {
            let mut finding = Finding::warning("intent", format!("{n} {what}")).fixable();
            finding.fixed = true;
            finding
        })
        .chain(unsettled)
        .collect())
}

pub fn check(kb: &Kb, db: &DbState) -> Result<Vec<Finding>> {
    let mut findings = Vec::new();
    let temps = old_temp_files(kb, TEMP_MIN_AGE)?;
    if temps.is_empty() {
        findings.push(Finding::ok("temp-file", "no leftover temp files"));
    }
    for path in temps {
        findings.push(
            Finding::warning(
                "temp-file",
                format!(
                    "{path} is a temp file left by an interrupted write (older than {} minutes); \
                     `openkb doctor --fix` removes it",
                    TEMP_MIN_AGE.as_secs() / 60
                ),
            )
            .fixable(),
        );
    }
    let dead = crate::ingest::leftovers::find_leftovers(kb)?;
    if dead.is_empty() {
        findings.push(Finding::ok(
            "leftovers",
            "no staging folders or temp databases of dead processes",
        ));
    } else {
        let total: u64 = dead.iter().map(|d| d.bytes).sum();
        for item in &dead {
            findings.push(
                Finding::warning(
                    "leftovers",
                    format!(
                        "{} ({}) was left by a killed openkb process; the next write command \
                         or `openkb doctor --fix` removes it",
                        item.path,
                        human_size(item.bytes)
                    ),
                )
                .fixable(),
            );
        }
        if dead.len() > 1 {
            findings.push(Finding::warning(
                "leftovers",
                format!(
                    "{} leftover(s) of killed processes hold {} in all",
                    dead.len(),
                    human_size(total)
                ),
            ));
        }
    }
    findings.extend(python_journals(kb)?);
    if *db != DbState::Legacy
        && db != &DbState::Missing
        && let Some(entries) = kb.legacy_registry_entries()?
    {
        findings.push(Finding::warning(
            "hashes.json",
            format!(
                ".openkb/hashes.json reappeared after migration ({entries} entries; was the \
                 Python tool used on this KB?): openkb ignores it; run `openkb migrate` to merge \
                 the entries state.db does not have"
            ),
        ));
    }
    Ok(findings)
}

/// KB-relative paths of openkb/Python temp files (`.<name>.<random>.tmp`) at least `min_age`
/// old ([`TEMP_MIN_AGE`] for doctor), anywhere in the KB but the PageIndex blob store.
pub fn old_temp_files(kb: &Kb, min_age: Duration) -> Result<Vec<String>> {
    let now = SystemTime::now();
    let mut found = Vec::new();
    walk(kb.root(), "", &mut |rel, entry| {
        if rel.ends_with('/') {
            return if TEMP_SKIP.contains(&rel) {
                WalkStep::Skip
            } else {
                WalkStep::Continue
            };
        }
        let name = rel.rsplit('/').next().unwrap_or(rel);
        if fsx::is_temp_name(name) && fsx::modified_at_least(entry.metadata(), now, min_age) {
            found.push(rel.to_owned());
        }
        WalkStep::Continue
    })?;
    found.sort();
    Ok(found)
}

/// `.openkb/journal/*.json` of the Python tool (0.4.3+): an `active` one is an operation that
/// crashed half-way and that only the Python tool can roll back.
fn python_journals(kb: &Kb) -> Result<Vec<Finding>> {
    let dir = kb.openkb_dir().join("journal");
    let mut paths: Vec<PathBuf> = Vec::new();
    for entry in fsx::read_dir_if_exists(&dir)? {
        let path = entry.path();
        if path.extension().is_some_and(|x| x == "json") {
            paths.push(path);
        }
    }
    paths.sort();
    let mut findings = Vec::new();
    let refused: std::collections::HashMap<PathBuf, String> = crate::legacy::journal::inspect(kb)
        .map(|reports| {
            reports
                .into_iter()
                .filter(|r| matches!(r.outcome, crate::legacy::journal::Outcome::Refused { .. }))
                .map(|r| (r.file.clone(), r.describe(false)))
                .collect()
        })
        .unwrap_or_default();
    for path in paths {
        if let Some(why) = refused.get(&path) {
            findings.push(Finding::problem("python-journal", why.clone()));
            continue;
        }
        let shown = format!(
            ".openkb/journal/{}",
            path.file_name().unwrap_or_default().to_string_lossy()
        );
        let journal: Option<serde_json::Value> = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let field = |k: &str| {
            journal
                .as_ref()
                .and_then(|j| j.get(k))
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        };
        let operation = field("operation").unwrap_or_else(|| "an operation".to_owned());
        findings.push(match field("status").as_deref() {
            Some("active") => Finding::problem(
                "python-journal",
                format!(
                    "{shown}: the Python openkb tool was interrupted during {operation} and its \
                     changes may be half-applied; run any write command of the Python tool \
                     once (it rolls the operation back), then `openkb doctor` again"
                ),
            ),
            Some(status) => Finding::warning(
                "python-journal",
                format!(
                    "{shown}: a finished ({status}) Python-tool journal was left behind; the \
                     Python tool discards it on its next write command"
                ),
            ),
            None => Finding::warning(
                "python-journal",
                format!(
                    "{shown}: an unreadable Python-tool journal; the Python tool removes it on \
                     its next write command"
                ),
            ),
        });
    }
    Ok(findings)
}
