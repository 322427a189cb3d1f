//! Where the KB lives: network filesystems and sync-client folders.

use crate::error::Result;
use crate::kb::Kb;
use crate::netfs;

use super::{DbState, Finding};

/// `team`: the KB's state and lock are in PostgreSQL (see `lock_team.rs`).
pub fn check(kb: &Kb, db: &DbState, team: bool) -> Result<Vec<Finding>> {
    let mut findings = Vec::new();
    let openkb_dir = kb.openkb_dir();
    let policy = &kb.settings().fs;
    let Some(fs) = netfs::detect_any(&[kb.root(), &openkb_dir], policy)? else {
        return Ok(findings);
    };
    let how = if fs.overridden {
        format!(" (from {}, a testing override)", netfs::FS_TYPE_ENV)
    } else {
        String::new()
    };
    if !fs.network {
        findings.push(Finding::ok(
            "filesystem",
            format!("filesystem {}{how}: local", fs.name),
        ));
    } else if team {
        findings.push(Finding::ok(
            "filesystem",
            format!(
                "{} is on a network filesystem ({}){how}: fine for a team KB. The refusal of \
                 network filesystems protects state.db and the flock, and a team KB uses \
                 neither there: its state is in PostgreSQL and its lock is the server's \
                 advisory lock. raw/ and wiki/ must be on a filesystem every member shares",
                fs.path.display(),
                fs.name
            ),
        ));
    } else if db.pinned_rollback() || policy.single_host {
        findings.push(Finding::warning(
            "filesystem",
            format!(
                "{} is on a network filesystem ({}){how}; openkb runs in single-host mode \
                 (rollback journal, synchronous=FULL): never use this KB from two machines at \
                 once",
                fs.path.display(),
                fs.name
            ),
        ));
    } else {
        findings.push(Finding::problem(
            "filesystem",
            format!(
                "{} is on a network filesystem ({}){how}: SQLite's WAL mode and file locks are \
                 not safe there, so openkb refuses to write; move the KB to a local disk, or, if \
                 only one machine at a time ever uses it, set {}={}",
                fs.path.display(),
                fs.name,
                netfs::NETWORK_FS_ENV,
                netfs::SINGLE_HOST
            ),
        ));
    }
    for marker in netfs::sync_markers(kb.root()) {
        let message = if team {
            format!(
                "the KB is inside a sync-client folder ({marker}): a sync client delivers \
                 files late and without locks, so one member may see wiki pages older or newer \
                 than the registry in PostgreSQL; share raw/ and wiki/ through a network \
                 filesystem instead"
            )
        } else {
            format!(
                "the KB is inside a sync-client folder ({marker}): a sync client can ship \
                 state.db without its -wal and corrupt it; exclude .openkb/state.db* from \
                 syncing and write from one machine at a time"
            )
        };
        findings.push(Finding::warning("sync-folder", message));
    }
    Ok(findings)
}

/// The KB's own files and folders must not be symlinks: openkb refuses to write through them
/// (every write command stops until they are replaced).
pub fn check_symlinks(kb: &Kb) -> Vec<Finding> {
    crate::kbpath::symlinked_bookkeeping(kb)
        .into_iter()
        .map(|(rel, target)| {
            Finding::problem(
                "symlink",
                format!(
                    "{rel} is a symbolic link (to {}); openkb does not write the KB's own files \
                     through symlinks, so write commands refuse to run: replace it with a \
                     regular {}",
                    target.display(),
                    if rel.ends_with(".md") || rel.contains("state.db") || rel.ends_with(".lock") {
                        "file"
                    } else {
                        "folder"
                    }
                ),
            )
        })
        .collect()
}
