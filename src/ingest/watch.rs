//! Watching `raw/`: add the files dropped into it, one by one, as they settle.
//!
//! It starts with a catch-up scan: supported files in `raw/` that are not registered (dropped
//! while no watch ran) are added first. Then events are debounced (a file still being written
//! is taken once it settles) and each file is added on its own: the exclusive lock is held
//! only while that file is published and committed, never for the watch's lifetime, so `list`
//! and `status` in other processes stay instant. SIGINT/SIGTERM (after
//! [`super::stop_cleanly_on_interrupt`]) end the watch between files; a file being added is
//! finished first, nothing is left half-done.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify_debouncer_full::new_debouncer;
use notify_debouncer_full::notify::{EventKind, RecursiveMode};

use super::add::{self, Options, Reporter};
use crate::error::{Error, Result};
use crate::fsx;
use crate::names;
use crate::session::Probe;

/// `raw/` of the probe's KB, created when missing, resolved (events name resolved paths).
pub fn raw_folder(probe: &Probe) -> Result<PathBuf> {
    let raw = probe.kb().raw_dir();
    std::fs::create_dir_all(&raw).map_err(|e| Error::io("cannot create folder", &raw, e))?;
    raw.canonicalize()
        .map_err(|e| Error::io("cannot resolve", &raw, e))
}

/// Watch `raw` until SIGINT/SIGTERM, adding what appears there (`options` is asked again for
/// each add: a `compile_command` set while watching takes effect). Returns the files still
/// waiting in `raw/` when it stops, for the caller to list.
pub fn watch(
    mut probe: Probe,
    raw: &Path,
    debounce: Duration,
    options: &dyn Fn() -> Result<Options>,
    reporter: &mut dyn Reporter,
) -> Result<Vec<PathBuf>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let cannot_watch = |e: notify_debouncer_full::notify::Error| {
        Error::Invalid(format!("cannot watch {}: {e}", raw.display()))
    };
    let mut debouncer = new_debouncer(debounce, None, tx).map_err(cannot_watch)?;
    debouncer
        .watch(raw, RecursiveMode::Recursive)
        .map_err(cannot_watch)?;
    crate::notice::note(&format!("watching {} (Ctrl-C to stop)", raw.display()));
    // After the watch is set up, so a file dropped meanwhile is seen by one or the other.
    if let Err(e) = add::add_paths(&probe, &[raw.to_path_buf()], &options()?, reporter) {
        crate::notice::warn(&format!("failed to scan {}: {e}", raw.display()));
    }
    while !super::interrupted() {
        let events = match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(Ok(events)) => events,
            Ok(Err(errors)) => {
                for e in errors {
                    crate::notice::warn(&format!("warning: watching {}: {e}", raw.display()));
                }
                continue;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let mut paths = BTreeSet::new();
        for event in events {
            if matches!(event.kind, EventKind::Create(_) | EventKind::Modify(_)) {
                paths.extend(event.paths.iter().filter(|p| wanted(raw, p)).cloned());
            }
        }
        probe = add_each(probe, paths, options, reporter)?;
    }
    drop(debouncer);
    crate::notice::note(&format!("stopped watching {}", raw.display()));
    add::unregistered(probe.kb(), &probe, raw)
}

/// Add each of `paths` on its own (a failure is reported and the watch goes on). Returns the
/// probe to go on with: a new one when `state.db` was replaced meanwhile.
fn add_each(
    mut probe: Probe,
    paths: BTreeSet<PathBuf>,
    options: &dyn Fn() -> Result<Options>,
    reporter: &mut dyn Reporter,
) -> Result<Probe> {
    for path in paths {
        if super::interrupted() {
            break;
        }
        if !probe.is_current() {
            // state.db was replaced (a restore, `openkb doctor --fix`) or removed: work on
            // the file that is there now, or stop if there is none.
            probe = probe.reopen()?;
            crate::notice::note(&format!(
                "{} changed on disk; reopened it",
                probe.kb().state_db().display()
            ));
        }
        if let Err(e) = add::add_paths(&probe, std::slice::from_ref(&path), &options()?, reporter) {
            crate::notice::warn(&format!(
                "failed {}: {}",
                names::shown(&path.to_string_lossy()),
                names::shown_message(&e.to_string())
            ));
        }
    }
    Ok(probe)
}

/// A supported regular file under `raw`, with no dot-named component (dotfiles, `.openkb/`)
/// and not a temp file; or a new folder, walked whole because files written into it before
/// its watch was set up raise no event of their own (add skips what is already registered).
fn wanted(raw: &Path, path: &Path) -> bool {
    let Ok(rel) = path.strip_prefix(raw) else {
        return false;
    };
    let hidden = rel
        .components()
        .any(|c| c.as_os_str().to_string_lossy().starts_with('.'));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    !hidden
        && !fsx::is_temp_name(&name)
        && ((super::is_supported(&name) && path.is_file()) || path.is_dir())
}
