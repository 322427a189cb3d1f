//! Creating `state.db` atomically: a database is built and closed under a temp name beside it,
//! then linked into place, never replacing a file. A process killed at any instant leaves
//! either no `state.db` or a whole one, plus perhaps a temp database that the next command
//! under the KB's exclusive lock removes ([`remove_stale_builds`]).
//!
//! `init` (an empty database) and `migrate` (an initial import) both build this way.

use std::fs;
use std::path::{Path, PathBuf};

use super::{Create, Store};
use crate::error::{Error, IoContext, Result};
use crate::fsx;

/// Prefix of the empty database `init` builds beside `state.db`.
pub const INIT_PREFIX: &str = "state.db.init-";
/// Prefix of the database an initial `migrate` import builds beside `state.db`.
pub const IMPORTING_PREFIX: &str = "state.db.importing-";
/// Prefixes of the temp databases built beside `state.db` (`<prefix><pid>`).
pub const BUILD_PREFIXES: &[&str] = &[INIT_PREFIX, IMPORTING_PREFIX];

/// The temp name a build by this process uses, `prefix` one of [`BUILD_PREFIXES`].
pub fn temp_name(db: &Path, prefix: &str) -> PathBuf {
    db.with_file_name(format!("{prefix}{}", std::process::id()))
}

/// Create an empty, current-schema state database at `db`, which must not exist, under the
/// network-filesystem policy `fs`. The caller holds the KB's exclusive lock.
pub fn create_empty(db: &Path, fs: &crate::netfs::FsPolicy) -> Result<()> {
    refuse_orphan_sidecars(db)?;
    let temp = temp_name(db, INIT_PREFIX);
    remove_database_files(&temp);
    let built = (|| -> Result<()> {
        // Store::open_with applies every rule of a real open (journal mode, network filesystems,
        // migrations); dropping it closes every connection, which checkpoints the WAL away.
        drop(Store::open_with(&temp, Create::IfMissing, fs)?);
        fs::File::open(&temp)
            .and_then(|f| f.sync_all())
            .with_path("cannot sync", &temp)?;
        place_without_replacing(&temp, db)
    })();
    if built.is_err() {
        remove_database_files(&temp);
    }
    built
}

/// Remove `db` and its sidecars. Only for a database that holds nothing
/// ([`super::is_blank`]) or a private temp build.
pub fn remove_database_files(db: &Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let _ = fs::remove_file(sidecar(db, suffix));
    }
}

/// `db` with `suffix` appended (`-wal`, `-shm`, `-journal`).
pub fn sidecar(db: &Path, suffix: &str) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// SQLite would replay a WAL left without its database into a new one as if it belonged to it.
pub fn refuse_orphan_sidecars(db: &Path) -> Result<()> {
    for suffix in ["-wal", "-shm"] {
        let orphan = sidecar(db, suffix);
        if orphan.exists() {
            return Err(Error::Invalid(format!(
                "{} exists without {} beside it (left by a deleted database?); move it out of \
                 {} and run the command again; nothing was changed",
                orphan.display(),
                db.file_name().unwrap_or_default().to_string_lossy(),
                db.parent().unwrap_or(Path::new(".")).display()
            )));
        }
    }
    Ok(())
}

/// Link `temp` to `target`, failing if `target` exists (a plain rename would replace it), then
/// remove the temp name. Falls back to a rename where hard links are not supported.
pub fn place_without_replacing(temp: &Path, target: &Path) -> Result<()> {
    match fs::hard_link(temp, target) {
        Ok(()) => {
            fs::remove_file(temp).with_path("cannot remove", temp)?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Error::Invalid(format!(
                "{} appeared while it was being built (was openkb run without the KB lock?); \
                 nothing was changed, run the command again",
                target.display()
            )));
        }
        Err(_) if !target.exists() => {
            fs::rename(temp, target).with_path("cannot rename", temp)?;
        }
        Err(e) => return Err(Error::io("cannot create", target, e)),
    }
    if let Some(dir) = target.parent() {
        fsx::fsync_dir(dir)?;
    }
    Ok(())
}

/// Temp databases of builds that were interrupted, in `openkb_dir`, with their sizes in
/// bytes (sidecars included). Builds happen only under the KB's exclusive lock, so under that
/// lock every one found is dead.
pub fn stale_builds(openkb_dir: &Path) -> Result<Vec<(PathBuf, u64)>> {
    let mut found = Vec::new();
    for item in fsx::read_dir_if_exists(openkb_dir)? {
        let name = item.file_name();
        let name = name.to_string_lossy();
        let Some(prefix) = BUILD_PREFIXES.iter().find(|p| name.starts_with(**p)) else {
            continue;
        };
        // The database itself; its sidecars are counted with it.
        let rest = &name[prefix.len()..];
        if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let path = item.path();
        let size = ["", "-wal", "-shm", "-journal"]
            .iter()
            .filter_map(|s| fs::symlink_metadata(sidecar(&path, s)).ok())
            .map(|m| m.len())
            .sum();
        found.push((path, size));
    }
    found.sort();
    Ok(found)
}

/// Remove [`stale_builds`]; the caller holds the KB's exclusive lock. Returns how many.
pub fn remove_stale_builds(openkb_dir: &Path) -> Result<usize> {
    let stale = stale_builds(openkb_dir)?;
    for (path, _) in &stale {
        fs::remove_file(path).with_path("cannot remove", path)?;
        for suffix in ["-wal", "-shm", "-journal"] {
            let _ = fs::remove_file(sidecar(path, suffix));
        }
    }
    Ok(stale.len())
}
