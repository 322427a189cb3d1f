//! Removing a document: which one (identifier matching), what goes (the plan), and the
//! removal itself, which recovery also uses to finish an interrupted one.
//!
//! The plan names the raw copy, `wiki/sources/<doc_name>.*` (and its images folder) and
//! `wiki/summaries/<doc_name>.md`. Every path must be one a document owns
//! ([`kbpath::owned_by_document`]) and is confined to the KB ([`KbPath`]) first, so a legacy
//! entry whose fields name a folder, a KB file or a place outside the KB can never make openkb
//! delete it: such paths are listed as refused and left alone, and an entry `migrate` marked
//! untrusted is only unregistered. Everything that can fail (paths, `index.md`, the pages whose
//! links go) is read and checked before the first file is deleted. The registry row delete
//! (with its `remove` log row and the intent delete) is the commit point; everything before it
//! is idempotent.

use std::borrow::Cow;

use serde::Serialize;

use super::operation::{Operation, Planned};
use super::prepare::Staging;
use crate::error::{Error, Result};
use crate::kb::Kb;
use crate::kbpath::{self, KbPath, Kind, Owned};
use crate::names;
use crate::session::WriteSession;
use crate::state::{Document, Intent, IntentFile, IntentOp, LogEntry, Queries};
use crate::wiki;

/// Shortest hash prefix taken as an identifier: shorter hex strings are too likely to be
/// meant as (part of) a name.
pub const MIN_HASH_PREFIX: usize = 4;

/// Documents matching `identifier`: its whole hash, else exact `name`, else exact doc_name,
/// else a hash prefix of at least [`MIN_HASH_PREFIX`] hex digits (any case), else a
/// case-insensitive substring of name or doc_name (the Python tool's order, with hashes added
/// because two legacy entries can share both names). More than one is for the caller to refuse.
pub fn find(q: &impl Queries, identifier: &str) -> Result<Vec<Document>> {
    // Every name contains the empty text: `openkb remove -y "$UNSET"` must not pick whatever
    // happens to be the only document.
    if identifier.trim().is_empty() {
        return Err(Error::Invalid(format!(
            "{identifier:?} is not an identifier; name a document by its file name, doc_name, \
             hash (or a unique hash prefix) or a unique part of its name"
        )));
    }
    let hash_prefix = identifier.to_ascii_lowercase();
    let is_hash_prefix = hash_prefix.len() >= MIN_HASH_PREFIX
        && hash_prefix.len() <= 64
        && hash_prefix.bytes().all(|b| b.is_ascii_hexdigit());
    if names::is_valid_hash(&hash_prefix)
        && let Some(doc) = q.get(&hash_prefix)?
    {
        return Ok(vec![doc]);
    }
    let mut by_name = Vec::new();
    let mut by_doc_name = Vec::new();
    let mut by_hash = Vec::new();
    let mut by_substring = Vec::new();
    let needle = identifier.to_lowercase();
    q.for_each_document(&mut |doc| {
        let doc_name = doc.display_doc_name();
        if is_hash_prefix && doc.hash.starts_with(&hash_prefix) {
            by_hash.push(doc.clone());
        }
        if doc.name.as_deref() == Some(identifier) {
            by_name.push(doc);
        } else if doc_name.as_deref() == Some(identifier) {
            by_doc_name.push(doc);
        } else if doc
            .name
            .as_deref()
            .is_some_and(|n| n.to_lowercase().contains(&needle))
            || doc_name
                .as_deref()
                .is_some_and(|n| n.to_lowercase().contains(&needle))
        {
            by_substring.push(doc);
        }
        Ok(())
    })?;
    Ok(if !by_name.is_empty() {
        by_name
    } else if !by_doc_name.is_empty() {
        by_doc_name
    } else if !by_hash.is_empty() {
        by_hash
    } else {
        by_substring
    })
}

/// The one document `identifier` names (see [`find`]); none or several is an error that lists
/// the candidates. `show` resolves its argument the same way.
pub fn find_one(q: &impl Queries, identifier: &str) -> Result<Document> {
    let mut found = find(q, identifier)?;
    match found.len() {
        0 => Err(Error::Invalid(format!(
            "no document matches {identifier:?}; `openkb list` shows the registered ones"
        ))),
        1 => Ok(found.remove(0)),
        n => {
            let mut listed: Vec<String> = found
                .iter()
                .take(CANDIDATES_SHOWN)
                .map(|d| {
                    format!(
                        "  {}  {}  (doc_name {}, {})",
                        names::short_hash(&d.hash),
                        names::shown(d.name.as_deref().unwrap_or("-")),
                        names::shown(d.display_doc_name().as_deref().unwrap_or("-")),
                        names::shown(d.path.as_deref().unwrap_or("no path"))
                    )
                })
                .collect();
            if n > CANDIDATES_SHOWN {
                listed.push(format!("  ... and {} more", n - CANDIDATES_SHOWN));
            }
            Err(Error::Invalid(format!(
                "{n} documents match {:?}; name one by its hash (the first column; a unique \
                 prefix is enough):\n{}",
                names::shown(identifier),
                listed.join("\n")
            )))
        }
    }
}

/// How many candidates an ambiguous identifier lists.
const CANDIDATES_SHOWN: usize = 20;

/// Resolve every identifier and plan each document's removal, changing nothing. Every
/// identifier is resolved before anything is removed: one that matches nothing, or several
/// documents, is an error naming each problem. A file shared only among the targets goes
/// ([`leave_shared`] with all of them).
pub fn plan_targets(
    kb: &Kb,
    q: &impl Queries,
    identifiers: &[String],
    keep_raw: bool,
) -> Result<Vec<(Document, Plan)>> {
    let mut targets: Vec<(Document, Plan)> = Vec::new();
    let mut problems = Vec::new();
    for identifier in identifiers {
        match find_one(q, identifier) {
            Ok(doc) if targets.iter().any(|(d, _)| d.hash == doc.hash) => {}
            Ok(doc) => {
                let plan = plan(kb, q, &doc, keep_raw)?;
                targets.push((doc, plan));
            }
            Err(e) => problems.push(e.to_string()),
        }
    }
    if !problems.is_empty() {
        problems.push("nothing was removed".to_owned());
        return Err(Error::Invalid(problems.join("\n")));
    }
    let hashes: Vec<String> = targets.iter().map(|(d, _)| d.hash.clone()).collect();
    let hashes: Vec<&str> = hashes.iter().map(String::as_str).collect();
    for (_, plan) in &mut targets {
        leave_shared(q, plan, &hashes)?;
    }
    Ok(targets)
}

/// Remove `doc` in `session`, planned again under the exclusive lock (the KB may have changed
/// since the plan the user saw). Returns the document as it was and the plan carried out, or
/// `None` when another process removed the document first.
pub fn remove_document(
    session: &WriteSession,
    doc: &Document,
    keep_raw: bool,
) -> Result<Option<(Document, Plan)>> {
    let Some(doc) = session.get(&doc.hash)? else {
        return Ok(None);
    };
    let plan = {
        let reader = session.reader()?;
        let mut plan = plan(session.kb(), &reader, &doc, keep_raw)?;
        // One document at a time: a file another target shares goes with the last of them,
        // so a failure part-way never leaves a registered document without its files.
        leave_shared(&reader, &mut plan, &[])?;
        plan
    };
    execute(session, &plan)?;
    Ok(Some((doc, plan)))
}

/// What removing a document does.
#[derive(Debug, Serialize)]
pub struct Plan {
    pub hash: String,
    pub name: Option<String>,
    /// The doc_name the wiki edits use (absent when the entry's is not a valid file name).
    pub doc_name: Option<String>,
    /// KB-relative files (and the `wiki/sources/images/<doc_name>/` folder) to delete,
    /// whether or not they exist now.
    pub files: Vec<String>,
    /// Those of `files` that exist now (what the user is shown).
    pub existing: Vec<String>,
    /// Paths named by the entry that openkb will not touch, with the reason.
    pub refused: Vec<(String, String)>,
    /// The entry was marked untrusted by `migrate`: unregister it, touch no file.
    pub untrusted: Option<String>,
    /// Another document with the same doc_name (its hash): the index line and summary links
    /// are its too, and stay.
    pub wiki_shared_with: Option<String>,
}

/// The paths a document's entry names or implies, before any check. Lexical only, so
/// `migrate` can judge 100k entries without touching the disk (and without copying strings).
fn named_paths(doc: &Document, keep_raw: bool) -> Vec<Cow<'_, str>> {
    let mut out = Vec::new();
    if !keep_raw {
        match (&doc.raw_path, &doc.name) {
            (Some(raw), _) if !raw.is_empty() => out.push(Cow::Borrowed(raw.as_str())),
            // Entries older than raw_path had their copy at raw/<name>.
            (_, Some(name)) if doc.path.is_none() => out.push(Cow::Owned(format!("raw/{name}"))),
            _ => {}
        }
        // A file dropped into raw/ is the document's raw file too.
        if let Some(path) = &doc.path
            && path.starts_with("raw/")
        {
            out.push(Cow::Borrowed(path.as_str()));
        }
    }
    if let Some(source) = &doc.source_path
        && !source.is_empty()
    {
        out.push(Cow::Borrowed(source.as_str()));
    }
    out
}

/// Why a document's entry cannot be trusted with its files: every path it names that is not
/// one a document owns (a folder, a KB file, a place outside the KB), and a doc_name that is
/// not a single file name. Lexical: this is what `migrate` marks entries by.
pub fn untrusted_reasons(doc: &Document) -> Vec<String> {
    let doc_name = match (&doc.doc_name, &doc.name) {
        (Some(d), _) if !d.is_empty() => Some(d.as_str()),
        (_, Some(n)) => Some(names::stem(n)),
        _ => None,
    };
    let mut reasons = Vec::new();
    let valid_name = match doc_name {
        Some(d) => match kbpath::check_doc_name(d) {
            Ok(()) => true,
            Err(why) => {
                reasons.push(why);
                false
            }
        },
        None => true,
    };
    let owner = if valid_name { doc_name } else { None };
    for path in named_paths(doc, false) {
        let verdict = match kbpath::owned_by_document(&path, owner) {
            Ok(Owned::Images) => Err(format!("{path:?} is a folder")),
            Ok(_) if !valid_name => Err(format!(
                "{path:?} cannot be checked against an invalid doc_name"
            )),
            other => other.map(|_| ()),
        };
        if let Err(why) = verdict {
            reasons.push(why);
        }
    }
    reasons
}

pub fn plan(kb: &Kb, q: &impl Queries, doc: &Document, keep_raw: bool) -> Result<Plan> {
    let untrusted = crate::state::untrusted::reason(q, &doc.hash)?;
    let mut refused = Vec::new();
    // Only a doc_name that is one file name names files.
    let doc_name = match doc.display_doc_name() {
        Some(d) => match kbpath::check_doc_name(&d) {
            Ok(()) => Some(d),
            Err(why) => {
                refused.push((d, why));
                None
            }
        },
        None => None,
    };
    let mut candidates: Vec<String> = named_paths(doc, keep_raw)
        .into_iter()
        .map(Cow::into_owned)
        .collect();
    if let Some(d) = &doc_name {
        candidates.extend(sources_named(kb, d)?);
        candidates.push(format!("wiki/sources/images/{d}/"));
        candidates.push(format!("wiki/summaries/{d}.md"));
    }
    let mut files = Vec::new();
    let mut existing = Vec::new();
    if let Some(why) = &untrusted {
        for candidate in candidates {
            refused.push((
                candidate,
                format!("the entry is marked untrusted ({why}); it is only unregistered"),
            ));
        }
        return Ok(Plan {
            hash: doc.hash.clone(),
            name: doc.name.clone(),
            doc_name: None,
            files,
            existing,
            refused,
            untrusted,
            wiki_shared_with: None,
        });
    }
    for candidate in candidates {
        if files.contains(&candidate) || refused.iter().any(|(p, _)| *p == candidate) {
            continue;
        }
        match check_owned(kb, &candidate, doc_name.as_deref()) {
            Ok((_, present)) => {
                if present {
                    existing.push(candidate.clone());
                }
                files.push(candidate);
            }
            Err(why) => refused.push((candidate, why)),
        }
    }
    Ok(Plan {
        hash: doc.hash.clone(),
        name: doc.name.clone(),
        doc_name,
        files,
        existing,
        refused,
        untrusted,
        wiki_shared_with: None,
    })
}

/// Leave alone what another registered document also names: two legacy entries can share a
/// raw copy or a doc_name (the Python tool let that happen), and removing one must not take
/// the other's files or wiki pages with it. `removed_too`: hashes the same command removes as
/// well (their claims do not count). Call after [`plan`], under the same lock.
pub fn leave_shared(q: &impl Queries, plan: &mut Plan, removed_too: &[&str]) -> Result<()> {
    let other = |hash: &str| hash != plan.hash && !removed_too.contains(&hash);
    let owner_of_name = match &plan.doc_name {
        Some(d) => q
            .find_by_name_key(d)?
            .into_iter()
            .find(|o| other(&o.hash) && o.display_doc_name().as_deref() == Some(d))
            .map(|o| o.hash),
        None => None,
    };
    let mut kept = Vec::new();
    for file in std::mem::take(&mut plan.files) {
        let by_path = q
            .claimants_of_path(file.trim_end_matches('/'))?
            .into_iter()
            .find(|h| other(h));
        let by_name = plan
            .doc_name
            .as_deref()
            .filter(|d| names_doc_name_file(&file, d))
            .and(owner_of_name.clone());
        match by_path.or(by_name) {
            Some(hash) => plan.refused.push((
                file,
                format!("also the file of document {}", names::short_hash(&hash)),
            )),
            None => kept.push(file),
        }
    }
    plan.existing.retain(|f| kept.contains(f));
    plan.files = kept;
    plan.wiki_shared_with = owner_of_name;
    Ok(())
}

/// True for the files [`plan`] derives from a doc_name rather than from the entry's paths.
fn names_doc_name_file(file: &str, doc_name: &str) -> bool {
    file == format!("wiki/summaries/{doc_name}.md")
        || file == format!("wiki/sources/images/{doc_name}/")
        || file
            .strip_prefix("wiki/sources/")
            .is_some_and(|f| !f.contains('/') && names::stem(f) == doc_name)
}

/// Check that `candidate` (a file, or `wiki/sources/images/<doc_name>/`) is the document's to
/// delete: owned by it, confined to the KB, and on disk a file (or the images folder) or
/// nothing. Returns the confined path and whether something is there now.
fn check_owned(
    kb: &Kb,
    candidate: &str,
    doc_name: Option<&str>,
) -> std::result::Result<(KbPath, bool), String> {
    let folder = candidate.ends_with('/');
    let rel = candidate.trim_end_matches('/');
    let owned = kbpath::owned_by_document(rel, doc_name)?;
    if folder != (owned == Owned::Images) {
        return Err(format!(
            "{candidate:?} is not one of the document's own files"
        ));
    }
    let path = KbPath::new(kb, rel).map_err(|e| e.to_string())?;
    let kind = path.kind().map_err(|e| e.to_string())?;
    match (owned, kind) {
        (_, None) => Ok((path, false)),
        (Owned::Images, Some(Kind::Folder | Kind::Symlink)) => Ok((path, true)),
        (Owned::Images, Some(_)) => Err(format!("{candidate:?} is not a folder")),
        (_, Some(Kind::File | Kind::Symlink)) => Ok((path, true)),
        (_, Some(Kind::Folder)) => Err(format!(
            "{candidate:?} is a folder; a document owns only files"
        )),
        (_, Some(Kind::Special)) => Err(format!(
            "{candidate:?} is not a regular file (a pipe, socket or device)"
        )),
    }
}

/// `wiki/sources/<doc_name>.<anything>` that exist.
pub(crate) fn sources_named(kb: &Kb, doc_name: &str) -> Result<Vec<String>> {
    let dir = kb.wiki_dir().join("sources");
    let mut out = Vec::new();
    for entry in crate::fsx::read_dir_if_exists(&dir)? {
        if let Some(name) = entry.file_name().to_str()
            && names::stem(name) == doc_name
            && name != doc_name
            && entry.file_type().is_ok_and(|t| t.is_file())
        {
            out.push(format!("wiki/sources/{name}"));
        }
    }
    out.sort();
    Ok(out)
}

/// Remove the document of `plan`: check everything, record the intent, delete the files,
/// edit the wiki, then commit, in a write session.
pub fn execute(session: &WriteSession, plan: &Plan) -> Result<Option<LogEntry>> {
    let kb = session.kb();
    // Plan, check, act: every path and every page edit is worked out (and can fail) before
    // the intent exists and before the first file goes.
    // A doc_name another document shares: its index line and links are that one's too.
    let doc_name = plan
        .doc_name
        .as_deref()
        .filter(|_| plan.wiki_shared_with.is_none());
    let work = Work::check(kb, doc_name, &plan.files)?;
    let operation = Operation::begin(
        session,
        vec![Planned {
            operation: IntentOp::Remove,
            hash: plan.hash.clone(),
            doc_name: doc_name.map(str::to_owned),
            files: plan.files.iter().map(IntentFile::new).collect(),
        }],
    )?;
    work.act(operation, &plan.hash)
}

/// A remove checked and ready to run.
struct Work {
    deletions: Vec<KbPath>,
    edits: Vec<wiki::Edit>,
    skipped: Vec<(String, String)>,
}

impl Work {
    /// Confine and check every file, and work out every wiki edit, changing nothing. A file
    /// that is no longer the document's (a folder now, a KB file) is skipped, not deleted.
    fn check(kb: &Kb, doc_name: Option<&str>, files: &[String]) -> Result<Work> {
        let doc_name = doc_name.filter(|d| kbpath::check_doc_name(d).is_ok());
        let mut deletions = Vec::new();
        let mut skipped = Vec::new();
        for file in files {
            match check_owned(kb, file, doc_name) {
                Ok((path, _)) => deletions.push(path),
                Err(why) => skipped.push((file.clone(), why)),
            }
        }
        let edits = match doc_name {
            Some(d) => wiki::unlink_edits(kb, d)?,
            None => Vec::new(),
        };
        Ok(Work {
            deletions,
            edits,
            skipped,
        })
    }

    /// Delete the files and edit the wiki, then commit. Until the commit succeeds nothing is
    /// lost: the files are moved into a private staging folder and the edited pages' text is
    /// kept in the operation's undo, so a refused commit (`state.db` replaced or removed
    /// meanwhile, a busy database) puts everything back through the rollback crash recovery
    /// uses. After a crash the intent is finished instead (recovery runs this again), and the
    /// dead process's staging folder is swept.
    fn act(self, mut operation: Operation<'_>, hash: &str) -> Result<Option<LogEntry>> {
        let kb = operation.session().kb();
        // The staging folder belongs to the undo: it must outlive a rollback that puts the
        // moved files back from it.
        let undo = operation.undo_mut(0);
        let staging = undo.staging.insert(Staging::create(kb)?);
        self.move_aside(kb, staging, &mut undo.files)?;
        for edit in &self.edits {
            let before = std::fs::read(edit.path.as_path())
                .map_err(|e| Error::io("cannot read", edit.path.as_path(), e))?;
            edit.apply()?;
            operation
                .undo_mut(0)
                .pages
                .push((edit.path.clone(), before));
        }
        crate::faults::crash_point("remove-commit");
        crate::faults::run_point("remove-commit");
        let entry = operation.commit(|tx| {
            let Some(doc) = tx.get(hash)? else {
                return Ok(None);
            };
            tx.remove_document(hash)?;
            let what = doc
                .name
                .clone()
                .or_else(|| doc.display_doc_name())
                .unwrap_or_else(|| hash.to_owned());
            Ok(Some(tx.append_log("remove", &what)?))
        })?;
        for (path, why) in &self.skipped {
            crate::notice::warn(&format!(
                "warning: left {} alone: {}",
                names::shown(path),
                names::shown_line(why)
            ));
        }
        if let Some(entry) = &entry {
            crate::log_md::append(kb, std::slice::from_ref(entry))?;
        }
        Ok(entry)
    }

    /// Move every file (and the images folder) into `staging`, noting each in `moved` (with
    /// where it waits, to be put back).
    fn move_aside(&self, kb: &Kb, staging: &Staging, moved: &mut Vec<IntentFile>) -> Result<()> {
        for path in &self.deletions {
            if path.kind()?.is_none() {
                continue;
            }
            let name = path.rel().rsplit('/').next().unwrap_or("file");
            let (_, aside_rel) = staging.fresh_in_kb(kb, name)?;
            let aside_path = KbPath::new(kb, &aside_rel)?;
            if path.rename_to(&aside_path)? {
                moved.push(IntentFile {
                    path: path.rel().to_owned(),
                    backup: Some(aside_rel),
                });
            }
        }
        Ok(())
    }
}

/// Finish an interrupted remove (recovery): the same checks, then the same steps. Safe to
/// run again after a crash at any point.
pub fn finish(session: &WriteSession, intent: &Intent) -> Result<Option<LogEntry>> {
    let paths: Vec<String> = intent.files.iter().map(|f| f.path.clone()).collect();
    let work = Work::check(session.kb(), intent.doc_name.as_deref(), &paths)?;
    work.act(Operation::resume(session, intent), &intent.hash)
}
