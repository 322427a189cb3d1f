//! Confined KB paths: the only way openkb deletes, writes, renames or copies inside a KB.
//!
//! Every path openkb acts on comes from somewhere it does not control: a legacy `hashes.json`
//! entry, a row of `state.db`, a Python crash journal, a file name, a symlink someone put in
//! the wiki. A [`KbPath`] is built only from a KB-relative path that is normalised (no empty,
//! `.` or `..` part, not absolute, no NUL) and whose existing folders resolve inside the KB (a
//! symlinked folder leading out is refused); its last component is never followed when it is
//! deleted (unlinking a link leaves its target alone). Bookkeeping files (`wiki/log.md`,
//! `wiki/index.md`, `wiki/reports/`, `.openkb/staging`, `.openkb/ingest.lock`, `state.db`) are
//! built with [`KbPath::bookkeeping`], which also refuses any symlink on the way: openkb writes
//! them only where they really are.
//!
//! On top of confinement, [`owned_by_document`] decides whether a path is one a document owns
//! (its raw copy, `wiki/sources/<doc_name>.*`, `wiki/sources/images/<doc_name>/`,
//! `wiki/summaries/<doc_name>.md`), so a registry entry naming a folder or one of the KB's own
//! files can never make a document operation delete or overwrite it.
//!
//! The checks run under the KB's exclusive lock, right before the operation: between the check
//! and the system call only a process that ignores the lock could swap a folder for a symlink.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::fsx;
use crate::kb::Kb;

/// Longest KB-relative path accepted (Linux's PATH_MAX).
const MAX_PATH_BYTES: usize = 4096;

/// A path inside a KB that passed the confinement checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KbPath {
    rel: String,
    full: PathBuf,
}

impl KbPath {
    /// Confine `rel` to the KB at `kb`.
    pub fn new(kb: &Kb, rel: &str) -> Result<KbPath> {
        Self::under(kb.root(), rel)
    }

    /// Confine `rel` to `root` (an absolute, resolved KB root).
    pub fn under(root: &Path, rel: &str) -> Result<KbPath> {
        let refuse = |why: &str| refusal(root, rel, why);
        check_lexically(rel).map_err(|why| refuse(&why))?;
        let full = root.join(rel);
        // Every existing folder on the way must resolve inside the KB.
        let mut prefix = root.to_path_buf();
        let parts: Vec<&str> = rel.split('/').collect();
        for part in &parts[..parts.len() - 1] {
            prefix.push(part);
            match fs::symlink_metadata(&prefix) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e) => return Err(Error::io("cannot read", &prefix, e)),
                Ok(meta) if meta.file_type().is_symlink() => match prefix.canonicalize() {
                    Ok(real) if real.starts_with(root) => {}
                    Ok(_) => {
                        return Err(refuse("a symlinked folder on the way leads outside the KB"));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    Err(e) => return Err(Error::io("cannot resolve", &prefix, e)),
                },
                Ok(meta) if !meta.is_dir() => {
                    return Err(refuse(&format!("{} is not a folder", prefix.display())));
                }
                Ok(_) => {}
            }
        }
        Ok(KbPath {
            rel: rel.to_owned(),
            full,
        })
    }

    /// Confine a KB bookkeeping file (`wiki/log.md`, `wiki/index.md`, a lint report,
    /// `.openkb/staging`, ...): no component at all may be a symlink, the file included.
    pub fn bookkeeping(kb: &Kb, rel: &str) -> Result<KbPath> {
        check_lexically(rel).map_err(|why| refusal(kb.root(), rel, &why))?;
        let full = kb.root().join(rel);
        // Every link on the way is named first (a linked `.openkb/` or `wiki/` is the usual
        // case), whether it leads out of the KB or not.
        let mut prefix = kb.root().to_path_buf();
        for part in rel.split('/') {
            prefix.push(part);
            match fs::symlink_metadata(&prefix) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    return Err(Error::Invalid(format!(
                        "{}: is a symbolic link; openkb does not write the KB's own files \
                         through symlinks (it could write outside the KB). Replace the link \
                         with a regular {} (to keep what it points to, delete the link and \
                         move its target to its place); nothing was changed",
                        prefix.display(),
                        if prefix == full { "file" } else { "folder" }
                    )));
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        Self::new(kb, rel)
    }

    pub fn rel(&self) -> &str {
        &self.rel
    }

    pub fn as_path(&self) -> &Path {
        &self.full
    }

    /// What is at the path now, without following a symlink there.
    pub fn kind(&self) -> Result<Option<Kind>> {
        match fs::symlink_metadata(&self.full) {
            Ok(meta) if meta.file_type().is_symlink() => Ok(Some(Kind::Symlink)),
            Ok(meta) if meta.is_dir() => Ok(Some(Kind::Folder)),
            Ok(meta) if meta.is_file() => Ok(Some(Kind::File)),
            Ok(_) => Ok(Some(Kind::Special)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            // A name too long for the file system names nothing there (a rollback of an add
            // that failed for that reason must not fail, or warn, on it).
            Err(e) if e.kind() == std::io::ErrorKind::InvalidFilename => Ok(None),
            Err(e) => Err(Error::io("cannot read", &self.full, e)),
        }
    }

    /// Delete a file or symlink (the link, never its target); absent is fine. A folder is
    /// refused: a file operation never deletes a tree.
    pub fn remove_file(&self) -> Result<bool> {
        if self.kind()? == Some(Kind::Folder) {
            return Err(Error::Invalid(format!(
                "{}: is a folder, not a file; openkb left it alone",
                self.full.display()
            )));
        }
        match fs::remove_file(&self.full) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) if e.kind() == std::io::ErrorKind::InvalidFilename => Ok(false),
            Err(e) => Err(Error::io("cannot remove", &self.full, e)),
        }
    }

    /// Delete a folder tree (symlinks inside are unlinked, never followed), or the file or
    /// symlink at the path; absent is fine.
    pub fn remove_tree(&self) -> Result<bool> {
        match self.kind()? {
            None => Ok(false),
            Some(Kind::Folder) => match fs::remove_dir_all(&self.full) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(Error::io("cannot remove folder", &self.full, e)),
            },
            Some(_) => self.remove_file(),
        }
    }

    /// Replace the file atomically (see [`fsx::atomic_write`]); a symlink at the path is
    /// refused, never written through.
    pub fn write_atomic(&self, contents: &[u8]) -> Result<()> {
        if self.kind()? == Some(Kind::Symlink) {
            return Err(Error::Invalid(format!(
                "{}: is a symbolic link; openkb does not write through symlinks inside the KB \
                (the target could be outside it); replace it with a regular file",
                self.full.display()
            )));
        }
        fsx::atomic_write(&self.full, contents)
    }

    /// Append to the file (see [`fsx::append`]), refusing to open it through a symlink.
    pub fn append(&self, header: &str, text: &str) -> Result<()> {
        fsx::append(&self.full, header, text)
    }

    /// Create the folder (and missing parents) inside the KB.
    pub fn create_dir_all(&self) -> Result<()> {
        fs::create_dir_all(&self.full).with_path("cannot create folder", &self.full)
    }

    /// Move `self` to `to` (both confined), replacing a file there.
    pub fn rename_to(&self, to: &KbPath) -> Result<bool> {
        match fs::rename(&self.full, &to.full) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io("cannot move into place", &to.full, e)),
        }
    }
}

/// What a path holds on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Folder,
    Symlink,
    Special,
}

/// Why `rel` is not a normalised KB-relative path, if it is not.
pub fn check_lexically(rel: &str) -> std::result::Result<(), String> {
    if rel.is_empty() {
        return Err("it is empty".into());
    }
    if rel.len() > MAX_PATH_BYTES {
        return Err(format!("it is longer than {MAX_PATH_BYTES} bytes"));
    }
    if rel.starts_with('/') {
        return Err("it is absolute, not relative to the KB".into());
    }
    if rel.contains('\0') {
        return Err("it contains a NUL byte".into());
    }
    for part in rel.split('/') {
        match part {
            "" => return Err("it has an empty part (`//` or a trailing `/`)".into()),
            "." | ".." => return Err("it contains `.` or `..`".into()),
            _ => {}
        }
    }
    Ok(())
}

fn refusal(root: &Path, rel: &str, why: &str) -> Error {
    Error::Invalid(format!(
        "refusing to touch {rel:?}: {why}; openkb never writes or deletes outside the KB ({})",
        root.display()
    ))
}

/// A doc_name usable in file names: one path component, no control characters.
pub fn check_doc_name(doc_name: &str) -> std::result::Result<(), String> {
    if doc_name.is_empty() {
        return Err("the doc_name is empty".into());
    }
    if doc_name.len() > 255 {
        return Err("the doc_name is longer than 255 bytes".into());
    }
    if doc_name == "." || doc_name == ".." || doc_name.contains('/') {
        return Err(format!(
            "the doc_name {doc_name:?} is not a single file name (it contains `/` or is `.`/`..`)"
        ));
    }
    if doc_name.chars().any(char::is_control) {
        return Err(format!(
            "the doc_name {doc_name:?} contains control characters"
        ));
    }
    Ok(())
}

/// What a document may own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owned {
    /// A file under `raw/` (the raw copy, or a file dropped there).
    Raw,
    /// `wiki/sources/<doc_name>.<ext>` (any one file directly in `wiki/sources/`, for entries
    /// without a doc_name).
    Source,
    /// `wiki/sources/images/<doc_name>/`: the only folder a document owns.
    Images,
    /// `wiki/summaries/<doc_name>.md`.
    Summary,
}

/// Is `rel` one of the files (or the images folder) a document named `doc_name` owns? The
/// answer is lexical: callers check on disk that a file path is not a folder.
pub fn owned_by_document(rel: &str, doc_name: Option<&str>) -> std::result::Result<Owned, String> {
    check_lexically(rel)?;
    let parts: Vec<&str> = rel.split('/').collect();
    let not_ours = || {
        format!(
            "{rel:?} is not one of a document's own files (its raw copy, \
             wiki/sources/<doc_name>.*, wiki/sources/images/<doc_name>/, \
             wiki/summaries/<doc_name>.md)"
        )
    };
    let named = |file: &str| match doc_name {
        Some(d) => crate::names::stem(file) == d && file != d,
        None => true,
    };
    match parts.as_slice() {
        ["raw", rest @ ..] if !rest.is_empty() => {
            if rest.iter().any(|p| p.starts_with('.')) {
                Err(format!(
                    "{rel:?} is a hidden file in raw/, not a document's copy"
                ))
            } else {
                Ok(Owned::Raw)
            }
        }
        ["wiki", "sources", "images", d] if Some(*d) == doc_name => Ok(Owned::Images),
        ["wiki", "sources", file] if *file != "images" && !file.starts_with('.') && named(file) => {
            Ok(Owned::Source)
        }
        ["wiki", "summaries", file] if doc_name.is_some_and(|d| *file == format!("{d}.md")) => {
            Ok(Owned::Summary)
        }
        _ => Err(not_ours()),
    }
}

/// Bookkeeping paths that must never be symlinks, KB-relative.
pub const BOOKKEEPING: &[&str] = &[
    ".openkb",
    "wiki",
    "wiki/log.md",
    "wiki/index.md",
    "wiki/reports",
    ".openkb/staging",
    ".openkb/ingest.lock",
    ".openkb/state.db",
    ".openkb/state.db-wal",
    ".openkb/state.db-shm",
    ".openkb/journal",
];

/// The bookkeeping paths of `kb` that are symlinks, with their targets (for `openkb doctor`).
pub fn symlinked_bookkeeping(kb: &Kb) -> Vec<(String, PathBuf)> {
    BOOKKEEPING
        .iter()
        .filter_map(|rel| {
            let full = kb.root().join(rel);
            match fs::symlink_metadata(&full) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    Some(((*rel).to_owned(), fs::read_link(&full).unwrap_or_default()))
                }
                _ => None,
            }
        })
        .collect()
}

/// Refuse to use `kb` for writing when one of its bookkeeping paths is a symlink.
pub fn refuse_symlinked_bookkeeping(kb: &Kb) -> Result<()> {
    let links = symlinked_bookkeeping(kb);
    if links.is_empty() {
        return Ok(());
    }
    let listed: Vec<String> = links
        .iter()
        .map(|(rel, target)| format!("  {rel} -> {}", target.display()))
        .collect();
    Err(Error::Invalid(format!(
        "{}: the KB's own files must not be symbolic links (openkb could write outside the KB \
         through them); nothing was changed. Replace each with a regular file or folder (to \
         keep what a link points to, delete the link and move its target to its place; \
         `openkb doctor` lists the links):\n{}",
        kb.root().display(),
        listed.join("\n")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kb_with_outside() -> (tempfile::TempDir, Kb) {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("kb/raw/inner")).unwrap();
        fs::create_dir_all(dir.path().join("outside")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("outside"), dir.path().join("kb/raw/out"))
            .unwrap();
        std::os::unix::fs::symlink(
            dir.path().join("kb/raw/inner"),
            dir.path().join("kb/raw/in"),
        )
        .unwrap();
        let kb = Kb::at(&dir.path().join("kb")).unwrap();
        (dir, kb)
    }

    #[test]
    fn a_name_too_long_for_the_file_system_is_absent() {
        let (_dir, kb) = kb_with_outside();
        let long = KbPath::new(&kb, &format!("raw/{}.md", "d".repeat(300))).unwrap();
        assert_eq!(long.kind().unwrap(), None);
        assert!(!long.remove_file().unwrap());
        assert!(!long.remove_tree().unwrap());
    }

    #[test]
    fn paths_never_leave_the_kb() {
        let (_dir, kb) = kb_with_outside();
        assert!(KbPath::new(&kb, "raw/a.md").is_ok());
        assert!(KbPath::new(&kb, "raw/missing/deeper/a.md").is_ok());
        assert!(KbPath::new(&kb, "raw/in/a.md").is_ok());
        for bad in [
            "/etc/passwd",
            "raw/../../outside/x",
            "raw/out/x.md",
            "",
            "raw//a",
            "raw/./a",
            "raw/",
            "a\0b",
        ] {
            assert!(KbPath::new(&kb, bad).is_err(), "{bad:?} accepted");
        }
        // The link itself may go (unlinking never follows it).
        assert_eq!(
            KbPath::new(&kb, "raw/out").unwrap().as_path(),
            kb.root().join("raw/out")
        );
        assert!(KbPath::bookkeeping(&kb, "raw/out").is_err());
        assert!(KbPath::bookkeeping(&kb, "raw/in/a.md").is_err());
        assert!(KbPath::bookkeeping(&kb, "raw/inner/a.md").is_ok());
    }

    #[test]
    fn a_document_owns_only_its_files() {
        let d = Some("report");
        assert_eq!(owned_by_document("raw/report.pdf", d), Ok(Owned::Raw));
        assert_eq!(owned_by_document("raw/sub/x.pdf", d), Ok(Owned::Raw));
        assert_eq!(
            owned_by_document("wiki/sources/report.md", d),
            Ok(Owned::Source)
        );
        assert_eq!(
            owned_by_document("wiki/sources/report.json", d),
            Ok(Owned::Source)
        );
        assert_eq!(
            owned_by_document("wiki/sources/images/report", d),
            Ok(Owned::Images)
        );
        assert_eq!(
            owned_by_document("wiki/summaries/report.md", d),
            Ok(Owned::Summary)
        );
        for bad in [
            "raw",
            "raw/",
            "wiki",
            "wiki/index.md",
            "wiki/log.md",
            "wiki/AGENTS.md",
            "wiki/sources/images",
            "wiki/sources/images/other",
            "wiki/sources/other.md",
            "wiki/summaries/other.md",
            "wiki/concepts/x.md",
            ".openkb/state.db",
            ".openkb/config.yaml",
            ".openkb/ingest.lock",
            ".openkb/pageindex.db",
            ".openkb/journal/a.json",
            "raw/.hidden",
            "../x",
        ] {
            assert!(owned_by_document(bad, d).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn doc_names_are_single_components() {
        assert!(check_doc_name("report 2").is_ok());
        for bad in ["", ".", "..", "a/b", "../x", "a\nb", "a\u{1b}b"] {
            assert!(check_doc_name(bad).is_err(), "{bad:?} accepted");
        }
    }
}
