//! Ingest: the commands that change which documents a KB holds (`add`, `remove`, `compile`,
//! `watch`), built so that several openkb processes (and the Python tool, through the same
//! `.openkb/ingest.lock`) can work on one KB, and a process killed at any instant leaves a KB
//! the next command repairs.
//!
//! # The protocol
//!
//! Work that does not change the KB (walking folders, hashing, converting, copying into a
//! private staging folder `.openkb/staging/rs-*`) happens outside the KB lock. Then, under the
//! exclusive lock:
//!
//! 1. an **intent** row is committed to `state.db` naming every file the operation will
//!    create (and where the previous content of any file it replaces was kept) or delete;
//! 2. the files are published (`rename` from staging, then made durable) or deleted;
//! 3. **one transaction** commits the document row, its log row and deletes the intent.
//!    This is the commit point. `wiki/log.md` is rendered from the log row afterwards.
//!
//! Every operation goes through [`operation::Operation`], the one implementation of these
//! steps and of the rollback when they fail.
//!
//! A crash before step 3 leaves the intent. The next write session (`session.rs`; not a
//! nested re-entry) runs [`recover::recover_interrupted`]: an add whose row exists is done
//! (only its backups are dropped); any other add is rolled back file by file (new files
//! deleted, replaced files restored); a remove is finished (deletions are idempotent, the row
//! delete is its commit point); an interrupted compile is marked failed, and a compile hook
//! the dead process left running is killed first. Leftover staging folders, lock files and
//! temp databases whose owner is gone are swept ([`leftovers::sweep_leftovers`]). Every path
//! an intent, or a legacy registry entry, names is confined to the KB before anything is
//! deleted (see [`crate::kbpath`]).
//!
//! Documents are hashed with SHA-256 (the registry key), named by the Python tool's doc_name
//! rules ([`docname`]), and published as `raw/<doc_name><suffix>` plus, for text formats,
//! `wiki/sources/<doc_name>.md`.

pub mod add;
pub mod compile;
pub mod docname;
pub mod hook;
pub mod hook_output;
pub mod leftovers;
pub mod operation;
pub mod prepare;
pub mod publish;
pub mod recover;
pub mod remove;
pub mod watch;

use std::path::Path;

use crate::error::{Error, Result};
use crate::kb::Kb;

/// File types `add` accepts (lower-case suffixes), as the Python tool does.
pub const SUPPORTED: &[&str] = &[
    ".pdf",
    ".md",
    ".markdown",
    ".docx",
    ".pptx",
    ".xlsx",
    ".html",
    ".htm",
    ".txt",
    ".csv",
];

/// Formats whose text is the wiki source as is (`wiki/sources/<doc_name>.md`).
pub const TEXT: &[&str] = &[".md", ".markdown", ".txt"];

pub fn is_supported(file_name: &str) -> bool {
    SUPPORTED.contains(&crate::names::suffix(file_name).to_lowercase().as_str())
}

pub fn is_text(file_name: &str) -> bool {
    TEXT.contains(&crate::names::suffix(file_name).to_lowercase().as_str())
}

static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Make SIGINT (Ctrl-C) and SIGTERM ask long-running work (`add` of a folder, `watch`) to stop
/// at the next file boundary, finishing what it started, instead of dying mid-batch.
pub fn stop_cleanly_on_interrupt() {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(
            libc::SIGINT,
            on_interrupt as *const () as libc::sighandler_t,
        );
        libc::signal(
            libc::SIGTERM,
            on_interrupt as *const () as libc::sighandler_t,
        );
    }
}

/// True once SIGINT or SIGTERM arrived (after [`stop_cleanly_on_interrupt`]).
pub fn interrupted() -> bool {
    INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst)
}

/// The registry path key of a file: KB-relative POSIX path when its resolved location is
/// inside the KB, else the absolute path (the Python tool's `_registry_path`).
pub fn path_key(kb: &Kb, resolved: &Path) -> Result<String> {
    let shown = match resolved.strip_prefix(kb.root()) {
        Ok(rel) => rel,
        Err(_) => resolved,
    };
    shown.to_str().map(str::to_owned).ok_or_else(|| {
        Error::Invalid(format!(
            "{}: the path is not valid UTF-8; rename the file",
            resolved.display()
        ))
    })
}

/// `raw/<doc_name><lower-case suffix>`, KB-relative.
pub fn raw_target(doc_name: &str, file_name: &str) -> String {
    format!(
        "raw/{doc_name}{}",
        crate::names::suffix(file_name).to_lowercase()
    )
}

/// `wiki/sources/<doc_name>.md`, KB-relative.
pub fn source_target(doc_name: &str) -> String {
    format!("wiki/sources/{doc_name}.md")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supported_types_ignore_case() {
        assert!(is_supported("a.PDF"));
        assert!(is_supported("b.markdown"));
        assert!(!is_supported("c.exe"));
        assert!(!is_supported(".md"));
        assert!(is_text("n.TXT"));
        assert!(!is_text("n.pdf"));
    }
}
