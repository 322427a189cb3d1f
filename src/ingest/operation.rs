//! The intent protocol as one guard: every operation that changes a KB's files (add, remove,
//! compile, and recovery finishing an interrupted remove) goes through an [`Operation`].
//!
//! The protocol (see [`super`]): commit an intent naming every file the operation will create
//! or delete before touching any; do the file work; then commit the operation's rows and
//! delete the intent in one transaction. Written by hand at each call site, the three ways out
//! (commit, failure, crash) drifted apart: one site left its intent behind on an error,
//! another rolled back differently from recovery. The guard makes them one path each:
//!
//! - [`Operation::begin`] records the intents (one per document, all in one transaction);
//! - [`Operation::commit`] runs the caller's rows and deletes the intents in one transaction;
//! - dropping the guard without a commit (an error, a `?`, a panic) rolls every document back
//!   through the code crash recovery runs (`recover::undo` for the files,
//!   `recover::close_abandoned` for the rows): a failure in the middle leaves what a crash at
//!   the same point would leave after the next command settled it, only at once.
//!
//! What the caller did that the intent alone does not tell (a page edited in place, whether
//! the document's `index.md` line was inserted by this operation) goes into the document's
//! [`Undo`], so that the rollback in process can be exact where recovery has to be careful.

use super::hook::HookEvents;
use super::prepare::Staging;
use super::recover;
use crate::error::Result;
use crate::kbpath::KbPath;
use crate::session::WriteSession;
use crate::state::{HookGroup, Intent, IntentFile, IntentOp, WriteTx};

/// An intent to record: what one document's operation will touch.
#[derive(Clone, Debug)]
pub struct Planned {
    pub operation: IntentOp,
    pub hash: String,
    pub doc_name: Option<String>,
    /// Every file the operation creates (with the backup of one it replaces) or deletes.
    pub files: Vec<IntentFile>,
}

/// How to put back what an operation did to one document's files before its commit.
#[derive(Debug, Default)]
pub struct Undo {
    /// Each file to restore from its backup, or to delete when it has none; undone last first.
    pub files: Vec<IntentFile>,
    /// Pages edited in place, with their bytes before the edit; restored first, last first.
    pub pages: Vec<(KbPath, Vec<u8>)>,
    /// Whether the document's `index.md` line is this operation's to drop. `None` when that is
    /// not known (after a crash): dropped unless a registered document owns the doc_name.
    pub index_line_ours: Option<bool>,
    /// The staging folder holding the backups, kept until the operation is settled.
    pub staging: Option<Staging>,
}

impl Undo {
    /// What recovery knows of an interrupted add: only its intent.
    pub fn of_intent(files: &[IntentFile]) -> Undo {
        Undo {
            files: files.to_vec(),
            ..Undo::default()
        }
    }
}

/// One document of an operation: its recorded intent and how to undo it.
#[derive(Debug)]
struct Part {
    id: i64,
    operation: IntentOp,
    hash: String,
    doc_name: Option<String>,
    undo: Undo,
    /// Rolled back already (a document that failed alone); its intent goes with the others.
    undone: bool,
}

/// An operation in flight under the intent protocol. See the module docs.
#[must_use = "an operation dropped without `commit` is rolled back"]
#[derive(Debug)]
pub struct Operation<'s> {
    session: &'s WriteSession,
    parts: Vec<Part>,
    settled: bool,
}

impl<'s> Operation<'s> {
    /// Record one intent per planned document, in one transaction, before any file is
    /// touched. An add starts with its intent's files as its undo (what it creates or
    /// replaces); other operations say what they moved or edited as they go ([`Self::undo_mut`]).
    pub fn begin(session: &'s WriteSession, planned: Vec<Planned>) -> Result<Operation<'s>> {
        let ids = session.write(|tx| {
            planned
                .iter()
                .map(|p| tx.record_intent(p.operation, &p.hash, p.doc_name.as_deref(), &p.files))
                .collect::<Result<Vec<i64>>>()
        })?;
        let parts = planned
            .into_iter()
            .zip(ids)
            .map(|(p, id)| Part {
                id,
                undo: match p.operation {
                    IntentOp::Add => Undo {
                        files: p.files,
                        index_line_ours: Some(false),
                        ..Undo::default()
                    },
                    IntentOp::Remove | IntentOp::Compile => Undo {
                        index_line_ours: Some(false),
                        ..Undo::default()
                    },
                },
                operation: p.operation,
                hash: p.hash,
                doc_name: p.doc_name,
                undone: false,
            })
            .collect();
        Ok(Operation {
            session,
            parts,
            settled: false,
        })
    }

    /// Take over an intent a dead process left, to finish it (recovery of a remove): its
    /// commit deletes the intent, a failure puts back what this process changed.
    pub fn resume(session: &'s WriteSession, intent: &Intent) -> Operation<'s> {
        Operation {
            session,
            parts: vec![Part {
                id: intent.id,
                operation: intent.operation,
                hash: intent.hash.clone(),
                doc_name: intent.doc_name.clone(),
                undo: Undo {
                    index_line_ours: Some(false),
                    ..Undo::default()
                },
                undone: false,
            }],
            settled: false,
        }
    }

    pub fn session(&self) -> &'s WriteSession {
        self.session
    }

    /// How many documents the operation covers (the order of [`Self::begin`]'s plan).
    pub fn len(&self) -> usize {
        self.parts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// The intent id of document `i`.
    pub fn intent_id(&self, i: usize) -> i64 {
        self.parts[i].id
    }

    /// What [`run_hook`](super::hook::run_hook) is given for document `i`: the hook's process group goes into
    /// its intent, so that recovery kills what is left of the hook if this process dies.
    pub fn hook_recorder(&self, i: usize) -> HookRecorder<'_> {
        HookRecorder {
            session: self.session,
            intent: self.parts[i].id,
        }
    }

    /// What a rollback of document `i` puts back; the caller adds to it as it changes files.
    pub fn undo_mut(&mut self, i: usize) -> &mut Undo {
        &mut self.parts[i].undo
    }

    /// Roll document `i` back now (it failed alone; the others go on). Its intent is deleted
    /// with the others' when the operation commits or is rolled back.
    pub fn roll_back(&mut self, i: usize) {
        let session = self.session;
        let part = &mut self.parts[i];
        if !part.undone {
            part.undone = true;
            undo_part(session, part);
        }
    }

    /// The commit point: run `body` and delete every intent in one transaction. When the
    /// transaction fails, every document not rolled back yet is rolled back before the error
    /// is returned.
    pub fn commit<T>(mut self, mut body: impl FnMut(&WriteTx<'_>) -> Result<T>) -> Result<T> {
        let committed = self.session.write(|tx| {
            let result = body(tx)?;
            for part in &self.parts {
                tx.delete_intent(part.id)?;
            }
            Ok(result)
        });
        if committed.is_ok() {
            self.settled = true;
            for part in &mut self.parts {
                // The backups of replaced files are not needed any more (best effort: they
                // are in a staging folder, which is swept).
                if !part.undone && part.operation == IntentOp::Add {
                    recover::drop_backups(self.session.kb(), &part.undo.files);
                }
            }
        }
        committed
    }
}

/// Records a compile hook's process group in an operation's intent (see
/// [`Operation::hook_recorder`]).
pub struct HookRecorder<'a> {
    session: &'a WriteSession,
    intent: i64,
}

impl HookEvents for HookRecorder<'_> {
    fn started(&mut self, hook: &HookGroup) -> Result<()> {
        self.session
            .write(|tx| tx.record_intent_hook(self.intent, hook))
    }
}

impl Drop for Operation<'_> {
    /// Not committed: roll back what the caller did, then settle the intents the way recovery
    /// does. A rollback that fails is reported; a refused write (the `state.db` replaced or
    /// removed meanwhile) leaves the intents where they are, in the file they belong to.
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let session = self.session;
        for part in self.parts.iter_mut().rev().filter(|p| !p.undone) {
            part.undone = true;
            undo_part(session, part);
        }
        let _ = session.write(|tx| {
            for part in &self.parts {
                recover::close_abandoned(
                    tx,
                    part.id,
                    part.operation,
                    &part.hash,
                    "the compile was abandoned before its result was recorded; run `openkb \
                     compile` again",
                )?;
            }
            Ok(())
        });
    }
}

fn undo_part(session: &WriteSession, part: &Part) {
    if let Err(e) = recover::undo(
        session.kb(),
        session.store(),
        part.doc_name.as_deref(),
        &part.undo,
    ) {
        let what = part.doc_name.as_deref().unwrap_or(&part.hash);
        crate::notice::warn(&format!(
            "warning: could not put back every file of the {} of {}: {e}",
            part.operation.as_str(),
            crate::names::shown(what)
        ));
    }
}

#[cfg(test)]
mod tests;
