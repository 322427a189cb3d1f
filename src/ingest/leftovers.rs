//! What killed openkb processes leave in `.openkb/` besides intents: private staging folders
//! (`staging/rs-*`), their lock files (`staging/rs-*.lock`), and temp databases of a killed
//! `init` or `migrate` (`state.db.init-*`, `state.db.importing-*`).
//!
//! "Dead" is decided by locks, never by age: a staging folder belongs to whoever holds the
//! flock on its `<folder>.lock` (taken before the folder is made, released only by the owner's
//! exit, see `prepare::Staging`), and temp databases are only built under the KB's exclusive
//! lock, so while the sweeper holds that lock none of them has a live owner. A slow `add`
//! preparing for an hour keeps its staging folder; one killed a second ago loses it.
//!
//! [`sweep_leftovers`] runs with recovery (the outermost exclusive lock); `openkb doctor`
//! reports [`find_leftovers`] with their sizes.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use super::prepare::STAGING_PREFIX;
use crate::error::{Error, Result};
use crate::kb::Kb;
use crate::state::build;

/// Something a dead process left.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leftover {
    /// KB-relative POSIX path.
    pub path: String,
    /// Bytes it holds (a folder: every file inside; a database: with its sidecars).
    pub bytes: u64,
}

/// What [`sweep_leftovers`] removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    pub items: usize,
    pub bytes: u64,
}

/// Leftovers of dead processes, without changing anything. Under a shared lock a temp database
/// may belong to a running `init`/`migrate` of this moment, which is why it is reported and
/// only removed under the exclusive lock.
pub fn find_leftovers(kb: &Kb) -> Result<Vec<Leftover>> {
    let staging = match dead_staging(kb) {
        Ok(items) => items,
        // A symlinked staging folder is a finding of its own (doctor names it); nothing
        // behind the link is looked at.
        Err(_)
            if fs::symlink_metadata(kb.openkb_dir().join("staging"))
                .is_ok_and(|m| m.file_type().is_symlink()) =>
        {
            Vec::new()
        }
        Err(e) => return Err(e),
    };
    let mut found: Vec<Leftover> = staging
        .into_iter()
        .map(|item| Leftover {
            path: item.relative,
            bytes: item.bytes,
        })
        .collect();
    for (path, bytes) in build::stale_builds(&kb.openkb_dir())? {
        found.push(Leftover {
            path: relative(kb, &path),
            bytes,
        });
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(found)
}

/// Remove the staging folders and lock files of dead processes and the temp databases of
/// killed builds. The caller holds the KB's exclusive lock (recovery does).
pub fn sweep_leftovers(kb: &Kb) -> Result<Swept> {
    let mut swept = Swept::default();
    for item in dead_staging(kb)? {
        let removed = if item.is_dir {
            fs::remove_dir_all(&item.path)
        } else {
            fs::remove_file(&item.path)
        };
        match removed {
            Ok(()) => {
                swept.items += 1;
                swept.bytes += item.bytes;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("cannot remove", &item.path, e)),
        }
        // The lock file goes after its folder: while it exists and is unlocked, the folder is
        // known to be dead.
        if let Some(lock) = &item.lock {
            let _ = fs::remove_file(lock);
        }
    }
    for (path, bytes) in build::stale_builds(&kb.openkb_dir())? {
        build::remove_database_files(&path);
        swept.items += 1;
        swept.bytes += bytes;
    }
    Ok(swept)
}

struct DeadStaging {
    path: PathBuf,
    relative: String,
    is_dir: bool,
    /// The unlocked lock file of a folder, removed with it.
    lock: Option<PathBuf>,
    bytes: u64,
}

/// `staging/rs-*` folders whose lock nobody holds (or whose lock file is gone), and
/// `staging/rs-*.lock` files nobody holds that have no folder.
fn dead_staging(kb: &Kb) -> Result<Vec<DeadStaging>> {
    // A symlinked staging folder could make the sweep delete folders outside the KB.
    let dir = crate::kbpath::KbPath::bookkeeping(kb, ".openkb/staging")?
        .as_path()
        .to_path_buf();
    let mut dead = Vec::new();
    for entry in crate::fsx::read_dir_if_exists(&dir)? {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with(STAGING_PREFIX) {
            continue;
        }
        // Never followed: a symlink named like a staging folder is removed as a link.
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let path = entry.path();
        let (lock_path, is_dir) = match name.strip_suffix(".lock") {
            Some(folder) if !kind.is_dir() => {
                if dir.join(folder).exists() {
                    // Judged with its folder.
                    continue;
                }
                (path.clone(), false)
            }
            _ if kind.is_dir() => (dir.join(format!("{name}.lock")), true),
            _ => continue,
        };
        if held_by_a_live_process(&lock_path) {
            continue;
        }
        dead.push(DeadStaging {
            relative: relative(kb, &path),
            bytes: if is_dir {
                tree_size(&path)
            } else {
                entry.metadata().map(|m| m.len()).unwrap_or(0)
            },
            lock: (is_dir && lock_path.exists()).then_some(lock_path),
            path,
            is_dir,
        });
    }
    dead.sort_by(|a, b| a.relative.cmp(&b.relative));
    Ok(dead)
}

/// Whether some process holds the flock on `lock_path` (a missing file is held by nobody).
/// Opened read-only: flock needs no write access, and `doctor` must change nothing.
fn held_by_a_live_process(lock_path: &Path) -> bool {
    match File::open(lock_path) {
        Ok(file) => match file.try_lock_shared() {
            Ok(()) => false,
            Err(fs::TryLockError::WouldBlock) => true,
            // Cannot tell: treat as alive, never remove what may be in use.
            Err(fs::TryLockError::Error(_)) => true,
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(_) => true,
    }
}

/// Bytes of the files under `dir`, symlinks not followed; what cannot be read counts 0 (the
/// size is for a report).
fn tree_size(dir: &Path) -> u64 {
    let mut bytes = 0;
    let _ = crate::fsx::walk(dir, "", &mut |rel, entry| {
        if !rel.ends_with('/') {
            bytes += entry.metadata().map(|m| m.len()).unwrap_or(0);
        }
        crate::fsx::WalkStep::Continue
    });
    bytes
}

fn relative(kb: &Kb, path: &Path) -> String {
    path.strip_prefix(kb.root())
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

/// `bytes` for people: `812 B`, `4.0 KiB`, `61.2 MiB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(4096), "4.0 KiB");
        assert_eq!(human_size(64_172_851), "61.2 MiB");
    }
}
