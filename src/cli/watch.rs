//! `openkb watch`: add files dropped into `raw/`.
//!
//! It starts with a catch-up scan: supported files in `raw/` that are not registered (dropped
//! while no watch ran) are added first. Then events are debounced (about 2 s, so a file still
//! being written is taken once it settles) and each file is added on its own: the exclusive
//! lock is held only while that file is published and committed, never for the watch's
//! lifetime, so `list` and `status` in other processes stay instant. SIGINT/SIGTERM end the
//! watch between files (a file being added is finished first, nothing is left half-done); if
//! files in `raw/` are still waiting then, they are listed and the exit code is 1, never a
//! silent 0. `--once` is the catch-up scan alone, for scripts and cron.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use notify_debouncer_full::new_debouncer;
use notify_debouncer_full::notify::{EventKind, RecursiveMode};

use crate::error::{Error, Result};
use crate::fsx;
use crate::ingest::{self, add::Options};

/// Debounce delay in milliseconds; hidden, for tests.
const DEBOUNCE_ENV: &str = "OPENKB_WATCH_DEBOUNCE_MS";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Add the unregistered files of raw/ once and exit (for scripts and cron)
    #[arg(long)]
    once: bool,
}

pub fn run(ctx: &super::Ctx, args: Args) -> Result<()> {
    let mut probe = super::probe(ctx)?;
    let kb = probe.kb().clone();
    let raw = kb.raw_dir();
    std::fs::create_dir_all(&raw).map_err(|e| Error::io("cannot create folder", &raw, e))?;
    let raw = raw
        .canonicalize()
        .map_err(|e| Error::io("cannot resolve", &raw, e))?;
    // A testing knob, bounded all the same: the debouncer adds it to `Instant`s, which panics
    // past what they can hold.
    let debounce = match std::env::var_os(DEBOUNCE_ENV) {
        None => Duration::from_secs(2),
        Some(v) => match v.to_str().and_then(|v| v.trim().parse::<u64>().ok()) {
            Some(ms) if ms <= 3_600_000 => Duration::from_millis(ms),
            _ => {
                return Err(Error::Invalid(format!(
                    "{DEBOUNCE_ENV}={:?} is not a number of milliseconds from 0 to 3600000",
                    crate::names::truncate_bytes(&v.to_string_lossy(), 64)
                )));
            }
        },
    };

    ingest::stop_cleanly_on_interrupt();
    // Re-read each time: a compile_command set while watching takes effect.
    let options = || Options::from_config(&kb, ctx.verbose > 0);
    let mut printer = super::common::Printer::new(ctx.output(false));
    printer.show_skipped = false;
    if args.once {
        let summary = ingest::add::add_paths(
            &probe,
            std::slice::from_ref(&raw),
            &options()?,
            &mut printer,
        )?;
        printer.finish();
        return super::common::finish_add(&ctx.output(false), summary);
    }

    let (tx, rx) = std::sync::mpsc::channel();
    let mut debouncer = new_debouncer(debounce, None, tx)
        .map_err(|e| Error::Invalid(format!("cannot watch {}: {e}", raw.display())))?;
    debouncer
        .watch(&raw, RecursiveMode::Recursive)
        .map_err(|e| Error::Invalid(format!("cannot watch {}: {e}", raw.display())))?;
    crate::notice::note(&format!("watching {} (Ctrl-C to stop)", raw.display()));
    // After the watch is set up, so a file dropped meanwhile is seen by one or the other.
    let caught_up = ingest::add::add_paths(
        &probe,
        std::slice::from_ref(&raw),
        &options()?,
        &mut printer,
    );
    if let Err(e) = caught_up {
        eprintln!("failed to scan {}: {e}", raw.display());
    }
    while !ingest::interrupted() {
        let events = match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(Ok(events)) => events,
            Ok(Err(errors)) => {
                for e in errors {
                    eprintln!("warning: watching {}: {e}", raw.display());
                }
                continue;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let mut paths = BTreeSet::new();
        for event in events {
            if matches!(event.kind, EventKind::Create(_) | EventKind::Modify(_)) {
                paths.extend(event.paths.iter().filter(|p| wanted(&raw, p)).cloned());
            }
        }
        for path in paths {
            if ingest::interrupted() {
                break;
            }
            if !probe.is_current() {
                // state.db was replaced (a restore, `openkb doctor --fix`) or removed: work on
                // the file that is there now, or stop if there is none.
                probe = probe.reopen()?;
                crate::notice::note(&format!(
                    "{} changed on disk; reopened it",
                    kb.state_db().display()
                ));
            }
            if let Err(e) = ingest::add::add_paths(
                &probe,
                std::slice::from_ref(&path),
                &options()?,
                &mut printer,
            ) {
                eprintln!(
                    "failed {}: {}",
                    crate::names::shown(&path.to_string_lossy()),
                    crate::names::shown_message(&e.to_string())
                );
            }
        }
    }
    drop(debouncer);
    crate::notice::note(&format!("stopped watching {}", raw.display()));
    let waiting = ingest::add::unregistered(&kb, &probe, &raw)?;
    if waiting.is_empty() {
        return Ok(());
    }
    const SHOWN: usize = 10;
    for path in waiting.iter().take(SHOWN) {
        eprintln!("  not added yet: {}", path.display());
    }
    if waiting.len() > SHOWN {
        eprintln!("  ... and {} more", waiting.len() - SHOWN);
    }
    Err(Error::Incomplete(format!(
        "stopped with {} file(s) in {} not added yet; `openkb watch --once` adds them",
        waiting.len(),
        raw.display()
    )))
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
        && ((ingest::is_supported(&name) && path.is_file()) || path.is_dir())
}
