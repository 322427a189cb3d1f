//! Settling what interrupted processes left: unfinished intents (and compile hooks they left
//! running), then staging folders, lock files and temp databases ([`super::leftovers`]).
//!
//! Runs on the outermost exclusive acquisition of the KB lock (see [`super::lock_exclusive`]
//! and `cli::open_kb`), so no other openkb process is mid-operation while it works: every
//! intent it finds belongs to a process that died (or was killed) before its commit.

use super::kb_path;
use super::publish::remove_file;
use crate::error::{Error, Result};
use crate::kb::Kb;
use crate::state::{Intent, IntentFile, IntentOp, Status, Store, intents};
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
}

impl Recovered {
    pub fn is_empty(&self) -> bool {
        *self == Recovered::default()
    }
}

/// Finish or roll back every unfinished intent, then sweep dead staging folders. The caller
/// holds the exclusive lock.
pub fn recover_interrupted(kb: &Kb, store: &Store) -> Result<Recovered> {
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
        settle(kb, store, &intent, &mut done)?;
    }
    let swept = super::leftovers::sweep_leftovers(kb)?;
    done.leftovers_swept = swept.items;
    if !done.is_empty() {
        eprintln!(
            "recovered interrupted work on {}: {} add(s) rolled back, {} add(s) completed, \
             {} remove(s) finished, {} compile(s) marked failed, {} leftover(s) of dead processes removed, \
             {} orphaned compile hook(s) killed",
            kb.root().display(),
            done.adds_rolled_back,
            done.adds_completed,
            done.removes_finished,
            done.compiles_interrupted,
            done.leftovers_swept,
            done.hooks_killed
        );
    }
    Ok(done)
}

fn settle(kb: &Kb, store: &Store, intent: &Intent, done: &mut Recovered) -> Result<()> {
    // A hook left running by the dead process would keep writing into what is about to be
    // rolled back or marked failed: it goes first.
    if let Some(hook) = &intent.hook
        && super::compile::kill_orphaned_hook(hook)
    {
        done.hooks_killed += 1;
    }
    match intent.operation {
        IntentOp::Add => {
            if store.is_known(&intent.hash)? {
                drop_backups(kb, &intent.files);
                store.write(|tx| tx.delete_intent(intent.id))?;
                done.adds_completed += 1;
            } else {
                roll_back_add(kb, store, &intent.files, intent.doc_name.as_deref(), None)?;
                store.write(|tx| tx.delete_intent(intent.id))?;
                done.adds_rolled_back += 1;
            }
        }
        IntentOp::Remove => {
            super::remove::finish(
                kb,
                store,
                intent.id,
                &intent.hash,
                intent.doc_name.as_deref(),
                &intent.files,
            )?;
            done.removes_finished += 1;
        }
        IntentOp::Compile => {
            store.write(|tx| {
                tx.set_status(
                    &intent.hash,
                    Status::Failed,
                    Some("the compile was interrupted (the process died); run `openkb compile` again"),
                )?;
                tx.delete_intent(intent.id)
            })?;
            done.compiles_interrupted += 1;
        }
    }
    Ok(())
}

/// Undo an uncommitted add: restore the files it replaced, delete those it created, and drop
/// its `index.md` line: when `index_line_ours` says the add inserted it (`Some(true)`), or,
/// when that is not known (`None`, after a crash), unless a registered document owns the
/// doc_name.
pub fn roll_back_add(
    kb: &Kb,
    store: &Store,
    files: &[IntentFile],
    doc_name: Option<&str>,
    index_line_ours: Option<bool>,
) -> Result<()> {
    for file in files.iter().rev() {
        let target = kb_path(kb, &file.path)?;
        match &file.backup {
            // The target existed before the add. Its backup is made before it is replaced,
            // so a missing backup means the add never got to this file: leave it alone
            // (deleting it would lose the previous version).
            Some(backup) => {
                let backup = kb_path(kb, backup)?;
                match std::fs::rename(&backup, &target) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io("cannot restore", &target, e)),
                }
            }
            None => {
                remove_file(&target)?;
            }
        }
    }
    if let Some(d) = doc_name {
        let remove = match index_line_ours {
            Some(ours) => ours,
            None => store.find_by_doc_name(d)?.is_none(),
        };
        if remove {
            wiki::index_remove(&kb.index_md(), &[d])?;
        }
    }
    Ok(())
}

/// Remove the backups of a committed add (best effort: they live in staging, which is swept).
pub fn drop_backups(kb: &Kb, files: &[IntentFile]) {
    for backup in files.iter().filter_map(|f| f.backup.as_deref()) {
        if let Ok(path) = kb_path(kb, backup) {
            let _ = remove_file(&path);
        }
    }
}
