//! Putting staged files in place, and taking them out again on rollback.
//!
//! Publishing is a `rename` from staging (atomic: a reader sees the old file or the new one),
//! falling back to copy-to-temp + fsync + rename when staging and target are on different
//! filesystems (EXDEV). A replaced file keeps its mode. Before the commit that registers a
//! batch, [`make_durable`] flushes the batch's files and folder entries at once.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::fsx;

/// Move `staged` to `target` (creating its folder).
pub fn publish(staged: &Path, target: &Path) -> Result<()> {
    if let Some(dir) = target.parent() {
        std::fs::create_dir_all(dir).with_path("cannot create folder", dir)?;
    }
    if let Ok(meta) = std::fs::metadata(target) {
        let mode = meta.permissions().mode() & 0o7777;
        std::fs::set_permissions(staged, std::fs::Permissions::from_mode(mode))
            .with_path("cannot set permissions of", staged)?;
    }
    match std::fs::rename(staged, target) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => fsx::atomic_copy(staged, target),
        Err(e) => Err(Error::io("cannot move into place", target, e)),
    }
}

/// Keep the current content of `target` at `backup` (a hard link: O(1), and the rename that
/// replaces `target` leaves the old inode to the link). Returns false when there is nothing
/// to keep.
pub fn backup(target: &Path, backup: &Path) -> Result<bool> {
    match std::fs::symlink_metadata(target) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io("cannot read", target, e)),
        Ok(meta) if !meta.is_file() => {
            return Err(Error::Invalid(format!(
                "{}: is not a regular file; move it away and add again",
                target.display()
            )));
        }
        Ok(_) => {}
    }
    match std::fs::hard_link(target, backup) {
        Ok(()) => Ok(true),
        // Filesystems without hard links (or across mounts): a copy does the same job.
        Err(_) => {
            std::fs::copy(target, backup).with_path("cannot back up", target)?;
            Ok(true)
        }
    }
}

/// Make a batch's published files and the folder entries naming them durable, before the
/// commit that registers them. One `syncfs(2)` of the KB's filesystem does it for the whole
/// batch (staged copies are not fsynced one by one: for 10,000 small files that is 20,000
/// fsyncs); where syncfs is unavailable or fails, each file and folder is fsynced.
pub fn make_durable(kb_root: &Path, files: &[PathBuf], dirs: &BTreeSet<PathBuf>) -> Result<()> {
    if syncfs(kb_root) {
        return Ok(());
    }
    for file in files {
        let handle = std::fs::File::open(file).with_path("cannot open", file)?;
        handle.sync_all().with_path("cannot flush", file)?;
    }
    for dir in dirs {
        if dir.exists() {
            fsx::fsync_dir(dir)?;
        }
    }
    Ok(())
}

/// `syncfs(2)` on the filesystem holding `path`; false when it could not be done.
fn syncfs(path: &Path) -> bool {
    use std::os::fd::AsRawFd;
    match std::fs::File::open(path) {
        // SAFETY: syncfs takes any open descriptor and touches no memory of ours.
        Ok(handle) => unsafe { libc::syncfs(handle.as_raw_fd()) == 0 },
        Err(_) => false,
    }
}
