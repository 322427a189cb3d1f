//! Settling what interrupted processes left: unfinished intents (and compile hooks they left
//! running); the write session then sweeps what dead processes left ([`super::leftovers`]).
//!
//! Runs when a write session opens on the outermost exclusive acquisition of the KB lock (see
//! `session::WriteSession::settle`), so no other openkb process is mid-operation while it
//! works: every intent it finds belongs to a process that died (or was killed) before its
//! commit.

use super::operation::Undo;
use super::prepare::STAGING_PREFIX;
use crate::error::{Error, Result};
use crate::kb::Kb;
use crate::kbpath::{KbPath, Kind};
use crate::session::WriteSession;
use crate::state::{Intent, IntentFile, IntentOp, Status, Store, WriteTx, intents};
use crate::wiki;

/// What recovery did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Adds whose commit had happened (only their intent and backups remained).
    pub adds_completed: usize,
    /// Adds rolled back (their new files removed, replaced files restored).
    pub adds_rolled_back: usize,
    /// Removes finished.
    pub removes_finished: usize,
    /// Compiles marked failed.
    pub compiles_interrupted: usize,
    /// Staging folders, their lock files and temp databases of dead processes removed.
    pub leftovers_swept: usize,
    /// Process groups of compile hooks whose openkb process died, killed.
    pub hooks_killed: usize,
    /// Intents that could not be settled now: (operation, document, why). They never block
    /// other work; `openkb doctor` reports them and `doctor --fix` tries again.
    pub unsettled: Vec<(String, String, String)>,
}

impl Recovered {
    pub fn is_empty(&self) -> bool {
        *self == Recovered::default()
    }
}

/// Finish or roll back every unfinished intent. Called by `WriteSession::settle` only, which
/// then sweeps leftovers ([`sweep_leftovers`]) and reports ([`Recovered::report`]).
pub(crate) fn recover_interrupted(session: &WriteSession) -> Result<Recovered> {
    let store = session.store();
    let mut done = Recovered::default();
    if store.is_too_new() {
        return Ok(done);
    }
    let pending = {
        let reader = store.reader()?;
        if intents::unfinished_count(&reader)? == 0 {
            Vec::new()
        } else {
            intents::unfinished(&reader)?
        }
    };
    for intent in pending {
        // One intent that cannot be settled (a file that cannot be removed, an index.md that
        // is not UTF-8) must not stop every other command on the KB: it stays recorded, and
        // is reported here and by `openkb doctor`.
        if let Err(e) = settle(session, &intent, &mut done) {
            let what = intent
                .doc_name
                .clone()
                .unwrap_or_else(|| intent.hash.clone());
            crate::notice::warn(&format!(
                "warning: could not finish an interrupted {} of {what}: {e}; it is left for \
                 `openkb doctor --fix`",
                intent.operation.as_str()
            ));
            done.unsettled
                .push((intent.operation.as_str().to_owned(), what, e.to_string()));
        }
    }
    Ok(done)
}

impl Recovered {
    /// Say on stderr what recovery did, if it did anything (unsettled intents were reported
    /// one by one as they failed).
    pub(crate) fn report(&self, kb: &Kb) {
        let settled = self.adds_rolled_back
            + self.adds_completed
            + self.removes_finished
            + self.compiles_interrupted
            + self.leftovers_swept
            + self.hooks_killed;
        if settled == 0 {
            return;
        }
        crate::notice::warn(&format!(
            "recovered interrupted work on {}: {} add(s) rolled back, {} add(s) completed, \
             {} remove(s) finished, {} compile(s) marked failed, {} leftover(s) of dead \
             processes removed, {} orphaned compile hook(s) killed",
            kb.root().display(),
            self.adds_rolled_back,
            self.adds_completed,
            self.removes_finished,
            self.compiles_interrupted,
            self.leftovers_swept,
            self.hooks_killed
        ));
    }
}

fn settle(session: &WriteSession, intent: &Intent, done: &mut Recovered) -> Result<()> {
    let (kb, store) = (session.kb(), session.store());
    // A hook left running by the dead process would keep writing into what is about to be
    // rolled back or marked failed: it goes first.
    if let Some(hook) = &intent.hook
        && super::hook::kill_orphaned_hook(hook)
    {
        done.hooks_killed += 1;
    }
    let abandon = |why: &str| {
        session.write(|tx| close_abandoned(tx, intent.id, intent.operation, &intent.hash, why))
    };
    match intent.operation {
        IntentOp::Add if store.is_known(&intent.hash)? => {
            drop_backups(kb, &intent.files);
            session.write(|tx| tx.delete_intent(intent.id))?;
            done.adds_completed += 1;
        }
        IntentOp::Add => {
            let undo_add = Undo::of_intent(&intent.files);
            undo(kb, store, intent.doc_name.as_deref(), &undo_add)?;
            abandon("")?;
            done.adds_rolled_back += 1;
        }
        IntentOp::Remove => {
            super::remove::finish(session, intent)?;
            done.removes_finished += 1;
        }
        IntentOp::Compile => {
            abandon("the compile was interrupted (the process died); run `openkb compile` again")?;
            done.compiles_interrupted += 1;
        }
    }
    Ok(())
}

/// The rows of an operation given up before its commit: its intent goes; a compile leaves
/// its document `failed` with `why` (never silently `pending` or `compiled`). Recovery runs
/// it for what a dead process left, [`Operation`](super::operation::Operation) for what failed
/// in process.
pub(crate) fn close_abandoned(
    tx: &WriteTx<'_>,
    id: i64,
    operation: IntentOp,
    hash: &str,
    why: &str,
) -> Result<()> {
    if operation == IntentOp::Compile {
        tx.set_status(hash, Status::Failed, Some(why))?;
    }
    tx.delete_intent(id)?;
    Ok(())
}

/// Put back what an uncommitted operation did to a document's files: pages edited in place
/// get their bytes back, each file is restored from its backup or deleted (last first), and
/// the document's `index.md` line is dropped when it is the operation's (see
/// [`Undo::index_line_ours`]). Recovery runs it for an interrupted add, knowing only its
/// intent; a dropped [`Operation`](super::operation::Operation) runs it knowing more.
pub(crate) fn undo(kb: &Kb, store: &Store, doc_name: Option<&str>, undo: &Undo) -> Result<()> {
    for (page, before) in undo.pages.iter().rev() {
        page.write_atomic(before)?;
    }
    roll_back_files(kb, store, &undo.files, doc_name, undo.index_line_ours)
}

/// Restore the files an uncommitted operation replaced, delete those it created, and drop
/// the document's `index.md` line: when `index_line_ours` says the operation inserted it
/// (`Some(true)`), or, when that is not known (`None`, after a crash), unless a registered
/// document owns the doc_name.
fn roll_back_files(
    kb: &Kb,
    store: &Store,
    files: &[IntentFile],
    doc_name: Option<&str>,
    index_line_ours: Option<bool>,
) -> Result<()> {
    for file in files.iter().rev() {
        // An intent is read back from state.db: its paths are checked again, and one that is
        // not a file openkb could have published (a folder, a KB file) is left alone.
        let owner = doc_name.filter(|d| crate::kbpath::check_doc_name(d).is_ok());
        if let Err(why) = crate::kbpath::owned_by_document(&file.path, owner) {
            crate::notice::warn(&format!(
                "warning: left {} alone: {}",
                crate::names::shown(&file.path),
                crate::names::shown_line(&why)
            ));
            continue;
        }
        let target = KbPath::new(kb, &file.path)?;
        match &file.backup {
            // The target existed before the add. Its backup is made before it is replaced,
            // so a missing backup means the add never got to this file: leave it alone
            // (deleting it would lose the previous version).
            Some(backup) => {
                let backup = match staged_backup(kb, backup) {
                    Ok(backup) => backup,
                    Err(why) => {
                        crate::notice::warn(&format!(
                            "warning: left {} alone: {}",
                            crate::names::shown(target.rel()),
                            crate::names::shown_line(&why.to_string())
                        ));
                        continue;
                    }
                };
                if target.kind()? == Some(Kind::Folder) {
                    crate::notice::warn(&format!(
                        "warning: left {} alone: it is a folder, not a file an add replaced",
                        crate::names::shown(target.rel())
                    ));
                } else {
                    backup.rename_to(&target)?;
                }
            }
            None => match target.kind()? {
                Some(Kind::Folder) => crate::notice::warn(&format!(
                    "warning: left {} alone: it is a folder, not a file an add created",
                    crate::names::shown(target.rel())
                )),
                _ => {
                    target.remove_file()?;
                }
            },
        }
    }
    if let Some(d) = doc_name {
        let remove = match index_line_ours {
            Some(ours) => ours,
            None => store.find_by_doc_name(d)?.is_none(),
        };
        if remove {
            wiki::index_remove(&wiki::index_md(kb)?, &[d])?;
        }
    }
    Ok(())
}

/// Remove the backups of a committed add (best effort: they live in staging, which is swept).
pub(crate) fn drop_backups(kb: &Kb, files: &[IntentFile]) {
    for backup in files.iter().filter_map(|f| f.backup.as_deref()) {
        if let Ok(path) = staged_backup(kb, backup) {
            let _ = path.remove_file();
        }
    }
}

/// An add's backup: only ever a file in an openkb staging folder.
fn staged_backup(kb: &Kb, rel: &str) -> Result<KbPath> {
    let parts: Vec<&str> = rel.split('/').collect();
    match parts.as_slice() {
        [".openkb", "staging", folder, _] if folder.starts_with(STAGING_PREFIX) => {
            KbPath::new(kb, rel)
        }
        _ => Err(Error::Invalid(format!(
            "refusing to use {rel:?} as a backup: it is not in an openkb staging folder \
             (.openkb/staging/{STAGING_PREFIX}*/)"
        ))),
    }
}
