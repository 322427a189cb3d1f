//! The lock-free half of an add: find the files, hash them, skip what the registry already
//! holds, and copy what is new into a private staging folder (`.openkb/staging/rs-<pid>-<n>/`),
//! fsynced, ready to be renamed into place under the lock.
//!
//! A staging folder is owned through an flock on `<folder>.lock`, taken before the folder is
//! made and held for as long as the process lives; recovery sweeps only folders nobody holds,
//! so a long prepare running beside another command's recovery is never pulled from under its
//! feet.

use std::collections::HashSet;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::fsx;
use crate::fsx::copy_hashing;
use crate::hash::sha256_file;
use crate::kb::Kb;
use crate::names;
use crate::state::Store;

/// Prefix of the staging folders this tool creates (the Python tool's are `add-*`,
/// `rollback-*` and belong to its own journals).
pub const STAGING_PREFIX: &str = "rs-";

/// A private staging folder, removed when dropped.
///
/// Ownership is an flock on `<folder>.lock` beside it, taken BEFORE the folder exists: a
/// sweeper that finds the folder can always tell a live owner (lock held) from a dead one.
#[derive(Debug)]
pub struct Staging {
    dir: PathBuf,
    lock_path: PathBuf,
    _lock: File,
    next: std::cell::Cell<u64>,
}

impl Staging {
    pub fn create(kb: &Kb) -> Result<Staging> {
        // Never through a symlink: the staging folder's contents are swept as openkb's own.
        let parent = crate::kbpath::KbPath::bookkeeping(kb, ".openkb/staging")?
            .as_path()
            .to_path_buf();
        std::fs::create_dir_all(&parent).with_path("cannot create folder", &parent)?;
        for attempt in 0u32.. {
            let name = format!(
                "{STAGING_PREFIX}{}-{}-{attempt}",
                std::process::id(),
                chrono::Utc::now().timestamp_micros()
            );
            let lock_path = parent.join(format!("{name}.lock"));
            let lock = match fsx::create_new(&lock_path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 100 => {
                    continue;
                }
                Err(e) => return Err(Error::io("cannot create", &lock_path, e)),
            };
            lock.lock().with_path("cannot lock", &lock_path)?;
            // A sweeper that found the lock file before it was locked took it for a dead
            // process's and may have removed it: then this lock guards nothing; start over.
            if !still_linked(&lock, &lock_path) {
                continue;
            }
            let dir = parent.join(&name);
            if let Err(e) = std::fs::create_dir(&dir) {
                let _ = std::fs::remove_file(&lock_path);
                return Err(Error::io("cannot create folder", &dir, e));
            }
            return Ok(Staging {
                dir,
                lock_path,
                _lock: lock,
                next: std::cell::Cell::new(0),
            });
        }
        unreachable!("the loop returns or fails within 100 attempts")
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A fresh path inside the staging folder.
    pub fn fresh(&self, what: &str) -> PathBuf {
        let n = self.next.get();
        self.next.set(n + 1);
        self.dir.join(format!("{n}.{what}"))
    }

    /// [`Staging::fresh`], with the path as an intent records it: relative to the KB (staging
    /// folders live in `.openkb/staging/`, so a backup recorded this way survives a crash).
    pub fn fresh_in_kb(&self, kb: &Kb, what: &str) -> Result<(PathBuf, String)> {
        let path = self.fresh(what);
        let rel = path
            .strip_prefix(kb.root())
            .map_err(|_| {
                Error::Invalid(format!(
                    "{}: the staging folder is not inside the KB",
                    path.display()
                ))
            })?
            .to_string_lossy()
            .into_owned();
        Ok((path, rel))
    }
}

/// Whether `path` still names the file open as `file`.
fn still_linked(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(open), Ok(named)) => open.dev() == named.dev() && open.ino() == named.ino(),
        _ => false,
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_file(&self.lock_path);
    }
}

/// A file ready to publish.
#[derive(Debug)]
pub struct Prepared {
    /// The path as the user gave it (for messages).
    pub given: PathBuf,
    /// Fully resolved location.
    pub resolved: PathBuf,
    /// File name, byte-exact (an NFD name stays NFD), as the registry's `name`.
    pub name: String,
    pub hash: String,
    /// Registry path key (KB-relative or absolute POSIX path).
    pub path_key: String,
    /// The file lies inside the KB's `raw/` already (dropped there, or watched).
    pub in_raw: bool,
    /// Staged copy for `raw/` (files from outside `raw/`).
    pub staged_raw: Option<PathBuf>,
    /// Staged `wiki/sources/<doc_name>.md` (text formats).
    pub staged_source: Option<PathBuf>,
}

/// What became of one input.
#[derive(Debug)]
pub enum Prep {
    Ready(Prepared),
    /// Its content is registered already.
    Known(PathBuf),
    Skipped(PathBuf, String),
    Failed(PathBuf, Error),
}

/// Expand `inputs` into the files to add: folders recursively (sorted, dotfiles, temp files,
/// the KB's own `.openkb/` and `wiki/` left out, symlinked folders not followed). Files
/// of unsupported types are reported as skipped; missing paths as failed.
pub fn collect(kb: &Kb, inputs: &[PathBuf]) -> (Vec<PathBuf>, Vec<Prep>) {
    let mut files = Vec::new();
    let mut other = Vec::new();
    let mut seen = HashSet::new();
    let skip_dirs = [kb.openkb_dir(), kb.wiki_dir()];
    let own = KbOwnFiles::new(kb);
    for input in inputs {
        if own.contains(input) {
            other.push(Prep::Skipped(input.clone(), KB_OWN.into()));
            continue;
        }
        match std::fs::metadata(input) {
            Err(e) => other.push(Prep::Failed(
                input.clone(),
                Error::io("cannot read", input, e),
            )),
            Ok(meta) if meta.is_dir() => {
                let mut stack = vec![input.clone()];
                while let Some(dir) = stack.pop() {
                    let mut entries: Vec<_> = match std::fs::read_dir(&dir) {
                        Ok(rd) => rd.filter_map(|e| e.ok()).collect(),
                        Err(e) => {
                            other.push(Prep::Failed(
                                dir.clone(),
                                Error::io("cannot read folder", &dir, e),
                            ));
                            continue;
                        }
                    };
                    entries.sort_by_key(|e| e.file_name());
                    let mut subdirs = Vec::new();
                    for entry in entries {
                        let name = entry.file_name();
                        let name = name.to_string_lossy();
                        if name.starts_with('.') || fsx::is_temp_name(&name) {
                            continue;
                        }
                        let path = entry.path();
                        let Ok(kind) = entry.file_type() else {
                            continue;
                        };
                        if kind.is_dir() {
                            let real = path.canonicalize().unwrap_or_else(|_| path.clone());
                            if !skip_dirs.contains(&real) {
                                subdirs.push(path);
                            }
                        } else if kind.is_file() || (kind.is_symlink() && path.is_file()) {
                            if own.contains(&path) {
                                other.push(Prep::Skipped(path, KB_OWN.into()));
                                continue;
                            }
                            push_file(&mut files, &mut other, &mut seen, path);
                        }
                    }
                    // Popped from the end: reverse keeps the walk in name order.
                    stack.extend(subdirs.into_iter().rev());
                }
            }
            Ok(meta) if meta.is_file() => {
                push_file(&mut files, &mut other, &mut seen, input.clone())
            }
            // Opening a FIFO blocks until a writer comes (forever, under the KB's add), and a
            // device or socket is no document.
            Ok(_) => other.push(Prep::Skipped(
                input.clone(),
                "not a regular file (a pipe, socket or device)".into(),
            )),
        }
    }
    (files, other)
}

const KB_OWN: &str = "a file of the knowledge base itself (wiki/, .openkb/, index.md, log.md \
                      and AGENTS.md are never documents)";

/// The KB's own files: anything under `wiki/` or `.openkb/` and the KB's top-level
/// `index.md`, `log.md`, `AGENTS.md`, however the path is spelled (relative, through a
/// symlink). Registering them would make the wiki a document of itself.
pub struct KbOwnFiles {
    root: PathBuf,
    /// `wiki/` and `.openkb/`, as named and where they really are (either may be a symlink).
    dirs: Vec<PathBuf>,
}

impl KbOwnFiles {
    pub fn new(kb: &Kb) -> Self {
        let mut dirs = vec![kb.wiki_dir(), kb.openkb_dir()];
        let real: Vec<PathBuf> = dirs.iter().filter_map(|d| d.canonicalize().ok()).collect();
        dirs.extend(real);
        KbOwnFiles {
            root: kb.root().to_path_buf(),
            dirs,
        }
    }

    pub fn contains(&self, path: &Path) -> bool {
        let Ok(real) = path.canonicalize() else {
            return false;
        };
        if self.dirs.iter().any(|d| real.starts_with(d)) {
            return true;
        }
        real.parent() == Some(self.root.as_path())
            && real
                .file_name()
                .is_some_and(|n| ["index.md", "log.md", "AGENTS.md"].iter().any(|k| n == *k))
    }
}

fn push_file(
    files: &mut Vec<PathBuf>,
    other: &mut Vec<Prep>,
    seen: &mut HashSet<PathBuf>,
    path: PathBuf,
) {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !super::is_supported(&name) {
        let suffix = names::suffix(&name);
        let why = if suffix.is_empty() {
            "unsupported file type (no extension)".to_owned()
        } else {
            format!("unsupported file type ({suffix})")
        };
        other.push(Prep::Skipped(path, why));
        return;
    }
    let key = path.canonicalize().unwrap_or_else(|_| path.clone());
    if seen.insert(key) {
        files.push(path);
    }
}

/// Hash `path`, skip it when registered (or already seen in this run), else stage its copies.
pub fn prepare(
    kb: &Kb,
    store: &Store,
    staging: &Staging,
    path: &Path,
    run_hashes: &mut HashSet<String>,
) -> Prep {
    match prepare_inner(kb, store, staging, path, run_hashes) {
        Ok(prep) => prep,
        Err(e) => Prep::Failed(path.to_path_buf(), e),
    }
}

fn prepare_inner(
    kb: &Kb,
    store: &Store,
    staging: &Staging,
    path: &Path,
    run_hashes: &mut HashSet<String>,
) -> Result<Prep> {
    let (name, resolved) = match admit(kb, path)? {
        Ok(admitted) => admitted,
        Err(refused) => return Ok(refused),
    };
    let Some(content) = Content::read(&resolved)? else {
        // Replaced by a pipe or device since it was listed: reading it could block forever.
        return Ok(Prep::Skipped(
            path.to_path_buf(),
            "not a regular file (a pipe, socket or device)".into(),
        ));
    };
    if store.is_known(&content.hash)? {
        return Ok(Prep::Known(path.to_path_buf()));
    }
    if !run_hashes.insert(content.hash.clone()) {
        return Ok(Prep::Skipped(
            path.to_path_buf(),
            "same content as another file of this add".into(),
        ));
    }
    let path_key = super::path_key(kb, &resolved)?;
    let in_raw = resolved.starts_with(kb.raw_dir());
    let Some(staged) = stage(staging, &resolved, &name, in_raw, &content)? else {
        return Ok(Prep::Failed(
            path.to_path_buf(),
            Error::Invalid(format!(
                "{}: the file changed while it was being read; add it again",
                path.display()
            )),
        ));
    };
    Ok(Prep::Ready(Prepared {
        given: path.to_path_buf(),
        resolved,
        name,
        hash: content.hash,
        path_key,
        in_raw,
        staged_raw: staged.raw,
        staged_source: staged.source,
    }))
}

/// The file's name and resolved path, or why it is refused: a name that is not UTF-8, or a
/// path in raw/ that a symlink leads out of raw/.
fn admit(kb: &Kb, path: &Path) -> Result<std::result::Result<(String, PathBuf), Prep>> {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return Ok(Err(Prep::Failed(
            path.to_path_buf(),
            Error::Invalid(format!(
                "{}: the file name is not valid UTF-8; rename the file",
                path.display()
            )),
        )));
    };
    let resolved = path.canonicalize().with_path("cannot resolve", path)?;
    if !resolved.starts_with(kb.raw_dir()) && named_in_raw(kb, path) {
        return Ok(Err(Prep::Failed(
            path.to_path_buf(),
            Error::Invalid(format!(
                "{}: is a symbolic link (or lies under one) leading out of raw/, to {}; openkb \
                 registers only files that really are in raw/. Copy the file into raw/, or \
                 `openkb add` it by its real path",
                path.display(),
                resolved.display()
            )),
        )));
    }
    Ok(Ok((name.to_owned(), resolved)))
}

/// A file's hash, and its bytes when it is small: a small file is read once, hashed and
/// staged from the same bytes.
struct Content {
    hash: String,
    bytes: Option<Vec<u8>>,
}

impl Content {
    /// `None` when `resolved` is not a regular file.
    fn read(resolved: &Path) -> Result<Option<Content>> {
        let meta = std::fs::metadata(resolved).with_path("cannot read", resolved)?;
        if !meta.is_file() {
            return Ok(None);
        }
        let content = if meta.len() <= SMALL_FILE {
            let bytes = crate::fsx::read(resolved)?;
            Content {
                hash: crate::hash::sha256_hex(&bytes),
                bytes: Some(bytes),
            }
        } else {
            Content {
                hash: sha256_file(resolved)?,
                bytes: None,
            }
        };
        Ok(Some(content))
    }
}

/// The copies a file is published from.
struct Staged {
    /// The raw copy (none for a file already in raw/, registered where it is).
    raw: Option<PathBuf>,
    /// The wiki source of a text format.
    source: Option<PathBuf>,
}

/// Copy the file into staging: its wiki source (text formats) and its raw copy (unless it is
/// in raw/ already). A large file is hashed again as it is copied; `None` when it changed
/// since it was hashed.
fn stage(
    staging: &Staging,
    resolved: &Path,
    name: &str,
    in_raw: bool,
    content: &Content,
) -> Result<Option<Staged>> {
    let mut staged = Staged {
        raw: None,
        source: None,
    };
    if super::is_text(name) {
        let source = staging.fresh("source");
        match &content.bytes {
            Some(b) => write_new(&source, b)?,
            None => {
                if copy_hashing(resolved, &source)? != content.hash {
                    return Ok(None);
                }
            }
        }
        staged.source = Some(source);
    }
    if !in_raw {
        let raw = staging.fresh("raw");
        match (&content.bytes, &staged.source) {
            (Some(b), _) => write_new(&raw, b)?,
            (None, Some(source)) => {
                copy_hashing(source, &raw)?;
            }
            (None, None) => {
                if copy_hashing(resolved, &raw)? != content.hash {
                    return Ok(None);
                }
            }
        }
        staged.raw = Some(raw);
    }
    Ok(Some(staged))
}

/// Does `path`, as written (made absolute, `.` and `..` taken lexically, links not followed),
/// name something in the KB's raw/? Such a path that resolves elsewhere goes through a link.
fn named_in_raw(kb: &Kb, path: &Path) -> bool {
    use std::path::Component;
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        match std::env::current_dir() {
            Ok(cwd) => cwd.join(path),
            Err(_) => return false,
        }
    };
    let mut lexical = PathBuf::new();
    for part in absolute.components() {
        match part {
            Component::ParentDir => {
                lexical.pop();
            }
            Component::CurDir => {}
            other => lexical.push(other),
        }
    }
    lexical.starts_with(kb.raw_dir())
}

/// Files up to this size are read into memory once instead of being streamed twice.
const SMALL_FILE: u64 = 4 << 20;

/// Write `bytes` to a new file `path` (mode 0666 minus umask); fsynced with its batch.
fn write_new(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = fsx::create_new(path).with_path("cannot create", path)?;
    file.write_all(bytes).with_path("cannot write", path)
}
