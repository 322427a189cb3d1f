//! Careful filesystem primitives, the layer under [`crate::kbpath`] (which decides *which*
//! paths inside a KB may be touched; this module decides *how*).
//!
//! Each job is written once here, because each is easy to get subtly wrong:
//!
//! - [`atomic_write`] / [`replace_with`] / [`atomic_copy`]: replace a file so that a reader sees
//!   the old content or the new, never a torn mix. A temp file `.<name>.<random>.tmp` beside
//!   the target (`tempfile`, removed on every error), fsync, rename, fsync of the folder. The
//!   temp file is created with mode 0666 so the kernel applies the umask, exactly as for a
//!   freshly created file, and an existing target's mode is copied over: a 0640 config stays
//!   0640 and nothing becomes 0600 by accident (`tempfile`'s own default). A crash leaves at
//!   most the temp file, which `openkb doctor` sweeps.
//! - [`write_new`]: create a complete file unless one exists (never replaces).
//! - [`create_new`]: `O_EXCL` with mode 0666 minus the umask.
//! - [`read_if_exists`], [`remove_file_if_exists`], [`read_dir_if_exists`]: "missing" is an
//!   answer, not an error.
//! - [`walk`]: the one recursive directory walker (never follows symlinks).
//! - [`copy_hashing`]: copy a file and hash the bytes copied, reading it once.
//!
//! Every error names the file it concerns. Reads and creations pass through
//! [`crate::faults`] points, so tests can inject an `EACCES` or `EIO` where a real one would
//! need privileges (or their absence) to provoke.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};

/// Suffix of every temp file openkb creates next to a target; with the leading dot and the
/// `.<name>.<random>` stem it matches the Python tool's temp names, so one sweep finds both
/// tools' leftovers.
pub const TEMP_SUFFIX: &str = ".tmp";

/// Mode of every file openkb creates; the umask takes its part, as for any new file.
const NEW_FILE_MODE: u32 = 0o666;

/// Replace `path` with `contents` atomically and durably.
///
/// A symlink at `path` is followed, so the link stays a link and its target gets the content.
pub fn atomic_write(path: &Path, contents: &[u8]) -> Result<()> {
    let target = resolve_symlink(path)?;
    replace_with(&target, |file, temp_path| {
        file.write_all(contents)
            .with_path("cannot write", temp_path)
    })
}

/// Replace `target` (not following a symlink at it: a link there is replaced) with what
/// `fill` writes into the temp file (its path given for messages), atomically and durably.
/// The target's mode is kept; a new file gets 0666 minus the umask. The folder is created
/// when missing.
pub fn replace_with(
    target: &Path,
    fill: impl FnOnce(&mut File, &Path) -> Result<()>,
) -> Result<()> {
    let dir = parent_dir(target);
    fs::create_dir_all(&dir).with_path("cannot create folder", &dir)?;
    let existing_mode = match fs::metadata(target) {
        Ok(meta) => Some(meta.permissions().mode() & 0o7777),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io("cannot read", target, e)),
    };
    let mut temp = temp_beside(target)?;
    let temp_path = temp.path().to_path_buf();
    if let Some(mode) = existing_mode {
        temp.as_file()
            .set_permissions(fs::Permissions::from_mode(mode))
            .with_path("cannot set permissions of", &temp_path)?;
    }
    fill(temp.as_file_mut(), &temp_path)?;
    // Write errors on some filesystems surface only at fsync, so this must precede rename.
    temp.as_file()
        .sync_all()
        .with_path("cannot flush", &temp_path)?;
    // On failure the temp file comes back inside the error, and dropping it removes it.
    temp.persist(target)
        .map_err(|e| Error::io("cannot replace", target, e.error))?;
    fsync_dir(&dir)
}

/// Copy `from` over `target` atomically and durably (see [`replace_with`]).
pub fn atomic_copy(from: &Path, target: &Path) -> Result<()> {
    replace_with(target, |temp, temp_path| {
        let mut source = open(from)?;
        std::io::copy(&mut source, temp)
            .map(drop)
            .with_path("cannot write", temp_path)
    })
}

/// Create `path` with `contents`, complete and durable, unless it exists: then nothing is
/// written and the answer is `false`. The content goes to a temp file first and is moved into
/// place without replacing (`persist_noclobber`), so a reader never sees a half-written file
/// and an existing one is never replaced.
pub fn write_new(path: &Path, contents: &[u8]) -> Result<bool> {
    let dir = parent_dir(path);
    fs::create_dir_all(&dir).with_path("cannot create folder", &dir)?;
    let mut temp = temp_beside(path)?;
    let temp_path = temp.path().to_path_buf();
    temp.write_all(contents)
        .with_path("cannot write", &temp_path)?;
    temp.as_file()
        .sync_all()
        .with_path("cannot flush", &temp_path)?;
    match temp.persist_noclobber(path) {
        Ok(_) => {
            fsync_dir(&dir)?;
            Ok(true)
        }
        Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(Error::io("cannot create", path, e.error)),
    }
}

/// Create a new file at `path` for writing: `O_EXCL` (an existing file or symlink there is an
/// `AlreadyExists` error), mode 0666 minus the umask.
pub fn create_new(path: &Path) -> std::io::Result<File> {
    crate::faults::io("create", path)?;
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(NEW_FILE_MODE)
        .open(path)
}

/// Open `path` for reading.
pub fn open(path: &Path) -> Result<File> {
    crate::faults::io("read", path).with_path("cannot open", path)?;
    File::open(path).with_path("cannot open", path)
}

/// The whole content of `path`.
pub fn read(path: &Path) -> Result<Vec<u8>> {
    crate::faults::io("read", path).with_path("cannot read", path)?;
    fs::read(path).with_path("cannot read", path)
}

/// The whole content of `path`, or `None` when there is no file there.
pub fn read_if_exists(path: &Path) -> Result<Option<Vec<u8>>> {
    crate::faults::io("read", path).with_path("cannot read", path)?;
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("cannot read", path, e)),
    }
}

/// Remove the file (or symlink) at `path`; `false` when there was none.
pub fn remove_file_if_exists(path: &Path) -> Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io("cannot remove", path, e)),
    }
}

/// The entries of `dir`, in the order the filesystem gives them; a missing folder is empty.
pub fn read_dir_if_exists(dir: &Path) -> Result<Vec<fs::DirEntry>> {
    crate::faults::io("read-dir", dir).with_path("cannot read folder", dir)?;
    match fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|entry| entry.with_path("cannot read folder", dir))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::io("cannot read folder", dir, e)),
    }
}

/// What a [`walk`] visitor wants next.
pub enum WalkStep {
    Continue,
    /// Do not descend into this folder (ignored for files).
    Skip,
}

/// Walk `root/rel` recursively without following symlinks, calling `visit` with each entry's
/// POSIX path relative to `root`: files and symlinks as they are, folders with a trailing `/`
/// (before descending, so the visitor can skip them). A missing folder is empty.
pub fn walk(
    root: &Path,
    rel: &str,
    visit: &mut dyn FnMut(&str, &fs::DirEntry) -> WalkStep,
) -> Result<()> {
    let dir = root.join(rel);
    for entry in read_dir_if_exists(&dir)? {
        let name = entry.file_name().to_string_lossy().into_owned();
        let child = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let kind = entry.file_type().with_path("cannot read", entry.path())?;
        if kind.is_dir() {
            if let WalkStep::Continue = visit(&format!("{child}/"), &entry) {
                walk(root, &child, visit)?;
            }
        } else {
            visit(&child, &entry);
        }
    }
    Ok(())
}

/// Copy `from` to a new file `to` ([`create_new`]) and return the SHA-256 of the bytes
/// copied. Not fsynced: the caller decides when (a batch syncs its files once).
pub fn copy_hashing(from: &Path, to: &Path) -> Result<String> {
    let mut src = open(from)?;
    let mut dst = create_new(to).with_path("cannot create", to)?;
    let mut hasher = crate::hash::Hasher::default();
    let mut buf = vec![0u8; crate::hash::CHUNK];
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io("cannot read", from, e)),
        };
        hasher.update(&buf[..n]);
        dst.write_all(&buf[..n]).with_path("cannot write", to)?;
    }
    Ok(hasher.finish_hex())
}

/// Append `text` to `path` with one `write` on an `O_APPEND` descriptor (creating the file
/// with `header` first when it is missing). Used for `wiki/log.md`, whose source of truth is
/// the log table: a crash can lose a line, which `openkb doctor --fix` rebuilds, but
/// concurrent appenders never interleave within a line.
pub fn append(path: &Path, header: &str, text: &str) -> Result<()> {
    let mut options = OpenOptions::new();
    // Never through a symlink: log.md is the KB's own file, and a link could lead anywhere.
    options
        .append(true)
        .mode(0o666)
        .custom_flags(libc::O_NOFOLLOW);
    let mut file = match options.open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // A missing file gets the header; create_new keeps two racing appenders from both
            // writing it.
            match OpenOptions::new()
                .append(true)
                .create_new(true)
                .mode(0o666)
                .custom_flags(libc::O_NOFOLLOW)
                .open(path)
            {
                Ok(mut f) => {
                    f.write_all(header.as_bytes())
                        .with_path("cannot write", path)?;
                    f
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    options.open(path).with_path("cannot open", path)?
                }
                Err(e) => return Err(crate::Error::io("cannot create", path, e)),
            }
        }
        Err(e) => return Err(crate::Error::io("cannot open", path, e)),
    };
    file.write_all(text.as_bytes())
        .with_path("cannot append to", path)
}

/// fsync a directory so that a rename or unlink inside it survives a crash.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    let handle = File::open(dir).with_path("cannot open folder", dir)?;
    handle.sync_all().with_path("cannot flush folder", dir)
}

/// An empty temp file `.<name>.<random>.tmp` beside `target`, mode 0666 minus the umask,
/// removed when dropped.
fn temp_beside(target: &Path) -> Result<tempfile::NamedTempFile> {
    let dir = parent_dir(target);
    let base = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".to_owned());
    let temp = tempfile::Builder::new()
        .prefix(&format!(".{base}."))
        .suffix(TEMP_SUFFIX)
        .rand_bytes(12)
        .permissions(fs::Permissions::from_mode(NEW_FILE_MODE))
        .tempfile_in(&dir);
    temp.with_path("cannot create a temp file in", &dir)
}

/// Age past which a temp file cannot belong to a live writer (every write that makes one
/// finishes in far less), so sweeping it is safe.
pub const ABANDONED_TEMP_AGE: std::time::Duration = std::time::Duration::from_secs(5 * 60);

/// True when `meta` says the file was last modified at least `age` before `now`.
pub fn modified_at_least(
    meta: std::io::Result<std::fs::Metadata>,
    now: std::time::SystemTime,
    age: std::time::Duration,
) -> bool {
    meta.and_then(|m| m.modified())
        .ok()
        .and_then(|t| now.duration_since(t).ok())
        .is_some_and(|elapsed| elapsed >= age)
}

/// True for names openkb or the Python tool use for temp files (`.<name>.<random>.tmp`).
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(TEMP_SUFFIX)
}

fn resolve_symlink(path: &Path) -> Result<PathBuf> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            fs::canonicalize(path).with_path("cannot follow symlink", path)
        }
        _ => Ok(path.to_path_buf()),
    }
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// True when `dir` lies on a filesystem mounted read-only (`statvfs`'s `ST_RDONLY`). A
/// folder that cannot be inspected counts as writable: the write itself will then say why.
pub fn on_read_only_fs(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c_path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: c_path is a valid NUL-terminated string and stat a writable statvfs buffer.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), stat.as_mut_ptr()) };
    if rc != 0 {
        return false;
    }
    // SAFETY: statvfs returned 0, so it filled the buffer.
    let stat = unsafe { stat.assume_init() };
    stat.f_flag & libc::ST_RDONLY != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_are_recognised() {
        assert!(is_temp_name(".config.yaml.0123abcd.tmp"));
        assert!(!is_temp_name("config.yaml"));
        assert!(!is_temp_name("notes.tmp"));
    }

    #[test]
    fn temp_files_are_named_for_the_sweep_and_distinct() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("config.yaml");
        let (a, b) = (temp_beside(&target).unwrap(), temp_beside(&target).unwrap());
        assert_ne!(a.path(), b.path());
        for temp in [&a, &b] {
            let name = temp.path().file_name().unwrap().to_str().unwrap();
            assert!(
                name.starts_with(".config.yaml.") && is_temp_name(name),
                "{name}"
            );
        }
    }
}
