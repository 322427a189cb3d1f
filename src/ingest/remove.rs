//! Removing a document: which one (identifier matching), what goes (the plan), and the
//! removal itself, which recovery also uses to finish an interrupted one.
//!
//! The plan names the raw copy, `wiki/sources/<doc_name>.*` (and its images folder) and
//! `wiki/summaries/<doc_name>.md`; every path is resolved inside the KB by [`super::kb_path`]
//! first, so a legacy entry whose fields point elsewhere (an absolute `path`, `..`, a symlinked
//! folder) can never make openkb delete outside the KB: such paths are listed as refused and
//! left alone. The registry row delete (with its `remove` log row and the intent delete) is the
//! commit point; everything before it is idempotent.

use serde::Serialize;

use super::kb_path;
use super::publish::remove_file;
use crate::error::{Error, Result};
use crate::kb::Kb;
use crate::names;
use crate::state::{Document, IntentFile, IntentOp, LogEntry, Queries, Store};
use crate::wiki;

/// Shortest hash prefix taken as an identifier: shorter hex strings are too likely to be
/// meant as (part of) a name.
pub const MIN_HASH_PREFIX: usize = 4;

/// Documents matching `identifier`: its whole hash, else exact `name`, else exact doc_name,
/// else a hash prefix of at least [`MIN_HASH_PREFIX`] hex digits (any case), else a
/// case-insensitive substring of name or doc_name (the Python tool's order, with hashes added
/// because two legacy entries can share both names). More than one is for the caller to refuse.
pub fn find(q: &impl Queries, identifier: &str) -> Result<Vec<Document>> {
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

/// What removing a document does.
#[derive(Debug, Serialize)]
pub struct Plan {
    pub hash: String,
    pub name: Option<String>,
    pub doc_name: Option<String>,
    /// KB-relative files (and `folder/` trees) to delete, whether or not they exist now.
    pub files: Vec<String>,
    /// Those of `files` that exist now (what the user is shown).
    pub existing: Vec<String>,
    /// Paths named by the entry that openkb will not touch, with the reason.
    pub refused: Vec<(String, String)>,
    /// Another document with the same doc_name (its hash): the index line and summary links
    /// are its too, and stay.
    pub wiki_shared_with: Option<String>,
}

pub fn plan(kb: &Kb, doc: &Document, keep_raw: bool) -> Result<Plan> {
    let doc_name = doc.display_doc_name();
    let mut candidates: Vec<String> = Vec::new();
    if !keep_raw {
        match (&doc.raw_path, &doc.name) {
            (Some(raw), _) if !raw.is_empty() => candidates.push(raw.clone()),
            // Entries older than raw_path had their copy at raw/<name>.
            (_, Some(name)) if doc.path.is_none() => candidates.push(format!("raw/{name}")),
            _ => {}
        }
        // A file dropped into raw/ is the document's raw file too.
        if let Some(path) = &doc.path
            && path.starts_with("raw/")
        {
            candidates.push(path.clone());
        }
    }
    if let Some(source) = &doc.source_path
        && !source.is_empty()
    {
        candidates.push(source.clone());
    }
    if let Some(d) = &doc_name {
        candidates.extend(sources_named(kb, d)?);
        candidates.push(format!("wiki/sources/images/{d}/"));
        candidates.push(format!("wiki/summaries/{d}.md"));
    }
    let mut files = Vec::new();
    let mut existing = Vec::new();
    let mut refused = Vec::new();
    for candidate in candidates {
        if files.contains(&candidate) {
            continue;
        }
        match kb_path(kb, candidate.trim_end_matches('/')) {
            Ok(full) => {
                if std::fs::symlink_metadata(&full).is_ok() {
                    existing.push(candidate.clone());
                }
                files.push(candidate);
            }
            Err(e) => refused.push((candidate, e.to_string())),
        }
    }
    Ok(Plan {
        hash: doc.hash.clone(),
        name: doc.name.clone(),
        doc_name,
        files,
        existing,
        refused,
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
                format!("also the file of document {}", &hash[..hash.len().min(12)]),
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

/// `wiki/sources/<doc_name>.<anything>` that exist.
fn sources_named(kb: &Kb, doc_name: &str) -> Result<Vec<String>> {
    let dir = kb.wiki_dir().join("sources");
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("cannot read folder", &dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("cannot read folder", &dir, e))?;
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

/// Remove the document of `plan`: intent, files, wiki edits, then the commit. The caller
/// holds the exclusive lock.
pub fn execute(kb: &Kb, store: &Store, plan: &Plan) -> Result<Option<LogEntry>> {
    let files: Vec<IntentFile> = plan.files.iter().map(IntentFile::new).collect();
    let doc_name = plan
        .doc_name
        .as_deref()
        .filter(|_| plan.wiki_shared_with.is_none());
    let intent =
        store.write(|tx| tx.record_intent(IntentOp::Remove, &plan.hash, doc_name, &files))?;
    finish(kb, store, intent, &plan.hash, doc_name, &files)
}

/// Delete the files, edit the wiki, then commit: row delete + `remove` log row + intent
/// delete in one transaction. Safe to run again after a crash at any point.
pub fn finish(
    kb: &Kb,
    store: &Store,
    intent: i64,
    hash: &str,
    doc_name: Option<&str>,
    files: &[IntentFile],
) -> Result<Option<LogEntry>> {
    for file in files {
        let dir = file.path.ends_with('/');
        let full = kb_path(kb, file.path.trim_end_matches('/'))?;
        if dir {
            match std::fs::symlink_metadata(&full) {
                Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(&full)
                    .map_err(|e| Error::io("cannot remove folder", &full, e))?,
                Ok(_) => {
                    remove_file(&full)?;
                }
                Err(_) => {}
            }
        } else {
            remove_file(&full)?;
        }
    }
    if let Some(d) = doc_name {
        wiki::index_remove(&kb.index_md(), &[d])?;
        wiki::strip_summary_links(&kb.wiki_dir(), d)?;
    }
    super::crash_point("remove-commit");
    let entry = store.write(|tx| {
        let doc = tx.get(hash)?;
        let logged = match &doc {
            Some(doc) => {
                tx.remove_document(hash)?;
                let what = doc
                    .name
                    .clone()
                    .or_else(|| doc.display_doc_name())
                    .unwrap_or_else(|| hash.to_owned());
                Some(tx.append_log("remove", &what)?)
            }
            None => None,
        };
        tx.delete_intent(intent)?;
        Ok(logged)
    })?;
    if let Some(entry) = &entry {
        kb.append_log_md(entry)?;
    }
    Ok(entry)
}
