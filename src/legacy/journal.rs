//! Recovery of the Python tool's crash journals (`.openkb/journal/*.json`, openkb 0.4.3+).
//!
//! The Python tool snapshots the paths an `add` will touch into
//! `.openkb/staging/rollback-<id>/`, writes a journal listing `{target, backup}` pairs
//! (`backup: null` = the target did not exist), and rolls active journals back on its next
//! exclusive lock. A KB migrated while such a journal is pending would import a half-applied
//! add, so `openkb migrate` runs the same recovery first, under the exclusive lock:
//!
//! - journals are handled in file-name order;
//! - `committed` / `rolled_back`: discarded (backup folder and journal removed);
//! - `active` (also a missing status): rolled back like `MutationSnapshot.rollback` (targets
//!   with the most path components first; each target removed, then restored from its backup
//!   when it has one), marked `rolled_back`, then discarded;
//! - a rollback that fails: `attempts` is incremented and the journal rewritten as active (as
//!   the Python tool does), and the migration stops, so nothing half-rolled-back is imported.
//!
//! Two deliberate differences from the Python tool: an unreadable journal (bad JSON, missing
//! `kb_dir` / `backup_dir`, a malformed entry) is reported and left in place for a person to
//! look at, where the Python tool deletes it; and every path a journal names is re-rooted
//! from its recorded `kb_dir` into the KB where it actually is now (a KB copied from another
//! machine keeps journals with the old absolute paths). A journal is refused as a whole
//! (reported, left in place, never executed) when it names anything the Python tool's `add`
//! could not have written: a path outside the KB once re-rooted (`..`, another absolute path,
//! a symlinked folder leading out), a `backup_dir` that is not one folder in
//! `.openkb/staging/`, a backup outside it, a target that is not one of the paths `add`
//! snapshots (formats §1.8: `hashes.json`, PageIndex's files, `index.md`, `log.md`,
//! `concepts/`, `entities/`, a summary, a source, an images folder, a file in `raw/`), or a
//! target journaled as a file that is a folder now. Every path goes through
//! [`crate::kbpath::KbPath`].

use std::fs;
use std::path::{Component, Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::{Error, IoContext, Result};
use crate::fsx;
use crate::kb::Kb;

/// What recovery did (or, for a dry run, would do) with one journal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// An active journal whose targets were restored, then discarded.
    RolledBack { operation: String, targets: usize },
    /// A `committed` or `rolled_back` journal, discarded.
    Discarded { status: String },
    /// Not a journal recovery can use; left in place.
    Unreadable { reason: String },
    /// Names paths outside the KB; left in place.
    Refused { reason: String },
    /// The rollback failed (the journal was rewritten with `attempts` incremented).
    Failed { reason: String, attempts: u64 },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalReport {
    pub file: PathBuf,
    pub outcome: Outcome,
}

impl JournalReport {
    /// True when the journal was taken care of (rolled back or discarded).
    pub fn recovered(&self) -> bool {
        matches!(
            self.outcome,
            Outcome::RolledBack { .. } | Outcome::Discarded { .. }
        )
    }

    /// True when a half-applied change may remain in the KB.
    pub fn blocks_import(&self) -> bool {
        matches!(
            self.outcome,
            Outcome::Failed { .. } | Outcome::Refused { .. }
        )
    }

    pub fn describe(&self, dry_run: bool) -> String {
        let name = self
            .file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (would, did) = if dry_run {
            ("would be ", "would be ")
        } else {
            ("", "")
        };
        match &self.outcome {
            Outcome::RolledBack { operation, targets } => format!(
                "journal {name}: interrupted {operation} {did}rolled back ({targets} path(s) restored or removed)"
            ),
            Outcome::Discarded { status } => {
                format!("journal {name}: {status}, {would}discarded")
            }
            Outcome::Unreadable { reason } => format!(
                "journal {name}: unreadable ({reason}); left in place, look at {} by hand",
                self.file.display()
            ),
            Outcome::Refused { reason } => format!(
                "journal {name}: refused as untrusted ({reason}); left in place and not executed. Check \
                 the KB by hand, then move {} out of .openkb/journal/",
                self.file.display()
            ),
            Outcome::Failed { reason, attempts } => {
                format!("journal {name}: rollback failed (attempt {attempts}): {reason}")
            }
        }
    }
}

/// The journal files of `kb`, in the order recovery handles them.
pub fn journal_files(kb: &Kb) -> Result<Vec<PathBuf>> {
    let dir = kb.openkb_dir().join("journal");
    let mut files = Vec::new();
    for item in fsx::read_dir_if_exists(&dir)? {
        if item.file_name().to_string_lossy().ends_with(".json") {
            files.push(item.path());
        }
    }
    files.sort();
    Ok(files)
}

/// What [`recover`] would do, changing nothing.
pub fn inspect(kb: &Kb) -> Result<Vec<JournalReport>> {
    let root = kb_root(kb)?;
    Ok(journal_files(kb)?
        .into_iter()
        .map(|file| {
            let outcome = match load(&file, &root) {
                Err(outcome) => outcome,
                Ok(journal) if journal.is_terminal() => Outcome::Discarded {
                    status: journal.status.clone(),
                },
                Ok(journal) => match journal.check_on_disk() {
                    Err(reason) => Outcome::Refused { reason },
                    Ok(()) => Outcome::RolledBack {
                        operation: journal.operation.clone(),
                        targets: journal.entries.len(),
                    },
                },
            };
            JournalReport { file, outcome }
        })
        .collect())
}

/// The content `rel` (a KB-relative path such as `.openkb/hashes.json`) will have once
/// [`recover`] has rolled back the active journals, computed without changing anything: the
/// file as it is when no active journal names it, else the backup of the last journal that
/// does (`None`: it did not exist before, so the rollback removes it). A dry run reads the KB
/// through this, so it predicts what the run, which recovers first, will find.
pub fn content_after_recovery(kb: &Kb, rel: &str) -> Result<Option<Vec<u8>>> {
    let root = kb_root(kb)?;
    let target = root.join(rel);
    let mut after: Option<Option<PathBuf>> = None;
    for file in journal_files(kb)? {
        let Ok(journal) = load(&file, &root) else {
            continue; // left in place by recovery: changes nothing
        };
        if journal.is_terminal() {
            continue;
        }
        for (path, backup) in &journal.entries {
            if *path == target {
                after = Some(backup.clone());
            }
        }
    }
    let read = fsx::read_if_exists;
    match after {
        None => read(&target),
        Some(None) => Ok(None),
        Some(Some(backup)) => read(&backup),
    }
}

/// Recover every journal of `kb`. The caller holds the KB's exclusive lock.
pub fn recover(kb: &Kb) -> Result<Vec<JournalReport>> {
    let root = kb_root(kb)?;
    let mut reports = Vec::new();
    for file in journal_files(kb)? {
        let outcome = match load(&file, &root) {
            Err(outcome) => outcome,
            Ok(mut journal) => journal.recover(),
        };
        reports.push(JournalReport { file, outcome });
    }
    Ok(reports)
}

fn kb_root(kb: &Kb) -> Result<PathBuf> {
    kb.root()
        .canonicalize()
        .with_path("cannot resolve", kb.root())
}

struct Journal {
    file: PathBuf,
    /// The KB root the entries were re-rooted into.
    root: PathBuf,
    data: Value,
    status: String,
    operation: String,
    backup_dir: PathBuf,
    /// (target, backup) re-rooted into the KB, in journal order.
    entries: Vec<(PathBuf, Option<PathBuf>)>,
    attempts: u64,
}

/// Read a journal the way `_snapshot_from_journal` does; an `Err` is the outcome for a journal
/// that cannot be used.
fn load(file: &Path, root: &Path) -> std::result::Result<Journal, Outcome> {
    let data = read_json(file)?;
    let object = data
        .as_object()
        .ok_or_else(|| unreadable("not a JSON object".into()))?;
    let place = Place {
        recorded_kb: PathBuf::from(text_of(object, "kb_dir")?),
        root,
    };
    let backup_dir = place.reroot(&text_of(object, "backup_dir")?, "backup_dir")?;
    check_backup_dir(&place.rel(&backup_dir)).map_err(refused)?;
    let status = match object.get("status") {
        None | Some(Value::Null) => "active".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => return Err(unreadable(format!("status {other} is not a string"))),
    };
    let operation = match object.get("operation") {
        Some(Value::String(s)) => s.clone(),
        _ => "mutation".to_owned(),
    };
    let attempts = match object.get("attempts") {
        None | Some(Value::Null) => 0,
        Some(Value::Number(n)) => n
            .as_u64()
            .ok_or_else(|| unreadable(format!("attempts {n} is not a count")))?,
        Some(other) => return Err(unreadable(format!("attempts {other} is not a number"))),
    };
    let entries = match object.get("entries") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| load_entry(item, &place, &backup_dir))
            .collect::<std::result::Result<_, _>>()?,
        Some(_) => return Err(unreadable("\"entries\" is not a list".into())),
    };
    Ok(Journal {
        file: file.to_path_buf(),
        root: root.to_path_buf(),
        data,
        status,
        operation,
        backup_dir,
        entries,
        attempts,
    })
}

fn unreadable(reason: String) -> Outcome {
    Outcome::Unreadable { reason }
}

fn refused(reason: String) -> Outcome {
    Outcome::Refused { reason }
}

/// The journal file's JSON. Never through a symlink: recovery writes the journal back (its
/// status, its attempts), and through a link that would write wherever the link leads.
fn read_json(file: &Path) -> std::result::Result<Value, Outcome> {
    if fs::symlink_metadata(file).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(refused(
            "the journal file is a symbolic link (recovery would write through it); replace it \
             with the file it points to if it is the Python tool's"
                .into(),
        ));
    }
    let bytes = fs::read(file).map_err(|e| unreadable(format!("cannot read: {e}")))?;
    serde_json::from_slice(&bytes).map_err(|e| unreadable(format!("invalid JSON: {e}")))
}

fn text_of(object: &Map<String, Value>, key: &str) -> std::result::Result<String, Outcome> {
    match object.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(unreadable(format!("{key:?} is not a string"))),
        None => Err(unreadable(format!("no {key:?}"))),
    }
}

/// Where the journal's paths land: written for the KB folder it recorded, read in this one.
struct Place<'a> {
    recorded_kb: PathBuf,
    root: &'a Path,
}

impl Place<'_> {
    fn reroot(&self, path: &str, what: &str) -> std::result::Result<PathBuf, Outcome> {
        reroot(Path::new(path), &self.recorded_kb, self.root)
            .map_err(|reason| refused(format!("{what} {path:?} {reason}")))
    }

    fn rel(&self, path: &Path) -> String {
        path.strip_prefix(self.root)
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned()
    }
}

/// One `(target, backup)` entry, both re-rooted and checked: the target one the Python tool's
/// `add` writes, the backup inside the journal's `backup_dir`.
fn load_entry(
    item: &Value,
    place: &Place<'_>,
    backup_dir: &Path,
) -> std::result::Result<(PathBuf, Option<PathBuf>), Outcome> {
    let target = match item.get("target") {
        Some(Value::String(t)) => place.reroot(t, "target")?,
        _ => return Err(unreadable("an entry has no \"target\" string".into())),
    };
    check_target(&place.rel(&target)).map_err(refused)?;
    let backup = match item.get("backup") {
        None | Some(Value::Null) => None,
        Some(Value::String(b)) if b.is_empty() => None,
        Some(Value::String(b)) => {
            let backup = place.reroot(b, "backup")?;
            if !backup.starts_with(backup_dir) || backup == backup_dir {
                return Err(refused(format!(
                    "backup {b:?} is not inside the journal's backup_dir"
                )));
            }
            Some(backup)
        }
        Some(other) => return Err(unreadable(format!("backup {other} is not a string"))),
    };
    Ok((target, backup))
}

/// A journal's `backup_dir` must be one folder in `.openkb/staging/`, as the Python tool
/// makes them (`rollback-<hex>`): discarding a journal deletes it.
fn check_backup_dir(rel: &str) -> std::result::Result<(), String> {
    match rel.split('/').collect::<Vec<_>>().as_slice() {
        [".openkb", "staging", name] if !name.is_empty() && !name.starts_with('.') => Ok(()),
        _ => Err(format!(
            "backup_dir {rel:?} is not a folder in .openkb/staging/ (where the Python tool \
             keeps its backups)"
        )),
    }
}

/// The paths the Python tool's `add` snapshots (formats §1.8), and nothing else: a journal
/// naming another path is not one the Python tool wrote, and is never executed.
fn check_target(rel: &str) -> std::result::Result<(), String> {
    let parts: Vec<&str> = rel.split('/').collect();
    let allowed = match parts.as_slice() {
        [".openkb", "hashes.json"] => true,
        [".openkb", db] => ["", "-wal", "-shm", "-journal"]
            .iter()
            .any(|suffix| *db == format!("pageindex.db{suffix}")),
        [".openkb", "files", rest @ ..] => rest.len() >= 2,
        ["wiki", "index.md" | "log.md" | "concepts" | "entities"] => true,
        ["wiki", "summaries", page] => page.ends_with(".md"),
        ["wiki", "sources", "images", doc] => !doc.is_empty(),
        ["wiki", "sources", file] => *file != "images",
        ["raw", rest @ ..] => !rest.is_empty(),
        _ => false,
    };
    if allowed
        && parts
            .iter()
            .all(|p| !p.is_empty() && *p != "." && *p != "..")
    {
        Ok(())
    } else {
        Err(format!(
            "target {rel:?} is not a path the Python tool's add could have written"
        ))
    }
}

/// `path` (absolute, under the journal's `recorded_kb`) moved into `root`. Refuses anything
/// that would land outside `root`.
fn reroot(path: &Path, recorded_kb: &Path, root: &Path) -> std::result::Result<PathBuf, String> {
    let relative = path
        .strip_prefix(recorded_kb)
        .or_else(|_| path.strip_prefix(root))
        .map_err(|_| "is not inside the knowledge base".to_owned())?;
    if relative
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
    {
        return Err("leaves the knowledge base (contains ..)".into());
    }
    if relative.as_os_str().is_empty() {
        return Err("is the knowledge base folder itself".into());
    }
    // The Python tool never journals openkb's own database; a journal that does is not one.
    if relative
        .to_str()
        .is_some_and(|r| r.starts_with(".openkb/state.db"))
    {
        return Err("is openkb's state database".into());
    }
    let relative = relative
        .to_str()
        .ok_or_else(|| "is not valid UTF-8".to_owned())?;
    crate::kbpath::KbPath::under(root, relative)
        .map(|path| path.as_path().to_path_buf())
        .map_err(|e| match e {
            Error::Invalid(message) => message,
            other => other.to_string(),
        })
}

impl Journal {
    fn is_terminal(&self) -> bool {
        matches!(self.status.as_str(), "committed" | "rolled_back")
    }

    fn recover(&mut self) -> Outcome {
        if self.is_terminal() {
            return match self.discard() {
                Ok(()) => Outcome::Discarded {
                    status: self.status.clone(),
                },
                Err(e) => Outcome::Failed {
                    reason: format!("cannot discard: {e}"),
                    attempts: self.attempts,
                },
            };
        }
        if let Err(reason) = self.check_on_disk() {
            return Outcome::Refused { reason };
        }
        match self.rollback() {
            Ok(()) => {
                let targets = self.entries.len();
                match self.discard() {
                    Ok(()) => Outcome::RolledBack {
                        operation: self.operation.clone(),
                        targets,
                    },
                    Err(e) => Outcome::Failed {
                        reason: format!("rolled back, but cannot discard: {e}"),
                        attempts: self.attempts,
                    },
                }
            }
            Err(e) => {
                self.attempts += 1;
                let reason = match self.rewrite("active") {
                    Ok(()) => e.to_string(),
                    Err(write_error) => format!("{e}; and {write_error}"),
                };
                Outcome::Failed {
                    reason,
                    attempts: self.attempts,
                }
            }
        }
    }

    /// Before anything is rolled back: a target the Python tool snapshots as a file must not
    /// be a folder now (rolling it back would delete the whole folder).
    fn check_on_disk(&self) -> std::result::Result<(), String> {
        for (target, _) in &self.entries {
            let rel = target.strip_prefix(&self.root).unwrap_or(target);
            let rel = rel.to_string_lossy();
            let folder_target = matches!(
                rel.split('/').collect::<Vec<_>>().as_slice(),
                ["wiki", "concepts" | "entities"]
                    | ["wiki", "sources", "images", _]
                    | [".openkb", "files", ..]
            );
            let is_folder = fs::symlink_metadata(target).is_ok_and(|m| m.is_dir());
            if is_folder && !folder_target {
                return Err(format!(
                    "target {rel:?} is a folder, but the Python tool only journals a file there"
                ));
            }
        }
        Ok(())
    }

    fn rollback(&self) -> Result<()> {
        // Children before parents, so removing a folder cannot undo a more specific restore.
        let mut order: Vec<&(PathBuf, Option<PathBuf>)> = self.entries.iter().collect();
        order.sort_by_key(|(target, _)| std::cmp::Reverse(target.components().count()));
        for (target, backup) in order {
            remove_path(target)?;
            if let Some(backup) = backup {
                if let Some(parent) = target.parent() {
                    fs::create_dir_all(parent).with_path("cannot create folder", parent)?;
                }
                let meta = fs::symlink_metadata(backup).with_path("cannot read backup", backup)?;
                if meta.is_dir() {
                    copy_tree(backup, target)?;
                } else {
                    fsx::atomic_copy(backup, target)?;
                }
            }
        }
        self.rewrite("rolled_back")
    }

    /// Write the journal back with a new status and the current attempt count, as the Python
    /// tool does (`atomic_write_json`, indent 2, ASCII, trailing newline).
    fn rewrite(&self, status: &str) -> Result<()> {
        let mut data = self.data.clone();
        if let Some(object) = data.as_object_mut() {
            object.insert("status".into(), Value::String(status.into()));
            object.insert("attempts".into(), Value::from(self.attempts));
        }
        let mut text = String::new();
        super::export::write_value(&mut text, &data, 0);
        text.push('\n');
        fsx::atomic_write(&self.file, text.as_bytes())
    }

    fn discard(&self) -> Result<()> {
        remove_path(&self.backup_dir)?;
        fsx::remove_file_if_exists(&self.file).map(drop)
    }
}

/// Remove a file, symlink or folder tree (never following a symlink); absent is fine.
fn remove_path(path: &Path) -> Result<()> {
    let outcome = match fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => Err(e),
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
    };
    outcome.with_path("cannot remove", path)
}

/// Copy a backup folder tree to `target` (symlinks copied as links, never followed).
fn copy_tree(source: &Path, target: &Path) -> Result<()> {
    fs::create_dir_all(target).with_path("cannot create folder", target)?;
    for item in fs::read_dir(source).with_path("cannot read backup", source)? {
        let item = item.with_path("cannot read backup", source)?;
        let from = item.path();
        let to = target.join(item.file_name());
        let kind = item.file_type().with_path("cannot read backup", &from)?;
        if kind.is_dir() {
            copy_tree(&from, &to)?;
        } else if kind.is_symlink() {
            let link = fs::read_link(&from).with_path("cannot read backup", &from)?;
            std::os::unix::fs::symlink(link, &to).with_path("cannot restore", &to)?;
        } else {
            fs::copy(&from, &to).with_path("cannot restore", &to)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reroot_moves_paths_and_refuses_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let old = Path::new("/home/user/kb");
        assert_eq!(
            reroot(Path::new("/home/user/kb/wiki/index.md"), old, &root).unwrap(),
            root.join("wiki/index.md")
        );
        assert_eq!(
            reroot(&root.join("raw/a.md"), old, &root).unwrap(),
            root.join("raw/a.md")
        );
        assert!(reroot(Path::new("/etc/passwd"), old, &root).is_err());
        assert!(reroot(Path::new("/home/user/kb/../x"), old, &root).is_err());
        assert!(reroot(Path::new("/home/user/kb"), old, &root).is_err());
        assert!(reroot(Path::new("/home/user/kb/.openkb/state.db-wal"), old, &root).is_err());
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("link")).unwrap();
        assert!(reroot(Path::new("/home/user/kb/link/f"), old, &root).is_err());
    }
}
