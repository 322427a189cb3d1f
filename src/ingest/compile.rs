//! Compiling documents: run `compile_command` ([`super::hook`]) for each chosen document and
//! record the outcome as its status.
//!
//! Each document is compiled under the KB's exclusive lock (the hook writes shared wiki
//! pages), taken per document and released in between, so other commands get their turn
//! during a long run. An intent marks the compile in flight ([`Operation`]): a killed run
//! leaves the document `failed` with a message, never silently `pending` or `compiled`.
//! Documents picked by `--pending` / `--failed` are claimed under the lock: one that changed
//! since it was listed (another compiler got to it) is skipped, so two compilers never run the
//! hook for one document.
//!
//! Until the status commits, the document's own wiki files (`wiki/summaries/<doc_name>.md`,
//! `wiki/sources/<doc_name>.*`) can be put back as they were before the hook: they are copied
//! into a staging folder first, and a refused commit (a `state.db` replaced or removed
//! meanwhile) restores them and deletes the ones the hook created. The hook's other writes
//! (concept pages, `index.md`, images) are shared pages it owns and are not restored; see
//! docs/hooks.md.

use super::hook::{self, HookOptions};
use super::operation::{Operation, Planned, Undo};
use super::prepare::Staging;
use crate::error::{Error, Result};
use crate::kb::Kb;
use crate::kbpath::{self, KbPath, Kind};
use crate::session::{Probe, WriteSession};
use crate::state::{Document, IntentFile, IntentOp, Queries, Status};

/// What to run, and how.
#[derive(Clone, Debug)]
pub struct Options {
    /// `compile_command` of config.yaml.
    pub command: String,
    pub hook: HookOptions,
}

impl Options {
    /// The options `kb`'s config.yaml gives; without a `compile_command` there is nothing to
    /// run, which is the user's to fix.
    pub fn from_config(kb: &Kb, verbose: bool) -> Result<Options> {
        let config = kb.config()?;
        let Some(command) = config.compile_command()?.map(str::to_owned) else {
            return Err(Error::Invalid(format!(
                "no compile_command in {}; set one (run by `sh -c` per document, see `openkb \
                 compile --help`)",
                kb.config_path().display()
            )));
        };
        Ok(Options {
            command,
            hook: HookOptions {
                timeout: config.compile_timeout()?,
                verbose,
            },
        })
    }
}

/// Which documents to compile.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// Documents named by doc_name: compiled whatever their status.
    pub doc_names: Vec<String>,
    /// Every pending document.
    pub pending: bool,
    /// Every document whose last compile failed.
    pub failed: bool,
}

/// A document to compile, and whether it was named (else a `pending`/`failed` pick, which is
/// claimed under the lock only if unchanged since it was listed).
#[derive(Clone, Debug)]
pub struct Target {
    pub doc: Document,
    pub named: bool,
}

/// Totals of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub compiled: usize,
    pub failed: usize,
    /// SIGINT/SIGTERM stopped the run before every target was compiled (see
    /// [`super::stop_cleanly_on_interrupt`]).
    pub interrupted: bool,
}

/// The outcome of one document's compile: `Err` holds why the hook failed (the end of its
/// stderr, a timeout, a refusal before it ran).
pub type Outcome = std::result::Result<(), String>;

/// The documents `selection` names, each once, in the order named and then registry order.
/// A doc_name no document has is an error naming it.
pub fn select(q: &impl Queries, selection: &Selection) -> Result<Vec<Target>> {
    let mut targets: Vec<Target> = Vec::new();
    for name in &selection.doc_names {
        let doc = match q.find_by_doc_name(name)? {
            Some(doc) => doc,
            // A legacy entry without doc_name answers to the stem of its name.
            None => super::remove::find(q, name)?
                .into_iter()
                .find(|d| d.display_doc_name().as_deref() == Some(name.as_str()))
                .ok_or_else(|| {
                    Error::Invalid(format!(
                        "no document has doc_name {name:?}; `openkb list` shows them"
                    ))
                })?,
        };
        targets.push(Target { doc, named: true });
    }
    if selection.pending || selection.failed {
        q.for_each_document(&mut |doc| {
            if (selection.pending && doc.status == Status::Pending)
                || (selection.failed && doc.status == Status::Failed)
            {
                targets.push(Target { doc, named: false });
            }
            Ok(())
        })?;
    }
    let mut seen = std::collections::HashSet::new();
    targets.retain(|t| seen.insert(t.doc.hash.clone()));
    Ok(targets)
}

/// Compile `selection`, one write session per document, and log the run. `report` hears
/// each document compiled (as it is now registered) with its outcome.
pub fn compile(
    probe: &Probe,
    selection: &Selection,
    options: &Options,
    report: &mut dyn FnMut(&Document, &Outcome),
) -> Result<Summary> {
    let targets = select(&probe.reader()?, selection)?;
    let mut summary = Summary::default();
    for target in targets {
        if super::interrupted() {
            summary.interrupted = true;
            break;
        }
        let session = probe.write_session()?;
        let Some(doc) = claim(&session, &target)? else {
            continue;
        };
        let outcome = compile_one(&session, &doc, options)?;
        match &outcome {
            Ok(()) => summary.compiled += 1,
            Err(_) => summary.failed += 1,
        }
        report(&doc, &outcome);
    }
    if summary.compiled + summary.failed > 0 {
        probe.write_session()?.record(
            "compile",
            &format!("compiled {}, failed {}", summary.compiled, summary.failed),
        )?;
    }
    Ok(summary)
}

/// The claim, under the lock: a document picked by `pending`/`failed` that another compiler
/// (or anything else) changed since it was listed has been dealt with; a named document is
/// compiled as asked. Either way, a removed one is skipped.
fn claim(session: &WriteSession, target: &Target) -> Result<Option<Document>> {
    let Some(doc) = session.get(&target.doc.hash)? else {
        return Ok(None);
    };
    let changed = doc.status != target.doc.status || doc.updated_at != target.doc.updated_at;
    Ok((target.named || !changed).then_some(doc))
}

/// Run the hook for `doc` under an intent and commit its status: `Err` only when the compile
/// could not be run or recorded (the document is then marked failed, its own files put back).
pub fn compile_one(session: &WriteSession, doc: &Document, options: &Options) -> Result<Outcome> {
    let kb = session.kb();
    // A doc_name that is not one file name owns no files: nothing is kept or put back.
    let own = doc
        .display_doc_name()
        .filter(|d| kbpath::check_doc_name(d).is_ok());
    let mut operation = Operation::begin(
        session,
        vec![Planned {
            operation: IntentOp::Compile,
            hash: doc.hash.clone(),
            doc_name: own.clone(),
            files: Vec::new(),
        }],
    )?;
    if let Some(d) = &own {
        keep_own_files(kb, d, operation.undo_mut(0))?;
    }
    let outcome = hook::run_hook(
        kb,
        &options.command,
        doc,
        &options.hook,
        &mut operation.hook_recorder(0),
    )?;
    if let Some(d) = &own {
        note_created_files(kb, d, operation.undo_mut(0))?;
    }
    let (status, error) = match &outcome {
        Ok(()) => (Status::Compiled, None),
        Err(message) => (Status::Failed, Some(message.as_str())),
    };
    operation.commit(|tx| tx.set_status(&doc.hash, status, error))?;
    Ok(outcome)
}

/// Copy the document's own wiki files that exist into a staging folder owned by `undo`, each
/// noted to be restored from its copy.
fn keep_own_files(kb: &Kb, doc_name: &str, undo: &mut Undo) -> Result<()> {
    let staging = undo.staging.insert(Staging::create(kb)?);
    for rel in own_wiki_files(kb, doc_name)? {
        let path = KbPath::new(kb, &rel)?;
        if path.kind()? != Some(Kind::File) {
            continue;
        }
        let (copy, copy_rel) = staging.fresh_in_kb(kb, rel.rsplit('/').next().unwrap_or("file"))?;
        std::fs::copy(path.as_path(), &copy)
            .map_err(|e| Error::io("cannot copy", path.as_path(), e))?;
        undo.files.push(IntentFile {
            path: rel,
            backup: Some(copy_rel),
        });
    }
    Ok(())
}

/// Note the document's own wiki files the hook created (those not kept before it ran), to
/// be deleted if the compile does not commit.
fn note_created_files(kb: &Kb, doc_name: &str, undo: &mut Undo) -> Result<()> {
    for rel in own_wiki_files(kb, doc_name)? {
        if !undo.files.iter().any(|kept| kept.path == rel) {
            undo.files.insert(0, IntentFile::new(rel));
        }
    }
    Ok(())
}

/// `wiki/summaries/<doc_name>.md` and the `wiki/sources/<doc_name>.*` that exist.
fn own_wiki_files(kb: &Kb, doc_name: &str) -> Result<Vec<String>> {
    let mut files = super::remove::sources_named(kb, doc_name)?;
    files.push(format!("wiki/summaries/{doc_name}.md"));
    Ok(files)
}
