//! Creating `state.db` atomically: a database is built and closed under a temp name beside it,
//! then linked into place, never replacing a file. A process killed at any instant leaves
//! either no `state.db` or a whole one, plus perhaps a temp database that the next command
//! under the KB's exclusive lock removes ([`remove_stale_builds`]).
//!
//! `init` (an empty database) and `migrate` (an initial import) both build this way.

use std::fs;
use std::path::{Path, PathBuf};

use super::sidecar_path;
use crate::error::{Error, IoContext, Result};
use crate::fsx;
use crate::state::{Create, Store, WriteTx};

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

/// Create `db`, which must not exist, holding what `body` writes in one transaction: the
/// initial import of `migrate`. The database is built privately under a temp name
/// ([`super::build_database`]: no journal, one sync) and linked into place only when it is
/// complete, checkpointed and closed. The caller holds the KB's exclusive lock.
pub fn create_filled<T>(
    db: &Path,
    expected_rows: usize,
    body: impl FnOnce(&WriteTx<'_>) -> Result<T>,
) -> Result<T> {
    refuse_orphan_sidecars(db)?;
    let temp = temp_name(db, IMPORTING_PREFIX);
    // Created by hand first so that a read-only .openkb/ is reported as an I/O error naming the
    // file, not as SQLite's "unable to open database file".
    fsx::create_new(&temp).with_path("cannot create", &temp)?;
    let built = (|| -> Result<T> {
        let value = super::build_database(&temp, expected_rows, body)?;
        let wal = sidecar_path(&temp, "-wal");
        if fs::metadata(&wal).is_ok_and(|m| m.len() > 0) {
            return Err(Error::Invalid(format!(
                "{}: the import's write-ahead log was not fully checkpointed; nothing was \
                 changed, run `openkb migrate` again",
                wal.display()
            )));
        }
        place_without_replacing(&temp, db)?;
        Ok(value)
    })();
    if built.is_err() {
        remove_database_files(&temp);
    }
    built
}

/// `base`, or the first of `base-1`, `base-2`, ... that names no file beside `db`, neither as
/// a database nor as its `-wal`: where a damaged database can be moved aside.
pub fn free_name_beside(db: &Path, base: &str) -> String {
    let taken = |name: &str| {
        let path = db.with_file_name(name);
        path.exists() || sidecar_path(&path, "-wal").exists()
    };
    let mut name = base.to_owned();
    let mut n = 1;
    while taken(&name) {
        name = format!("{base}-{n}");
        n += 1;
    }
    name
}

/// Remove `db` and its sidecars. Only for a database that holds nothing
/// ([`super::is_blank`]) or a private temp build.
pub fn remove_database_files(db: &Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let _ = fs::remove_file(sidecar_path(db, suffix));
    }
}

/// Rename `state.db` and its `-wal`, `-shm`, `-journal` to `<aside>` + the same suffixes;
/// returns the new names of the files that existed.
pub fn move_database_aside(db: &Path, aside: &Path) -> Result<Vec<String>> {
    let dir = db.parent().unwrap_or(Path::new("."));
    let mut moved = Vec::new();
    // Companions first: a stale -wal or -journal must never be left beside a different main
    // file, because SQLite would replay it into the new database. A crash after this loop
    // leaves the damaged main file in place, still reported, with no companions.
    for suffix in ["-wal", "-shm", "-journal", ""] {
        let from = sidecar_path(db, suffix);
        let to = sidecar_path(aside, suffix);
        match fs::rename(&from, &to) {
            Ok(()) => moved.push(
                to.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("cannot move aside", &from, e)),
        }
    }
    moved.sort();
    fsx::fsync_dir(dir)?;
    Ok(moved)
}

/// SQLite would replay a WAL left without its database into a new one as if it belonged to it.
pub fn refuse_orphan_sidecars(db: &Path) -> Result<()> {
    for suffix in ["-wal", "-shm"] {
        let orphan = sidecar_path(db, suffix);
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
            .filter_map(|s| fs::symlink_metadata(sidecar_path(&path, s)).ok())
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
            let _ = fs::remove_file(sidecar_path(path, suffix));
        }
    }
    Ok(stale.len())
}
