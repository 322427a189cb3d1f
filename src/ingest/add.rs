//! Adding documents: prepare outside the lock, then publish and commit in batches under it.
//!
//! A batch (up to [`BATCH_FILES`] files, or what was prepared in about [`BATCH_TIME`]) takes the
//! exclusive lock once: it re-checks every file against the registry (another process may have
//! added the same content meanwhile), resolves doc_names (see [`super::docname`]), records one
//! intent per file in one transaction, publishes the files, rewrites `index.md` once, runs the
//! compile hook per document when one is configured, and commits every document of the batch
//! in one transaction. A file whose publish or compile fails is rolled back alone; the others
//! go on.
//!
//! The commit body applies the Python tool's registry invariants (formats §1.2): the entry that
//! owned the doc_name (an edited file's stale entry) and legacy entries without doc_name that
//! carry the same file name are removed, then the new entry is inserted.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::docname::{self, Claims, Origin};
use super::operation::{Operation, Planned};
use super::prepare::{self, Prep, Prepared, Staging};
use super::publish;
use super::{raw_target, source_target};
use crate::error::{Error, Result};
use crate::kb::Kb;
use crate::kbpath::{self, KbPath};
use crate::names;
use crate::session::{Probe, WriteSession};
use crate::state::{Document, IntentFile, IntentOp, LogEntry, Queries, Status, Store};
use crate::wiki;

/// Most files published under one lock acquisition.
pub const BATCH_FILES: usize = 256;
/// Longest stretch of preparing before the prepared files are published.
pub const BATCH_TIME: Duration = Duration::from_secs(1);

/// What became of one file.
#[derive(Debug)]
pub enum Outcome {
    Added {
        doc_name: String,
        status: Status,
    },
    /// Its content is registered already (the usual case of a re-run: reported quietly).
    Known,
    Skipped(String),
    Failed(Error),
}

/// Options of an add run.
#[derive(Debug, Default, Clone)]
pub struct Options {
    /// `compile_command` of config.yaml, run per document before its commit.
    pub compile_command: Option<String>,
    /// `compile_timeout` of config.yaml: the longest one hook run may take.
    pub compile_timeout: Option<Duration>,
    pub verbose: bool,
}

impl Options {
    /// The options `kb`'s config.yaml asks for (read now: a change takes effect on the next
    /// call, which `watch` relies on).
    pub fn from_config(kb: &Kb, verbose: bool) -> Result<Options> {
        let config = kb.config()?;
        Ok(Options {
            compile_command: config.compile_command()?.map(str::to_owned),
            compile_timeout: config.compile_timeout()?,
            verbose,
        })
    }
}

/// Totals of a run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub added: usize,
    pub skipped: usize,
    pub failed: usize,
    /// Files not looked at because SIGINT/SIGTERM stopped the run (see
    /// [`super::stop_cleanly_on_interrupt`]).
    pub not_done: usize,
}

/// Receives progress: the number of files found, then one outcome per input.
pub trait Reporter {
    fn found(&mut self, _files: usize) {}
    fn outcome(&mut self, path: &Path, outcome: &Outcome);
}

/// Add `inputs` (files and folders) to the KB. Files are prepared against `probe` (no lock);
/// each batch is published and committed in its own write session on the same database
/// (refused with `Error::StateDbReplaced` if `state.db` was replaced meanwhile).
pub fn add_paths(
    probe: &Probe,
    inputs: &[PathBuf],
    options: &Options,
    reporter: &mut dyn Reporter,
) -> Result<Summary> {
    let kb = probe.kb();
    let (files, early) = prepare::collect(kb, inputs);
    reporter.found(files.len() + early.len());
    let mut tally = Tally {
        summary: Summary::default(),
        reporter,
    };
    for prep in early {
        // Collecting only skips or fails; what it accepts is prepared below.
        let _ = tally.take(prep);
    }
    if files.is_empty() {
        return Ok(tally.summary);
    }
    let staging = Staging::create(kb)?;
    let committed_a_batch = add_in_batches(probe, &staging, options, &files, &mut tally)?;
    drop(staging);
    if !committed_a_batch {
        sweep_without_commit(probe);
    }
    Ok(tally.summary)
}

/// Counts the outcomes of a run as they are reported.
struct Tally<'r> {
    summary: Summary,
    reporter: &'r mut dyn Reporter,
}

impl Tally<'_> {
    fn emit(&mut self, path: &Path, outcome: Outcome) {
        match &outcome {
            Outcome::Added { .. } => self.summary.added += 1,
            Outcome::Skipped(_) | Outcome::Known => self.summary.skipped += 1,
            Outcome::Failed(_) => self.summary.failed += 1,
        }
        self.reporter.outcome(path, &outcome);
    }

    /// Report a file that needs no publishing; hand back one that does.
    fn take(&mut self, prep: Prep) -> Option<Prepared> {
        match prep {
            Prep::Ready(p) => return Some(p),
            Prep::Known(p) => self.emit(&p, Outcome::Known),
            Prep::Skipped(p, why) => self.emit(&p, Outcome::Skipped(why)),
            Prep::Failed(p, e) => self.emit(&p, Outcome::Failed(e)),
        }
        None
    }
}

/// Prepare `files` one by one and commit them in batches (see [`BATCH_FILES`],
/// [`BATCH_TIME`]); stops between files on SIGINT/SIGTERM, counting the rest as not done.
/// Returns whether any batch was committed.
fn add_in_batches(
    probe: &Probe,
    staging: &Staging,
    options: &Options,
    files: &[PathBuf],
    tally: &mut Tally<'_>,
) -> Result<bool> {
    let store: &Store = probe;
    // A compile hook may take minutes per document and runs under the lock: one document per
    // batch, so other commands get the lock between documents.
    let max_batch = if options.compile_command.is_some() {
        1
    } else {
        BATCH_FILES
    };
    let mut run_hashes = HashSet::new();
    let mut batch: Vec<Prepared> = Vec::new();
    let mut batch_started = Instant::now();
    let mut committed = false;
    for (i, file) in files.iter().enumerate() {
        if super::interrupted() {
            tally.summary.not_done = files.len() - i;
            break;
        }
        let prep = prepare::prepare(probe.kb(), store, staging, file, &mut run_hashes);
        if let Some(p) = tally.take(prep) {
            if batch.is_empty() {
                batch_started = Instant::now();
            }
            batch.push(p);
        }
        if batch.len() >= max_batch || batch_started.elapsed() >= BATCH_TIME {
            committed = true;
            let items = std::mem::take(&mut batch);
            commit_batch(probe, staging, options, items, &mut |p, o| tally.emit(p, o))?;
        }
    }
    if !batch.is_empty() {
        committed = true;
        commit_batch(probe, staging, options, batch, &mut |p, o| tally.emit(p, o))?;
    }
    Ok(committed)
}

/// An add that finds everything registered opens no write session, so nothing would sweep
/// what a killed add left: an add killed after its last commit (its staging folder and lock
/// file still there) is re-run as "added 0". When the lock-free look finds leftovers of dead
/// processes, a write session settles them (it looks again under the lock). Best effort: the
/// add itself is done.
fn sweep_without_commit(probe: &Probe) {
    let kb = probe.kb();
    if super::leftovers::find_leftovers(kb).is_ok_and(|found| found.is_empty()) {
        return;
    }
    if let Err(e) = probe.write_session() {
        eprintln!("warning: could not sweep leftovers of interrupted adds: {e}");
    }
}

/// The supported files under `folder` whose content is not registered: what an add of
/// `folder` would still add (watch lists them when it stops before adding them).
pub fn unregistered(kb: &Kb, store: &Store, folder: &Path) -> Result<Vec<PathBuf>> {
    let (files, _) = prepare::collect(kb, &[folder.to_path_buf()]);
    let mut waiting = Vec::new();
    for file in files {
        // A file that vanished or cannot be read is not waiting for this KB.
        let Ok(hash) = crate::hash::sha256_file(&file) else {
            continue;
        };
        if !store.is_known(&hash)? {
            waiting.push(file);
        }
    }
    Ok(waiting)
}

/// One file's way through a batch: what it becomes, which files it publishes, which entries
/// it replaces, and whether it failed on the way (then it is rolled back alone).
struct Plan {
    item: Prepared,
    /// The registry row the commit writes.
    doc: Document,
    /// The files to publish, in order.
    steps: Vec<Step>,
    /// Every file the add creates or replaces, as its intent records them.
    files: Vec<IntentFile>,
    /// Hashes of the registered entries the document replaces (formats §1.2).
    replaces: Vec<String>,
    failed: Option<Error>,
}

impl Plan {
    fn intent(&self) -> Planned {
        Planned {
            operation: IntentOp::Add,
            hash: self.doc.hash.clone(),
            doc_name: self.doc.doc_name.clone(),
            files: self.files.clone(),
        }
    }

    /// The document failed alone: roll its files back now, the others go on.
    fn fail(&mut self, operation: &mut Operation<'_>, i: usize, e: Error) {
        operation.roll_back(i);
        self.failed = Some(e);
    }
}

/// Where a file goes: `from` (staged, or a file already in raw/ that stays, then copied) to
/// `target`, after the file it replaces there is kept at `backup`.
struct Step {
    from: PathBuf,
    /// Copy `from` (a file already in raw/ that stays) instead of moving it.
    copy: bool,
    target: PathBuf,
    backup: Option<PathBuf>,
}

/// Publish and commit `items` in one write session. Outcomes go to `report`.
///
/// The steps, in order: plan each file under the lock; record every intent in one
/// transaction; publish the files and make them durable; insert the `index.md` lines; run the
/// compile hook per document; commit every document, its log row and the intents' deletion in
/// one transaction; then render the log rows into `wiki/log.md`. A file that fails alone is
/// rolled back alone; a step that fails for the batch rolls back every file (the
/// [`Operation`] guard does, on its way out).
pub fn commit_batch(
    probe: &Probe,
    staging: &Staging,
    options: &Options,
    items: Vec<Prepared>,
    report: &mut dyn FnMut(&Path, Outcome),
) -> Result<()> {
    let session = probe.write_session()?;
    let mut plans = plan_batch(&session, staging, options, items, report)?;
    if plans.is_empty() {
        return Ok(());
    }
    let mut operation = Operation::begin(&session, plans.iter().map(Plan::intent).collect())?;
    publish_files(&session, &mut operation, &mut plans)?;
    insert_index_lines(&session, &mut operation, &plans)?;
    if let Some(command) = &options.compile_command {
        run_hooks(&session, &mut operation, &mut plans, command, options);
    }
    crate::faults::crash_point("add-commit");
    crate::faults::run_point("add-commit");
    let logs = commit(operation, &plans)?;
    if let Err(e) = crate::log_md::append(session.kb(), &logs) {
        crate::notice::warn(&format!(
            "warning: {e} (the log table has the entries; `openkb doctor` can rebuild log.md)"
        ));
    }
    for p in plans {
        let outcome = match p.failed {
            Some(e) => Outcome::Failed(e),
            None => Outcome::Added {
                doc_name: p.doc.doc_name.clone().unwrap_or_default(),
                status: p.doc.status,
            },
        };
        report(&p.item.given, outcome);
    }
    Ok(())
}

/// Re-check each file under the lock (another process may have added the same content, or
/// moved a file in raw/ away, since it was prepared) and plan the rest. Files that need no
/// work, or cannot be planned, are reported at once.
fn plan_batch(
    session: &WriteSession,
    staging: &Staging,
    options: &Options,
    items: Vec<Prepared>,
    report: &mut dyn FnMut(&Path, Outcome),
) -> Result<Vec<Plan>> {
    let reader = session.store().reader()?;
    let mut claims = Claims::default();
    let mut plans = Vec::new();
    for item in items {
        if reader.is_known(&item.hash)? {
            report(&item.given, Outcome::Known);
            continue;
        }
        if item.in_raw && !item.resolved.is_file() {
            report(
                &item.given,
                Outcome::Skipped("the file is gone (moved or deleted meanwhile)".into()),
            );
            continue;
        }
        match plan(session.kb(), &reader, staging, item, &mut claims, options) {
            Ok(p) => plans.push(p),
            Err(failed) => {
                let (item, e) = *failed;
                report(&item.given, Outcome::Failed(e));
            }
        }
    }
    Ok(plans)
}

/// Publish every file (a file that fails is rolled back alone), then make them durable with
/// one syncfs for the batch.
fn publish_files(
    session: &WriteSession,
    operation: &mut Operation<'_>,
    plans: &mut [Plan],
) -> Result<()> {
    let mut dirs = BTreeSet::new();
    let mut published = Vec::new();
    for (i, p) in plans.iter_mut().enumerate() {
        if let Err(e) = publish_plan(p, &mut dirs, &mut published) {
            p.fail(operation, i, e);
        }
    }
    publish::make_durable(session.kb().root(), &published, &dirs)
}

/// Insert the `index.md` lines of the documents still going, in one rewrite of the page, and
/// note in each document's undo whether its line is this add's.
fn insert_index_lines(
    session: &WriteSession,
    operation: &mut Operation<'_>,
    plans: &[Plan],
) -> Result<()> {
    let entries: Vec<(String, String)> = plans
        .iter()
        .filter(|p| p.failed.is_none())
        .filter_map(|p| {
            let d = p.doc.doc_name.clone()?;
            let line = wiki::index_line(&d, &p.item.name);
            Some((d, line))
        })
        .collect();
    let inserted = wiki::index_insert(&wiki::index_md(session.kb())?, &entries)?;
    for (i, p) in plans.iter().enumerate() {
        let ours = p
            .doc
            .doc_name
            .as_ref()
            .is_some_and(|d| inserted.contains(d));
        operation.undo_mut(i).index_line_ours = Some(ours);
    }
    Ok(())
}

/// Run the compile hook per document still going, before its commit: a document whose hook
/// fails is rolled back ("nothing was added"), one whose hook succeeds is added compiled.
fn run_hooks(
    session: &WriteSession,
    operation: &mut Operation<'_>,
    plans: &mut [Plan],
    command: &str,
    options: &Options,
) {
    let hook_options = super::hook::HookOptions {
        timeout: options.compile_timeout,
        verbose: options.verbose,
    };
    for (i, p) in plans.iter_mut().enumerate() {
        if p.failed.is_some() {
            continue;
        }
        let ran = super::hook::run_hook(
            session.kb(),
            command,
            &p.doc,
            &hook_options,
            &mut operation.hook_recorder(i),
        );
        match ran {
            Ok(Ok(())) => p.doc.status = Status::Compiled,
            Ok(Err(message)) => {
                let e = Error::Invalid(format!(
                    "{}: compile failed, nothing was added: {message}",
                    p.item.given.display()
                ));
                p.fail(operation, i, e);
            }
            Err(e) => p.fail(operation, i, e),
        }
    }
}

/// The commit point: every document still going, the entries it replaces gone, its log row,
/// and every intent of the batch deleted, in one transaction. Returns the log rows.
fn commit(operation: Operation<'_>, plans: &[Plan]) -> Result<Vec<LogEntry>> {
    operation.commit(|tx| {
        let mut logs = Vec::new();
        for p in plans.iter().filter(|p| p.failed.is_none()) {
            for stale in &p.replaces {
                tx.remove_document(stale)?;
            }
            tx.upsert_document(&p.doc)?;
            logs.push(tx.append_log("ingest", &p.item.name)?);
        }
        Ok(logs)
    })
}

/// Decide a file's doc_name, targets and the entries it replaces.
fn plan(
    kb: &Kb,
    q: &impl Queries,
    staging: &Staging,
    item: Prepared,
    claims: &mut Claims,
    options: &Options,
) -> std::result::Result<Plan, Box<(Prepared, Error)>> {
    let stem = names::stem(&item.name).to_owned();
    let named = docname::resolve(q, &item.path_key, &stem, claims)
        .and_then(|resolved| keep_off_other_files(kb, q, &item, &stem, resolved, claims));
    let (resolved, replaced) = match named {
        Ok(r) => r,
        Err(e) => return Err(Box::new((item, e))),
    };
    match place(kb, staging, &item, &resolved, options) {
        Ok(Placed { doc, steps, files }) => {
            claims.claim(&resolved, &item.path_key);
            Ok(Plan {
                item,
                doc,
                steps,
                files,
                replaces: replaced,
                failed: None,
            })
        }
        Err(e) => Err(Box::new((item, e))),
    }
}

/// Hashes of the registered documents `item` replaces when named `doc_name` (formats §1.2):
/// the entry it was resolved from (an edited file, a legacy entry it converges with), the
/// entry owning its doc_name, legacy entries without doc_name that carry its file name.
fn replaced_documents(
    q: &impl Queries,
    item: &Prepared,
    resolved: &docname::Resolved,
) -> Result<Vec<String>> {
    let mut replaced: Vec<String> = Vec::new();
    let mut push = |hash: String| {
        if hash != item.hash && !replaced.contains(&hash) {
            replaced.push(hash);
        }
    };
    if let Origin::SamePath(h) | Origin::Legacy(h) = &resolved.origin {
        push(h.clone());
    }
    if let Some(owner) = q.find_by_doc_name(&resolved.doc_name)? {
        push(owner.hash);
    }
    for legacy in q.find_by_name_key(names::stem(&item.name))? {
        if legacy.doc_name.is_none() && legacy.name.as_deref() == Some(item.name.as_str()) {
            push(legacy.hash);
        }
    }
    Ok(replaced)
}

/// What already occupies a path `item` would publish as `doc_name`, when that is not a file
/// of a document it replaces: a file another document claims (say one registered in place in
/// raw/), or a file no document claims (someone put it there). Such a file is never
/// overwritten. Costs an index lookup and an `lstat` per target.
fn occupied_target(
    kb: &Kb,
    q: &impl Queries,
    item: &Prepared,
    doc_name: &str,
    replaced: &[String],
) -> Result<Option<String>> {
    let mut targets = Vec::new();
    if !item.in_raw {
        targets.push(raw_target(doc_name, &item.name));
    }
    if item.staged_source.is_some() {
        targets.push(source_target(doc_name));
    }
    for rel in targets {
        let claimants = q.claimants_of_path(&rel)?;
        if let Some(other) = claimants.iter().find(|h| !replaced.contains(h)) {
            let name = q
                .get(other)?
                .and_then(|d| d.name)
                .unwrap_or_else(|| "(no name)".into());
            return Ok(Some(format!(
                "{rel} is the file of another document ({}, hash {})",
                names::shown(&name),
                names::short_hash(other)
            )));
        }
        // Files named after a document it replaces are that document's (legacy entries
        // need not record their paths); any other file there is someone's.
        if claimants.is_empty() && replaced.is_empty() && exists_at(kb, &rel)? {
            return Ok(Some(format!("{rel} exists and belongs to no document")));
        }
    }
    Ok(None)
}

/// Is anything (a file, a folder, a link) at `rel`? `rel` is built from a checked doc_name;
/// a name too long for the file system names nothing.
fn exists_at(kb: &Kb, rel: &str) -> Result<bool> {
    let path = kb.root().join(rel);
    match std::fs::symlink_metadata(&path) {
        Ok(_) => Ok(true),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::InvalidFilename
            ) =>
        {
            Ok(false)
        }
        Err(e) => Err(Error::io("cannot read", &path, e)),
    }
}

/// A document never overwrites a file it does not own: when a path its name gives it is
/// occupied, a new name gets the path-key disambiguator (as when the name is taken); a name
/// it inherited (an edited file, a legacy entry) cannot change, so the file is refused.
fn keep_off_other_files(
    kb: &Kb,
    q: &impl Queries,
    item: &Prepared,
    stem: &str,
    resolved: docname::Resolved,
    claims: &Claims,
) -> Result<(docname::Resolved, Vec<String>)> {
    // An unusable inherited name is refused with its reason by `place`.
    if kbpath::check_doc_name(&resolved.doc_name).is_err() {
        return Ok((resolved.clone(), replaced_documents(q, item, &resolved)?));
    }
    let replaced = replaced_documents(q, item, &resolved)?;
    let Some(occupied) = occupied_target(kb, q, item, &resolved.doc_name, &replaced)? else {
        return Ok((resolved, replaced));
    };
    let refuse = |why: String| {
        Error::Invalid(format!(
            "{}: {why}; openkb never overwrites a file it does not own, so nothing was added. \
            Rename the file (or move the other one away) and add it again",
            item.given.display()
        ))
    };
    if resolved.origin != Origin::New {
        return Err(refuse(format!(
            "it keeps the doc_name {} but {occupied}",
            names::shown(&resolved.doc_name)
        )));
    }
    let doc_name = docname::disambiguated(&item.path_key, stem);
    if !claims.is_free(q, &doc_name)? {
        return Err(refuse(format!(
            "{occupied}, and the other name {} is taken too",
            names::shown(&doc_name)
        )));
    }
    let resolved = docname::Resolved {
        doc_name,
        origin: Origin::New,
    };
    let replaced = replaced_documents(q, item, &resolved)?;
    if let Some(occupied_too) = occupied_target(kb, q, item, &resolved.doc_name, &replaced)? {
        return Err(refuse(format!("{occupied}, and {occupied_too}")));
    }
    Ok((resolved, replaced))
}

/// A file placed under its doc_name: its registry row, the files to publish and what its
/// intent records.
struct Placed {
    doc: Document,
    steps: Vec<Step>,
    files: Vec<IntentFile>,
}

/// Place `item` under the doc_name `resolved`: the raw copy (unless it is in raw/ already)
/// and the wiki source, each with a backup of the file it replaces.
fn place(
    kb: &Kb,
    staging: &Staging,
    item: &Prepared,
    resolved: &docname::Resolved,
    options: &Options,
) -> Result<Placed> {
    let doc_name = &resolved.doc_name;
    // A doc_name can come from a legacy entry (an edited file keeps its name): it names files,
    // so it must be one file name.
    kbpath::check_doc_name(doc_name).map_err(|why| {
        Error::Invalid(format!(
            "{}: cannot use the registered doc_name: {why}; nothing was added",
            item.given.display()
        ))
    })?;
    let mut steps = Vec::new();
    let mut files = Vec::new();
    let mut add_step = |from: PathBuf, copy: bool, rel: String| -> Result<()> {
        let target = KbPath::new(kb, &rel)?.as_path().to_path_buf();
        let backup_rel = if std::fs::symlink_metadata(&target).is_ok() {
            let backup = staging.fresh("backup");
            Some((relative(kb, &backup)?, backup))
        } else {
            None
        };
        files.push(IntentFile {
            path: rel,
            backup: backup_rel.as_ref().map(|(r, _)| r.clone()),
        });
        steps.push(Step {
            from,
            copy,
            target,
            backup: backup_rel.map(|(_, b)| b),
        });
        Ok(())
    };

    // A file already in raw/ (dropped there, watched, in a subfolder, with spaces in its name)
    // is registered where it is: a second copy under the doc_name would only be a surprise.
    let raw_path = if item.in_raw {
        item.path_key.clone()
    } else {
        let raw_rel = raw_target(doc_name, &item.name);
        match &item.staged_raw {
            Some(staged) => add_step(staged.clone(), false, raw_rel.clone())?,
            None => add_step(item.resolved.clone(), true, raw_rel.clone())?,
        }
        raw_rel
    };
    let source_path = match &item.staged_source {
        Some(staged) => {
            let rel = source_target(doc_name);
            add_step(staged.clone(), false, rel.clone())?;
            Some(rel)
        }
        None => None,
    };

    let suffix = names::suffix(&item.name);
    let doc = Document {
        hash: item.hash.clone(),
        name: Some(item.name.clone()),
        doc_name: Some(doc_name.clone()),
        doc_type: Some(suffix.strip_prefix('.').unwrap_or(suffix).to_owned()),
        path: Some(item.path_key.clone()),
        raw_path: Some(raw_path),
        source_path,
        status: if options.compile_command.is_some() {
            Status::Compiled
        } else {
            Status::Pending
        },
        ..Document::default()
    };
    Ok(Placed { doc, steps, files })
}

fn publish_plan(
    p: &Plan,
    dirs: &mut BTreeSet<PathBuf>,
    published: &mut Vec<PathBuf>,
) -> Result<()> {
    for step in &p.steps {
        if let Some(backup) = &step.backup {
            publish::backup(&step.target, backup)?;
        }
        if step.copy {
            crate::fsx::atomic_copy(&step.from, &step.target)?;
        } else {
            publish::publish(&step.from, &step.target)?;
        }
        if let Some(dir) = step.target.parent() {
            dirs.insert(dir.to_path_buf());
        }
        published.push(step.target.clone());
    }
    Ok(())
}

fn relative(kb: &Kb, path: &Path) -> Result<String> {
    path.strip_prefix(kb.root())
        .ok()
        .and_then(Path::to_str)
        .map(str::to_owned)
        .ok_or_else(|| {
            Error::Invalid(format!(
                "{}: staging is not inside the KB {}",
                path.display(),
                kb.root().display()
            ))
        })
}
