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
use crate::session::WriteSession;
use crate::state::{Document, IntentFile, IntentOp, LogEntry, Queries};
use crate::wiki;

/// Documents matching `identifier`: exact `name`, else exact doc_name, else case-insensitive
/// substring of either (the Python tool's order). More than one is for the caller to refuse.
pub fn find(q: &impl Queries, identifier: &str) -> Result<Vec<Document>> {
    let mut by_name = Vec::new();
    let mut by_doc_name = Vec::new();
    let mut by_substring = Vec::new();
    let needle = identifier.to_lowercase();
    q.for_each_document(&mut |doc| {
        let doc_name = doc.display_doc_name();
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
    })
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
pub fn execute(session: &WriteSession, plan: &Plan) -> Result<Option<LogEntry>> {
    let files: Vec<IntentFile> = plan.files.iter().map(IntentFile::new).collect();
    let intent = session.write(|tx| {
        tx.record_intent(
            IntentOp::Remove,
            &plan.hash,
            plan.doc_name.as_deref(),
            &files,
        )
    })?;
    finish(
        session,
        intent,
        &plan.hash,
        plan.doc_name.as_deref(),
        &files,
    )
}

/// Delete the files, edit the wiki, then commit: row delete + `remove` log row + intent
/// delete in one transaction. Safe to run again after a crash at any point.
pub fn finish(
    session: &WriteSession,
    intent: i64,
    hash: &str,
    doc_name: Option<&str>,
    files: &[IntentFile],
) -> Result<Option<LogEntry>> {
    let kb = session.kb();
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
    let entry = session.write(|tx| {
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
