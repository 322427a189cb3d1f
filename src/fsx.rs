//! Careful filesystem writes.
//!
//! `atomic_write` is the only way openkb replaces a file it does not own exclusively (config,
//! global config, wiki pages, `index.md`): a reader sees the old content or the new, never a
//! torn mix, and a crash leaves at most a `.<name>.<random>.tmp` file that `openkb doctor`
//! sweeps. The temp file is created with mode 0666 so the kernel applies the umask, exactly as
//! for a freshly created file, and an existing file's mode is copied over: a 0640 config stays
//! 0640 and nothing becomes 0600 by accident (the default of most temp-file helpers).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};

/// Prefix and suffix of every temp file openkb creates next to a target, as the Python tool
/// names them (`.<name>.<random>.tmp`), so one sweep finds both tools' leftovers.
pub const TEMP_SUFFIX: &str = ".tmp";

/// Replace `path` with `contents` atomically and durably.
///
/// A symlink at `path` is followed, so the link stays a link and its target gets the content.
pub fn atomic_write(path: &Path, contents: &[u8]) -> Result<()> {
    let target = resolve_symlink(path)?;
    let dir = parent_dir(&target);
    fs::create_dir_all(&dir).with_path("cannot create folder", &dir)?;
    let existing_mode = match fs::metadata(&target) {
        Ok(meta) => Some(meta.permissions().mode() & 0o7777),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(crate::Error::io("cannot read", &target, e)),
    };

    let (mut file, temp_path) = create_temp_beside(&target)?;
    let written = (|| -> Result<()> {
        if let Some(mode) = existing_mode {
            file.set_permissions(fs::Permissions::from_mode(mode))
                .with_path("cannot set permissions of", &temp_path)?;
        }
        file.write_all(contents)
            .with_path("cannot write", &temp_path)?;
        // Write errors on some filesystems surface only at fsync, so this must precede rename.
        file.sync_all().with_path("cannot flush", &temp_path)?;
        fs::rename(&temp_path, &target).with_path("cannot replace", &target)?;
        Ok(())
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temp_path);
        return written;
    }
    fsync_dir(&dir)
}

/// Create `path` with `contents`, complete and durable, unless it exists: then nothing is
/// written and the answer is `false`. The content goes to a temp file first and is hard-linked
/// into place, so a reader never sees a half-written file and an existing one is never
/// replaced (a rename would replace it).
pub fn write_new(path: &Path, contents: &[u8]) -> Result<bool> {
    let dir = parent_dir(path);
    fs::create_dir_all(&dir).with_path("cannot create folder", &dir)?;
    let (mut file, temp_path) = create_temp_beside(path)?;
    let written = (|| -> Result<bool> {
        file.write_all(contents)
            .with_path("cannot write", &temp_path)?;
        file.sync_all().with_path("cannot flush", &temp_path)?;
        match fs::hard_link(&temp_path, path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(crate::Error::io("cannot create", path, e)),
        }
    })();
    let _ = fs::remove_file(&temp_path);
    if written? {
        fsync_dir(&dir)?;
        return Ok(true);
    }
    Ok(false)
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

/// Create an empty file with a unique `.<name>.<random>.tmp` name beside `target`.
pub fn create_temp_beside(target: &Path) -> Result<(File, PathBuf)> {
    let dir = parent_dir(target);
    let base = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".to_owned());
    let mut attempt = 0u32;
    loop {
        let temp_path = dir.join(format!(".{base}.{}{TEMP_SUFFIX}", random_suffix()));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o666)
            .open(&temp_path)
        {
            Ok(file) => return Ok((file, temp_path)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 16 => {
                attempt += 1;
            }
            Err(e) => return Err(crate::Error::io("cannot create", &temp_path, e)),
        }
    }
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

fn random_suffix() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    // RandomState is seeded per process from the OS; mixing in a counter and the pid keeps
    // names distinct across threads and processes without a dependency on a RNG crate.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    format!("{:012x}", hasher.finish() & 0xffff_ffff_ffff)
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
    fn random_suffixes_differ() {
        assert_ne!(random_suffix(), random_suffix());
    }
}
