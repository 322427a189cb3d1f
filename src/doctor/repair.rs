//! `openkb doctor --fix`: the repairs that are safe. The caller holds the exclusive KB lock,
//! so no other openkb (or Python openkb) process has `state.db` open or is writing files.
//!
//! - A damaged, foreign or missing `state.db` is moved aside with its `-wal`, `-shm` and
//!   `-journal` (never deleted) and a new one is built from what the files tell: every file in
//!   `raw/` becomes a document, and the log is re-imported from `wiki/log.md`. The new file is
//!   built under a temp name and renamed into place only when complete, so a crash during the
//!   rebuild leaves no half-filled `state.db` that would look healthy.
//! - Temp files older than a few minutes are removed (they are openkb's or the Python tool's
//!   own, never user files).
//! - A large WAL is checkpointed.
//! - `wiki/log.md` is rewritten from the log table (atomically).
//! - Unfinished intents are finished or rolled back, by the recovery every exclusive command runs.

use std::collections::HashSet;
use std::path::Path;

use crate::error::{Error, Result};
use crate::fsx;
use crate::kb::Kb;
use crate::log_md::{self, LegacyLogEntry};
use crate::names;
use crate::state::{Create, Document, Status, Store, WriteAccess, build};

use super::{DbState, Diagnosis, Finding, leftovers};
use crate::fsx::{WalkStep, walk};

pub(super) fn repair(kb: &Kb, diagnosis: &Diagnosis) -> Result<Vec<Finding>> {
    let mut fixed = Vec::new();
    match &diagnosis.db {
        DbState::Broken(reason) => fixed.push(rebuild_state_db(kb, Some(reason))?),
        DbState::Missing => fixed.push(rebuild_state_db(kb, None)?),
        DbState::Legacy | DbState::Usable { .. } => {}
    }
    for rel in leftovers::old_temp_files(kb, leftovers::TEMP_MIN_AGE)? {
        if !crate::kbpath::KbPath::new(kb, &rel)?.remove_file()? {
            continue;
        }
        fixed.push(done("temp-file", format!("removed the temp file {rel}")));
    }
    let swept = crate::ingest::leftovers::sweep_leftovers(kb)?;
    if swept.items > 0 {
        fixed.push(done(
            "leftovers",
            format!(
                "removed {} leftover(s) of killed openkb processes ({})",
                swept.items,
                crate::ingest::leftovers::human_size(swept.bytes)
            ),
        ));
    }
    let writable = matches!(diagnosis.db, DbState::Usable { too_new: false, .. })
        || matches!(diagnosis.db, DbState::Broken(_) | DbState::Missing);
    if !writable {
        return Ok(fixed);
    }
    // Nested in the caller's exclusive lock, so it does not settle on its own:
    // `fix_intents` settles and reports what it did.
    let store = kb.write_session()?;
    if matches!(store.ensure_writable(), Err(crate::Error::NetworkFs { .. })) {
        // openkb writes nothing on a network filesystem without the single-host opt-in.
        return Ok(fixed);
    }
    if diagnosis
        .findings
        .iter()
        .any(|f| f.check == "wal-size" && f.fixable)
    {
        store.checkpoint()?;
        fixed.push(done("wal-size", "checkpointed the write-ahead log"));
    }
    fixed.extend(leftovers::fix_intents(&store)?);
    // Lines the Python tool appended to wiki/log.md are history: they become log rows before
    // the page is rewritten from the table. (A page that does not parse is saved aside below.)
    if let Ok(lines) = crate::legacy::migrate::python_log_lines(kb, &store.reader()?)
        && !lines.is_empty()
    {
        crate::legacy::migrate::import_log_lines(&store, &lines, "doctor")?;
        fixed.push(done(
            "log.md",
            format!(
                "imported {} wiki/log.md entries appended by the Python tool into the log table",
                lines.len()
            ),
        ));
    }
    let expected = log_md::render(&store.reader()?)?;
    let current = std::fs::read(kb.log_md()).ok();
    let up_to_date = current
        .as_deref()
        .is_some_and(|c| c == expected.as_bytes() || super::files::same_entries(c, &expected));
    if !up_to_date {
        let kept = keep_entries_the_table_lacks(kb, current.as_deref(), &expected)?;
        crate::kbpath::KbPath::bookkeeping(kb, "wiki/log.md")?.write_atomic(expected.as_bytes())?;
        let kept = match kept {
            Some(name) => format!(" (its entries the table lacks were kept in .openkb/{name})"),
            None => String::new(),
        };
        fixed.push(done(
            "log.md",
            format!("rewrote wiki/log.md from the log table{kept}"),
        ));
    }
    Ok(fixed)
}

/// Before `wiki/log.md` is rewritten: when it holds entries the table does not (the Python
/// tool appended after migration, or the table was rebuilt), save the old page as
/// `.openkb/log.md.before-doctor-<UTC>` so no history is lost. Returns the saved name.
fn keep_entries_the_table_lacks(
    kb: &Kb,
    current: Option<&[u8]>,
    expected: &str,
) -> Result<Option<String>> {
    let Some(current) = current else {
        return Ok(None);
    };
    let current_text = String::from_utf8_lossy(current);
    let in_table: HashSet<LegacyLogEntry> = log_md::parse_text(expected).into_iter().collect();
    let lacking = log_md::parse_text(&current_text)
        .into_iter()
        .any(|entry| !in_table.contains(&entry));
    if !lacking {
        return Ok(None);
    }
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let name = format!("log.md.before-doctor-{stamp}");
    // A new file, never one already there (a link planted under the name would be followed).
    let path = kb.openkb_dir().join(&name);
    if !fsx::write_new(&path, current)? {
        return Err(Error::Invalid(format!(
            "{}: exists already; wiki/log.md was left as it is (its old text would go there). \
             Move that file away and run `openkb doctor --fix` again",
            path.display()
        )));
    }
    Ok(Some(name))
}

/// A repaired finding. Severity is what the finding was: damaged databases are problems, the
/// rest are warnings.
fn done(check: &'static str, message: impl Into<String>) -> Finding {
    let severity = match check {
        "state.db" => super::Severity::Problem,
        _ => super::Severity::Warning,
    };
    Finding {
        check,
        severity,
        message: message.into(),
        fixable: true,
        fixed: true,
    }
}

/// Build a new database from the files, then move the damaged one (or stray companions of a
/// missing one) aside and put the new one in its place. Building first means a failure
/// (an unreadable raw file, a full disk) changes nothing.
fn rebuild_state_db(kb: &Kb, reason: Option<&str>) -> Result<Finding> {
    let db = kb.state_db();
    let dir = kb.openkb_dir();
    // Where the new database could not be written, leave the old one where it is.
    let policy = &kb.settings().fs;
    if let Some(fs) = crate::netfs::detect_any(&[kb.root(), &dir], policy)?
        && fs.network
        && !policy.single_host
    {
        return Err(Error::NetworkFs {
            path: db,
            fs_type: fs.name,
        });
    }
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let aside = build::free_name_beside(&db, &format!("state.db.corrupt-{stamp}"));
    let temp = dir.join(format!(".state.db.rebuild-{stamp}.tmp"));
    // SQLite follows a link at its file or sidecars: whatever is under the temp name (a
    // leftover of a rebuild killed this second, or a planted link) goes first.
    build::remove_database_files(&temp);
    let kept_as = reason.map(|_| aside.as_str());
    let (documents, log_entries, skipped) = match build_from_files(kb, &temp, kept_as) {
        Ok(counts) => counts,
        Err(e) => {
            build::remove_database_files(&temp);
            return Err(e);
        }
    };
    let moved = build::move_database_aside(&db, &dir.join(&aside))?;
    build::place_without_replacing(&temp, &db)?;
    let kept = if moved.is_empty() {
        String::new()
    } else {
        format!(
            "; kept the old files as .openkb/{}",
            moved.join(", .openkb/")
        )
    };
    let skipped = if skipped > 0 {
        format!("; skipped {skipped} file(s) in raw/ whose names are not UTF-8")
    } else {
        String::new()
    };
    Ok(done(
        "state.db",
        format!(
            "rebuilt .openkb/state.db from the KB's files: {documents} document(s) from raw/, \
             {log_entries} log entries from wiki/log.md{kept}{skipped}"
        ),
    ))
}

/// Build a complete database at `temp`; returns (documents, log entries, skipped files).
fn build_from_files(kb: &Kb, temp: &Path, kept_as: Option<&str>) -> Result<(usize, usize, usize)> {
    let (documents, skipped) = documents_from_raw(kb)?;
    let log = match std::fs::read_to_string(kb.log_md()) {
        Ok(text) => log_md::parse_text(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(Error::io("cannot read", kb.log_md(), e)),
    };
    // A brand-new file under a temp name, under the exclusive lock: nobody else can see it
    // until it is renamed into place.
    let store = Store::open_with(temp, Create::IfMissing, &kb.settings().fs)?;
    let access = WriteAccess::granted();
    let description = match kept_as {
        Some(name) => format!(
            "rebuilt state.db from files ({} documents); damaged file kept as {name}",
            documents.len()
        ),
        None => format!(
            "rebuilt missing state.db from files ({} documents)",
            documents.len()
        ),
    };
    store.write(&access, |tx| {
        for doc in &documents {
            tx.upsert_document(doc)?;
        }
        for entry in &log {
            tx.import_log(&entry.timestamp, &entry.operation, &entry.description)?;
        }
        tx.append_log("doctor", &description)?;
        Ok(())
    })?;
    store.checkpoint()?;
    drop(store);
    Ok((documents.len(), log.len() + 1, skipped))
}

/// One document per file in `raw/`, oldest first (the closest guess at registry order), and
/// how many files were skipped because their names are not UTF-8.
fn documents_from_raw(kb: &Kb) -> Result<(Vec<Document>, usize)> {
    let mut files: Vec<(std::time::SystemTime, String)> = Vec::new();
    let mut skipped = 0;
    walk(kb.root(), "raw", &mut |rel, entry| {
        let name = rel.rsplit('/').next().unwrap_or(rel);
        if rel.ends_with('/') || name.starts_with('.') {
            return WalkStep::Continue;
        }
        if entry.file_name().to_str().is_none() {
            skipped += 1;
            return WalkStep::Continue;
        }
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if is_file {
            let mtime = entry
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            files.push((mtime, rel.to_owned()));
        }
        WalkStep::Continue
    })?;
    files.sort();
    let sources = kb.wiki_dir().join("sources");
    let summaries = kb.wiki_dir().join("summaries");
    let mut seen_hashes = HashSet::new();
    let mut taken_names = HashSet::new();
    let mut documents = Vec::new();
    for (_, rel) in files {
        let hash = crate::hash::sha256_file(&kb.root().join(&rel))?;
        if !seen_hashes.insert(hash.clone()) {
            continue; // the same content twice: the registry keys by content
        }
        let name = rel.rsplit('/').next().unwrap_or(&rel).to_owned();
        let stem = names::stem(&name).to_owned();
        let mut doc_name = stem.clone();
        if !taken_names.insert(names::nfkc(&doc_name)) {
            doc_name = format!("{stem}-{}", &hash[..8]);
            taken_names.insert(names::nfkc(&doc_name));
        }
        let mut doc = Document::new(hash);
        doc.doc_type = Some(names::suffix(&name).trim_start_matches('.').to_owned());
        doc.source_path = ["md", "json"]
            .iter()
            .map(|ext| format!("{doc_name}.{ext}"))
            .find(|f| sources.join(f).is_file())
            .map(|f| format!("wiki/sources/{f}"));
        doc.status = if summaries.join(format!("{doc_name}.md")).is_file() {
            Status::Compiled
        } else {
            Status::Pending
        };
        doc.name = Some(name);
        doc.doc_name = Some(doc_name);
        doc.path = Some(rel.clone());
        doc.raw_path = Some(rel);
        documents.push(doc);
    }
    Ok((documents, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_md_round_trips_through_the_parser() {
        let text = "# Operations Log\n\n## [2026-01-02 03:04:05] ingest | a.md\n\n\
                    ## [2026-01-02 03:04:06] query | two\nlines\n\n";
        let parsed: Vec<(String, String, String)> = log_md::parse_text(text)
            .into_iter()
            .map(|e| (e.timestamp, e.operation, e.description))
            .collect();
        assert_eq!(
            parsed,
            vec![
                ("2026-01-02 03:04:05".into(), "ingest".into(), "a.md".into()),
                (
                    "2026-01-02 03:04:06".into(),
                    "query".into(),
                    "two\nlines".into()
                ),
            ]
        );
    }
}
